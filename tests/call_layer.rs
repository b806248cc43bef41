//! The model-call layer end to end: the real `distill` binary against the in-process fake
//! OpenAI-compatible server over real HTTP. Each test names the rule it pins:
//!
//! 1. a stream that ends without a finish_reason (bare `[DONE]`, EOF) is truncated: retried,
//!    never cached; when it keeps happening the failure names `finish_reason` and
//!    llama-cpp-python's `interrupt_requests`;
//! 2. a 200 with empty `choices` and 3. a 200 whose body is an error object: retried, never
//!    cached;
//! 4. missing usage is estimated, marked `estimated`, counted in metrics.json;
//! 5. continuation stays within `max_total_tokens` (the last step asks for what is left);
//! 6. a reply cut while thinking is continued from its reasoning (chat and completions);
//! 7. samples get distinct seeds, recorded in the outputs;
//! 8. identical calls are sent once (within a process and across processes on one cache);
//! 9. a full cache disk keeps every answer and reports what was not cached;
//! 10. `--verbose` logs requests and responses, never the key;
//! 11. an API key inside a completion is not stored verbatim;
//! 12. a llama-cpp-python-like server that interrupts streams: the in-flight limit adapts.
//!
//! Plus checks of the fake server's new shapes themselves, and a documented limitation
//! (a cut answer relabelled `stop` is indistinguishable from a complete one).
//!
//! The fake server runs in the test's tokio runtime; the binary is a child process run on a
//! blocking thread, so the server keeps answering while the test waits for it.

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use support::fake_openai::{FakeConfig, FakeServer, Fault, Reply, split_reply_parts};

const KEY: &str = "sk-call-layer-KEY-9d2f71";

/// A complete answer long enough for a cut to be visible (about 10 chunks of 16 chars).
const ANSWER: &str = "<think>\nFirst the units: 7 + 5 = 12, so I write 2 and carry 1. Then the tens: \
1 + 2 + 1 = 4. That gives 42.\n</think>\n\nThe answer is \\boxed{42}.";

/// A long reasoning (cut while thinking) and the short answer after it.
const REASONING: &str = "Okay, so I need 17 + 25. Units first: 7 + 5 = 12, write 2 and carry 1. \
Tens: 1 + 2 + 1 = 4. So it should be 42. Let me double-check by subtracting: 42 - 25 = 17, \
which matches the first number, so the sum is right.";
const AFTER_THINKING: &str = "The answer is \\boxed{42}.";

// ---------------------------------------------------------------------------------------
// Helpers (as in tests/provider_e2e.rs)
// ---------------------------------------------------------------------------------------

/// The `reasoner` model block pointing at the fake. `more` holds further `key: value`
/// entries (`, `-separated, leading comma included); a default of the same key is left out.
fn model(server: &FakeServer, more: &str) -> String {
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
fn single_over(name: &str, problems: &str, model: &str, node_extra: &str, top: &str) -> String {
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
fn single(name: &str, model: &str, node_extra: &str) -> String {
    single_over(name, "data/arithmetic.csv", model, node_extra, "")
}

/// The child command with the key and fast backoff.
fn cmd(p: &Project, args: &[&str]) -> Command {
    let mut c = p.cmd();
    c.args(args)
        .env("FAKE_KEY", KEY)
        .env("DISTILL_RETRY_BASE_MS", "5")
        .env("DISTILL_RETRY_MAX_MS", "50")
        .env_remove("DISTILL_LOG");
    c
}

/// Runs the child on a blocking thread (the fake server needs the runtime meanwhile).
async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("running distill"))
        .await
        .expect("joining the child")
}

async fn run(p: &Project, args: &[&str]) -> Output {
    output(cmd(p, args)).await
}

/// `pipeline run FILE --no-progress --cache CACHE` plus `more`.
async fn run_pipeline(p: &Project, file: &str, cache: &str, more: &[&str]) -> Output {
    let mut args = vec!["pipeline", "run", file, "--no-progress", "--cache", cache];
    args.extend_from_slice(more);
    run(p, &args).await
}

/// One problem only (one call for a single-node pipeline).
const ONE: [&str; 2] = ["--question_ids", "add-1"];

