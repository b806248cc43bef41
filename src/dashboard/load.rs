//! Reading a run directory for `distill view`, through `runfile`'s one reader (distill's
//! results or journal, or the original tool's results.json through its adapter, so the page
//! shows both the same way), with `events.jsonl` (for problems with no record yet),
//! `config.json` and `metrics.json`.

use std::path::Path;

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

/// Reads a run directory into the dashboard's state.
pub fn load_run(dir: &Path) -> Result<State, String> {
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
    let config = config_of(&rf);
    Ok(fill(
        config,
        &records,
        &events_path,
        &rf.status,
        rf.metrics(),
    ))
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

/// The dashboard state of a run's records, events and metrics.
fn fill(
    config: Value,
    records: &[Value],
    events_path: &Path,
    status: &str,
    metrics: Option<Value>,
) -> State {
    let problems: Vec<(String, String)> = config["problems"]["selected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v.as_str()?.to_string(), String::new())))
        .collect();
    let cols = columns(&config);
    let mut state = State::new("view", config, problems, cols);
    let mut with_record = std::collections::HashSet::new();
    for r in records {
        with_record.insert(scalar(r.get("id")).unwrap_or_default());
        state.record(r);
    }
    if let Ok(ev) = std::fs::read_to_string(events_path) {
        for line in ev.lines() {
            let Ok(e) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let done = e["problem"]
                .as_str()
                .is_some_and(|p| with_record.contains(p));
            state.replay_event(&e, done);
        }
    }
    if let Some(m) = metrics {
        state.set_metrics(&m);
    }
    state.finish(&json!({"status": status, "problems": records.len()}));
    state
}
