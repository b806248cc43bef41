//! `distill grade RESULTS.json`: regrading finished runs (distill's and the original tool's format).
//!
//! Shared dir: `$DISTILL_SHARED` if set, else `CARGO_MANIFEST_DIR/../shared`; absent -> the trace
//! test is skipped with a notice.
//!
//! Measured (DISTILL_SHARED=/work/shared cargo test --test regrade -- --nocapture):
//! passk5_r1_distill_qwen_14b_aime.json regraded with boxed + math: 45 solutions graded, 0 verdicts
//! changed, old 45/45 -> new 45/45. Expected: every recorded answer there is a plain integer equal to
//! the truth, and our extraction takes the same final `\boxed{..}` (see grade_traces.rs).

use distill::grade::{Compare, Extractor};
use distill::regrade::{RegradeOptions, regrade_file};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("DISTILL_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: shared dir not found ({}); set DISTILL_SHARED",
            dir.display()
        );
        None
    }
}

/// A fresh, empty directory for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("regrade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(compare: Compare) -> RegradeOptions {
    RegradeOptions {
        extract: Extractor::Boxed,
        compare,
        fallback_full_text: true,
        rel_tol: None,
        out: None,
    }
}

fn reason(node: &str, text: &str, answer: Value, correct: bool) -> Value {
    json!({
        "node": node, "kind": "reason", "round": 0, "status": "done", "cached": false,
        "output": {
            "text": text, "reasoning": "r", "answer_text": text, "finish_reason": "stop",
            "answer": answer, "correct": correct, "model": "m"
        },
        "latency_ms": 5
    })
}

