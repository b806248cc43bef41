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
    // the journal: a line as each problem opens, as each node ends, as each problem closes,
    // each on disk at once
    let journal = |p: &Project| {
        p.runs("j")
            .last()
            .and_then(|r| std::fs::read_to_string(r.join("results.jsonl")).ok())
            .unwrap_or_default()
    };
    let closed = |t: &str| t.matches("\"record\":\"close\"").count();
    let t0 = Instant::now();
    while closed(&journal(&p)) < 2 {
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
    let text_of_journal = journal(&p);
    let finished = closed(&text_of_journal);
    let graded_nodes = text_of_journal
        .lines()
        .filter(|l| l.contains("\"record\":\"node\"") && l.contains("\"correct\":"))
        .count();
    let out = p.run(&["report", run.to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("interrupted"),
        "the report says the run was killed: {t}"
    );
    assert!(finished >= 2, "{finished}");
    // the report counts exactly the graded nodes that finished before the kill
    let rep = json(&run.join("report.json"));
    let r = &rep["runs"][0];
    assert_eq!(r["status"], "interrupted", "{r}");
    let graded: usize = r["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["graded"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(graded, graded_nodes, "{r}");
    // what did not finish was interrupted, whether or not its node has a record yet
    let reasons = r["not_run_reasons"].as_object().unwrap();
    assert!(
        reasons.keys().all(|k| k == "interrupted"),
        "every not-run attempt of a killed run is interrupted: {reasons:?}"
    );

    // `distill grade` regrades what finished, from the run directory
    let out = p.run(&["grade", run.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let regraded = json(&run.join("results.regraded.json"));
    assert_eq!(regraded["status"], "interrupted");
    let done_nodes = regraded["problems"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["samples"][0].as_object().unwrap().values())
        .filter(|n| n["status"] == "done" && n["output"]["correct"].is_boolean())
        .count();
    assert_eq!(done_nodes, graded_nodes);

    // `distill view` shows it (the page's snapshot: interrupted, every finished node)
    let rt = tokio::runtime::Runtime::new().unwrap();
    let snap = rt.block_on(async {
        let (url, _task) = distill::dashboard::view_start(&run, "127.0.0.1", 0)
            .await
            .unwrap();
        let body = distill::tls::get(format!("{url}api/snapshot"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    });
    let cells: Vec<String> = snap["grid"]["cells"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter())
        .map(|c| c[0].as_str().unwrap().to_string())
        .collect();
    let verdicts = cells.iter().filter(|c| *c == "y" || *c == "n").count();
    assert_eq!(verdicts, graded_nodes, "{snap}");
    assert!(snap.to_string().contains("interrupted"), "{snap}");

    // `--load_initial_reasoning` imports its round-0 outputs into a new cache
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/j.yaml",
        "--no-progress",
        "--cache",
        "fresh",
        "--load_initial_reasoning",
        run.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("imported"), "{}", text(&out));

    // `distill runs` lists both: the killed one as interrupted
    let out = p.run(&["runs"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let id = run.file_name().unwrap().to_str().unwrap();
    let line = t
        .lines()
        .find(|l| l.contains(id))
        .expect("the killed run is listed");
    assert!(line.contains("interrupted") && line.contains("/8"), "{t}");
    assert!(
        t.lines()
            .any(|l| l.contains("complete") && l.contains("8/8")),
        "{t}"
    );
}

/// A run stopped by `signal` after `events` events, then finished in place with `--resume`:
/// the stopped directory reads at once as interrupted, the resume sends exactly the calls
/// the first part did not make, and the final results equal an uninterrupted run's.
fn stop_then_resume(signal: &str, events: usize) {
    let p = Project::new();
    p.write("pipelines/r.yaml", &iterated("r", 3, &sim_model(20), ""));
    let run = |cache: &str| {
        p.run(&[
            "pipeline",
            "run",
            "pipelines/r.yaml",
            "--no-progress",
            "--cache",
            cache,
        ])
    };
    assert_eq!(run("ref").status.code(), Some(0));
    let reference = p.last_run("r");
    let total = metrics(&reference)["calls"].as_u64().unwrap();
    let mut child = p
        .cmd()
        .args([
            "pipeline",
            "run",
            "pipelines/r.yaml",
            "--no-progress",
            "--cache",
            "c",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_events(&p, "r", 1, events, &mut child);
    let st = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    child.wait().unwrap();
    let stopped = p.last_run("r");
    let first_part = call_entries(&p, "c");
    assert!(
        first_part > 0 && first_part < total,
        "{signal}: {first_part}"
    );
    // the directory reads at once: every graded node that finished is counted
    let out = p.run(&["report", stopped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{signal}: {}", text(&out));
    let rep = json(&stopped.join("report.json"));
    assert_eq!(rep["runs"][0]["status"], "interrupted", "{signal}");
    let journal = std::fs::read_to_string(stopped.join("results.jsonl")).unwrap();
    let graded_done = journal
        .lines()
        .filter(|l| l.contains("\"record\":\"node\"") && l.contains("\"correct\":"))
        .count() as u64;
    let graded: u64 = rep["runs"][0]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["graded"].as_u64().unwrap())
        .sum();
    assert_eq!(
        graded, graded_done,
        "{signal}: the report counts what finished"
    );
    // finish it in place: same directory, only the missing calls are sent
    let out = p.run(&[
        "pipeline",
        "run",
        "--resume",
        stopped.to_str().unwrap(),
        "--no-progress",
        "--cache",
        "c",
    ]);
    assert_eq!(out.status.code(), Some(0), "{signal}: {}", text(&out));
    assert_eq!(p.last_run("r"), stopped, "{signal}: no new run directory");
    let sent = metrics(&stopped)["calls"].as_u64().unwrap();
    assert_eq!(
        sent + first_part,
        total,
        "{signal}: the resume sends only unfinished calls"
    );
    assert_eq!(json(&stopped.join("results.json"))["status"], "complete");
    assert_eq!(comparable(&reference), comparable(&stopped), "{signal}");
    // resuming a complete run does nothing
    let out = p.run(&["pipeline", "run", "--resume", stopped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).contains("nothing to resume"));
}

#[test]
fn sigkill_early_then_resume_completes_in_place() {
    stop_then_resume("KILL", 20);
}

#[test]
fn sigkill_late_then_resume_completes_in_place() {
    stop_then_resume("KILL", 80);
}

#[test]
fn sigterm_then_resume_completes_in_place() {
    stop_then_resume("TERM", 50);
}

#[test]
fn sighup_then_resume_completes_in_place() {
    stop_then_resume("HUP", 50);
}

#[test]
fn resume_refuses_a_changed_config_and_extra_arguments() {
    let p = Project::new();
    p.write("pipelines/c.yaml", &iterated("c", 1, &sim_model(20), ""));
    let mut child = p
        .cmd()
        .args(["pipeline", "run", "pipelines/c.yaml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_events(&p, "c", 0, 6, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = p.last_run("c");
    let d = dir.to_str().unwrap();
    // a live run is refused (its process holds run.lock)
    let mut live = p
        .cmd()
        .args(["pipeline", "run", "pipelines/c.yaml", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_events(&p, "c", 1, 4, &mut live);
    let live_dir = p.last_run("c");
    let out = p.run(&["pipeline", "run", "--resume", live_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("still running"), "{}", text(&out));
    live.kill().unwrap();
    live.wait().unwrap();
    let out = p.run(&["pipeline", "run", "pipelines/c.yaml", "--resume", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("takes no pipeline file"),
        "{}",
        text(&out)
    );
    // a prompt edited since: refused, naming what changed
    let prompt = p.path().join("prompts/reason/default.hbs");
    let t = std::fs::read_to_string(&prompt).unwrap();
    std::fs::write(&prompt, format!("{t}\nBe brief.")).unwrap();
    let out = p.run(&["pipeline", "run", "--resume", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("prompts"), "{}", text(&out));
}
