//! pass@k and majority@k per round, over the samples with a verdict: from the samples
//! themselves (pass@k for k in {1, the vote nodes' ks, samples}, majority@samples) and from
//! vote nodes (or the original tool's consensus). A problem without enough verdicts for a
//! figure is left out of it; the attempts (or votes) that failed or were not run are counted.
//! Computed as the problems pass, in `tally.rs`.

use std::collections::BTreeSet;

use serde::Serialize;

use super::figures::Estimate;
use super::load::Run;

/// pass@k or majority@k at one round.
#[derive(Debug, Clone, Serialize)]
pub struct KMetric {
    pub metric: String,
    pub round: u32,
    pub k: u64,
    pub source: String,
    /// over the problems with enough verdicts (pass@k from samples: ≥ k samples with one;
    /// majority: ≥ 1; vote nodes: a vote with the figure)
    pub estimate: Estimate,
    /// samples: the round's attempts that failed / were not run; vote nodes: the problems
    /// whose vote failed / was not run (or has no record)
    pub failed: usize,
    pub not_run: usize,
}

/// The ks of a loaded run's vote records (pass@k from samples is shown for these too).
pub fn vote_ks(run: &Run) -> BTreeSet<u64> {
    run.problems
        .iter()
        .flat_map(|p| &p.votes)
        .flat_map(|v| v.pass_at.keys().copied())
        .collect()
}
