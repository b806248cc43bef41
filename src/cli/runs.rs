//! `distill pipeline run --resume RUN_DIR` (finish a stopped run in place) and `distill runs
//! [RESULTS_DIR]` (list runs: name, id, status, problems done/total, per-round accuracy,
//! spend, start time). Both read run directories through `runfile`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{RunArgs, run_options, runtime};
use crate::exec;
use crate::runfile::{self, Liveness, config::LoadRecord};
use crate::spec::{self, LoadOptions};

/// Loads the run's pipeline again as it was loaded and checks it still hashes the same;
/// returns it with the problems still to run.
fn reload(dir: &Path, cfg: &Value) -> Result<(spec::Pipeline, usize), String> {
    let load: LoadRecord = serde_json::from_value(cfg["load"].clone()).map_err(|_| {
        format!(
            "{} was written by an older distill (config.json has no `load` record): start a new run instead",
            dir.display()
        )
    })?;
    let opts = LoadOptions {
        sets: load.sets.clone(),
        filters: load.filters.clone(),
        shard: load.shard,
    };
    let mut p = spec::load(&load.file, &opts).map_err(|diags| {
        let d: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        format!(
            "the run's pipeline {} no longer loads:\n{}",
            load.file.display(),
            d.join("\n")
        )
    })?;
    let changed = runfile::config::changed(&cfg["config_hash"], &p);
    if !changed.is_empty() {
        return Err(format!(
            "{} cannot be resumed: since it started, its {} changed (pipeline {}); its results would mix two configurations. Start a new run instead",
            dir.display(),
            changed.join(", "),
            load.file.display()
        ));
    }
    // problems with a finished record are kept; the rest (not started, or stopped open)
    // run again, their finished calls from the cache
    let done: HashSet<String> = runfile::open(dir)?
        .problems(runfile::Texts::Lengths)
        .flatten()
        .filter(|p| p.status != runfile::records::ProblemStatus::Incomplete)
        .map(|p| p.id)
        .collect();
    let before = p.problems.len();
    p.problems = p
        .problems
        .filtered(|q| !done.contains(&q.id))
        .map_err(String::from)?;
    let kept = before - p.problems.len();
    Ok((p, kept))
}

/// `pipeline run --resume RUN_DIR`.
pub(super) fn resume(a: &RunArgs) -> i32 {
    let dir = a.resume.clone().expect("checked by the caller");
    let l = &a.load;
    if l.file.is_some()
        || !l.sets.is_empty()
        || l.question_ids.is_some()
        || l.exclude_question_ids.is_some()
        || l.index_range.is_some()
        || a.shard.is_some()
    {
        eprintln!(
            "error: --resume takes no pipeline file, --set, filters or --shard: the run's own resolved config is used (a shard's run directory resumes as that shard)"
        );
        return 2;
    }
    match runfile::liveness(&dir) {
        Liveness::Live => {
            eprintln!(
                "error: {} is still running (its process holds run.lock)",
                dir.display()
            );
            return 2;
        }
        Liveness::Ended(s) if s == "complete" => {
            println!("{}: the run is complete; nothing to resume", dir.display());
            return 0;
        }
        _ => {}
    }
    let cfg = match runfile::read_config(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let (p, kept) = match reload(&dir, &cfg) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    eprintln!(
        "resuming {}: {kept} problem(s) finished before, {} to run",
        dir.display(),
        p.problems.len()
    );
    if let Some(s) = &p.shard {
        eprintln!(
            "shard {}: the run stays this shard ({} of the {} selected problem(s))",
            s.shard,
            kept + p.problems.len(),
            s.whole.len()
        );
    }
    let mut opts = run_options(a);
    opts.load = serde_json::from_value(cfg["load"].clone()).ok();
    match runtime().block_on(exec::run(p, &opts)) {
        Ok(s) => s.exit_code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<exec::InvalidInput>().is_some() {
                2
            } else {
                1
            }
        }
    }
}

/// One line of `distill runs`.
struct RunLine {
    name: String,
    id: String,
    shard: String,
    status: String,
    done: usize,
    total: usize,
    accuracy: String,
    spend: Option<f64>,
    started: String,
}

