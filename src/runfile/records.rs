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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
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
    pub output: Option<Arc<Output>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub latency_ms: u64,
}

/// One problem's record in results.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProblemRecord {
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
    pub samples: Vec<IndexMap<String, NodeRecord>>,
    /// Aggregating nodes (once per problem).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub aggregates: IndexMap<String, NodeRecord>,
    /// The first failure, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProblemRecord {
    /// Reads one problem line of results.json or of a journal's assembly.
    pub fn parse(line: &str) -> Result<ProblemRecord, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// A text field that older or hand-written files hold as a number (`"answer": 204`).
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
