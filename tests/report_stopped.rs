//! Tests of `distill report` on runs that did not run everything they selected, figures
//! counted by hand: an interrupted run (problems never started, a node never reached), a run
//! stopped by `--max_cost` (nodes `not_run: budget`), and a run stopping early by `when:`
//! (skipped rounds carry their verdict and keep the denominator). Accuracy is over the
//! attempts with a verdict; `failed` and `not run` are counted apart; the run says it stopped
//! early in every header.

mod report_support;

use distill::report::compact_table;
use report_support::*;
use serde_json::json;

#[test]
fn an_interrupted_run_counts_verdicts_only_and_says_it_stopped_early() {
    let tmp = tempfile::tempdir().unwrap();
    // a1 ✓ ✓ · a2 ✗ ✓ · a3 ✗ then interrupted (its summary and round 1 not_run) ·
    // a4, a5 selected but never started
    let not_run = |id: &str, kind: &str, round: u32| {
        let mut v = node(id, kind, round, "not_run", None);
        v["reason"] = json!("interrupted");
        (id.to_string(), v)
    };
    let problems = vec![
        problem(
            "a1",
            "ok",
            vec![sample(vec![
                attempt(0, "done", true),
                summary(1),
                attempt(1, "done", true),
            ])],
        ),
        problem(
            "a2",
            "ok",
            vec![sample(vec![
                attempt(0, "done", false),
                summary(1),
                attempt(1, "done", true),
            ])],
        ),
        problem(
            "a3",
            "incomplete",
            vec![sample(vec![
                attempt(0, "done", false),
                not_run("summary_1", "summarize", 1),
                not_run("attempt_1", "reason", 1),
            ])],
        ),
    ];
    let config = json!({
        "pipeline": {"samples": 1, "grade": {"extract": "boxed"}},
        "problems": {"selected": ["a1", "a2", "a3", "a4", "a5"]},
    });
    let dir = write_run_status(
        &tmp.path().join("run"),
        problems,
        Some(config),
        "interrupted",
    );
    let (stdout, j) = report_with_the_binary(&dir);
    let r = &j["runs"][0];
    assert_eq!(r["status"], "interrupted");
    // by hand over the verdicts: round 0 a1 ✓ a2 ✗ a3 ✗ → 1/3, not run a4 a5;
    // round 1 a1 ✓ a2 ✓ → 2/2, not run a3 (its node) + a4 a5; nothing failed
    assert_eq!(round_figures(r, 0), (1.0, 3, 0, 2));
    assert_eq!(round_figures(r, 1), (2.0, 2, 0, 3));
    assert!(close(&r["rounds"][1]["per_round_accuracy"]["value"], 1.0));
    assert!(close(&r["rounds"][1]["cumulative_accuracy"]["value"], 1.0));
    assert_eq!(r["rounds"][1]["not_run_reasons"], json!({"interrupted": 3}));
    assert_eq!(r["failed_attempts"], 0);
    assert_eq!(
        r["not_run_attempts"], 5,
        "2 problems × 2 rounds + a3's round-1 node"
    );
    assert_eq!(
        (r["problems"].as_u64(), r["problems_finished"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(r["failures"], json!([]), "nothing is counted as failed");
    let note = "STOPPED EARLY (interrupted): 2 of 5 problems finished, 1 incomplete, 2 not started; not run: 5 attempts (interrupted: 5)";
    assert_eq!(r["stopped_early"], note);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.starts_with(&format!("# distill report — {note}")),
        "{md}"
    );
    assert!(
        md.contains(&format!("| interrupted — **{note}** |")),
        "{md}"
    );
    assert!(
        md.contains("| 0 | 33.3% [") && md.contains("(1/3) | 0 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains("| 1 | 100.0% [") && md.contains("(2/2) | 0 | 3 |"),
        "{md}"
    );
    assert!(md.contains("| a4 | not_run | 2 | interrupted |"), "{md}");
    assert!(stdout.contains("STOPPED EARLY"), "{stdout}");
    let compact = compact_table(&dir).unwrap();
    assert!(
        compact.starts_with(&format!("5 problems × 1 sample(s) — {note}")),
        "{compact}"
    );
    assert!(
        compact.contains("| 0 | 33.3% (1/3) |") && compact.contains("| 1 | 100.0% (2/2) |"),
        "{compact}"
    );
    assert!(
        compact.contains("| 0 | 0 | 2 |") && compact.contains("| 0 | 0 | 3 |"),
        "{compact}"
    );
}

#[test]
fn a_budget_stopped_run_counts_not_run_apart_and_nothing_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    // b1 ✓ ✓ · b2 ✗ ✗ · b3 ✓ then budget · b4 budget at both rounds (status complete: the
    // engine stopped sending at --max_cost and finished every problem's record)
    let budget = |round: u32| {
        let (id, mut v) = attempt(round, "not_run", false);
        v["reason"] = json!("budget");
        v["error"] = json!("not sent: this run's spend reached --max_cost");
        (id, v)
    };
    let problems = vec![
        problem(
            "b1",
            "ok",
            vec![sample(vec![
                attempt(0, "done", true),
                attempt(1, "done", true),
            ])],
        ),
        problem(
            "b2",
            "ok",
            vec![sample(vec![
                attempt(0, "done", false),
                attempt(1, "done", false),
            ])],
        ),
        problem(
            "b3",
            "incomplete",
            vec![sample(vec![attempt(0, "done", true), budget(1)])],
        ),
        problem("b4", "incomplete", vec![sample(vec![budget(0), budget(1)])]),
    ];
    let config = json!({
        "pipeline": {"samples": 1, "grade": {"extract": "boxed"}},
        "problems": {"selected": ["b1", "b2", "b3", "b4"]},
    });
    let dir = write_run(&tmp.path().join("run"), problems, Some(config));
    let (_, j) = report_with_the_binary(&dir);
    let r = &j["runs"][0];
    assert_eq!(r["status"], "complete");
    // round 0: b1 ✓ b2 ✗ b3 ✓ → 2/3, not run b4; round 1: b1 ✓ b2 ✗ → 1/2, not run b3 b4
    assert_eq!(round_figures(r, 0), (2.0, 3, 0, 1));
    assert_eq!(round_figures(r, 1), (1.0, 2, 0, 2));
    assert!(close(
        &r["rounds"][0]["per_round_accuracy"]["value"],
        2.0 / 3.0
    ));
    assert!(close(&r["rounds"][1]["cumulative_accuracy"]["value"], 0.5));
    assert_eq!(r["not_run_reasons"], json!({"budget": 3}));
    assert_eq!(r["failed_attempts"], 0);
    assert_eq!(r["failures"], json!([]));
    let note = "STOPPED EARLY (budget): 2 of 4 problems finished, 2 incomplete; not run: 3 attempts (budget: 3)";
    assert_eq!(r["stopped_early"], note);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.starts_with(&format!("# distill report — {note}")),
        "{md}"
    );
    assert!(md.contains("Failed: none."), "{md}");
    assert!(md.contains("| b4 | incomplete | 2 | budget |"), "{md}");
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.starts_with("t abcdef,,per-round accuracy,1,,,0.5,")
                && l.contains(",1,2,0,2,")),
        "{csv}"
    );
    let compact = compact_table(&dir).unwrap();
    assert!(
        compact.starts_with(&format!("4 problems × 1 sample(s) — {note}")),
        "{compact}"
    );
    assert!(
        compact.contains("| 1 | 50.0% (1/2) |") && !compact.contains("\nfailed:"),
        "{compact}"
    );
}

