//! `distill grade RESULTS.json`: regrade a finished run with another extractor/comparison and
//! list every verdict that changed.
//!
//! Owns: recognizing the two results formats (distill's own `results.json`, and the original
//! Python tool's pass@k / iterated `results.json`), re-extracting each final answer from the
//! stored model text, re-comparing it to the stored ground truth, writing the regraded document
//! (same structure, only answers/verdicts and the counts derived from them replaced) atomically,
//! and the human report.
//!
//! Deliberately does not: call a model (`llm_judge` is refused), touch anything but the
//! answer/verdict fields (and, in the original format, the per-problem counts derived from them:
//! `num_correct`, `pass_at_k`, `consensus_*`, and the `initial_*`/`improved_*`/`final_*` copies
//! of an iteration's answer), or grade text that was never a model output (the original tool's
//! `reasoning_full_for_extraction` includes the prompt and is never read).
//!
//! Conventions:
//! - A missing old verdict counts as wrong: a change is listed when `old_correct.unwrap_or(false)`
//!   differs from the new verdict. Answer changes that leave the verdict as it was are not listed.
//! - Problems without a ground truth are left untouched and not counted (a warning goes to stderr);
//!   a file where no graded record has a truth is an error.
//! - Python's `json.dump` writes `NaN`/`Infinity` for non-finite floats; such tokens are read as
//!   `null` (and written back as `null`).

mod distill;
mod original;

use distill::{is_distill, regrade_distill};
use original::{original_results, regrade_original};

