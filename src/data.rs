//! Problem sets: reading an `id,question,answer` CSV (`solution` and extra columns kept) in one
//! streamed pass, applying the selection filters (`question_ids`, `exclude_question_ids`,
//! `index_range`) with the rules of DESIGN.md, and noticing rows that repeat a question.
//! Rows the filters leave out keep only `id`, `question` and `answer` (what an import checks
//! records against), so a large file with `--index_range 0-9` holds ten whole rows. After the
//! filters, `--shard I/N` ([`Shard`]) keeps a deterministic 1/N of the selection by a hash
//! of the question text. Also the size-capped reading of small text inputs (prompt files).
//! It does not fetch data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

mod row;
use row::Row;

use serde::{Deserialize, Serialize};

/// One problem: its CSV position and every column by name. Held compactly (one text with
/// the row's values, the column names shared by every row of the set): a selection of
/// 100,000 rows is ~0.2 KB a row. [`Problem::fields`] makes the map nodes render with on first
/// use (the scheduler's open problems).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// 0-based position in the CSV (what `index_range` counts).
    pub index: usize,
    pub id: String,
    #[serde(rename = "fields")]
    row: Row,
    /// Boxed: a problem not yet opened (every row the selection holds) is 16 bytes smaller.
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

/// A loaded CSV before filtering.
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

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a problem CSV, every row whole. Errors name the file and the line.
pub fn load(path: &Path) -> Result<ProblemSet, LoadError> {
    load_keeping(path, &|_, _| true)
}

/// Reads a problem CSV for these filters: the rows they may select whole, the others as
/// `id`, `question` and `answer` only.
pub fn load_for(path: &Path, f: &Filters) -> Result<ProblemSet, LoadError> {
    let range = f.index_range.as_deref().and_then(|r| parse_range(r).ok());
    let ids: Option<HashSet<&str>> = f
        .question_ids
        .as_ref()
        .map(|v| v.iter().map(String::as_str).collect());
    let ex: HashSet<&str> = f
        .exclude_question_ids
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    load_keeping(path, &|index, id| {
        !ex.contains(id)
            && ids.as_ref().is_none_or(|s| s.contains(id))
            && range.is_none_or(|(a, b)| (a..=b).contains(&index))
    })
}

const SLIM: [&str; 3] = ["id", "question", "answer"];

