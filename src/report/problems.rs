//! Per problem and sample: outcome classes between the first and last rounds (over the
//! attempts with a verdict), the problems with failed attempts and those with attempts that
//! were never run (each listed with its error or reason).

use serde::Serialize;

use super::figures::Counts;
use super::load::{Attempt, Run, State};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes {
    pub first_round: u32,
    pub last_round: u32,
    /// wrong at the first round, right at the last
    pub improved: Vec<String>,
    /// right at the first round, wrong at the last
    pub regressed: Vec<String>,
    pub always_right: Vec<String>,
    pub never_right: Vec<String>,
    /// same verdict at the first and last rounds, a different one in between
    pub mixed: Vec<String>,
    /// no verdict at the first or the last round (failed or not run): not classed
    pub no_verdict: Vec<String>,
}

/// A problem with failed attempts (or whose first round has no verdict of its own).
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: String,
    pub status: String,
    pub failed_attempts: usize,
    pub error: String,
}

/// A problem with attempts that were never run.
#[derive(Debug, Clone, Serialize)]
pub struct NotRun {
    pub id: String,
    pub status: String,
    pub not_run_attempts: usize,
    /// the distinct reasons, comma-separated
    pub reason: String,
}

pub(super) fn outcomes(run: &Run) -> Outcomes {
    let mut o = Outcomes {
        first_round: run.rounds.first().copied().unwrap_or(0),
        last_round: run.rounds.last().copied().unwrap_or(0),
        ..Default::default()
    };
    if run.rounds.is_empty() {
        return o;
    }
    for p in &run.problems {
        for (si, s) in p.samples.iter().enumerate() {
            let unit = if run.samples > 1 {
                format!("{}#{si}", p.id)
            } else {
                p.id.clone()
            };
            let (Some(first), Some(last)) = (
                s.first().and_then(Attempt::verdict),
                s.last().and_then(Attempt::verdict),
            ) else {
                o.no_verdict.push(unit);
                continue;
            };
            let v: Vec<bool> = s.iter().filter_map(Attempt::verdict).collect();
            let list = if v.iter().all(|&c| c) {
                &mut o.always_right
            } else if !v.iter().any(|&c| c) {
                &mut o.never_right
            } else if !first && last {
                &mut o.improved
            } else if first && !last {
                &mut o.regressed
            } else {
                &mut o.mixed
            };
            list.push(unit);
        }
    }
    o
}

pub(super) fn not_run(run: &Run) -> Vec<NotRun> {
    let mut out = Vec::new();
    for p in &run.problems {
        let mut c = Counts::default();
        p.samples.iter().flatten().for_each(|a| c.add(a));
        if c.not_run > 0 {
            out.push(NotRun {
                id: p.id.clone(),
                status: p.status.clone(),
                not_run_attempts: c.not_run,
                reason: c.not_run_reasons.into_keys().collect::<Vec<_>>().join(", "),
            });
        }
    }
    out
}

pub(super) fn failures(run: &Run) -> Vec<Failure> {
    let mut out = Vec::new();
    for p in &run.problems {
        let bad: Vec<_> = p
            .samples
            .iter()
            .flatten()
            .filter(|a| a.state == State::Failed)
            .collect();
        // a first round without a verdict of its own (absent or skipped) has nothing to carry
        let missing_first = p.samples.iter().any(|s| {
            s.first()
                .is_some_and(|a| matches!(a.state, State::Missing | State::Carried))
        });
        if p.status != "failed" && bad.is_empty() && !missing_first {
            continue;
        }
        let error = p
            .error
            .clone()
            .or_else(|| bad.iter().find_map(|a| a.error.clone()))
            .unwrap_or_else(|| "no record of the first round".into());
        out.push(Failure {
            id: p.id.clone(),
            status: p.status.clone(),
            failed_attempts: bad.len(),
            error,
        });
    }
    out
}
