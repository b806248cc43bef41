//! The original tool's flat experiment configs, run as they are and converted:
//! - every one of the 105 configs in ../shared/original/config/experiments converts and
//!   validates, laid out as a checkout (config/ next to data/, both symlinks in a tempdir),
//!   except the three the original itself cannot run, each refused with its reason;
//! - a flat config runs against a real HTTP server, and the pipeline `convert` writes for it
//!   reuses every cache entry (same keys), while its `_seed_1` sibling draws anew;
//! - every unknown key and bad value is reported at once with file:line;
//! - a missing `</think>` fails the summary unless `allow_fallback: true`, as in the original;
//! - the original's run options work on a flat config;
//! - a `pass_k` config gives pass@1, pass@k and the consensus (majority) in the report.

mod common;
mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::fake_openai::{FakeConfig, FakeServer, Reply};
#[path = "support/call_helpers.rs"]
mod helpers;
use helpers::*;

fn shared() -> PathBuf {
    common::repo().join("../shared")
}

/// A checkout of the original tool in a tempdir: config/ and data/ as symlinks.
fn original_checkout() -> Option<tempfile::TempDir> {
    let config = shared().join("original/config");
    let data = shared().join("data");
    if !config.is_dir() || !data.is_dir() {
        eprintln!("skipped: ../shared/original/config or ../shared/data is absent");
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        std::fs::canonicalize(config).unwrap(),
        d.path().join("config"),
    )
    .unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize(data).unwrap(), d.path().join("data"))
        .unwrap();
    Some(d)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// The configs the original tool cannot run either, and what distill says about each.
const REFUSED: [(&str, &str); 3] = [
    ("simple_pass.yaml", "`reasoning_model` is missing"),
    (
        "exp_aime_deepseek_qwen_14b_methods_sum_4iter.yaml",
        "summary_method `experimental` is not one the original tool implements",
    ),
    (
        "aime_deepseek_qwen_14b_back_self_sum_1iter.yaml",
        "prompt version `backtrack_uncertainty` is not in",
    ),
];

#[test]
fn every_original_config_converts_and_validates() {
    let Some(co) = original_checkout() else {
        return;
    };
    let mut files = Vec::new();
    yaml_files(&co.path().join("config/experiments"), &mut files);
    assert_eq!(files.len(), 105, "the shared original has 105 configs");
    let mut valid = 0;
    let mut by_kind: std::collections::BTreeMap<String, usize> = Default::default();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        match distill::spec::load(f, &Default::default()) {
            Ok(p) => {
                valid += 1;
                let kinds: Vec<&str> = p.nodes.iter().map(|n| n.kind.as_str()).collect();
                let shape = if kinds.contains(&"vote") {
                    "pass@k"
                } else if kinds.contains(&"continue") {
                    "continuation"
                } else {
                    "summarize"
                };
                *by_kind.entry(shape.into()).or_default() += 1;
                assert!(
                    !REFUSED.iter().any(|(n, _)| *n == name),
                    "{name} should be refused"
                );
            }
            Err(diags) => {
                let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) else {
                    panic!("{} does not validate:\n{}", f.display(), text.join("\n"));
                };
                assert!(
                    text.iter().any(|t| t.contains(why)),
                    "{name}: expected `{why}` in {text:?}"
                );
            }
        }
    }
    eprintln!("{valid} of 105 configs validate; by shape: {by_kind:?}");
    assert_eq!(valid, 102);

    // `convert` on all of them: 102 pipelines written and validated, the 3 refused, and the
    // two archived configs with identical contents flagged as sharing every cache key
    let out = co.path().join("converted");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_distill"));
    cmd.current_dir(co.path()).args(["pipeline", "convert"]);
    cmd.args(&files).arg("--out").arg(&out);
    let o = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stdout.contains("102 converted, 3 failed"), "{stdout}");
    let written = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .count();
    assert_eq!(
        written, 102,
        "one file per config, same stems disambiguated"
    );
    assert!(
        stderr.contains("would share every cache key")
            && stderr.contains("archive/gpqa_deepseek_qwen_14b_diff_self_sum.yaml")
            && stderr.contains("archive/aime_deepseek_qwen_14b_comp_self_sum.yaml"),
        "{stderr}"
    );
    // the seed sweeps are apart
    let seed2 = std::fs::read_to_string(
        out.join("aime_deepseek_qwen_14b_baseline_post_think_sum_4iter_seed_2.yaml"),
    )
    .unwrap();
    assert!(seed2.contains("sample_offset: 2"), "{seed2}");
}

