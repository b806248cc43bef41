//! Problem sets: an `id,question,answer` CSV (`solution` and extra columns kept), checked in
//! one streamed pass and indexed by row ([`ProblemFile`], in `file.rs`: a run holds 16 bytes
//! a row and reads a row whole when its problem opens), the selection filters
//! (`question_ids`, `exclude_question_ids`, `index_range`) with the rules of DESIGN.md, and
//! the rows that repeat a question ([`Selection::duplicate_questions`]). After the filters,
//! `--shard I/N` ([`Shard`]) keeps a deterministic 1/N of the selection by a hash of the
//! question text. Also the size-capped reading of small text inputs (prompt files). It does
//! not fetch data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

mod file;
mod row;
pub use file::{ProblemFile, Selection};
use row::Row;

use serde::{Deserialize, Serialize};

/// One problem: its CSV position and every column by name. Held compactly (one text with
/// the row's values, the column names shared by every row of the set). [`Problem::fields`]
/// makes the map nodes render with on first use.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// 0-based position in the CSV (what `index_range` counts).
    pub index: usize,
    pub id: String,
    #[serde(rename = "fields")]
    row: Row,
    /// Boxed: a problem whose map was never made is 16 bytes smaller.
    #[serde(skip)]
    #[allow(clippy::box_collection)]
    map: std::sync::OnceLock<Box<BTreeMap<String, String>>>,
}

impl Problem {
    /// A problem from its columns by name.
    pub fn new(index: usize, id: String, fields: BTreeMap<String, String>) -> Problem {
        let names: Arc<[Box<str>]> = fields.keys().map(|k| k.as_str().into()).collect();
        Problem {
            index,
            id,
            row: Row::new(names, fields.values().map(String::as_str)),
            map: Box::new(fields).into(),
        }
    }

    /// Every column by name (made on first use, then kept with this copy of the problem).
    pub fn fields(&self) -> &BTreeMap<String, String> {
        self.map.get_or_init(|| {
            let map = self.row.sorted().into_iter();
            Box::new(map.map(|(k, v)| (k.to_string(), v.to_string())).collect())
        })
    }

    /// One column's value.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.row.get(column)
    }

    pub fn question(&self) -> &str {
        self.get("question").unwrap_or("")
    }
    pub fn answer(&self) -> &str {
        self.get("answer").unwrap_or("")
    }
}

/// A CSV read whole ([`load`]; a run reads it as a [`ProblemFile`]).
#[derive(Debug, Clone)]
pub struct ProblemSet {
    pub columns: Vec<String>,
    pub problems: Vec<Problem>,
    /// blake3 of the file's bytes (recorded in config.json).
    pub file_hash: String,
}

/// The selection filters, as written in YAML (`problems:`) and on the command line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_question_ids: Option<Vec<String>>,
    /// `a-b`, 0-based and inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_range: Option<String>,
}

/// Columns every problem set has; `solution` is optional (templates that use it need it).
pub const REQUIRED_COLUMNS: [&str; 3] = ["id", "question", "answer"];

/// Why a problem set did not load: the file could not be read (fix the path), or its
/// content is wrong (fix the file; the message names its line).
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    Unreadable(String),
    Content(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Unreadable(m) | LoadError::Content(m) => write!(f, "{m}"),
        }
    }
}

impl From<LoadError> for String {
    fn from(e: LoadError) -> String {
        e.to_string()
    }
}

/// Largest prompt file read (a template, not a corpus).
pub const MAX_PROMPT_BYTES: u64 = 4 << 20;

/// Reads a UTF-8 text file of at most `max` bytes.
pub fn read_text_capped(path: &Path, max: u64) -> Result<String, String> {
    let f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut s = String::new();
    f.take(max + 1)
        .read_to_string(&mut s)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if s.len() as u64 > max {
        return Err(format!("{} is larger than {max} bytes", path.display()));
    }
    Ok(s)
}

/// Reads a problem CSV, every row whole (the problem sets a dataset pull checks; a run reads
/// rows as its problems open: [`ProblemFile`]). Errors name the file and the line.
pub fn load(path: &Path) -> Result<ProblemSet, LoadError> {
    let file = ProblemFile::open(path)?;
    let problems = (0..file.len())
        .map(|i| file.problem(i))
        .collect::<Result<_, _>>()?;
    Ok(ProblemSet {
        columns: file.columns,
        problems,
        file_hash: file.file_hash,
    })
}

/// Parses `a-b` (0-based, inclusive).
pub fn parse_range(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("index_range `{s}` is not of the form a-b (0-based, inclusive), e.g. 0-4");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    if a > b {
        return Err(format!("index_range `{s}`: start {a} is after end {b}"));
    }
    Ok((a, b))
}