/// A run graded with `compare: exact`, which got `033` vs `33` and `\frac12` vs `0.5` wrong.
fn distill_run() -> Value {
    json!({
        "run_id": "20260101T000000Z-abcdef",
        "pipeline": "test",
        "problems": [
            {
                "id": "p1", "index": 0, "question": "What is 3 * 11?", "answer": "33", "status": "ok",
                "samples": [{
                    "attempt_0": reason("attempt_0", "<think>so 033</think>\nThe answer is \\boxed{033}.", json!("033"), false),
                    "summary_1": {
                        "node": "summary_1", "kind": "summarize", "round": 1, "status": "done", "cached": false,
                        "output": {"text": "The answer was \\boxed{99}."}, "latency_ms": 1
                    }
                }]
            },
            {
                "id": "p2", "index": 1, "question": "Half of one?", "answer": "0.5", "status": "ok",
                "samples": [
                    { "attempt_0": reason("attempt_0", "<think>half</think> \\boxed{\\frac12}", json!("\\frac12"), false) },
                    { "attempt_0": reason("attempt_0", "<think>hm</think> \\boxed{0.5}", json!("0.5"), true) },
                    { "attempt_0": {
                        "node": "attempt_0", "kind": "reason", "round": 0, "status": "failed", "cached": false,
                        "error": "provider error", "latency_ms": 3
                    } },
                    { "attempt_0": reason("attempt_0", "<think>no idea</think> I give up.", Value::Null, false) }
                ]
            },
            {
                "id": "p3", "index": 2, "question": "q", "answer": "7", "status": "ok",
                "samples": [{ "attempt_0": reason("attempt_0", "\\boxed{8}", json!("8"), false) }]
            }
        ],
        "status": "complete"
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn distill_format_math_fixes_exact_grading_mistakes() {
    let dir = scratch_dir("distill");
    let input = write(&dir, "results.json", &distill_run());
    let before = std::fs::read_to_string(&input).unwrap();

    let r = regrade_file(&input, &opts(Compare::Math)).unwrap();
    distill::regrade::print_report(&r);
    assert_eq!(r.format, "distill");
    assert_eq!(
        r.graded, 5,
        "4 done reason records with text + p3; not the summary or the failed one"
    );
    assert_eq!((r.old_correct, r.new_correct), (1, 3));
    assert_eq!(r.written, dir.join("results.regraded.json"));
    let got: Vec<_> = r
        .changes
        .iter()
        .map(|c| {
            (
                c.problem.as_str(),
                c.sample,
                c.node.as_str(),
                c.new_answer.as_deref(),
                c.old_correct,
                c.new_correct,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("p1", Some(0), "attempt_0", Some("033"), Some(false), true),
            (
                "p2",
                Some(0),
                "attempt_0",
                Some("\\frac12"),
                Some(false),
                true
            ),
        ]
    );

    // The input is untouched; the output is the same document with only answer/correct replaced.
    assert_eq!(std::fs::read_to_string(&input).unwrap(), before);
    let out = read(&r.written);
    let mut expected = distill_run();
    expected["problems"][0]["samples"][0]["attempt_0"]["output"]["correct"] = json!(true);
    expected["problems"][1]["samples"][0]["attempt_0"]["output"]["correct"] = json!(true);
    assert_eq!(out, expected);
    // Key order is kept (run_id first, output fields in their original order).
    let text = std::fs::read_to_string(&r.written).unwrap();
    assert!(
        text.trim_start().starts_with("{\n  \"run_id\""),
        "{}",
        &text[..40]
    );
    let o = text.find("\"answer_text\"").unwrap();
    assert!(o < text.find("\"answer\": \"033\"").unwrap());
    // No temp file left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Regrading with exact reproduces the recorded verdicts: nothing changes.
    let mut o = opts(Compare::Exact);
    o.out = Some(dir.join("exact.json"));
    let r = regrade_file(&input, &o).unwrap();
    assert!(r.changes.is_empty(), "{:?}", r.changes);
    assert_eq!(
        (r.old_correct, r.new_correct, r.written.clone()),
        (1, 1, dir.join("exact.json"))
    );
}

#[test]
fn original_iterated_format() {
    let dir = scratch_dir("iterated");
    let doc = json!({
        "experiment_name": "x", "config": {"max_iterations": 2},
        "results": [
            {
                "problem_id": "2024-I-1", "question": "q", "correct_answer": "33",
                "iterations": [
                    {"iteration": 0, "reasoning": "<think>..</think> \\boxed{033}", "answer": "033", "correct": false,
                     "finish_reason": "stop", "summary": "tried"},
                    {"iteration": 1, "reasoning": "<think>..</think> \\boxed{34}", "answer": "34", "correct": false,
                     "finish_reason": "stop"},
                    // No text: the stored answer is regraded as-is.
                    {"iteration": 2, "reasoning": null, "answer": "33.0", "correct": false, "finish_reason": "length"}
                ],
                "initial_answer": "033", "initial_correct": false,
                "improved_answer": "33.0", "improved_correct": false,
                "timestamp": 1.5
            },
            {"problem_id": "2024-I-2", "error": "boom", "status": "error"},
            {"problem_id": "2024-I-3", "ground_truth": 12, "iterations": [
                {"iteration": 0, "reasoning": "\\boxed{12}", "answer": "12", "correct": "True", "finish_reason": "stop"},
                {"iteration": 1, "error": "timeout"}
            ]}
        ]
    });
    let input = write(&dir, "run.json", &doc);
    let r = regrade_file(&input, &opts(Compare::Math)).unwrap();
    distill::regrade::print_report(&r);
    assert_eq!(r.format, "original");
    assert_eq!((r.graded, r.old_correct, r.new_correct), (4, 1, 3));
    let nodes: Vec<_> = r
        .changes
        .iter()
        .map(|c| (c.problem.as_str(), c.node.as_str(), c.sample))
        .collect();
    assert_eq!(
        nodes,
        vec![
            ("2024-I-1", "iteration 0", None),
            ("2024-I-1", "iteration 2", None)
        ]
    );
    assert_eq!(r.changes[1].new_answer.as_deref(), Some("33.0"));

    let out = read(&r.written);
    let p = &out["results"][0];
    assert_eq!(p["iterations"][0]["correct"], json!(true));
    assert_eq!(p["iterations"][1]["correct"], json!(false));
    assert_eq!(p["iterations"][2]["correct"], json!(true));
    assert_eq!(p["iterations"][0]["summary"], json!("tried"));
    assert_eq!(
        (&p["initial_correct"], &p["improved_correct"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(out["results"][1], doc["results"][1]);
    assert_eq!(
        out["results"][2]["iterations"][1],
        json!({"iteration": 1, "error": "timeout"})
    );
    assert_eq!(out["config"], doc["config"]);
}

#[test]
fn original_passk_format_updates_counts_and_consensus() {
    let dir = scratch_dir("passk");
    let doc = json!({"results": [{
        "problem_id": "a", "question": "q", "correct_answer": "0.5",
        "solutions": [
            {"solution_id": 1, "reasoning": "\\boxed{\\frac{1}{2}}", "answer": "\\frac{1}{2}", "correct": false, "finish_reason": "stop"},
            {"solution_id": 2, "reasoning": "\\boxed{1/2}", "answer": "1/2", "correct": false, "finish_reason": "stop"},
            {"solution_id": 3, "reasoning": "\\boxed{3}", "answer": "3", "correct": false, "finish_reason": "stop"}
        ],
        "consensus_answer": "\\frac{1}{2}", "consensus_correct": false, "consensus_count": 1,
        "pass_at_k": false, "num_correct": 0
    }]});
    let input = write(&dir, "passk.json", &doc);
    let r = regrade_file(&input, &opts(Compare::Math)).unwrap();
    assert_eq!(
        (r.graded, r.old_correct, r.new_correct, r.changes.len()),
        (3, 0, 2, 2)
    );
    assert_eq!(r.changes[0].node, "solution 1");
    let p = &read(&r.written)["results"][0];
    assert_eq!(p["num_correct"], json!(2));
    assert_eq!(p["pass_at_k"], json!(true));
    assert_eq!(p["consensus_answer"], json!("\\frac{1}{2}"));
    assert_eq!(p["consensus_count"], json!(2));
    assert_eq!(p["consensus_correct"], json!(true));
}

#[test]
fn passk5_trace_regraded_with_math() {
    let Some(shared) = shared_dir() else { return };
    let input = shared.join("traces/passk5_r1_distill_qwen_14b_aime.json");
    if !input.is_file() {
        eprintln!("skipping: {} not found", input.display());
        return;
    }
    let dir = scratch_dir("passk5");
    let mut o = opts(Compare::Math);
    o.out = Some(dir.join("passk5.regraded.json"));
    let r = regrade_file(&input, &o).unwrap();
    distill::regrade::print_report(&r);
    println!(
        "passk5: format {}, graded {}, changes {}, old correct {}, new correct {}",
        r.format,
        r.graded,
        r.changes.len(),
        r.old_correct,
        r.new_correct
    );
    assert_eq!(r.format, "original");
    assert_eq!(r.graded, 45, "9 problems x 5 solutions");
    // Every recorded answer is the plain integer truth and we extract the same final \boxed{}.
    assert!(r.changes.is_empty(), "{:#?}", r.changes);
    assert_eq!((r.old_correct, r.new_correct), (45, 45));
    // Same document back: with no verdict changed, only the formatting may differ.
    let orig: Value = serde_json::from_str(&std::fs::read_to_string(&input).unwrap()).unwrap();
    assert_eq!(read(&r.written), orig);
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let dir = scratch_dir("bad");
    let missing = dir.join("nope.json");
    let e = regrade_file(&missing, &opts(Compare::Math)).unwrap_err();
    assert!(e.contains("nope.json") && e.contains("cannot read"), "{e}");

    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "this is not json").unwrap();
    let e = regrade_file(&garbage, &opts(Compare::Math)).unwrap_err();
    assert!(e.contains("garbage.json") && e.contains("not JSON"), "{e}");

    let other = write(
        &dir,
        "other.json",
        &json!({"results": [{"foo": 1}], "x": 2}),
    );
    let e = regrade_file(&other, &opts(Compare::Math)).unwrap_err();
    assert!(
        e.contains("other.json") && e.contains("not a recognized results file"),
        "{e}"
    );
    assert!(
        e.contains("\"problems\"") && e.contains("\"solutions\""),
        "{e}"
    );

    let no_truth = write(
        &dir,
        "no_truth.json",
        &json!({"results": [{"problem_id": "a",
        "iterations": [{"iteration": 0, "reasoning": "\\boxed{1}", "answer": "1", "correct": true}]}]}),
    );
    let e = regrade_file(&no_truth, &opts(Compare::Math)).unwrap_err();
    assert!(
        e.contains("no_truth.json") && e.contains("correct_answer"),
        "{e}"
    );

    let good = write(&dir, "good.json", &distill_run());
    let e = regrade_file(&good, &opts(Compare::LlmJudge)).unwrap_err();
    assert_eq!(
        e,
        "llm_judge regrading needs a model; use it in a pipeline's grade: block"
    );
    let mut o = opts(Compare::Math);
    o.extract = Extractor::Regex("(".into());
    assert!(regrade_file(&good, &o).is_err());
    // Nothing was written for any failure.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
