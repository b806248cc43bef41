//! Reports over finished runs: `report` (one or more runs of distill or the original tool →
//! `report.md`, `report.csv`, `report.json`, SVG plots) and `compact_table` (the per-round
//! table printed at the end of a run). Every attempt (one sample's graded node at one round)
//! ends graded, carried (skipped by `when:`: the previous verdict), failed (an error after
//! sending) or not run (with a reason: budget, interrupted, offline miss, problem never
//! started). The metrics, named exactly so in every output: `per-round accuracy` (share right
//! among the attempts at round i with a verdict; with samples > 1, per problem over its
//! samples with one, then the mean over problems), `cumulative accuracy` (of those, solved by
//! round i), `pass@k` (unbiased estimator) and `majority@k`, all over verdicts; failed and not
//! run are separate, named counts in every table, and a run that did not run everything it
//! selected is marked STOPPED EARLY in every header. Wilson 95% intervals for proportions and
//! a seeded paired bootstrap over problems for differences.
//!
//! Files: `load.rs` (the model), `records.rs` (a run's typed records, read by `runfile` for
//! either tool, into the model), `columns.rs` (problem-set columns for grouping),
//! `stats.rs` (Wilson, bootstrap, pass@k, majority), `metrics.rs` (the numbers), `passk.rs`
//! (pass@k, majority@k), `problems.rs` (outcome classes, failed and not-run problems),
//! `table.rs` (markdown, JSON), `csv.rs`, `compact.rs` (the end-of-run table), `plot.rs` (SVG),
//! `shards.rs` (the run directories of a sharded run merged into one run), `tally.rs` (the
//! numbers of one run as a fold over its problems: a report of one run is streamed, holding
//! per-round sums, not its problems), `survey.rs` (the first pass: graded nodes, samples,
//! vote ks), `live.rs` (the end-of-run report folded as the run's problems finish, so the
//! run's file is not read back).

mod columns;
pub mod compact;
pub mod csv;
mod figures;
pub mod live;
pub mod load;
pub mod metrics;
pub mod passk;
pub mod plot;
pub mod problems;
mod records;
pub mod shards;
pub mod stats;
mod survey;
pub mod table;
mod tally;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use load::Run;
pub use metrics::{Comparison, Grouping, RunReport};
pub use records::load_run;

/// What `report` reads and where it writes.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Run directories or results.json files (distill's or the original tool's).
    pub runs: Vec<PathBuf>,
    /// Where report.md, report.csv, report.json and the SVG plots go; default: the single
    /// run's directory, or ./report for several.
    pub out_dir: Option<PathBuf>,
    /// A problem-set column name, or `re:REGEX` matched against ids (first capture group or
    /// the whole match is the group).
    pub group_by: Option<String>,
    /// Bootstrap seed.
    pub seed: u64,
    /// Bootstrap resamples (2000 by default).
    pub bootstrap: usize,
    /// Also write each figure as a 300 dpi PNG (`distill report`; the end of a run writes
    /// the SVGs only).
    pub png: bool,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            runs: Vec::new(),
            out_dir: None,
            group_by: None,
            seed: 0,
            bootstrap: 2000,
            png: true,
        }
    }
}

/// Everything a report says, as written to report.json.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub metrics: Vec<(&'static str, &'static str)>,
    pub group_by: Option<String>,
    pub bootstrap: usize,
    pub seed: u64,
    pub runs: Vec<RunReport>,
    /// Each run against the first (paired bootstrap over their common problems).
    pub comparisons: Vec<Comparison>,
}

/// The definitions printed with every report (report.md's Metrics legend, report.json's
/// `metrics`).
pub const DEFINITIONS: [(&str, &str); 7] = [
    (
        metrics::PER_ROUND,
        "share right among the attempts at round i that have a verdict (an attempt: one sample's graded node at one round). A round skipped by `when:` carries the previous round's verdict (counted as carried and kept in the denominator, so early-stopping runs keep theirs; a skipped first round, with nothing to carry, is wrong). Failed and not-run attempts have no verdict: they are left out of the denominator and shown as the separate counts `failed` and `not run`. n = the attempts with a verdict; with samples > 1, each problem's share is over its samples with a verdict, averaged over the problems with at least one (n = those problems)",
    ),
    (
        metrics::CUMULATIVE,
        "solved by round i: among the same attempts as the per-round accuracy at round i (those with a verdict), the share whose sample was right at some round ≤ i (with samples > 1: per problem, then the mean)",
    ),
    (
        "pass@k",
        "unbiased estimator 1 − C(n−c,k)/C(n,k) over a problem's n samples with a verdict at the round, c of them right, averaged over the problems with n ≥ k (others are left out); from vote nodes: over the problems whose vote has the figure",
    ),
    (
        "majority@k",
        "the most frequent answer among a problem's samples with a verdict is right (ties: the first answer), over the problems with at least one; from vote nodes when present, over the problems whose vote is done",
    ),
    (
        "carried",
        "an attempt skipped by `when:` (or with no record in a finished problem: `missing`): it holds the previous round's answer and verdict",
    ),
    (
        "failed",
        "an attempt that ended in an error after its request was sent (or downstream of one): no verdict, counted apart",
    ),
    (
        "not run",
        "an attempt never run, with its reason: `budget` (--max_cost reached), `interrupted` (the run stopped, including selected problems with no record), `offline_miss`, …: no verdict, counted apart. A run with not-run attempts, or whose status is interrupted, is marked STOPPED EARLY",
    ),
];