/// Applies the filters. Each error is one message; all are returned. The ids the filters
/// name are looked up in one pass over the file; the selection keeps the file's order.
pub fn select(file: &ProblemFile, f: &Filters) -> Result<Selection, Vec<String>> {
    let mut errs = Vec::new();
    let named: Vec<&str> = f
        .question_ids
        .iter()
        .chain(&f.exclude_question_ids)
        .flatten()
        .map(String::as_str)
        .collect();
    let by_id = if named.is_empty() {
        HashMap::new()
    } else {
        file.find(&named).map_err(|e| vec![e.to_string()])?
    };
    if f.index_range.is_some() && f.question_ids.is_some() {
        errs.push("index_range and question_ids exclude each other; use one of them".to_string());
    }
    let n = file.len();
    let mut chosen: Vec<u32> = if let Some(ids) = &f.question_ids {
        let mut v = Vec::new();
        for id in ids {
            match by_id.get(id.as_str()) {
                Some(&i) => v.push(i as u32),
                None => errs.push(format!("question_ids: unknown id `{id}`")),
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    } else if let Some(r) = &f.index_range {
        match parse_range(r) {
            Ok((_, b)) if b >= n => {
                errs.push(format!(
                    "index_range `{r}` reaches past the last row (the set has {n} rows: 0-{})",
                    n - 1
                ));
                Vec::new()
            }
            Ok((a, b)) => (a as u32..=b as u32).collect(),
            Err(e) => {
                errs.push(e);
                Vec::new()
            }
        }
    } else {
        (0..n as u32).collect()
    };
    if let Some(ex) = &f.exclude_question_ids {
        let mut out = HashSet::new();
        for id in ex {
            match by_id.get(id.as_str()) {
                Some(&i) => {
                    out.insert(i as u32);
                }
                None => errs.push(format!("exclude_question_ids: unknown id `{id}`")),
            }
        }
        chosen.retain(|i| !out.contains(i));
    }
    if errs.is_empty() && chosen.is_empty() {
        errs.push("the filters select no problem".to_string());
    }
    if errs.is_empty() {
        Ok(Selection::of(file, chosen))
    } else {
        Err(errs)
    }
}

/// One of N pieces of a selection (`--shard I/N`, I 0-based: 0 ≤ I < N ≤ [`Shard::MAX_COUNT`]).
/// A problem belongs to the piece its question text hashes to (blake3 of the question as the
/// problem set gives it), so the split does not depend on row order or on the filters, and
/// rows with the same question land in one piece (they share cache entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Most pieces (a sane cap: more than any array job of problems needs).
    pub const MAX_COUNT: u32 = 10_000;

    /// Parses `I/N` (0-based I, as Kubernetes' `$JOB_COMPLETION_INDEX` and Slurm's
    /// `--array=0-(N-1)` give it).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || {
            format!(
                "`{s}` is not a shard: give I/N, I 0-based (0 to N-1) and N from 1 to {}, e.g. --shard 0/4",
                Shard::MAX_COUNT
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || count > Shard::MAX_COUNT {
            return Err(format!(
                "shard `{s}`: the count N must be from 1 to {}",
                Shard::MAX_COUNT
            ));
        }
        if index >= count {
            return Err(format!(
                "shard `{s}`: the index is 0-based, so for {count} shard(s) it is 0 to {} (a Slurm array numbered from 1 passes $((SLURM_ARRAY_TASK_ID - 1)))",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The piece a question belongs to.
    pub fn of_question(question: &str, count: u32) -> u32 {
        let h = blake3::hash(question.as_bytes());
        let first: [u8; 8] = h.as_bytes()[..8].try_into().expect("8 bytes");
        (u64::from_le_bytes(first) % u64::from(count.max(1))) as u32
    }

    /// Whether this piece holds the problem.
    pub fn holds(&self, p: &Problem) -> bool {
        Shard::of_question(p.question(), self.count) == self.index
    }

    /// This piece of a selection (its order kept). May be empty: a small set split many ways.
    pub fn select(&self, problems: &Selection) -> Result<Selection, LoadError> {
        problems.filtered(|p| self.holds(p))
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_solution_column_is_optional() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.csv");
        std::fs::write(&f, "id,question,answer\na,What is 1+1?,2\n").unwrap();
        let s = load(&f).unwrap();
        assert_eq!(s.columns, ["id", "question", "answer"]);
        assert_eq!(s.problems[0].fields()["answer"], "2");
        std::fs::write(&f, "id,question\na,q\n").unwrap();
        let e = load(&f).unwrap_err();
        assert!(e.to_string().contains("missing column(s) answer"), "{e}");
    }

    /// `n` problems p0.. whose questions repeat every three rows, in a file kept by `d`.
    fn set(d: &tempfile::TempDir, n: usize) -> ProblemFile {
        let f = d.path().join(format!("p{n}.csv"));
        let mut s = String::from("id,question,answer\n");
        for i in 0..n {
            s.push_str(&format!("p{i},q{},{i}\n", i % 3));
        }
        std::fs::write(&f, s).unwrap();
        ProblemFile::open(&f).unwrap()
    }

    fn ids(s: &Selection) -> Vec<String> {
        s.iter().map(|p| p.unwrap().id).collect()
    }

    #[test]
    fn index_range_is_inclusive_and_zero_based() {
        let d = tempfile::tempdir().unwrap();
        let f = Filters {
            index_range: Some("1-2".into()),
            ..Default::default()
        };
        assert_eq!(ids(&select(&set(&d, 5), &f).unwrap()), ["p1", "p2"]);
    }

    #[test]
    fn question_ids_select_in_file_order() {
        let d = tempfile::tempdir().unwrap();
        let f = Filters {
            question_ids: Some(vec!["p3".into(), "p1".into(), "p3".into()]),
            ..Default::default()
        };
        let s = select(&set(&d, 5), &f).unwrap();
        assert_eq!(ids(&s), ["p1", "p3"]);
        assert_eq!(s.get(1).unwrap().index, 3);
        assert_eq!(s.get(1).unwrap().answer(), "3");
    }

    #[test]
    fn rejects_bad_filters() {
        let d = tempfile::tempdir().unwrap();
        let s = set(&d, 3);
        for f in [
            Filters {
                index_range: Some("0-3".into()),
                ..Default::default()
            },
            Filters {
                question_ids: Some(vec!["zz".into()]),
                ..Default::default()
            },
            Filters {
                index_range: Some("0-1".into()),
                question_ids: Some(vec!["p0".into()]),
                ..Default::default()
            },
            Filters {
                question_ids: Some(vec!["p0".into()]),
                exclude_question_ids: Some(vec!["p0".into()]),
                ..Default::default()
            },
            Filters {
                exclude_question_ids: Some(vec!["zz".into()]),
                ..Default::default()
            },
            Filters {
                index_range: Some("2-1".into()),
                ..Default::default()
            },
        ] {
            assert!(select(&s, &f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn exclusions_apply_last() {
        let d = tempfile::tempdir().unwrap();
        let f = Filters {
            index_range: Some("0-2".into()),
            exclude_question_ids: Some(vec!["p1".into()]),
            ..Default::default()
        };
        assert_eq!(ids(&select(&set(&d, 5), &f).unwrap()), ["p0", "p2"]);
    }

    #[test]
    fn shards_partition_a_selection_and_keep_repeated_questions_together() {
        let d = tempfile::tempdir().unwrap();
        let file = set(&d, 40);
        let all_sel = select(&file, &Filters::default()).unwrap();
        let all: Vec<Problem> = all_sel.iter().map(Result::unwrap).collect();
        let mut seen = Vec::new();
        for i in 0..4 {
            let piece = Shard { index: i, count: 4 }.select(&all_sel).unwrap();
            let piece: Vec<Problem> = piece.iter().map(Result::unwrap).collect();
            for p in &piece {
                // p{k} and p{k+3} share a question: the same piece
                let twin = piece
                    .iter()
                    .filter(|q| q.question() == p.question())
                    .count();
                let same = all.iter().filter(|q| q.question() == p.question()).count();
                assert_eq!(twin, same, "{}", p.id);
            }
            seen.extend(piece.into_iter().map(|p| p.id));
        }
        seen.sort();
        let mut every: Vec<String> = all.iter().map(|p| p.id.clone()).collect();
        every.sort();
        assert_eq!(seen, every, "every problem in exactly one shard");
        // the piece does not depend on the row's position: a question's piece is its hash's
        for p in &all {
            let k = Shard::of_question(p.question(), 4);
            assert!(Shard { index: k, count: 4 }.holds(p));
        }
        let whole = Shard { index: 0, count: 1 }.select(&all_sel).unwrap();
        assert_eq!(whole.len(), 40);
    }

    #[test]
    fn shard_values_are_checked() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(Shard::parse(" 0 / 1 "), Ok(Shard { index: 0, count: 1 }));
        for bad in [
            "4/4", "1/0", "0/0", "-1/4", "a/4", "1", "1/4/2", "0/10001", "",
        ] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert!(Shard::parse("4/4").unwrap_err().contains("0 to 3"));
    }

    #[test]
    fn finds_repeated_questions() {
        let d = tempfile::tempdir().unwrap();
        let s = select(&set(&d, 4), &Filters::default()).unwrap();
        assert_eq!(
            s.duplicate_questions().unwrap(),
            vec![vec!["p0".to_string(), "p3".to_string()]]
        );
        // ordered by the question text, each group in the file's order
        let s = select(&set(&d, 7), &Filters::default()).unwrap();
        assert_eq!(
            s.duplicate_questions().unwrap(),
            vec![vec!["p0", "p3", "p6"], vec!["p1", "p4"], vec!["p2", "p5"]]
        );
    }
}