use crate::grade::{
    Compare, ExtractOptions, Extractor, GradeContext, check_extractor, equivalent, extract,
};
use serde_json::{Map, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What to regrade with (the CLI's `--extract`, `--grader`, ... flags).
#[derive(Debug, Clone, Default)]
pub struct RegradeOptions {
    pub extract: Extractor,
    pub compare: Compare,
    /// Fall back to the whole text when the answer part (after the last `</think>`) has no answer.
    pub fallback_full_text: bool,
    /// Relative tolerance for numeric comparison (see `GradeContext::rel_tol`).
    pub rel_tol: Option<f64>,
    /// Where to write the regraded file; default `<stem>.regraded.json` beside the input.
    pub out: Option<PathBuf>,
}

/// One verdict that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub problem: String,
    /// distill: the sample index (`None` for a per-problem aggregate node); original format: `None`.
    pub sample: Option<u32>,
    /// distill: the node id; original format: "iteration N" / "solution N".
    pub node: String,
    pub old_answer: Option<String>,
    pub new_answer: Option<String>,
    pub old_correct: Option<bool>,
    pub new_correct: bool,
}

/// What a regrade did.
#[derive(Debug, Clone, PartialEq)]
pub struct RegradeReport {
    /// "distill" | "original"
    pub format: &'static str,
    /// Records (reason nodes / solutions / iterations) regraded.
    pub graded: usize,
    pub changes: Vec<Change>,
    pub written: PathBuf,
    /// Graded records whose old verdict was correct.
    pub old_correct: usize,
    /// Graded records whose new verdict is correct.
    pub new_correct: usize,
}

use crate::runfile::original::TEXT_KEYS;
use crate::runfile::original::TRUTH_KEYS;
pub(super) use crate::runfile::original::verdict;

/// Reads `path`, regrades, writes the regraded file (default: beside the input,
/// `<stem>.regraded.json`; written to a temp file then renamed), returns the report.
pub fn regrade_file(path: &Path, opts: &RegradeOptions) -> Result<RegradeReport, String> {
    if opts.compare == Compare::LlmJudge {
        return Err(
            "llm_judge regrading needs a model; use it in a pipeline's grade: block".into(),
        );
    }
    check_extractor(&opts.extract)?;
    if let Some(t) = opts.rel_tol
        && (!t.is_finite() || t < 0.0)
    {
        return Err(format!("rel_tol must be a finite number >= 0, got {t}"));
    }
    let shown = path.display();
    let rf = crate::runfile::open(path)?;
    let mut doc = match rf.distill_doc() {
        Some(d) => d?,
        None => rf.into_original().map(|o| o.into_doc()).unwrap_or_default(),
    };

    let g = Grader {
        opts,
        xopts: ExtractOptions {
            fallback_full_text: opts.fallback_full_text,
        },
    };
    let mut tally = Tally::default();
    let format = if is_distill(&doc) {
        regrade_distill(&mut doc, &g, &mut tally)?;
        "distill"
    } else if let Some(results) = original_results(&mut doc) {
        regrade_original(results, &g, &mut tally)?;
        "original"
    } else {
        return Err(format!(
            "{shown}: not a recognized results file; expected distill's results.json (an object with \
             \"problems\": [{{\"id\", \"answer\", \"samples\": [{{node id: record}}]}}]) or the original \
             tool's (\"results\": [{{\"correct_answer\", \"solutions\" | \"iterations\": [...]}}])"
        ));
    };
    if tally.graded == 0 && tally.no_truth > 0 {
        return Err(format!(
            "{shown}: no problem has a ground truth to grade against (looked for {})",
            if format == "distill" {
                "\"answer\"".to_string()
            } else {
                quoted_list(TRUTH_KEYS)
            }
        ));
    }
    if tally.stale_votes > 0 {
        eprintln!(
            "warning: {} vote record(s) do not name the node they voted over (written by an older distill); left unchanged",
            tally.stale_votes
        );
    }
    if tally.no_truth > 0 {
        eprintln!(
            "warning: {shown}: {} problem(s) have no ground truth; their records were left as they were",
            tally.no_truth
        );
    }

    let written = match &opts.out {
        Some(p) => p.clone(),
        None => default_out(path),
    };
    write_atomic(&written, &doc)?;
    Ok(RegradeReport {
        format,
        graded: tally.graded,
        changes: tally.changes,
        written,
        old_correct: tally.old_correct,
        new_correct: tally.new_correct,
    })
}

/// Prints the report as a human table: one line per changed verdict, then totals (old accuracy vs new).
pub fn print_report(r: &RegradeReport) {
    print!("{}", render_report(r));
}

fn render_report(r: &RegradeReport) -> String {
    let mut s = String::new();
    if r.changes.is_empty() {
        s.push_str("no verdict changed\n");
    } else {
        let rows: Vec<[String; 5]> = r
            .changes
            .iter()
            .map(|c| {
                [
                    c.problem.clone(),
                    c.sample.map_or("-".into(), |n| n.to_string()),
                    c.node.clone(),
                    format!(
                        "{} -> {}",
                        show_answer(&c.old_answer),
                        show_answer(&c.new_answer)
                    ),
                    format!(
                        "{} -> {}",
                        show_verdict(c.old_correct),
                        show_verdict(Some(c.new_correct))
                    ),
                ]
            })
            .collect();
        let head = [
            "problem",
            "sample",
            "node",
            "answer (old -> new)",
            "verdict",
        ];
        let mut w = head.map(|h| h.chars().count());
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                w[i] = w[i].max(cell.chars().count());
            }
        }
        let mut line = |cells: &[String; 5]| {
            let mut l = String::new();
            for (i, c) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    let _ = write!(l, "{c:<width$}  ", width = w[i]);
                }
            }
            s.push_str(l.trim_end());
            s.push('\n');
        };
        line(&head.map(String::from));
        for row in &rows {
            line(row);
        }
    }
    let to_right = r.changes.iter().filter(|c| c.new_correct).count();
    let _ = writeln!(
        s,
        "{} verdict(s) changed ({} now correct, {} now wrong) among {} graded record(s) [{} format]",
        r.changes.len(),
        to_right,
        r.changes.len() - to_right,
        r.graded,
        r.format
    );
    let _ = writeln!(
        s,
        "accuracy: old {}/{} ({}) -> new {}/{} ({})",
        r.old_correct,
        r.graded,
        pct(r.old_correct, r.graded),
        r.new_correct,
        r.graded,
        pct(r.new_correct, r.graded)
    );
    let _ = writeln!(s, "written: {}", r.written.display());
    s
}

fn pct(n: usize, d: usize) -> String {
    if d == 0 {
        "n/a".into()
    } else {
        format!("{:.1}%", 100.0 * n as f64 / d as f64)
    }
}

fn show_answer(a: &Option<String>) -> String {
    const MAX: usize = 40;
    match a {
        None => "(none)".into(),
        Some(s) => {
            let one_line: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if one_line.chars().count() > MAX {
                let cut: String = one_line.chars().take(MAX - 1).collect();
                format!("{cut}…")
            } else {
                one_line
            }
        }
    }
}

fn show_verdict(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "right",
        Some(false) => "wrong",
        None => "(none)",
    }
}

// ---------------------------------------------------------------------------------------------
// Grading one record

pub(super) struct Grader<'a> {
    opts: &'a RegradeOptions,
    xopts: ExtractOptions,
}

