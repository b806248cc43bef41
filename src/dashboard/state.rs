//! The dashboard's model of a run: a grid of rows (problem × sample) and columns (nodes),
//! one small cell per node instance (state, cached, answer, retries), the latest metrics, the
//! finished problems' records (zstd-compressed, read back on demand for the attempt panel),
//! and the streamed text of nodes whose problem has not finished yet (bounded). Every change
//! returns the JSON message that the server broadcasts to the pages; `snapshot` is what a
//! page that (re)connects gets first.

use std::collections::HashMap;

use serde_json::{Value, json};

/// Streamed text kept per node instance (beyond it, pieces still go to the pages).
const MAX_STREAM_BYTES: usize = 1 << 20;
/// Streamed text kept in all.
const MAX_STREAM_TOTAL: usize = 64 << 20;
/// Characters of a question shown as the grid row's tooltip.
const QUESTION_PREVIEW: usize = 160;

/// Cell states, as the page knows them.
pub const WAITING: char = 'w';
pub const RUNNING: char = 'r';
pub const STREAMING: char = 's';
pub const RIGHT: char = 'y';
pub const WRONG: char = 'n';
pub const DONE: char = 'd';
pub const FAILED: char = 'f';
pub const SKIPPED: char = 'k';
/// Not run: interrupted, over budget, an offline miss (the record's `reason` says which).
pub const NOT_RUN: char = 'x';

#[derive(Debug, Clone)]
pub struct Cell {
    pub state: char,
    pub cached: bool,
    pub answer: Option<String>,
    pub retries: u32,
    pub error: Option<String>,
    /// What a cell without an answer shows instead: `no answer`, `failed`, a not-run reason
    /// (`interrupted`, `budget`, `no record`, `not in run`, …).
    pub note: Option<String>,
}

impl Default for Cell {
    fn default() -> Self {
        Cell {
            state: WAITING,
            cached: false,
            answer: None,
            retries: 0,
            error: None,
            note: None,
        }
    }
}

impl Cell {
    fn json(&self) -> Value {
        json!([
            self.state.to_string(),
            u8::from(self.cached),
            self.answer,
            self.retries,
            self.note
        ])
    }
}

/// Streamed text of one node instance; `units` is its length in UTF-16 code units (what
/// the page's strings count), so pieces can carry the offset they start at.
#[derive(Debug, Default)]
struct Stream {
    text: String,
    units: usize,
    truncated: bool,
}

