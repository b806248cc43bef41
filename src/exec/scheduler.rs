//! The scheduler: one ready queue over every open problem's instances, ordered by longest
//! remaining chain of model calls (ties: the earlier problem), dispatched while model-call
//! nodes in flight stay under `--concurrency` and each model's `max_in_flight`, within a
//! window of open problems so memory stays flat. It evaluates `when:` conditions, skips the
//! dependents of a skipped node, fails the dependents of a failed one (only within that
//! problem and sample), streams events and finished problems to a `Sink`, and stops cleanly
//! on Ctrl-C. It does not know how nodes run (`nodes`) or where results go (`output`).

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use futures_util::FutureExt;
use serde_json::Value;
use tokio::task::JoinSet;

use super::RunCtx;
use super::grouped::Grouped;
use super::instance::{Failure, Open, State, node_record, record};
use super::progress::Progress;
use crate::data::Problem;
use crate::graph::{self, InstanceGraph};
use crate::nodes::{self, NodeCx, NodeKind, Output};
pub use crate::runfile::records::{Event, NodeRecord, ProblemRecord, now};
use crate::spec::Ref;

/// Where the scheduler sends what happens.
pub trait Sink: Send {
    fn event(&mut self, e: &Event) -> Result<()>;
    /// A problem's instances were opened (before any of its nodes runs).
    fn problem_open(&mut self, _p: &Problem) -> Result<()> {
        Ok(())
    }
    /// One node instance ended (done, failed, skipped or not run); `sample` is None for an
    /// aggregating node.
    fn node_done(&mut self, _index: usize, _sample: Option<u32>, _r: &NodeRecord) -> Result<()> {
        Ok(())
    }
    fn problem_done(&mut self, p: ProblemRecord) -> Result<()>;
    /// Writes out what is buffered; called before the scheduler waits, so every record of
    /// what finished is in its file while nothing runs (nodes that end together: one write).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

/// What the scheduler observed.
#[derive(Debug, Default)]
pub struct Outcome {
    pub interrupted: bool,
    /// The stop signal's number, when a signal stopped the run.
    pub signal: Option<i32>,
    /// Problems finished with some node not run (budget, offline miss, interrupt).
    pub incomplete: usize,
    /// Nodes not run, by reason.
    pub not_run: std::collections::BTreeMap<&'static str, usize>,
    pub failed: Vec<(String, String)>,
    pub problems_done: usize,
}

impl Outcome {
    fn count_not_run(&mut self, rec: &ProblemRecord) {
        for s in rec.samples.iter().chain(std::iter::once(&rec.aggregates)) {
            for n in s.values() {
                if let Some(r) = n.reason {
                    *self.not_run.entry(r.reason()).or_default() += 1;
                }
            }
        }
    }
}

type TaskResult = (usize, usize, Result<crate::nodes::Produced>, u64);

/// Ready instances: model-call nodes in a heap by longest remaining chain (ties: the earlier
/// problem), the rest (extract, grade, vote, token summaries) in a list that is always
/// dispatched at once, since they need no call slot.
#[derive(Default)]
struct Ready {
    model: BinaryHeap<(u64, std::cmp::Reverse<usize>, std::cmp::Reverse<usize>)>,
    light: Vec<(usize, usize)>,
}

impl Ready {
    fn push(&mut self, g: &InstanceGraph, pid: usize, i: usize) {
        if g.uses_model[i] {
            self.model
                .push((g.chain[i], std::cmp::Reverse(pid), std::cmp::Reverse(i)));
        } else {
            self.light.push((pid, i));
        }
    }
    fn is_empty(&self) -> bool {
        self.model.is_empty() && self.light.is_empty()
    }
}

pub async fn schedule(
    ctx: Arc<RunCtx>,
    sink: &mut dyn Sink,
    progress: &Progress,
) -> Result<Outcome> {
    let mut grouped = Grouped::new(sink, &ctx);
    let sink = &mut grouped;
    let g = Arc::new(graph::build(&ctx.pipeline));
    let kinds: Vec<Arc<dyn NodeKind>> = ctx
        .pipeline
        .nodes
        .iter()
        .map(|n| nodes::kind(&n.kind).expect("validated kind"))
        .collect();
    // a problem is shared (`Arc`) from when it opens; the rows themselves are shared
    // with the pipeline's copy (`Problem::fields`)
    let problems = ctx.clone();
    let problems = &problems.pipeline.problems;
    let window = window(&ctx);
    let mut open: HashMap<usize, Open> = HashMap::new();
    let mut next = 0usize;
    let mut ready = Ready::default();
    let mut tasks: JoinSet<TaskResult> = JoinSet::new();
    let mut in_flight_model = 0usize;
    let mut per_model: HashMap<String, usize> = HashMap::new();
    let mut outcome = Outcome::default();
    let mut signals = super::signals::Signals::new();
    let mut grace_until: Option<tokio::time::Instant> = None;
    let mut side = super::listen(&ctx);
    tracing::debug!(
        "schedule: {} problem(s), {} node instance(s) each, up to {window} problems open, {} model call(s) in flight",
        problems.len(),
        g.len(),
        ctx.concurrency
    );

    loop {
        // once stopped, no new problem is opened
        while open.len() < window && next < problems.len() && !ctx.stop_new_calls() {
            let problem = Arc::new(problems.get(next).map_err(anyhow::Error::msg)?);
            sink.problem_open(&problem)?;
            open.insert(next, open_problem(&g, &problem, next, &mut ready));
            next += 1;
        }
        // dispatch: every node that needs no call slot, then model nodes in priority order
        // while there is room
        let mut picked: Vec<(usize, usize)> = std::mem::take(&mut ready.light);
        let mut deferred = Vec::new();
        while let Some(item) = ready.model.pop() {
            let (_, std::cmp::Reverse(pid), std::cmp::Reverse(i)) = item;
            let node = &ctx.pipeline.nodes[g.inst(i).node];
            // a node waiting for the same call in flight elsewhere holds no call slot
            if in_flight_model >= ctx.concurrency + ctx.calls.waiting() {
                tracing::trace!(
                    "schedule: all {in_flight_model} call slots busy; {} model node(s) wait",
                    ready.model.len() + 1
                );
                deferred.push(item);
                break;
            }
            let m = node.model.as_deref().unwrap_or_default();
            // a batch model's waiting calls are lines of a batch, not requests in flight
            let cap = ctx
                .pipeline
                .spec
                .models
                .get(m)
                .and_then(|m| m.max_in_flight)
                .filter(|_| !ctx.calls.is_batched(m));
            if cap.is_some_and(|c| per_model.get(m).copied().unwrap_or(0) >= c) {
                tracing::trace!(
                    "schedule: model `{m}` at its max_in_flight; {} waits",
                    node.id
                );
                deferred.push(item);
                continue;
            }
            in_flight_model += 1;
            *per_model.entry(m.to_string()).or_default() += 1;
            picked.push((pid, i));
        }
        ready.model.extend(deferred);
        for (pid, i) in picked {
            let node_ix = g.inst(i).node;
            let node = &ctx.pipeline.nodes[node_ix];
            let op = open.get_mut(&pid).expect("open problem");
            let sample = g.inst(i).sample;
            let upstream = upstream_of(&g, &op.states, i, &ctx);
            if let Some(c) = &node.when {
                let get = |r: &Ref| -> Option<Value> {
                    upstream
                        .get(&r.node)
                        .and_then(|o| r.field.as_ref().and_then(|f| o.get(f).cloned()))
                };
                if !c.eval(&get) {
                    if g.uses_model[i] {
                        release(&mut in_flight_model, &mut per_model, node);
                    }
                    let why = format!(
                        "condition `{}` is false",
                        node.when_text.as_deref().unwrap_or("")
                    );
                    finish(
                        &ctx,
                        &g,
                        sink,
                        &mut open,
                        pid,
                        i,
                        State::Skipped(why),
                        &mut ready,
                        &mut outcome,
                        progress,
                    )?;
                    continue;
                }
            }
            op.states[i] = State::Running;
            tracing::debug!(
                "schedule: start {}/{}{} ({in_flight_model}/{} call slots in use)",
                op.problem.id,
                node.id,
                sample.map_or_else(String::new, |s| format!(" sample {s}")),
                ctx.concurrency
            );
            let (tctx, kind, problem) = (ctx.clone(), kinds[node_ix].clone(), op.problem.clone());
            tasks.spawn(async move {
                let t = Instant::now();
                let r = run_node(&tctx, kind, &problem, node_ix, sample, &upstream).await;
                (pid, i, r, t.elapsed().as_millis() as u64)
            });
        }
        if tasks.is_empty() {
            if ready.is_empty() && (next >= problems.len() || ctx.stop_new_calls()) {
                break;
            }
            if ready.is_empty() {
                continue;
            }
        }
        let wake = wait(
            &mut tasks,
            &mut side,
            sink,
            &mut signals,
            &mut grace_until,
            &ctx,
            &mut outcome,
        )
        .await?;
        let joined = match wake {
            Wake::Joined(j) => j,
            Wake::Again => None,
            Wake::Abandon => {
                tasks.abort_all();
                break;
            }
        };
        for e in side.drain(None) {
            sink.event(&e)?;
        }
        // this task and every other one that ended meanwhile, before dispatching again (their
        // records are written together when the scheduler next waits)
        let mut joined = joined;
        while let Some(j) = joined.take() {
            joined = tasks.try_join_next();
            let (pid, i, r, ms) = match j {
                Ok(v) => v,
                Err(e) if e.is_cancelled() => continue,
                Err(e) => anyhow::bail!("a node task panicked: {e}"),
            };
            let node = &ctx.pipeline.nodes[g.inst(i).node];
            if g.uses_model[i] {
                release(&mut in_flight_model, &mut per_model, node);
            }
            let state = match r {
                Ok(p) => State::Done(Arc::new(p.output), p.cached, ms),
                Err(e) => State::Failed(Failure::of(&e)),
            };
            tracing::debug!(
                "schedule: {} {}/{} after {ms} ms",
                match &state {
                    State::Done(_, true, _) => "cached",
                    State::Done(..) => "done",
                    _ => "failed",
                },
                open.get(&pid).map_or("?", |o| o.problem.id.as_str()),
                node.id
            );
            if ctx.stop_new_calls() {
                outcome.interrupted = true;
            }
            finish(
                &ctx,
                &g,
                sink,
                &mut open,
                pid,
                i,
                state,
                &mut ready,
                &mut outcome,
                progress,
            )?;
        }
    }
    for e in side.drain(None) {
        sink.event(&e)?;
    }
    if outcome.interrupted {
        // keep what finished of the open problems
        let mut pids: Vec<usize> = open.keys().copied().collect();
        pids.sort();
        for pid in pids {
            let op = open.remove(&pid).expect("open");
            for (i, st) in op.states.iter().enumerate() {
                if matches!(st, State::Waiting(_) | State::Running) {
                    let r = node_record(&ctx, &g, i, st, true);
                    sink.node_done(op.problem.index, g.inst(i).sample, &r)?;
                }
            }
            let rec = record(&ctx, &g, &op, true);
            outcome.count_not_run(&rec);
            sink.problem_done(rec)?;
        }
    }
    Ok(outcome)
}

/// A problem's instances, all waiting; those without inputs are ready.
fn open_problem(g: &InstanceGraph, problem: &Arc<Problem>, pid: usize, ready: &mut Ready) -> Open {
    for i in 0..g.len() {
        if g.deps[i].is_empty() {
            ready.push(g, pid, i);
        }
    }
    Open {
        problem: problem.clone(),
        states: (0..g.len())
            .map(|i| State::Waiting(g.deps[i].len()))
            .collect(),
        left: g.len(),
    }
}

/// Runs one node instance; a panic in it fails that node, not the run.
async fn run_node(
    ctx: &RunCtx,
    kind: Arc<dyn NodeKind>,
    problem: &Problem,
    node_ix: usize,
    sample: Option<u32>,
    upstream: &HashMap<String, Arc<Output>>,
) -> Result<crate::nodes::Produced> {
    let node = &ctx.pipeline.nodes[node_ix];
    let cx: NodeCx<'_> = ctx.node_cx(node, problem, sample.unwrap_or(0), upstream);
    match std::panic::AssertUnwindSafe(kind.run(&cx))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(p) => Err(anyhow::anyhow!(
            "internal error in node `{}`: {}",
            node.id,
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    }
}

/// What woke the scheduler.
enum Wake {
    /// A node task ended (None: there was none).
    Joined(Option<Result<TaskResult, tokio::task::JoinError>>),
    /// Something changed (a stop signal, a single-flight waiter): dispatch again.
    Again,
    /// A second signal or the end of the grace period: abandon what still runs.
    Abandon,
}

/// Waits for a node task to end, writing the call layer's events as they come (without a
/// dispatch round for each). The first stop signal stops new calls and starts the grace
/// period.
#[allow(clippy::too_many_arguments)]
async fn wait(
    tasks: &mut JoinSet<TaskResult>,
    side: &mut super::Heard,
    sink: &mut Grouped<'_>,
    signals: &mut super::signals::Signals,
    grace_until: &mut Option<tokio::time::Instant>,
    ctx: &RunCtx,
    outcome: &mut Outcome,
) -> Result<Wake> {
    use super::signals::{GRACE, name};
    loop {
        let flush_by = sink.before_wait()?;
        tokio::select! {
            _ = until(flush_by) => sink.flush()?,
            j = tasks.join_next() => return Ok(Wake::Joined(j)),
            Some(e) = side.wake.recv() => {
                for e in side.drain(Some(e)) {
                    sink.event(&e)?;
                }
            }
            _ = ctx.calls.waiting_changed().notified() => return Ok(Wake::Again),
            _ = ctx.calls.batches.changed().notified() => return Ok(Wake::Again),
            sig = signals.recv() => {
                if grace_until.is_some() {
                    eprintln!("{}: abandoning the calls still in flight", name(sig));
                    return Ok(Wake::Abandon);
                }
                ctx.calls.stop();
                outcome.interrupted = true;
                outcome.signal = Some(sig);
                *grace_until = Some(tokio::time::Instant::now() + GRACE);
                eprintln!(
                    "\n{}: stopping: no new calls; calls in flight get {} s to finish; finished work is kept",
                    name(sig),
                    GRACE.as_secs()
                );
                return Ok(Wake::Again);
            }
            _ = until(*grace_until) => {
                eprintln!("the grace period is over: abandoning the calls still in flight");
                return Ok(Wake::Abandon);
            }
        }
    }
}

/// How many problems are open at once: enough to keep `--concurrency` calls busy (counted
/// in samples: a problem's samples run side by side, so 10 samples need a tenth of the
/// problems open; more only hold memory: bench (b) peaked at 51 MB with 64 problems of 10
/// samples open), and, with a batch model, to fill one batch (a wave of every open
/// problem's ready calls).
fn window(ctx: &RunCtx) -> usize {
    let samples = ctx.pipeline.spec.samples.max(1) as usize;
    let chains = (ctx.concurrency * 4).max(16);
    chains
        .div_ceil(samples)
        .max(2)
        .max(ctx.calls.batch_window())
}

/// Waits until `t`, or forever without one.
async fn until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Gives back a model node's call slot.
fn release(
    in_flight: &mut usize,
    per_model: &mut HashMap<String, usize>,
    node: &crate::spec::Node,
) {
    *in_flight -= 1;
    if let Some(c) = per_model.get_mut(node.model.as_deref().unwrap_or_default()) {
        *c -= 1;
    }
}

/// The finished outputs a node instance reads, by node id.
fn upstream_of(
    g: &InstanceGraph,
    states: &[State],
    i: usize,
    ctx: &RunCtx,
) -> HashMap<String, Arc<Output>> {
    // an aggregating instance sees each sample's output as `id#sample`
    let mut m = HashMap::new();
    let aggregating = g.inst(i).sample.is_none();
    for &d in &g.deps[i] {
        if let State::Done(o, _, _) = &states[d] {
            let id = &ctx.pipeline.nodes[g.inst(d).node].id;
            let key = match (aggregating, g.inst(d).sample) {
                (true, Some(s)) => format!("{id}#{s}"),
                _ => id.clone(),
            };
            m.insert(key, o.clone());
        }
    }
    m
}

#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &RunCtx,
    g: &InstanceGraph,
    sink: &mut dyn Sink,
    open: &mut HashMap<usize, Open>,
    pid: usize,
    i: usize,
    state: State,
    ready: &mut Ready,
    outcome: &mut Outcome,
    progress: &Progress,
) -> Result<()> {
    let op = open.get_mut(&pid).expect("open problem");
    let mut stack = vec![(i, state)];
    while let Some((i, state)) = stack.pop() {
        let node = &ctx.pipeline.nodes[g.inst(i).node];
        let sample = g.inst(i).sample;
        if g.uses_model[i] {
            progress.node_done(ctx);
        }
        let mut ev = Event::new(&op.problem.id, sample, &node.id, node.round, "finished");
        match &state {
            State::Done(o, cached, ms) => {
                ev.cached = Some(*cached);
                ev.usage = o.get("usage").cloned();
                ev.answer = o.get("answer").cloned();
                ev.correct = o.get("correct").cloned();
                ev.latency_ms = Some(*ms);
            }
            State::Skipped(why) => {
                ev.event = "skipped";
                ev.error = Some(why.clone());
            }
            State::Failed(f) => {
                ev.event = "failed";
                ev.error = Some(f.message.clone());
                ev.reason = f.not_sent.map(|n| n.reason());
            }
            _ => {}
        }
        let failed = matches!(state, State::Failed(_));
        let skipped = matches!(state, State::Skipped(_));
        sink.event(&ev)?;
        sink.node_done(
            op.problem.index,
            sample,
            &node_record(ctx, g, i, &state, false),
        )?;
        op.states[i] = state;
        op.left -= 1;
        for &d in &g.dependents[i] {
            let State::Waiting(n) = &mut op.states[d] else {
                continue;
            };
            if *n == usize::MAX {
                continue; // already failed or skipped through another upstream node
            }
            *n -= 1;
            // an aggregating node (vote) runs over the samples that finished: one sample's
            // failure or skip does not take the others' vote away
            let into_aggregate = g.inst(d).sample.is_none() && g.inst(i).sample.is_some();
            if (failed || skipped) && !into_aggregate {
                // the first upstream failure or skip decides; its other deps no longer matter
                let s = op.states[i].inherited(&node.id);
                op.states[d] = State::Waiting(usize::MAX);
                stack.push((d, s));
            } else if *n == 0 {
                ready.push(g, pid, d);
            }
        }
    }
    let op = open.get(&pid).expect("open");
    if op.left == 0 {
        let op = open.remove(&pid).expect("open");
        let rec = record(ctx, g, &op, false);
        if rec.status == crate::runfile::records::ProblemStatus::Failed {
            outcome
                .failed
                .push((rec.id.clone(), rec.error.clone().unwrap_or_default()));
        } else if rec.status == crate::runfile::records::ProblemStatus::Incomplete {
            outcome.incomplete += 1;
        }
        outcome.count_not_run(&rec);
        outcome.problems_done += 1;
        progress.problem_done(
            ctx,
            rec.status == crate::runfile::records::ProblemStatus::Failed,
        );
        sink.problem_done(rec)?;
    }
    Ok(())
}

/// Used by tests and plans: a quiet sink that keeps everything in memory.
#[derive(Default)]
pub struct MemorySink {
    pub events: Vec<Event>,
    pub problems: Vec<ProblemRecord>,
}

impl Sink for MemorySink {
    fn event(&mut self, e: &Event) -> Result<()> {
        self.events.push(e.clone());
        Ok(())
    }
    fn problem_done(&mut self, p: ProblemRecord) -> Result<()> {
        self.problems.push(p);
        Ok(())
    }
}