#[test]
fn a_round_skipped_by_when_carries_its_verdict_and_keeps_the_denominator() {
    let tmp = tempfile::tempdir().unwrap();
    // early stopping: c1 right at round 0 skips rounds 1–2; c2 goes on ✗ ✗ ✓
    let problems = vec![
        problem(
            "c1",
            "ok",
            vec![sample(vec![
                attempt(0, "done", true),
                attempt(1, "skipped", false),
                attempt(2, "skipped", false),
            ])],
        ),
        problem(
            "c2",
            "ok",
            vec![sample(vec![
                attempt(0, "done", false),
                attempt(1, "done", false),
                attempt(2, "done", true),
            ])],
        ),
    ];
    let dir = write_run(&tmp.path().join("run"), problems, None);
    let (_, j) = report_with_the_binary(&dir);
    let r = &j["runs"][0];
    assert_eq!(round_figures(r, 1), (1.0, 2, 0, 0));
    assert_eq!(round_figures(r, 2), (2.0, 2, 0, 0));
    assert_eq!(r["rounds"][2]["carried"], 1);
    assert!(r["stopped_early"].is_null(), "{}", r["stopped_early"]);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        md.starts_with("# distill report\n") && !md.contains("**STOPPED EARLY"),
        "{md}"
    );
}
