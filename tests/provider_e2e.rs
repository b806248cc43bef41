//! The real `distill` binary against the in-process fake OpenAI-compatible server: injected
//! faults are retried without changing results or caching errors, request bodies carry exactly
//! the configured parameters and rendered prompts, continuation (and its resume after a
//! SIGKILL), API keys never reach results, caches or logs, offline runs, missing keys, 401s
//! and `--max_cost`.
//!
//! The fake server runs in the test's tokio runtime; the binary is a child process run on a
//! blocking thread, so the server keeps answering while the test waits for it.

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use support::fake_openai::{FakeConfig, FakeServer, Fault, Reply, prompt_text};

const KEY: &str = "sk-test-SECRET-123";

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

/// A one-node pipeline (attempt_0 only) over data/arithmetic.csv.
fn single(name: &str, model: &str, node_extra: &str) -> String {
    format!(
        r#"name: {name}
problems: {{path: data/arithmetic.csv}}
models:
  reasoner: {model}
grade: {{extract: boxed, compare: exact}}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: reason/default{node_extra}}}
"#
    )
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

fn assert_exit(out: &Output, code: i32) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(code), "{t}");
    t
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

/// The JSON payload of a cache entry (after the 8-byte magic and the 32-byte checksum).
fn entry_payload(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let payload = zstd::stream::decode_all(&bytes[8 + 32..])
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&payload).unwrap()
}

/// Cache entries by file name (relative to the cache root), payloads without latencies.
fn cache_entries(cache: &Path) -> BTreeMap<String, Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("latency_ms");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    walk(&cache.join("objects"))
        .into_iter()
        .map(|f| {
            let mut v = entry_payload(&f);
            strip(&mut v);
            (
                f.strip_prefix(cache).unwrap().to_string_lossy().to_string(),
                v,
            )
        })
        .collect()
}

/// results.json's problems[i].samples[0][node].
fn node<'a>(results: &'a Value, problem: usize, node: &str) -> &'a Value {
    &results["problems"][problem]["samples"][0][node]
}

// ---------------------------------------------------------------------------------------
// 1. Faults at a 30 % rate: same results as a fault-free run, clean cache, no stored errors
// ---------------------------------------------------------------------------------------

/// How many requests beyond the 24 calls a faulty run makes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extra {
    /// Exactly one per injected fault (each fault fails its attempt).
    OnePerFault,
    /// None (slow answers within the timeout are no failures).
    Zero,
    /// Some, at most one per fault (a mix of both).
    AtMostOnePerFault,
}

