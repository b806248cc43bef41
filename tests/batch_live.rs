//! Provider batch APIs while a batch is pending, through the real binary against the tests'
//! loopback batch server: two live processes on one cache directory share one batch (each
//! line submitted once); the progress line and the dashboard's API show a pending batch
//! with its status and request counts; a continued (multi-step) batch answer read back from
//! its node entry costs what it cost the run that made it; `pipeline plan` counts the
//! judge of a `grade:` block per model, batched or direct; `--cancel-batches` on Ctrl-C
//! leaves another live run's batch running.

mod common;
mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::fake_openai::batch::BatchScript;
use support::fake_openai::{FakeConfig, FakeServer};

fn model(server: &FakeServer, extra: &str) -> String {
    format!(
        "{{provider: openai-compatible, base_url: \"{}\", model: fake-m, stream: false, params: {{max_tokens: 64, temperature: 0.6}}, price: {{input_per_m: 1.0, output_per_m: 2.0}}, batch_wait_s: 0.3, batch_poll_s: 0.05{extra}}}",
        server.base_url()
    )
}

async fn server(step_ms: u64) -> FakeServer {
    FakeServer::start(FakeConfig {
        batch: BatchScript {
            step: Duration::from_millis(step_ms),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

fn created(s: &FakeServer) -> u64 {
    s.batches().created.load(Ordering::SeqCst)
}

fn custom_ids(s: &FakeServer) -> Vec<String> {
    s.batches().custom_ids.lock().unwrap().clone()
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

fn wait_created(s: &FakeServer, n: u64, child: &mut Child) {
    let t0 = Instant::now();
    while created(s) < n {
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(t0.elapsed() < Duration::from_secs(60), "no batch submitted");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(p: &Project, args: &[&str]) -> Child {
    p.cmd()
        .args(["pipeline", "run"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_live_runs_on_one_cache_share_one_pending_batch() {
    let s = server(1000).await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let mut a = spawn(&p, &["pipelines/k.yaml", "--no-progress"]);
    // A's first wave is a batch in flight; B starts on the same cache with the same pipeline
    wait_created(&s, 1, &mut a);
    std::thread::sleep(Duration::from_millis(200));
    let b = spawn(&p, &["pipelines/k.yaml", "--no-progress"]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ta, tb) = (text(&a), text(&b));
    assert_eq!(a.status.code(), Some(0), "A: {ta}");
    assert_eq!(b.status.code(), Some(0), "B: {tb}");
    assert!(
        tb.contains("waiting for it instead of submitting again"),
        "B: {tb}"
    );
    // three waves, three batches between both runs, each line submitted once, no direct call
    let ids = custom_ids(&s);
    assert_eq!(ids.len(), 24, "A: {ta}\nB: {tb}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 24);
    assert_eq!(created(&s), 3, "A: {ta}\nB: {tb}");
    assert_eq!(s.request_count(), 0);
    let runs = p.runs("k");
    assert_eq!(runs.len(), 2);
    assert_eq!(equal_part(&runs[0]), equal_part(&runs[1]));
    // each answer is paid by the run that submitted its line: 24 calls between both runs,
    // their spends add up to one run's cost
    let (ma, mb) = (metrics(&runs[0]), metrics(&runs[1]));
    let n = |m: &Value, k: &str| m[k].as_f64().unwrap();
    assert_eq!(n(&ma, "calls") + n(&mb, "calls"), 24.0, "{ma}\n{mb}");
    assert!(n(&mb, "calls") < 24.0, "{mb}");
    let spent = n(&ma, "spend_usd") + n(&mb, "spend_usd");
    assert!(
        (spent - n(&ma, "total_cost_usd")).abs() < 2e-5,
        "{ma}\n{mb}"
    );
    assert_eq!(ma["total_cost_usd"], mb["total_cost_usd"], "{ma}\n{mb}");
    eprintln!(
        "two live runs: server saw {} uploads, {} batches, {} lines, {} polls",
        s.batches().uploads.load(Ordering::SeqCst),
        created(&s),
        ids.len(),
        s.batches().polls.load(Ordering::SeqCst)
    );
}

/// Reads a child's stderr lines on a thread.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    f: impl Fn(&str) -> bool,
) -> String {
    let t = Instant::now();
    loop {
        let left = Duration::from_secs(60).saturating_sub(t.elapsed());
        let l = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no such line in: {}", seen.join("\n")));
        seen.push(l.clone());
        if f(&l) {
            return l;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_and_the_progress_line_show_a_pending_batch_with_its_status() {
    let s = server(1500).await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    // progress on (stderr is no terminal: the plain line), dashboard on a free port
    let mut child = spawn(
        &p,
        &["pipelines/k.yaml", "--dashboard", "--dashboard_port", "0"],
    );
    let rx = lines_of(&mut child);
    let mut seen = Vec::new();
    let l = wait_line(&rx, &mut seen, |l| l.contains("dashboard: http"));
    let url = l[l.find("http").unwrap()..].trim().to_string();
    // the dashboard's API, during the first wave's batch
    let t0 = Instant::now();
    let flight = loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no batch in flight");
        let r = distill::tls::get(format!("{url}api/snapshot"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        let f = &v["metrics"]["batches"]["in_flight"];
        if f.as_array().is_some_and(|a| !a.is_empty()) && f[0]["status"] == "in_progress" {
            break f[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(flight["model"], "reasoner", "{flight}");
    assert_eq!(flight["requests"], 8, "{flight}");
    assert_eq!(flight["counts"]["total"], 8, "{flight}");
    assert!(
        flight["id"].as_str().unwrap().starts_with("batch-"),
        "{flight}"
    );
    // the progress line follows each poll, not only finished nodes (none finished yet)
    let line = wait_line(&rx, &mut seen, |l| {
        l.contains("batches in flight:") && l.contains("in_progress")
    });
    assert!(line.contains("[0/24 model nodes]"), "{line}");
    assert!(line.contains(" in_progress 0/8"), "{line}");
    wait_line(&rx, &mut seen, |l| {
        l.contains("batches in flight:") && l.contains("finalizing")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("batches in flight:") && l.contains("validating")),
        "{}",
        seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_batch_answer_costs_the_same_on_a_rerun() {
    let s = FakeServer::start(FakeConfig {
        split_parts: Some(2),
        ..Default::default()
    })
    .await;
    let p = Project::new();
    let m = model(&s, ", batch: true, continuation: {max_continuations: 1}");
    p.write("pipelines/c.yaml", &iterated("c", 1, &m, ""));
    let out = p.run(&["pipeline", "run", "pipelines/c.yaml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let first = metrics(&p.last_run("c"));
    let batches = created(&s);
    assert!(batches >= 6, "two steps per node, a batch each: {batches}");
    // every step was answered by a batch: half the list price of the tokens
    let tokens = |m: &Value| {
        (
            m["tokens"]["prompt"].as_f64().unwrap(),
            m["tokens"]["completion"].as_f64().unwrap(),
        )
    };
    let (pt, ct) = tokens(&first);
    let half = (pt * 1.0 + ct * 2.0) / 1e6 / 2.0;
    let total = first["total_cost_usd"].as_f64().unwrap();
    assert!((total - half).abs() < 2e-5, "{total} vs {half}: {first}");

    // the rerun reads the chains' node entries: same cost, nothing sent or spent
    let out = p.run(&["pipeline", "run", "pipelines/c.yaml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = metrics(&p.last_run("c"));
    assert_eq!(created(&s), batches);
    assert_eq!(second["calls"], 0, "{second}");
    assert_eq!(second["node_cache_hits"], 24, "{second}");
    assert_eq!(second["spend_usd"].as_f64(), Some(0.0));
    assert_eq!(tokens(&second), (pt, ct));
    assert_eq!(
        second["total_cost_usd"], first["total_cost_usd"],
        "{first}\n{second}"
    );
    let cost = |run: &std::path::Path| {
        let r = json(&run.join("results.json"));
        let o = &r["problems"][0]["samples"][0]["attempt_1"]["output"];
        assert_eq!(o["finish_reasons"].as_array().unwrap().len(), 2, "{o}");
        o["cost_usd"].clone()
    };
    let runs = p.runs("c");
    assert_eq!(cost(&runs[0]), cost(&runs[1]));
    // and the report's per-round table (its cost column) agrees
    let table = |run: &std::path::Path| {
        let r = std::fs::read_to_string(run.join("report.md")).unwrap();
        let rows: Vec<String> = r
            .lines()
            .skip_while(|l| !l.contains("| cost |"))
            .take_while(|l| l.starts_with('|'))
            .map(str::to_string)
            .collect();
        assert!(rows.len() > 2, "{r}");
        rows
    };
    assert_eq!(table(&runs[0]), table(&runs[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_counts_the_judge_per_model_batched_or_direct() {
    let s = server(150).await;
    let p = Project::new();
    let yaml = |judge_batch: bool| {
        iterated("j", 1, &model(&s, ", batch: true"), "")
            .replace(
                "models:\n",
                &format!(
                    "models:\n  judge: {}\n",
                    model(&s, if judge_batch { ", batch: true" } else { "" })
                ),
            )
            .replace(
                "grade: {extract: boxed, compare: exact}",
                "grade: {extract: boxed, compare: llm_judge, judge_model: judge}",
            )
    };
    p.write("pipelines/direct.yaml", &yaml(false));
    p.write("pipelines/batched.yaml", &yaml(true));
    let out = p.run(&["pipeline", "plan", "pipelines/direct.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    // attempt_0, judge, summary_1, attempt_1, judge: 5 waves; the reasoner's 3 are batches
    assert!(
        t.contains("at most 5 wave(s) of model calls and 3 batch(es) (upper bounds: the judge is asked only about an extracted answer)"),
        "{t}"
    );
    assert!(
        t.contains("reasoner       batched: at most 24 call(s) in 3 batch(es)"),
        "{t}"
    );
    assert!(
        t.contains("judge          direct (not batched): at most 16 call(s), 16 of them judging"),
        "{t}"
    );
    assert!(
        t.contains("wave 2   judge               8 call(s) direct"),
        "{t}"
    );
    // and in the per-model table of calls to make
    assert!(
        t.contains("to make: 24 (continuations and conditional skips may change this), and at most 16 call(s) of the judge `judge`"),
        "{t}"
    );
    assert!(t.contains("    judge          to make     16"), "{t}");
    assert!(t.contains("    reasoner       to make     24"), "{t}");
    assert!(
        t.contains("(judge: 16 of these judge the grade: block's answers"),
        "{t}"
    );
    assert!(
        t.contains("wave 5   judge               8 call(s) direct"),
        "{t}"
    );
    let out = p.run(&["pipeline", "plan", "pipelines/batched.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("batch models: judge, reasoner"), "{t}");
    assert!(
        t.contains("at most 5 wave(s) of model calls and 5 batch(es)"),
        "{t}"
    );
    assert!(
        t.contains("judge          batched: at most 16 call(s) in 2 batch(es)"),
        "{t}"
    );
    assert!(
        t.contains("wave 4   reasoner            8 call(s) batched"),
        "{t}"
    );
    // continuations lengthen the chains: counted apart
    p.write(
        "pipelines/cont.yaml",
        &iterated(
            "c",
            1,
            &model(&s, ", batch: true, continuation: {max_continuations: 2}"),
            "",
        ),
    );
    let out = p.run(&["pipeline", "plan", "pipelines/cont.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("at most 3 wave(s) of model calls and 3 batch(es)"),
        "{t}"
    );
    assert!(
        t.contains("continued max_continuations times: at most 9 wave(s), 9 batch(es)"),
        "{t}"
    );
    // a `when:` can skip rounds: the counts are upper bounds, and say so
    p.write(
        "pipelines/when.yaml",
        &iterated("w", 1, &model(&s, ", batch: true"), "").replace(
            "    repeat: 1\n",
            "    repeat: 1\n    when: \"not previous.attempt.correct\"\n",
        ),
    );
    let out = p.run(&["pipeline", "plan", "pipelines/when.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("at most 3 wave(s) of model calls and 3 batch(es) (upper bounds: a `when:` can skip calls)"),
        "{t}"
    );
    assert_eq!(created(&s), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_batches_leaves_another_live_runs_batch_alone() {
    let s = server(1500).await;
    let p = Project::new();
    p.write(
        "pipelines/k.yaml",
        &iterated("k", 1, &model(&s, ", batch: true"), ""),
    );
    let mut a = spawn(&p, &["pipelines/k.yaml", "--no-progress"]);
    wait_created(&s, 1, &mut a);
    std::thread::sleep(Duration::from_millis(200));
    let mut b = spawn(
        &p,
        &["pipelines/k.yaml", "--no-progress", "--cancel-batches"],
    );
    let rx = lines_of(&mut b);
    let mut seen = Vec::new();
    wait_line(&rx, &mut seen, |l| {
        l.contains("waiting for it instead of submitting again")
    });
    let st = std::process::Command::new("kill")
        .args(["-INT", &b.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let b = b.wait_with_output().unwrap();
    assert_eq!(b.status.code(), Some(130), "{}", seen.join("\n"));
    // A's batch runs on: A finishes, each line submitted once
    let a = a.wait_with_output().unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(s.batches().cancels.load(Ordering::SeqCst), 0);
    let ids = custom_ids(&s);
    assert_eq!(ids.len(), 24);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 24);
}
