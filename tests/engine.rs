//! The engine through the real binary on the `sim` model: reruns are cache hits with equal
//! results, concurrency caps hold, a failing node fails only its problem, conditions skip,
//! samples, extends and --set, filters, offline, corrupt cache entries, plans and graphs.

mod common;
use common::*;
use serde_json::Value;

fn run_ok(p: &Project, args: &[&str]) -> String {
    let out = p.run(args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    t
}

#[test]
fn rerun_is_all_cache_hits_with_equal_results() {
    let p = Project::new();
    p.write("pipelines/it.yaml", &iterated("it", 4, &sim_model(0), ""));
    let first = run_ok(
        &p,
        &["pipeline", "run", "pipelines/it.yaml", "--no-progress"],
    );
    assert!(first.lines().any(|l| l.starts_with("| 4 | ")), "{first}");
    assert!(first.contains("SIMULATED"));
    let a = p.last_run("it");
    let m = metrics(&a);
    assert_eq!(m["calls"], 8 * 9);
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/it.yaml", "--no-progress"],
    );
    let b = p.last_run("it");
    assert_ne!(a, b);
    let m2 = metrics(&b);
    assert_eq!(m2["calls"], 0);
    assert_eq!(m2["node_cache_hits"], 8 * 9);
    assert_eq!(comparable(&a), comparable(&b));
    // the files a run writes
    for f in [
        "config.json",
        "results.json",
        "events.jsonl",
        "metrics.json",
        "report.md",
        "cache_keys.txt",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    let cfg = json(&a.join("config.json"));
    assert!(
        cfg["prompts"]["reason/with_summaries"]
            .as_str()
            .unwrap()
            .contains("{{#each summaries}}")
    );
    assert_eq!(cfg["problems"]["blake3"].as_str().unwrap().len(), 64);
    assert_eq!(cfg["provenance"]["cache_format_version"], 1);
    let events = std::fs::read_to_string(a.join("events.jsonl")).unwrap();
    let finished = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event"] == "finished")
        .count();
    assert_eq!(finished, 8 * 9);
    // round 3's prompt holds the summaries of attempts 0, 1, 2 in order
    let r = json(&a.join("results.json"));
    let s = &r["problems"][0]["samples"][0];
    assert_eq!(s["attempt_3"]["round"], 3);
    assert!(s["attempt_3"]["output"]["correct"].is_boolean());
}

#[test]
fn concurrency_caps_are_never_exceeded() {
    let p = Project::new();
    p.write("pipelines/c.yaml", &iterated("c", 1, &sim_model(15), ""));
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/c.yaml",
            "--concurrency",
            "3",
            "--no-progress",
            "--cache",
            "c1",
        ],
    );
    let m = metrics(&p.last_run("c"));
    assert_eq!(m["max_calls_in_flight"], 3, "{m}");
    let capped = iterated(
        "c",
        1,
        "{provider: sim, max_in_flight: 2, sim: {latency_ms: 15}}",
        "",
    );
    p.write("pipelines/c.yaml", &capped);
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/c.yaml",
            "--concurrency",
            "8",
            "--no-progress",
            "--cache",
            "c2",
        ],
    );
    let m = metrics(&p.last_run("c"));
    assert_eq!(m["max_calls_in_flight"], 2, "{m}");
}

