//! Reading a finished run directory for `distill view`: distill's `results.json` (also one
//! cut short by a crash: its problems are one per line), `events.jsonl` (for problems with no
//! record yet), `config.json` and `metrics.json`; or the original Python tool's
//! `results.json` (iterated `iterations[]` or pass@k `solutions[]`), converted to distill's
//! record shape so the page shows both the same way.

use std::path::Path;

use serde_json::{Value, json};

use super::state::State;

use crate::original::TEXT_KEYS;
use crate::original::TRUTH_KEYS;
use crate::original::text_of as scalar;

fn read_json(path: &Path) -> Option<Value> {
    let raw = std::fs::read_to_string(path).ok()?;
    parse_lenient(&raw)
}

/// JSON, with Python's `NaN`/`Infinity` outside strings read as `null`.
fn parse_lenient(raw: &str) -> Option<Value> {
    crate::original::parse_json(raw).ok()
}

/// The problems of a distill results.json that was not closed (one problem per line).
fn partial_problems(raw: &str) -> Vec<Value> {
    raw.lines()
        .filter_map(|l| {
            let l = l.trim().trim_end_matches(',');
            l.starts_with('{')
                .then(|| serde_json::from_str::<Value>(l).ok())
                .flatten()
                .filter(|v| v.get("samples").is_some())
        })
        .collect()
}

fn truthy(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Bool(b)) => json!(b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => json!(true),
            "false" | "0" | "no" => json!(false),
            _ => Value::Null,
        },
        Some(Value::Number(n)) => json!(n.as_f64().is_some_and(|x| x != 0.0)),
        _ => Value::Null,
    }
}

/// One original iteration or solution as a distill node record.
fn original_node(node: &str, round: u32, rec: &Value) -> Value {
    let text = TEXT_KEYS
        .iter()
        .find_map(|k| rec.get(*k).and_then(Value::as_str));
    let error = scalar(rec.get("error"));
    let mut output = json!({
        "text": text,
        "answer": rec.get("answer").cloned().unwrap_or(Value::Null),
        "correct": truthy(rec.get("correct")),
        "finish_reason": rec.get("finish_reason").cloned().unwrap_or(Value::Null),
        "usage": rec.get("token_usage").or_else(|| rec.get("usage")).cloned().unwrap_or(Value::Null),
    });
    for k in ["summary", "prompt"] {
        if let Some(v) = rec.get(k).filter(|v| !v.is_null()) {
            output[k] = v.clone();
        }
    }
    json!({
        "node": node, "kind": "reason", "round": round,
        "status": if error.is_some() { "failed" } else { "done" },
        "cached": false,
        "output": if error.is_some() { Value::Null } else { output },
        "error": error,
    })
}

/// An original results entry as a distill problem record.
fn original_record(i: usize, r: &Value) -> Value {
    let id = scalar(r.get("problem_id"))
        .or_else(|| scalar(r.get("id")))
        .unwrap_or_else(|| format!("#{i}"));
    let truth = TRUTH_KEYS.iter().find_map(|k| scalar(r.get(*k)));
    let question = scalar(r.get("question")).or_else(|| scalar(r.get("problem")));
    let mut samples = Vec::new();
    if let Some(its) = r["iterations"].as_array() {
        let mut nodes = serde_json::Map::new();
        for (k, it) in its.iter().enumerate() {
            let round = it["iteration"].as_u64().map_or(k as u32, |x| x as u32);
            let node = format!("iteration_{round}");
            nodes.insert(node.clone(), original_node(&node, round, it));
        }
        samples.push(Value::Object(nodes));
    }
    if let Some(sols) = r["solutions"].as_array() {
        for s in sols {
            samples.push(json!({"solution": original_node("solution", 0, s)}));
        }
    }
    let error = scalar(r.get("error"));
    json!({
        "id": id, "index": i, "question": question, "answer": truth,
        "status": if error.is_some() { "failed" } else { "ok" },
        "samples": samples, "error": error,
    })
}

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
    let results_path = dir.join("results.json");
    let events_path = dir.join("events.jsonl");
    if !results_path.is_file() && !events_path.is_file() {
        return Err(format!(
            "{} has no results.json or events.jsonl",
            dir.display()
        ));
    }
    let mut config = read_json(&dir.join("config.json")).unwrap_or(Value::Null);
    // a killed (or live) run has only its journal
    if let Some(l) = crate::runfile::problem_lines(dir) {
        return Ok(from_journal(dir, config, l, &events_path));
    }
    let raw = std::fs::read_to_string(&results_path).unwrap_or_default();
    let doc = parse_lenient(&raw);
    let mut status = doc
        .as_ref()
        .and_then(|d| d["status"].as_str())
        .unwrap_or("incomplete")
        .to_string();
    let records: Vec<Value> = match &doc {
        Some(d) if d["problems"].is_array() => {
            d["problems"].as_array().cloned().unwrap_or_default()
        }
        Some(d) if d.is_array() || d["results"].is_array() => {
            let list = if d.is_array() { d } else { &d["results"] };
            if config.is_null() {
                config = json!({
                    "format": "original",
                    "experiment_name": d["experiment_name"],
                    "config": d["config"],
                });
            }
            status = "complete".into();
            list.as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, r)| original_record(i, r))
                .collect()
        }
        Some(_) => {
            return Err(format!(
                "{} is not a results file distill knows",
                results_path.display()
            ));
        }
        None if raw.is_empty() => Vec::new(),
        // distill's own file cut short by a crash: its header, then a problem per line
        None if raw.trim_start().starts_with("{") && raw.contains("\"run_id\"") => {
            partial_problems(&raw)
        }
        None => {
            let why = crate::original::parse_json(&raw)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            return Err(format!(
                "{} is not a results file distill can read (not JSON: {why}); point `distill view` at a run directory distill or the original tool wrote",
                results_path.display()
            ));
        }
    };
    Ok(fill(dir, config, &records, &events_path, &status))
}

/// The page of a run known only by its journal (`runfile`): status `interrupted` when it
/// was killed, `running` while it goes on.
fn from_journal(dir: &Path, config: Value, l: crate::runfile::Lines, events_path: &Path) -> State {
    let records: Vec<Value> = l
        .problems
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    fill(dir, config, &records, events_path, &l.status)
}

/// The dashboard state of a run's records, events and metrics.
fn fill(dir: &Path, config: Value, records: &[Value], events_path: &Path, status: &str) -> State {
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
    if let Some(m) = read_json(&dir.join("metrics.json")) {
        state.set_metrics(&m);
    }
    state.finish(&json!({"status": status, "problems": records.len()}));
    state
}
