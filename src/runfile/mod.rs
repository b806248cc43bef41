//! The run directory's record of finished work, readable at every instant.
//!
//! Format (one owner: this module writes it and reads it back):
//! - `results.jsonl`: a journal, one JSON object per line, each appended with one write and
//!   nothing buffered: first `{"record":"run","run_id":…,"pipeline":…}`, then every finished
//!   problem's record in the order problems finish, then `{"record":"end","status":…}`. A
//!   SIGKILL, an OOM kill or a power loss can cut at most the line being written; a reader
//!   skips a cut last line.
//! - `results.json`: written once, at the end, atomically (temporary file + rename) from the
//!   journal, with the problems in CSV order: `{"run_id", "pipeline", "problems": [one
//!   problem a line], "status"}`. Its presence means the run ended and wrote everything.
//! - `run.lock`: held (`flock`) by the live run. No `results.json`, no end record and a free
//!   lock mean the run was killed: its status reads `interrupted`.
//!
//! Readers ask [`problem_lines`] for a run's problems as JSON lines, whichever file holds
//! them. What does not belong here: what a record contains (the scheduler makes it), and
//! what a report or dashboard does with it.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};

pub const RESULTS: &str = "results.json";
pub const JOURNAL: &str = "results.jsonl";
pub const LOCK: &str = "run.lock";

/// The live run's journal and lock.
pub struct Journal {
    dir: PathBuf,
    file: File,
    /// Held for the run's life (the lock is released when the file is closed or the
    /// process dies, however it dies).
    _lock: File,
    run_id: String,
    pipeline: String,
}

impl Journal {
    /// Creates the journal and takes the run's lock.
    pub fn create(dir: &Path, run_id: &str, pipeline: &str) -> Result<Journal> {
        let lock = File::create(dir.join(LOCK)).context("creating run.lock")?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .with_context(|| format!("locking {}", dir.join(LOCK).display()))?;
        let file = File::create(dir.join(JOURNAL)).context("creating results.jsonl")?;
        let mut j = Journal {
            dir: dir.to_path_buf(),
            file,
            _lock: lock,
            run_id: run_id.to_string(),
            pipeline: pipeline.to_string(),
        };
        j.append(&json!({"record": "run", "run_id": run_id, "pipeline": pipeline}))?;
        Ok(j)
    }

    /// Appends one record as one line, written at once (no buffer: what finished is on disk
    /// as soon as the OS has it).
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .context("appending to results.jsonl")
    }

    /// Ends the journal with `status` and writes results.json from it, atomically.
    pub fn finish(mut self, status: &str) -> Result<()> {
        self.append(&json!({"record": "end", "status": status}))?;
        let path = self.dir.join(RESULTS);
        let tmp = self.dir.join(".results.json.tmp");
        write_results(
            &self.dir.join(JOURNAL),
            &tmp,
            &self.run_id,
            &self.pipeline,
            status,
        )
        .with_context(|| format!("writing {}", path.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        Ok(())
    }
}

/// results.json from the journal: the problem lines in CSV order (by their `index`), copied
/// one at a time (the journal is never held in memory whole).
fn write_results(
    journal: &Path,
    out: &Path,
    run_id: &str,
    pipeline: &str,
    status: &str,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Index {
        index: Option<usize>,
        record: Option<String>,
    }
    let mut spans = Vec::new();
    let mut r = BufReader::new(File::open(journal)?);
    let (mut at, mut line) = (0u64, String::new());
    loop {
        line.clear();
        let n = r.read_line(&mut line)? as u64;
        if n == 0 {
            break;
        }
        if let Ok(i) = serde_json::from_str::<Index>(&line)
            && i.record.is_none()
            && let Some(ix) = i.index
        {
            spans.push((ix, at, line.trim_end().len()));
        }
        at += n;
    }
    spans.sort_by_key(|s| s.0);
    let mut src = File::open(journal)?;
    let mut w = std::io::BufWriter::new(File::create(out)?);
    write!(
        w,
        "{{\n\"run_id\": {},\n\"pipeline\": {},\n\"problems\": [",
        json!(run_id),
        json!(pipeline)
    )?;
    let mut buf = Vec::new();
    for (k, (_, start, len)) in spans.iter().enumerate() {
        w.write_all(if k == 0 { b"\n" } else { b",\n" })?;
        buf.resize(*len, 0);
        src.seek(SeekFrom::Start(*start))?;
        src.read_exact(&mut buf)?;
        w.write_all(&buf)?;
    }
    write!(w, "\n],\n\"status\": {}\n}}\n", json!(status))?;
    w.flush()?;
    Ok(())
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

/// The journal of a run directory that has no results.json (a killed or live run), or None
/// when there is none (an ended run: read its results.json; or an older run directory).
pub fn problem_lines(dir: &Path) -> Option<Lines> {
    if dir.join(RESULTS).is_file() {
        return None;
    }
    let file = dir.join(JOURNAL);
    let f = File::open(&file).ok()?;
    let mut out = Lines {
        run_id: None,
        pipeline: None,
        status: String::new(),
        problems: Vec::new(),
        file: file.clone(),
    };
    let mut end = None;
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        // a cut last line does not parse and is skipped
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match v["record"].as_str() {
            Some("run") => {
                out.run_id = v["run_id"].as_str().map(str::to_string);
                out.pipeline = v["pipeline"].as_str().map(str::to_string);
            }
            Some("end") => end = v["status"].as_str().map(str::to_string),
            Some(_) => {}
            None => out.problems.push(line),
        }
    }
    out.status = match (end, liveness(dir)) {
        (Some(s), _) => s,
        (None, Liveness::Live) => "running".into(),
        _ => "interrupted".into(),
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_journal_reads_and_a_finished_one_becomes_results_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "r1", "p").unwrap();
        j.append(&json!({"id": "b", "index": 1, "samples": []}))
            .unwrap();
        j.append(&json!({"id": "a", "index": 0, "samples": []}))
            .unwrap();
        assert_eq!(liveness(dir.path()), Liveness::Live);
        assert_eq!(problem_lines(dir.path()).unwrap().status, "running");
        // a kill: the lock goes with the process, a half line may be left
        drop(j);
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        f.write_all(b"{\"id\": \"c\", \"ind").unwrap();
        let l = problem_lines(dir.path()).unwrap();
        assert_eq!(l.status, "interrupted");
        assert_eq!(l.problems.len(), 2);
        assert_eq!(l.run_id.as_deref(), Some("r1"));
        assert_eq!(liveness(dir.path()), Liveness::Killed);

        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), "r2", "p").unwrap();
        j.append(&json!({"id": "b", "index": 1, "samples": []}))
            .unwrap();
        j.append(&json!({"id": "a", "index": 0, "samples": []}))
            .unwrap();
        j.finish("complete").unwrap();
        let v: Value =
            serde_json::from_str(&fs::read_to_string(dir.path().join(RESULTS)).unwrap()).unwrap();
        assert_eq!(v["status"], "complete");
        assert_eq!(v["problems"][0]["id"], "a", "CSV order");
        assert_eq!(v["problems"][1]["id"], "b");
        assert!(
            problem_lines(dir.path()).is_none(),
            "an ended run reads results.json"
        );
        assert_eq!(liveness(dir.path()), Liveness::Ended("complete".into()));
    }
}
