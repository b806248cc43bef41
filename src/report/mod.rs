//! Reports over finished runs: `report` (one or more runs of distill or the original tool →
//! `report.md`, `report.csv`, `report.json`, SVG plots) and `compact_table` (the per-round
//! table printed at the end of a run). The metrics, named exactly so in every output:
//! `per-round accuracy` (share of problems whose attempt i is right; with samples > 1, the
//! mean over samples), `cumulative accuracy` (solved by round i: some attempt ≤ i right),
//! `pass@k` (unbiased estimator) and `majority@k`; Wilson 95% intervals for proportions and a
//! seeded paired bootstrap over problems for differences.
//!
//! Files: `load.rs` (distill's results into the model), `legacy.rs` (the original tool's
//! format, lenient JSON, problem-set columns), `stats.rs` (Wilson, bootstrap, pass@k,
//! majority), `metrics.rs` (the numbers), `table.rs` (markdown/CSV/JSON), `plot.rs` (SVG).

pub mod legacy;
pub mod load;
pub mod metrics;
pub mod plot;
pub mod stats;
pub mod table;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use load::{Run, load_run};
pub use metrics::{Comparison, Grouping, RunReport};

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
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            runs: Vec::new(),
            out_dir: None,
            group_by: None,
            seed: 0,
            bootstrap: 2000,
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

/// The definitions printed with every report.
pub const DEFINITIONS: [(&str, &str); 4] = [
    (
        metrics::PER_ROUND,
        "share of problems whose attempt at round i is right (with samples > 1: the mean over samples); skipped rounds carry the previous verdict, failed attempts are wrong",
    ),
    (
        metrics::CUMULATIVE,
        "solved by round i: share of problems with some attempt ≤ i right (mean over samples)",
    ),
    (
        "pass@k",
        "unbiased estimator 1 − C(n−c,k)/C(n,k) over a problem's n samples, c right, averaged over problems",
    ),
    (
        "majority@k",
        "the most frequent answer among k samples is right (ties: the first answer); from vote nodes when present",
    ),
];

/// Loads and computes without writing anything.
pub fn build(opts: &ReportOptions) -> Result<(Report, Vec<Run>), String> {
    if opts.runs.is_empty() {
        return Err("report: no run given".into());
    }
    let grouping = opts.group_by.as_deref().map(Grouping::parse).transpose()?;
    let mut runs = opts
        .runs
        .iter()
        .map(|p| load_run(p))
        .collect::<Result<Vec<_>, _>>()?;
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
    let bootstrap = opts.bootstrap.max(1);
    let report = Report {
        metrics: DEFINITIONS.to_vec(),
        group_by: opts.group_by.clone(),
        bootstrap,
        seed: opts.seed,
        runs: runs
            .iter()
            .map(|r| metrics::run_report(r, grouping.as_ref(), bootstrap, opts.seed))
            .collect(),
        comparisons: metrics::comparisons(&runs, bootstrap, opts.seed),
    };
    Ok((report, runs))
}

/// Builds the report; returns the markdown (also written to out_dir/report.md).
pub fn report(opts: &ReportOptions) -> Result<String, String> {
    let (rep, runs) = build(opts)?;
    let out_dir = match &opts.out_dir {
        Some(d) => d.clone(),
        None if runs.len() == 1 => runs[0]
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => PathBuf::from("report"),
    };
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    let plots = plot::write_plots(&rep, &out_dir)?;
    let md = table::markdown(&rep, &plots);
    let write = |name: &str, body: &[u8]| {
        let p = out_dir.join(name);
        std::fs::write(&p, body).map_err(|e| format!("writing {}: {e}", p.display()))
    };
    write("report.md", md.as_bytes())?;
    write("report.csv", table::csv(&rep).as_bytes())?;
    let json = serde_json::to_vec_pretty(&table::json(&rep)).map_err(|e| e.to_string())?;
    write("report.json", &json)?;
    Ok(md)
}

/// The compact per-round table printed at the end of a run (markdown), from a run dir.
pub fn compact_table(run_dir: &Path) -> Result<String, String> {
    let run = load_run(run_dir)?;
    let rr = metrics::run_report(&run, None, 0, 0);
    Ok(table::compact(&rr))
}
