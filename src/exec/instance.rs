//! The state of one open problem's node instances (waiting, running, done, skipped, failed
//! with a typed reason) and the records made from it for the run directory. The scheduler
//! moves instances between states; this file knows what each state records.

use std::sync::Arc;

use indexmap::IndexMap;

use super::RunCtx;
use crate::calls::NotSent;
use crate::data::Problem;
use crate::graph::InstanceGraph;
use crate::nodes::Output;
use crate::runfile::records::{NodeRecord, ProblemRecord};

/// Why a node failed: an error, or a call that was not sent (typed, so that a plan's
/// misses propagate as planned, not as failures).
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) not_sent: Option<NotSent>,
}

impl Failure {
    pub(super) fn of(e: &anyhow::Error) -> Failure {
        Failure {
            message: format!("{e:#}"),
            not_sent: e.downcast_ref::<NotSent>().copied(),
        }
    }
}

pub(super) enum State {
    Waiting(usize),
    Running,
    Done(Arc<Output>, bool, u64),
    Skipped(String),
    Failed(Failure),
}

impl State {
    /// What a dependent of this failed or skipped node becomes (`upstream`: this node's id):
    /// what was not sent stops its dependents for the same reason; a plan's miss stays a
    /// planned call.
    pub(super) fn inherited(&self, upstream: &str) -> State {
        let not_sent = match self {
            State::Failed(f) => f.not_sent,
            State::Skipped(_) => {
                return State::Skipped(format!("upstream `{upstream}` was skipped"));
            }
            _ => None,
        };
        State::Failed(match not_sent {
            Some(NotSent::Planned) => Failure {
                message: format!("{} (upstream `{upstream}`)", NotSent::Planned),
                not_sent,
            },
            Some(ns) => Failure {
                message: format!("not run: upstream `{upstream}` was not sent ({ns})"),
                not_sent,
            },
            None => Failure {
                message: format!("not run: upstream `{upstream}` failed"),
                not_sent: None,
            },
        })
    }
}

pub(super) struct Open {
    pub(super) problem: Arc<Problem>,
    pub(super) states: Vec<State>,
    pub(super) left: usize,
}

/// The record of node instance `i` in state `st` (`stopped`: the run was interrupted, so a
/// node that never ran is `not_run: interrupted`).
pub(super) fn node_record(
    ctx: &RunCtx,
    g: &InstanceGraph,
    i: usize,
    st: &State,
    stopped: bool,
) -> NodeRecord {
    let node = &ctx.pipeline.nodes[g.inst(i).node];
    use crate::runfile::records::NodeStatus;
    let mut reason = None;
    let (status, output, err, cached, ms) = match st {
        State::Done(o, c, ms) => (NodeStatus::Done, Some(o.clone()), None, *c, *ms),
        State::Failed(f) if f.not_sent.is_some() => {
            reason = f.not_sent;
            (NodeStatus::NotRun, None, Some(f.message.clone()), false, 0)
        }
        State::Failed(f) => (NodeStatus::Failed, None, Some(f.message.clone()), false, 0),
        State::Skipped(w) => (NodeStatus::Skipped, None, Some(w.clone()), false, 0),
        State::Waiting(_) | State::Running => {
            if stopped {
                reason = Some(NotSent::Interrupted);
            }
            (NodeStatus::NotRun, None, None, false, 0)
        }
    };
    NodeRecord {
        node: node.id.clone(),
        kind: node.kind.clone(),
        round: node.round,
        status,
        cached,
        reason,
        output,
        error: err,
        latency_ms: ms,
    }
}

/// A problem's record; `stopped`: the run was interrupted while it was open.
pub(super) fn record(ctx: &RunCtx, g: &InstanceGraph, op: &Open, stopped: bool) -> ProblemRecord {
    use crate::runfile::records::{NodeStatus, ProblemStatus};
    let samples = ctx.pipeline.spec.samples.max(1) as usize;
    let mut per_sample: Vec<IndexMap<String, NodeRecord>> = vec![IndexMap::new(); samples];
    let mut aggregates = IndexMap::new();
    let mut error = None;
    let mut not_run = false;
    for (i, st) in op.states.iter().enumerate() {
        let inst = g.inst(i);
        let node = &ctx.pipeline.nodes[inst.node];
        let rec = node_record(ctx, g, i, st, stopped);
        not_run |= rec.reason.is_some();
        if rec.status == NodeStatus::Failed && error.is_none() {
            error = Some(format!(
                "{}: {}",
                node.id,
                rec.error.clone().unwrap_or_default()
            ));
        }
        match inst.sample {
            Some(s) => {
                per_sample[s as usize].insert(node.id.clone(), rec);
            }
            None => {
                aggregates.insert(node.id.clone(), rec);
            }
        }
    }
    let status = match (error.is_some(), not_run || stopped) {
        (_, true) if stopped => ProblemStatus::Incomplete,
        (true, _) => ProblemStatus::Failed,
        (false, true) => ProblemStatus::Incomplete,
        (false, false) => ProblemStatus::Ok,
    };
    ProblemRecord {
        id: op.problem.id.clone(),
        index: op.problem.index,
        question: op.problem.question().to_string(),
        answer: op.problem.answer().to_string(),
        status,
        samples: per_sample,
        aggregates,
        error,
    }
}