/// A tiny checkout: one problem, prompts of the three kinds, and a flat config.
fn tiny_checkout(extra: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "data/one.csv",
        "id,question,answer\np1,What is 17 + 25?,42\n",
    );
    w(
        "config/prompts/reasoning.yaml",
        "aime:\n  template: |\n    Solve. Answer in \\boxed{}.\n\n    PROBLEM:\n    {question}\n",
    );
    w(
        "config/prompts/summarize.yaml",
        "s:\n  template: |\n    Summarize the attempt at {question}:\n    {reasoning}\n",
    );
    w(
        "config/prompts/improved.yaml",
        "i:\n  template: |\n    Solve {question} again.\n    Summaries:\n    {summaries}\n",
    );
    let cfg = format!(
        r#"experiment_name: "tiny"
results_dir: "./results/tiny"
data_path: "./data/one.csv"
experiment_type: "summarize"
reasoning_model: "accounts/x/deployedModels/deepseek-r1-distill-qwen-14b-abc"
reasoning_model_provider: "fireworks"
summarizer_type: "self"
max_tokens: 512
temperature: 0.6
top_p: 0.95
top_k: 40
presence_penalty: 0.0
frequency_penalty: 0.0
max_iterations: 2
continue_after_correct: true
answer_extractor: "math"
prompts:
  reasoning: "aime"
  summarize: "s"
  improved: "i"
{extra}"#
    );
    w("config/experiments/tiny.yaml", &cfg);
    w("config/experiments/tiny_seed_1.yaml", &cfg);
    d
}

fn at_fake(server: &FakeServer) -> Vec<String> {
    let mut v = Vec::new();
    for m in ["reasoner", "summarizer"] {
        v.push(format!("--set=models.{m}.provider=openai-compatible"));
        v.push(format!("--set=models.{m}.base_url={}", server.base_url()));
        v.push(format!("--set=models.{m}.api_key_env=FAKE_KEY"));
    }
    v
}

async fn distill(dir: &Path, args: &[String]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_distill"));
    c.current_dir(dir).args(args).env("FAKE_KEY", KEY);
    output(c).await
}

