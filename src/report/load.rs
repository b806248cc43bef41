//! Reading runs into one model: distill's run directories / `results.json` (and its
//! `config.json` for prices, the selected problems and the problem-set path), with the round
//! rules of the report: a round is the `round` of a graded `reason`/`continue` node (`grade`
//! nodes when a pipeline grades only that way); a skipped round carries the previous attempt's
//! answer and verdict forward (`Carried`); a failed node (an error after sending) is `Failed`
//! and a node that never ran is `NotRun` with its reason (`budget`, `interrupted`,
//! `offline_miss`, …): neither has a verdict. A problem selected in `config.json` but absent
//! from the records (the run stopped before it finished) is `NotRun` at every round. The
//! original tool's format is read by `legacy.rs` into the same model.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::original::text_of as s;

/// How one attempt ended: with a verdict (`Done`, `Carried`, `Missing`) or without one
/// (`Failed`, `NotRun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Graded by the run.
    Done,
    /// Skipped by a `when:` condition: the previous attempt's answer and verdict (wrong when
    /// there is no earlier attempt).
    Carried,
    /// No record for this round in a finished problem: the previous attempt's verdict when
    /// there is one, else wrong.
    Missing,
    /// An error after sending (or downstream of one): no verdict.
    Failed,
    /// Never run (`Attempt::reason` says why): no verdict.
    NotRun,
}

impl State {
    /// Done, carried and missing attempts have a verdict; failed and not-run ones do not.
    pub fn has_verdict(self) -> bool {
        matches!(self, State::Done | State::Carried | State::Missing)
    }
}

/// The reason of a `not_run` record written without one (distill before typed reasons wrote
/// none for the nodes an interrupted run never reached).
pub const UNRECORDED_REASON: &str = "interrupted";

/// One attempt of one sample at one round.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub state: State,
    pub correct: bool,
    pub answer: Option<String>,
    pub finish_reason: Option<String>,
    /// Characters of `output.reasoning` (graded attempts only).
    pub reasoning_chars: Option<usize>,
    pub completion_tokens: Option<u64>,
    pub error: Option<String>,
    /// Why a `NotRun` attempt did not run (`budget`, `interrupted`, `offline_miss`, …).
    pub reason: Option<String>,
}

impl Attempt {
    pub fn failed(error: Option<String>) -> Self {
        Attempt {
            state: State::Failed,
            correct: false,
            answer: None,
            finish_reason: None,
            reasoning_chars: None,
            completion_tokens: None,
            error,
            reason: None,
        }
    }
    pub fn not_run(reason: &str, error: Option<String>) -> Self {
        let mut a = Attempt::failed(error);
        a.state = State::NotRun;
        a.reason = Some(reason.to_string());
        a
    }
    /// The verdict: None for failed and not-run attempts.
    pub fn verdict(&self) -> Option<bool> {
        self.state.has_verdict().then_some(self.correct)
    }
    /// What a skipped (`Carried`) or absent (`Missing`) round holds: the previous attempt's
    /// verdict; wrong without a previous attempt; the previous attempt's failure or not-run
    /// reason when it had no verdict (so every round accounts for every attempt).
    pub fn carry(prev: Option<&Attempt>, state: State) -> Self {
        if let Some(p) = prev.filter(|p| !p.state.has_verdict()) {
            return p.clone();
        }
        let mut a = Attempt::failed(None);
        a.state = state;
        if let Some(p) = prev {
            a.correct = p.correct;
            a.answer = p.answer.clone();
        }
        a
    }
}

/// Tokens and cost of every node (any kind) of one round, summed over a problem's samples.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoundUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// None when some node's price is unknown.
    pub cost_usd: Option<f64>,
    /// Some node's usage was estimated by distill (its server reported none).
    pub estimated: bool,
}

