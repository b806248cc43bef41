//! The waves of a pipeline, for `pipeline plan` with batch models: a model call's wave is
//! the number of model calls on the longest chain of its instance graph before it, so the
//! paper's graph (attempt_0, then summary_i → attempt_i) is 2 × rounds + 1 waves, each
//! every problem's call at that depth. A batch model's wave is submitted as
//! ⌈calls / batch_size⌉ batches. Conditions (`when:`) and continuations can only shorten
//! or lengthen this; the plan says so.

use std::collections::BTreeMap;

use crate::spec::Pipeline;
use crate::spec::batch::BatchSettings;

/// Waves and batches of one run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Waves {
    /// Waves of model calls (all models).
    pub waves: usize,
    /// Per wave (0-based) and batch model: calls in that wave over all problems and samples.
    pub batch_calls: BTreeMap<(usize, String), u64>,
    /// Batches those waves are submitted as.
    pub batches: u64,
}

/// The waves of `p` over all its problems, with `batch` the run's batch models.
pub fn plan(p: &Pipeline, batch: &[(String, BatchSettings)]) -> Waves {
    let g = crate::graph::build(p);
    let order = match petgraph::algo::toposort(&g.g, None) {
        Ok(o) => o,
        Err(_) => return Waves::default(),
    };
    // depth[i]: model calls on the longest chain before instance i
    let mut depth = vec![0usize; g.len()];
    let mut waves = 0usize;
    let mut per: BTreeMap<(usize, String), u64> = BTreeMap::new();
    for ix in order {
        let i = ix.index();
        let d = g.deps[i]
            .iter()
            .map(|&u| depth[u] + usize::from(g.uses_model[u]))
            .max()
            .unwrap_or(0);
        depth[i] = d;
        if !g.uses_model[i] {
            continue;
        }
        waves = waves.max(d + 1);
        let node = &p.nodes[g.inst(i).node];
        let model = node
            .model
            .as_deref()
            .or_else(|| node.params.get("judge_model").and_then(|m| m.as_str()));
        if let Some(m) = model
            && batch.iter().any(|(b, _)| b == m)
        {
            *per.entry((d, m.to_string())).or_default() += p.problems.len() as u64;
        }
    }
    let batches = per
        .iter()
        .map(|((_, m), n)| {
            let size = batch
                .iter()
                .find(|(b, _)| b == m)
                .map_or(1, |(_, s)| s.size.max(1)) as u64;
            n.div_ceil(size)
        })
        .sum();
    Waves {
        waves,
        batch_calls: per,
        batches,
    }
}
