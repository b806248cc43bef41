//! The one reader of a run's records, whatever wrote them: a run directory (ended: its
//! results.json; killed or live: its journal), a results.jsonl, distill's results.json (one
//! problem a line, streamed, again at each pass, so a report of any size holds one problem at
//! a time; or pretty-printed, by `distill grade`) or the original tool's results file
//! (through [`Original`]). Every record comes out typed ([`ProblemRecord`]); `distill report`,
//! `view`, `grade`, `--resume` and the importers read through it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::original::{self, Original};
use super::records::{ProblemHead, ProblemRecord};
use super::{JOURNAL, RESULTS};

/// Who wrote the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Distill,
    Original(original::Kind),
}

impl Format {
    /// As reports name it: `distill`, `original (iterated)`, `original (pass@k)`.
    pub fn label(self) -> &'static str {
        match self {
            Format::Distill => "distill",
            Format::Original(original::Kind::Iterated) => "original (iterated)",
            Format::Original(original::Kind::PassK) => "original (pass@k)",
        }
    }
}

/// What of each node output's long texts a reader keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texts {
    /// Everything.
    Full,
    /// Only the reasoning's length (`reasoning_chars`): what a report needs.
    Lengths,
}

/// A record that could not be read: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub line: usize,
    pub error: String,
}

/// A run's records, opened.
pub struct RunFile {
    pub format: Format,
    /// The file the records come from.
    pub file: PathBuf,
    /// The folder that holds it (a run directory's config.json and metrics.json).
    pub dir: PathBuf,
    pub run_id: Option<String>,
    pub pipeline: Option<String>,
    /// `complete`, `interrupted` (also a killed run), `running` (a live run), `truncated`
    /// (a results.json of an older distill cut short by a crash).
    pub status: String,
    source: Source,
}

enum Source {
    Journal(Vec<String>),
    Lines,
    Doc(Vec<Value>),
    Original(Box<Original>),
}

/// Opens whatever `path` names. Errors name the file and say what is wrong.
pub fn open(path: &Path) -> Result<RunFile, String> {
    let dir_of = |f: &Path| f.parent().unwrap_or(Path::new(".")).to_path_buf();
    let journal_dir = if path.is_dir() && !path.join(RESULTS).is_file() {
        Some(path.to_path_buf())
    } else if path.file_name().is_some_and(|n| n == JOURNAL) {
        Some(dir_of(path))
    } else {
        None
    };
    if let Some(dir) = journal_dir {
        let l = super::journal_lines(&dir).ok_or_else(|| {
            format!(
                "{} has no results.json and no readable {JOURNAL}: not a run directory distill wrote",
                dir.display()
            )
        })?;
        return Ok(RunFile {
            format: Format::Distill,
            dir,
            run_id: l.run_id,
            pipeline: l.pipeline,
            status: l.status,
            file: l.file,
            source: Source::Journal(l.problems),
        });
    }
    let file = if path.is_dir() {
        path.join(RESULTS)
    } else {
        path.to_path_buf()
    };
    let dir = dir_of(&file);
    if let Some((run_id, pipeline, status)) = line_layout(&file) {
        return Ok(RunFile {
            format: Format::Distill,
            file,
            dir,
            run_id,
            pipeline,
            status,
            source: Source::Lines,
        });
    }
    let doc = super::read_doc(&file)?;
    if let Some(problems) = doc.get("problems").and_then(Value::as_array) {
        let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
        return Ok(RunFile {
            format: Format::Distill,
            run_id: text("run_id"),
            pipeline: text("pipeline"),
            status: text("status").unwrap_or_else(|| "unknown".into()),
            source: Source::Doc(problems.clone()),
            file,
            dir,
        });
    }
    match Original::from_doc(doc) {
        Some(o) => Ok(RunFile {
            format: Format::Original(o.kind),
            run_id: None,
            pipeline: o.experiment_name.clone(),
            status: "complete".into(),
            source: Source::Original(Box::new(o)),
            file,
            dir,
        }),
        None => Err(format!(
            "{}: not a recognized results file; expected distill's results.json (\"problems\": \
             [...]) or the original tool's (\"results\": [{{\"iterations\" | \"solutions\": \
             [...]}}]): point at a run directory distill or the original tool wrote",
            file.display()
        )),
    }
}

