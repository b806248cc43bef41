//! `--load_run`: a recorded run (the original tool's, or distill's own) imported into the
//! cache under a pipeline's own keys, then reproduced offline with no model call. The
//! acceptance case is the shared recording of the original tool (`../shared/original/
//! results/post_think_seed_0`: 6 AIME problems, 5 iterations, 3 written as errors).

mod common;

use std::path::{Path, PathBuf};

use common::{Project, json, text};
use serde_json::Value;

const IDS: &str = "2,2024-II-7,2024-II-8,2024-II-9,29,7";

fn shared() -> Option<PathBuf> {
    let s = common::repo().join("../shared");
    let run = s.join("original/results/post_think_seed_0/results.json");
    if run.is_file() && s.join("data/aime_2024_5.csv").is_file() {
        Some(s.canonicalize().unwrap())
    } else {
        println!("skipped: ../shared/original is absent");
        None
    }
}

/// The recorded run's method as a native pipeline: the original's prompts, `post_think`
/// summaries, 4 iterations after the first.
fn pipeline(p: &Project, shared: &Path) -> PathBuf {
    p.write(
        "prompts/orig/aime.hbs",
        "Solve the following AIME problem. All answers are integers ranging from 0 to 999, inclusive.  Report your answer in \\boxed{} format.\n\nPROBLEM:\n{{question}}\n",
    );
    p.write(
        "prompts/orig/improved.hbs",
        "Solve the following AIME problem. All answers are integers ranging from 0 to 999, inclusive. Report your answer in \\boxed{} format.\n\nPROBLEM:\n{{question}}\n\nHere are summaries of your previous solution attempts:\n{{#each summaries}}{{this.text}}\n{{/each}}\n\nBased on your previous solution attempts, evaluate whether the most recent approach and answer are correct. If not, consider a different approach.\n",
    );
    p.write(
        "pipelines/pt.yaml",
        &format!(
            r#"name: pt
problems: {{path: {}/data/aime_2024_5.csv}}
models:
  reasoner:
    provider: fireworks
    model: accounts/x/deployedModels/deepseek-r1-distill-qwen-14b
    params: {{max_tokens: 8192, temperature: 0.6, top_p: 0.95, top_k: 40}}
grade: {{extract: boxed, compare: math}}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: orig/aime}}
  rounds:
    repeat: 4
    body:
      summary: {{kind: summarize, strategy: post_think, k: 404, input: previous.attempt}}
      attempt: {{kind: reason, model: reasoner, prompt: orig/improved, vars: {{summaries: all.summary}}}}
"#,
            shared.display()
        ),
    )
}

fn per_round(report: &Value) -> Vec<String> {
    report["runs"][0]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let a = &r["per_round_accuracy"];
            format!("{}/{}", a["successes"].as_f64().unwrap() as u64, a["n"])
        })
        .collect()
}

