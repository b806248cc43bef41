//! The run directory's record of finished work, readable at every instant, and its typed
//! records (`records`). One owner: this module writes it and reads it back.
//!
//! Format:
//! - `results.jsonl`: a journal, one JSON object per line, whole lines appended; the lines
//!   of the nodes that finish together are written at once, before the scheduler waits
//!   again (`Journal::flush`): `{"record":"run",…}` (run id, pipeline, node order, samples), then as
//!   the run goes `{"record":"open",…}` when a problem starts, `{"record":"node",…}` when
//!   one of its node instances ends (the whole node record, outputs included), `{"record":
//!   "close",…}` when the problem is done, and `{"record":"end","status":…}`. A SIGKILL, an
//!   OOM kill or a power loss can cut at most the line being written; readers skip it.
//! - `results.json`: made from the journal as problems close (in CSV order, behind the
//!   problems still open: `.results.json.tmp`) and renamed into place at the end, so it
//!   appears once, whole (the writer keeps the journal places of open problems only):
//!   `{"run_id", "pipeline", "problems": [one problem a line], "status"}`. Its presence
//!   means the run ended and wrote everything.
//! - `run.lock`: held (`flock`) by the live run. No end record and a free lock mean the run
//!   was killed: it reads as `interrupted`, every node that finished counted.
//!
//! Readers (`distill report`, `view`, `grade`, `runs`, `--resume`, the importers) open any of
//! these, or a results file of either tool, with [`open`] (`read.rs`): one streamed reader of
//! typed records; the original tool's files come through its one adapter (`original.rs`).
//! What does not belong here: what a report or dashboard does with the records.

pub mod config;
mod journal;
pub mod original;
pub mod original_out;
pub mod read;
pub mod records;

pub use read::{Format, RunFile, Texts, Unreadable, open};

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

pub const RESULTS: &str = "results.json";
pub const JOURNAL: &str = "results.jsonl";
pub const LOCK: &str = "run.lock";
/// results.json while it is written (renamed into place at the end of the run).
const RESULTS_TMP: &str = ".results.json.tmp";
/// The cache entries a run used, one key a line (for `cache gc` and `cache export`).
pub const KEYS: &str = "cache_keys.txt";
/// The journal's write buffer: several finished nodes' lines, one write.
const BUFFER: usize = 256 * 1024;

/// The live run's journal and lock.
pub struct Journal {
    dir: PathBuf,
    /// Lines are buffered and written by [`Journal::flush`], which the scheduler calls
    /// before it waits again: nodes that finish together are one write.
    file: std::io::BufWriter<File>,
    /// Held for the run's life (the lock is released when the file is closed or the
    /// process dies, however it dies).
    _lock: File,
    run_id: String,
    /// Where each problem's lines are, noted as they are written, until the problem is in
    /// results.json; and the file's length.
    places: journal::Scan,
    at: u64,
    /// results.json in the making (`.results.json.tmp`): the problems before every open one,
    /// in CSV order, written as they close, so that the places of a finished problem are not
    /// kept; renamed into results.json at the end.
    results: Option<journal::Results>,
    /// The journal read back for `results`.
    reader: Option<File>,
    /// The largest problem index opened, and the largest written to `results`.
    max_open: Option<usize>,
    written: Option<usize>,
    /// A problem opened before one already written (not in CSV order): results.json is then
    /// written anew from the whole journal at the end.
    unordered: bool,
}