#[test]
fn a_failing_node_fails_only_its_problem() {
    let p = Project::new();
    p.write(
        "pipelines/f.yaml",
        &iterated("f", 2, "{provider: sim, sim: {fail_rate: 0.15}}", ""),
    );
    let out = p.run(&["pipeline", "run", "pipelines/f.yaml", "--no-progress"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("FAILED"), "{t}");
    let r = json(&p.last_run("f").join("results.json"));
    let problems = r["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 8);
    let failed: Vec<&Value> = problems
        .iter()
        .filter(|q| q["status"] == "failed")
        .collect();
    assert!(
        !failed.is_empty() && failed.len() < 8,
        "{} failed",
        failed.len()
    );
    for q in failed {
        let nodes = q["samples"][0].as_object().unwrap();
        let f = nodes
            .values()
            .find(|n| {
                n["status"] == "failed"
                    && n["error"].as_str().unwrap().contains("simulated failure")
            })
            .expect("a node failed itself");
        // its dependents are failed as "not run", never run
        let id = f["node"].as_str().unwrap();
        assert!(
            nodes.values().any(|n| n["error"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("upstream `{id}` failed"))))
                || id == "attempt_2"
        );
    }
    assert!(problems.iter().any(|q| q["status"] == "ok"));
    // a rerun re-sends only what failed (the failures are deterministic, so they fail again)
    let out = p.run(&["pipeline", "run", "pipelines/f.yaml", "--no-progress"]);
    let m = metrics(&p.last_run("f"));
    assert_eq!(out.status.code(), Some(1));
    assert!(m["calls"].as_u64().unwrap() < 8, "{m}");
}

#[test]
fn when_skips_later_rounds_and_their_dependents() {
    let p = Project::new();
    let yaml = iterated("w", 3, "{provider: sim, sim: {base_accuracy: 1.0}}", "").replace(
        "    repeat: 3\n",
        "    repeat: 3\n    when: \"not previous.attempt.correct\"\n",
    );
    p.write("pipelines/w.yaml", &yaml);
    let t = run_ok(
        &p,
        &["pipeline", "run", "pipelines/w.yaml", "--no-progress"],
    );
    let r = json(&p.last_run("w").join("results.json"));
    for q in r["problems"].as_array().unwrap() {
        let s = &q["samples"][0];
        assert_eq!(s["attempt_0"]["output"]["correct"], true);
        assert_eq!(s["summary_1"]["status"], "skipped");
        assert!(
            s["summary_1"]["error"]
                .as_str()
                .unwrap()
                .contains("condition")
        );
        assert_eq!(s["attempt_1"]["status"], "skipped");
        assert_eq!(s["attempt_3"]["status"], "skipped");
        assert_eq!(q["status"], "ok");
    }
    // the skipped round carries round 0's verdicts: 8 carried, nothing failed or not run
    let row = t
        .lines()
        .find(|l| l.starts_with("| 1 | "))
        .expect("round 1 row");
    assert!(row.starts_with("| 1 | 100.0% (8/8)"), "{t}");
    assert!(row.ends_with("| 8 | 0 | 0 |"), "{t}");
    assert_eq!(metrics(&p.last_run("w"))["calls"], 8);
}

#[test]
fn samples_are_independent_draws_with_their_own_keys() {
    let p = Project::new();
    p.write(
        "pipelines/s.yaml",
        &iterated("s", 1, &sim_model(0), "samples: 3"),
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/s.yaml", "--no-progress"],
    );
    let run = p.last_run("s");
    assert_eq!(metrics(&run)["calls"], 8 * 3 * 3);
    let r = json(&run.join("results.json"));
    let q = &r["problems"][0];
    assert_eq!(q["samples"].as_array().unwrap().len(), 3);
    let texts: Vec<&str> = (0..3)
        .map(|s| {
            q["samples"][s]["attempt_0"]["output"]["text"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(texts[0] != texts[1] || texts[1] != texts[2]);
}

#[test]
fn extends_and_set_override_fields_and_are_recorded() {
    let p = Project::new();
    p.write(
        "pipelines/base.yaml",
        &iterated("base", 1, &sim_model(0), ""),
    );
    p.write(
        "pipelines/child.yaml",
        "extends: base.yaml\nname: child\nsamples: 2\nproblems: {index_range: 0-1}\n",
    );
    let t = run_ok(&p, &["pipeline", "validate", "pipelines/child.yaml"]);
    assert!(t.contains("2 problem(s) × 2 sample(s)"), "{t}");
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/child.yaml",
            "--no-progress",
            "--set",
            "models.reasoner.params.temperature=0.9",
            "--set",
            "problems.index_range=0-0",
        ],
    );
    let run = p.last_run("child");
    let cfg = json(&run.join("config.json"));
    assert_eq!(
        cfg["pipeline"]["models"]["reasoner"]["params"]["temperature"],
        0.9
    );
    assert_eq!(cfg["pipeline"]["samples"], 2);
    assert_eq!(cfg["problems"]["selected"], serde_json::json!(["add-1"]));
    assert!(
        cfg["provenance"]["command_line"]
            .to_string()
            .contains("temperature=0.9")
    );
    // a different temperature is a different cache entry
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/child.yaml",
            "--no-progress",
            "--set",
            "problems.index_range=0-0",
        ],
    );
    assert_eq!(metrics(&p.last_run("child"))["calls"], 6);
}