/// A majority vote / pass@k record: a `vote` node, or the original tool's consensus.
#[derive(Debug, Clone, Serialize)]
pub struct VoteRecord {
    pub source: String,
    /// The vote node's status (done | failed | skipped | not_run); `done` for the original
    /// tool's consensus.
    pub status: String,
    pub round: u32,
    pub n: u64,
    pub correct: Option<bool>,
    pub pass_at: BTreeMap<u64, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub id: String,
    /// ok | failed | incomplete (some node not run) | not_run (selected, no record)
    pub status: String,
    pub error: Option<String>,
    /// Problem-set columns (`question`, `answer`, and those of the CSV when found).
    pub columns: BTreeMap<String, String>,
    /// Per sample, one attempt per entry of `Run::rounds`.
    pub samples: Vec<Vec<Attempt>>,
    /// One entry per entry of `Run::rounds`.
    pub usage: Vec<RoundUsage>,
    pub votes: Vec<VoteRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub label: String,
    pub path: PathBuf,
    /// distill | original (pass@k) | original (iterated)
    pub format: String,
    pub pipeline: String,
    pub run_id: String,
    pub status: String,
    pub simulated: bool,
    pub rounds: Vec<u32>,
    pub samples: usize,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// `path` is a run directory (its `results.json`) or a results file of either format.
pub fn load_run(path: &Path) -> Result<Run, String> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_path_buf()
    };
    // distill writes one problem a line: read it line by line, dropping the long texts as it
    // goes, so a report on a run of any size needs little memory; a run that was killed (or
    // is still going) has only its journal
    let journal = path
        .is_dir()
        .then(|| crate::runfile::problem_lines(path))
        .flatten();
    let file = journal.as_ref().map_or(file, |l| l.file.clone());
    let doc = match journal
        .map(super::files::from_journal)
        .or_else(|| super::files::read_streamed(&file))
    {
        Some(v) => v,
        None => {
            let raw = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            super::legacy::parse_json(&raw).map_err(|e| format!("{}: {e}", file.display()))?
        }
    };
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut run = if doc.get("problems").is_some_and(Value::is_array) {
        load_distill(&doc, &dir)?
    } else if doc.get("results").is_some_and(Value::is_array) {
        super::legacy::load_original(&doc)?
    } else {
        return Err(format!(
            "{}: neither distill's results.json (\"problems\": [...]) nor the original tool's (\"results\": [...])",
            file.display()
        ));
    };
    run.path = file;
    if run.label.is_empty() {
        run.label = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    Ok(run)
}

/// A node of one sample, as the report needs it.
struct NodeView<'a> {
    id: &'a str,
    kind: &'a str,
    round: u32,
    status: &'a str,
    reason: Option<&'a str>,
    output: Option<&'a Value>,
    error: Option<String>,
}

fn view(v: &Value) -> NodeView<'_> {
    NodeView {
        id: v.get("node").and_then(Value::as_str).unwrap_or(""),
        kind: v.get("kind").and_then(Value::as_str).unwrap_or(""),
        round: v.get("round").and_then(Value::as_u64).unwrap_or(0) as u32,
        status: v.get("status").and_then(Value::as_str).unwrap_or(""),
        reason: v.get("reason").and_then(Value::as_str),
        output: v.get("output").filter(|o| o.is_object()),
        error: s(v.get("error")),
    }
}

fn is_graded_done(n: &NodeView) -> bool {
    n.output
        .and_then(|o| o.get("correct"))
        .is_some_and(Value::is_boolean)
}

