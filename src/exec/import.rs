//! Importing an earlier run's answers: `--load_run FILE` (every round: reasoning, summaries,
//! continuations) and `--load_initial_reasoning FILE` (round-0 `reason` outputs only). The
//! file is any run `runfile` reads — distill's or the original tool's. Its records become
//! the call layer's import table (`calls::imports`): a node call that misses the cache is
//! answered by the record of the same problem, sample, kind and round and written under
//! this pipeline's own key. The file is checked first: every record must name a problem of
//! the problem set whose question and answer match, and carry its text; any violation is an
//! error naming the problem (the original tool imported a missing reasoning as None and
//! silently wrecked runs). Records the earlier run wrote as errors are skipped and counted
//! (`not_run: recorded_error` in this run). After the run, `import.json` in the run directory
//! says what came from where, and every verdict that differs from the recorded one.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::calls::NotSent;
use crate::calls::imports::{Imported, Imports};
use crate::llm::Usage;
use crate::runfile::records::{NodeRecord, NodeStatus, ProblemRecord};
use crate::spec::Pipeline;

/// Which records of the file to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `--load_initial_reasoning`: the round-0 `reason` outputs.
    Round0,
    /// `--load_run`: every node record with a model's text.
    All,
}

impl Scope {
    pub fn flag(self) -> &'static str {
        match self {
            Scope::Round0 => "--load_initial_reasoning",
            Scope::All => "--load_run",
        }
    }
}

/// What an import brought, for the run's manifest.
#[derive(Debug)]
pub struct Loaded {
    pub flag: &'static str,
    pub source: String,
    pub format: &'static str,
    pub imports: std::sync::Arc<Imports>,
    /// Problems the file recorded as errors.
    pub recorded_errors: Vec<String>,
    /// (problem, sample, round) → the recorded verdict of its graded attempt.
    verdicts: HashMap<(String, u32, u32), bool>,
}

/// Whether a record is one to import: round 0's graded attempts (`--load_initial_reasoning`),
/// or any record (`--load_run`: only those with a model's text are looked up, by the nodes
/// that call a model).
fn wanted(n: &NodeRecord, scope: Scope) -> bool {
    match scope {
        Scope::Round0 => n.round == 0 && attempt(n),
        Scope::All => true,
    }
}

/// A graded attempt (`reason`, `continue`: the kinds the `grade:` block grades), which must
/// carry its text.
fn attempt(n: &NodeRecord) -> bool {
    crate::nodes::block_graded_kinds().contains(&n.kind.as_str())
}

fn output_text(n: &NodeRecord, key: &str) -> Option<String> {
    crate::runfile::original::text_of(n.output.as_deref().and_then(|o| o.get(key)))
}

fn answer(n: &NodeRecord) -> Imported {
    let o = n.output.as_deref();
    Imported::Answer {
        text: output_text(n, "text").unwrap_or_default(),
        reasoning: output_text(n, "reasoning").filter(|r| !r.is_empty()),
        finish_reason: output_text(n, "finish_reason").unwrap_or_else(|| "unreported".into()),
        usage: o
            .and_then(|o| o.get("usage"))
            .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok()),
    }
}

/// The problem set's rows of the records' problems (looked up in one pass over the file).
struct Rows<'a> {
    file: &'a crate::data::ProblemFile,
    of: HashMap<String, usize>,
}

/// Checks one problem's record against the problem set; the errors found.
fn check(p: &ProblemRecord, pipeline: &Pipeline, rows: &Rows<'_>, errors: &mut Vec<String>) {
    let Some(&i) = rows.of.get(&p.id) else {
        errors.push(format!(
            "problem `{}` is not in {}",
            p.id,
            pipeline.problems_path.display()
        ));
        return;
    };
    let q = match rows.file.problem(i) {
        Ok(q) => q,
        Err(e) => {
            errors.push(format!("problem `{}`: {e}", p.id));
            return;
        }
    };
    if !p.question.is_empty() && p.question.trim() != q.question().trim() {
        errors.push(format!(
            "problem `{}`: its question differs from the problem set's",
            p.id
        ));
    }
    if !p.answer.is_empty() && p.answer.trim() != q.answer().trim() {
        errors.push(format!(
            "problem `{}`: its answer `{}` differs from the problem set's `{}`",
            p.id,
            p.answer,
            q.answer()
        ));
    }
}

/// The import table being filled from a file's records.
#[derive(Default)]
struct Table {
    imports: Imports,
    recorded_errors: Vec<String>,
    verdicts: HashMap<(String, u32, u32), bool>,
}

