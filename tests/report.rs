//! Tests of `distill::report`: small results files written here, whose figures are computed by
//! hand in each test (ties, skipped rounds carried forward and kept in the denominator, missing
//! rounds, failed and not-run attempts left out of it, counted apart and listed), Wilson
//! reference values, the seeded bootstrap, several runs side by side with grouping, and the
//! original tool's two formats (including the shared pass@k trace when `../shared` is
//! present). Interrupted and budget-stopped runs: `report_stopped.rs`.

mod report_support;

use std::path::{Path, PathBuf};

use distill::report::stats::{paired_bootstrap, wilson};
use distill::report::{build, compact_table, report};
use report_support::*;
use serde_json::{Value, json};

/// Seven problems over rounds 0–2 (S = skipped, F = failed, N = not run, – = no record):
/// p1 ✗ ✓ S(✓) · p2 ✓ S S · p3 ✗ F N (problem failed; a not_run record without a reason, as
/// older files have) · p4 ✗ ✗ – · p5 selected but absent · p6 ✓ ✗ ✗ · p7 ✗ ✗ ✓.
fn hand_run(dir: &Path) -> PathBuf {
    let s = |v: Vec<(String, Value)>| vec![sample(v)];
    let mut p1_0 = attempt(0, "done", false);
    p1_0.1["output"]["finish_reason"] = json!("length");
    let problems = vec![
        problem(
            "p1",
            "ok",
            s(vec![
                p1_0,
                summary(1),
                attempt(1, "done", true),
                attempt(2, "skipped", false),
            ]),
        ),
        problem(
            "p2",
            "ok",
            s(vec![
                attempt(0, "done", true),
                attempt(1, "skipped", false),
                attempt(2, "skipped", false),
            ]),
        ),
        problem(
            "p3",
            "failed",
            s(vec![
                attempt(0, "done", false),
                attempt(1, "failed", false),
                attempt(2, "not_run", false),
            ]),
        ),
        problem(
            "p4",
            "ok",
            s(vec![attempt(0, "done", false), attempt(1, "done", false)]),
        ),
        problem(
            "p6",
            "ok",
            s(vec![
                attempt(0, "done", true),
                attempt(1, "done", false),
                attempt(2, "done", false),
            ]),
        ),
        problem(
            "p7",
            "ok",
            s(vec![
                attempt(0, "done", false),
                attempt(1, "done", false),
                attempt(2, "done", true),
            ]),
        ),
    ];
    let config = json!({
        "pipeline": {"samples": 1, "grade": {"extract": "boxed"},
                     "models": {"r": {"provider": "fake", "model": "m",
                                      "price": {"input_per_m": 1.0, "output_per_m": 2.0}}}},
        "problems": {"path": "nowhere.csv", "selected": ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]},
        "provenance": {"simulated_models": []}
    });
    write_run(dir, problems, Some(config))
}

