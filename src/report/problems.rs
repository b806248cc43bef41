//! Per problem and sample: outcome classes between the first and last rounds (over the
//! attempts with a verdict), the problems with failed attempts and those with attempts that
//! were never run (each listed with its error or reason); classed as the problems pass, in
//! `tally.rs`.

use serde::Serialize;

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