/// distill's results.json laid out one problem a line (as distill writes it): its run id,
/// pipeline and status (`truncated` when a crash cut it short). None for any other layout.
/// Only the head (up to the first problem line) and the last [`TAIL`] bytes are read: the
/// status line is the file's last but one (a problem line holds no raw newline).
fn line_layout(file: &Path) -> Option<(Option<String>, Option<String>, String)> {
    let mut r = BufReader::new(File::open(file).ok()?);
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).ok()?;
    if line.trim_ascii() != b"{" {
        return None;
    }
    let (mut run_id, mut pipeline, mut status) = (None, None, None);
    let mut problems = false;
    loop {
        // a head line is short; the first problem line is only peeked at
        let first = r.fill_buf().ok()?.first().copied();
        match first {
            None => break,
            Some(b'{') => {
                problems = true;
                break;
            }
            Some(_) => {}
        }
        line.clear();
        r.read_until(b'\n', &mut line).ok()?;
        let head = head_field(&line);
        match head {
            Some(("run_id", v)) => run_id = Some(v),
            Some(("pipeline", v)) => pipeline = Some(v),
            Some(("status", v)) => status = Some(v),
            // indented: pretty-printed, read whole
            _ if line.first().is_some_and(u8::is_ascii_whitespace) => return None,
            _ => {}
        }
        if line.starts_with(b"]") {
            break;
        }
    }
    run_id.as_ref()?;
    if status.is_none() {
        status = tail_status(r.into_inner());
    }
    if !problems && status.is_some() {
        // complete, but not a problem a line (pretty-printed, or no problem): read whole
        return None;
    }
    Some((
        run_id,
        pipeline,
        status.unwrap_or_else(|| "truncated".into()),
    ))
}

/// How much of results.json's end [`line_layout`] reads for its status.
const TAIL: u64 = 4096;

/// A top-level `"name": "text"` line of results.json (`,` and newline after it allowed).
fn head_field(line: &[u8]) -> Option<(&'static str, String)> {
    let l = std::str::from_utf8(line)
        .ok()?
        .trim_end()
        .trim_end_matches(',');
    ["run_id", "pipeline", "status"]
        .into_iter()
        .find_map(|name| {
            let rest = l
                .strip_prefix('"')?
                .strip_prefix(name)?
                .strip_prefix("\": ")?;
            let v = serde_json::from_str::<Value>(rest).ok()?;
            Some((name, v.as_str()?.to_string()))
        })
}

/// The status line among the complete lines of the file's last [`TAIL`] bytes.
fn tail_status(mut f: File) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    f.take(TAIL).read_to_end(&mut tail).ok()?;
    // the first piece may be the end of a longer line: only lines that start in the window
    let lines = tail.split(|&b| b == b'\n');
    let lines = lines.skip(usize::from(from > 0));
    lines
        .filter_map(head_field)
        .find_map(|(name, v)| (name == "status").then_some(v))
}

impl RunFile {
    /// The original tool's file, when it is one.
    pub fn original(&self) -> Option<&Original> {
        match &self.source {
            Source::Original(o) => Some(o),
            _ => None,
        }
    }

    /// The original tool's file as it was read, when it is one.
    pub fn into_original(self) -> Option<Original> {
        match self.source {
            Source::Original(o) => Some(*o),
            _ => None,
        }
    }

