//! HTTP-level test of `distill view` over two runs side by side: the columns of each run,
//! round by round, labels for attempts without an answer (`no answer`, `interrupted`,
//! `not in run`), each run's attempt by its index, the report's figures over both runs.

use std::path::{Path, PathBuf};

use distill::dashboard;
use serde_json::{Value, json};

fn cols() -> Vec<(String, u32, String)> {
    [
        ("attempt_0", 0, "reason"),
        ("summary_1", 1, "summarize"),
        ("attempt_1", 1, "reason"),
    ]
    .iter()
    .map(|(n, r, k)| (n.to_string(), *r, k.to_string()))
    .collect()
}

fn record(id: &str, correct0: bool) -> Value {
    let node = |n: &str, r: u32, kind: &str, out: Value| json!({"node": n, "kind": kind, "round": r, "status": "done", "cached": false, "output": out, "latency_ms": 5});
    json!({
        "id": id, "index": 0, "question": "What is 1+1?", "answer": "2", "status": "ok",
        "samples": [{
            "attempt_0": node("attempt_0", 0, "reason", json!({"prompt": "PROMPT-0", "text": "TRACE-0 \\boxed{2}", "answer": "2", "correct": correct0})),
            "summary_1": node("summary_1", 1, "summarize", json!({"prompt": "S", "text": "SUMMARY"})),
            "attempt_1": node("attempt_1", 1, "reason", json!({"prompt": "PROMPT-1", "text": "TRACE-1", "answer": "3", "correct": false})),
        }]
    })
}

async fn get(url: &str) -> (u16, String) {
    let r = distill::tls::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    serde_json::from_str(&get(url).await.1).unwrap()
}

/// A hand-written run directory named by `pipeline`, with these records and selected ids.
fn hand_run(
    dir: &Path,
    pipeline: &str,
    records: Vec<Value>,
    status: &str,
    selected: &[&str],
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let doc = json!({"run_id": "20250101T000000000Z-abcdef", "pipeline": pipeline,
                     "problems": records, "status": status});
    std::fs::write(dir.join("results.json"), doc.to_string()).unwrap();
    let nodes: Vec<Value> = cols()
        .iter()
        .map(|(n, r, k)| json!({"id": n, "round": r, "kind": k}))
        .collect();
    let cfg = json!({"run_id": "20250101T000000000Z-abcdef", "pipeline": {"name": pipeline, "samples": 1},
                     "expanded_nodes": nodes, "problems": {"path": "x.csv", "selected": selected}});
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir.to_path_buf()
}

#[tokio::test]
async fn view_of_two_runs_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let a = hand_run(
        &tmp.path().join("a"),
        "base",
        vec![record("p1", true)],
        "complete",
        &["p1"],
    );
    // run b: p1's last attempt not run (interrupted), p2 wrong with no answer extracted
    let mut p1 = record("p1", false);
    p1["samples"][0]["attempt_1"] = json!({"node": "attempt_1", "kind": "reason", "round": 1, "status": "not_run", "reason": "interrupted", "cached": false, "latency_ms": 0});
    p1["samples"][0]["attempt_0"]["output"]["text"] = json!("B-TRACE-0");
    let mut p2 = record("p2", false);
    p2["samples"][0]["attempt_0"]["output"]["answer"] = Value::Null;
    let b = hand_run(
        &tmp.path().join("b"),
        "new",
        vec![p1, p2],
        "interrupted",
        &["p1", "p2"],
    );
    let (url, _t) = dashboard::view_runs_start(&[a, b], "127.0.0.1", 0)
        .await
        .unwrap();
    let snap = get_json(&format!("{url}api/snapshot")).await;
    let g = &snap["grid"];
    let labels: Vec<&str> = g["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["base abcdef", "new abcdef"]);
    // round by round, the runs next to each other
    let cols: Vec<(String, usize)> = g["cols"]
        .as_array()
        .unwrap()
        .iter()
        .zip(g["col_run"].as_array().unwrap())
        .map(|(c, k)| {
            (
                c[0].as_str().unwrap().to_string(),
                k.as_u64().unwrap() as usize,
            )
        })
        .collect();
    let want: Vec<(String, usize)> = [
        ("attempt_0", 0),
        ("attempt_0", 1),
        ("summary_1", 0),
        ("attempt_1", 0),
        ("summary_1", 1),
        ("attempt_1", 1),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(cols, want);
    let cell = |p: usize, c: usize| g["cells"][p][c].clone();
    assert_eq!(cell(0, 0), json!(["y", 0, "2", 0, null]));
    assert_eq!(cell(0, 1), json!(["n", 0, "2", 0, null]));
    assert_eq!(cell(0, 5), json!(["x", 0, null, 0, "interrupted"]));
    assert_eq!(cell(1, 1), json!(["n", 0, null, 0, "no answer"]));
    // p2 is not in run a
    assert_eq!(cell(1, 0), json!(["x", 0, null, 0, "not in run"]));
    // each run's attempt by its index
    let t0 = get_json(&format!("{url}api/attempt?p=p1&s=0&n=attempt_0&r=0")).await;
    let t1 = get_json(&format!("{url}api/attempt?p=p1&s=0&n=attempt_0&r=1")).await;
    assert_eq!(t0["record"]["output"]["text"], "TRACE-0 \\boxed{2}");
    assert_eq!(
        (t1["record"]["output"]["text"].as_str(), t1["run"].as_u64()),
        (Some("B-TRACE-0"), Some(1))
    );
    // the report's figures over both runs
    let names: Vec<&str> = snap["plots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "accuracy_vs_round.svg",
            "cumulative_accuracy.svg",
            "accuracy_vs_tokens.svg"
        ]
    );
    let (s, svg) = get(&format!("{url}api/plot/accuracy_vs_round.svg")).await;
    assert_eq!(s, 200);
    assert!(
        svg.contains("base abcdef") && svg.contains("new abcdef"),
        "{svg}"
    );
    assert_eq!(get(&format!("{url}api/plot/nope.svg")).await.0, 404);
    // several runs: no single directory's files are served
    assert_eq!(get(&format!("{url}run/results.json")).await.0, 404);
}
