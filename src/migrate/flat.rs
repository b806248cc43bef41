//! Reading one of the original tool's flat experiment configs: its top-level keys with their
//! lines, typed access to each value, and the table of every key the original reads (and the
//! few it carries but never reads). A key outside that table, or a value of the wrong type, is
//! an `Issue` naming its line; all of them are collected, none stops the reading.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser};
use serde_json::Value;

/// Something wrong with the flat config, at a line of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Issue {
    pub fn new(line: Option<usize>, message: impl Into<String>) -> Issue {
        Issue {
            line,
            message: message.into(),
            hint: None,
        }
    }
    pub fn hint(mut self, h: impl Into<String>) -> Issue {
        self.hint = Some(h.into());
        self
    }
}

/// Every key the original tool reads from an experiment config (src/experiments/*.py and
/// run_experiment.py), plus the ones its configs carry that it never reads.
pub const KNOWN_KEYS: &[&str] = &[
    "experiment_name",
    "results_dir",
    "data_path",
    "save_intermediate",
    "experiment_type",
    "dashboard_port",
    "reasoning_model",
    "reasoning_model_provider",
    "summarizer_type",
    "summarizer_model",
    "summarizer_model_provider",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "presence_penalty",
    "frequency_penalty",
    "enable_continuation",
    "max_total_tokens",
    "max_continuations",
    "max_iterations",
    "continue_after_correct",
    "enable_summarization",
    "summary_method",
    "allow_fallback",
    "last_k_tokens",
    "first_k_tokens",
    "random_k_tokens",
    "multiple_prompt_chunk_words",
    "multiple_prompt_overlap_words",
    "answer_extractor",
    "prompts",
    "summary_max_tokens",
    "summary_temperature",
    "summary_top_p",
    "summary_top_k",
    "summary_presence_penalty",
    "summary_frequency_penalty",
    "summary_max_total_tokens",
    "summary_max_continuations",
    "extract_post_think_summary",
    "enable_final_summarization",
    "pass_k_iterations",
    "append_wait_if_tag_missing",
    "reasoning_prompt_template",
    "summarize_prompt_template",
    "improved_prompt_template",
    "think_end_tag",
    "continuation_suffix",
    "max_concurrency",
    "reformat_loaded_prompts",
];

/// Keys the original carries without effect on the calls or the grading (kept for the
/// conversion's notes).
pub const IGNORED_KEYS: &[(&str, &str)] = &[
    (
        "results_dir",
        "distill writes results/<name>/<run-id>/ (choose the root with --results)",
    ),
    (
        "save_intermediate",
        "distill always appends each finished node to results.jsonl",
    ),
    (
        "enable_final_summarization",
        "the original tool never reads this key",
    ),
    (
        "max_concurrency",
        "use --concurrency (model calls in flight)",
    ),
    (
        "reformat_loaded_prompts",
        "distill imports earlier reasoning under this pipeline's own keys",
    ),
];

/// A parsed flat config: its values and the line of every top-level key (and of the keys
/// under `prompts:`, as `prompts.reasoning`).
pub struct Flat {
    pub values: BTreeMap<String, Value>,
    pub lines: BTreeMap<String, usize>,
    pub issues: Vec<Issue>,
    /// What reading the keys noticed that is not an error.
    pub notes: Vec<String>,
}

/// Whether a YAML tree is the original tool's flat format rather than a distill pipeline.
pub fn is_flat(tree: &Value) -> bool {
    let Some(m) = tree.as_object() else {
        return false;
    };
    !m.contains_key("nodes")
        && [
            "experiment_name",
            "reasoning_model",
            "experiment_type",
            "data_path",
        ]
        .iter()
        .any(|k| m.contains_key(*k))
}

impl Flat {
    pub fn parse(tree: Value, text: &str) -> Flat {
        let lines = key_lines(text);
        let mut issues = Vec::new();
        let values: BTreeMap<String, Value> = match tree {
            Value::Object(m) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        for k in values.keys() {
            if !KNOWN_KEYS.contains(&k.as_str()) {
                issues.push(
                    Issue::new(lines.get(k).copied(), format!("unknown key `{k}`"))
                        .hint(unknown_hint(k)),
                );
            }
        }
        Flat {
            values,
            lines,
            issues,
            notes: Vec::new(),
        }
    }

    pub fn line(&self, key: &str) -> Option<usize> {
        self.lines.get(key).copied()
    }

    pub fn has(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| !v.is_null())
    }

    fn bad(&mut self, key: &str, want: &str) {
        let got = self.values.get(key).cloned().unwrap_or(Value::Null);
        let line = self.line(key);
        self.issues.push(Issue::new(
            line,
            format!("`{key}` must be {want}, not {got}"),
        ));
    }