fn assert_exit(out: &Output, code: i32) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    t
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// results.json's problems[i].samples[0][node].
fn node<'a>(results: &'a Value, problem: usize, node: &str) -> &'a Value {
    &results["problems"][problem]["samples"][0][node]
}

fn results(run: &Path) -> Value {
    json(&run.join("results.json"))
}

/// The lines of a run's events.jsonl.
fn events(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("events.jsonl"))
        .unwrap_or_else(|e| panic!("{}: {e}", run.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The `error` texts of a run's `retry` events.
fn retries(run: &Path) -> Vec<String> {
    events(run)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["error"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The failure of problem `i`'s attempt_0: the node's error and the problem's error.
fn failure(r: &Value, i: usize) -> String {
    format!(
        "{} | {}",
        node(r, i, "attempt_0")["error"]
            .as_str()
            .unwrap_or_default(),
        r["problems"][i]["error"].as_str().unwrap_or_default()
    )
}

fn walk(dir: &Path) -> Vec<PathBuf> {
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

/// Entry files of a cache (temporary files left out).
fn entry_files(cache: &Path) -> Vec<PathBuf> {
    walk(&cache.join("objects"))
        .into_iter()
        .filter(|f| {
            !f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .collect()
}

fn fixed(text: &'static str) -> FakeConfig {
    FakeConfig::default().with_responder(move |_: &Value| Reply::text(text))
}

/// A fault on the first request only, normal answers after it.
fn first_request(fault: Fault) -> FakeConfig {
    fixed(ANSWER).with_script(vec![fault])
}

/// The fault on every request.
fn always(fault: Fault) -> FakeConfig {
    fixed(ANSWER).with_faults(1.0, vec![fault])
}

/// Scripted fault then success: the run ends with the full answer after one retry, the retry
/// is an event, and a rerun on the same cache sends nothing (only the full answer was
/// cached). Returns the retry events' texts.
async fn retried_then_cached(what: &str, fault: Fault, model_more: &str) -> Vec<String> {
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
async fn always_fails_uncached(what: &str, fault: Fault, model_more: &str) -> String {
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
        entry_files(&p.path().join("cache")).is_empty(),
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
fn client() -> &'static reqwest::Client {
    static C: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    C.get_or_init(reqwest::Client::new)
}

/// POSTs a chat request; returns the status and the body.
async fn raw_chat(server: &FakeServer, body: Value) -> (u16, String) {
    let r = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn chat_body(stream: bool) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "What is 17 + 25?"}], "stream": stream});
    if stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    b
}

/// The `data:` payloads of an SSE body.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// What a stream carried: content, reasoning, finish reasons, whether usage came, whether it
/// ended with `[DONE]`, and every JSON chunk.
struct Streamed {
    content: String,
    reasoning: String,
    finishes: Vec<String>,
    usage: bool,
    done: bool,
    chunks: Vec<Value>,
}

fn streamed(body: &str) -> Streamed {
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

#[tokio::test(flavor = "multi_thread")]
async fn fake_serves_the_new_fault_shapes() {
    let full = Reply::text(ANSWER);
    let half = full.cut().content;
    assert!(!half.is_empty() && half.len() < ANSWER.len() && ANSWER.starts_with(&half));
    for (fault, stream) in [
        Fault::BareDoneMidStream,
        Fault::EofMidStream,
        Fault::EmptyChoices,
        Fault::NoUsage,
        Fault::ErrorBody200,
        Fault::RelabelledStop,
    ]
    .into_iter()
    .flat_map(|f| [(f.clone(), true), (f, false)])
    {
        let server = FakeServer::start(always(fault.clone())).await;
        let (status, body) = raw_chat(&server, chat_body(stream)).await;
        let what = format!("{fault:?} stream={stream}: {body}");
        assert_eq!(status, 200, "{what}");
        if stream {
            let s = streamed(&body);
            match fault {
                Fault::BareDoneMidStream => {
                    assert!(s.done && s.finishes.is_empty() && !s.usage, "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                Fault::EofMidStream => {
                    assert!(!s.done && s.finishes.is_empty() && !s.usage, "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                Fault::EmptyChoices => {
                    assert!(s.done && s.finishes.is_empty() && s.usage, "{what}");
                    assert!(s.chunks.iter().all(|c| c["choices"] == json!([])), "{what}");
                }
                Fault::NoUsage => {
                    assert!(s.done && !s.usage && s.finishes == ["stop"], "{what}");
                    assert_eq!(s.content, ANSWER, "{what}");
                }
                Fault::ErrorBody200 => {
                    assert_eq!(s.chunks[0]["error"]["type"], "server_error", "{what}");
                    assert_eq!(s.chunks[0]["error"]["code"], 500, "{what}");
                }
                Fault::RelabelledStop => {
                    assert!(s.done && s.usage && s.finishes == ["stop"], "{what}");
                    assert_eq!(s.content, half, "{what}");
                }
                _ => unreachable!(),
            }
        } else {
            let v: Result<Value, _> = serde_json::from_str(&body);
            match fault {
                Fault::EofMidStream => assert!(v.is_err(), "{what}"),
                Fault::BareDoneMidStream => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"][0]["finish_reason"], Value::Null, "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], half.as_str());
                }
                Fault::EmptyChoices => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"], json!([]), "{what}");
                    assert_eq!(v["object"], "chat.completion", "{what}");
                    assert!(v["usage"].is_object(), "{what}");
                }
                Fault::NoUsage => {
                    let v = v.unwrap();
                    assert!(v.get("usage").is_none(), "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
                }
                Fault::ErrorBody200 => {
                    let v = v.unwrap();
                    assert_eq!(v["error"]["type"], "server_error", "{what}");
                    assert!(v.get("choices").is_none(), "{what}");
                }
                Fault::RelabelledStop => {
                    let v = v.unwrap();
                    assert_eq!(v["choices"][0]["finish_reason"], "stop", "{what}");
                    assert_eq!(v["choices"][0]["message"]["content"], half.as_str());
                }
                _ => unreachable!(),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_split_parts_can_cut_inside_reasoning_content() {
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        reasoning_field: true,
        ..fixed_owned(format!(
            "<think>\n{REASONING}\n</think>\n\n{AFTER_THINKING}"
        ))
    })
    .await;
    let parts = split_reply_parts(&Reply::reasoned(REASONING, AFTER_THINKING), 2);
    assert!(parts[0].1.is_empty(), "the first part is reasoning only");
    for stream in [true, false] {
        let (_, body) = raw_chat(&server, chat_body(stream)).await;
        let (reasoning, content, finish) = if stream {
            let s = streamed(&body);
            (s.reasoning, s.content, s.finishes.join(","))
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            let m = &v["choices"][0]["message"];
            (
                m["reasoning_content"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(reasoning, parts[0].0, "{body}");
        assert_eq!(content, "", "{body}");
        assert_eq!(finish, "length", "{body}");
        // a continuation carrying the reasoning so far gets the rest
        let mut b = chat_body(stream);
        b["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": format!("<think>\n{}", parts[0].0)}),
            json!({"role": "user", "content": "Continue exactly where you stopped."}),
        ]);
        let (_, body) = raw_chat(&server, b).await;
        if stream {
            let s = streamed(&body);
            assert_eq!(s.reasoning, parts[1].0, "{body}");
            assert_eq!(s.content, AFTER_THINKING, "{body}");
            assert_eq!(s.finishes, ["stop"], "{body}");
        } else {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["choices"][0]["message"]["content"], AFTER_THINKING);
            assert_eq!(v["choices"][0]["finish_reason"], "stop");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_interrupts_a_stream_when_another_request_waits() {
    let server = FakeServer::start(FakeConfig {
        interrupt_on_new_request: true,
        chunk_delay: Duration::from_millis(5),
        ..fixed(ANSWER)
    })
    .await;
    let _ = client(); // built before the clock matters
    let url = server.base_url();
    let first = tokio::spawn({
        let body = chat_body(true);
        let url = url.clone();
        async move {
            client()
                .post(format!("{url}/chat/completions"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    let t0 = Instant::now();
    while server.request_count() < 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the first request never came"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, second) = raw_chat(&server, chat_body(true)).await;
    let first = streamed(&first.await.unwrap());
    assert!(first.done, "ended by a bare [DONE]");
    assert!(
        first.finishes.is_empty(),
        "no finish_reason: {:?} {:?}",
        first.finishes,
        first.content
    );
    assert!(
        first.content.len() < ANSWER.len() && ANSWER.starts_with(&first.content),
        "{:?}",
        first.content
    );
    let second = streamed(&second);
    assert_eq!(second.content, ANSWER, "the waiting request is then served");
    assert_eq!(second.finishes, ["stop"]);
    assert_eq!(server.interrupted_count(), 1);
    // a lone stream is not interrupted
    let (_, alone) = raw_chat(&server, chat_body(true)).await;
    assert_eq!(streamed(&alone).finishes, ["stop"]);
    assert_eq!(server.interrupted_count(), 1);
    // the recorded bodies carry what was sent
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|r| r.stream() && r.messages().len() == 1));
}

fn fixed_owned(text: String) -> FakeConfig {
    FakeConfig::default().with_responder(move |_: &Value| Reply::text(text.clone()))
}

// ---------------------------------------------------------------------------------------
// 1. A stream without a finish_reason is truncated: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule1_a_stream_ending_without_finish_reason_is_retried_never_cached() {
    for fault in [Fault::BareDoneMidStream, Fault::EofMidStream] {
        let what = format!("{fault:?}");
        let rs = retried_then_cached(&what, fault.clone(), "").await;
        assert!(
            rs.iter().any(|e| e.contains("finish_reason")),
            "{what}: the retry says why: {rs:?}"
        );
        let why = always_fails_uncached(&what, fault, "").await;
        assert!(why.contains("finish_reason"), "{what}: {why}");
        assert!(
            why.contains("interrupt_requests"),
            "{what}: names the llama-cpp-python fix: {why}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 2. HTTP 200 with empty `choices`: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule2_empty_choices_are_retried_never_cached() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("EmptyChoices stream={stream}");
        retried_then_cached(&what, Fault::EmptyChoices, more).await;
        always_fails_uncached(&what, Fault::EmptyChoices, more).await;
    }
}

// ---------------------------------------------------------------------------------------
// 3. HTTP 200 whose body is an error object: retried, never cached
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule3_an_error_object_in_a_200_is_retried_never_cached() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("ErrorBody200 stream={stream}");
        retried_then_cached(&what, Fault::ErrorBody200, more).await;
        always_fails_uncached(&what, Fault::ErrorBody200, more).await;
    }
}

// ---------------------------------------------------------------------------------------
// 4. No usage in the answer: estimated, marked, counted
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule4_missing_usage_is_estimated_and_counted() {
    for (stream, more) in [(true, ""), (false, ", stream: false")] {
        let what = format!("stream={stream}");
        let p = Project::new();
        let server = FakeServer::start(always(Fault::NoUsage)).await;
        p.write("pipelines/u.yaml", &single("u", &model(&server, more), ""));
        assert_exit(
            &run_pipeline(&p, "pipelines/u.yaml", "cache", &ONE).await,
            0,
        );
        assert_eq!(
            server.request_count(),
            1,
            "{what}: no retry for missing usage"
        );
        let run = p.last_run("u");
        let r = results(&run);
        let out = &node(&r, 0, "attempt_0")["output"];
        assert_eq!(out["text"], ANSWER, "{what}");
        let u = &out["usage"];
        assert_eq!(u["estimated"], true, "{what}: {u}");
        assert!(u["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{what}: {u}");
        assert!(
            u["completion_tokens"].as_u64().unwrap_or(0) > 0,
            "{what}: {u}"
        );
        let m = metrics(&run);
        assert!(
            m["usage_estimated_calls"].as_u64().is_some_and(|n| n >= 1),
            "{what}: {m}"
        );

        // with usage reported, nothing is estimated
        let p = Project::new();
        let server = FakeServer::start(fixed(ANSWER)).await;
        p.write("pipelines/u.yaml", &single("u", &model(&server, more), ""));
        assert_exit(
            &run_pipeline(&p, "pipelines/u.yaml", "cache", &ONE).await,
            0,
        );
        let run = p.last_run("u");
        let u = &node(&results(&run), 0, "attempt_0")["output"]["usage"].clone();
        assert_ne!(u["estimated"], true, "{what}: {u}");
        let m = metrics(&run);
        assert!(
            m["usage_estimated_calls"].as_u64().unwrap_or(0) == 0,
            "{what}: {m}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. Continuation stays within max_total_tokens
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule5_continuation_asks_only_for_the_tokens_left() {
    let p = Project::new();
    // always cut by length, with as many completion tokens as asked for (at most 20): the
    // fake counts 4 characters a token
    let server = FakeServer::start(FakeConfig::default().with_responder(|body: &Value| {
        let n = body["max_tokens"].as_u64().unwrap_or(20).min(20) as usize;
        Reply::text("abcd".repeat(n)).finish("length")
    }))
    .await;
    let more =
        ", params: {max_tokens: 20}, continuation: {max_continuations: 10, max_total_tokens: 50}";
    p.write("pipelines/b.yaml", &single("b", &model(&server, more), ""));
    let t = run_pipeline(&p, "pipelines/b.yaml", "cache", &ONE).await;
    let t = text(&t);
    let reqs = server.requests();
    let asked: Vec<Option<u64>> = reqs.iter().map(|r| r.max_tokens()).collect();
    assert_eq!(
        asked,
        vec![Some(20), Some(20), Some(10)],
        "max_tokens of the steps\n{t}"
    );
    assert_eq!(reqs.len(), 3, "{t}");
}

// ---------------------------------------------------------------------------------------
// 6. Cut while thinking: continued from the reasoning so far
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule6_cut_while_thinking_chat_continues_from_the_reasoning() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        reasoning_field: true,
        ..fixed_owned(format!(
            "<think>\n{REASONING}\n</think>\n\n{AFTER_THINKING}"
        ))
    })
    .await;
    let parts = split_reply_parts(&Reply::reasoned(REASONING, AFTER_THINKING), 2);
    assert!(parts[0].1.is_empty() && !parts[0].0.is_empty());
    let more = ", continuation: {max_continuations: 4}";
    p.write("pipelines/t.yaml", &single("t", &model(&server, more), ""));
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/t.yaml", "cache", &ONE).await,
        0,
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{t}");
    let msgs = reqs[1].messages();
    let last_assistant = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("no assistant message in the continuation: {msgs:?}"));
    let content = last_assistant["content"].as_str().unwrap();
    assert!(content.starts_with("<think>"), "{content:?}");
    assert!(
        content.contains(parts[0].0.trim()),
        "the reasoning so far is in the continuation: {content:?}"
    );
    let r = results(&p.last_run("t"));
    let out = &node(&r, 0, "attempt_0")["output"];
    let reasoning = out["reasoning"].as_str().unwrap();
    assert!(reasoning.contains(parts[0].0.trim()), "{out}");
    assert!(reasoning.contains(parts[1].0.trim()), "{out}");
    assert_eq!(out["finish_reasons"], json!(["length", "stop"]), "{out}");
    assert_eq!(out["answer"], "42", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rule6_cut_while_thinking_completions_r1_continues_from_the_reasoning() {
    let p = Project::new();
    // an R1 distill on /completions writes its reasoning after the prompt's `<think>\n`
    let full = format!("{REASONING}\n</think>\n\n{AFTER_THINKING}");
    let server = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        ..fixed_owned(full.clone())
    })
    .await;
    let parts = split_reply_parts(&Reply::text(full), 2);
    assert!(
        REASONING.starts_with(&parts[0].1),
        "the first part is reasoning only"
    );
    let more =
        ", endpoint: completions, chat_format: deepseek_r1, continuation: {max_continuations: 4}";
    p.write("pipelines/t.yaml", &single("t", &model(&server, more), ""));
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/t.yaml", "cache", &ONE).await,
        0,
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2, "{t}");
    let first = reqs[0].prompt().unwrap();
    assert!(first.ends_with("<｜Assistant｜><think>\n"), "{first:?}");
    let cont = reqs[1].prompt().unwrap();
    assert!(
        cont.ends_with(&parts[0].1),
        "the continuation prompt ends with the reasoning so far: {cont:?}"
    );
    let r = results(&p.last_run("t"));
    let out = &node(&r, 0, "attempt_0")["output"];
    let reasoning = out["reasoning"].as_str().unwrap();
    let rest = &REASONING[parts[0].1.len()..];
    assert!(reasoning.contains(parts[0].1.trim()), "{out}");
    assert!(reasoning.contains(rest.trim()), "{out}");
    assert_eq!(out["finish_reasons"], json!(["length", "stop"]), "{out}");
    assert_eq!(out["answer"], "42", "{out}");
}

// ---------------------------------------------------------------------------------------
// 7. Samples get distinct seeds, recorded in the outputs
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule7_samples_get_distinct_seeds_recorded_in_outputs() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    let more = ", params: {seed: 1, temperature: 0.6}";
    p.write(
        "pipelines/s.yaml",
        &single_over(
            "s",
            "data/arithmetic.csv",
            &model(&server, more),
            "",
            "samples: 3",
        ),
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/s.yaml", "cache", &ONE).await,
        0,
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "{t}");
    let sent: BTreeSet<i64> = reqs
        .iter()
        .map(|r| r.seed().unwrap_or_else(|| panic!("no seed: {}", r.body)))
        .collect();
    assert_eq!(sent.len(), 3, "three distinct seeds: {sent:?}");
    let r = results(&p.last_run("s"));
    let samples = r["problems"][0]["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    let recorded: Vec<i64> = samples
        .iter()
        .map(|s| {
            s["attempt_0"]["output"]["seed"]
                .as_i64()
                .unwrap_or_else(|| panic!("no seed in the output: {}", s["attempt_0"]))
        })
        .collect();
    assert_eq!(recorded[0], 1, "sample 0 sends the configured seed");
    assert_eq!(
        recorded.iter().copied().collect::<BTreeSet<_>>(),
        sent,
        "the outputs record the seeds sent"
    );
    assert_exit(
        &run_pipeline(&p, "pipelines/s.yaml", "cache", &ONE).await,
        0,
    );
    assert_eq!(server.request_count(), 3, "a rerun sends nothing");
}

// ---------------------------------------------------------------------------------------
// 8. Identical calls are sent once
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule8_identical_calls_are_sent_once_within_a_process() {
    let p = Project::new();
    p.write(
        "data/twins.csv",
        "id,question,solution,answer\n\
         twin-a,What is 17 + 25?,17 + 25 = 42.,42\n\
         twin-b,What is 17 + 25?,17 + 25 = 42.,42\n",
    );
    let server = FakeServer::start(FakeConfig {
        latency: Duration::from_millis(300),
        ..fixed(ANSWER)
    })
    .await;
    p.write(
        "pipelines/w.yaml",
        &single_over("w", "data/twins.csv", &model(&server, ""), "", ""),
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/w.yaml", "cache", &["--concurrency", "4"]).await,
        0,
    );
    assert_eq!(server.request_count(), 1, "one request for both rows\n{t}");
    let r = results(&p.last_run("w"));
    for i in 0..2 {
        let n = node(&r, i, "attempt_0");
        assert_eq!(n["status"], "done", "{n}");
        assert_eq!(n["output"]["text"], ANSWER, "{n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rule8_identical_calls_are_sent_once_across_processes() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        latency: Duration::from_millis(200),
        ..FakeConfig::default()
    })
    .await;
    p.write("pipelines/x.yaml", &single("x", &model(&server, ""), ""));
    let args = |cache: &'static str| {
        vec![
            "pipeline",
            "run",
            "pipelines/x.yaml",
            "--no-progress",
            "--cache",
            cache,
            "--concurrency",
            "4",
        ]
    };
    let (a, b) = tokio::join!(
        output(cmd(&p, &args("shared"))),
        output(cmd(&p, &args("shared")))
    );
    assert_exit(&a, 0);
    assert_exit(&b, 0);
    let together = server.request_count();
    // the distinct calls: what one process alone sends on a fresh cache
    assert_exit(&output(cmd(&p, &args("fresh"))).await, 0);
    let distinct = server.request_count() - together;
    eprintln!(
        "two processes on one cache sent {together} requests; distinct calls: {distinct} (slack 2)"
    );
    assert_eq!(distinct, 8, "one call per problem");
    assert!(
        together >= distinct && together <= distinct + 2,
        "{together} requests for {distinct} distinct calls"
    );
    assert_eq!(p.runs("x").len(), 3);
    for run in p.runs("x") {
        let r = results(&run);
        for (i, q) in r["problems"].as_array().unwrap().iter().enumerate() {
            assert_eq!(node(&r, i, "attempt_0")["status"], "done", "{}", q["id"]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 9. A full cache disk: every answer kept, the failure to cache reported
// ---------------------------------------------------------------------------------------

/// Unmounts a tmpfs when dropped (also when the test fails).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rule9_a_full_cache_disk_keeps_the_answers_and_reports_it() {
    let disk = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(disk.path())
        .output();
    if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIP: cannot mount a tmpfs (not root?): {}",
            mounted
                .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
                .unwrap_or_else(|e| e.to_string())
        );
        return;
    }
    let _unmount = Unmount(disk.path().to_path_buf());
    let cache = disk.path().join("c");
    let cache_s = cache.to_str().unwrap().to_string();
    let p = Project::new();
    // the cache layout first, then a disk with no byte left
    assert_exit(&run(&p, &["cache", "stats", "--cache", &cache_s]).await, 0);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(disk.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        let mut full = false;
        for _ in 0..1000 {
            if let Err(e) = f.write_all(&block).and_then(|_| f.flush()) {
                assert_eq!(e.raw_os_error(), Some(28), "ENOSPC: {e}");
                full = true;
                break;
            }
        }
        assert!(full, "the 2 MiB tmpfs filled up");
        // the last partial block, byte by byte
        while f.write_all(&[0]).is_ok() {}
    }
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write("pipelines/d.yaml", &single("d", &model(&server, ""), ""));
    let out = run_pipeline(&p, "pipelines/d.yaml", &cache_s, &[]).await;
    let t = assert_exit(&out, 1);
    assert_eq!(server.request_count(), 8, "{t}");
    let run = p.last_run("d");
    assert!(
        !run.starts_with(disk.path()),
        "results are not on the full disk"
    );
    let r = results(&run);
    let problems = r["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 8);
    for i in 0..8 {
        let n = node(&r, i, "attempt_0");
        assert_eq!(n["status"], "done", "every answer is kept: {n}");
        assert!(n["output"]["text"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(n["output"]["answer"].is_string(), "graded: {n}");
        assert!(n["output"]["correct"].is_boolean(), "graded: {n}");
    }
    let err = stderr(&out);
    assert!(err.contains(&cache_s), "names the cache: {err}");
    assert!(err.contains("No space left"), "{err}");
    let count_line = err.lines().any(|l| {
        l.to_ascii_lowercase().contains("cach")
            && l.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "8")
    });
    assert!(
        count_line,
        "says how many answers (8) were not cached: {err}"
    );
}

// ---------------------------------------------------------------------------------------
// 10. --verbose: requests and responses, never the key
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule10_verbose_logs_requests_and_responses_without_the_key() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        api_key: Some(KEY.into()),
        ..fixed(ANSWER)
    })
    .await;
    p.write("pipelines/v.yaml", &single("v", &model(&server, ""), ""));
    let out = run_pipeline(
        &p,
        "pipelines/v.yaml",
        "cache",
        &["--verbose", "--question_ids", "add-1,mul-1"],
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(server.request_count(), 2);
    let err = stderr(&out);
    let url = format!("{}/chat/completions", server.base_url());
    assert!(err.contains(&url), "the request URL {url}: {err}");
    assert!(err.contains("stream"), "{err}");
    let latency = regex::Regex::new(r"(?i)latency|\b\d+(\.\d+)?\s?m?s\b").unwrap();
    let responses = err
        .lines()
        .filter(|l| l.contains("stop") && latency.is_match(l))
        .count();
    assert!(
        responses >= 2,
        "a line per response with its finish_reason and latency: {err}"
    );
    assert!(!err.contains(KEY), "{err}");
    assert!(!text(&out).contains(KEY));
}

// ---------------------------------------------------------------------------------------
// 11. An API key inside a completion is not stored verbatim
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule11_an_api_key_inside_a_completion_is_not_stored() {
    let p = Project::new();
    // a model repeating a secret it saw somewhere
    let server = FakeServer::start(FakeConfig::default().with_responder(|_: &Value| {
        Reply::text(format!(
            "<think>\nThe token is {KEY}, which does not matter here.\n</think>\n\nThe answer is \\boxed{{42}}."
        ))
    }))
    .await;
    p.write("pipelines/k.yaml", &single("k", &model(&server, ""), ""));
    let out = run_pipeline(&p, "pipelines/k.yaml", "cache", &["--verbose"]).await;
    let t = assert_exit(&out, 0);
    assert!(!t.contains(KEY), "stderr/stdout: {t}");
    let run = p.last_run("k");
    let res = std::fs::read_to_string(run.join("results.json")).unwrap();
    assert!(!res.contains(KEY), "results.json holds the key");
    let ev = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(!ev.contains(KEY), "events.jsonl holds the key");
    let r = results(&run);
    let n = node(&r, 0, "attempt_0");
    assert_eq!(
        n["output"]["answer"], "42",
        "the rest of the answer is kept: {n}"
    );
    // from the cache: the same, without the key
    let before = server.request_count();
    let out = run_pipeline(&p, "pipelines/k.yaml", "cache", &[]).await;
    let t = assert_exit(&out, 0);
    assert_eq!(server.request_count(), before, "served from the cache");
    assert!(!t.contains(KEY), "{t}");
    let run = p.last_run("k");
    let res = std::fs::read_to_string(run.join("results.json")).unwrap();
    assert!(
        !res.contains(KEY),
        "results.json from the cache holds the key"
    );
    assert_eq!(
        node(&results(&run), 0, "attempt_0")["output"]["answer"],
        "42"
    );
}

// ---------------------------------------------------------------------------------------
// 12. A llama-cpp-python-like server interrupting streams
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn rule12_a_server_that_interrupts_streams_gets_fewer_in_flight() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        interrupt_on_new_request: true,
        chunk_delay: Duration::from_millis(5),
        latency: Duration::ZERO,
        ..fixed(ANSWER)
    })
    .await;
    p.write("pipelines/l.yaml", &single("l", &model(&server, ""), ""));
    let t0 = Instant::now();
    let out = run_pipeline(&p, "pipelines/l.yaml", "cache", &["--concurrency", "4"]).await;
    let t = assert_exit(&out, 0);
    eprintln!(
        "interrupting server: {} requests, {} streams interrupted, {:.2}s",
        server.request_count(),
        server.interrupted_count(),
        t0.elapsed().as_secs_f64()
    );
    assert!(
        server.interrupted_count() >= 1,
        "the server did interrupt streams"
    );
    let r = results(&p.last_run("l"));
    let problems = r["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 8);
    for i in 0..problems.len() {
        let out = &node(&r, i, "attempt_0")["output"];
        assert_eq!(out["finish_reason"], "stop", "{out}");
        assert!(
            out["finish_reasons"]
                .as_array()
                .is_some_and(|f| f.iter().all(|x| x == "stop")),
            "{out}"
        );
        assert_eq!(out["text"], ANSWER, "complete: {out}");
    }
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("in-flight")),
        "a warning that the in-flight limit was lowered: {t}"
    );
}

// ---------------------------------------------------------------------------------------
// A documented limitation: a cut answer relabelled `stop` (LiteLLM) cannot be detected
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn limitation_a_cut_answer_relabelled_stop_is_taken_as_complete() {
    let p = Project::new();
    let server = FakeServer::start(always(Fault::RelabelledStop)).await;
    p.write("pipelines/l.yaml", &single("l", &model(&server, ""), ""));
    assert_exit(
        &run_pipeline(&p, "pipelines/l.yaml", "cache", &ONE).await,
        0,
    );
    assert_eq!(
        server.request_count(),
        1,
        "nothing tells the client to retry"
    );
    let r = results(&p.last_run("l"));
    let out = &node(&r, 0, "attempt_0")["output"];
    assert_eq!(out["text"], Reply::text(ANSWER).cut().content, "{out}");
    assert_eq!(out["finish_reason"], "stop");
}