#[test]
fn cli_filters_select_problems() {
    let p = Project::new();
    p.write("pipelines/q.yaml", &iterated("q", 1, &sim_model(0), ""));
    let t = run_ok(
        &p,
        &[
            "pipeline",
            "validate",
            "pipelines/q.yaml",
            "--index_range",
            "2-4",
            "--exclude_question_ids",
            "div-1",
        ],
    );
    assert!(t.contains("2 problem(s)"), "{t}");
    let t = run_ok(
        &p,
        &[
            "pipeline",
            "validate",
            "pipelines/q.yaml",
            "--question_ids",
            "word-1,add-1",
        ],
    );
    assert!(t.contains("2 problem(s)"), "{t}");
}

#[test]
fn offline_misses_are_not_run_and_a_warm_cache_reproduces() {
    let p = Project::new();
    p.write("pipelines/o.yaml", &iterated("o", 2, &sim_model(0), ""));
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/o.yaml",
        "--offline",
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("offline_miss"), "{}", text(&out));
    // a miss is not a failure: the node is `not_run` with its reason, its problem incomplete
    let r = json(&p.last_run("o").join("results.json"));
    let q = &r["problems"][0];
    assert_eq!(q["status"], "incomplete", "{q}");
    let a0 = &q["samples"][0]["attempt_0"];
    assert_eq!(a0["status"], "not_run", "{a0}");
    assert_eq!(a0["reason"], "offline_miss", "{a0}");
    assert!(
        a0["error"]
            .as_str()
            .unwrap()
            .contains("offline: no cache entry"),
        "{a0}"
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/o.yaml", "--no-progress"],
    );
    let online = p.last_run("o");
    let out = p
        .cmd()
        .args(["pipeline", "run", "pipelines/o.yaml", "--no-progress"])
        .env("ENABLE_API_CALLS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(comparable(&online), comparable(&p.last_run("o")));
}

#[test]
fn corrupt_cache_entries_are_detected_and_fetched_again() {
    let p = Project::new();
    p.write("pipelines/k.yaml", &iterated("k", 1, &sim_model(0), ""));
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/k.yaml", "--no-progress"],
    );
    let good = p.last_run("k");
    let n = corrupt_every_entry(&p.path().join("cache"));
    assert!(n > 0);
    let out = p.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!("{n} corrupt")),
        "{}",
        text(&out)
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/k.yaml", "--no-progress"],
    );
    let again = p.last_run("k");
    let m = metrics(&again);
    assert!(m["cache"]["corrupt"].as_u64().unwrap() > 0);
    assert_eq!(m["calls"], 8 * 3);
    assert_eq!(comparable(&good), comparable(&again));
    let out = p.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn plan_counts_cached_and_missing_calls() {
    let p = Project::new();
    p.write("pipelines/pl.yaml", &iterated("pl", 1, &sim_model(0), ""));
    let t = run_ok(&p, &["pipeline", "plan", "pipelines/pl.yaml"]);
    assert!(t.contains("in the cache: 0"), "{t}");
    assert!(t.contains("to make: 24"), "{t}");
    assert!(p.runs("pl").is_empty(), "a plan writes no run");
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/pl.yaml",
            "--no-progress",
            "--index_range",
            "0-3",
        ],
    );
    let t = run_ok(&p, &["pipeline", "plan", "pipelines/pl.yaml"]);
    assert!(
        t.contains("in the cache: 12") && t.contains("to make: 12"),
        "{t}"
    );
}

#[test]
fn graph_prints_text_and_dot() {
    let p = Project::new();
    p.write("pipelines/g.yaml", &iterated("g", 4, &sim_model(0), ""));
    let t = run_ok(&p, &["pipeline", "graph", "pipelines/g.yaml"]);
    assert!(t.contains("9 nodes per problem"), "{t}");
    assert!(
        t.contains("attempt_4") && t.contains("<- summary_1, summary_2, summary_3, summary_4"),
        "{t}"
    );
    let d = run_ok(
        &p,
        &["pipeline", "graph", "pipelines/g.yaml", "--format", "dot"],
    );
    assert!(
        d.starts_with("digraph") && d.contains("\"summary_4\" -> \"attempt_4\""),
        "{d}"
    );
}