/// Loads and computes without writing anything. One run is read one problem at a time
/// (nothing per problem is held but what the tables need); several runs are loaded whole
/// (shards merge, runs are compared problem by problem).
pub fn build(opts: &ReportOptions) -> Result<Report, String> {
    build_with(opts, None)
}

/// As [`build`]; `live`: the tally a run folded as it went, for the report of that one run
/// at its end ([`live::one_run`]).
fn build_with(opts: &ReportOptions, live: Option<live::Live>) -> Result<Report, String> {
    if opts.runs.is_empty() {
        return Err("report: no run given".into());
    }
    let grouping = opts.group_by.as_deref().map(Grouping::parse).transpose()?;
    let bootstrap = opts.bootstrap.max(1);
    let (runs, comparisons) = if let ([one], None) = (opts.runs.as_slice(), &grouping) {
        let rr = live::one_run(one, opts, live)?;
        (vec![rr], Vec::new())
    } else if let [one] = opts.runs.as_slice() {
        let rr = stream_one(one, grouping.as_ref(), bootstrap, opts.seed)?;
        (vec![rr], Vec::new())
    } else {
        let runs = load_several(opts, grouping.is_some())?;
        let reports = runs
            .iter()
            .map(|r| metrics::run_report(r, grouping.as_ref(), bootstrap, opts.seed))
            .collect();
        (reports, metrics::comparisons(&runs, bootstrap, opts.seed))
    };
    Ok(Report {
        metrics: DEFINITIONS.to_vec(),
        group_by: opts.group_by.clone(),
        bootstrap,
        seed: opts.seed,
        runs,
        comparisons,
    })
}

/// One run's report, folded over its records as they are read (the end-of-run report of a
/// shard says which shard it is).
fn stream_one(
    path: &Path,
    grouping: Option<&Grouping>,
    bootstrap: usize,
    seed: u64,
) -> Result<RunReport, String> {
    let reading = records::Reading::open(path, grouping.is_some())?;
    let mut tally = tally::Tally::new(reading.head(), grouping, reading.vote_ks());
    let mut problems = 0usize;
    let mut run = reading.for_each(|p| {
        problems += 1;
        tally.add(&p);
    });
    shards::alone(&mut run, problems);
    if run.label.is_empty() {
        run.label = "[1]".into();
    }
    Ok(tally.finish(&run, bootstrap, seed))
}

/// Several runs loaded whole, the shards of a sharded run merged into one, each labelled
/// uniquely.
fn load_several(opts: &ReportOptions, columns: bool) -> Result<Vec<Run>, String> {
    let runs = opts
        .runs
        .iter()
        .map(|p| records::load_run_for(p, columns))
        .collect::<Result<Vec<_>, _>>()?;
    let mut runs = shards::merge(runs)?;
    // labels name the columns: keep them unique
    for i in 0..runs.len() {
        let dup = runs
            .iter()
            .enumerate()
            .any(|(j, r)| j != i && r.label == runs[i].label);
        if dup || runs[i].label.is_empty() {
            runs[i].label = format!("{} [{}]", runs[i].label, i + 1).trim().to_string();
        }
    }
    Ok(runs)
}

/// Builds the report; returns the markdown (also written to out_dir/report.md).
pub fn report(opts: &ReportOptions) -> Result<String, String> {
    report_with_compact(opts, None).map(|(md, _)| md)
}

/// Writes the report like [`report`] and also returns the compact per-round table of its
/// first run (the end-of-run summary: one load of the run, the same numbers).
/// `live`: the tally the run folded as it went (the end of a run).
pub fn report_with_compact(
    opts: &ReportOptions,
    live: Option<live::Live>,
) -> Result<(String, String), String> {
    let rep = build_with(opts, live)?;
    let compact = rep.runs.first().map(compact::compact).unwrap_or_default();
    let out_dir = match &opts.out_dir {
        Some(d) => d.clone(),
        // one run given: its directory (the shards of one run: ./report, as for several)
        None if opts.runs.len() == 1 && opts.runs[0].is_dir() => opts.runs[0].clone(),
        None if opts.runs.len() == 1 => opts.runs[0]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("report"),
    };
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let png = opts.png && plot::PNG;
    let plots = plot::write_plots(&rep, &out_dir, png)?;
    let md = table::markdown(&rep, &plots, png);
    let write = |name: &str, body: &[u8]| {
        let p = out_dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write("report.md", md.as_bytes())?;
    write("report.csv", csv::csv(&rep).as_bytes())?;
    // straight from the report (a JSON tree of it first held ~100 bytes per problem id)
    let p = out_dir.join("report.json");
    std::fs::File::create(&p)
        .map(std::io::BufWriter::new)
        .map_err(|e| e.to_string())
        .and_then(|mut w| {
            serde_json::to_writer_pretty(&mut w, &rep).map_err(|e| e.to_string())?;
            std::io::Write::flush(&mut w).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("writing {}: {e}", p.display()))?;
    Ok((md, compact))
}

/// The compact per-round table printed at the end of a run (markdown), from a run directory
/// (or a results file): the same numbers as report.md, report.json and report.csv, with
/// `carried`, `failed` and `not run` columns and, when the run stopped early, the note on its
/// first line.
pub fn compact_table(run_dir: &Path) -> Result<String, String> {
    Ok(compact::compact(&stream_one(run_dir, None, 0, 0)?))
}