impl Grader<'_> {
    /// The new answer (extracted from `text`, or `old_answer` as-is when there is no text) and its verdict.
    fn grade(
        &self,
        text: Option<&str>,
        old_answer: Option<&str>,
        truth: &str,
        question: Option<&str>,
    ) -> Result<(Option<String>, bool), String> {
        let answer = match text {
            Some(t) => extract(&self.opts.extract, t, &self.xopts),
            None => old_answer.map(str::to_string),
        };
        let ok = match &answer {
            Some(a) => self.same(a, truth, question)?,
            None => false,
        };
        Ok((answer, ok))
    }

    fn same(&self, predicted: &str, truth: &str, question: Option<&str>) -> Result<bool, String> {
        let ctx = GradeContext {
            question,
            rel_tol: self.opts.rel_tol,
        };
        equivalent(self.opts.compare, predicted, truth, &ctx)
    }
}

#[derive(Default)]
pub(super) struct Tally {
    graded: usize,
    old_correct: usize,
    new_correct: usize,
    no_truth: usize,
    /// Vote records without their `input` (older runs), left unchanged.
    stale_votes: usize,
    changes: Vec<Change>,
}

impl Tally {
    /// A vote recomputed from regraded samples: listed when its verdict flips, not counted
    /// among the graded attempts.
    fn record_vote(&mut self, c: Change) {
        if c.old_correct.unwrap_or(false) != c.new_correct {
            self.changes.push(c);
        }
    }

    fn record(&mut self, c: Change) {
        self.graded += 1;
        self.old_correct += usize::from(c.old_correct == Some(true));
        self.new_correct += usize::from(c.new_correct);
        if c.old_correct.unwrap_or(false) != c.new_correct {
            self.changes.push(c);
        }
    }
}

/// A JSON scalar as text: strings as-is, numbers and booleans printed; null/arrays/objects -> None.
pub(super) fn scalar_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn answer_value(a: &Option<String>) -> Value {
    a.clone().map_or(Value::Null, Value::String)
}

pub(super) fn quoted_list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// Reading and writing

/// `<dir>/<stem>.regraded.json` beside `input`.
fn default_out(input: &Path) -> PathBuf {
    if input.is_dir() {
        return input.join("results.regraded.json");
    }
    let stem = input
        .file_stem()
        .map_or_else(|| "results".into(), |s| s.to_string_lossy().into_owned());
    input.with_file_name(format!("{stem}.regraded.json"))
}

/// Writes the regraded document (pretty JSON) whole or not at all.
fn write_atomic(dest: &Path, doc: &Value) -> Result<(), String> {
    let mut bytes = serde_json::to_vec_pretty(doc)
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    bytes.push(b'\n');
    crate::atomic::write_atomically(dest, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))
}

pub(super) struct ProblemCx<'a> {
    pub(super) id: &'a str,
    pub(super) truth: &'a str,
    pub(super) question: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_out_is_beside_input() {
        assert_eq!(
            default_out(Path::new("/r/x/results.json")),
            PathBuf::from("/r/x/results.regraded.json")
        );
        assert_eq!(
            default_out(Path::new("results.json")),
            PathBuf::from("results.regraded.json")
        );
    }

    #[test]
    fn verdicts_and_scalars() {
        assert_eq!(verdict(Some(&Value::from("True"))), Some(true));
        assert_eq!(verdict(Some(&Value::Bool(false))), Some(false));
        assert_eq!(verdict(Some(&Value::Null)), None);
        assert_eq!(scalar_text(Some(&Value::from(33))), Some("33".into()));
        assert_eq!(scalar_text(Some(&Value::Null)), None);
    }

    #[test]
    fn report_renders_changes_and_totals() {
        let r = RegradeReport {
            format: "distill",
            graded: 4,
            changes: vec![Change {
                problem: "p1".into(),
                sample: Some(0),
                node: "attempt_0".into(),
                old_answer: Some("033".into()),
                new_answer: Some("033".into()),
                old_correct: Some(false),
                new_correct: true,
            }],
            written: PathBuf::from("out.json"),
            old_correct: 1,
            new_correct: 2,
        };
        let s = render_report(&r);
        assert!(
            s.contains("p1") && s.contains("033 -> 033") && s.contains("wrong -> right"),
            "{s}"
        );
        assert!(s.contains("old 1/4 (25.0%) -> new 2/4 (50.0%)"), "{s}");
    }
}