fn load_distill(doc: &Value, dir: &Path) -> Result<Run, String> {
    let config: Option<Value> = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let cfg = config.as_ref();
    let mut warnings = Vec::new();
    // problems come parsed (`problems`) or as compact lines (`problem_lines`), parsed on use
    let records = || -> Box<dyn Iterator<Item = std::borrow::Cow<'_, Value>> + '_> {
        let parsed = doc["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .map(std::borrow::Cow::Borrowed);
        let lines = doc["problem_lines"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| serde_json::from_str::<Value>(l.as_str()?).ok())
            .map(std::borrow::Cow::Owned);
        Box::new(parsed.chain(lines))
    };
    // which node ids are graded rounds
    let kinds_for = |allowed: &[&str]| -> BTreeMap<String, u32> {
        let mut graded: BTreeMap<String, u32> = BTreeMap::new();
        let mut seen: BTreeMap<String, (u32, bool, bool)> = BTreeMap::new(); // round, any done, any graded
        for p in records() {
            for smp in p["samples"].as_array().into_iter().flatten() {
                for (id, v) in smp.as_object().into_iter().flatten() {
                    let n = view(v);
                    if !allowed.contains(&n.kind) {
                        continue;
                    }
                    let e = seen.entry(id.clone()).or_insert((n.round, false, false));
                    e.1 |= n.status == "done";
                    e.2 |= is_graded_done(&n);
                }
            }
        }
        let config_says = |id: &str| -> Option<bool> {
            let nodes = cfg?.get("expanded_nodes")?.as_array()?;
            let n = nodes.iter().find(|n| n["id"] == id)?;
            let grade_block = cfg?
                .get("pipeline")?
                .get("grade")
                .is_some_and(|g| !g.is_null());
            Some(
                n["kind"] == "grade"
                    || (grade_block && n["params"].get("graded") != Some(&Value::Bool(false))),
            )
        };
        // graded nodes no record reached yet (a run stopped before a round began) still
        // make their rounds, with every attempt not run
        let expanded = cfg
            .and_then(|c| c.get("expanded_nodes"))
            .and_then(Value::as_array);
        for n in expanded.into_iter().flatten() {
            if let (Some(id), Some(kind)) = (n["id"].as_str(), n["kind"].as_str())
                && allowed.contains(&kind)
            {
                let round = n["round"].as_u64().unwrap_or(0) as u32;
                seen.entry(id.to_string()).or_insert((round, false, false));
            }
        }
        let any_graded = seen.values().any(|v| v.2);
        for (id, (round, any_done, any_graded_here)) in seen {
            let graded_node =
                any_graded_here || (!any_done && any_graded && config_says(&id).unwrap_or(true));
            if graded_node {
                graded.insert(id, round);
            }
        }
        graded
    };
    let mut graded = kinds_for(&crate::nodes::block_graded_kinds());
    if graded.is_empty() {
        graded = kinds_for(&crate::nodes::own_verdict_kinds());
    }
    let rounds: Vec<u32> = graded
        .values()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if rounds.is_empty() {
        warnings.push("no graded node: accuracy needs a `grade:` block or grade nodes".into());
    }

    let prices = prices(cfg);
    let cfg_samples = cfg
        .and_then(|c| c["pipeline"]["samples"].as_u64())
        .map(|n| n as usize);
    let samples = records()
        .map(|p| p["samples"].as_array().map_or(0, |a| a.len()))
        .max()
        .unwrap_or(0)
        .max(cfg_samples.unwrap_or(1))
        .max(1);

    let status = s(doc.get("status")).unwrap_or_else(|| "unknown".into());
    let mut problems = Vec::new();
    let mut ids_seen = BTreeSet::new();
    for p in records() {
        let id = s(p.get("id")).unwrap_or_default();
        ids_seen.insert(id.clone());
        problems.push(distill_problem(&p, &graded, &rounds, samples, &prices));
    }
    // selected but never written: the run was interrupted (or crashed) before them
    if let Some(sel) = cfg.and_then(|c| c["problems"]["selected"].as_array()) {
        let missing: Vec<String> = sel
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|id| !ids_seen.contains(*id))
            .map(String::from)
            .collect();
        if !missing.is_empty() {
            warnings.push(format!(
                "{} selected problem(s) have no record (the run stopped before they finished): not run, left out of the accuracy",
                missing.len()
            ));
        }
        // a live run has not reached them yet; any other run stopped before them
        let reason = if status == "running" {
            "pending"
        } else {
            "interrupted"
        };
        for id in missing {
            problems.push(missing_problem(&id, samples, rounds.len(), reason));
        }
    }
    let simulated = cfg
        .and_then(|c| c["provenance"]["simulated_models"].as_array())
        .is_some_and(|a| !a.is_empty());
    let mut run = Run {
        label: String::new(),
        path: PathBuf::new(),
        format: "distill".into(),
        pipeline: s(doc.get("pipeline")).unwrap_or_default(),
        run_id: s(doc.get("run_id")).unwrap_or_default(),
        status,
        simulated,
        rounds,
        samples,
        problems,
        warnings,
    };
    if let Some(path) = cfg.and_then(|c| c["problems"]["path"].as_str()) {
        let pipeline_file = cfg.and_then(|c| c["pipeline_file"].as_str()).unwrap_or("");
        super::legacy::attach_columns(&mut run, path, &[dir, Path::new(pipeline_file)]);
    }
    run.label = if run.pipeline.is_empty() {
        String::new()
    } else {
        format!("{} {}", run.pipeline, short_id(&run.run_id))
    };
    Ok(run)
}

