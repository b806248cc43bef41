//! Provider batch APIs through the real binary, against the tests' loopback batch server
//! (`support/fake_batch.rs`): a batch run equals a direct run of the same fake model, wave
//! by wave; a kill between submission and completion followed by `--resume` submits
//! nothing twice (counted at the server); error lines, answers without a finish_reason,
//! expired, cancelled and failed batches are resubmitted or sent directly; cost is the
//! batch price; `--offline` and `--max-cost` hold back; Ctrl-C leaves batches running or
//! cancels them.

mod common;
mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::fake_openai::batch::{BatchEnd, BatchScript};
use support::fake_openai::{FakeConfig, FakeServer};

/// The fake model as a pipeline's model block.
fn model(server: &FakeServer, extra: &str) -> String {
    format!(
        "{{provider: openai-compatible, base_url: \"{}\", model: fake-m, stream: false, params: {{max_tokens: 64, temperature: 0.6}}, price: {{input_per_m: 1.0, output_per_m: 2.0}}, batch_wait_s: 0.3, batch_poll_s: 0.05{extra}}}",
        server.base_url()
    )
}

async fn server(batch: BatchScript) -> FakeServer {
    FakeServer::start(FakeConfig {
        batch,
        ..Default::default()
    })
    .await
}

fn run(p: &Project, args: &[&str]) -> std::process::Output {
    let mut a = vec!["pipeline", "run"];
    a.extend_from_slice(args);
    a.push("--no-progress");
    p.run(&a)
}