/// The report's own figures: accuracy over the attempts with a verdict, carried rounds
/// included (one place computes them).
fn accuracy_of(rep: &crate::report::RunReport) -> String {
    let accuracy = rep
        .rounds
        .iter()
        .map(|r| {
            let a = &r.per_round_accuracy;
            if a.n == 0 {
                "–".to_string()
            } else {
                format!("{:.0}%", 100.0 * a.value)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if accuracy.is_empty() {
        "–".into()
    } else {
        accuracy
    }
}

/// A run directory's line, and its run when it is a shard (for the merged line).
fn describe(dir: &Path) -> Option<(RunLine, Option<crate::report::Run>)> {
    let cfg = runfile::read_config(dir).ok()?;
    let total = cfg["problems"]["selected"].as_array().map_or(0, Vec::len);
    let status = match runfile::liveness(dir) {
        Liveness::Live => "running".to_string(),
        Liveness::Ended(s) => s,
        Liveness::Killed => "interrupted".to_string(),
    };
    let run = crate::report::load_run(dir).ok()?;
    let rep = crate::report::metrics::run_report(&run, None, 0, 0);
    let metrics: Value = runfile::read_metrics(dir).unwrap_or_default();
    let id = cfg["run_id"].as_str().unwrap_or_default().to_string();
    let line = RunLine {
        name: rep.pipeline.clone(),
        started: started_of(&id),
        id,
        shard: run
            .shard
            .as_ref()
            .map_or("–".into(), |s| s.shard().to_string()),
        status,
        done: rep.problems_finished,
        total,
        accuracy: accuracy_of(&rep),
        spend: metrics["spend_usd"].as_f64(),
    };
    let shard = run.shard.is_some().then_some(run);
    Some((line, shard))
}

/// One line per sharded run (the shards of one config, by their `shard.of`), its shards
/// merged as `distill report` merges them; a group that does not merge (one shard run twice)
/// is a warning. `shards`: each shard's run and its line.
fn merged_lines(shards: Vec<(crate::report::Run, &RunLine)>) -> Vec<RunLine> {
    let mut groups: Vec<(String, Vec<(crate::report::Run, &RunLine)>)> = Vec::new();
    for (run, line) in shards {
        let of = run.shard.as_ref().map(|s| s.of.clone()).unwrap_or_default();
        match groups.iter_mut().find(|(k, _)| *k == of) {
            Some((_, v)) => v.push((run, line)),
            None => groups.push((of, vec![(run, line)])),
        }
    }
    let mut out = Vec::new();
    for (_, group) in groups {
        let spend = group.iter().map(|(_, l)| l.spend).sum::<Option<f64>>();
        let started = group
            .iter()
            .map(|(_, l)| l.started.clone())
            .min()
            .unwrap_or_default();
        let runs = group.into_iter().map(|(r, _)| r).collect();
        let merged = match crate::report::shards::merge(runs) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("warning: no merged line for these shards: {e}");
                continue;
            }
        };
        for run in merged {
            let Some(c) = run.coverage.clone() else {
                continue;
            };
            let rep = crate::report::metrics::run_report(&run, None, 0, 0);
            out.push(RunLine {
                name: rep.pipeline.clone(),
                id: "(shards merged)".into(),
                shard: format!("{}/{}", c.present.len(), c.count),
                status: rep.status.clone(),
                done: rep.problems_finished,
                total: c.problems_total,
                accuracy: accuracy_of(&rep),
                spend,
                started: started.clone(),
            });
        }
    }
    out
}

/// The start time in a run id (`20261201T161057073Z-92c1de`), as `2026-12-01 16:10:57Z`.
fn started_of(id: &str) -> String {
    let d = id.as_bytes();
    if d.len() < 15 || d[8] != b'T' {
        return "–".into();
    }
    format!(
        "{}-{}-{} {}:{}:{}Z",
        &id[0..4],
        &id[4..6],
        &id[6..8],
        &id[9..11],
        &id[11..13],
        &id[13..15]
    )
}

/// Run directories under `root` (`<root>/<pipeline>/<run-id>/`), oldest first.
fn run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for r in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            if r.path().join("config.json").is_file() {
                out.push(r.path());
            }
        }
    }
    out.sort_by_key(|d| d.file_name().map(|n| n.to_os_string()));
    out
}

/// `distill runs [RESULTS_DIR]`: a line per run directory (a shard's says which, `2/4`),
/// then a line per sharded run with its shards merged (`4/4` shards given).
pub(super) fn list(root: &Path) -> i32 {
    let described: Vec<_> = run_dirs(root).iter().filter_map(|d| describe(d)).collect();
    if described.is_empty() {
        println!("no runs under {}", root.display());
        return 0;
    }
    let mut runs = Vec::new();
    let mut shard_runs = Vec::new();
    for (line, run) in described {
        if let Some(r) = run {
            shard_runs.push((r, runs.len()));
        }
        runs.push(line);
    }
    let merged = merged_lines(shard_runs.into_iter().map(|(r, i)| (r, &runs[i])).collect());
    println!(
        "{:<20} {:<28} {:<6} {:<12} {:>9}  {:<24} {:>9}  started",
        "name", "id", "shard", "status", "problems", "accuracy by round", "spend"
    );
    for r in runs.iter().chain(&merged) {
        println!(
            "{:<20} {:<28} {:<6} {:<12} {:>9}  {:<24} {:>9}  {}",
            r.name,
            r.id,
            r.shard,
            r.status,
            format!("{}/{}", r.done, r.total),
            r.accuracy,
            r.spend.map_or("–".into(), |s| format!("${s:.4}")),
            r.started
        );
    }
    0
}