#[test]
fn gc_keeps_what_runs_use() {
    let p = Project::new();
    p.write("pipelines/gc.yaml", &iterated("gc", 1, &sim_model(0), ""));
    let run = |range: &str, results: &str| {
        run_ok(
            &p,
            &[
                "pipeline",
                "run",
                "pipelines/gc.yaml",
                "--no-progress",
                "--index_range",
                range,
                "--results",
                results,
            ],
        )
    };
    run("0-1", "results");
    let t = run_ok(&p, &["cache", "gc"]);
    assert!(t.contains(" 0 entries ("), "{t}");
    // a run kept elsewhere: its entries are unused as far as results/ knows
    run("2-3", "elsewhere");
    let t = run_ok(&p, &["cache", "gc"]);
    assert!(t.contains("would delete"), "{t}");
    let t = run_ok(&p, &["cache", "gc", "--yes"]);
    assert!(t.contains("deleted"), "{t}");
    // the two runs' segments were rewritten into one, without the dropped entries
    let segments = pack_files(&p.path().join("cache"), "pack");
    assert_eq!(segments, 1);
    let t = run_ok(&p, &["cache", "gc", "--results", "elsewhere"]);
    assert!(
        t.contains("would delete"),
        "the 0-1 run's entries are gone, the 2-3 ones too: {t}"
    );
    // what results/ uses is still cached
    run("0-1", "results");
    assert_eq!(metrics(&p.last_run("gc"))["calls"], 0);
    // with no run at all under --results, gc refuses rather than deleting everything
    let out = p.run(&["cache", "gc", "--results", "nowhere", "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("refusing"), "{}", text(&out));
    let t = run_ok(&p, &["cache", "stats"]);
    assert!(!t.contains("(empty)"), "{t}");
}

/// The end of a run reports from the tally it folded as problems finished, not by reading
/// its results.json back (debug builds, as here, also read it back and check the two agree).
#[test]
fn the_end_of_run_report_is_folded_as_problems_finish() {
    let p = Project::new();
    p.write(
        "pipelines/fold.yaml",
        &iterated("fold", 2, &sim_model(0), "samples: 3"),
    );
    let out = p
        .cmd()
        .args(["pipeline", "run", "pipelines/fold.yaml", "--no-progress"])
        .env("DISTILL_LOG", "distill=debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("report: folded during the run"),
        "{}",
        text(&out)
    );
}

#[test]
fn every_run_writes_a_report_that_agrees_with_its_results() {
    let p = Project::new();
    p.write(
        "pipelines/rep.yaml",
        &iterated("rep", 2, &sim_model(0), "samples: 2"),
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/rep.yaml", "--no-progress"],
    );
    let run = p.last_run("rep");
    for f in [
        "report.md",
        "report.csv",
        "report.json",
        "accuracy_vs_round.svg",
        "cumulative_accuracy.svg",
        "accuracy_vs_tokens.svg",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    // the end of a run writes the SVGs only; `distill report` on the run adds the PNGs
    let pngs = [
        "accuracy_vs_round.png",
        "cumulative_accuracy.png",
        "accuracy_vs_tokens.png",
    ];
    for f in pngs {
        assert!(!run.join(f).exists(), "{f} written by the run");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    #[cfg(feature = "png")]
    {
        assert!(
            md.contains("`distill report` on this run writes accuracy_vs_round.png"),
            "{md}"
        );
        let before = json(&run.join("report.json"));
        run_ok(&p, &["report", run.to_str().unwrap()]);
        for f in pngs {
            assert!(run.join(f).exists(), "{f}");
        }
        let md = std::fs::read_to_string(run.join("report.md")).unwrap();
        assert!(
            md.contains("[accuracy_vs_round.png](accuracy_vs_round.png)"),
            "{md}"
        );
        // the same numbers either way
        let after = json(&run.join("report.json"));
        for k in ["rounds", "k_metrics", "outcomes", "first_vs_last"] {
            assert_eq!(after["runs"][0][k], before["runs"][0][k], "{k}");
        }
    }
    #[cfg(not(feature = "png"))]
    assert!(!md.contains(".png"), "{md}");
    let results = json(&run.join("results.json"));
    let report = json(&run.join("report.json"));
    let rounds = report["runs"][0]["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    for (i, r) in rounds.iter().enumerate() {
        // per-round accuracy with samples: the mean over samples of the share right
        let id = format!("attempt_{i}");
        let right: usize = results["problems"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|q| q["samples"].as_array().unwrap().iter())
            .filter(|s| s[&id]["output"]["correct"] == true)
            .count();
        let got = r["per_round_accuracy"]["value"].as_f64().unwrap();
        assert!(
            (got - right as f64 / 16.0).abs() < 1e-9,
            "round {i}: {got} vs {right}/16"
        );
        assert_eq!(r["per_round_accuracy"]["n"], 8);
    }
    assert!(
        std::fs::read_to_string(run.join("report.md"))
            .unwrap()
            .contains("cumulative accuracy")
    );
}

#[test]
fn the_dashboard_port_may_come_from_the_pipeline() {
    dashboard_after_the_run_stops_on("-INT");
}

/// `timeout`, `docker stop` and a closed terminal end the dashboard that keeps serving a
/// finished run, as Ctrl-C does (SIGTERM used to be ignored there).
#[test]
fn sigterm_and_sighup_end_the_dashboard_after_a_run() {
    dashboard_after_the_run_stops_on("-TERM");
    dashboard_after_the_run_stops_on("-HUP");
}

fn dashboard_after_the_run_stops_on(signal: &str) {
    use std::io::BufRead;
    let p = Project::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.write(
        "pipelines/d.yaml",
        &iterated("d", 1, &sim_model(0), &format!("dashboard_port: {port}")),
    );
    let mut child = p
        .cmd()
        .args([
            "pipeline",
            "run",
            "pipelines/d.yaml",
            "--no-progress",
            "--dashboard",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut url = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(u) = line.strip_prefix("dashboard: ") {
            url = Some(u.to_string());
        }
        if line.contains("keeps serving") {
            break;
        }
    }
    std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        url.as_deref(),
        Some(format!("http://127.0.0.1:{port}/").as_str())
    );
    assert_eq!(
        status.code(),
        Some(0),
        "{signal} after a finished run is a normal end"
    );
}

#[test]
fn view_of_a_garbage_results_file_says_what_is_wrong_and_exits_2() {
    let p = Project::new();
    let dir = p.path().join("results/x/run");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.json"), "garbage, not json {{{").unwrap();
    let out = p.run(&["view", dir.to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("results.json") && t.contains("not JSON"), "{t}");
}

#[test]
fn progress_moves_from_the_first_model_node_not_the_first_finished_problem() {
    let p = Project::new();
    p.write("pipelines/g.yaml", &iterated("g", 4, &sim_model(5), ""));
    // no terminal: a plain line every tenth of the model nodes (8 problems × 9 = 72)
    let out = p.run(&["pipeline", "run", "pipelines/g.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("model nodes")).collect();
    assert!(lines.len() >= 9, "{err}");
    // the first lines come while no problem has finished (all advance together)
    assert!(lines[0].starts_with("[7/72 model nodes · ETA"), "{err}");
    assert!(lines[0].contains("0/8 problems"), "{err}");
    assert!(
        lines[0].contains("calls sent") && lines[0].contains("tokens"),
        "{err}"
    );
}

/// Two runs writing one cache directory at the same time (each to a pack segment of its
/// own), then a third that finds every answer: nothing sent, nothing corrupt.
#[test]
fn two_runs_writing_one_cache_at_once_leave_every_answer_readable() {
    let p = Project::new();
    p.write(
        "pipelines/w.yaml",
        &iterated("w", 2, &sim_model(3), "samples: 2"),
    );
    let spawn = |range: &str| {
        p.cmd()
            .args([
                "pipeline",
                "run",
                "pipelines/w.yaml",
                "--no-progress",
                "--index_range",
                range,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("0-4"), spawn("3-7"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let segments = pack_files(&p.path().join("cache"), "idx");
    assert!(segments >= 2, "a sealed segment per run: {segments}");
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/w.yaml",
            "--no-progress",
            "--index_range",
            "0-7",
        ],
    );
    let m = metrics(&p.last_run("w"));
    assert_eq!(m["calls"], 0, "{m}");
    let out = p.run(&["cache", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("0 corrupt"), "{}", text(&out));
}
