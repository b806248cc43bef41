//! The two figures every table is made of: an [`Estimate`] (a proportion with its Wilson
//! 95% interval) and the [`Counts`] of one round's attempts by how they ended.

use std::collections::BTreeMap;

use serde::Serialize;

use super::load::{Attempt, State};
use super::stats::wilson;

/// A proportion over problems with its Wilson 95% interval. `successes` is the sum of
/// per-problem shares (fractional when samples > 1), `n` the number of problems that have a
/// verdict (with one sample: the attempts with a verdict).
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub successes: f64,
    pub n: usize,
}

impl Estimate {
    pub fn of(shares: &[f64]) -> Self {
        Estimate::of_sum(shares.iter().sum(), shares.len())
    }

    /// From the sum of the shares and their count.
    pub fn of_sum(successes: f64, n: usize) -> Self {
        let (ci_low, ci_high) = wilson(successes, n as f64);
        Estimate {
            value: if n > 0 {
                successes / n as f64
            } else {
                f64::NAN
            },
            ci_low,
            ci_high,
            successes,
            n,
        }
    }
}

/// The attempts (problems × samples) of one round by how they ended: every attempt is in
/// exactly one of graded, carried, missing, failed and not_run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// graded + carried + missing: the attempts with a verdict (the accuracy's denominator)
    pub verdicts: usize,
    pub graded: usize,
    /// skipped by `when:`: the previous round's verdict
    pub carried: usize,
    /// no record of the round in a finished problem: the previous round's verdict
    pub missing: usize,
    /// an error after sending: no verdict
    pub failed: usize,
    /// never run (budget, interrupted, offline miss, problem not started): no verdict
    pub not_run: usize,
    pub not_run_reasons: BTreeMap<String, usize>,
}

impl Counts {
    pub fn add(&mut self, a: &Attempt) {
        match a.state {
            State::Done => self.graded += 1,
            State::Carried => self.carried += 1,
            State::Missing => self.missing += 1,
            State::Failed => self.failed += 1,
            State::NotRun => {
                self.not_run += 1;
                let why = a.reason.clone().unwrap_or_else(|| "unknown".into());
                *self.not_run_reasons.entry(why).or_default() += 1;
            }
        }
        self.verdicts += usize::from(a.state.has_verdict());
    }
}