#[test]
fn hand_computed_figures_with_skips_failures_and_missing_rounds() {
    let tmp = tempfile::tempdir().unwrap();
    let run = hand_run(&tmp.path().join("run"));
    let out = tmp.path().join("out");
    let md = report(&opts(vec![run], &out)).unwrap();
    let j = read_json(&out.join("report.json"));
    let r = &j["runs"][0];
    assert_eq!(r["problems"], 7);
    let rounds = r["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    // over the attempts with a verdict (p3's F and N, p5's absent rounds are left out):
    // per-round accuracy: r0 {p2, p6} of 6; r1 {p1, p2 carried} of 5 (p3 F); r2 {p1 carried,
    // p2 carried, p7} of 5 (p4 missing carries ✗; p3 N)
    // cumulative accuracy over the same attempts: r0 2/6, r1 {p1, p2, p6} 3/5, r2 +p7 4/5
    for (i, (acc, cum, n)) in [(2.0, 2.0, 6.0), (2.0, 3.0, 5.0), (3.0, 4.0, 5.0)]
        .iter()
        .enumerate()
    {
        let a = &rounds[i]["per_round_accuracy"];
        assert!(close(&a["value"], acc / n), "round {i}: {a}");
        assert_eq!(a["n"].as_f64().unwrap(), *n, "n = attempts with a verdict");
        let (lo, hi) = wilson(*acc, *n);
        assert!(close(&a["ci_low"], lo) && close(&a["ci_high"], hi));
        let c = &rounds[i]["cumulative_accuracy"];
        assert!(close(&c["value"], cum / n) && c["n"] == a["n"], "{c}");
    }
    // how every attempt ended: each in exactly one count
    let counts = |i: usize| {
        [
            "verdicts", "graded", "carried", "missing", "failed", "not_run",
        ]
        .map(|k| rounds[i][k].as_u64().unwrap())
    };
    assert_eq!(counts(0), [6, 6, 0, 0, 0, 1]); // p5 not run
    assert_eq!(counts(1), [5, 4, 1, 0, 1, 1]); // p2 carried; p3 failed; p5
    assert_eq!(counts(2), [5, 2, 2, 1, 0, 2]); // p1, p2 carried; p4 missing; p3, p5 not run
    assert_eq!(rounds[2]["not_run_reasons"], json!({"interrupted": 2}));
    assert_eq!(
        (
            r["failed_attempts"].as_u64(),
            r["not_run_attempts"].as_u64()
        ),
        (Some(1), Some(4))
    );
    // tokens: 100 + 50 per done node (round 1 adds p1's summary); cost $1/M in, $2/M out
    assert_eq!(rounds[0]["prompt_tokens"], 600);
    assert_eq!(rounds[0]["completion_tokens"], 300);
    assert_eq!(rounds[1]["prompt_tokens"], 500);
    assert!(close(&rounds[0]["cost_usd"], 6.0 * 200.0 / 1e6));
    assert_eq!(rounds[0]["truncated"], 1);
    assert_eq!(rounds[0]["finish_reasons"]["length"], 1);
    assert!(close(&rounds[0]["mean_reasoning_chars"], 10.0));
    // outcome classes, over verdicts; p3 and p5 have none at the last round
    let o = &r["outcomes"];
    assert_eq!(o["improved"], json!(["p1", "p7"]));
    assert_eq!(o["regressed"], json!(["p6"]));
    assert_eq!(o["always_right"], json!(["p2"]));
    assert_eq!(o["never_right"], json!(["p4"]));
    assert_eq!(o["no_verdict"], json!(["p3", "p5"]));
    // failed and not-run problems are listed, never dropped
    let list = |k: &str| -> Vec<String> {
        r[k].as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list("failures"), ["p3"]);
    assert_eq!(list("not_run"), ["p3", "p5"]);
    assert!(
        md.contains("| p3 | failed | 1 |") && md.contains("| p5 | not_run | 3 | interrupted |"),
        "{md}"
    );
    // the run did not run everything it selected: every header says so
    let note = "STOPPED EARLY (interrupted): 5 of 7 problems finished, 1 incomplete, 1 not started; not run: 4 attempts (interrupted: 4)";
    assert_eq!(r["stopped_early"], note);
    assert!(
        md.starts_with(&format!("# distill report — {note}\n")),
        "{md}"
    );
    assert!(
        md.contains(&format!("## run t abcdef\n\n**{note}**")),
        "{md}"
    );
    // round 0 → last, paired over problems with a verdict at both: p1 +1, p2 0, p4 0, p6 −1,
    // p7 +1 → +1/5
    assert!(close(&r["first_vs_last"]["diff"], 1.0 / 5.0));
    assert_eq!(r["first_vs_last"]["n"], 5);
    // every output names the metrics and the counts
    assert!(md.contains("## per-round accuracy") && md.contains("## cumulative accuracy"));
    assert!(
        md.contains("| round | t abcdef | failed | not run |"),
        "{md}"
    );
    assert!(
        md.contains("| 0 | 33.3% [") && md.contains("(2/6) | 0 | 1 |"),
        "{md}"
    );
    assert!(
        md.contains("(2/5) | 1 | 1 |") && md.contains("(3/5) | 0 | 2 |"),
        "{md}"
    );
    assert!(
        md.contains(
            "Failed and not-run attempts have no verdict: they are left out of the denominator"
        ),
        "the legend says what the denominator is: {md}"
    );
    assert!(!md.contains("failed attempts are wrong"));
    let csv = std::fs::read_to_string(out.join("report.csv")).unwrap();
    assert!(
        csv.starts_with("run,group,metric,round,k,source,value,ci_low,ci_high,successes,n,failed,not_run,stopped_early\n"),
        "{csv}"
    );
    let row = csv
        .lines()
        .find(|l| l.starts_with("t abcdef,,per-round accuracy,2,,,0.6,"))
        .unwrap_or_else(|| panic!("{csv}"));
    assert!(row.ends_with(&format!(",3,5,0,2,\"{note}\"")), "{row}");
    assert!(csv.contains(",cumulative accuracy,2,"));
    assert!(csv.contains(",not run attempts (interrupted),2,"), "{csv}");
    assert_eq!(std::fs::read_to_string(out.join("report.md")).unwrap(), md);
    for svg in ["accuracy_vs_round.svg", "accuracy_vs_tokens.svg"] {
        let t = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(
            t.contains("<svg") && t.contains("per-round accuracy") && t.contains("STOPPED EARLY"),
            "{svg}"
        );
    }
    let t = std::fs::read_to_string(out.join("accuracy_vs_round.svg")).unwrap();
    assert!(t.contains("(n=5–6)"), "n per round, in the legend");
    // the compact table says the same
    let compact = compact_table(&tmp.path().join("run")).unwrap();
    assert!(
        compact.starts_with(&format!("7 problems × 1 sample(s) — {note}\n")),
        "{compact}"
    );
    assert!(
        compact.contains("| carried | failed | not run |"),
        "{compact}"
    );
    assert!(compact.contains("| 2 | 60.0% (3/5) |"), "{compact}");
    assert!(compact.contains("| 1 | 40.0% (2/5) |"), "{compact}");
    assert!(
        compact.contains("| 60.0% | 750 | 0 | 1 | 1 | 1 |"),
        "{compact}"
    );
    assert!(compact.contains("failed: p3"), "{compact}");
    assert!(
        compact.contains("not run (interrupted: 4): p3, p5"),
        "{compact}"
    );
}

#[test]
fn default_out_dir_is_the_single_runs_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = hand_run(&tmp.path().join("run"));
    let mut o = opts(vec![run.join("results.json")], tmp.path());
    o.out_dir = None;
    report(&o).unwrap();
    assert!(run.join("report.md").is_file() && run.join("report.json").is_file());
}