    pub fn str(&mut self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.bad(key, "text");
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.values.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            _ => {
                self.bad(key, "true or false");
                None
            }
        }
    }

    pub fn f64(&mut self, key: &str) -> Option<f64> {
        match self.values.get(key)? {
            Value::Null => None,
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => n.as_f64(),
            _ => {
                self.bad(key, "a number");
                None
            }
        }
    }

    /// A whole number of at least `min`.
    pub fn uint(&mut self, key: &str, min: u64) -> Option<u64> {
        match self.values.get(key)? {
            Value::Null => None,
            Value::Number(n) if n.as_u64().is_some_and(|v| v >= min) => n.as_u64(),
            _ => {
                self.bad(key, &format!("a whole number of at least {min}"));
                None
            }
        }
    }

    pub fn int(&mut self, key: &str) -> Option<i64> {
        match self.values.get(key)? {
            Value::Null => None,
            Value::Number(n) if n.as_i64().is_some() => n.as_i64(),
            _ => {
                self.bad(key, "a whole number");
                None
            }
        }
    }

    /// A required key: reported when missing, with what the original does then.
    pub fn require(&mut self, key: &str, why: &str) {
        if !self.has(key) {
            self.issues.push(
                Issue::new(None, format!("`{key}` is missing ({why})"))
                    .hint(format!("add `{key}:` to the config")),
            );
        }
    }
}

fn unknown_hint(k: &str) -> String {
    let close = KNOWN_KEYS
        .iter()
        .filter(|c| strsim_close(k, c))
        .copied()
        .collect::<Vec<_>>();
    if close.is_empty() {
        "the original tool silently ignores keys it does not read; remove it (see README: Migrating from the original tool)".into()
    } else {
        format!("did you mean `{}`?", close.join("` or `"))
    }
}

/// Closeness of a typo: at most two edits apart (after removing `_`), or a long prefix.
fn strsim_close(a: &str, b: &str) -> bool {
    let na = a.replace('_', "").to_lowercase();
    let nb = b.replace('_', "").to_lowercase();
    let prefix = na.len() > 5 && (nb.starts_with(&na) || na.starts_with(&nb));
    prefix || strsim::levenshtein(&na, &nb) <= 2
}

/// Lines of the top-level keys and of the keys one level under a top-level mapping.
fn key_lines(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut parser = Parser::new_from_str(text);
    // depth of nested collections; `expect_key[d]` is true when the next scalar at depth d is a key
    let mut expect_key: Vec<bool> = Vec::new();
    let mut is_map: Vec<bool> = Vec::new();
    let mut top_key: Option<String> = None;
    while let Some(Ok((ev, span))) = parser.next_event() {
        let line = span.start.line();
        match ev {
            Event::Scalar(s, ..) => {
                let d = expect_key.len();
                if d >= 1 && is_map[d - 1] && expect_key[d - 1] {
                    if d == 1 {
                        out.insert(s.to_string(), line);
                        top_key = Some(s.to_string());
                    } else if d == 2
                        && let Some(t) = &top_key
                    {
                        out.insert(format!("{t}.{s}"), line);
                    }
                    expect_key[d - 1] = false;
                } else if d >= 1 && is_map[d - 1] {
                    expect_key[d - 1] = true;
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let map = matches!(ev, Event::MappingStart(..));
                expect_key.push(map);
                is_map.push(map);
            }
            Event::MappingEnd | Event::SequenceEnd => {
                expect_key.pop();
                is_map.pop();
                if let Some(last) = expect_key.last_mut()
                    && is_map.last() == Some(&true)
                {
                    *last = true;
                }
            }
            Event::Alias(_) => {
                if let Some(last) = expect_key.last_mut()
                    && is_map.last() == Some(&true)
                {
                    *last = true;
                }
            }
            _ => {}
        }
    }
    out
}

/// A conversion in progress over a flat config: the config, where each output field came
/// from (output path, line) and the notes for the user. The build steps (`build.rs`,
/// `models.rs`) share it.
pub(super) struct B<'f> {
    pub(super) f: &'f mut Flat,
    pub(super) lines: Vec<(String, usize)>,
    pub(super) notes: Vec<String>,
}

impl B<'_> {
    pub(super) fn at(&mut self, path: &str, key: &str) {
        if let Some(l) = self.f.line(key) {
            self.lines.push((path.to_string(), l));
        }
    }
    pub(super) fn issue(&mut self, key: &str, msg: impl Into<String>, hint: impl Into<String>) {
        let line = self.f.line(key);
        self.f.issues.push(Issue::new(line, msg).hint(hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lines_and_reports_every_unknown_key() {
        let text = "experiment_name: x\nprompts:\n  reasoning: aime\n  improved: v0\nmax_tokens: 5\nbogus: 1\nmax_token: 2\n";
        let tree: Value = serde_saphyr::from_str(text).unwrap();
        assert!(is_flat(&tree));
        let f = Flat::parse(tree, text);
        assert_eq!(f.line("max_tokens"), Some(5));
        assert_eq!(f.line("prompts.improved"), Some(4));
        assert_eq!(f.issues.len(), 2);
        assert_eq!(f.issues[0].line, Some(6));
        assert!(f.issues[1].hint.as_deref().unwrap().contains("max_tokens"));
    }

    #[test]
    fn a_distill_pipeline_is_not_flat() {
        let tree = serde_json::json!({"name": "x", "nodes": {}});
        assert!(!is_flat(&tree));
    }
}