/// The run id's random suffix, or the whole id.
fn short_id(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// A selected problem without a record: not run at every round, for `reason`.
pub fn missing_problem(id: &str, samples: usize, rounds: usize, reason: &str) -> Problem {
    let err = "no record (the run stopped before this problem finished)";
    Problem {
        id: id.to_string(),
        status: "not_run".into(),
        error: Some(err.into()),
        columns: BTreeMap::new(),
        samples: vec![vec![Attempt::not_run(reason, Some(err.into())); rounds]; samples],
        usage: vec![
            RoundUsage {
                cost_usd: Some(0.0),
                ..Default::default()
            };
            rounds
        ],
        votes: Vec::new(),
    }
}

/// "provider:model" → price per million tokens (input, output), for models with `price:` set.
fn prices(cfg: Option<&Value>) -> HashMap<String, (f64, f64)> {
    let mut out = HashMap::new();
    let Some(models) = cfg.and_then(|c| c["pipeline"]["models"].as_object()) else {
        return out;
    };
    for m in models.values() {
        let (Some(p), Some(name)) = (m.get("price"), m["model"].as_str()) else {
            continue;
        };
        let f = |k: &str| p.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let provider = m["provider"].as_str().unwrap_or("");
        out.insert(
            format!("{provider}:{name}"),
            (f("input_per_m"), f("output_per_m")),
        );
    }
    out
}

fn usage_of(o: &Value) -> (u64, u64) {
    let u = &o["usage"];
    let g = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    (g("prompt_tokens"), g("completion_tokens"))
}

fn distill_problem(
    p: &Value,
    graded: &BTreeMap<String, u32>,
    rounds: &[u32],
    samples: usize,
    prices: &HashMap<String, (f64, f64)>,
) -> Problem {
    let id = s(p.get("id")).unwrap_or_default();
    let status = s(p.get("status")).unwrap_or_else(|| "ok".into());
    let error = s(p.get("error"));
    let mut columns = BTreeMap::new();
    for k in ["question", "answer"] {
        if let Some(v) = s(p.get(k)) {
            columns.insert(k.to_string(), v);
        }
    }
    columns.insert("id".into(), id.clone());
    let slot = |r: u32| -> usize {
        // usage of a round without a graded node goes to the next graded round (or the last)
        rounds
            .iter()
            .position(|&g| g >= r)
            .unwrap_or(rounds.len().saturating_sub(1))
    };
    let mut usage = vec![
        RoundUsage {
            cost_usd: Some(0.0),
            ..Default::default()
        };
        rounds.len()
    ];
    let mut out_samples = Vec::new();
    let recs: Vec<&Value> = p["samples"].as_array().into_iter().flatten().collect();
    for si in 0..samples {
        let smp = recs.get(si).and_then(|v| v.as_object());
        let mut by_round: Vec<Option<NodeView>> = (0..rounds.len()).map(|_| None).collect();
        for (nid, v) in smp.into_iter().flatten() {
            let n = view(v);
            if let (Some(o), false) = (n.output, rounds.is_empty()) {
                let (pt, ct) = usage_of(o);
                let u = &mut usage[slot(n.round)];
                u.prompt_tokens += pt;
                u.completion_tokens += ct;
                u.estimated |= o["usage"]["estimated"].as_bool() == Some(true);
                if pt + ct > 0 {
                    // distill records each node's cost; older results are priced by model
                    let model = o.get("model").and_then(Value::as_str).unwrap_or("");
                    let cost = o.get("cost_usd").and_then(Value::as_f64).or_else(|| {
                        prices
                            .get(model)
                            .map(|(i, o)| (pt as f64 * i + ct as f64 * o) / 1e6)
                    });
                    u.cost_usd = u.cost_usd.zip(cost).map(|(a, b)| a + b);
                }
            }
            if let Some(&r) = graded.get(nid) {
                let i = rounds.iter().position(|&x| x == r).unwrap_or(0);
                by_round[i] = Some(n); // several graded nodes in one round: the last wins
            }
        }
        let mut attempts: Vec<Attempt> = Vec::with_capacity(rounds.len());
        for n in by_round {
            let prev = attempts.last();
            let a = match n {
                None if status == "ok" => Attempt::carry(prev, State::Missing),
                None if status == "incomplete" => {
                    Attempt::not_run("no record", Some("no record of this round".into()))
                }
                None => Attempt::failed(error.clone().or(Some("no record of this round".into()))),
                Some(n) => match n.status {
                    "done" => done_attempt(n.output),
                    "skipped" => Attempt::carry(prev, State::Carried),
                    "failed" => {
                        Attempt::failed(n.error.clone().or(Some(format!("node {} failed", n.id))))
                    }
                    "not_run" => Attempt::not_run(
                        n.reason.unwrap_or(UNRECORDED_REASON),
                        n.error.clone().or(Some(format!("node {} not run", n.id))),
                    ),
                    // a record of a node still going (a live run's journal has none)
                    other => Attempt::not_run(other, Some(format!("node {} {other}", n.id))),
                },
            };
            attempts.push(a);
        }
        out_samples.push(attempts);
    }
    let mut votes = Vec::new();
    for (nid, v) in p["aggregates"].as_object().into_iter().flatten() {
        let n = view(v);
        if n.kind != "vote" {
            continue;
        }
        let o = n.output;
        let pass_at = o
            .and_then(|o| o["pass_at"].as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        votes.push(VoteRecord {
            source: format!("vote node `{nid}`"),
            status: n.status.to_string(),
            round: n.round,
            n: o.and_then(|o| o["n"].as_u64()).unwrap_or(samples as u64),
            correct: o.and_then(|o| o["correct"].as_bool()),
            pass_at,
        });
    }
    Problem {
        id,
        status,
        error,
        columns,
        samples: out_samples,
        usage,
        votes,
    }
}

fn done_attempt(o: Option<&Value>) -> Attempt {
    let Some(o) = o else {
        return Attempt::failed(Some("done without output".into()));
    };
    let correct = o["correct"].as_bool().unwrap_or(false);
    Attempt {
        state: State::Done,
        correct,
        answer: s(o.get("answer")),
        finish_reason: s(o.get("finish_reason")),
        reasoning_chars: o["reasoning_chars"]
            .as_u64()
            .map(|n| n as usize)
            .or_else(|| o["reasoning"].as_str().map(|r| r.chars().count())),
        completion_tokens: o["usage"]["completion_tokens"].as_u64(),
        error: None,
        reason: None,
    }
}
