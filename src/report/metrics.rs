//! From loaded runs to the report's numbers: per-round accuracy and cumulative accuracy over
//! the attempts with a verdict, with the attempts that failed or were not run counted apart;
//! tokens/cost/reasoning length/finish reasons per round, outcome classes, failures and
//! not-run problems, whether the run stopped early, groups, and the paired bootstrap
//! comparisons (round 0 vs the last round; each run vs the first run on their common
//! problems). pass@k and majority@k are in `passk.rs`.

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Serialize;

pub use super::figures::{Counts, Estimate};
pub use super::passk::KMetric;
pub use super::problems::{Failure, NotRun, Outcomes};

use super::load::{Attempt, Problem, Run};
use super::stats::{PairedDiff, paired_bootstrap};

pub const PER_ROUND: &str = "per-round accuracy";
pub const CUMULATIVE: &str = "cumulative accuracy";

/// `budget: 3, interrupted: 2`
pub fn reasons_text(r: &BTreeMap<String, usize>) -> String {
    r.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    pub round: u32,
    pub per_round_accuracy: Estimate,
    pub cumulative_accuracy: Estimate,
    #[serde(flatten)]
    pub attempts: Counts,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Some of this round's tokens were estimated (the server reported no usage).
    pub tokens_estimated: bool,
    /// Tokens (prompt + completion) of rounds ≤ this one, per sample of the problems with a
    /// record.
    pub cumulative_tokens_per_attempt: f64,
    pub cost_usd: Option<f64>,
    pub mean_reasoning_chars: Option<f64>,
    pub mean_completion_tokens: Option<f64>,
    pub finish_reasons: BTreeMap<String, usize>,
    /// Graded attempts whose finish reason is `length`.
    pub truncated: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRound {
    pub round: u32,
    pub per_round_accuracy: Estimate,
    pub cumulative_accuracy: Estimate,
    pub failed: usize,
    pub not_run: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub group: String,
    pub problems: usize,
    pub rounds: Vec<GroupRound>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub label: String,
    pub path: String,
    pub format: String,
    pub pipeline: String,
    pub run_id: String,
    pub status: String,
    pub simulated: bool,
    /// problems selected (with a record or not)
    pub problems: usize,
    /// with a record and every node run
    pub problems_finished: usize,
    /// with a record and some node not run (budget, offline miss, interrupt)
    pub problems_incomplete: usize,
    /// selected but without a record: the run stopped before them
    pub problems_not_started: usize,
    pub samples: usize,
    /// attempts (all rounds and samples) that failed / were not run, and the latter's reasons
    pub failed_attempts: usize,
    pub not_run_attempts: usize,
    pub not_run_reasons: BTreeMap<String, usize>,
    /// `STOPPED EARLY (…): …` when the run did not run everything it selected
    pub stopped_early: Option<String>,
    /// A merged sharded run: its shard count, the shards given (with their status), the
    /// missing ones and the problems of all shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<super::load::Coverage>,
    pub rounds: Vec<RoundRow>,
    pub k_metrics: Vec<KMetric>,
    /// per-round accuracy: the first round (a) vs the last (b), paired over the problems with
    /// a verdict at both
    pub first_vs_last: Option<PairedDiff>,
    pub outcomes: Outcomes,
    pub failures: Vec<Failure>,
    pub not_run: Vec<NotRun>,
    pub groups: Vec<Group>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    /// the first run (a) and this one (b), each at its last round
    pub run_a: String,
    pub run_b: String,
    pub round_a: u32,
    pub round_b: u32,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub diff: PairedDiff,
}

/// How problems are grouped: by a problem-set column or by a regex over ids.
pub enum Grouping {
    Column(String),
    Regex(Regex),
}

impl Grouping {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.strip_prefix("re:") {
            Some(re) => Regex::new(re)
                .map(Grouping::Regex)
                .map_err(|e| format!("group_by: bad regex `{re}`: {e}")),
            None => Ok(Grouping::Column(s.to_string())),
        }
    }
    pub(super) fn group_of(&self, p: &Problem) -> String {
        match self {
            Grouping::Column(c) => p
                .columns
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("(no {c})")),
            Grouping::Regex(re) => re
                .captures(&p.id)
                .and_then(|c| c.get(1).or_else(|| c.get(0)))
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "(no match)".into()),
        }
    }
}

