//! Crash safety through the real binary: a run killed with SIGKILL resumes from the cache
//! without re-sending finished calls and ends equal to an uninterrupted run; two processes
//! share one cache directory; Ctrl-C (SIGINT), SIGTERM and SIGHUP stop cleanly (calls in
//! flight finish) with exit code 128 + the signal.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// Event lines of the newest run, once there are more than `existing` runs.
fn event_lines(p: &Project, name: &str, existing: usize) -> usize {
    let runs = p.runs(name);
    if runs.len() <= existing {
        return 0;
    }
    runs.last()
        .and_then(|r| std::fs::read_to_string(r.join("events.jsonl")).ok())
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

fn call_entries(p: &Project, cache: &str) -> u64 {
    let out = p.run(&["cache", "stats", "--cache", cache]);
    let t = text(&out);
    t.lines()
        .find(|l| l.trim_start().starts_with("call "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn wait_for_events(
    p: &Project,
    name: &str,
    existing: usize,
    n: usize,
    child: &mut std::process::Child,
) {
    let t0 = Instant::now();
    while event_lines(p, name, existing) < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(t0.elapsed() < Duration::from_secs(30), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sigkill_then_rerun_resends_only_unfinished_calls_and_matches() {
    let p = Project::new();
    p.write("pipelines/k.yaml", &iterated("k", 4, &sim_model(25), ""));
    // reference: an uninterrupted run on its own cache
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/k.yaml",
        "--no-progress",
        "--cache",
        "ref",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let reference = p.last_run("k");
    let total = metrics(&reference)["calls"].as_u64().unwrap();
    assert_eq!(total, 72);

    let mut child = p
        .cmd()
        .args([
            "pipeline",
            "run",
            "pipelines/k.yaml",
            "--no-progress",
            "--cache",
            "c",
        ])
        .spawn()
        .unwrap();
    wait_for_events(&p, "k", 1, 40, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let killed = p.last_run("k");
    assert!(
        !killed.join("metrics.json").exists(),
        "the process really died mid-run"
    );
    let before = call_entries(&p, "c");
    assert!(before > 0 && before < total, "{before}");

    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/k.yaml",
        "--no-progress",
        "--cache",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let resumed = p.last_run("k");
    let sent = metrics(&resumed)["calls"].as_u64().unwrap();
    assert_eq!(
        sent + before,
        total,
        "every finished call is reused, no other"
    );
    assert_eq!(comparable(&reference), comparable(&resumed));
}

#[test]
fn two_processes_share_one_cache() {
    let p = Project::new();
    p.write(
        "pipelines/two.yaml",
        &iterated(
            "two",
            2,
            "{provider: sim, sim: {latency_ms: 5, jitter_ms: 5}}",
            "",
        ),
    );
    let spawn = |res: &str| {
        p.cmd()
            .args([
                "pipeline",
                "run",
                "pipelines/two.yaml",
                "--no-progress",
                "--results",
                res,
                "--concurrency",
                "8",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = spawn("ra");
    let mut b = spawn("rb");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let run = |root: &str| {
        let d = p.path().join(root).join("two");
        std::fs::read_dir(d)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    assert_eq!(comparable(&run("ra")), comparable(&run("rb")));
    let out = p.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = p.run(&["pipeline", "run", "pipelines/two.yaml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(metrics(&p.last_run("two"))["calls"], 0);
}

/// A stop signal mid-run: no new call is sent, the calls in flight finish (every `started`
/// call has its `finished`), everything is written, the exit code is 128 + the signal, and
/// a rerun completes from the cache.
fn stops_cleanly_on(signal: &str, code: i32) {
    let p = Project::new();
    p.write("pipelines/i.yaml", &iterated("i", 4, &sim_model(30), ""));
    let mut child = p
        .cmd()
        .args(["pipeline", "run", "pipelines/i.yaml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&p, "i", 0, 20, &mut child);
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
    let run = p.last_run("i");
    let r = json(&run.join("results.json"));
    assert_eq!(r["status"], "interrupted", "{signal}");
    let m = metrics(&run);
    assert_eq!(m["interrupted"], true, "{signal}");
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let count = |what: &str| events.lines().filter(|l| l.contains(what)).count();
    // what finished is kept: every finished event's node is done in results.json
    let finished = count("\"finished\"");
    let done: usize = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            q["samples"][0]
                .as_object()
                .unwrap()
                .values()
                .filter(|n| n["status"] == "done")
                .count()
        })
        .sum();
    assert_eq!(finished, done, "{signal}");
    // the calls in flight at the signal were let finish: none was abandoned
    let started = count("\"started\"");
    let calls = m["calls"].as_u64().unwrap() as usize;
    assert_eq!(started, calls, "{signal}: every sent call finished: {err}");
    assert!(err.contains("calls in flight get"), "{signal}: {err}");
    // and a rerun completes from the cache
    let out = p.run(&["pipeline", "run", "pipelines/i.yaml", "--no-progress"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        metrics(&p.last_run("i"))["node_cache_hits"]
            .as_u64()
            .unwrap()
            >= done as u64
    );
}

#[test]
fn ctrl_c_stops_cleanly_with_exit_130() {
    stops_cleanly_on("INT", 130);
}

#[test]
fn sigterm_stops_cleanly_with_exit_143() {
    stops_cleanly_on("TERM", 143);
}

#[test]
fn sighup_stops_cleanly_with_exit_129() {
    stops_cleanly_on("HUP", 129);
}

#[test]
fn a_killed_run_reads_at_once_as_interrupted_with_its_finished_problems() {
    let p = Project::new();
    p.write("pipelines/j.yaml", &iterated("j", 1, &sim_model(40), ""));
    let mut child = p
        .cmd()
        .args([
            "pipeline",
            "run",
            "pipelines/j.yaml",
            "--no-progress",
            "--concurrency",
            "1",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the journal: a header line, then a line per finished problem, each on disk at once
    let journal_lines = |p: &Project| {
        p.runs("j")
            .last()
            .and_then(|r| std::fs::read_to_string(r.join("results.jsonl")).ok())
            .map_or(0, |t| t.lines().count())
    };
    let t0 = Instant::now();
    while journal_lines(&p) < 3 {
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no problem finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = p.last_run("j");
    assert!(!run.join("results.json").exists(), "killed before the end");
    let finished = journal_lines(&p) - 1;
    let out = p.run(&["report", run.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("interrupted"),
        "the report says the run was killed: {t}"
    );
    assert!(finished >= 2, "{finished}");
    // the report counts exactly the problems that finished before the kill
    let rep = json(&run.join("report.json"));
    let r = &rep["runs"][0];
    assert_eq!(r["status"], "interrupted", "{r}");
    let rounds = r["rounds"].as_array().unwrap();
    let graded = rounds[0]["graded"].as_u64().unwrap() as usize;
    assert_eq!(graded, finished, "{}", rounds[0]);
}