/// Runs the iterated pipeline (1 round: 24 calls) fault-free and with `faults` at 30 %,
/// checks that both runs end equal, and returns the project and the faulty run.
async fn faults_change_nothing(
    faults: Vec<Fault>,
    model_extra: &str,
    extra: Extra,
) -> (Project, PathBuf) {
    let p = Project::new();
    let clean = FakeServer::start(FakeConfig::default()).await;
    let faulty = FakeServer::start(FakeConfig::default().with_faults(0.3, faults.clone())).await;
    p.write(
        "pipelines/clean.yaml",
        &iterated("f", 1, &model(&clean, model_extra), ""),
    );
    p.write(
        "pipelines/faulty.yaml",
        &iterated("f", 1, &model(&faulty, model_extra), ""),
    );
    let t0 = Instant::now();
    assert_exit(
        &run_pipeline(&p, "pipelines/clean.yaml", "cache-clean", &[]).await,
        0,
    );
    let reference = p.last_run("f");
    assert_eq!(clean.request_count(), 24);
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/faulty.yaml", "cache-faulty", &[]).await,
        0,
    );
    let faulty_run = p.last_run("f");
    assert_ne!(faulty_run, reference);
    assert!(
        faulty.faults_injected() >= 3,
        "{faults:?}: only {} faults injected",
        faulty.faults_injected()
    );
    let (n, f) = (faulty.request_count(), faulty.faults_injected());
    match extra {
        Extra::OnePerFault => assert_eq!(n, 24 + f, "{faults:?}: one extra request per fault"),
        Extra::Zero => assert_eq!(n, 24, "{faults:?}: no extra request"),
        Extra::AtMostOnePerFault => assert!(n > 24 && n <= 24 + f, "{faults:?}: {n} requests"),
    }
    assert_eq!(
        comparable(&reference),
        comparable(&faulty_run),
        "{faults:?}\n{t}"
    );
    let m = metrics(&faulty_run);
    assert_eq!(m["calls"], 24, "{m}");
    assert_eq!(m["problems_failed"], 0, "{m}");
    // the caches hold the same entries with the same contents: no error, no partial answer
    for c in ["cache-clean", "cache-faulty"] {
        let out = run(&p, &["cache", "verify", "--cache", c]).await;
        let vt = assert_exit(&out, 0);
        assert!(vt.contains("0 corrupt"), "{vt}");
    }
    let a = cache_entries(&p.path().join("cache-clean"));
    let b = cache_entries(&p.path().join("cache-faulty"));
    assert_eq!(a.len(), 24 + 24, "24 call entries and 24 node entries");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{faults:?}"
    );
    for (k, v) in &a {
        assert_eq!(v, &b[k], "{faults:?}: entry {k} differs");
        let s = v.to_string();
        assert!(!s.contains("\"error\""), "{k} holds an error: {s}");
    }
    eprintln!("{faults:?}: {:.2}s", t0.elapsed().as_secs_f64());
    (p, faulty_run)
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_rate_limit_with_small_retry_after() {
    faults_change_nothing(
        vec![Fault::RateLimit {
            retry_after_s: Some(1),
            retry_after_ms: Some(20),
        }],
        "",
        Extra::OnePerFault,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_rate_limit_with_retry_after_zero_seconds() {
    faults_change_nothing(
        vec![Fault::RateLimit {
            retry_after_s: Some(0),
            retry_after_ms: None,
        }],
        "",
        Extra::OnePerFault,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_server_errors_500_503_529() {
    faults_change_nothing(
        vec![Fault::ServerError, Fault::Unavailable, Fault::Overloaded],
        "",
        Extra::OnePerFault,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_dropped_mid_stream() {
    faults_change_nothing(vec![Fault::DropMidStream], "", Extra::OnePerFault).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_invalid_json_in_stream() {
    faults_change_nothing(vec![Fault::InvalidJson], "", Extra::OnePerFault).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_slow_answer_within_timeout() {
    faults_change_nothing(
        vec![Fault::Slow(Duration::from_millis(300))],
        "",
        Extra::Zero,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_slow_answer_beyond_timeout_is_retried() {
    faults_change_nothing(
        vec![Fault::Slow(Duration::from_secs(5))],
        ", timeout_s: 0.4",
        Extra::OnePerFault,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_of_every_kind_without_streaming() {
    faults_change_nothing(
        vec![
            Fault::RateLimit {
                retry_after_s: None,
                retry_after_ms: Some(10),
            },
            Fault::ServerError,
            Fault::Unavailable,
            Fault::DropMidStream,
            Fault::InvalidJson,
            Fault::Slow(Duration::from_millis(200)),
        ],
        ", stream: false",
        Extra::AtMostOnePerFault,
    )
    .await;
}

/// The provider reports each retry to its observer, but `nodes::call::send` passes
/// `NoObserver`, so `RunCtx::side_event` is never called and no retry reaches events.jsonl.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "bug: src/nodes/call.rs `send` passes NoObserver, so retries never reach events.jsonl"]
async fn retries_are_recorded_in_events_jsonl() {
    let (_p, run) = faults_change_nothing(vec![Fault::ServerError], "", Extra::OnePerFault).await;
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let retries: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "retry")
        .collect();
    assert!(!retries.is_empty(), "no retry event in events.jsonl");
    assert!(
        retries
            .iter()
            .all(|e| e["error"].as_str().is_some_and(|m| m.contains("HTTP 500"))),
        "{retries:?}"
    );
}
