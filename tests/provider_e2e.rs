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
use support::fake_openai::{FakeConfig, FakeServer, Fault, Reply};

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

/// The decompressed payload of a cache entry: the zstd frame after the magic line and the
/// checksum (found by the zstd frame magic, so a longer header does not matter).
fn decompressed(bytes: &[u8]) -> Option<Vec<u8>> {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    if !bytes.starts_with(b"DSTLC") {
        return None;
    }
    (8..bytes.len().saturating_sub(4))
        .filter(|&i| bytes[i..i + 4] == ZSTD_MAGIC)
        .find_map(|i| zstd::stream::decode_all(&bytes[i..]).ok())
}

/// Cache entries by key, payloads without latencies.
fn payloads(cache: &Path) -> BTreeMap<String, Value> {
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
    cache_entries(cache)
        .into_iter()
        .map(|(k, kind, value)| {
            let mut v = json!({"key": k, "kind": kind, "value": value});
            strip(&mut v);
            (k, v)
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
    /// At least one per fault (a loaded machine may time out a normal answer too).
    AtLeastOnePerFault,
}

/// Runs the iterated pipeline (1 round: 24 calls) fault-free and with `faults` at 30 %,
/// checks that both runs end equal, and returns the project and the faulty run.
/// `model_extra` applies to the faulty run only: streaming and timeouts are not part of the
/// cache key, so both runs must still write the same entries.
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
        &iterated("f", 1, &model(&clean, ""), ""),
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
    let t1 = Instant::now();
    let t = assert_exit(
        &run_pipeline(
            &p,
            "pipelines/faulty.yaml",
            "cache-faulty",
            &["--concurrency", "8"],
        )
        .await,
        0,
    );
    let faulty_secs = t1.elapsed().as_secs_f64();
    let faulty_run = p.last_run("f");
    assert_ne!(faulty_run, reference);
    // 24 calls and a few dozen retries of at most 50 ms: seconds, not the minutes of a
    // learned rate driven down by refusals that are not a rate limit's
    assert!(
        faulty_secs < 45.0,
        "{faults:?}: the faulty run took {faulty_secs:.1}s"
    );
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
        Extra::AtLeastOnePerFault => assert!(n >= 24 + f, "{faults:?}: {n} requests"),
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
    let a = payloads(&p.path().join("cache-clean"));
    let b = payloads(&p.path().join("cache-faulty"));
    assert!(a.len() >= 24, "at least an entry per call: {}", a.len());
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
    eprintln!(
        "{faults:?}: {:.2}s (the faulty run {faulty_secs:.2}s)",
        t0.elapsed().as_secs_f64()
    );
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
        vec![Fault::Slow(Duration::from_secs(30))],
        ", timeout_s: 0.5",
        Extra::AtLeastOnePerFault,
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

/// The provider reports each retry to its observer, which `nodes::call::send` turns into a
/// `retry` event of the node in events.jsonl.
#[tokio::test(flavor = "multi_thread")]
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

// ---------------------------------------------------------------------------------------
// 2. Request bodies: exactly the configured parameters; rendered prompts on /completions
// ---------------------------------------------------------------------------------------

const PARAMS: &str = "{temperature: 0.6, top_p: 0.95, top_k: 40, max_tokens: 2048, seed: 11}";

/// The user prompt reason/default renders for a question.
fn reason_prompt(question: &str) -> String {
    let t = std::fs::read_to_string(repo().join("prompts/reason/default.hbs")).unwrap();
    t.replace("{{question}}", question)
}

fn questions() -> Vec<String> {
    let mut r = csv::Reader::from_path(repo().join("data/arithmetic.csv")).unwrap();
    r.records().map(|x| x.unwrap()[1].to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_carry_exactly_the_configured_parameters() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    let more = format!(", params: {PARAMS}, extra: {{repetition_penalty: 1.05}}");
    p.write(
        "pipelines/b.yaml",
        &single("b", &model(&server, &more), ", system: \"Be brief.\""),
    );
    assert_exit(&run_pipeline(&p, "pipelines/b.yaml", "cache", &[]).await, 0);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 8);
    let mut seen = BTreeSet::new();
    for r in &reqs {
        assert_eq!(r.path, "/v1/chat/completions");
        let body = r.body.as_object().unwrap();
        let keys: BTreeSet<&str> = body.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = [
            "model",
            "messages",
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "seed",
            "repetition_penalty",
            "stream",
            "stream_options",
        ]
        .into();
        assert_eq!(keys, want, "{}", r.body);
        assert_eq!(body["model"], "m");
        assert_eq!(body["temperature"], 0.6);
        assert_eq!(body["top_p"], 0.95);
        assert_eq!(body["top_k"], 40);
        assert_eq!(body["max_tokens"], 2048);
        assert_eq!(body["seed"], 11);
        assert_eq!(body["repetition_penalty"], 1.05);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        let msgs = body["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(msgs[1]["role"], "user");
        seen.insert(msgs[1]["content"].as_str().unwrap().to_string());
    }
    let want: BTreeSet<String> = questions().iter().map(|q| reason_prompt(q)).collect();
    assert_eq!(seen, want);

    // without streaming: no stream_options, `stream: false`
    let server = FakeServer::start(FakeConfig::default()).await;
    let more = format!(", stream: false, params: {PARAMS}");
    p.write("pipelines/b.yaml", &single("b", &model(&server, &more), ""));
    assert_exit(
        &run_pipeline(&p, "pipelines/b.yaml", "cache2", &[]).await,
        0,
    );
    for r in server.requests() {
        let keys: BTreeSet<&str> = r
            .body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let want: BTreeSet<&str> = [
            "model",
            "messages",
            "temperature",
            "top_p",
            "top_k",
            "max_tokens",
            "seed",
            "stream",
        ]
        .into();
        assert_eq!(keys, want, "{}", r.body);
        assert_eq!(r.body["stream"], false);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_endpoint_sends_the_rendered_chat_format() {
    let p = Project::new();
    let qs = questions();
    for (format, render) in [
        (
            "deepseek_r1",
            (|u: &str| {
                format!("<｜begin▁of▁sentence｜>Be brief.<｜User｜>{u}<｜Assistant｜><think>\n")
            }) as fn(&str) -> String,
        ),
        ("chatml", |u: &str| {
            format!(
                "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{u}<|im_end|>\n<|im_start|>assistant\n"
            )
        }),
    ] {
        let server = FakeServer::start(FakeConfig::default()).await;
        let more = format!(", endpoint: completions, chat_format: {format}, params: {PARAMS}");
        p.write(
            "pipelines/c.yaml",
            &single("c", &model(&server, &more), ", system: \"Be brief.\""),
        );
        let cache = format!("cache-{format}");
        assert_exit(&run_pipeline(&p, "pipelines/c.yaml", &cache, &[]).await, 0);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 8);
        let mut prompts = BTreeSet::new();
        for r in &reqs {
            assert_eq!(r.path, "/v1/completions");
            let body = r.body.as_object().unwrap();
            let keys: BTreeSet<&str> = body.keys().map(String::as_str).collect();
            let want: BTreeSet<&str> = [
                "model",
                "prompt",
                "temperature",
                "top_p",
                "top_k",
                "max_tokens",
                "seed",
                "stream",
                "stream_options",
            ]
            .into();
            assert_eq!(keys, want, "{format}: {}", r.body);
            assert_eq!(body["max_tokens"], 2048);
            prompts.insert(body["prompt"].as_str().unwrap().to_string());
        }
        let want: BTreeSet<String> = qs.iter().map(|q| render(&reason_prompt(q))).collect();
        assert_eq!(prompts, want, "{format}");
        // the completion text is the node's text
        let r = json(&p.last_run("c").join("results.json"));
        let first = node(&r, 0, "attempt_0");
        assert_eq!(first["status"], "done", "{first}");
        let prompt = render(&reason_prompt(&qs[0]));
        assert_eq!(
            first["output"]["text"],
            support::fake_openai::echo_reply(&prompt).content
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Continuation on a completions endpoint, and its resume after a SIGKILL between steps
// ---------------------------------------------------------------------------------------

/// A reasoning trace as an R1 distill writes it after `<think>\n` (non-ASCII included).
const TRACE: &str = "Okay, so I need 17 + 25. Units: 7 + 5 = 12 → write 2, carry 1. \
Tens: 1 + 2 + 1 = 4. So it's 42. Let me double-check: 42 − 25 = 17. ✓\n</think>\n\n\
17 + 25 = 42, so the answer is \\boxed{42}.";

fn continuation_config() -> FakeConfig {
    FakeConfig {
        split_parts: Some(3),
        ..FakeConfig::default().with_responder(|_: &Value| Reply::text(TRACE))
    }
}

fn continuation_pipeline(p: &Project, server: &FakeServer, format: &str) {
    let more = format!(
        ", endpoint: completions, chat_format: {format}, continuation: {{max_continuations: 4}}"
    );
    p.write("pipelines/k.yaml", &single("k", &model(server, &more), ""));
}

fn prompts_sent(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .map(|r| {
            assert_eq!(r.path, "/v1/completions");
            r.body["prompt"].as_str().unwrap().to_string()
        })
        .collect()
}

fn assert_full_trace(run: &Path) {
    let r = json(&run.join("results.json"));
    let n = node(&r, 0, "attempt_0");
    assert_eq!(n["status"], "done", "{n}");
    assert_eq!(n["output"]["text"], TRACE);
    assert_eq!(
        n["output"]["finish_reasons"],
        json!(["length", "length", "stop"])
    );
    assert_eq!(n["output"]["finish_reason"], "stop");
    assert_eq!(n["output"]["answer"], "42", "{n}");
}

#[tokio::test(flavor = "multi_thread")]
async fn continuation_joins_three_pieces_exactly() {
    let parts = support::fake_openai::split_chars(TRACE, 3);
    for format in ["deepseek_r1", "chatml"] {
        let p = Project::new();
        let server = FakeServer::start(continuation_config()).await;
        continuation_pipeline(&p, &server, format);
        let args = ["--question_ids", "add-1"];
        assert_exit(
            &run_pipeline(&p, "pipelines/k.yaml", "cache", &args).await,
            0,
        );
        let run = p.last_run("k");
        assert_full_trace(&run);
        let prompts = prompts_sent(&server);
        assert_eq!(prompts.len(), 3, "{format}: {prompts:#?}");
        assert_eq!(
            prompts[1],
            format!("{}{}", prompts[0], parts[0]),
            "{format}"
        );
        assert_eq!(
            prompts[2],
            format!("{}{}{}", prompts[0], parts[0], parts[1]),
            "{format}"
        );
        assert_eq!(metrics(&run)["calls"], 3);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn continuation_resumes_at_the_right_step_after_sigkill() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        script: vec![
            Fault::None,
            Fault::None,
            Fault::Slow(Duration::from_secs(60)),
        ],
        ..continuation_config()
    })
    .await;
    continuation_pipeline(&p, &server, "deepseek_r1");
    let args = [
        "pipeline",
        "run",
        "pipelines/k.yaml",
        "--no-progress",
        "--question_ids",
        "add-1",
    ];
    let mut child = cmd(&p, &args).spawn().unwrap();
    // the third request arrives only after the second step's call entry was written
    let t0 = Instant::now();
    while server.request_count() < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the third step"
        );
        assert!(t0.elapsed() < Duration::from_secs(20), "no third request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    assert_eq!(server.request_count(), 3);
    let entries = cache_entries(&p.path().join("cache"));
    assert_eq!(entries.len(), 2, "two call entries: {entries:?}");

    assert_exit(&output(cmd(&p, &args)).await, 0);
    assert_eq!(server.request_count(), 4, "exactly one more request");
    let prompts = prompts_sent(&server);
    assert_eq!(prompts[3], prompts[2], "the rerun sends the third step");
    let run = p.last_run("k");
    assert_full_trace(&run);
    let m = metrics(&run);
    assert_eq!(m["calls"], 1, "{m}");
    assert_eq!(m["call_cache_hits"], 2, "{m}");
}

// ---------------------------------------------------------------------------------------
// 4. The API key reaches the server and nothing else
// ---------------------------------------------------------------------------------------

/// Files under `dir` whose raw bytes, or decompressed cache payloads (a loose entry's, or
/// those of every entry a pack segment holds), contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap();
            let raw = String::from_utf8_lossy(&bytes).contains(needle);
            let unpacked =
                decompressed(&bytes).is_some_and(|p| String::from_utf8_lossy(&p).contains(needle));
            let in_pack = f.extension().is_some_and(|x| x == "pack")
                && cache_entries(f.parent().unwrap().parent().unwrap())
                    .iter()
                    .any(|(_, kind, v)| kind.contains(needle) || v.to_string().contains(needle));
            raw || unpacked || in_pack
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_reaches_the_server_and_nothing_else() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig {
        api_key: Some(KEY.into()),
        ..FakeConfig::default().with_faults(0.3, vec![Fault::ServerError, Fault::DropMidStream])
    })
    .await;
    p.write(
        "pipelines/s.yaml",
        &iterated("s", 1, &model(&server, ""), ""),
    );
    let out = run_pipeline(&p, "pipelines/s.yaml", "cache", &["--verbose"]).await;
    let t = assert_exit(&out, 0);
    assert!(
        t.contains("Solve the following problem"),
        "--verbose logs prompts: {t}"
    );
    assert!(!t.contains(KEY) && !t.contains("SECRET-123"), "{t}");
    let reqs = server.requests();
    assert!(reqs.len() > 24);
    for r in &reqs {
        assert_eq!(r.headers["authorization"], format!("Bearer {KEY}"));
    }
    // the probe sees through compression: the answers' text is found in the cache
    let probe = files_containing(&p.path().join("cache"), "Let me work it out step by step");
    assert!(!probe.is_empty(), "{probe:?}");
    let with_text = cache_entries(&p.path().join("cache"))
        .iter()
        .filter(|(_, _, v)| v.to_string().contains("Let me work it out step by step"))
        .count();
    assert!(with_text >= 24, "{with_text}");
    for d in ["results", "cache"] {
        let hits = files_containing(&p.path().join(d), "SECRET-123");
        assert!(hits.is_empty(), "the key is in {hits:?}");
    }

    // a server that rejects the key and echoes it back: the error is kept, the key is not
    let other = FakeServer::start(FakeConfig {
        api_key: Some("sk-other".into()),
        ..FakeConfig::default()
    })
    .await;
    p.write(
        "pipelines/s.yaml",
        &iterated("s", 1, &model(&other, ""), ""),
    );
    let out = run_pipeline(&p, "pipelines/s.yaml", "cache2", &["--verbose"]).await;
    let t = assert_exit(&out, 1);
    assert!(t.contains("Incorrect API key provided"), "{t}");
    assert!(!t.contains("SECRET-123"), "{t}");
    let r = json(&p.last_run("s").join("results.json"));
    let e = node(&r, 0, "attempt_0")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        e.contains("Incorrect API key provided") && e.contains("[redacted]"),
        "{e}"
    );
    for d in ["results", "cache", "cache2"] {
        let hits = files_containing(&p.path().join(d), "SECRET-123");
        assert!(hits.is_empty(), "the key is in {hits:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 5. Offline: no request, exit 1, the message says offline
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn offline_with_an_empty_cache_sends_nothing() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write(
        "pipelines/o.yaml",
        &iterated("o", 1, &model(&server, ""), ""),
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/o.yaml", "cache", &["--offline"]).await,
        1,
    );
    assert!(t.contains("offline"), "{t}");
    let mut c = cmd(
        &p,
        &["pipeline", "run", "pipelines/o.yaml", "--no-progress"],
    );
    c.env("ENABLE_API_CALLS", "0");
    let t = assert_exit(&output(c).await, 1);
    assert!(t.contains("offline"), "{t}");
    assert_eq!(server.request_count(), 0);
    let r = json(&p.last_run("o").join("results.json"));
    let e = node(&r, 0, "attempt_0")["error"].as_str().unwrap();
    assert!(e.contains("offline"), "{e}");

    // once the cache is full, offline runs answer everything from it, with the server gone:
    // how a published table is re-derived from a shared cache
    assert_exit(&run_pipeline(&p, "pipelines/o.yaml", "cache", &[]).await, 0);
    let online = p.last_run("o");
    assert_eq!(server.request_count(), 24);
    server.shutdown();
    assert_exit(
        &run_pipeline(&p, "pipelines/o.yaml", "cache", &["--offline"]).await,
        0,
    );
    let offline = p.last_run("o");
    assert_eq!(comparable(&online), comparable(&offline));
    // identical accuracy tables: every figure of every round in the two reports
    let rounds = |run: &Path| json(&run.join("report.json"))["runs"][0]["rounds"].clone();
    assert!(rounds(&online).as_array().is_some_and(|r| r.len() == 2));
    assert_eq!(rounds(&online), rounds(&offline));
    let table = |run: &Path| {
        let md = std::fs::read_to_string(run.join("report.md")).unwrap();
        md.lines()
            .filter(|l| l.starts_with("| 0 |") || l.starts_with("| 1 |"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(!table(&online).is_empty());
    assert_eq!(table(&online), table(&offline));
}

// ---------------------------------------------------------------------------------------
// 6. A missing key: exit 2 before any request, naming the variable
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_stops_before_any_request() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    let m = model(&server, "").replace("FAKE_KEY", "DISTILL_E2E_UNSET_KEY");
    p.write("pipelines/m.yaml", &single("m", &m, ""));
    let mut c = cmd(
        &p,
        &["pipeline", "run", "pipelines/m.yaml", "--no-progress"],
    );
    c.env_remove("DISTILL_E2E_UNSET_KEY");
    let t = assert_exit(&output(c).await, 2);
    assert!(t.contains("DISTILL_E2E_UNSET_KEY"), "{t}");
    assert_eq!(server.request_count(), 0);
    assert!(p.runs("m").is_empty(), "no run directory");
}

// ---------------------------------------------------------------------------------------
// 7. 401: the node fails with the server's message, without retries
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn unauthorized_fails_the_node_without_retries() {
    let p = Project::new();
    let server =
        FakeServer::start(FakeConfig::default().with_faults(1.0, vec![Fault::Unauthorized])).await;
    p.write(
        "pipelines/u.yaml",
        &iterated("u", 1, &model(&server, ""), ""),
    );
    let t = assert_exit(&run_pipeline(&p, "pipelines/u.yaml", "cache", &[]).await, 1);
    assert!(t.contains("Invalid authentication credentials"), "{t}");
    // one request per attempt_0 call; their dependents are not run
    assert_eq!(server.request_count(), 8);
    let r = json(&p.last_run("u").join("results.json"));
    for i in 0..8 {
        let a = node(&r, i, "attempt_0");
        assert_eq!(a["status"], "failed");
        let e = a["error"].as_str().unwrap();
        assert!(
            e.contains("HTTP 401") && e.contains("Invalid authentication credentials"),
            "{e}"
        );
        assert!(!e.contains("retries"), "{e}");
        assert_eq!(r["problems"][i]["status"], "failed");
        assert!(
            node(&r, i, "summary_1")["error"]
                .as_str()
                .unwrap()
                .contains("upstream `attempt_0` failed")
        );
    }
    assert!(
        cache_entries(&p.path().join("cache")).is_empty(),
        "nothing is cached"
    );
}

// ---------------------------------------------------------------------------------------
// 8. --max_cost: once the spend reaches it, no new call is sent
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn max_cost_stops_sending_new_calls() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    let m = model(
        &server,
        ", price: {input_per_m: 1000000, output_per_m: 1000000}",
    );
    p.write("pipelines/c.yaml", &iterated("c", 1, &m, ""));
    let out = run_pipeline(
        &p,
        "pipelines/c.yaml",
        "cache",
        &["--max_cost", "0.000001", "--concurrency", "1"],
    )
    .await;
    let t = assert_exit(&out, 1);
    assert!(t.contains("max_cost"), "{t}");
    // one call in flight at a time: the first one's cost stops every later one
    assert_eq!(server.request_count(), 1, "{t}");
    let run = p.last_run("c");
    let m = metrics(&run);
    assert_eq!(m["calls"], 1, "{m}");
    assert!(m["spend_usd"].as_f64().unwrap() >= 1.0, "{m}");
    let r = json(&run.join("results.json"));
    let errors: Vec<String> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["samples"][0].as_object().unwrap().values())
        .filter_map(|n| n["error"].as_str().map(str::to_string))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("--max_cost")),
        "{errors:?}"
    );

    // without the cap, the rest is sent and the first call comes from the cache
    assert_exit(&run_pipeline(&p, "pipelines/c.yaml", "cache", &[]).await, 0);
    assert_eq!(server.request_count(), 24);
    let m = metrics(&p.last_run("c"));
    assert_eq!(m["calls"], 23, "{m}");
}
