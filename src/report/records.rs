//! From a run's typed records (`runfile`, distill's or the original tool's through its
//! adapter) to the report's model: which nodes are graded rounds, each attempt's state, the
//! usage and cost of every round, the vote records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

use super::load::{Attempt, Problem, RoundUsage, Run, State, UNRECORDED_REASON, VoteRecord};
use super::survey::{Ids, Survey, graded_nodes, id_hash, survey};
use crate::calls::Output;
use crate::runfile::records::{NodeRecord, NodeStatus, ProblemRecord, ProblemStatus};
use crate::runfile::{Format, RunFile, Texts};

fn output(n: &NodeRecord) -> Option<&Output> {
    n.output.as_deref()
}

/// `path` is a run directory, a results.jsonl or a results file of either tool (`runfile`).
pub fn load_run(path: &Path) -> Result<Run, String> {
    load_run_for(path, true)
}

/// As [`load_run`]; `columns`: keep each problem's question, answer and problem-set columns
/// (only grouping reads them: without it a report of 100,000 problems holds none). Every
/// problem is held: a report of one run streams instead ([`Reading`]).
pub fn load_run_for(path: &Path, columns: bool) -> Result<Run, String> {
    let mut problems = Vec::new();
    let mut run = Reading::open(path, columns)?.for_each(|p| problems.push(p));
    run.problems = problems;
    Ok(run)
}