fn load_keeping(path: &Path, keep: &dyn Fn(usize, &str) -> bool) -> Result<ProblemSet, LoadError> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| LoadError::Unreadable(format!("cannot read {shown}: {e}")))?;
    let mut hashing = Hashing {
        inner: std::io::BufReader::with_capacity(1 << 16, file),
        hasher: blake3::Hasher::new(),
    };
    let content = LoadError::Content;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(&mut hashing);
    let headers = rdr
        .headers()
        .map_err(|e| content(format!("{shown}:1: bad CSV header: {e}")))?
        .clone();
    let columns: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    let mut seen_cols = HashSet::new();
    for c in &columns {
        if c.is_empty() {
            return Err(content(format!(
                "{shown}:1: the header has an empty column name; name every column"
            )));
        }
        if !seen_cols.insert(c.as_str()) {
            return Err(content(format!(
                "{shown}:1: column `{c}` appears twice in the header; rename or remove one (a row would keep only one of the values)"
            )));
        }
    }
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Err(content(format!(
            "{shown}:1: missing column(s) {}; a problem set needs the header `id,question,answer` (`solution` and extra columns are optional and kept)",
            missing.join(", ")
        )));
    }
    let id_col = columns.iter().position(|c| c == "id").expect("checked");
    let q_col = columns
        .iter()
        .position(|c| c == "question")
        .expect("checked");
    // the column names, shared by every row (whole, or the slim id/question/answer)
    let full: Arc<[Box<str>]> = columns.iter().map(|c| c.as_str().into()).collect();
    let slim_at: Vec<usize> = (0..columns.len())
        .filter(|&i| SLIM.contains(&columns[i].as_str()))
        .collect();
    let slim: Arc<[Box<str>]> = slim_at
        .iter()
        .map(|&i| columns[i].as_str().into())
        .collect();
    let mut problems = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut rec = csv::StringRecord::new();
    let mut index = 0;
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                return Err(content(format!(
                    "{shown}:{line}: bad CSV row: {e}; every row needs {} fields, quoted when it holds a comma, quote or newline",
                    columns.len()
                )));
            }
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let id = rec.get(id_col).unwrap_or("").trim().to_string();
        if id.is_empty() {
            return Err(content(format!(
                "{shown}:{line}: empty id; give every row an id"
            )));
        }
        if !seen_ids.insert(id.clone()) {
            return Err(content(format!(
                "{shown}:{line}: duplicate id `{id}`; ids must be unique"
            )));
        }
        if rec.get(q_col).unwrap_or("").trim().is_empty() {
            return Err(content(format!(
                "{shown}:{line}: problem `{id}` has an empty question; fill it in or remove the row"
            )));
        }
        let whole = keep(index, &id);
        let row = if whole {
            Row::new(full.clone(), rec.iter())
        } else {
            Row::new(
                slim.clone(),
                slim_at.iter().map(|&i| rec.get(i).unwrap_or("")),
            )
        };
        problems.push(Problem {
            index,
            id,
            row,
            map: Default::default(),
        });
        index += 1;
    }
    drop(rdr);
    // the hash covers the whole file, also what the CSV reader did not need to read
    std::io::copy(&mut hashing, &mut std::io::sink())
        .map_err(|e| LoadError::Unreadable(format!("cannot read {shown}: {e}")))?;
    if problems.is_empty() {
        return Err(content(format!(
            "{shown}: no rows; add at least one problem under the header"
        )));
    }
    Ok(ProblemSet {
        columns,
        problems,
        file_hash: hashing.hasher.finalize().to_hex().to_string(),
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

/// Applies the filters. Each error is one message; all are returned.
pub fn select(set: &ProblemSet, f: &Filters) -> Result<Vec<Problem>, Vec<String>> {
    let mut errs = Vec::new();
    let by_id: HashMap<&str, &Problem> = set.problems.iter().map(|p| (p.id.as_str(), p)).collect();
    if f.index_range.is_some() && f.question_ids.is_some() {
        errs.push("index_range and question_ids exclude each other; use one of them".to_string());
    }
    let mut chosen: Vec<Problem> = if let Some(ids) = &f.question_ids {
        let mut v = Vec::new();
        for id in ids {
            match by_id.get(id.as_str()) {
                Some(p) => v.push((*p).clone()),
                None => errs.push(format!("question_ids: unknown id `{id}`")),
            }
        }
        v.sort_by_key(|p| p.index);
        v.dedup_by_key(|p| p.index);
        v
    } else if let Some(r) = &f.index_range {
        match parse_range(r) {
            Ok((_, b)) if b >= set.problems.len() => {
                errs.push(format!(
                    "index_range `{r}` reaches past the last row (the set has {} rows: 0-{})",
                    set.problems.len(),
                    set.problems.len() - 1
                ));
                Vec::new()
            }
            Ok((a, b)) => set.problems[a..=b].to_vec(),
            Err(e) => {
                errs.push(e);
                Vec::new()
            }
        }
    } else {
        set.problems.clone()
    };
    if let Some(ex) = &f.exclude_question_ids {
        for id in ex {
            if !by_id.contains_key(id.as_str()) {
                errs.push(format!("exclude_question_ids: unknown id `{id}`"));
            }
        }
        let ex: HashSet<&str> = ex.iter().map(|s| s.as_str()).collect();
        chosen.retain(|p| !ex.contains(p.id.as_str()));
    }
    if errs.is_empty() && chosen.is_empty() {
        errs.push("the filters select no problem".to_string());
    }
    if errs.is_empty() {
        Ok(chosen)
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
    pub fn select(&self, problems: &[Problem]) -> Vec<Problem> {
        problems.iter().filter(|p| self.holds(p)).cloned().collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Groups of ids whose question text is identical (they would share cache entries).
pub fn duplicate_questions(problems: &[Problem]) -> Vec<Vec<String>> {
    let mut by_q: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in problems {
        by_q.entry(p.question().trim())
            .or_default()
            .push(p.id.clone());
    }
    by_q.into_values().filter(|v| v.len() > 1).collect()
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

    fn set(n: usize) -> ProblemSet {
        ProblemSet {
            columns: REQUIRED_COLUMNS.iter().map(|s| s.to_string()).collect(),
            problems: (0..n)
                .map(|i| {
                    Problem::new(
                        i,
                        format!("p{i}"),
                        BTreeMap::from([("question".to_string(), format!("q{}", i % 3))]),
                    )
                })
                .collect(),
            file_hash: String::new(),
        }
    }

    #[test]
    fn index_range_is_inclusive_and_zero_based() {
        let f = Filters {
            index_range: Some("1-2".into()),
            ..Default::default()
        };
        let ids: Vec<_> = select(&set(5), &f)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["p1", "p2"]);
    }

    #[test]
    fn rejects_bad_filters() {
        let s = set(3);
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
                index_range: Some("2-1".into()),
                ..Default::default()
            },
        ] {
            assert!(select(&s, &f).is_err(), "{f:?}");
        }
    }

    #[test]
    fn exclusions_apply_last() {
        let f = Filters {
            index_range: Some("0-2".into()),
            exclude_question_ids: Some(vec!["p1".into()]),
            ..Default::default()
        };
        let ids: Vec<_> = select(&set(5), &f)
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["p0", "p2"]);
    }

    #[test]
    fn shards_partition_a_selection_and_keep_repeated_questions_together() {
        let s = set(40);
        let mut seen = Vec::new();
        for i in 0..4 {
            let piece = Shard { index: i, count: 4 }.select(&s.problems);
            for p in &piece {
                // p{k} and p{k+3} share a question: the same piece
                let twin = piece
                    .iter()
                    .filter(|q| q.question() == p.question())
                    .count();
                let all = s
                    .problems
                    .iter()
                    .filter(|q| q.question() == p.question())
                    .count();
                assert_eq!(twin, all, "{}", p.id);
            }
            seen.extend(piece.into_iter().map(|p| p.id));
        }
        seen.sort();
        let mut all: Vec<String> = s.problems.iter().map(|p| p.id.clone()).collect();
        all.sort();
        assert_eq!(seen, all, "every problem in exactly one shard");
        // the piece does not depend on the row's position
        let mut rev = s.problems.clone();
        rev.reverse();
        let a: Vec<String> = Shard { index: 1, count: 4 }
            .select(&s.problems)
            .into_iter()
            .map(|p| p.id)
            .collect();
        let mut b: Vec<String> = Shard { index: 1, count: 4 }
            .select(&rev)
            .into_iter()
            .map(|p| p.id)
            .collect();
        b.reverse();
        assert_eq!(a, b);
        assert_eq!(Shard { index: 0, count: 1 }.select(&s.problems).len(), 40);
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
        assert_eq!(
            duplicate_questions(&set(4).problems),
            vec![vec!["p0".to_string(), "p3".to_string()]]
        );
    }
}
