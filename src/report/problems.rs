//! Per problem and sample: outcome classes between the first and last rounds (over the
//! attempts with a verdict), the problems with failed attempts and those with attempts that
//! were never run (each listed with its error or reason); classed as the problems pass, in
//! `tally.rs`. The ids of a class are one text ([`IdList`]): a report holds an id's bytes
//! and one more for each, not a `String`.

use serde::Serialize;

/// Ids in the order they were added, held as one text and the length of each (one byte;
/// an id of 255 bytes or more has its length in `long`); serialized as a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdList {
    text: String,
    lens: Vec<u8>,
    long: Vec<u32>,
}

impl IdList {
    pub fn push(&mut self, id: &str) {
        self.text.push_str(id);
        match u8::try_from(id.len()) {
            Ok(n) if n < u8::MAX => self.lens.push(n),
            _ => {
                self.lens.push(u8::MAX);
                self.long.push(u32::try_from(id.len()).unwrap_or(u32::MAX));
            }
        }
    }
    pub fn len(&self) -> usize {
        self.lens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let mut long = self.long.iter();
        let mut at = 0usize;
        self.lens.iter().map(move |&n| {
            let n = match n {
                u8::MAX => long.next().copied().unwrap_or(0) as usize,
                n => n as usize,
            };
            let id = self.text.get(at..at + n).unwrap_or("");
            at += n;
            id
        })
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

#[cfg(test)]
mod tests {
    use super::IdList;

    #[test]
    fn id_list_keeps_short_long_and_empty_ids_in_order() {
        let long = "x".repeat(300);
        let edge = "y".repeat(255);
        let ids = ["a", "", long.as_str(), "bc", edge.as_str(), "é"];
        let mut l = IdList::default();
        for id in ids {
            l.push(id);
        }
        assert_eq!(l.len(), 6);
        assert!(l.iter().eq(ids.iter().copied()));
        assert_eq!(
            serde_json::to_value(&l).unwrap(),
            serde_json::json!(ids.to_vec())
        );
    }
}