impl Journal {
    /// Creates the journal and takes the run's lock. `nodes`: the node ids in pipeline
    /// order (records are assembled in it); `samples` per problem.
    pub fn create(
        dir: &Path,
        run_id: &str,
        pipeline: &str,
        nodes: &[String],
        samples: u32,
    ) -> Result<Journal> {
        let lock = File::create(dir.join(LOCK))
            .with_context(|| format!("creating {}", dir.join(LOCK).display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", dir.join(LOCK).display()))?;
        let file = File::create(dir.join(JOURNAL))
            .with_context(|| format!("creating {}", dir.join(JOURNAL).display()))?;
        let header = json!({"record": "run", "run_id": run_id, "pipeline": pipeline,
                            "nodes": nodes, "samples": samples});
        let mut j = Journal {
            dir: dir.to_path_buf(),
            file: std::io::BufWriter::with_capacity(BUFFER, file),
            _lock: lock,
            run_id: run_id.to_string(),
            places: journal::Scan::new(header.clone()),
            at: 0,
            results: None,
            reader: None,
            max_open: None,
            written: None,
            unordered: false,
        };
        j.append(&header)?;
        Ok(j)
    }

    /// Reopens a stopped run's journal to finish it in place (`--resume`): takes the lock
    /// (an error when the run is still live) and appends from the end. A cut last line is
    /// ended first so that the next record starts a line of its own.
    pub fn reopen(dir: &Path) -> Result<Journal> {
        let lock = File::create(dir.join(LOCK))
            .with_context(|| format!("opening {}", dir.join(LOCK).display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                anyhow::anyhow!(
                    "{} is still running (its process holds run.lock)",
                    dir.display()
                )
            },
        )?;
        let path = dir.join(JOURNAL);
        let text = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let mut at = text.len() as u64;
        if !text.is_empty() && !text.ends_with(b"\n") {
            file.write_all(b"\n")?;
            at += 1;
        }
        let places = journal::scan(&path)?;
        let head = text
            .split(|b| *b == b'\n')
            .next()
            .and_then(|l| serde_json::from_slice::<Value>(l).ok())
            .unwrap_or_default();
        // a resumed run's results.json is written anew at its end
        let _ = fs::remove_file(dir.join(RESULTS));
        Ok(Journal {
            dir: dir.to_path_buf(),
            file: std::io::BufWriter::with_capacity(BUFFER, file),
            _lock: lock,
            run_id: head["run_id"].as_str().unwrap_or_default().to_string(),
            places,
            at,
            results: None,
            reader: None,
            max_open: None,
            written: None,
            unordered: false,
        })
    }

    /// The run's id (from the journal's first line).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The largest problem index in results.json so far, while problems go there in CSV
    /// order as they close; None before the first, and once a problem opened before one
    /// already written (results.json is then written anew at the end).
    pub fn written_in_order(&self) -> Option<usize> {
        self.written.filter(|_| !self.unordered)
    }

    /// Whether results.json holds its problems in the order they were written so far.
    pub fn in_order(&self) -> bool {
        !self.unordered
    }

    /// A problem starts (again, in a resumed run: its earlier lines no longer count).
    pub fn open(&mut self, p: &crate::data::Problem) -> Result<()> {
        let span = self.append(&json!({"record": "open", "index": p.index, "id": p.id,
                                       "question": p.question(), "answer": p.answer()}))?;
        self.places.note(journal::Rec::Open, p.index, span);
        self.unordered |= self.written.is_some_and(|w| p.index <= w);
        self.max_open = self.max_open.max(Some(p.index));
        Ok(())
    }

    /// A node instance of problem `index` ended.
    pub fn node(
        &mut self,
        index: usize,
        sample: Option<u32>,
        r: &records::NodeRecord,
    ) -> Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            record: &'static str,
            index: usize,
            sample: Option<u32>,
            #[serde(flatten)]
            r: &'a records::NodeRecord,
        }
        let span = self.append(&Line {
            record: "node",
            index,
            sample,
            r,
        })?;
        self.places.note(
            journal::Rec::Node {
                sample,
                node: &r.node,
            },
            index,
            span,
        );
        Ok(())
    }

    /// A problem is done (its nodes are already in the journal).
    pub fn close(&mut self, p: &records::ProblemRecord) -> Result<()> {
        let span = self.append(
            &json!({"record": "close", "index": p.index, "status": p.status,
                            "error": p.error}),
        )?;
        self.places.note(journal::Rec::Close, p.index, span);
        if let (Some(bound), false) = (self.max_open, self.unordered) {
            let done = self.places.take_closed_below(bound);
            self.write(done)
                .with_context(|| format!("writing {}", self.dir.join(RESULTS_TMP).display()))?;
        }
        Ok(())
    }

    /// Writes the problems not yet written, and the status, to results.json in the making.
    fn finish_in_order(&mut self, status: &str) -> Result<()> {
        let rest = self.places.take_all();
        self.write(rest)?;
        let r = match self.results.take() {
            Some(r) => r,
            None => journal::Results::create(&self.dir.join(RESULTS_TMP), &self.places.header)?,
        };
        r.end(status)
    }

