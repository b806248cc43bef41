//! The one adapter for the original Python tool's results files: what its fields mean
//! (written by Python's `json.dump`, which may hold the non-finite tokens `NaN`, `Infinity`
//! and `-Infinity` that strict JSON parsers refuse; the ground truth and the model's text go
//! by several names over the tool's versions), and [`Original`], which turns each of its
//! results entries into distill's typed [`ProblemRecord`] so `distill report`, `view`,
//! `grade` and the importers read it as they read a distill run.
//!
//! The mapping: an iterated entry (`iterations[]`) is one sample whose iteration N is a
//! `reason` node `iteration_N` of round N (with its `summary` as a `summarize` node
//! `summary_{N+1}` of round N + 1, the round whose prompt it goes into, as in distill's
//! pipelines); a pass@k entry (`solutions[]`) has one sample per solution, each a `reason`
//! node `solution` of round 0, and its `consensus_correct` is a `vote` aggregate. An entry
//! the tool wrote as an error (`"error"`, no answer) becomes `not_run` records with the
//! reason `recorded_error` at every round: it has no verdict, so it is neither right nor wrong.
use std::collections::BTreeSet;
use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::{Value, json};

use super::records::{NodeRecord, NodeStatus, ProblemRecord, ProblemStatus};
use crate::calls::{NotSent, Output};

/// A JSON scalar as text: strings as they are, numbers and booleans printed; null is None.
pub fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A stored verdict: a boolean, `"True"`/`"false"`/`"yes"`/`"1"`…, or 1/0.
pub fn verdict(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        _ => None,
    }
}

/// Truth fields the original tool (and its variants) used, in order of preference.
pub const TRUTH_KEYS: &[&str] = &[
    "correct_answer",
    "ground_truth",
    "gold_answer",
    "expected_answer",
    "gold",
    "answer",
    "target",
];
/// Fields holding an original-format record's model output, in order of preference.
pub const TEXT_KEYS: &[&str] = &[
    "reasoning",
    "reasoning_output",
    "text",
    "completion",
    "response",
    "output",
];