#[test]
fn ties_majority_and_pass_at_k_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let smp = |answer: Option<&str>, ok: bool| {
        let (id, mut v) = attempt(0, "done", ok);
        v["output"]["answer"] = json!(answer);
        sample(vec![(id, v)])
    };
    // q1: 5✗ 7✓ 5✗ 7✓ — a 2–2 tie, the first group (5, wrong) wins: majority wrong; c = 2
    // q2: 3✓ 4✗ 6✗ none — a 1–1–1 tie, the first (3, right) wins: majority right; c = 1
    let mut q1 = problem(
        "q1",
        "ok",
        vec![
            smp(Some("5"), false),
            smp(Some("7"), true),
            smp(Some("5"), false),
            smp(Some("7"), true),
        ],
    );
    let q2 = problem(
        "q2",
        "ok",
        vec![
            smp(Some("3"), true),
            smp(Some("4"), false),
            smp(Some("6"), false),
            smp(None, false),
        ],
    );
    // a vote node on q1 only: q2 has no vote (no verdict): left out, counted as not run
    q1["aggregates"] = json!({"vote": {"node": "vote", "kind": "vote", "round": 0, "status": "done",
        "output": {"correct": false, "n": 4, "pass_at": {"2": 0.8333333333333334}}}});
    let run = write_run(&tmp.path().join("run"), vec![q1, q2], None);
    let rep = build(&opts(vec![run], tmp.path())).unwrap();
    let r = &rep.runs[0];
    assert_eq!(r.samples, 4);
    assert!((r.rounds[0].per_round_accuracy.value - (0.5 + 0.25) / 2.0).abs() < EPS);
    let get = |metric: &str, source: &str| {
        r.k_metrics
            .iter()
            .find(|m| m.metric == metric && m.source == source)
            .unwrap_or_else(|| panic!("{metric} {source}"))
            .estimate
            .value
    };
    // pass@2 = 1 − C(4−c,2)/C(4,2): q1 1 − 1/6, q2 1 − 3/6
    assert!((get("pass@1", "samples") - 0.375).abs() < EPS);
    assert!((get("pass@2", "samples") - (5.0 / 6.0 + 0.5) / 2.0).abs() < EPS);
    assert!((get("pass@4", "samples") - 1.0).abs() < EPS);
    assert!((get("majority@4", "samples") - 0.5).abs() < EPS);
    assert!((get("pass@2", "vote node `vote`") - 5.0 / 6.0).abs() < EPS);
    assert!((get("majority@4", "vote node `vote`") - 0.0).abs() < EPS);
    let vote = r
        .k_metrics
        .iter()
        .find(|m| m.metric == "pass@2" && m.source == "vote node `vote`")
        .unwrap();
    assert_eq!((vote.estimate.n, vote.failed, vote.not_run), (1, 0, 1));
}

