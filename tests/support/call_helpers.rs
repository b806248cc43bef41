//! Shared helpers of the call-layer tests (tests/call_layer.rs, tests/call_layer_runs.rs):
//! pipelines pointing at the fake server, running the binary beside it, reading what it
//! wrote, and the retried-then-cached / always-fails-uncached checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::common::*;
use crate::support::fake_openai::{FakeConfig, FakeServer, Fault, Reply};

pub const KEY: &str = "sk-call-layer-KEY-9d2f71";

/// A complete answer long enough for a cut to be visible (about 10 chunks of 16 chars).
pub const ANSWER: &str = "<think>\nFirst the units: 7 + 5 = 12, so I write 2 and carry 1. Then the tens: \
1 + 2 + 1 = 4. That gives 42.\n</think>\n\nThe answer is \\boxed{42}.";

/// A long reasoning (cut while thinking) and the short answer after it.
pub const REASONING: &str = "Okay, so I need 17 + 25. Units first: 7 + 5 = 12, write 2 and carry 1. \
Tens: 1 + 2 + 1 = 4. So it should be 42. Let me double-check by subtracting: 42 - 25 = 17, \
which matches the first number, so the sum is right.";
pub const AFTER_THINKING: &str = "The answer is \\boxed{42}.";

// ---------------------------------------------------------------------------------------
// Helpers (as in tests/provider_e2e.rs)
// ---------------------------------------------------------------------------------------

/// The `reasoner` model block pointing at the fake. `more` holds further `key: value`
/// entries (`, `-separated, leading comma included); a default of the same key is left out.
pub fn model(server: &FakeServer, more: &str) -> String {
    let mut m = format!(
        "{{provider: openai-compatible, base_url: \"{}\", model: m, api_key_env: FAKE_KEY",
        server.base_url()
    );
    for (k, v) in [
        ("max_retries", "10"),
        ("timeout_s", "5"),
        ("params", "{max_tokens: 512, temperature: 0.6}"),
    ] {
        if !more.contains(&format!(" {k}:")) {
            m.push_str(&format!(", {k}: {v}"));
        }
    }
    format!("{m}{more}}}")
}

/// A one-node pipeline (attempt_0 only) over `problems`, with `top` added at the top level.
pub fn single_over(name: &str, problems: &str, model: &str, node_extra: &str, top: &str) -> String {
    format!(
        r#"name: {name}
problems: {{path: {problems}}}
models:
  reasoner: {model}
grade: {{extract: boxed, compare: exact}}
{top}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: reason/default{node_extra}}}
"#
    )
}

/// A one-node pipeline (attempt_0 only) over data/arithmetic.csv.
pub fn single(name: &str, model: &str, node_extra: &str) -> String {
    single_over(name, "data/arithmetic.csv", model, node_extra, "")
}

/// The child command with the key and fast backoff.
pub fn cmd(p: &Project, args: &[&str]) -> Command {
    let mut c = p.cmd();
    c.args(args)
        .env("FAKE_KEY", KEY)
        .env("DISTILL_RETRY_BASE_MS", "5")
        .env("DISTILL_RETRY_MAX_MS", "50")
        .env_remove("DISTILL_LOG");
    c
}

/// Runs the child on a blocking thread (the fake server needs the runtime meanwhile).
pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("running distill"))
        .await
        .expect("joining the child")
}

pub async fn run(p: &Project, args: &[&str]) -> Output {
    output(cmd(p, args)).await
}

/// `pipeline run FILE --no-progress --cache CACHE` plus `more`.
pub async fn run_pipeline(p: &Project, file: &str, cache: &str, more: &[&str]) -> Output {
    let mut args = vec!["pipeline", "run", file, "--no-progress", "--cache", cache];
    args.extend_from_slice(more);
    run(p, &args).await
}

/// One problem only (one call for a single-node pipeline).
pub const ONE: [&str; 2] = ["--question_ids", "add-1"];

pub fn assert_exit(out: &Output, code: i32) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    t
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// results.json's problems[i].samples[0][node].
pub fn node<'a>(results: &'a Value, problem: usize, node: &str) -> &'a Value {
    &results["problems"][problem]["samples"][0][node]
}

pub fn results(run: &Path) -> Value {
    json(&run.join("results.json"))
}