fn args(list: &[&str], more: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.to_string())
        .chain(more.iter().cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flat_config_runs_and_its_conversion_reuses_every_key() {
    let server = FakeServer::start(FakeConfig::default().with_responder(|_: &Value| {
        Reply::text("add the units, carry one</think>\n\nSo \\boxed{42}.")
    }))
    .await;
    let co = tiny_checkout("");
    let fake = at_fake(&server);
    let run = |file: &str, extra: &[&str]| {
        let mut a = vec!["pipeline", "run", file, "--cache", "cache", "--no-progress"];
        a.extend_from_slice(extra);
        args(&a, &fake)
    };
    let o = distill(co.path(), &run("config/experiments/tiny.yaml", &[])).await;
    let err = assert_exit(&o, 0);
    let runs = co.path().join("results/tiny");
    let run_dir = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let r = results(&run_dir);
    assert_eq!(node(&r, 0, "attempt_2")["output"]["correct"], true, "{err}");
    // what the original sent in round 2: both earlier summaries, ATTEMPT 0 and ATTEMPT 1
    let prompt = node(&r, 0, "attempt_2")["output"]["prompt"].to_string();
    assert!(
        prompt.contains("ATTEMPT 0 SUMMARY:") && prompt.contains("ATTEMPT 1 SUMMARY:"),
        "{prompt}"
    );

    let o = distill(
        co.path(),
        &args(
            &[
                "pipeline",
                "convert",
                "config/experiments/tiny.yaml",
                "--out",
                "native",
            ],
            &[],
        ),
    )
    .await;
    assert_exit(&o, 0);
    assert!(
        co.path()
            .join("native/prompts/original/improved/i.hbs")
            .exists()
    );
    let o = distill(co.path(), &run("native/tiny.yaml", &["--offline"])).await;
    let out = assert_exit(&o, 0);
    assert!(!out.contains("NOT RUN"), "{out}");

    // the seed-1 sibling shares no model call with seed 0
    let o = distill(
        co.path(),
        &run("config/experiments/tiny_seed_1.yaml", &["--offline"]),
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn unknown_keys_and_bad_values_are_reported_at_once_with_lines() {
    let co = tiny_checkout("summary_mehtod: \"last_k\"\nbogus_key: 1\nallow_fallback: \"yes\"\n");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(co.path())
        .args(["pipeline", "validate", "config/experiments/tiny.yaml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let f = "config/experiments/tiny.yaml";
    assert!(
        err.contains(&format!("{f}:21: error: unknown key `summary_mehtod`")),
        "{err}"
    );
    assert!(err.contains("did you mean `summary_method`?"), "{err}");
    assert!(
        err.contains(&format!("{f}:22: error: unknown key `bogus_key`")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{f}:23: error: `allow_fallback` must be true or false"
        )),
        "{err}"
    );
    assert!(err.contains("3 error(s)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_without_think_fails_the_summary_unless_fallback_is_allowed() {
    let server = FakeServer::start(
        FakeConfig::default().with_responder(|_: &Value| Reply::text("no tag here \\boxed{41}")),
    )
    .await;
    for (allow, code) in [("false", 1), ("true", 0)] {
        let co = tiny_checkout(&format!("allow_fallback: {allow}\n"));
        let o = distill(
            co.path(),
            &args(
                &[
                    "pipeline",
                    "run",
                    "config/experiments/tiny.yaml",
                    "--cache",
                    "cache",
                    "--no-progress",
                ],
                &at_fake(&server),
            ),
        )
        .await;
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        if allow == "false" {
            let runs = co.path().join("results/tiny");
            let run_dir = std::fs::read_dir(&runs)
                .unwrap()
                .flatten()
                .next()
                .unwrap()
                .path();
            let r = results(&run_dir);
            assert!(
                failure(&r, 0).contains("no `reasoning` to summarize"),
                "{}",
                failure(&r, 0)
            );
        }
    }
}

#[test]
fn the_original_run_options_work_on_a_flat_config() {
    let co = tiny_checkout("");
    let run = |a: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(co.path())
            .args(a)
            .output()
            .unwrap()
    };
    let f = "config/experiments/tiny.yaml";
    let o = run(&[
        "pipeline",
        "plan",
        f,
        "--question_ids",
        "p1",
        "--parallel",
        "--concurrency",
        "16",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("1 problem(s)"), "{out}");
    let o = run(&[
        "pipeline",
        "run",
        f,
        "--index_range",
        "0-0",
        "--offline",
        "--verbose",
        "--no-progress",
    ]);
    // offline with an empty cache: accepted, nothing sent, the nodes not run (exit 1)
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = run(&["pipeline", "graph", f, "--format", "dot"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("attempt_2"));
    let o = run(&["pipeline", "plan", f, "--index_range", "0-3"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a range past the last row is refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_k_config_reports_pass_at_k_and_the_consensus() {
    // the 4 samples answer 42, 41, 42, 7 (in call order): 2 of 4 right, consensus 42 (right)
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = FakeServer::start(FakeConfig::default().with_responder(move |_: &Value| {
        let i = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let a = [42, 41, 42, 7][i % 4];
        Reply::text(format!("thinking</think>\n\n\\boxed{{{a}}}"))
    }))
    .await;
    let co = tiny_checkout("");
    let cfg = co.path().join("config/experiments/tiny.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "experiment_type: \"summarize\"",
        "experiment_type: \"pass_k\"\npass_k_iterations: 4",
    );
    std::fs::write(&cfg, text).unwrap();
    let a = args(
        &[
            "pipeline",
            "run",
            "config/experiments/tiny.yaml",
            "--cache",
            "cache",
            "--no-progress",
        ],
        &at_fake(&server)[..3],
    );
    let o = distill(co.path(), &a).await;
    let out = assert_exit(&o, 0);
    let run_dir = std::fs::read_dir(co.path().join("results/tiny"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let r = results(&run_dir);
    let vote = &r["problems"][0]["aggregates"]["vote"]["output"];
    assert_eq!(vote["answer"], "42", "{vote}");
    assert_eq!(vote["correct"], true);
    assert_eq!(vote["correct_count"], 2);
    let report = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    for row in [
        "| pass@1 | 0 | vote node `vote` | 50.0%",
        "| pass@4 | 0 | vote node `vote` | 100.0%",
        "| majority@4 | 0 | samples | 100.0%",
    ] {
        assert!(report.contains(row), "{row} not in\n{report}\n{out}");
    }
}