    /// Appends problems to results.json in the making (created at the first).
    fn write(&mut self, done: Vec<(usize, journal::Entry)>) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        // their lines are read back from the file: buffered ones are written out first
        self.flush()?;
        if self.reader.is_none() {
            self.reader = Some(File::open(self.dir.join(JOURNAL))?);
        }
        if self.results.is_none() {
            let header = &self.places.header;
            self.results = Some(journal::Results::create(
                &self.dir.join(RESULTS_TMP),
                header,
            )?);
        }
        let (Some(r), Some(f)) = (self.results.as_mut(), self.reader.as_mut()) else {
            return Ok(());
        };
        for (index, e) in done {
            r.push(&self.places, &e, f)?;
            self.written = Some(index);
        }
        Ok(())
    }

    /// Writes the buffered lines (whole lines: a full buffer is written before a line that
    /// does not fit), so what finished is in the file as soon as the OS has it.
    pub fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("appending to {}", self.dir.join(JOURNAL).display()))
    }

    /// Appends one record as one line (buffered until [`Journal::flush`]).
    /// Returns where the line is.
    fn append<T: Serialize>(&mut self, record: &T) -> Result<journal::Span> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .with_context(|| format!("appending to {}", self.dir.join(JOURNAL).display()))?;
        let span = (self.at, line.len() - 1);
        self.at += line.len() as u64;
        Ok(span)
    }

    /// Ends the journal with `status` and finishes results.json from it (the problems not
    /// yet written, in CSV order), atomically.
    pub fn finish(mut self, status: &str) -> Result<()> {
        self.append(&json!({"record": "end", "status": status}))?;
        self.flush()?;
        let path = self.dir.join(RESULTS);
        let tmp = self.dir.join(RESULTS_TMP);
        let journal = self.dir.join(JOURNAL);
        if self.unordered {
            self.results = None;
            journal::write_results(&journal, &journal::scan(&journal)?, &tmp, status)
        } else {
            self.finish_in_order(status)
        }
        .with_context(|| format!("writing {}", path.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}

/// Whether a run is still going, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Its process holds the lock.
    Live,
    /// It ended and wrote its end record (`complete`, `interrupted`).
    Ended(String),
    /// It was killed: no end record, and nobody holds its lock.
    Killed,
}

/// Reads a run directory's state.
pub fn liveness(dir: &Path) -> Liveness {
    if let Some(s) = end_status(dir) {
        return Liveness::Ended(s);
    }
    match File::open(dir.join(LOCK)) {
        Ok(f) => match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => Liveness::Killed,
            Err(_) => Liveness::Live,
        },
        Err(_) => Liveness::Killed,
    }
}

/// The status of the journal's end record, if it has one.
fn end_status(dir: &Path) -> Option<String> {
    let f = File::open(dir.join(JOURNAL)).ok()?;
    let mut status = None;
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if line.starts_with("{\"record\":\"end\"")
            && let Ok(v) = serde_json::from_str::<Value>(&line)
        {
            status = v["status"].as_str().map(str::to_string);
        } else if line.starts_with("{\"record\":\"open\"") {
            // a resumed run goes on after an earlier end
            status = None;
        }
    }
    status
}

/// A run's problem records as JSON lines, with its id, pipeline and status, read from
/// results.json when the run ended, else from the journal (a killed or live run).
pub struct Lines {
    pub run_id: Option<String>,
    pub pipeline: Option<String>,
    /// `complete`, `interrupted`, or `running` for a live run.
    pub status: String,
    pub problems: Vec<String>,
    /// The file they came from.
    pub file: PathBuf,
}

/// A run directory's journal, assembled into problem records (whether or not the run
/// ended); None without one (a run directory of an older distill).
fn journal_lines(dir: &Path) -> Option<Lines> {
    let file = dir.join(JOURNAL);
    let scan = journal::scan(&file).ok()?;
    let problems = journal::problems(&file, &scan).ok()?;
    let status = match (&scan.end, liveness(dir)) {
        (Some(s), _) => s.clone(),
        (None, Liveness::Live) => "running".into(),
        _ => "interrupted".into(),
    };
    Some(Lines {
        run_id: scan.header["run_id"].as_str().map(str::to_string),
        pipeline: scan.header["pipeline"].as_str().map(str::to_string),
        status,
        problems,
        file,
    })
}

/// A run directory's config.json (what `--resume` and `distill runs` read). Errors name the
/// file.
pub fn read_config(dir: &Path) -> Result<Value, String> {
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (is {} a run directory?)",
            path.display(),
            dir.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// The cache keys a run directory's run used (its cache_keys.txt), in order, without repeats.
pub fn cache_keys(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(KEYS);
    let text = fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a run directory distill wrote?)",
            path.display(),
            dir.display()
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && seen.insert(l.to_string()))
        .map(str::to_string)
        .collect())
}

/// A run directory's metrics.json, when it has a readable one.
pub fn read_metrics(dir: &Path) -> Option<Value> {
    let raw = fs::read_to_string(dir.join("metrics.json")).ok()?;
    original::parse_json(&raw).ok()
}

/// A results file of either tool as one document (Python's `NaN` read as null). Errors
/// name the file and say what is wrong.
fn read_doc(file: &Path) -> Result<Value, String> {
    let shown = file.display();
    let raw = fs::read(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let raw = String::from_utf8(raw).map_err(|_| {
        format!("{shown} is not JSON (not UTF-8 text); expected a results.json file")
    })?;
    crate::runfile::original::parse_json(&raw)
        .map_err(|e| format!("{shown} is not JSON ({e}); expected a results.json file"))
}

#[cfg(test)]
mod tests;
