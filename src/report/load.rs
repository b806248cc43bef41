//! The report's model of a run (`records.rs` fills it from any run `runfile` opens:
//! distill's run directories and results files, the original tool's through its adapter;
//! `config.json` for prices, the selected problems and the problem-set path), by the round
//! rules of the report: a round is the `round` of a graded `reason`/`continue` node (`grade`
//! nodes when a pipeline grades only that way); a skipped round carries the previous attempt's
//! answer and verdict forward (`Carried`); a failed node (an error after sending) is `Failed`
//! and a node that never ran is `NotRun` with its reason (`budget`, `interrupted`,
//! `offline_miss`, …): neither has a verdict. A problem selected in `config.json` but absent
//! from the records (the run stopped before it finished) is `NotRun` at every round.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

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
    /// Its row in the problem set (None: selected but without a record); shards merge in
    /// this order, the order of one unsharded run.
    #[serde(skip)]
    pub index: Option<usize>,
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

#[derive(Debug, Clone, Default, Serialize)]
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
    /// This run is one shard of a sharded run (`--shard I/N`, from its config.json).
    pub shard: Option<crate::runfile::config::ShardRecord>,
    /// This run is the merge of a sharded run's shards (`shards.rs`): which were there.
    pub coverage: Option<Coverage>,
}

/// A selected problem without a record: not run at every round, for `reason`.
pub fn missing_problem(id: &str, samples: usize, rounds: usize, reason: &str) -> Problem {
    let err = "no record (the run stopped before this problem finished)";
    Problem {
        id: id.to_string(),
        index: None,
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

/// Which shards a merged run holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Coverage {
    pub count: u32,
    /// The shards given: index → the status of its run (`complete`, `interrupted`, …).
    pub present: BTreeMap<u32, String>,
    /// The shards not given (0-based indices).
    pub missing: Vec<u32>,
    /// Problems in the whole selection (every shard together).
    pub problems_total: usize,
}

impl Coverage {
    /// `shard 2/4 missing: the table covers 3 of 4 shards (7 of 10 problems)`; None when
    /// every shard is there.
    pub fn missing_note(&self, problems: usize) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .missing
            .iter()
            .map(|i| format!("{i}/{}", self.count))
            .collect();
        let word = if names.len() == 1 { "shard" } else { "shards" };
        Some(format!(
            "{word} {} missing: the table covers {} of {} shards ({problems} of {} problems)",
            names.join(", "),
            self.present.len(),
            self.count,
            self.problems_total
        ))
    }

    /// The shards given that did not end complete: `shard 1/4 interrupted`.
    pub fn unfinished(&self) -> Vec<String> {
        self.present
            .iter()
            .filter(|(_, s)| s.as_str() != "complete")
            .map(|(i, s)| format!("shard {i}/{} {s}", self.count))
            .collect()
    }
}