#[test]
fn the_original_tools_recorded_run_reproduces_offline() {
    let Some(shared) = shared() else { return };
    let p = Project::new();
    pipeline(&p, &shared);
    let recorded = shared.join("original/results/post_think_seed_0/results.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["pipeline", "run", "pipelines/pt.yaml", "--no-progress"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(["--offline", "--question_ids", IDS].map(String::from));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // no key in the environment, no server: every answer comes from the recording
    let mut c = p.cmd();
    c.env_remove("FIREWORKS_API_KEY").args(args(&[
        "--load_run",
        recorded.to_str().unwrap(),
        "--results_format",
        "original",
    ]));
    let out = c.output().unwrap();
    let shown = text(&out);
    // finished, but 3 problems have no answer: incomplete (exit 1)
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("RECORDED ERRORS"), "{shown}");
    assert!(
        shown.contains("16.7% (1/6), 16.7% (1/6), 33.3% (2/6), 33.3% (2/6), 33.3% (2/6)"),
        "the original's own figure, explained: {shown}"
    );
    let run = p.last_run("pt");
    let rep = json(&run.join("report.json"));
    // the recorded verdicts: 1, 1, 2, 2, 2 right of the 3 problems that ran
    assert_eq!(per_round(&rep), ["1/3", "1/3", "2/3", "2/3", "2/3"]);
    assert_eq!(rep["runs"][0]["not_run_reasons"]["recorded_error"], 15);
    let m = json(&run.join("metrics.json"));
    assert_eq!(m["calls"], 0);
    assert_eq!(m["imported_nodes"], 15, "{m}");
    // the manifest: what came from where, the error records, no verdict changed
    let man = json(&run.join("import.json"));
    assert_eq!(man["format"], "original (iterated)");
    let errs: Vec<&str> = man["recorded_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["reason"], "recorded_error");
            e["problem"].as_str().unwrap()
        })
        .collect();
    assert_eq!(errs, ["2024-II-8", "2024-II-9", "29"]);
    assert_eq!(man["used"]["reason round 0"], 3);
    assert_eq!(man["used"]["reason round 4"], 3);
    assert_eq!(man["verdicts_differ"], serde_json::json!([]));
    // the records, not run with their reason
    let r = json(&run.join("results.json"));
    let p8 = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "2024-II-8")
        .unwrap();
    assert_eq!(p8["samples"][0]["attempt_0"]["status"], "not_run");
    assert_eq!(p8["samples"][0]["attempt_0"]["reason"], "recorded_error");

    // the original tool's schema, read back by the original-format reader: same verdicts
    let orig = json(&run.join("results.original.json"));
    let entries = orig["results"].as_array().unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(
        entries.iter().filter(|e| e["status"] == "error").count(),
        3,
        "the error records stay error entries"
    );
    let back = distill::report::load_run(&run.join("results.original.json")).unwrap();
    assert_eq!(back.format, "original (iterated)");
    let tmp = tempfile::tempdir().unwrap();
    let rb = distill::report::build(&distill::report::ReportOptions {
        runs: vec![run.join("results.original.json")],
        out_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let shares: Vec<String> = rb.runs[0]
        .rounds
        .iter()
        .map(|x| {
            format!(
                "{}/{}",
                x.per_round_accuracy.successes, x.per_round_accuracy.n
            )
        })
        .collect();
    assert_eq!(shares, ["1/3", "1/3", "2/3", "2/3", "2/3"]);
    let it = &entries.iter().find(|e| e["problem_id"] == "7").unwrap();
    assert_eq!(it["iterations"].as_array().unwrap().len(), 5);
    assert_eq!(it["initial_answer"], "600");
    assert_eq!(it["final_correct"], true);

    // from then on the cache alone reproduces the table
    let out = p.run(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let again = json(&p.last_run("pt").join("report.json"));
    assert_eq!(
        per_round(&again)[..3],
        ["1/3", "1/3", "2/3"],
        "{}",
        text(&out)
    );
    assert_eq!(json(&p.last_run("pt").join("metrics.json"))["calls"], 0);

    // distill's own run imports the same way, into a fresh cache
    let out = p.run(
        &args(&["--cache", "fresh", "--load_run", run.to_str().unwrap()])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let third = p.last_run("pt");
    assert_eq!(
        per_round(&json(&third.join("report.json"))),
        ["1/3", "1/3", "2/3", "2/3", "2/3"],
        "{}",
        text(&out)
    );
    assert_eq!(json(&third.join("import.json"))["format"], "distill");

    // --load_initial_reasoning takes round 0 of the same file: its error records are skipped
    // and counted, not fatal
    let out = p.run(
        &args(&[
            "--cache",
            "r0",
            "--load_initial_reasoning",
            recorded.to_str().unwrap(),
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("3 problem(s) it recorded as errors are not run"),
        "{t}"
    );
    let r0 = p.last_run("pt");
    let rep = json(&r0.join("report.json"));
    assert_eq!(per_round(&rep)[0], "1/3", "{t}");
    let reasons = &rep["runs"][0]["not_run_reasons"];
    assert_eq!(reasons["recorded_error"], 15, "{reasons}");
    let man = json(&r0.join("import.json"));
    assert_eq!(man["used"]["reason round 0"], 3, "{man}");
    assert!(
        man["used"].get("reason round 1").is_none(),
        "round 0 only: {man}"
    );
}

#[test]
fn the_report_reads_the_recording_itself_with_its_errors_not_run() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("original/results/post_think_seed_0");
    let run = distill::report::load_run(&dir).unwrap();
    assert_eq!(run.format, "original (iterated)");
    let tmp = tempfile::tempdir().unwrap();
    let o = distill::report::ReportOptions {
        runs: vec![dir],
        out_dir: Some(tmp.path().to_path_buf()),
        ..Default::default()
    };
    let rep = distill::report::build(&o).unwrap();
    let r = &rep.runs[0];
    let shares: Vec<(u64, u64)> = r
        .rounds
        .iter()
        .map(|x| {
            (
                x.per_round_accuracy.successes as u64,
                x.per_round_accuracy.n as u64,
            )
        })
        .collect();
    assert_eq!(shares, [(1, 3), (1, 3), (2, 3), (2, 3), (2, 3)]);
    assert_eq!(r.not_run_reasons["recorded_error"], 15);
    assert!(r.stopped_early.as_deref().unwrap().contains("16.7% (1/6)"));
}

#[test]
fn import_files_that_yield_nothing_are_refused() {
    let p = Project::new();
    p.write(
        "pipelines/q.yaml",
        &common::iterated("q", 1, &common::sim_model(0), ""),
    );
    let bad = [
        (r#"{"problems":[{"id":5,"samples":"x"}]}"#, "cannot be read"),
        (r#"{"problems":[]}"#, "no finished record to import"),
        (
            r#"{"results": [{"problem_id": "add-1", "error": "timeout", "status": "error"}]}"#,
            "no finished record to import",
        ),
    ];
    for (i, (body, want)) in bad.iter().enumerate() {
        p.write(&format!("bad{i}.json"), body);
        for flag in ["--load_run", "--load_initial_reasoning"] {
            let out = p.run(&[
                "pipeline",
                "run",
                "pipelines/q.yaml",
                "--no-progress",
                flag,
                &format!("bad{i}.json"),
            ]);
            assert_eq!(out.status.code(), Some(2), "{flag} {body}: {}", text(&out));
            let t = text(&out);
            assert!(
                t.contains(want) && t.contains(&format!("bad{i}.json")),
                "{t}"
            );
            assert!(t.contains(flag), "{t}");
        }
    }
    assert!(p.runs("q").is_empty(), "nothing ran");
}

/// Issue 14's acceptance, as one command: the config the shared run recorded about itself
/// (its `config` key, a flat original-format config with its prompts inline), run as it is
/// with the recording imported, offline, on the 6 recorded ids.
#[test]
fn the_recorded_config_runs_as_it_is_and_reproduces_the_recorded_table() {
    let Some(shared) = shared() else { return };
    let recorded = shared.join("original/results/post_think_seed_0/results.json");
    let p = Project::new();
    let cfg = json(&recorded)["config"].clone();
    // a checkout of the original: config/experiments/ and data/ side by side
    p.write(
        "checkout/config/experiments/recorded.yaml",
        &serde_json::to_string_pretty(&cfg).unwrap(),
    );
    std::os::unix::fs::symlink(shared.join("data"), p.path().join("checkout/data")).unwrap();
    // the plan sees the import: every recorded answer a cache hit, the error records not run
    let mut plan = p.cmd();
    plan.current_dir(p.path().join("checkout"))
        .env_remove("FIREWORKS_API_KEY")
        .args([
            "pipeline",
            "plan",
            "config/experiments/recorded.yaml",
            "--load-run",
            recorded.to_str().unwrap(),
            "--question-ids",
            IDS,
        ]);
    let out = plan.output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("in the cache: 15") && t.contains("to make: 0"),
        "{t}"
    );
    assert!(t.contains("will not run: 15 (recorded_error: 15)"), "{t}");
    let mut c = p.cmd();
    c.current_dir(p.path().join("checkout"))
        .env_remove("FIREWORKS_API_KEY")
        .args([
            "pipeline",
            "run",
            "config/experiments/recorded.yaml",
            "--load-run",
            recorded.to_str().unwrap(),
            "--offline",
            "--question-ids",
            IDS,
            "--no-progress",
        ]);
    let out = c.output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    let root = p
        .path()
        .join("checkout/results")
        .join(cfg["experiment_name"].as_str().unwrap());
    let run = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let rep = json(&run.join("report.json"));
    // the recorded verdicts, 1, 1, 2, 2, 2 of the 3 problems that ran; the 3 error records not run
    assert_eq!(per_round(&rep), ["1/3", "1/3", "2/3", "2/3", "2/3"], "{t}");
    assert_eq!(rep["runs"][0]["not_run_reasons"]["recorded_error"], 15);
    assert!(t.contains("16.7% (1/6), 16.7% (1/6), 33.3% (2/6)"), "{t}");
    let man = json(&run.join("import.json"));
    assert_eq!(man["recorded_errors"].as_array().unwrap().len(), 3);
    assert_eq!(
        man["verdicts_differ"],
        serde_json::json!([]),
        "distill's regrade agrees"
    );
    assert_eq!(json(&run.join("metrics.json"))["calls"], 0);
}