    /// Its records in problem order, read afresh at each call; a record that cannot be read
    /// is an `Err` naming its line (a line cut by a crash, a record of another shape).
    pub fn problems(
        &self,
        texts: Texts,
    ) -> Box<dyn Iterator<Item = Result<ProblemRecord, Unreadable>> + '_> {
        let parse = move |line: usize, text: &str| {
            match texts {
                Texts::Full => ProblemRecord::parse(text),
                Texts::Lengths => ProblemRecord::parse_slim(text),
            }
            .map_err(|e| Unreadable {
                line,
                error: e.to_string(),
            })
        };
        match &self.source {
            Source::Journal(lines) => {
                Box::new(lines.iter().enumerate().map(move |(i, l)| parse(i + 1, l)))
            }
            Source::Lines => Box::new(self.lines().map(move |(i, t)| parse(i, &t))),
            Source::Doc(problems) => Box::new(problems.iter().enumerate().map(move |(i, p)| {
                let mut r: ProblemRecord =
                    serde_json::from_value(p.clone()).map_err(|e| Unreadable {
                        line: i + 1,
                        error: format!("problem {}: {e}", i + 1),
                    })?;
                if texts == Texts::Lengths {
                    slim(&mut r);
                }
                Ok(r)
            })),
            Source::Original(o) => Box::new(o.records().map(move |mut r| {
                if texts == Texts::Lengths {
                    slim(&mut r);
                }
                Ok(r)
            })),
        }
    }

    /// Its records' heads ([`ProblemHead`]) in problem order: distill's lines are read
    /// straight into them, skipping the texts; other sources go through their whole records.
    pub fn heads(&self) -> Box<dyn Iterator<Item = Result<ProblemHead, Unreadable>> + '_> {
        let parse = |line: usize, text: &str| {
            serde_json::from_str::<ProblemHead>(text).map_err(|e| Unreadable {
                line,
                error: e.to_string(),
            })
        };
        match &self.source {
            Source::Journal(lines) => {
                Box::new(lines.iter().enumerate().map(move |(i, l)| parse(i + 1, l)))
            }
            Source::Lines => Box::new(self.lines().map(move |(i, t)| parse(i, &t))),
            Source::Doc(_) | Source::Original(_) => Box::new(
                self.problems(Texts::Lengths)
                    .map(|r| r.map(ProblemHead::from)),
            ),
        }
    }

    /// results.json's problem lines as distill writes them: (line number, text).
    fn lines(&self) -> Box<dyn Iterator<Item = (usize, String)> + '_> {
        let Ok(f) = File::open(&self.file) else {
            return Box::new(std::iter::empty());
        };
        Box::new(
            BufReader::new(f)
                .lines()
                .enumerate()
                .skip(1)
                .map_while(|(i, l)| Some((i, l.ok()?)))
                .filter_map(|(i, mut l)| {
                    let t = l.trim_end().trim_end_matches(',');
                    let keep = t.len();
                    (t.starts_with('{')).then(|| {
                        l.truncate(keep);
                        (i + 1, l)
                    })
                }),
        )
    }

    /// Its records, skipping the unreadable ones (counted in the second value).
    pub fn readable(&self, texts: Texts) -> (Vec<ProblemRecord>, Vec<Unreadable>) {
        let mut bad = Vec::new();
        let good = self
            .problems(texts)
            .filter_map(|r| r.map_err(|e| bad.push(e)).ok())
            .collect();
        (good, bad)
    }

    /// The run's config.json (a run distill wrote), when it has one.
    pub fn config(&self) -> Option<Value> {
        super::read_config(&self.dir).ok()
    }

    /// The run's metrics.json, when it has one.
    pub fn metrics(&self) -> Option<Value> {
        super::read_metrics(&self.dir)
    }

    /// distill's records as one document in results.json's shape (`distill grade` rewrites
    /// it); None for the original tool's file.
    pub fn distill_doc(&self) -> Option<Result<Value, String>> {
        if self.original().is_some() {
            return None;
        }
        let mut problems = Vec::new();
        for r in self.problems(Texts::Full) {
            match r {
                Ok(p) => problems.push(serde_json::to_value(p).map_err(|e| e.to_string())),
                Err(u) => {
                    return Some(Err(format!(
                        "{}: record {} cannot be read: {}",
                        self.file.display(),
                        u.line,
                        u.error
                    )));
                }
            }
        }
        Some(
            problems
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(|p| {
                    json!({"run_id": self.run_id, "pipeline": self.pipeline, "problems": p,
                           "status": self.status})
                }),
        )
    }
}