impl Table {
    /// Adds one problem's records; the problems found in them.
    fn add(
        &mut self,
        p: &ProblemRecord,
        pipeline: &Pipeline,
        rows: &Rows<'_>,
        scope: Scope,
    ) -> Vec<String> {
        let mut recorded_error = false;
        let mut errors = Vec::new();
        for (s, nodes) in p.samples.iter().enumerate() {
            let s = s as u32;
            for n in nodes.values().filter(|n| wanted(n, scope)) {
                match n.status {
                    NodeStatus::Done => {}
                    NodeStatus::NotRun if n.reason == Some(NotSent::RecordedError) => {
                        recorded_error = true;
                        let e = n.error.clone().unwrap_or_default();
                        let rec = Imported::RecordedError(e);
                        self.imports.insert(&p.id, s, &n.kind, n.round, rec);
                        continue;
                    }
                    // only what finished: a killed or stopped run has nodes that never ran
                    _ => continue,
                }
                let no_text = output_text(n, "text").is_none_or(|t| t.trim().is_empty());
                if no_text && !attempt(n) {
                    continue; // a node without a model's text (an extract, a vote)
                }
                if no_text {
                    errors.push(format!(
                        "problem `{}` (sample {s}, node `{}`): no text to import",
                        p.id, n.node
                    ));
                    continue;
                }
                if let Some(c) = n
                    .output
                    .as_deref()
                    .and_then(|o| o.get("correct")?.as_bool())
                {
                    self.verdicts.insert((p.id.clone(), s, n.round), c);
                }
                self.imports.insert(&p.id, s, &n.kind, n.round, answer(n));
            }
        }
        if recorded_error {
            self.recorded_errors.push(p.id.clone());
        } else {
            check(p, pipeline, rows, &mut errors);
        }
        errors
    }
}

/// Reads and checks `path`; the import table for the run.
pub fn load(pipeline: &Pipeline, path: &Path, scope: Scope) -> Result<Loaded> {
    let flag = scope.flag();
    let rf = crate::runfile::open(path).map_err(anyhow::Error::msg)?;
    let (problems, bad) = rf.readable(crate::runfile::Texts::Full);
    if let Some(u) = bad.first() {
        bail!(
            "{}: {} record(s) cannot be read (record {}: {}); fix or remove them",
            rf.file.display(),
            bad.len(),
            u.line,
            u.error
        );
    }
    let mut t = Table {
        imports: Imports::new(path.display().to_string()),
        ..Default::default()
    };
    let ids: Vec<&str> = problems.iter().map(|p| p.id.as_str()).collect();
    let rows = Rows {
        file: &pipeline.problem_set,
        of: pipeline
            .problem_set
            .find(&ids)
            .map_err(anyhow::Error::msg)?,
    };
    let mut errors = Vec::new();
    for p in &problems {
        errors.extend(t.add(p, pipeline, &rows, scope));
    }
    let Table {
        imports,
        recorded_errors,
        verdicts,
    } = t;
    if !errors.is_empty() {
        bail!(
            "{}: {} problem(s) in the file:\n  {}",
            path.display(),
            errors.len(),
            errors.join("\n  ")
        );
    }
    if imports.answers() == 0 {
        bail!(
            "{}: no finished record to import ({} problem record(s){}); point {flag} at a run that finished some",
            rf.file.display(),
            problems.len(),
            match recorded_errors.len() {
                0 => String::new(),
                n => format!(", {n} written as errors"),
            }
        );
    }
    Ok(Loaded {
        flag,
        source: path.display().to_string(),
        format: rf.format.label(),
        imports: std::sync::Arc::new(imports),
        recorded_errors,
        verdicts,
    })
}

/// Writes `import.json` into the run directory: the source, what was used by kind and
/// round, the recorded errors (`not_run: recorded_error` here), and every verdict of this
/// run that differs from the recorded one (also printed).
pub fn write_manifest(dir: &Path, l: &Loaded) -> Result<()> {
    let mut differ = Vec::new();
    if let Ok(rf) = crate::runfile::open(dir) {
        for p in rf.problems(crate::runfile::Texts::Lengths).flatten() {
            for (s, nodes) in p.samples.iter().enumerate() {
                for n in nodes.values().filter(|n| n.kind == "reason") {
                    let now = n
                        .output
                        .as_deref()
                        .and_then(|o| o.get("correct")?.as_bool());
                    let was = l.verdicts.get(&(p.id.clone(), s as u32, n.round));
                    if let (Some(now), Some(&was)) = (now, was)
                        && now != was
                    {
                        differ.push(json!({"problem": p.id, "sample": s, "round": n.round,
                                           "recorded": was, "now": now}));
                    }
                }
            }
        }
    }
    for d in &differ {
        eprintln!(
            "regraded: problem `{}` sample {} round {}: recorded {}, now {}",
            d["problem"].as_str().unwrap_or(""),
            d["sample"],
            d["round"],
            verdict_word(&d["recorded"]),
            verdict_word(&d["now"])
        );
    }
    let used: BTreeMap<String, usize> = l
        .imports
        .used()
        .into_iter()
        .map(|((kind, round), n)| (format!("{kind} round {round}"), n))
        .collect();
    let manifest = json!({
        "flag": l.flag,
        "source": l.source,
        "format": l.format,
        "records": l.imports.len(),
        "used": used,
        "recorded_errors": l.recorded_errors.iter()
            .map(|id| json!({"problem": id, "status": "not_run", "reason": "recorded_error"}))
            .collect::<Vec<_>>(),
        "verdicts_differ": differ,
    });
    crate::atomic::write_atomically(
        &dir.join("import.json"),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )
    .map_err(anyhow::Error::msg)
}

fn verdict_word(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) {
        "right"
    } else {
        "wrong"
    }
}
