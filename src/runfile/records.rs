//! The typed records of a run directory: events.jsonl lines ([`Event`]) and the record of
//! each node instance and problem ([`NodeRecord`], [`ProblemRecord`]) that the journal and
//! results.json hold. The scheduler makes them; `runfile` writes them.

use std::sync::Arc;

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::calls::Output;

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
#[derive(Debug, Clone, Serialize)]
pub struct NodeRecord {
    pub node: String,
    pub kind: String,
    pub round: u32,
    /// done | failed | skipped | not_run
    pub status: &'static str,
    pub cached: bool,
    /// Why a `not_run` node did not run (`interrupted`, `budget`, `offline_miss`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Arc<Output>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// One problem's record in results.json.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemRecord {
    pub id: String,
    pub index: usize,
    pub question: String,
    pub answer: String,
    /// ok | failed | incomplete
    pub status: &'static str,
    /// Per sample: node id → record, in pipeline order.
    pub samples: Vec<IndexMap<String, NodeRecord>>,
    /// Aggregating nodes (once per problem).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub aggregates: IndexMap<String, NodeRecord>,
    /// The first failure, when any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
