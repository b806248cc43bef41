//! Helpers of the report tests: distill results files written by hand (node and problem
//! records, run directories with a config.json), the report's options, `distill report` run
//! as a binary, and float comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use distill::report::ReportOptions;
use serde_json::{Value, json};

pub const EPS: f64 = 1e-9;

/// A graded node record (`reason` kind) or, with `correct: None` and `done`, an ungraded one.
pub fn node(id: &str, kind: &str, round: u32, status: &str, correct: Option<bool>) -> Value {
    let mut v = json!({"node": id, "kind": kind, "round": round, "status": status,
                       "cached": false, "latency_ms": 1});
    if status == "done" {
        let mut o = json!({"text": "t", "reasoning": "abcdefghij", "finish_reason": "stop",
                           "usage": {"prompt_tokens": 100, "completion_tokens": 50},
                           "round": round, "model": "fake:m"});
        if let Some(c) = correct {
            o["correct"] = json!(c);
            o["answer"] = json!(if c { "1" } else { "0" });
        }
        v["output"] = o;
    }
    if status == "failed" {
        v["error"] = json!("boom");
    }
    v
}

pub fn attempt(round: u32, status: &str, correct: bool) -> (String, Value) {
    let id = format!("attempt_{round}");
    (
        id.clone(),
        node(&id, "reason", round, status, Some(correct)),
    )
}

pub fn summary(round: u32) -> (String, Value) {
    let id = format!("summary_{round}");
    (id.clone(), node(&id, "summarize", round, "done", None))
}

pub fn sample(nodes: Vec<(String, Value)>) -> Value {
    Value::Object(nodes.into_iter().collect())
}

pub fn problem(id: &str, status: &str, samples: Vec<Value>) -> Value {
    json!({"id": id, "index": 0, "question": format!("q {id}"), "answer": "1",
           "status": status, "samples": samples})
}

pub fn write_run(dir: &Path, problems: Vec<Value>, config: Option<Value>) -> PathBuf {
    write_run_status(dir, problems, config, "complete")
}

pub fn write_run_status(
    dir: &Path,
    problems: Vec<Value>,
    config: Option<Value>,
    status: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let doc = json!({"run_id": "20250101T000000000Z-abcdef", "pipeline": "t",
                     "problems": problems, "status": status});
    std::fs::write(dir.join("results.json"), doc.to_string()).unwrap();
    if let Some(c) = config {
        std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    }
    dir.to_path_buf()
}

pub fn opts(runs: Vec<PathBuf>, out: &Path) -> ReportOptions {
    ReportOptions {
        runs,
        out_dir: Some(out.to_path_buf()),
        group_by: None,
        seed: 7,
        bootstrap: 500,
        png: true,
    }
}

pub fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

pub fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < EPS
}

/// `distill report DIR`, then its report.json.
pub fn report_with_the_binary(dir: &Path) -> (String, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
        .arg("report")
        .arg(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    (text, read_json(&dir.join("report.json")))
}

/// Figures of one round of report.json: (successes, n, failed, not_run).
pub fn round_figures(r: &Value, i: usize) -> (f64, u64, u64, u64) {
    let x = &r["rounds"][i];
    let a = &x["per_round_accuracy"];
    (
        a["successes"].as_f64().unwrap(),
        a["n"].as_u64().unwrap(),
        x["failed"].as_u64().unwrap(),
        x["not_run"].as_u64().unwrap(),
    )
}
