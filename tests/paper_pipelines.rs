//! The paper's pipelines keep the promises the README makes about them:
//! - every round of `pipelines/iterated.yaml` carries the same answer-format instruction;
//! - every variant in `pipelines/variants/` reuses iterated.yaml's round 0 from the cache
//!   (run on the simulator, then each variant `--offline`: its attempt_0 is a cache hit).

mod common;

use std::path::Path;
use std::process::Command;

use common::repo;

const FORMAT: &str = "an integer from 0 to 999, in \\boxed{}";

fn sets() -> Vec<String> {
    let mut v = vec!["--set=problems.path=data/arithmetic.csv".to_string()];
    for m in ["reasoner", "summarizer", "continuer"] {
        v.push(format!("--set=models.{m}.provider=sim"));
    }
    v
}

#[test]
fn every_round_of_iterated_has_the_answer_format_instruction() {
    let opts = distill::spec::LoadOptions {
        sets: vec!["problems.path=data/arithmetic.csv".into()],
        ..Default::default()
    };
    let p = distill::spec::load(&repo().join("pipelines/iterated.yaml"), &opts).unwrap();
    let mut reason = 0;
    for n in p.nodes.iter().filter(|n| n.kind == "reason") {
        let text = &p.prompts[n.prompt.as_deref().unwrap()];
        assert!(text.contains(FORMAT), "{} ({:?}) lacks it", n.id, n.prompt);
        reason += 1;
    }
    assert_eq!(reason, 5);
}

fn distill(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_variants_round_0_is_a_cache_hit_of_iterated() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache").display().to_string();
    let results = tmp.path().join("results").display().to_string();
    let base = |file: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "pipeline",
            "run",
            file,
            "--cache",
            &cache,
            "--results",
            &results,
            "--no-progress",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(sets());
        a
    };
    // `--set` of a model a pipeline does not have adds it; only iterated's own are set here
    let mut first = base("pipelines/iterated.yaml");
    first.retain(|a| !a.contains("summarizer") && !a.contains("continuer"));
    let o = distill(&first);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut variants: Vec<_> = std::fs::read_dir(repo().join("pipelines/variants"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    variants.sort();
    assert!(variants.len() >= 12);
    for v in variants {
        let rel = format!(
            "pipelines/variants/{}",
            v.file_name().unwrap().to_string_lossy()
        );
        let text = std::fs::read_to_string(&v).unwrap();
        let mut args = base(&rel);
        args.push("--offline".into());
        args.retain(|a| {
            (!a.contains("summarizer") || text.contains("summarizer:"))
                && (!a.contains("continuer") || text.contains("continuer:"))
        });
        let o = distill(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(0) || o.status.code() == Some(1),
            "{rel}: {err}"
        );
        let run = last_run(Path::new(&results), &text);
        let r = common::json(&run.join("results.json"));
        for p in r["problems"].as_array().unwrap() {
            let a0 = &p["samples"][0]["attempt_0"];
            assert_eq!(a0["status"], "done", "{rel}: attempt_0 {a0}");
            assert_eq!(a0["cached"], true, "{rel}: attempt_0 not from the cache");
        }
    }
}

/// The newest run directory of the pipeline named in `text` (`name: …`).
fn last_run(results: &Path, text: &str) -> std::path::PathBuf {
    let name = text
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .unwrap()
        .trim();
    let mut runs: Vec<_> = std::fs::read_dir(results.join(name))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    runs.sort();
    runs.pop().unwrap()
}
