//! Answers imported from an earlier run (`--load_run`, `--load_initial_reasoning`), handed to
//! the call layer: a node's call that misses the cache is answered by the recorded output of
//! the same problem, sample, node kind and round, and written as that node's entry under this
//! pipeline's own key, so the imported run's work is a cache hit of this pipeline from then
//! on. Because the run itself renders every prompt, round N's key includes the summaries of
//! rounds before it, as a fresh run's would. A record the earlier run wrote as an error
//! answers with `NotSent::RecordedError`: not run, no verdict. Who builds the table (and
//! checks the records against the problem set) is the caller's business (`exec::import`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::llm::Usage;

use super::Site;

/// What an earlier run recorded for one node.
#[derive(Debug, Clone)]
pub enum Imported {
    Answer {
        text: String,
        /// The reasoning field, when the record kept it apart from `text`.
        reasoning: Option<String>,
        /// `unreported` when the record has none.
        finish_reason: String,
        usage: Option<Usage>,
    },
    /// The earlier run wrote an error here: nothing to import.
    RecordedError(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct At {
    problem: String,
    sample: u32,
    kind: String,
    round: u32,
}

/// The imported records of one run, by problem, sample, node kind and round.
#[derive(Debug, Default)]
pub struct Imports {
    /// The file they came from (named in each output's `model`).
    pub source: String,
    entries: HashMap<At, Imported>,
    /// (kind, round) → how many answers this run used.
    used: Mutex<BTreeMap<(String, u32), usize>>,
}

impl Imports {
    pub fn new(source: String) -> Imports {
        Imports {
            source,
            ..Default::default()
        }
    }

    pub fn insert(&mut self, problem: &str, sample: u32, kind: &str, round: u32, rec: Imported) {
        let at = At {
            problem: problem.to_string(),
            sample,
            kind: kind.to_string(),
            round,
        };
        self.entries.insert(at, rec);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records with an answer (not written as errors).
    pub fn answers(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Imported::Answer { .. }))
            .count()
    }

    /// The record for a node call, counted as used.
    pub fn lookup(&self, site: &Site<'_>) -> Option<&Imported> {
        let at = At {
            problem: site.problem_id.to_string(),
            sample: site.sample,
            kind: site.node_kind.to_string(),
            round: site.round,
        };
        let found = self.entries.get(&at)?;
        if let (Imported::Answer { .. }, Ok(mut u)) = (found, self.used.lock()) {
            *u.entry((at.kind, at.round)).or_default() += 1;
        }
        Some(found)
    }

    /// (kind, round) → records this run used.
    pub fn used(&self) -> BTreeMap<(String, u32), usize> {
        self.used.lock().map(|u| u.clone()).unwrap_or_default()
    }
}