/// Per problem: among its samples with a verdict at round index `j`, the share right at `j`
/// (cumulative: right at some round ≤ `j`). None when no sample has a verdict at `j`.
pub fn share(p: &Problem, j: usize, cumulative: bool) -> Option<f64> {
    let (mut n, mut right) = (0usize, 0usize);
    for s in &p.samples {
        let Some(v) = s.get(j).and_then(Attempt::verdict) else {
            continue;
        };
        n += 1;
        let ok = if cumulative {
            s.iter().take(j + 1).any(|a| a.verdict() == Some(true))
        } else {
            v
        };
        right += usize::from(ok);
    }
    (n > 0).then(|| right as f64 / n as f64)
}

impl RoundRow {
    /// A token figure of this round as shown in tables: `~N` when some of it is estimated.
    pub fn tokens_text(&self, n: u64) -> String {
        if self.tokens_estimated {
            format!("~{n}")
        } else {
            n.to_string()
        }
    }
}

/// The footnote of a table that shows an estimated (`~`) token figure, if any does.
pub fn estimated_note(rows: &[RoundRow]) -> Option<&'static str> {
    rows.iter()
        .any(|r| r.tokens_estimated)
        .then_some("~ tokens estimated with the model's `tokenizer:`: its server reported no usage")
}

/// The report of a loaded run: its problems folded one at a time (`tally.rs`), as a
/// streamed report folds them from the run file.
pub fn run_report(
    run: &Run,
    grouping: Option<&Grouping>,
    bootstrap: usize,
    seed: u64,
) -> RunReport {
    let mut t = super::tally::Tally::new(run, grouping, &super::passk::vote_ks(run));
    for p in &run.problems {
        t.add(p);
    }
    t.finish(run, bootstrap, seed)
}

/// What the note on a run that stopped early is made of.
pub(super) struct StopFacts<'a> {
    pub problems: usize,
    pub finished: usize,
    pub incomplete: usize,
    pub not_started: usize,
    pub total: &'a Counts,
    /// Per round: (right, n) over the attempts with a verdict or a recorded error.
    pub recorded: &'a [(usize, usize)],
}

/// `STOPPED EARLY (interrupted): 3 of 5 problems finished, 2 not started; not run: 4
/// attempts (interrupted: 4)` for a run that stopped (or was stopped) before running all it
/// selected: its status says so, or some attempt or problem was not run. `IN PROGRESS` for a
/// live run's journal. A merged sharded run names its missing shards first (`shard 2/4
/// missing: the table covers 3 of 4 shards (…)`) and its unfinished ones as the cause
/// (`STOPPED EARLY (shard 1/4 interrupted): …`). None for a run that ran everything.
pub(super) fn stop_note(run: &Run, f: &StopFacts) -> Option<String> {
    // the shards of a merged run that were not given come first
    let missing = run
        .coverage
        .as_ref()
        .and_then(|c| c.missing_note(f.problems));
    let stop = stopped_note(run, f);
    match (missing, stop) {
        (Some(m), Some(s)) => Some(format!("{m}; {s}")),
        (m, s) => m.or(s),
    }
}