/// The label of a run: its pipeline and run id's suffix, else its folder's name.
fn label_of(rf: &RunFile, run: &Run) -> String {
    let label = match (&rf.format, run.pipeline.is_empty()) {
        (crate::runfile::Format::Distill, false) => {
            format!("{} {}", run.pipeline, short_id(&run.run_id))
        }
        (crate::runfile::Format::Distill, true) => String::new(),
        _ => run.pipeline.clone(),
    };
    if !label.is_empty() {
        return label;
    }
    rf.dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The run id's random suffix, or the whole id.
fn short_id(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// A run's records opened for one pass (after a first pass that finds its graded nodes,
/// rounds and samples): the run without its problems ([`Reading::head`]), then its problems
/// one at a time ([`Reading::for_each`]), so that a report need not hold them.
pub struct Reading {
    rf: RunFile,
    run: Run,
    shape: Shape,
    vote_ks: BTreeSet<u64>,
    surveyed: usize,
    /// Selected in config.json, without a record.
    missing: Vec<String>,
    /// The problem-set CSV's rows by id (grouping by a column).
    csv: Option<super::columns::Rows>,
}

impl Reading {
    /// Opens a run's records (`runfile::open`) and reads them once for their shape.
    /// `columns`: give each problem its question, answer and problem-set columns.
    pub fn open(path: &Path, columns: bool) -> Result<Reading, String> {
        let rf = crate::runfile::open(path)?;
        let sv = survey(&rf);
        Reading::of(rf, sv, columns)
    }

    /// A run's records opened with what a survey of them found (a live run surveys its
    /// records as they finish: `live`).
    pub(super) fn of(rf: RunFile, sv: Survey, columns: bool) -> Result<Reading, String> {
        // selected but never written: the run was interrupted (or crashed) before them (the
        // ids are read from config.json one at a time, not held)
        let mut missing: Vec<String> = Vec::new();
        let mut selected = 0usize;
        let config = (rf.format == Format::Distill)
            .then(|| {
                crate::runfile::config::read_streaming(&rf.dir, &mut |id| {
                    selected += 1;
                    if let Ids::Hashed(h) = &sv.ids
                        && !h.contains(&id_hash(id))
                    {
                        missing.push(id.to_string());
                    }
                })
                .ok()
            })
            .flatten();
        if let Ids::Counted(n) = sv.ids
            && (config.is_none() || n != selected)
        {
            return Err(format!(
                "{n} problems have a record, the selection has {selected}: read the run's file"
            ));
        }
        let cfg = config.as_ref();
        let status = rf.status.clone();
        let (shape, rounds, warnings) = shape(&sv, cfg, rf.original(), &status, columns);
        let samples = shape.samples;
        let csv = if !columns {
            None
        } else if let Some(o) = rf.original() {
            o.config["data_path"]
                .as_str()
                .and_then(|path| super::columns::load(path, &[]))
        } else if let Some(path) = cfg.and_then(|c| c["problems"]["path"].as_str()) {
            let pipeline_file = cfg.and_then(|c| c["pipeline_file"].as_str()).unwrap_or("");
            super::columns::load(path, &[&rf.dir, Path::new(pipeline_file)])
        } else {
            None
        };
        let mut run = Run {
            label: String::new(),
            path: rf.file.clone(),
            format: rf.format.label().into(),
            pipeline: rf.pipeline.clone().unwrap_or_default(),
            run_id: rf.run_id.clone().unwrap_or_default(),
            status,
            simulated: cfg
                .and_then(|c| c["provenance"]["simulated_models"].as_array())
                .is_some_and(|a| !a.is_empty()),
            rounds,
            samples,
            problems: Vec::new(),
            warnings,
            shard: cfg.and_then(crate::runfile::config::ShardRecord::read),
            coverage: None,
        };
        run.label = label_of(&rf, &run);
        Ok(Reading {
            rf,
            run,
            shape,
            surveyed: sv.ids.len(),
            vote_ks: sv.vote_ks,
            missing,
            csv,
        })
    }

    /// The run without its problems: what every problem is read against.
    pub fn head(&self) -> &Run {
        &self.run
    }

    /// Whether this reading's problems are read against `shape`, `rounds` and `vote_ks`
    /// and every selected problem has a record (a live run's tally holds: `live`).
    pub(super) fn agrees(&self, shape: &Shape, rounds: &[u32], vote_ks: &BTreeSet<u64>) -> bool {
        self.shape == *shape
            && self.run.rounds == rounds
            && self.vote_ks == *vote_ks
            && self.missing.is_empty()
    }

    /// How many distinct problem ids the survey found.
    pub(super) fn surveyed(&self) -> usize {
        self.surveyed
    }

    /// The run, its problems unread: what [`Reading::for_each`] returns of a run whose
    /// every record is readable and every selected problem recorded.
    pub(super) fn into_head(self) -> Run {
        self.run
    }

    /// The ks of the run's vote records.
    pub fn vote_ks(&self) -> &BTreeSet<u64> {
        &self.vote_ks
    }

    /// Reads the problems in the run's order, then the selected ones without a record (not
    /// run at every round), handing each to `sink`; returns the run (its problems empty),
    /// with the warnings of this pass.
    pub fn for_each(self, mut sink: impl FnMut(Problem)) -> Run {
        let Reading {
            rf,
            mut run,
            shape,
            missing,
            csv,
            ..
        } = self;
        let mut give = |mut p: Problem| {
            if let Some(rows) = &csv {
                rows.apply(&mut p);
            }
            sink(p);
        };
        let (mut unreadable, mut first) = (0usize, None);
        for p in rf.problems(Texts::Lengths) {
            match p {
                Ok(p) => give(problem(&p, &run.rounds, &shape)),
                Err(u) => {
                    unreadable += 1;
                    first.get_or_insert(u);
                }
            }
        }
        if let Some(u) = first {
            run.warnings.push(format!(
                "{unreadable} record(s) of {} could not be read and are left out (record {}: {})",
                rf.file.display(),
                u.line,
                u.error
            ));
        }
        if !missing.is_empty() {
            run.warnings.push(format!(
                "{} selected problem(s) have no record (the run stopped before they finished): not run, left out of the accuracy",
                missing.len()
            ));
        }
        // a live run has not reached them yet; any other run stopped before them
        let reason = if run.status == "running" {
            "pending"
        } else {
            "interrupted"
        };
        for id in missing {
            give(super::load::missing_problem(
                &id,
                run.samples,
                run.rounds.len(),
                reason,
            ));
        }
        run
    }
}

/// What every problem of a run is read against, the rounds of its graded nodes and the
/// warnings of its reading, from its survey, config.json (distill's runs), the original
/// tool's file (its runs) and its status.
pub(super) fn shape(
    sv: &Survey,
    cfg: Option<&Value>,
    original: Option<&crate::runfile::original::Original>,
    status: &str,
    columns: bool,
) -> (Shape, Vec<u32>, Vec<String>) {
    let mut warnings = Vec::new();
    // the attempts graded by the `grade:` block; a pipeline that grades only with nodes
    // that give their own verdict (`grade`) has those instead
    let mut graded = graded_nodes(sv, cfg, &crate::nodes::block_graded_kinds());
    if graded.is_empty() {
        graded = graded_nodes(sv, cfg, &crate::nodes::own_verdict_kinds());
    }
    let mut rounds: BTreeSet<u32> = graded.values().copied().collect();
    if let Some(o) = original {
        rounds.extend(o.rounds());
        if o.lacks_iteration_tokens() {
            warnings.push(
                    "the original iterated format has no per-iteration token counts: tokens are shown as 0"
                        .into(),
                );
        }
    }
    let rounds: Vec<u32> = rounds.into_iter().collect();
    if rounds.is_empty() {
        warnings.push("no graded node: accuracy needs a `grade:` block or grade nodes".into());
    }
    let cfg_samples = cfg
        .and_then(|c| c["pipeline"]["samples"].as_u64())
        .map(|n| n as usize);
    let samples = sv.samples.max(cfg_samples.unwrap_or(1)).max(1);
    let shape = Shape {
        graded,
        samples,
        prices: prices(cfg),
        original: original.is_some(),
        columns,
        unrecorded: match status {
            "interrupted" | "truncated" => "interrupted",
            "running" => "pending",
            _ => "no record",
        },
    };
    (shape, rounds, warnings)
}

/// What every problem of a run is read against.
#[derive(Debug, PartialEq)]
pub(super) struct Shape {
    graded: BTreeMap<String, u32>,
    samples: usize,
    prices: HashMap<String, (f64, f64)>,
    /// The original tool's file: its consensus is its own vote.
    original: bool,
    /// Keep the problems' columns (for grouping).
    columns: bool,
    /// Why a round without a record in an incomplete problem did not run: the run was
    /// stopped (`interrupted`), is still going (`pending`), or the record is just absent.
    unrecorded: &'static str,
}

impl Shape {
    /// Samples per problem.
    pub(super) fn samples(&self) -> usize {
        self.samples
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

fn usage_of(o: &Output) -> (u64, u64) {
    let u = o.get("usage");
    let g = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    (g("prompt_tokens"), g("completion_tokens"))
}

fn text(v: Option<&Value>) -> Option<String> {
    crate::runfile::original::text_of(v)
}

/// Adds one node's tokens and cost to its round's usage.
fn add_usage(u: &mut RoundUsage, o: &Output, prices: &HashMap<String, (f64, f64)>) {
    let (pt, ct) = usage_of(o);
    u.prompt_tokens += pt;
    u.completion_tokens += ct;
    u.estimated |= o
        .get("usage")
        .and_then(|u| u.get("estimated"))
        .and_then(Value::as_bool)
        == Some(true);
    if pt + ct > 0 || o.contains_key("cost_usd") {
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

pub(super) fn problem(p: &ProblemRecord, rounds: &[u32], sh: &Shape) -> Problem {
    let mut columns = BTreeMap::new();
    if sh.columns {
        for (k, v) in [("question", &p.question), ("answer", &p.answer)] {
            if !v.is_empty() {
                columns.insert(k.to_string(), v.clone());
            }
        }
        columns.insert("id".into(), p.id.clone());
    }
    let slot = |r: u32| -> usize {
        // usage of a round without a graded node goes to the next graded round (or the last)
        rounds
            .iter()
            .position(|&g| g >= r)
            .unwrap_or(rounds.len().saturating_sub(1))
    };
    let mut usage = vec![
        RoundUsage {
            // the original tool's files say nothing of cost unless they recorded one
            cost_usd: (!sh.original).then_some(0.0),
            ..Default::default()
        };
        rounds.len()
    ];
    let mut samples = Vec::new();
    for si in 0..sh.samples {
        let mut by_round: Vec<Option<&NodeRecord>> = vec![None; rounds.len()];
        for (nid, n) in p.samples.get(si).into_iter().flatten() {
            if let (Some(o), false) = (output(n), rounds.is_empty()) {
                let u = &mut usage[slot(n.round)];
                if sh.original && u.cost_usd.is_none() && o.contains_key("cost_usd") {
                    u.cost_usd = Some(0.0);
                }
                add_usage(u, o, &sh.prices);
            }
            let r = sh.graded.get(nid).copied().or_else(|| {
                // the original tool's files name their attempts by kind, not by a pipeline
                (sh.original && n.kind == "reason").then_some(n.round)
            });
            if let Some(r) = r {
                let i = rounds.iter().position(|&x| x == r).unwrap_or(0);
                by_round[i] = Some(n); // several graded nodes in one round: the last wins
            }
        }
        samples.push(attempts(p, &by_round, sh.unrecorded));
    }
    let votes = p
        .aggregates
        .iter()
        .filter(|(_, n)| n.kind == "vote")
        .map(|(nid, n)| vote(nid, n, sh))
        .collect();
    Problem {
        id: p.id.clone(),
        index: Some(p.index),
        status: status_name(p.status).into(),
        error: p.error.clone(),
        columns,
        samples,
        usage,
        votes,
    }
}

fn status_name(s: ProblemStatus) -> &'static str {
    match s {
        ProblemStatus::Ok => "ok",
        ProblemStatus::Failed => "failed",
        ProblemStatus::Incomplete => "incomplete",
    }
}

/// One sample's attempts, one per round.
fn attempts(p: &ProblemRecord, by_round: &[Option<&NodeRecord>], unrecorded: &str) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::with_capacity(by_round.len());
    for n in by_round {
        let prev = out.last();
        let a = match n {
            None => match p.status {
                ProblemStatus::Ok => Attempt::carry(prev, State::Missing),
                ProblemStatus::Incomplete => {
                    Attempt::not_run(unrecorded, Some("no record of this round".into()))
                }
                ProblemStatus::Failed => {
                    Attempt::failed(p.error.clone().or(Some("no record of this round".into())))
                }
            },
            Some(n) => match n.status {
                NodeStatus::Done => done_attempt(output(n)),
                NodeStatus::Skipped => Attempt::carry(prev, State::Carried),
                NodeStatus::Failed => {
                    Attempt::failed(n.error.clone().or(Some(format!("node {} failed", n.node))))
                }
                NodeStatus::NotRun => Attempt::not_run(
                    n.reason.map_or(UNRECORDED_REASON, |r| r.reason()),
                    n.error.clone().or(Some(format!("node {} not run", n.node))),
                ),
            },
        };
        out.push(a);
    }
    out
}

/// A vote node's `pass_at` figures by k.
pub(super) fn pass_at(o: Option<&Output>) -> BTreeMap<u64, f64> {
    o.and_then(|o| o.get("pass_at"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn vote(nid: &str, n: &NodeRecord, sh: &Shape) -> VoteRecord {
    let o = output(n);
    let pass_at = pass_at(o);
    let status = serde_json::to_value(n.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    VoteRecord {
        source: if sh.original {
            "original tool's consensus_correct".into()
        } else {
            format!("vote node `{nid}`")
        },
        status,
        round: n.round,
        n: o.and_then(|o| o.get("n"))
            .and_then(Value::as_u64)
            .unwrap_or(sh.samples as u64),
        correct: o.and_then(|o| o.get("correct")).and_then(Value::as_bool),
        pass_at,
    }
}

fn done_attempt(o: Option<&Output>) -> Attempt {
    let Some(o) = o else {
        return Attempt::failed(Some("done without output".into()));
    };
    Attempt {
        state: State::Done,
        correct: o.get("correct").and_then(Value::as_bool).unwrap_or(false),
        answer: text(o.get("answer")),
        finish_reason: text(o.get("finish_reason")),
        reasoning_chars: o
            .get("reasoning_chars")
            .and_then(Value::as_u64)
            .map(|n| n as usize)
            .or_else(|| {
                o.get("reasoning")
                    .and_then(Value::as_str)
                    .map(|r| r.chars().count())
            }),
        completion_tokens: o
            .get("usage")
            .and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_u64),
        error: None,
        reason: None,
    }
}