/// The lines of a run's events.jsonl.
pub fn events(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The `error` texts of a run's `retry` events.
pub fn retries(run: &Path) -> Vec<String> {
    events(run)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The failure of problem `i`'s attempt_0: the node's error and the problem's error.
pub fn failure(r: &Value, i: usize) -> String {
    format!(
        "{} | {}",
        node(r, i, "attempt_0")["error"]
            .as_str()
            .unwrap_or_default(),
        r["problems"][i]["error"].as_str().unwrap_or_default()
    )
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The keys of a cache's stored entries (read by distill's own cache: entries live in
/// pack segments, not one file each).
pub fn stored_keys(cache: &Path) -> Vec<String> {
    let c = distill::cache::Cache::open(cache).unwrap();
    c.entries().into_iter().map(|(k, _)| k.0).collect()
}

pub fn fixed(text: &'static str) -> FakeConfig {
    FakeConfig::default().with_responder(move |_: &Value| Reply::text(text))
}

/// A fault on the first request only, normal answers after it.
pub fn first_request(fault: Fault) -> FakeConfig {
    fixed(ANSWER).with_script(vec![fault])
}

/// The fault on every request.
pub fn always(fault: Fault) -> FakeConfig {
    fixed(ANSWER).with_faults(1.0, vec![fault])
}

/// Scripted fault then success: the run ends with the full answer after one retry, the retry
/// is an event, and a rerun on the same cache sends nothing (only the full answer was
/// cached). Returns the retry events' texts.
pub async fn retried_then_cached(what: &str, fault: Fault, model_more: &str) -> Vec<String> {
    let p = Project::new();
    let server = FakeServer::start(first_request(fault.clone())).await;
    p.write(
        "pipelines/r.yaml",
        &single("r", &model(&server, model_more), ""),
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/r.yaml", "cache", &ONE).await,
        0,
    );
    assert_eq!(server.request_count(), 2, "{what}: one retry\n{t}");
    let run = p.last_run("r");
    let r = results(&run);
    let n = node(&r, 0, "attempt_0");
    assert_eq!(n["status"], "done", "{what}: {n}");
    assert_eq!(n["output"]["text"], ANSWER, "{what}: the full answer");
    assert_eq!(n["output"]["finish_reason"], "stop", "{what}: {n}");
    assert_eq!(n["output"]["answer"], "42", "{what}: {n}");
    let rs = retries(&run);
    assert!(!rs.is_empty(), "{what}: a retry event in events.jsonl");
    // the truncated / empty / error answer was not cached: a rerun is free
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/r.yaml", "cache", &ONE).await,
        0,
    );
    assert_eq!(
        server.request_count(),
        2,
        "{what}: a rerun sends nothing\n{t}"
    );
    let r = results(&p.last_run("r"));
    assert_eq!(node(&r, 0, "attempt_0")["output"]["text"], ANSWER, "{what}");
    rs
}

/// The fault on every request with `max_retries: 2`: the node fails, nothing is cached, a
/// rerun sends requests again. Returns the failure text.
pub async fn always_fails_uncached(what: &str, fault: Fault, model_more: &str) -> String {
    let p = Project::new();
    let server = FakeServer::start(always(fault)).await;
    let more = format!(", max_retries: 2{model_more}");
    p.write("pipelines/a.yaml", &single("a", &model(&server, &more), ""));
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/a.yaml", "cache", &ONE).await,
        1,
    );
    let first = server.request_count();
    assert!(first >= 2, "{what}: retried ({first} requests)\n{t}");
    let r = results(&p.last_run("a"));
    assert_eq!(node(&r, 0, "attempt_0")["status"], "failed", "{what}");
    let why = failure(&r, 0);
    assert!(
        stored_keys(&p.path().join("cache")).is_empty(),
        "{what}: nothing is cached"
    );
    assert_exit(
        &run_pipeline(&p, "pipelines/a.yaml", "cache", &ONE).await,
        1,
    );
    assert!(
        server.request_count() > first,
        "{what}: a rerun sends requests again (nothing was cached)"
    );
    why
}

// ---------------------------------------------------------------------------------------
// The fake server's new shapes (raw HTTP, no distill involved)
// ---------------------------------------------------------------------------------------

/// One HTTP client for the raw requests (building one takes a while: TLS roots).
pub fn client() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(|| distill::tls::client_builder().build().expect("client"))
}

/// POSTs a chat request; returns the status and the body.
pub async fn raw_chat(server: &FakeServer, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

pub fn chat_body(stream: bool) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "What is 17 + 25?"}], "stream": stream});
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// What a stream carried: content, reasoning, finish reasons, whether usage came, whether it
/// ended with `[DONE]`, and every JSON chunk.
pub struct Streamed {
    pub content: String,
    pub reasoning: String,
    pub finishes: Vec<String>,
    pub usage: bool,
    pub done: bool,
    pub chunks: Vec<Value>,
}

pub fn streamed(body: &str) -> Streamed {
    let data = sse_data(body);
    let mut s = Streamed {
        content: String::new(),
        reasoning: String::new(),
        finishes: Vec::new(),
        usage: false,
        done: data.last().is_some_and(|d| d == "[DONE]"),
        chunks: Vec::new(),
    };
    for d in data.iter().filter(|d| *d != "[DONE]") {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        if v.get("usage").is_some_and(Value::is_object) {
            s.usage = true;
        }
        for c in v["choices"].as_array().cloned().unwrap_or_default() {
            s.content
                .push_str(c["delta"]["content"].as_str().unwrap_or_default());
            s.reasoning
                .push_str(c["delta"]["reasoning_content"].as_str().unwrap_or_default());
            if let Some(f) = c["finish_reason"].as_str() {
                s.finishes.push(f.to_string());
            }
        }
        s.chunks.push(v);
    }
    s
}

pub fn fixed_owned(text: String) -> FakeConfig {
    FakeConfig::default().with_responder(move |_: &Value| Reply::text(text.clone()))
}