#[test]
fn wilson_matches_published_reference_values() {
    // Newcombe (1998), Statistics in Medicine 17:857–872, and the usual textbook values
    for (x, n, lo, hi) in [
        (8.0, 10.0, 0.4902, 0.9433),
        (0.0, 10.0, 0.0, 0.2775),
        (10.0, 10.0, 0.7225, 1.0),
        (81.0, 263.0, 0.2553, 0.3662),
        (15.0, 148.0, 0.0624, 0.1605),
    ] {
        let (l, h) = wilson(x, n);
        assert!(
            (l - lo).abs() < 5e-5 && (h - hi).abs() < 5e-5,
            "{x}/{n}: [{l}, {h}]"
        );
    }
}

#[test]
fn bootstrap_is_reproducible_with_a_seed() {
    let a = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
    let b = [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
    let x = paired_bootstrap(&a, &b, 1000, 42);
    assert_eq!(x, paired_bootstrap(&a, &b, 1000, 42));
    assert!((x.diff - 3.0 / 8.0).abs() < EPS);
    assert!(x.ci_low <= x.diff && x.diff <= x.ci_high && x.ci_low >= -1.0 && x.ci_high <= 1.0);
    assert_ne!(x, paired_bootstrap(&a, &b, 1000, 43));
    // through the report: same seed, same numbers
    let tmp = tempfile::tempdir().unwrap();
    let run = hand_run(&tmp.path().join("run"));
    let o = opts(vec![run], tmp.path());
    let one = serde_json::to_value(build(&o).unwrap()).unwrap();
    let two = serde_json::to_value(build(&o).unwrap()).unwrap();
    assert_eq!(one, two);
    assert!(one["runs"][0]["first_vs_last"]["ci_low"].is_number());
}

#[test]
fn several_runs_side_by_side_grouped_by_regex_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = ["2024-I-1", "2024-I-2", "7", "8"];
    let mk = |name: &str, right: [bool; 4]| {
        let problems = ids
            .iter()
            .zip(right)
            .map(|(id, ok)| problem(id, "ok", vec![sample(vec![attempt(0, "done", ok)])]))
            .collect();
        let dir = tmp.path().join(name);
        std::fs::write(tmp.path().join("set.csv"), "id,question,solution,answer,year\n2024-I-1,a,,1,2024\n2024-I-2,b,,1,2024\n7,c,,1,1990\n8,d,,1,1991\n").unwrap();
        let cfg = json!({"problems": {"path": tmp.path().join("set.csv"), "selected": ids}});
        let run = write_run(&dir, problems, Some(cfg));
        // distinct labels: the pipeline name differs
        let mut doc = read_json(&run.join("results.json"));
        doc["pipeline"] = json!(name);
        std::fs::write(run.join("results.json"), doc.to_string()).unwrap();
        run
    };
    let a = mk("base", [true, false, false, false]);
    let b = mk("new", [true, true, true, false]);
    let mut o = opts(vec![a, b], &tmp.path().join("out"));
    o.group_by = Some(r"re:^(\d{4})-".into());
    let md = report(&o).unwrap();
    // one column per run, each with its failed and not-run counts
    assert!(
        md.contains("| round | base abcdef | failed | not run | new abcdef | failed | not run |"),
        "{md}"
    );
    assert!(md.contains("| 0 | 25.0% [") && md.contains("(3/4) |"));
    let rep = build(&o).unwrap();
    let g: Vec<(String, usize, f64)> = rep.runs[1]
        .groups
        .iter()
        .map(|g| {
            (
                g.group.clone(),
                g.problems,
                g.rounds[0].per_round_accuracy.value,
            )
        })
        .collect();
    assert_eq!(
        g,
        [
            ("(no match)".to_string(), 2, 0.5),
            ("2024".to_string(), 2, 1.0)
        ]
    );
    let c = &rep.comparisons[0];
    assert_eq!(
        (c.diff.n, c.run_a.as_str(), c.run_b.as_str()),
        (4, "base abcdef", "new abcdef")
    );
    assert!((c.diff.diff - 0.5).abs() < EPS);
    // by a problem-set column (from config.json's problems.path)
    o.group_by = Some("year".into());
    let rep = build(&o).unwrap();
    let names: Vec<&str> = rep.runs[0]
        .groups
        .iter()
        .map(|g| g.group.as_str())
        .collect();
    assert_eq!(names, ["1990", "1991", "2024"]);
    assert!(rep.runs[0].warnings.is_empty());
    o.group_by = Some("difficulty".into());
    let rep = build(&o).unwrap();
    assert!(
        rep.runs[0]
            .warnings
            .iter()
            .any(|w| w.contains("`difficulty`"))
    );
}

