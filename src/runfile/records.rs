//! The typed records of a run directory: events.jsonl lines ([`Event`]) and the record of
//! each node instance and problem ([`NodeRecord`], [`ProblemRecord`]) that the journal and
//! results.json hold. The scheduler makes them; `runfile` writes them.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::calls::{NotSent, Output};

/// How a node instance ended (DESIGN.md's outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Done,
    /// An error after sending.
    Failed,
    /// By `when:`.
    Skipped,
    /// Never ran; its record's `reason` says why.
    NotRun,
}

/// How a problem ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemStatus {
    Ok,
    /// Some node failed.
    Failed,
    /// Some node was not run (budget, offline miss, interrupt).
    Incomplete,
}

/// A line of events.jsonl (DESIGN.md).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub time: String,
    pub problem: String,
    pub sample: Option<u32>,
    pub node: String,
    pub round: u32,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why a call was not sent (`planned`, `interrupted`, `budget`, `offline_miss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Event {
    /// An event of one node instance, stamped now, with no details yet.
    pub fn new(
        problem: &str,
        sample: Option<u32>,
        node: &str,
        round: u32,
        event: &'static str,
    ) -> Event {
        Event {
            time: now(),
            problem: problem.to_string(),
            sample,
            node: node.to_string(),
            round,
            event,
            cached: None,
            usage: None,
            answer: None,
            correct: None,
            error: None,
            latency_ms: None,
            reason: None,
        }
    }
}

/// One node instance's record in results.json.
pub type NodeRecord = NodeRecordOf<Arc<Output>>;

/// A node instance's record with its output read as `O`: whole ([`NodeRecord`]) or without
/// its long texts ([`Slim`], a report's read).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecordOf<O> {
    pub node: String,
    pub kind: String,
    pub round: u32,
    pub status: NodeStatus,
    #[serde(default)]
    pub cached: bool,
    /// Why a `not_run` node did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotSent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<O>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub latency_ms: u64,
}

/// One problem's record in results.json.
pub type ProblemRecord = ProblemRecordOf<Arc<Output>>;

/// A problem's record with its nodes' outputs read as `O` ([`NodeRecordOf`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemRecordOf<O> {
    #[serde(deserialize_with = "text")]
    pub id: String,
    #[serde(default)]
    pub index: usize,
    #[serde(default, deserialize_with = "text")]
    pub question: String,
    #[serde(default, deserialize_with = "text")]
    pub answer: String,
    pub status: ProblemStatus,
    /// Per sample: node id → record, in pipeline order.
    pub samples: Vec<IndexMap<String, NodeRecordOf<O>>>,
    /// Aggregating nodes (once per problem).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub aggregates: IndexMap<String, NodeRecordOf<O>>,
    /// The first failure, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProblemRecord {
    /// Reads one problem line of results.json or of a journal's assembly.
    pub fn parse(line: &str) -> Result<ProblemRecord, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// As [`ProblemRecord::parse`], without the long texts of its outputs (`text`,
    /// `reasoning`, `prompt`, `answer_text`, `new_text`), never allocated; the reasoning's
    /// length is kept as `reasoning_chars`. What `runfile`'s `slim` makes of a whole record.
    pub fn parse_slim(line: &str) -> Result<ProblemRecord, serde_json::Error> {
        let r: ProblemRecordOf<Slim> = serde_json::from_str(line)?;
        Ok(r.map_outputs(&|o: Slim| o.0))
    }
}

impl<O> NodeRecordOf<O> {
    /// The same record with its output as `f` makes it.
    fn map_output<P>(self, f: impl Fn(O) -> P) -> NodeRecordOf<P> {
        NodeRecordOf {
            output: self.output.map(f),
            node: self.node,
            kind: self.kind,
            round: self.round,
            status: self.status,
            cached: self.cached,
            reason: self.reason,
            error: self.error,
            latency_ms: self.latency_ms,
        }
    }
}

impl<O> ProblemRecordOf<O> {
    /// The same record with every node's output as `f` makes it.
    fn map_outputs<P>(self, f: &impl Fn(O) -> P) -> ProblemRecordOf<P> {
        let node = |(k, n): (String, NodeRecordOf<O>)| (k, n.map_output(f));
        ProblemRecordOf {
            samples: (self.samples.into_iter())
                .map(|s| s.into_iter().map(node).collect())
                .collect(),
            aggregates: self.aggregates.into_iter().map(node).collect(),
            id: self.id,
            index: self.index,
            question: self.question,
            answer: self.answer,
            status: self.status,
            error: self.error,
        }
    }
}

/// The output fields a report never reads: dropped by [`Slim`] and `runfile`'s `slim`.
pub const LONG_TEXTS: [&str; 5] = ["text", "reasoning", "prompt", "answer_text", "new_text"];

/// A node output read without its [`LONG_TEXTS`] (skipped, not allocated), the reasoning's
/// length in characters kept as `reasoning_chars`.
#[derive(Debug, Clone, Default)]
pub struct Slim(pub Arc<Output>);

impl<'de> Deserialize<'de> for Slim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Slim, D::Error> {
        d.deserialize_map(SlimVisitor)
    }
}

struct SlimVisitor;

impl<'de> serde::de::Visitor<'de> for SlimVisitor {
    type Value = Slim;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a node's output (an object)")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Slim, A::Error> {
        use serde::de::IgnoredAny;
        let mut out = Output::new();
        let mut chars = None;
        while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
            if k == "reasoning" {
                chars = m.next_value::<Chars>()?.0;
            } else if LONG_TEXTS.contains(&k.as_ref()) {
                m.next_value::<IgnoredAny>()?;
            } else {
                let v = m.next_value::<Value>()?;
                out.insert(k.into_owned(), v);
            }
        }
        if let Some(n) = chars {
            out.insert("reasoning_chars".into(), n.into());
        }
        Ok(Slim(Arc::new(out)))
    }
}

/// The length in characters of a string, read without allocating it (None for any other
/// value, which is skipped).
struct Chars(Option<usize>);

impl<'de> Deserialize<'de> for Chars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Chars, D::Error> {
        d.deserialize_any(CharsVisitor)
    }
}

struct CharsVisitor;

impl<'de> serde::de::Visitor<'de> for CharsVisitor {
    type Value = Chars;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any value")
    }
    fn visit_str<E>(self, v: &str) -> Result<Chars, E> {
        Ok(Chars(Some(v.chars().count())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Chars, E> {
        Ok(Chars(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Chars, E> {
        Ok(Chars(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Chars, E> {
        Ok(Chars(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Chars, E> {
        Ok(Chars(None))
    }
    fn visit_unit<E>(self) -> Result<Chars, E> {
        Ok(Chars(None))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Chars, A::Error> {
        while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Chars(None))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Chars, A::Error> {
        while m
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Chars(None))
    }
}

/// A text field that older or hand-written files hold as a number (`"answer": 204`).
/// A problem's record as a survey of a run reads it: its id, per sample each node's kind,
/// round, status and verdict, and its aggregates whole. Read straight from a record's text,
/// its long texts are skipped unallocated (a report's first pass over results.json).
#[derive(Debug, Clone, Deserialize)]
pub struct ProblemHead {
    #[serde(deserialize_with = "text")]
    pub id: String,
    pub samples: Vec<IndexMap<String, NodeHead>>,
    #[serde(default)]
    pub aggregates: IndexMap<String, NodeRecord>,
}

/// A node instance's record without its output's texts ([`ProblemHead`]).
#[derive(Debug, Clone, Deserialize)]
pub struct NodeHead {
    pub node: String,
    pub kind: String,
    pub round: u32,
    pub status: NodeStatus,
    #[serde(default)]
    pub output: Option<Verdict>,
}

/// Of a node's output, only its verdict.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Verdict {
    #[serde(default)]
    pub correct: Option<Value>,
}

impl NodeHead {
    /// Whether the instance has a verdict (`correct` true or false).
    pub fn graded(&self) -> bool {
        self.output
            .as_ref()
            .is_some_and(|o| o.correct.as_ref().is_some_and(Value::is_boolean))
    }
}

impl From<ProblemRecord> for ProblemHead {
    fn from(r: ProblemRecord) -> ProblemHead {
        let head = |n: NodeRecord| NodeHead {
            output: n.output.as_ref().map(|o| Verdict {
                correct: o.get("correct").cloned(),
            }),
            node: n.node,
            kind: n.kind,
            round: n.round,
            status: n.status,
        };
        ProblemHead {
            id: r.id,
            samples: r
                .samples
                .into_iter()
                .map(|s| s.into_iter().map(|(k, n)| (k, head(n))).collect())
                .collect(),
            aggregates: r.aggregates,
        }
    }
}

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A head read from a record's text equals the head of the whole record: the survey's
    /// two ways in (distill's lines, other sources' records) agree.
    #[test]
    fn a_head_read_from_text_equals_the_head_of_its_record() {
        let line = json!({"id": 7, "index": 0, "question": "q", "answer": "3", "status": "ok",
            "samples": [
                {"attempt_0": {"node": "attempt_0", "kind": "reason", "round": 0, "status": "done",
                    "output": {"text": "long \"escaped\" text", "correct": true}},
                 "summary": {"node": "summary", "kind": "summarize", "round": 1, "status": "skipped"}},
                {"attempt_0": {"node": "attempt_0", "kind": "reason", "round": 0, "status": "failed",
                    "error": "cut", "output": {"correct": null}}}],
            "aggregates": {"vote": {"node": "vote", "kind": "vote", "round": 0, "status": "done",
                "output": {"pass_at": {"1": 0.5}}}}})
        .to_string();
        let direct: ProblemHead = serde_json::from_str(&line).unwrap();
        let via: ProblemHead =
            ProblemHead::from(serde_json::from_str::<ProblemRecord>(&line).unwrap());
        let show = |h: &ProblemHead| {
            let nodes: Vec<_> = h
                .samples
                .iter()
                .flat_map(|s| s.values())
                .map(|n| {
                    (
                        n.node.clone(),
                        n.kind.clone(),
                        n.round,
                        n.status,
                        n.graded(),
                    )
                })
                .collect();
            (
                h.id.clone(),
                nodes,
                h.aggregates.keys().cloned().collect::<Vec<_>>(),
            )
        };
        assert_eq!(show(&direct), show(&via));
        assert_eq!(direct.id, "7");
        let graded: Vec<bool> = direct
            .samples
            .iter()
            .flat_map(|s| s.values())
            .map(NodeHead::graded)
            .collect();
        assert_eq!(graded, [true, false, false]);
    }
}
