//! The waves of a pipeline, for `pipeline plan` with batch models: a model call's wave is
//! the number of model calls on the longest chain of its instance graph before it, so the
//! paper's graph (attempt_0, then summary_i → attempt_i) is 2 × rounds + 1 waves, each
//! every problem's call at that depth. A node graded by a `grade:` block with
//! `compare: llm_judge` makes a second call (the judge, one wave later, batched when the
//! judge model is). A batch model's wave is submitted as ⌈calls / batch_size⌉ batches.
//! Every count is an upper bound when a `when:` can skip calls or a judge is asked only
//! about extracted answers; continuations lengthen a chain, so the plan also gives the
//! counts with every continuable call continued `max_continuations` times.

use std::collections::BTreeMap;

use crate::spec::Pipeline;
use crate::spec::batch::BatchSettings;

/// Waves and batches of one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Waves {
    /// Waves of model calls (all models) when no answer is continued.
    pub waves: usize,
    /// Waves when every call is continued as far as its model's `max_continuations`.
    pub max_waves: usize,
    /// Per wave (0-based) and model: calls in that wave over all problems and samples (no
    /// continuations).
    pub calls: BTreeMap<(usize, String), u64>,
    /// Per model: calls in all (no continuations), whether batched, and its batches.
    pub per_model: BTreeMap<String, ModelCalls>,
    /// Batches of the batch models when no answer is continued, and when every one is.
    pub batches: u64,
    pub max_batches: u64,
    /// Some node has a `when:`: every count is an upper bound.
    pub conditional: bool,
    /// The model of the `grade:` block's judge, when there is one.
    pub judge: Option<String>,
}

/// One model's calls in the plan.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModelCalls {
    pub calls: u64,
    pub batched: bool,
    pub batches: u64,
    /// Of `calls`, the judge's of the `grade:` block.
    pub judge_calls: u64,
}

/// The calls one instance makes in order: its model's (an explicit `grade` node's judge
/// model included), then the `grade:` block's judge.
fn chain(p: &Pipeline, node: usize, judge: Option<&str>) -> Vec<(String, bool)> {
    let n = &p.nodes[node];
    let own = n
        .model
        .as_deref()
        .or_else(|| n.params.get("judge_model").and_then(|m| m.as_str()));
    let mut out: Vec<(String, bool)> = own.map(|m| (m.to_string(), false)).into_iter().collect();
    // only the kinds the block grades (an explicit `grade` node gives its own verdict)
    if let Some(j) = judge
        && !out.is_empty()
        && crate::nodes::graded_answer_field(&n.kind).is_some()
        && crate::nodes::node_graded(n, &p.spec)
    {
        out.push((j.to_string(), true));
    }
    out
}

/// The waves of `p` over all its problems, with `batch` the run's batch models.
pub fn plan(p: &Pipeline, batch: &[(String, BatchSettings)]) -> Waves {
    let g = crate::graph::build(p);
    let Ok(order) = petgraph::algo::toposort(&g.g, None) else {
        return Waves::default();
    };
    let judge = p
        .spec
        .grade
        .as_ref()
        .filter(|gr| gr.compare == crate::grade::Compare::LlmJudge)
        .and_then(|gr| gr.judge_model.clone());
    let steps = |m: &str| {
        1 + p
            .spec
            .models
            .get(m)
            .map_or(0, |s| s.continuation.max_continuations as usize)
    };
    let size = |m: &str| {
        batch
            .iter()
            .find(|(b, _)| b == m)
            .map(|(_, s)| s.size.max(1) as u64)
    };
    let n = p.problems.len() as u64;
    let mut w = Waves {
        judge: judge.clone(),
        conditional: p.nodes.iter().any(|x| x.when.is_some()),
        ..Default::default()
    };
    // ends[i]: model calls on the longest chain up to instance i, itself included
    // (without and with continuations)
    let mut ends = vec![(0usize, 0usize); g.len()];
    // (wave, model) -> calls, with every call continued
    let mut max_calls: BTreeMap<(usize, String), u64> = BTreeMap::new();
    for ix in order {
        let i = ix.index();
        let d = g.deps[i]
            .iter()
            .map(|&u| ends[u])
            .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
        let (mut at, mut at_max) = d;
        for (m, is_judge) in chain(p, g.inst(i).node, judge.as_deref()) {
            *w.calls.entry((at, m.clone())).or_default() += n;
            for s in 0..steps(&m) {
                *max_calls.entry((at_max + s, m.clone())).or_default() += n;
            }
            let e = w.per_model.entry(m.clone()).or_default();
            e.calls += n;
            if is_judge {
                e.judge_calls += n;
            }
            at += 1;
            at_max += steps(&m);
        }
        ends[i] = (at, at_max);
        w.waves = w.waves.max(at);
        w.max_waves = w.max_waves.max(at_max);
    }
    for ((_, m), calls) in &w.calls {
        if let Some(s) = size(m) {
            let b = calls.div_ceil(s);
            w.batches += b;
            let e = w.per_model.entry(m.clone()).or_default();
            e.batched = true;
            e.batches += b;
        }
    }
    w.max_batches = max_calls
        .iter()
        .filter_map(|((_, m), c)| Some(c.div_ceil(size(m)?)))
        .sum();
    w
}