fn stopped_note(run: &Run, f: &StopFacts) -> Option<String> {
    let (finished, incomplete, not_started, total) =
        (f.finished, f.incomplete, f.not_started, f.total);
    let stopped = matches!(run.status.as_str(), "interrupted" | "truncated" | "running");
    if !stopped && total.not_run == 0 && incomplete + not_started == 0 {
        return None;
    }
    let unfinished_shards = run
        .coverage
        .as_ref()
        .map(|c| c.unfinished())
        .filter(|u| !u.is_empty());
    let cause = if let (true, Some(u)) = (stopped, &unfinished_shards) {
        u.join(", ")
    } else if stopped || total.not_run_reasons.is_empty() {
        run.status.clone()
    } else {
        let r: Vec<&str> = total.not_run_reasons.keys().map(String::as_str).collect();
        r.join(", ")
    };
    let only_recorded =
        !stopped && not_started == 0 && total.not_run_reasons.keys().all(|r| r == "recorded_error");
    let head = if run.status == "running" {
        "IN PROGRESS"
    } else if only_recorded {
        "RECORDED ERRORS"
    } else {
        "STOPPED EARLY"
    };
    let mut s = format!(
        "{head} ({cause}): {finished} of {} problems finished",
        f.problems
    );
    for (n, what) in [(incomplete, "incomplete"), (not_started, "not started")] {
        if n > 0 {
            s.push_str(&format!(", {n} {what}"));
        }
    }
    s.push_str(&format!(
        "; not run: {} attempt{}",
        total.not_run,
        if total.not_run == 1 { "" } else { "s" }
    ));
    if !total.not_run_reasons.is_empty() {
        s.push_str(&format!(" ({})", reasons_text(&total.not_run_reasons)));
    }
    if total.not_run_reasons.contains_key("recorded_error") {
        s.push_str(&recorded_errors_note(f.recorded));
    }
    Some(s)
}

/// How the imported run's own figure differs: the original tool counted the records it
/// wrote as errors as wrong answers, so its per-round share is over every row.
fn recorded_errors_note(recorded: &[(usize, usize)]) -> String {
    let shares: Vec<String> = recorded
        .iter()
        .map(|&(right, n)| {
            if n == 0 {
                "–".into()
            } else {
                format!("{:.1}% ({right}/{n})", 100.0 * right as f64 / n as f64)
            }
        })
        .collect();
    format!(
        ". Records the imported run wrote as errors have no answer: not run here and left out \
         of the accuracy; counted as wrong, as the original tool counted them, round by round: {}",
        shares.join(", ")
    )
}

/// Each run against the first, at each one's last round, on the problems they share that have
/// a verdict there.
pub fn comparisons(runs: &[Run], bootstrap: usize, seed: u64) -> Vec<Comparison> {
    let Some(base) = runs.first() else {
        return Vec::new();
    };
    let last_share = |r: &Run| -> HashMap<String, f64> {
        let Some(j) = r.rounds.len().checked_sub(1) else {
            return HashMap::new();
        };
        r.problems
            .iter()
            .filter_map(|p| Some((p.id.clone(), share(p, j, false)?)))
            .collect()
    };
    let a_map = last_share(base);
    let mut out = Vec::new();
    for other in &runs[1..] {
        let b_map = last_share(other);
        // distinct ids in the base run's order (a file may repeat an id)
        let mut seen = std::collections::HashSet::new();
        let common: Vec<&String> = base
            .problems
            .iter()
            .map(|p| &p.id)
            .filter(|id| b_map.contains_key(*id) && seen.insert(*id))
            .collect();
        let a: Vec<f64> = common.iter().map(|id| a_map[*id]).collect();
        let b: Vec<f64> = common.iter().map(|id| b_map[*id]).collect();
        out.push(Comparison {
            metric: PER_ROUND.into(),
            run_a: base.label.clone(),
            run_b: other.label.clone(),
            round_a: base.rounds.last().copied().unwrap_or(0),
            round_b: other.rounds.last().copied().unwrap_or(0),
            only_in_a: a_map.len().saturating_sub(common.len()),
            only_in_b: b_map.len().saturating_sub(common.len()),
            diff: paired_bootstrap(&a, &b, bootstrap, seed),
        });
    }
    out
}
