//! pass@k and majority@k per round, over the samples with a verdict: from the samples
//! themselves (pass@k for k in {1, the vote nodes' ks, samples}, majority@samples) and from
//! vote nodes (or the original tool's consensus). A problem without enough verdicts for a
//! figure is left out of it; the attempts (or votes) that failed or were not run are counted.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::figures::{Counts, Estimate};
use super::load::{Attempt, Problem, Run, VoteRecord};
use super::stats::{majority, pass_at_k};

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

/// A problem's samples with a verdict at round index `j`: (answer, right).
fn verdicts(p: &Problem, j: usize) -> Vec<(Option<&str>, bool)> {
    p.samples
        .iter()
        .filter_map(|s| s.get(j))
        .filter_map(|a| Some((a.answer.as_deref(), Attempt::verdict(a)?)))
        .collect()
}

pub fn k_metrics(run: &Run) -> Vec<KMetric> {
    let mut out = Vec::new();
    let all: Vec<&Problem> = run.problems.iter().collect();
    if run.samples >= 2 {
        let mut ks: BTreeSet<u64> = [1, run.samples as u64].into();
        for v in run.problems.iter().flat_map(|p| &p.votes) {
            ks.extend(v.pass_at.keys().filter(|&&k| k <= run.samples as u64));
        }
        for (j, &round) in run.rounds.iter().enumerate() {
            let c = Counts::of(&all, j);
            let mut push = |metric: String, k: u64, shares: Vec<f64>| {
                out.push(KMetric {
                    metric,
                    round,
                    k,
                    source: "samples".into(),
                    estimate: Estimate::of(&shares),
                    failed: c.failed,
                    not_run: c.not_run,
                });
            };
            for &k in &ks {
                let shares: Vec<f64> = run
                    .problems
                    .iter()
                    .filter_map(|p| {
                        let v = verdicts(p, j);
                        let (n, right) = (v.len() as u64, v.iter().filter(|x| x.1).count());
                        (n >= k).then(|| pass_at_k(n, right as u64, k))
                    })
                    .collect();
                push(format!("pass@{k}"), k, shares);
            }
            let maj: Vec<f64> = run
                .problems
                .iter()
                .map(|p| verdicts(p, j))
                .filter(|v| !v.is_empty())
                .map(|v| f64::from(u8::from(majority(&v) == Some(true))))
                .collect();
            push(format!("majority@{}", run.samples), run.samples as u64, maj);
        }
    }
    // from vote nodes (or the original tool's consensus): problems whose vote has no verdict
    // (failed, not run, no record) are left out and counted
    let mut sources: BTreeMap<(u32, String), ()> = BTreeMap::new();
    for v in run.problems.iter().flat_map(|p| &p.votes) {
        sources.insert((v.round, v.source.clone()), ());
    }
    for (round, source) in sources.into_keys() {
        let recs: Vec<Option<&VoteRecord>> = run
            .problems
            .iter()
            .map(|p| {
                p.votes
                    .iter()
                    .find(|v| v.round == round && v.source == source)
            })
            .collect();
        let failed = recs
            .iter()
            .flatten()
            .filter(|v| v.status == "failed")
            .count();
        let done = recs.iter().flatten().filter(|v| v.status == "done").count();
        let not_run = recs.len() - failed - done;
        let mut push = |metric: String, k: u64, shares: Vec<f64>| {
            out.push(KMetric {
                metric,
                round,
                k,
                source: source.clone(),
                estimate: Estimate::of(&shares),
                failed,
                not_run,
            });
        };
        let ks: BTreeSet<u64> = recs
            .iter()
            .flatten()
            .flat_map(|v| v.pass_at.keys().copied())
            .collect();
        for k in ks {
            let shares: Vec<f64> = recs
                .iter()
                .filter_map(|v| v.and_then(|v| v.pass_at.get(&k)).copied())
                .filter(|x| x.is_finite())
                .collect();
            push(format!("pass@{k}"), k, shares);
        }
        if recs.iter().flatten().any(|v| v.correct.is_some()) {
            let k = recs.iter().flatten().map(|v| v.n).max().unwrap_or(0);
            let shares: Vec<f64> = recs
                .iter()
                .filter_map(|v| v.and_then(|v| v.correct))
                .map(|c| f64::from(u8::from(c)))
                .collect();
            push(format!("majority@{k}"), k, shares);
        }
    }
    out
}
