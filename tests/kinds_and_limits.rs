//! Node kinds that declare themselves, and the limits on what a model may send back, driven
//! through the real binary (model calls over real HTTP against the loopback fake server):
//! the `score` kind (one file and one registry line) grades and is counted by the report;
//! a `grade` node's `truth_column` reaches the LLM judge; an answer past the model's
//! `max_response_bytes` is an error and nothing of it is stored.

mod common;
mod support;

use common::*;
use support::fake_openai::{FakeConfig, FakeServer, Reply, prompt_text};

async fn run(p: &Project, args: &[&str]) -> std::process::Output {
    let mut c = p.cmd();
    c.args(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

#[test]
fn a_graded_kind_declared_in_one_file_grades_and_is_reported() {
    let p = Project::new();
    p.write(
        "pipelines/score.yaml",
        "name: score\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n  s: {kind: score, input: a, extract: boxed, compare: math}\n",
    );
    let out = p.run(&["pipeline", "run", "pipelines/score.yaml", "--no-progress"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    let r = json(&p.last_run("score").join("results.json"));
    let problems = r["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 8);
    let mut right = 0;
    for q in problems {
        let s = &q["samples"][0]["s"]["output"];
        assert!(s["correct"].is_boolean(), "{s}");
        let a = &q["samples"][0]["a"]["output"]["text"];
        let boxed = a
            .as_str()
            .unwrap()
            .contains(&format!("\\boxed{{{}}}", q["answer"].as_str().unwrap()));
        assert_eq!(s["correct"].as_bool().unwrap(), boxed, "{q}");
        right += usize::from(boxed);
    }
    assert!(
        msg.contains(&format!("({right}/8)")),
        "the summary counts the score node: {msg}"
    );
    // its fields are checked like any kind's
    p.write(
        "pipelines/bad.yaml",
        "name: score\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n  s: {kind: score, input: a, compar: math, compare: llm_judge}\n",
    );
    let out = p.run(&["pipeline", "validate", "pipelines/bad.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains("unknown field `compar`") && msg.contains("did you mean `compare`?"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_judge_is_given_the_grade_nodes_truth_column() {
    let p = Project::new();
    // `expected` differs from `answer`: the judge approves only when it sees `expected`
    p.write(
        "data/t.csv",
        "id,question,solution,answer,expected\na,What is 2+2?,4,4,FOUR\nb,What is 3+3?,6,6,SIX\n",
    );
    let server = FakeServer::start(FakeConfig::default().with_responder(|body| {
        let p = prompt_text(body);
        if !p.contains("VERDICT") {
            return Reply::text("The answer is \\boxed{whatever}.");
        }
        if p.contains("REFERENCE ANSWER:\nFOUR") || p.contains("REFERENCE ANSWER:\nSIX") {
            Reply::text("VERDICT: CORRECT")
        } else {
            Reply::text("VERDICT: INCORRECT")
        }
    }))
    .await;
    let url = server.base_url();
    p.write(
        "pipelines/j.yaml",
        &format!(
            "name: j\nproblems: {{path: data/t.csv}}\nmodels:\n  r: {{provider: openai-compatible, base_url: \"{url}\", model: m, max_retries: 0}}\n  judge: {{provider: openai-compatible, base_url: \"{url}\", model: j, max_retries: 0}}\nnodes:\n  a: {{kind: reason, model: r, prompt: reason/default}}\n  e: {{kind: extract, input: a}}\n  g: {{kind: grade, input: e, compare: llm_judge, judge_model: judge, truth_column: expected}}\n"
        ),
    );
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/j.yaml", "--no-progress"],
    )
    .await;
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    let r = json(&p.last_run("j").join("results.json"));
    for q in r["problems"].as_array().unwrap() {
        assert_eq!(q["samples"][0]["g"]["output"]["correct"], true, "{q}");
    }
    let judged: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.prompt_text())
        .filter(|t| t.contains("VERDICT"))
        .collect();
    assert_eq!(judged.len(), 2);
    assert!(
        judged.iter().all(|t| !t.contains("REFERENCE ANSWER:\n4\n")),
        "{judged:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_past_max_response_bytes_is_an_error_and_is_not_stored() {
    let p = Project::new();
    let big = "x".repeat(3 << 20); // 3 MiB of text
    let server = FakeServer::start(
        FakeConfig {
            chunk_chars: 64 << 10,
            ..FakeConfig::default()
        }
        .with_responder(move |_| Reply::text(big.clone())),
    )
    .await;
    let url = server.base_url();
    for stream in ["true", "false"] {
        let name = format!("big{stream}");
        p.write(
            &format!("pipelines/{name}.yaml"),
            &format!(
                "name: {name}\nproblems: {{path: data/arithmetic.csv, index_range: 0-1}}\nmodels:\n  m: {{provider: openai-compatible, base_url: \"{url}\", model: m, max_retries: 0, stream: {stream}, max_response_bytes: 1048576}}\nnodes:\n  a: {{kind: reason, model: m, prompt: reason/default}}\n"
            ),
        );
        let out = run(
            &p,
            &[
                "pipeline",
                "run",
                &format!("pipelines/{name}.yaml"),
                "--no-progress",
            ],
        )
        .await;
        let msg = text(&out);
        assert_eq!(out.status.code(), Some(1), "{msg}");
        assert!(
            msg.contains("larger than max_response_bytes (1048576 bytes)"),
            "{msg}"
        );
        let results = p.last_run(&name).join("results.json");
        let size = std::fs::metadata(&results).unwrap().len();
        assert!(size < 200_000, "results.json holds {size} bytes");
    }
    // the default (8 MiB) accepts it
    p.write(
        "pipelines/ok.yaml",
        &format!(
            "name: ok\nproblems: {{path: data/arithmetic.csv, index_range: 0-0}}\nmodels:\n  m: {{provider: openai-compatible, base_url: \"{url}\", model: m, max_retries: 0}}\nnodes:\n  a: {{kind: reason, model: m, prompt: reason/default}}\n"
        ),
    );
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/ok.yaml", "--no-progress"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