#[test]
fn reads_the_original_tools_iterated_and_pass_at_k_formats() {
    let tmp = tempfile::tempdir().unwrap();
    // iterated: b stopped after a right round 0 (carried), c's verdicts are strings, d failed
    // (no verdict: left out)
    let it = |i: u32, ok: Value| json!({"iteration": i, "answer": "x", "correct": ok, "reasoning": "abc", "finish_reason": "stop"});
    let doc = json!({"results": [
        {"problem_id": "a", "correct_answer": "1", "iterations": [it(0, json!(false)), it(1, json!(true)), it(2, json!(true))]},
        {"problem_id": "b", "correct_answer": "1", "iterations": [it(0, json!(true))]},
        {"problem_id": "c", "correct_answer": "1", "iterations": [it(0, json!("False")), it(1, json!("False")), it(2, json!("False"))]},
        {"problem_id": "d", "correct_answer": "1", "error": "timeout", "iterations": []}
    ]});
    let f = tmp.path().join("iterated.json");
    std::fs::write(&f, doc.to_string()).unwrap();
    let rep = build(&opts(vec![f], tmp.path())).unwrap();
    let r = &rep.runs[0];
    assert_eq!(r.format, "original (iterated)");
    let acc: Vec<f64> = r
        .rounds
        .iter()
        .map(|x| x.per_round_accuracy.value)
        .collect();
    assert_eq!(acc, [1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    // d was recorded as an error: no answer, so not run (not a wrong answer)
    assert_eq!(r.rounds[0].attempts.failed, 0);
    assert_eq!(r.rounds[0].attempts.not_run, 1);
    assert_eq!(r.rounds[0].attempts.not_run_reasons["recorded_error"], 1);
    assert_eq!(r.outcomes.improved, ["a"]);
    assert_eq!(r.outcomes.always_right, ["b"]);
    assert_eq!(r.outcomes.never_right, ["c"]);
    assert_eq!(r.outcomes.no_verdict, ["d"]);
    assert!(r.failures.is_empty());
    assert_eq!(r.rounds[1].attempts.missing, 1);

    // pass@k, as Python writes it: NaN tokens, "True" strings
    let raw = r#"{"experiment_name": "old", "results": [
      {"problem_id": "x", "correct_answer": "1", "consensus_correct": "True", "extra": NaN,
       "solutions": [{"answer": "1", "correct": "True"}, {"answer": "2", "correct": false}, {"answer": "1", "correct": true}]},
      {"problem_id": "y", "correct_answer": "1", "consensus_correct": false,
       "solutions": [{"answer": "3", "correct": false}, {"answer": "4", "correct": false}, {"answer": "1", "correct": true, "finish_reason": "length"}]}
    ]}"#;
    let f = tmp.path().join("passk.json");
    std::fs::write(&f, raw).unwrap();
    let rep = build(&opts(vec![f], tmp.path())).unwrap();
    let r = &rep.runs[0];
    assert_eq!((r.format.as_str(), r.samples), ("original (pass@k)", 3));
    assert!((r.rounds[0].per_round_accuracy.value - (2.0 / 3.0 + 1.0 / 3.0) / 2.0).abs() < EPS);
    assert_eq!(r.rounds[0].truncated, 1);
    let m = |name: &str, src: &str| {
        r.k_metrics
            .iter()
            .find(|m| m.metric == name && m.source.contains(src))
            .unwrap()
            .estimate
            .value
    };
    assert!((m("pass@3", "samples") - 1.0).abs() < EPS);
    assert!((m("majority@3", "consensus") - 0.5).abs() < EPS);
    // y: 3✗ 4✗ 1✓ — a three-way tie, the first (3, wrong) wins
    assert!((m("majority@3", "samples") - 0.5).abs() < EPS);
}