/// Parses JSON; on failure retries with Python's non-finite float tokens (`NaN`, `Infinity`,
/// `-Infinity`) outside strings replaced by `null`. The first error is the one reported.
pub fn parse_json(raw: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(raw) {
        Ok(v) => Ok(v),
        Err(e) => match python_nonfinite_to_null(raw) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// `raw` with `NaN`/`Infinity`/`-Infinity` outside strings replaced by `null`; None when there are none.
pub fn python_nonfinite_to_null(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let (mut in_str, mut escaped, mut changed) = (false, false, false);
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push_str("null");
            rest = &rest[tok.len()..];
            changed = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// Which of the original tool's layouts a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `results[].iterations[]`: one sample, iteration N = round N.
    Iterated,
    /// `results[].solutions[]`: k samples of round 0, with `consensus_correct`.
    PassK,
}

/// An original results file, read whole (Python wrote it in one `json.dump`).
pub struct Original {
    pub kind: Kind,
    pub experiment_name: Option<String>,
    /// The config it recorded about itself (`config`), or null.
    pub config: Value,
    results: Vec<Value>,
    /// The rest of the document (None: the file was a bare array).
    shell: Option<Value>,
    /// Every round any entry reached (iterated), else `[0]`.
    rounds: Vec<u32>,
    /// The most solutions of any entry (pass@k), else 1.
    samples: usize,
}

/// An entry's round of its `k`-th iteration: its `iteration` field, else its position.
fn round_of(k: usize, it: &Value) -> u32 {
    number(it.get("iteration")).map_or(k as u32, |x| x as u32)
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn list<'a>(r: &'a Value, key: &str) -> &'a [Value] {
    r.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

impl Original {
    /// The original tool's results, when `doc` is one: a `results` array (or a bare array)
    /// whose entries hold `iterations`, `solutions` or an `error`.
    pub fn from_doc(mut doc: Value) -> Option<Original> {
        let (results, bare) = match doc.get_mut("results") {
            Some(Value::Array(a)) => (std::mem::take(a), false),
            _ => match &mut doc {
                Value::Array(a) => (std::mem::take(a), true),
                _ => return None,
            },
        };
        let has = |k: &str| {
            results
                .iter()
                .any(|r| r.get(k).is_some_and(Value::is_array))
        };
        let kind = if has("iterations") {
            Kind::Iterated
        } else if has("solutions") {
            Kind::PassK
        } else if !results.is_empty() && results.iter().all(|r| r.get("error").is_some()) {
            Kind::Iterated
        } else {
            return None;
        };
        let mut rounds: BTreeSet<u32> = results
            .iter()
            .flat_map(|r| list(r, "iterations").iter().enumerate())
            .map(|(k, it)| round_of(k, it))
            .collect();
        if kind == Kind::PassK || rounds.is_empty() {
            rounds = BTreeSet::from([0]);
        }
        let samples = match kind {
            Kind::Iterated => 1,
            Kind::PassK => results
                .iter()
                .map(|r| list(r, "solutions").len())
                .max()
                .unwrap_or(1)
                .max(1),
        };
        let config = doc.get("config").cloned().unwrap_or(Value::Null);
        let experiment_name =
            text_of(doc.get("experiment_name")).or_else(|| text_of(config.get("experiment_name")));
        Some(Original {
            kind,
            experiment_name,
            config,
            results,
            shell: (!bare).then_some(doc),
            rounds: rounds.into_iter().collect(),
            samples,
        })
    }

    /// The document as it was read (`distill grade` rewrites it in the tool's own schema).
    pub fn into_doc(self) -> Value {
        match self.shell {
            Some(mut d) => {
                d["results"] = Value::Array(self.results);
                d
            }
            None => Value::Array(self.results),
        }
    }

    pub fn rounds(&self) -> &[u32] {
        &self.rounds
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// The entries as distill's records, in file order.
    pub fn records(&self) -> impl Iterator<Item = ProblemRecord> + '_ {
        self.results
            .iter()
            .enumerate()
            .map(|(i, r)| self.record(i, r))
    }

    /// Whether no iteration of an iterated file carries token counts.
    pub fn lacks_iteration_tokens(&self) -> bool {
        self.kind == Kind::Iterated
            && !self
                .results
                .iter()
                .flat_map(|r| list(r, "iterations"))
                .any(|it| it.get("token_usage").or_else(|| it.get("usage")).is_some())
    }

    fn record(&self, i: usize, r: &Value) -> ProblemRecord {
        let id = text_of(r.get("problem_id"))
            .or_else(|| text_of(r.get("id")))
            .unwrap_or_else(|| format!("#{i}"));
        let error = text_of(r.get("error"));
        let mut samples = match self.kind {
            Kind::Iterated => vec![iterations(list(r, "iterations"))],
            Kind::PassK => solutions(r, self.samples, error.is_some()),
        };
        let mut status = if samples
            .iter()
            .flat_map(|s| s.values())
            .any(|n| n.status == NodeStatus::Failed)
        {
            ProblemStatus::Failed
        } else {
            ProblemStatus::Ok
        };
        if let Some(e) = &error {
            // no answer was recorded: the rounds it has no record of did not run
            status = ProblemStatus::Incomplete;
            for s in &mut samples {
                for &round in &self.rounds {
                    let node = match self.kind {
                        Kind::Iterated => format!("iteration_{round}"),
                        Kind::PassK => "solution".to_string(),
                    };
                    s.entry(node.clone())
                        .or_insert_with(|| recorded_error(&node, round, e));
                }
            }
        }
        let mut aggregates = IndexMap::new();
        if let Some(c) = verdict(r.get("consensus_correct")) {
            let mut o = Output::new();
            o.insert("correct".into(), json!(c));
            o.insert("n".into(), json!(list(r, "solutions").len()));
            if let Some(a) = text_of(r.get("consensus_answer")) {
                o.insert("answer".into(), json!(a));
            }
            aggregates.insert("consensus".to_string(), done("consensus", "vote", 0, o));
        }
        ProblemRecord {
            id,
            index: i,
            question: text_of(r.get("question"))
                .or_else(|| text_of(r.get("problem")))
                .unwrap_or_default(),
            answer: TRUTH_KEYS
                .iter()
                .find_map(|k| text_of(r.get(*k)))
                .unwrap_or_default(),
            status,
            samples,
            aggregates,
            error,
        }
    }
}

fn done(node: &str, kind: &str, round: u32, output: Output) -> NodeRecord {
    NodeRecord {
        node: node.to_string(),
        kind: kind.to_string(),
        round,
        status: NodeStatus::Done,
        cached: false,
        reason: None,
        output: Some(Arc::new(output)),
        error: None,
        latency_ms: 0,
    }
}

fn recorded_error(node: &str, round: u32, error: &str) -> NodeRecord {
    NodeRecord {
        node: node.to_string(),
        kind: "reason".into(),
        round,
        status: NodeStatus::NotRun,
        cached: false,
        reason: Some(NotSent::RecordedError),
        output: None,
        error: Some(error.to_string()),
        latency_ms: 0,
    }
}

/// A solution or iteration as a `reason` node's output (None: it is an error entry).
fn attempt_output(rec: &Value, round: u32) -> Output {
    let mut o = Output::new();
    if let Some(t) = TEXT_KEYS
        .iter()
        .find_map(|k| rec.get(*k).and_then(Value::as_str))
    {
        o.insert("text".into(), json!(t));
    }
    if let Some(r) = rec.get("reasoning").and_then(Value::as_str) {
        o.insert("reasoning".into(), json!(r));
    }
    o.insert(
        "answer".into(),
        text_of(rec.get("answer")).map_or(Value::Null, Value::String),
    );
    if let Some(c) = verdict(rec.get("correct")) {
        o.insert("correct".into(), json!(c));
    }
    if let Some(f) = text_of(rec.get("finish_reason")) {
        o.insert("finish_reason".into(), json!(f));
    }
    if let Some(u) = rec.get("token_usage").or_else(|| rec.get("usage")) {
        o.insert("usage".into(), usage(u));
    }
    // an iteration's summary is also a `summarize` node of its own; shown with it
    if let Some(s) = rec.get("summary").filter(|s| s.is_string()) {
        o.insert("summary".into(), s.clone());
    }
    o.insert("round".into(), json!(round));
    o
}

fn usage(u: &Value) -> Value {
    let g = |k: &str| number(u.get(k)).unwrap_or(0.0) as u64;
    json!({"prompt_tokens": g("prompt_tokens"), "completion_tokens": g("completion_tokens")})
}

/// An iterated entry's one sample: `iteration_N` (and `summary_N`) for each iteration.
fn iterations(its: &[Value]) -> IndexMap<String, NodeRecord> {
    let mut nodes = IndexMap::new();
    for (k, it) in its.iter().enumerate() {
        let round = round_of(k, it);
        let node = format!("iteration_{round}");
        let rec = match text_of(it.get("error")) {
            Some(e) => NodeRecord {
                status: NodeStatus::Failed,
                output: None,
                error: Some(e),
                ..done(&node, "reason", round, Output::new())
            },
            None => done(&node, "reason", round, attempt_output(it, round)),
        };
        nodes.insert(node, rec);
        if let Some(s) = it.get("summary").and_then(Value::as_str) {
            // as in a distill pipeline: the summary of round N's attempt is a node of round
            // N + 1, the round whose prompt it goes into
            let id = format!("summary_{}", round + 1);
            let mut o = Output::new();
            o.insert("text".into(), json!(s));
            if let Some(f) = text_of(it.get("summary_finish_reason")) {
                o.insert("finish_reason".into(), json!(f));
            }
            o.insert("round".into(), json!(round + 1));
            nodes.insert(id.clone(), done(&id, "summarize", round + 1, o));
        }
    }
    nodes
}

/// A pass@k entry's samples: one `solution` node each; the entry's token counts and cost
/// (recorded per problem) go to the first, so the round's sums are the entry's.
fn solutions(r: &Value, samples: usize, error: bool) -> Vec<IndexMap<String, NodeRecord>> {
    let sols = list(r, "solutions");
    let cost = r
        .get("cost_info")
        .and_then(|c| number(c.get("total_cost")))
        .filter(|c| *c > 0.0); // the tool wrote 0.0 when it had no price
    (0..samples)
        .filter_map(|i| {
            let rec = match sols.get(i) {
                Some(sol) => {
                    let mut o = attempt_output(sol, 0);
                    if i == 0 {
                        if let Some(u) = r.get("token_usage").or_else(|| r.get("usage")) {
                            o.insert("usage".into(), usage(u));
                        }
                        if let Some(c) = cost {
                            o.insert("cost_usd".into(), json!(c));
                        }
                    }
                    done("solution", "reason", 0, o)
                }
                // an error entry's samples are filled in as recorded errors
                None if error => return None,
                None => NodeRecord {
                    status: NodeStatus::Failed,
                    output: None,
                    error: Some("solution missing".into()),
                    ..done("solution", "reason", 0, Output::new())
                },
            };
            Some(IndexMap::from([("solution".to_string(), rec)]))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .chain(std::iter::repeat_with(IndexMap::new))
        .take(samples)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonfinite_tokens_become_null_outside_strings_only() {
        let raw = r#"{"a": NaN, "b": "NaN \" Infinity", "c": [-Infinity, Infinity, 1]}"#;
        let fixed = python_nonfinite_to_null(raw).unwrap();
        assert_eq!(
            fixed,
            r#"{"a": null, "b": "NaN \" Infinity", "c": [null, null, 1]}"#
        );
        assert!(python_nonfinite_to_null(r#"{"a": "NaN"}"#).is_none());
        let v = parse_json(raw).unwrap();
        assert_eq!(v["b"], "NaN \" Infinity");
        assert!(parse_json("{").is_err());
    }
}