/// Results without what differs between equal runs, and without spend (DESIGN.md).
fn equal_part(run: &std::path::Path) -> Value {
    let mut v = comparable(run);
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("cost_usd");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

fn created(s: &FakeServer) -> u64 {
    s.batches().created.load(Ordering::SeqCst)
}

fn custom_ids(s: &FakeServer) -> Vec<String> {
    s.batches().custom_ids.lock().unwrap().clone()
}

fn no_duplicates(ids: &[String]) -> bool {
    ids.iter().collect::<HashSet<_>>().len() == ids.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_run_equals_a_direct_run_wave_by_wave_and_a_rerun_is_free() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    p.write("pipelines/d.yaml", &iterated("d", 2, &model(&s, ""), ""));
    p.write(
        "pipelines/b.yaml",
        // max_in_flight limits requests in flight, not lines waiting in a batch
        &iterated("b", 2, &model(&s, ", batch: true, max_in_flight: 2"), ""),
    );
    let out = run(&p, &["pipelines/d.yaml", "--cache", "direct"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let direct = p.last_run("d");
    let direct_requests = s.request_count();
    assert_eq!(direct_requests, 8 * 5, "8 problems × 5 calls");
    assert_eq!(created(&s), 0);

    let out = run(&p, &["pipelines/b.yaml", "--cache", "batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let batched = p.last_run("b");
    assert_eq!(s.request_count(), direct_requests, "no direct call: {t}");
    // attempt_0, summary_1, attempt_1, summary_2, attempt_2: five waves, one batch each
    assert_eq!(created(&s), 5, "{t}");
    assert_eq!(s.batches().lines.load(Ordering::SeqCst), 40);
    assert!(no_duplicates(&custom_ids(&s)));
    assert_eq!(equal_part(&direct), equal_part(&batched));
    let m = metrics(&batched);
    assert_eq!(m["batches"]["submitted"], 5, "{m}");
    assert_eq!(m["calls"], 40);
    // recorded in the run directory and in the cache directory
    let log = std::fs::read_to_string(batched.join("batches.jsonl")).unwrap();
    assert_eq!(
        log.lines().count(),
        20,
        "claimed, uploaded (both `creating`), submitted, collected per batch: {log}"
    );
    let records = std::fs::read_dir(p.path().join("batch/batches"))
        .unwrap()
        .count();
    assert_eq!(records, 5);

    // the same pipeline again: every answer is a cache hit, nothing is submitted
    let out = run(&p, &["pipelines/b.yaml", "--cache", "batch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(created(&s), 5);
    assert_eq!(metrics(&p.last_run("b"))["calls"], 0);
    // and a direct run of the same pipeline on the batch run's cache is free too: same keys
    let out = run(&p, &["pipelines/d.yaml", "--cache", "batch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(s.request_count(), direct_requests);
    assert_eq!(equal_part(&direct), equal_part(&p.last_run("d")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_price_is_what_a_batch_answer_costs() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    p.write("pipelines/d.yaml", &iterated("d", 1, &model(&s, ""), ""));
    p.write(
        "pipelines/b.yaml",
        &iterated("b", 1, &model(&s, ", batch: true"), ""),
    );
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "c1"])
            .status
            .code(),
        Some(0)
    );
    let out = run(&p, &["pipelines/d.yaml", "--cache", "c2", "--batch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let direct = metrics(&p.runs("d")[0])["spend_usd"].as_f64().unwrap();
    let batch = metrics(&p.runs("d")[1])["spend_usd"].as_f64().unwrap();
    assert!(direct > 0.0);
    // spend is counted in micro-dollars per node: a few of rounding
    assert!((batch - direct / 2.0).abs() < 2e-5, "{batch} vs {direct}");
    assert_eq!(created(&s), 3, "--batch batches the model too");
    // an explicit batch price
    p.write(
        "pipelines/e.yaml",
        &iterated(
            "e",
            1,
            &model(&s, ", batch: true").replace(
                "output_per_m: 2.0}",
                "output_per_m: 2.0, batch_input_per_m: 0.1, batch_output_per_m: 0.2}",
            ),
            "",
        ),
    );
    let out = run(&p, &["pipelines/e.yaml", "--cache", "c3"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let e = metrics(&p.last_run("e"))["spend_usd"].as_f64().unwrap();
    assert!((e - direct / 10.0).abs() < 2e-5, "{e} vs {direct}");
    // the cost of a node: batch-priced in results.json as well
    let r = json(&p.last_run("e").join("results.json"));
    let c = r["problems"][0]["samples"][0]["attempt_0"]["output"]["cost_usd"].as_f64();
    let u = &r["problems"][0]["samples"][0]["attempt_0"]["output"]["usage"];
    let want = (u["prompt_tokens"].as_f64().unwrap() * 0.1
        + u["completion_tokens"].as_f64().unwrap() * 0.2)
        / 1e6;
    assert!(
        c.is_some_and(|c| (c - want).abs() < 1e-9),
        "{c:?} vs {want}: {r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn error_lines_and_answers_without_finish_reason_are_resubmitted() {
    let s = server(BatchScript {
        error_lines: 3,
        incomplete_lines: 2,
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write("pipelines/d.yaml", &iterated("d", 1, &model(&s, ""), ""));
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "d"]).status.code(),
        Some(0)
    );
    let direct = p.last_run("d");
    let before = s.request_count();
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(s.request_count(), before, "all answered by batches: {t}");
    let ids = custom_ids(&s);
    assert_eq!(ids.len(), 24 + 5, "5 lines resubmitted once: {t}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 24);
    assert_eq!(equal_part(&direct), equal_part(&p.last_run("d")));
    let ev = std::fs::read_to_string(p.last_run("d").join("events.jsonl")).unwrap();
    assert_eq!(ev.matches("\"retry\"").count(), 5, "{ev}");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_cancelled_batches_resubmit_what_they_did_not_answer() {
    let s = server(BatchScript {
        ends: vec![BatchEnd::Expired, BatchEnd::Cancelled],
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write("pipelines/d.yaml", &iterated("d", 1, &model(&s, ""), ""));
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "d"]).status.code(),
        Some(0)
    );
    let direct = p.last_run("d");
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("expired: 4 answered, 4 to resubmit"), "{t}");
    assert_eq!(equal_part(&direct), equal_part(&p.last_run("d")));
    assert!(t.contains("cancelled: 4 answered, 4 to resubmit"), "{t}");
    // what a batch did not answer joins the next batch with the calls that became ready:
    // expired (8 lines), cancelled (4 resubmitted + 4 summaries), then two complete batches
    assert_eq!(created(&s), 4, "{t}");
    let ids = custom_ids(&s);
    assert!(ids.len() > 24 && ids.iter().collect::<HashSet<_>>().len() == 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_of_failed_batches_are_sent_directly_after_batch_retries() {
    let s = server(BatchScript {
        ends: vec![BatchEnd::Failed, BatchEnd::Failed],
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write(
        "pipelines/d.yaml",
        &iterated("d", 1, &model(&s, ", batch_retries: 1"), ""),
    );
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // wave 1 fails twice: its 8 calls go directly; waves 2 and 3 are batches
    assert_eq!(s.request_count(), 8, "{t}");
    assert_eq!(created(&s), 4, "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_and_max_cost_never_submit() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    p.write(
        "pipelines/b.yaml",
        &iterated("b", 1, &model(&s, ", batch: true"), ""),
    );
    let out = run(&p, &["pipelines/b.yaml", "--offline"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(&p, &["pipelines/b.yaml", "--max-cost", "0.000001"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert_eq!(s.batches().uploads.load(Ordering::SeqCst), 0);
    assert_eq!(created(&s), 0);
    assert_eq!(s.request_count(), 0);
    let r = json(&p.last_run("b").join("results.json"));
    assert!(r.to_string().contains("\"budget\""), "{r}");
}

/// Waits until the server has created `n` batches (the child must still run).
fn wait_created(s: &FakeServer, n: u64, child: &mut std::process::Child) {
    let t0 = Instant::now();
    while created(s) < n {
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(t0.elapsed() < Duration::from_secs(60), "no batch submitted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_submission_and_completion_then_resume_submits_nothing_twice() {
    let s = server(BatchScript {
        step: Duration::from_millis(700),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let mut child = p
        .cmd()
        .args(["pipeline", "run", "pipelines/k.yaml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the second wave's batch is submitted, then the process dies before it completes
    wait_created(&s, 2, &mut child);
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = p.last_run("k");
    let pending: Vec<Value> = std::fs::read_dir(p.path().join("cache/batches"))
        .unwrap()
        .flatten()
        .map(|e| json(&e.path()))
        .filter(|r| r["state"] == "submitted")
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["keys"].as_array().unwrap().len(), 8);
    let out = p.run(&[
        "pipeline",
        "run",
        "--resume",
        killed.to_str().unwrap(),
        "--no-progress",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("waiting for it instead of submitting again"),
        "{t}"
    );
    // three waves, three batches, each line submitted once; no direct call
    assert_eq!(created(&s), 3, "{t}");
    assert!(no_duplicates(&custom_ids(&s)), "{t}");
    assert_eq!(custom_ids(&s).len(), 24);
    assert_eq!(s.request_count(), 0);
    let r = json(&killed.join("results.json"));
    assert_eq!(r["problems"].as_array().unwrap().len(), 8);
    eprintln!(
        "server saw: {} uploads, {} batches created, {} lines, {} status polls, {} direct requests",
        s.batches().uploads.load(Ordering::SeqCst),
        created(&s),
        custom_ids(&s).len(),
        s.batches().polls.load(Ordering::SeqCst),
        s.request_count()
    );
}

/// Sends SIGINT once a batch exists; returns the run's output.
fn interrupt_after_submission(p: &Project, s: &FakeServer, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["pipeline", "run", "pipelines/k.yaml", "--no-progress"];
    args.extend_from_slice(extra);
    let mut child = p
        .cmd()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_created(s, 1, &mut child);
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_leaves_batches_running_and_says_how_to_resume() {
    let s = server(BatchScript {
        step: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let out = interrupt_after_submission(&p, &s, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert!(
        t.contains("is left running at the provider") && t.contains("--resume"),
        "{t}"
    );
    assert_eq!(s.batches().cancels.load(Ordering::SeqCst), 0);
    let stopped = p.last_run("k");
    let ev = std::fs::read_to_string(stopped.join("events.jsonl")).unwrap();
    assert!(ev.contains("batch_pending"), "{ev}");
    let out = p.run(&[
        "pipeline",
        "run",
        "--resume",
        stopped.to_str().unwrap(),
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(no_duplicates(&custom_ids(&s)));
    assert_eq!(created(&s), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_batches_cancels_them_on_ctrl_c() {
    let s = server(BatchScript {
        step: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let out = interrupt_after_submission(&p, &s, &["--cancel_batches"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert_eq!(s.batches().cancels.load(Ordering::SeqCst), 1, "{t}");
    assert!(t.contains("cancel requested"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_waves_batches_and_the_batch_priced_cost() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    p.write(
        "pipelines/b.yaml",
        &iterated("b", 4, &model(&s, ", batch: true, batch_size: 5"), ""),
    );
    let out = p.run(&["pipeline", "plan", "pipelines/b.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // 9 waves of 8 calls; batches of at most 5 lines: 2 per wave
    assert!(
        t.contains("at most 9 wave(s) of model calls and 18 batch(es)"),
        "{t}"
    );
    assert!(t.contains("wave 9"), "{t}");
    assert_eq!(created(&s), 0);
}

#[test]
fn batch_on_a_model_without_a_batch_api_is_an_error_at_its_line() {
    let p = Project::new();
    p.write(
        "pipelines/s.yaml",
        &iterated("s", 1, "{provider: sim, batch: true, batch_size: 0}", ""),
    );
    let out = p.run(&["pipeline", "validate", "pipelines/s.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains(
            "s.yaml:4: error: model `reasoner`: `batch: true` needs a provider with a batch API"
        ),
        "{t}"
    );
    assert!(t.contains("`batch_size` must be from 1 to 50000"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_on_length_is_a_call_in_the_next_batch() {
    let s = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    let m = model(&s, ", continuation: {max_continuations: 2}");
    p.write("pipelines/d.yaml", &iterated("d", 1, &m, ""));
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "d"]).status.code(),
        Some(0)
    );
    let direct = p.last_run("d");
    let n = s.request_count();
    assert!(n >= 48, "3 nodes × at least 2 steps × 8 problems: {n}");
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(s.request_count(), n, "{t}");
    // a node's next step waits for its last: each step of 3 nodes is a batch of its own
    assert_eq!(created(&s), n / 8, "{t}");
    assert_eq!(custom_ids(&s).len() as u64, n);
    assert_eq!(equal_part(&direct), equal_part(&p.last_run("d")));
    let r = json(&p.last_run("d").join("results.json"));
    let f = &r["problems"][0]["samples"][0]["attempt_0"]["output"]["finish_reasons"];
    // the fake's split answer never ends on a chat endpoint: max_continuations + 1 steps
    assert_eq!(f, &serde_json::json!(["length", "length", "length"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_problems_with_one_request_are_one_line_paid_once() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    p.write(
        "data/dup.csv",
        "id,question,solution,answer\na,What is 2+2?,,4\nb,What is 2+2?,,4\nc,What is 3+3?,,6\n",
    );
    let pipeline = |name: &str| {
        iterated(name, 1, &model(&s, ""), "").replace("data/arithmetic.csv", "data/dup.csv")
    };
    p.write("pipelines/d.yaml", &pipeline("d"));
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "d"]).status.code(),
        Some(0)
    );
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (direct, batch) = (metrics(&p.runs("d")[0]), metrics(&p.runs("d")[1]));
    assert_eq!(custom_ids(&s).len(), 6, "2 distinct requests × 3 waves");
    assert_eq!(batch["calls"], direct["calls"], "{batch}");
    assert_eq!(batch["calls"], 6);
    let (d, b) = (
        direct["spend_usd"].as_f64().unwrap(),
        batch["spend_usd"].as_f64().unwrap(),
    );
    assert!((b - d / 2.0).abs() < 1e-5, "{b} vs {d}");
    assert_eq!(equal_part(&p.runs("d")[0]), equal_part(&p.runs("d")[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completions_model_is_batched_on_the_completions_endpoint() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    let m = model(&s, ", endpoint: completions, chat_format: chatml");
    p.write("pipelines/d.yaml", &iterated("d", 1, &m, ""));
    assert_eq!(
        run(&p, &["pipelines/d.yaml", "--cache", "d"]).status.code(),
        Some(0)
    );
    let direct = p.last_run("d");
    let out = run(&p, &["pipelines/d.yaml", "--cache", "b", "--batch"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(equal_part(&direct), equal_part(&p.last_run("d")));
    let paths: HashSet<String> = s.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        HashSet::from([
            "/v1/completions".to_string(),
            "batch:/v1/completions".to_string()
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_model_and_a_direct_model_mix_in_one_run() {
    let s = server(BatchScript::default()).await;
    let p = Project::new();
    // attempts batched (the bulk rounds), summaries direct (`batch: false` holds under --batch)
    let yaml = iterated("m", 2, &model(&s, ", batch: true"), "")
        .replace(
            "models:\n",
            &format!("models:\n  direct: {}\n", model(&s, ", batch: false")),
        )
        .replace(
            "kind: summarize, model: reasoner",
            "kind: summarize, model: direct",
        );
    p.write("pipelines/m.yaml", &yaml);
    let out = run(&p, &["pipelines/m.yaml", "--batch"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        s.request_count(),
        16,
        "2 summary rounds × 8, sent directly: {t}"
    );
    assert_eq!(created(&s), 3, "3 attempt waves, one batch each: {t}");
    assert_eq!(custom_ids(&s).len(), 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_while_a_batch_is_created_finds_it_by_its_input_file() {
    let s = server(BatchScript {
        create_delay: Duration::from_secs(30),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let mut child = p
        .cmd()
        .args(["pipeline", "run", "pipelines/k.yaml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the server created the batch; the client is still waiting for its id
    wait_created(&s, 1, &mut child);
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = p.last_run("k");
    let records: Vec<Value> = std::fs::read_dir(p.path().join("cache/batches"))
        .unwrap()
        .flatten()
        .map(|e| json(&e.path()))
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["state"], "creating", "{records:?}");
    let out = p.run(&[
        "pipeline",
        "run",
        "--resume",
        killed.to_str().unwrap(),
        "--no-progress",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("found by its input file"), "{t}");
    assert_eq!(s.batches().lists.load(Ordering::SeqCst), 1);
    assert!(no_duplicates(&custom_ids(&s)), "{t}");
    assert_eq!(custom_ids(&s).len(), 24);
}
