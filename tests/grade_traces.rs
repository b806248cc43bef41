//! Runs our boxed extractor + math grader over the real traces in `../shared/traces/` and compares
//! with the answers and verdicts recorded by the original tool.
//!
//! Shared dir: `$DISTILL_SHARED` if set, else `CARGO_MANIFEST_DIR/../shared`; absent -> skipped.
//!
//! Measured (DISTILL_SHARED=/work/shared cargo test --test grade_traces -- --nocapture):
//! - aime_2024_deepseek_r1_completions.csv, 30 completions: our verdict agrees with the recorded
//!   one on 30/30 (23 correct, 7 wrong by both); our extraction is equivalent to the recorded extraction on 29/30. The one
//!   extraction disagreement is 2024-I-8: the recorded answer `2926` comes from a tentative
//!   `\boxed{2926}` deep in the think part ("the answer is likely \boxed{2926} based on similar
//!   problems"); the model's final answer, after `</think>`, is `\boxed{2927}`, which is what we
//!   take. Both are wrong (truth 197), so the verdict is the same.
//! - passk5_r1_distill_qwen_14b_aime.json, 9 problems x 5 samples = 45: extraction and verdict
//!   agree with the recorded ones on 45/45 (all recorded correct).

use distill::grade::{Compare, ExtractOptions, Extractor, GradeContext, equivalent, extract};
use std::path::PathBuf;

fn shared_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("DISTILL_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared not found ({})", dir.display());
        None
    }
}

struct Case {
    id: String,
    truth: String,
    completion: String,
    recorded_answer: Option<String>,
    recorded_correct: bool,
}

#[derive(Default, Debug, PartialEq)]
struct Tally {
    n: usize,
    extraction_agrees: usize,
    verdict_agrees: usize,
    ours_correct: usize,
    recorded_correct: usize,
    no_answer: usize,
}

fn math_eq(a: &str, b: &str) -> bool {
    equivalent(Compare::Math, a, b, &GradeContext::default()).expect("math mode never errs")
}

/// Grades every case; returns the tally and the ids where our extraction differs from the record.
fn run(name: &str, cases: &[Case]) -> (Tally, Vec<String>, Vec<String>) {
    let mut t = Tally::default();
    let (mut extraction_diffs, mut verdict_diffs) = (Vec::new(), Vec::new());
    println!("\n{name}");
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>9} {:>9}",
        "id", "truth", "recorded", "ours", "rec_ok", "our_ok"
    );
    for c in cases {
        let ours = extract(&Extractor::Boxed, &c.completion, &ExtractOptions::default());
        let ours_ok = ours.as_deref().is_some_and(|a| math_eq(a, &c.truth));
        let same_extraction = match (&ours, &c.recorded_answer) {
            (Some(a), Some(b)) => math_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        t.n += 1;
        t.no_answer += usize::from(ours.is_none());
        t.ours_correct += usize::from(ours_ok);
        t.recorded_correct += usize::from(c.recorded_correct);
        t.extraction_agrees += usize::from(same_extraction);
        t.verdict_agrees += usize::from(ours_ok == c.recorded_correct);
        if !same_extraction {
            extraction_diffs.push(c.id.clone());
        }
        if ours_ok != c.recorded_correct {
            verdict_diffs.push(c.id.clone());
        }
        let mark = if same_extraction && ours_ok == c.recorded_correct {
            ""
        } else {
            "  <- differs"
        };
        println!(
            "{:<14} {:>8} {:>10} {:>10} {:>9} {:>9}{mark}",
            c.id,
            c.truth,
            c.recorded_answer.as_deref().unwrap_or("-"),
            ours.as_deref().unwrap_or("NONE"),
            c.recorded_correct,
            ours_ok
        );
    }
    println!(
        "{name}: n={} extraction_agrees={} verdict_agrees={} ours_correct={} recorded_correct={} no_answer={}",
        t.n, t.extraction_agrees, t.verdict_agrees, t.ours_correct, t.recorded_correct, t.no_answer
    );
    (t, extraction_diffs, verdict_diffs)
}

