//! Reading a run directory for `distill view`, through `runfile`'s one reader (distill's
//! results or journal, or the original tool's results.json through its adapter, so the page
//! shows both the same way), with `events.jsonl` (for problems with no record yet),
//! `config.json` and `metrics.json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::state::State;

use crate::runfile::original::text_of as scalar;
use crate::runfile::{RunFile, Texts};

/// The columns of a run from its config's expanded nodes.
fn columns(config: &Value) -> Vec<(String, u32, String)> {
    config["expanded_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            Some((
                n["id"].as_str()?.to_string(),
                n["round"].as_u64().unwrap_or(0) as u32,
                n["kind"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// One run directory as read: its config, records, events file, status and metrics.
struct RunRead {
    config: Value,
    records: Vec<Value>,
    events: PathBuf,
    status: String,
    metrics: Option<Value>,
}

/// Reads run directories into one state, side by side: every run's columns, ordered by
/// round and then by run, over the union of their problems. `labels` name the runs (the
/// report's labels; the directory's name when missing).
pub fn load_runs(dirs: &[PathBuf], labels: &[String]) -> Result<State, String> {
    let reads = dirs
        .iter()
        .map(|d| read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    let mut cols = Vec::new();
    let mut runs = Vec::new();
    for (k, (rd, dir)) in reads.iter().zip(dirs).enumerate() {
        for id in selected(&rd.config) {
            if seen.insert(id.clone()) {
                problems.push((id, String::new()));
            }
        }
        cols.extend(
            columns(&rd.config)
                .into_iter()
                .map(|(n, r, kind)| (n, r, kind, k)),
        );
        let label = labels.get(k).cloned().unwrap_or_else(|| {
            dir.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        runs.push(json!({"label": label, "path": dir.display().to_string(),
                         "status": rd.status, "problems": rd.records.len(),
                         "metrics": rd.metrics}));
    }
    // side by side: round by round, the runs next to each other
    cols.sort_by_key(|c| c.1);
    let config = match reads.as_slice() {
        [one] => one.config.clone(),
        _ => {
            let samples = reads
                .iter()
                .filter_map(|r| r.config["pipeline"]["samples"].as_u64())
                .max()
                .unwrap_or(1);
            let names: Vec<&str> = runs.iter().filter_map(|r| r["label"].as_str()).collect();
            json!({"pipeline": {"name": format!("compare: {}", names.join(" · ")), "samples": samples},
                   "runs": reads.iter().map(|r| r.config.clone()).collect::<Vec<_>>()})
        }
    };
    let mut state = State::with_runs("view", config, problems, cols, runs);
    for (k, rd) in reads.iter().enumerate() {
        fill(&mut state, k, rd);
    }
    if let [one] = reads.as_slice()
        && let Some(m) = &one.metrics
    {
        state.set_metrics(m);
    }
    let status = match reads.as_slice() {
        [one] => one.status.clone(),
        _ => "compare".into(),
    };
    let n: usize = reads.iter().map(|r| r.records.len()).sum();
    state.finish(&json!({"status": status, "problems": n}));
    Ok(state)
}

/// The problem ids a run's config says it selected.
fn selected(config: &Value) -> Vec<String> {
    config["problems"]["selected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some(v.as_str()?.to_string()))
        .collect()
}

fn read(dir: &Path) -> Result<RunRead, String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let events_path = dir.join("events.jsonl");
    if !dir.join(crate::runfile::RESULTS).is_file()
        && !dir.join(crate::runfile::JOURNAL).is_file()
        && !events_path.is_file()
    {
        return Err(format!(
            "{} has no results.json, results.jsonl or events.jsonl: not a run directory",
            dir.display()
        ));
    }
    let rf = crate::runfile::open(dir)?;
    let (records, bad) = rf.readable(Texts::Full);
    if let Some(u) = bad.first() {
        if records.is_empty() {
            return Err(format!(
                "{}: no record can be read (record {}: {}); point `distill view` at a run directory distill or the original tool wrote",
                rf.file.display(),
                u.line,
                u.error
            ));
        }
        eprintln!(
            "warning: {}: {} record(s) cannot be read and are not shown (record {}: {})",
            rf.file.display(),
            bad.len(),
            u.line,
            u.error
        );
    }
    let records: Vec<Value> = records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    Ok(RunRead {
        config: config_of(&rf),
        records,
        events: events_path,
        status: rf.status.clone(),
        metrics: rf.metrics(),
    })
}

/// The run's config.json; for the original tool's file, what it recorded about itself.
fn config_of(rf: &RunFile) -> Value {
    match rf.original() {
        Some(o) => rf.config().unwrap_or_else(|| {
            json!({"format": "original", "experiment_name": o.experiment_name,
                   "config": o.config})
        }),
        None => rf.config().unwrap_or(Value::Null),
    }
}

/// Run `k`'s records and events into the state; what it never ran is labelled: `no record`
/// in a finished problem, `interrupted` (or the run's status) in a selected problem with no
/// record, `not in run` in a problem it did not select.
fn fill(state: &mut State, k: usize, rd: &RunRead) {
    let mut with_record = HashSet::new();
    for r in &rd.records {
        with_record.insert(scalar(r.get("id")).unwrap_or_default());
        state.record_in(r, k);
    }
    let mut with_events = HashSet::new();
    if let Ok(ev) = std::fs::read_to_string(&rd.events) {
        for line in ev.lines() {
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let Some(p) = e["problem"].as_str() else {
                continue;
            };
            with_events.insert(p.to_string());
            state.replay_event(&e, with_record.contains(p), k);
        }
    }
    let selected: HashSet<String> = selected(&rd.config).into_iter().collect();
    let why = match rd.status.as_str() {
        "interrupted" | "truncated" => "interrupted",
        "running" => "not yet run",
        _ => "no record",
    }
    .to_string();
    state.mark_unrun(k, |p| {
        if with_record.contains(p) {
            "no record".into()
        } else if selected.contains(p) || with_events.contains(p) || selected.is_empty() {
            why.clone()
        } else {
            "not in run".into()
        }
    });
}
