//! Per problem and sample: outcome classes between the first and last rounds (over the
//! attempts with a verdict), the problems with failed attempts and those with attempts that
//! were never run (each listed with its error or reason); classed as the problems pass, in
//! `tally.rs`. The ids of a class are one text ([`IdList`]): a report of 100,000 problems
//! holds about ten bytes a problem for them, not a `String` each.

use serde::Serialize;

/// Ids in the order they were added, held as one text and where each ends; serialized as a
/// list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdList {
    text: String,
    ends: Vec<u32>,
}

impl IdList {
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        self.ends
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(a, &b)| self.text.get(a as usize..b as usize).unwrap_or(""))
    }
}

impl Serialize for IdList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<const N: usize> PartialEq<[&str; N]> for IdList {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.iter().eq(other.iter().copied())
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes {
    pub first_round: u32,
    pub last_round: u32,
    /// wrong at the first round, right at the last
    pub improved: IdList,
    /// right at the first round, wrong at the last
    pub regressed: IdList,
    pub always_right: IdList,
    pub never_right: IdList,
    /// same verdict at the first and last rounds, a different one in between
    pub mixed: IdList,
    /// no verdict at the first or the last round (failed or not run): not classed
    pub no_verdict: IdList,
}

/// A problem with failed attempts (or whose first round has no verdict of its own).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: String,
    pub status: String,
    pub failed_attempts: usize,
    pub error: String,
}

/// A problem with attempts that were never run.
#[derive(Debug, Clone, Serialize)]
pub struct NotRun {
    pub id: String,
    pub status: String,
    pub not_run_attempts: usize,
    /// the distinct reasons, comma-separated
    pub reason: String,
}