fn r1_csv_cases(dir: &std::path::Path) -> Vec<Case> {
    let path = dir.join("traces/aime_2024_deepseek_r1_completions.csv");
    let mut rdr =
        csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let headers = rdr.headers().expect("headers").clone();
    let col = |n: &str| {
        headers
            .iter()
            .position(|h| h == n)
            .unwrap_or_else(|| panic!("no column {n}"))
    };
    let (id, answer, completion, extracted) = (
        col("id"),
        col("answer"),
        col("model_completion"),
        col("extracted_answer"),
    );
    rdr.records()
        .map(|r| {
            let r = r.expect("csv record");
            let truth = r[answer].trim().to_string();
            let recorded = r[extracted].trim().to_string();
            // The CSV has no verdict column: the recorded verdict is the recorded answer == truth.
            let recorded_correct = !recorded.is_empty() && math_eq(&recorded, &truth);
            Case {
                id: r[id].to_string(),
                truth,
                completion: r[completion].to_string(),
                recorded_answer: (!recorded.is_empty()).then_some(recorded),
                recorded_correct,
            }
        })
        .collect()
}

fn as_bool(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn passk_cases(dir: &std::path::Path) -> Vec<Case> {
    let path = dir.join("traces/passk5_r1_distill_qwen_14b_aime.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut out = Vec::new();
    for r in v["results"].as_array().expect("results[]") {
        let truth = r["correct_answer"]
            .as_str()
            .expect("correct_answer")
            .trim()
            .to_string();
        let pid = r["problem_id"].as_str().unwrap_or("?");
        for s in r["solutions"].as_array().expect("solutions[]") {
            let sid = match &s["solution_id"] {
                serde_json::Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            out.push(Case {
                id: format!("{pid}#{sid}"),
                truth: truth.clone(),
                completion: s["reasoning"].as_str().unwrap_or("").to_string(),
                recorded_answer: s["answer"]
                    .as_str()
                    .map(|a| a.trim().to_string())
                    .filter(|a| !a.is_empty()),
                recorded_correct: as_bool(&s["correct"]),
            });
        }
    }
    out
}

#[test]
fn r1_aime_completions_agree_with_recorded_grades() {
    let Some(dir) = shared_dir() else { return };
    let cases = r1_csv_cases(&dir);
    let (t, extraction_diffs, verdict_diffs) = run("aime_2024_deepseek_r1_completions.csv", &cases);
    assert_eq!(t.n, 30);
    assert_eq!(
        t.verdict_agrees, 30,
        "verdict disagreements: {verdict_diffs:?}"
    );
    assert_eq!(t.ours_correct, 23);
    assert_eq!(t.recorded_correct, 23);
    assert_eq!(t.no_answer, 0);
    // The only extraction disagreement: the recorded answer came from a tentative box in the think part.
    assert_eq!(extraction_diffs, vec!["2024-I-8".to_string()]);
    let i8 = cases.iter().find(|c| c.id == "2024-I-8").expect("2024-I-8");
    let ours = extract(
        &Extractor::Boxed,
        &i8.completion,
        &ExtractOptions::default(),
    );
    assert_eq!(ours.as_deref(), Some("2927"));
    let after_think = &i8.completion[i8.completion.rfind("</think>").expect("tag")..];
    assert!(after_think.contains("\\boxed{2927}") && !after_think.contains("2926"));
}

#[test]
fn passk_r1_distill_14b_agrees_with_recorded_grades() {
    let Some(dir) = shared_dir() else { return };
    let cases = passk_cases(&dir);
    let (t, extraction_diffs, verdict_diffs) = run("passk5_r1_distill_qwen_14b_aime.json", &cases);
    assert_eq!(t.n, 45);
    assert!(
        extraction_diffs.is_empty(),
        "extraction disagreements: {extraction_diffs:?}"
    );
    assert!(
        verdict_diffs.is_empty(),
        "verdict disagreements: {verdict_diffs:?}"
    );
    assert_eq!(t.ours_correct, 45);
}