#[test]
fn reads_the_shared_pass_at_5_trace() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces/passk5_r1_distill_qwen_14b_aime.json");
    if !path.is_file() {
        println!("skipped: {} is absent", path.display());
        return;
    }
    // the expected figures, counted straight from the file
    let doc = read_json(&path);
    let results = doc["results"].as_array().unwrap();
    let (mut right, mut total, mut solved) = (0usize, 0usize, 0usize);
    for r in results {
        let sols = r["solutions"].as_array().unwrap();
        let c = sols.iter().filter(|s| s["correct"] == json!(true)).count();
        right += c;
        total += sols.len();
        solved += usize::from(c > 0);
    }
    let tmp = tempfile::tempdir().unwrap();
    let md = report(&opts(vec![path.clone()], tmp.path())).unwrap();
    let rep = build(&opts(vec![path], tmp.path())).unwrap();
    let r = &rep.runs[0];
    assert_eq!(r.problems, results.len());
    assert_eq!(r.samples, 5);
    let acc = r.rounds[0].per_round_accuracy.value;
    assert!((acc - right as f64 / total as f64).abs() < EPS, "{acc}");
    let pass5 = r
        .k_metrics
        .iter()
        .find(|m| m.metric == "pass@5" && m.source == "samples")
        .unwrap();
    assert!((pass5.estimate.value - solved as f64 / results.len() as f64).abs() < EPS);
    assert!(md.contains("original (pass@k)") && md.contains("majority@5"));
}

#[test]
fn a_results_file_cut_short_keeps_its_finished_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    let p = problem("p1", "ok", vec![sample(vec![attempt(0, "done", true)])]);
    let raw = format!(
        "{{\n\"run_id\": \"r-1\",\n\"pipeline\": \"t\",\n\"problems\": [\n{},\n{{\"id\": \"p2\", \"samp",
        p
    );
    std::fs::write(dir.join("results.json"), raw).unwrap();
    let rep = build(&opts(vec![dir], tmp.path())).unwrap();
    assert_eq!(rep.runs[0].problems, 1);
    assert_eq!(rep.runs[0].status, "truncated");
}

/// The report of one run is folded over its records as they are read; the report of a
/// loaded run (every problem held, as for several runs) must be the same, to the byte.
#[test]
fn a_streamed_report_equals_the_report_of_the_loaded_run() {
    use distill::report::load_run;
    use distill::report::metrics::{Grouping, run_report};
    let tmp = tempfile::tempdir().unwrap();
    let mut runs = vec![hand_run(&tmp.path().join("hand"))];
    // samples with votes, a problem without its vote, a problem that failed
    let smp = |ok: bool, answer: &str| {
        let (id, mut v) = attempt(0, "done", ok);
        v["output"]["answer"] = json!(answer);
        sample(vec![
            (id, v),
            attempt(1, if ok { "done" } else { "failed" }, ok),
        ])
    };
    let mut q1 = problem(
        "q1",
        "ok",
        vec![smp(true, "1"), smp(false, "2"), smp(true, "1")],
    );
    q1["aggregates"] = json!({"vote": {"node": "vote", "kind": "vote", "round": 1, "status": "done",
        "output": {"correct": true, "n": 3, "pass_at": {"2": 0.9, "3": 1.0}}}});
    let q2 = problem(
        "q2",
        "failed",
        vec![smp(false, "7"), smp(false, "8"), smp(true, "1")],
    );
    runs.push(write_run(&tmp.path().join("votes"), vec![q1, q2], None));
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    for f in [
        "traces/passk5_r1_distill_qwen_14b_aime.json",
        "original/results/post_think_seed_0/results.json",
    ] {
        if shared.join(f).is_file() {
            runs.push(shared.join(f));
        } else {
            println!("skipped: {} is absent", shared.join(f).display());
        }
    }
    for run in runs {
        for group in [None, Some("re:^(.)")] {
            let mut o = opts(vec![run.clone()], tmp.path());
            o.group_by = group.map(str::to_string);
            let streamed = serde_json::to_string(&build(&o).unwrap().runs[0]).unwrap();
            let g = group.map(|g| Grouping::parse(g).unwrap());
            let loaded = run_report(&load_run(&run).unwrap(), g.as_ref(), 500, 7);
            let loaded = serde_json::to_string(&loaded).unwrap();
            assert_eq!(streamed, loaded, "{}", run.display());
        }
    }
}