/// Drops the long texts of every node output of a record, keeping the reasoning's length
/// as `reasoning_chars`.
fn slim(p: &mut ProblemRecord) {
    let nodes = p
        .samples
        .iter_mut()
        .flat_map(|s| s.values_mut())
        .chain(p.aggregates.values_mut());
    for n in nodes {
        let Some(o) = n.output.as_mut() else { continue };
        let o = Arc::make_mut(o);
        if let Some(r) = o.get("reasoning").and_then(Value::as_str) {
            let chars = r.chars().count();
            o.insert("reasoning_chars".into(), chars.into());
        }
        for k in super::records::LONG_TEXTS {
            o.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record read without its texts equals the whole record with its texts dropped.
    #[test]
    fn a_slim_read_equals_a_whole_read_slimmed() {
        let long = "é\"\\n ".repeat(3000);
        let line = json!({"id": "p1", "index": 3, "question": "q", "answer": "4", "status": "ok",
            "samples": [
                {"a": {"node": "a", "kind": "reason", "round": 0, "status": "done",
                    "output": {"text": long, "reasoning": long, "prompt": "p", "answer": "4",
                        "correct": true, "usage": {"completion_tokens": 9}, "cost_usd": 0.1}},
                 "b": {"node": "b", "kind": "summarize", "round": 1, "status": "done",
                    "output": {"reasoning": null, "answer_text": [1, 2], "new_text": {"x": 1},
                        "reasoning_chars": 5}}},
                {"a": {"node": "a", "kind": "reason", "round": 0, "status": "failed",
                    "error": "cut"}}],
            "aggregates": {"v": {"node": "v", "kind": "vote", "round": 0, "status": "done",
                "output": {"pass_at": {"1": 0.5}, "reasoning": 7}}}})
        .to_string();
        let mut whole = ProblemRecord::parse(&line).unwrap();
        slim(&mut whole);
        let read = ProblemRecord::parse_slim(&line).unwrap();
        let v = |r: &ProblemRecord| serde_json::to_value(r).unwrap();
        assert_eq!(v(&read), v(&whole));
        let o = read.samples[0]["a"].output.as_ref().unwrap();
        assert_eq!(o["reasoning_chars"], 3000 * 5);
        assert!(!o.contains_key("text") && !o.contains_key("reasoning"));
    }

    /// The layout of results.json is read from its head and its last bytes only: a status
    /// after problem lines longer than that window, a file cut short, a pretty one.
    #[test]
    fn the_line_layout_is_read_from_the_head_and_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("results.json");
        let problem = json!({"id": "p", "pad": "x".repeat(3 * TAIL as usize)}).to_string();
        let head = "{\n\"run_id\": \"r-1\",\n\"pipeline\": \"t\",\n\"problems\": [\n";
        let whole = format!("{head}{problem},\n{problem}\n],\n\"status\": \"complete\"\n}}\n");
        std::fs::write(&f, &whole).unwrap();
        let got = line_layout(&f).unwrap();
        assert_eq!(
            got,
            (Some("r-1".into()), Some("t".into()), "complete".into())
        );
        std::fs::write(&f, &whole[..whole.len() - 40]).unwrap();
        assert_eq!(line_layout(&f).unwrap().2, "truncated");
        // no problem, complete: read whole
        std::fs::write(&f, format!("{head}],\n\"status\": \"complete\"\n}}\n")).unwrap();
        assert_eq!(line_layout(&f), None);
        let pretty = serde_json::to_string_pretty(&json!({"run_id": "r", "problems": []}));
        std::fs::write(&f, pretty.unwrap()).unwrap();
        assert_eq!(line_layout(&f), None);
    }
}