#[derive(Debug, Default)]
pub struct State {
    pub mode: &'static str,
    pub title: String,
    pub config: Value,
    problems: Vec<(String, String)>,
    problem_ix: HashMap<String, usize>,
    cols: Vec<(String, u32, String)>,
    /// Per column: the run it belongs to (an index into `runs`; 0 for a live run).
    col_run: Vec<usize>,
    col_ix: HashMap<(usize, String), usize>,
    /// The runs shown (label, path, status, …); one for a live run or a single view.
    runs: Vec<Value>,
    rows: Vec<(usize, u32)>,
    row_ix: HashMap<(usize, u32), usize>,
    cells: Vec<Vec<Cell>>,
    /// Per problem: the finished record's status (ok | failed | incomplete).
    status: Vec<Option<String>>,
    /// Finished node records (zstd-compressed JSON) by (row, col), and each finished
    /// problem's expected answer.
    records: HashMap<(usize, usize), Vec<u8>>,
    truth: HashMap<usize, Value>,
    streams: HashMap<(usize, usize), Stream>,
    stream_bytes: usize,
    /// A piece named a row or column the pages do not have yet.
    grid_dirty: bool,
    /// Pieces not yet sent: (row, col, offset, text).
    pending: Vec<(usize, usize, usize, String)>,
    pub metrics: Value,
    pub summary: Value,
    retries: u64,
    events: u64,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn preview(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// What a finished cell shows when it has no answer to show.
fn done_note(state: char, answer: &Option<String>) -> Option<String> {
    (answer.is_none() && (state == WRONG || state == DONE)).then(|| "no answer".to_string())
}

/// The state of a finished node from its `correct` verdict.
fn done_state(correct: &Value) -> char {
    match correct {
        Value::Bool(true) => RIGHT,
        Value::Bool(false) => WRONG,
        _ => DONE,
    }
}

impl State {
    pub fn new(
        mode: &'static str,
        config: Value,
        problems: Vec<(String, String)>,
        cols: Vec<(String, u32, String)>,
    ) -> Self {
        let cols = cols.into_iter().map(|(n, r, k)| (n, r, k, 0)).collect();
        let run = json!({"label": "", "status": ""});
        Self::with_runs(mode, config, problems, cols, vec![run])
    }

    /// A state over several runs side by side: `cols` are (node, round, kind, run index into
    /// `runs`), in the order the page shows them.
    pub fn with_runs(
        mode: &'static str,
        config: Value,
        problems: Vec<(String, String)>,
        cols: Vec<(String, u32, String, usize)>,
        runs: Vec<Value>,
    ) -> Self {
        let title = format!(
            "{} {}",
            config["pipeline"]["name"]
                .as_str()
                .or(config["experiment_name"].as_str())
                .unwrap_or("distill"),
            config["run_id"].as_str().unwrap_or("")
        )
        .trim()
        .to_string();
        let samples = config["pipeline"]["samples"].as_u64().unwrap_or(1).max(1) as u32;
        let mut s = State {
            mode,
            title,
            config,
            runs,
            ..Default::default()
        };
        for (node, round, kind, run) in cols {
            s.col(run, &node, round, &kind);
        }
        for (id, q) in problems {
            let pi = s.problem(&id);
            s.problems[pi].1 = q;
            for sample in 0..samples {
                s.row(pi, sample);
            }
        }
        s
    }

    fn problem(&mut self, id: &str) -> usize {
        if let Some(&i) = self.problem_ix.get(id) {
            return i;
        }
        self.problems.push((id.to_string(), String::new()));
        self.status.push(None);
        self.problem_ix
            .insert(id.to_string(), self.problems.len() - 1);
        self.problems.len() - 1
    }

    fn row(&mut self, pi: usize, sample: u32) -> usize {
        if let Some(&r) = self.row_ix.get(&(pi, sample)) {
            return r;
        }
        self.rows.push((pi, sample));
        self.cells.push(vec![Cell::default(); self.cols.len()]);
        self.row_ix.insert((pi, sample), self.rows.len() - 1);
        self.rows.len() - 1
    }

    fn col(&mut self, run: usize, node: &str, round: u32, kind: &str) -> usize {
        if let Some(&c) = self.col_ix.get(&(run, node.to_string())) {
            return c;
        }
        self.cols.push((node.to_string(), round, kind.to_string()));
        self.col_run.push(run);
        self.col_ix
            .insert((run, node.to_string()), self.cols.len() - 1);
        for r in &mut self.cells {
            r.push(Cell::default());
        }
        self.cols.len() - 1
    }

    /// Row and column of an instance, created when new; `grew` tells the page to rebuild.
    fn place(
        &mut self,
        run: usize,
        problem: &str,
        sample: u32,
        node: &str,
        round: u32,
    ) -> (usize, usize, bool) {
        let (np, nr, nc) = (self.problems.len(), self.rows.len(), self.cols.len());
        let pi = self.problem(problem);
        let r = self.row(pi, sample);
        let c = self.col(run, node, round, "");
        let grew = np != self.problems.len() || nr != self.rows.len() || nc != self.cols.len();
        (r, c, grew)
    }

    fn cell_msg(&self, r: usize, c: usize) -> Value {
        json!([r, c, self.cells[r][c].json()])
    }

    /// Applies a run event (an events.jsonl line); returns the message for the pages.
    pub fn event(&mut self, e: &Value) -> Option<Value> {
        self.event_in(e, 0)
    }

    /// Applies an event of run `run` (an index into the runs shown).
    fn event_in(&mut self, e: &Value, run: usize) -> Option<Value> {
        let problem = e["problem"].as_str()?;
        let node = e["node"].as_str()?;
        let sample = e["sample"].as_u64().unwrap_or(0) as u32;
        let round = e["round"].as_u64().unwrap_or(0) as u32;
        self.events += 1;
        let (r, c, grew) = self.place(run, problem, sample, node, round);
        let cell = &mut self.cells[r][c];
        match e["event"].as_str().unwrap_or("") {
            "started" => {
                cell.state = RUNNING;
                self.drop_stream(r, c);
            }
            "finished" => {
                cell.state = done_state(&e["correct"]);
                cell.cached = e["cached"].as_bool().unwrap_or(false);
                cell.answer = text_of(&e["answer"]);
                cell.note = done_note(cell.state, &cell.answer);
            }
            "failed" => {
                cell.state = FAILED;
                cell.error = text_of(&e["error"]);
                cell.note = Some("failed".into());
            }
            "skipped" => {
                cell.state = SKIPPED;
                cell.note = Some("skipped".into());
                cell.error = text_of(&e["error"]);
            }
            "retry" => {
                cell.retries += 1;
                self.retries += 1;
                // a retried call streams again from its start
                self.drop_stream(r, c);
            }
            _ => {}
        }
        let mut m = json!({"t": "c", "cells": [self.cell_msg(r, c)], "retries": self.retries});
        if grew {
            m["grid"] = self.grid();
        }
        Some(m)
    }

    /// Replays an events.jsonl line of a finished run: a problem with a record only counts
    /// its retries (the record says the rest).
    pub fn replay_event(&mut self, e: &Value, recorded: bool, run: usize) {
        if recorded && e["event"].as_str() != Some("retry") {
            self.events += 1;
        } else {
            self.event_in(e, run);
        }
    }

    /// After a finished run is read: its cells that nothing ran are `not run`, labelled by
    /// `note_of(problem id)` (e.g. `interrupted`, `not in run`).
    pub fn mark_unrun(&mut self, run: usize, note_of: impl Fn(&str) -> String) {
        for (r, &(pi, _)) in self.rows.iter().enumerate() {
            let note = note_of(&self.problems[pi].0);
            for (c, cell) in self.cells[r].iter_mut().enumerate() {
                if self.col_run[c] == run && cell.state == WAITING {
                    cell.state = NOT_RUN;
                    cell.note = Some(note.clone());
                }
            }
        }
    }

    fn drop_stream(&mut self, r: usize, c: usize) {
        if let Some(s) = self.streams.remove(&(r, c)) {
            self.stream_bytes -= s.text.len();
        }
        self.pending.retain(|p| (p.0, p.1) != (r, c));
    }

    /// Keeps a streamed piece (bounded) and queues it for the pages.
    pub fn delta(&mut self, problem: &str, sample: u32, node: &str, text: &str) {
        let (r, c, grew) = self.place(0, problem, sample, node, 0);
        self.grid_dirty |= grew;
        let cell = &mut self.cells[r][c];
        if cell.state == RUNNING || cell.state == WAITING {
            cell.state = STREAMING;
        }
        let total = self.stream_bytes;
        let s = self.streams.entry((r, c)).or_default();
        let offset = s.units;
        s.units += text.encode_utf16().count();
        if !s.truncated
            && s.text.len() + text.len() <= MAX_STREAM_BYTES
            && total + text.len() <= MAX_STREAM_TOTAL
        {
            s.text.push_str(text);
            self.stream_bytes += text.len();
        } else {
            s.truncated = true;
        }
        match self.pending.last_mut() {
            Some(p) if (p.0, p.1) == (r, c) && p.2 + p.3.encode_utf16().count() == offset => {
                p.3.push_str(text)
            }
            _ => self.pending.push((r, c, offset, text.to_string())),
        }
    }

    /// The queued pieces as one message (and the cells that started streaming).
    pub fn take_pending(&mut self) -> Option<Value> {
        if self.pending.is_empty() && !self.grid_dirty {
            return None;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut seen = std::collections::HashSet::new();
        let cells: Vec<Value> = pending
            .iter()
            .filter(|p| seen.insert((p.0, p.1)))
            .map(|p| self.cell_msg(p.0, p.1))
            .collect();
        let d: Vec<Value> = pending
            .into_iter()
            .map(|(r, c, o, t)| json!([r, c, o, t]))
            .collect();
        let mut m = json!({"t": "d", "d": d, "cells": cells});
        if std::mem::take(&mut self.grid_dirty) {
            m["grid"] = self.grid();
        }
        Some(m)
    }

    /// Applies a finished problem's record (a results.json entry).
    pub fn record(&mut self, rec: &Value) -> Option<Value> {
        self.record_in(rec, 0)
    }

    /// Applies a finished problem's record of run `run` (an index into the runs shown).
    pub fn record_in(&mut self, rec: &Value, run: usize) -> Option<Value> {
        let id = text_of(&rec["id"])?;
        let (np, nr, nc) = (self.problems.len(), self.rows.len(), self.cols.len());
        let pi = self.problem(&id);
        if self.problems[pi].1.is_empty() {
            self.problems[pi].1 = rec["question"].as_str().unwrap_or("").to_string();
        }
        let mut touched = Vec::new();
        let no_samples = Vec::new();
        let samples = rec["samples"].as_array().unwrap_or(&no_samples);
        let groups = samples
            .iter()
            .enumerate()
            .map(|(s, g)| (s as u32, g))
            .chain(std::iter::once((0, &rec["aggregates"])));
        for (sample, group) in groups {
            let Some(nodes) = group.as_object() else {
                continue;
            };
            let r = self.row(pi, sample);
            for (node, nr_) in nodes {
                let round = nr_["round"].as_u64().unwrap_or(0) as u32;
                let kind = nr_["kind"].as_str().unwrap_or("");
                let c = self.col(run, node, round, kind);
                if self.cols[c].2.is_empty() {
                    self.cols[c].2 = kind.to_string();
                }
                let cell = &mut self.cells[r][c];
                let out = &nr_["output"];
                match nr_["status"].as_str().unwrap_or("") {
                    "done" => {
                        cell.state = done_state(&out["correct"]);
                        cell.answer = text_of(&out["answer"]);
                        cell.note = done_note(cell.state, &cell.answer);
                    }
                    "failed" => {
                        cell.state = FAILED;
                        cell.note = Some("failed".into());
                    }
                    "skipped" => {
                        cell.state = SKIPPED;
                        cell.note = Some("skipped".into());
                    }
                    "not_run" => {
                        cell.state = NOT_RUN;
                        let why = nr_["reason"].as_str().unwrap_or("interrupted");
                        cell.note = Some(why.replace('_', " "));
                    }
                    _ => cell.state = WAITING,
                }
                cell.cached = nr_["cached"].as_bool().unwrap_or(false);
                if cell.error.is_none() {
                    cell.error = text_of(&nr_["error"]);
                }
                self.drop_stream(r, c);
                if let Ok(raw) = serde_json::to_vec(nr_)
                    && let Ok(z) = zstd::bulk::compress(&raw, 1)
                {
                    self.records.insert((r, c), z);
                }
                touched.push((r, c));
            }
        }
        self.status[pi] = Some(rec["status"].as_str().unwrap_or("ok").to_string());
        self.truth.insert(pi, rec["answer"].clone());
        let grew = np != self.problems.len() || nr != self.rows.len() || nc != self.cols.len();
        let cells: Vec<Value> = touched.iter().map(|&(r, c)| self.cell_msg(r, c)).collect();
        let mut m = json!({"t": "p", "p": pi, "status": self.status[pi], "cells": cells});
        if grew {
            m["grid"] = self.grid();
        }
        Some(m)
    }

    pub fn set_metrics(&mut self, m: &Value) -> Value {
        self.metrics = m.clone();
        json!({"t": "m", "metrics": m})
    }

    pub fn finish(&mut self, summary: &Value) -> Value {
        self.summary = summary.clone();
        json!({"t": "end", "summary": summary})
    }

    /// Problems, rows, columns and every cell.
    fn grid(&self) -> Value {
        let problems: Vec<Value> = self
            .problems
            .iter()
            .map(|(id, q)| json!([id, preview(q, QUESTION_PREVIEW)]))
            .collect();
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|row| Value::Array(row.iter().map(Cell::json).collect()))
            .collect();
        json!({
            "problems": problems,
            "rows": self.rows,
            "cols": self.cols,
            "col_run": self.col_run,
            "runs": self.runs,
            "cells": cells,
            "status": self.status,
        })
    }

    /// Everything a page needs to draw the current state.
    pub fn snapshot(&self) -> Value {
        json!({
            "t": "snapshot",
            "mode": self.mode,
            "title": self.title,
            "grid": self.grid(),
            "metrics": self.metrics,
            "summary": self.summary,
            "retries": self.retries,
            "events": self.events,
        })
    }

    /// The full detail of one attempt: from its problem's record when finished, else what is
    /// known so far (cell, streamed text).
    pub fn attempt(&self, problem: &str, sample: u32, node: &str, run: usize) -> Option<Value> {
        let pi = *self.problem_ix.get(problem)?;
        let c = *self.col_ix.get(&(run, node.to_string()))?;
        let r = *self.row_ix.get(&(pi, sample))?;
        let cell = &self.cells[r][c];
        let (id, question) = &self.problems[pi];
        let (_, round, kind) = &self.cols[c];
        let mut out = json!({
            "problem": id, "sample": sample, "node": node, "round": round, "kind": kind, "run": run,
            "question": question, "cell": cell.json(), "error": cell.error,
        });
        if self.status[pi].is_some() {
            out["truth"] = self.truth.get(&pi).cloned().unwrap_or_default();
            out["record"] = self
                .records
                .get(&(r, c))
                .and_then(|z| zstd::bulk::decompress(z, 1 << 30).ok())
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .unwrap_or_default();
            out["source"] = json!("record");
            return Some(out);
        }
        if let Some(s) = self.streams.get(&(r, c)) {
            out["streamed"] = json!(s.text);
            out["units"] = json!(s.units);
            out["truncated"] = json!(s.truncated);
        }
        out["source"] = json!("live");
        Some(out)
    }

    /// Bytes of streamed text held (for tests of the bound).
    pub fn stream_bytes(&self) -> usize {
        self.stream_bytes
    }
}
