//! The paper's methods through the real binary on the `sim` model: the calls each summary
//! strategy makes, what the attempt prompts hold, seeded random-k, the "Wait" chain, voting,
//! round 0 shared between strategies as cache hits, and importing earlier reasoning.

mod common;
use common::*;
use serde_json::Value;

fn run_ok(p: &Project, args: &[&str]) -> String {
    let out = p.run(args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    t
}

/// The paper graph with a summary strategy (and its fields) over data/arithmetic.csv.
fn with_strategy(name: &str, summary: &str, extra: &str) -> String {
    format!(
        r#"name: {name}
problems: {{path: data/arithmetic.csv}}
models:
  reasoner: {{provider: sim, model: r, sim: {{trace_words: 600}}}}
grade: {{extract: boxed, compare: math}}
{extra}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: reason/default}}
  rounds:
    repeat: 4
    body:
      summary: {{{summary}, input: previous.attempt}}
      attempt: {{kind: reason, model: reasoner, prompt: reason/with_summaries, vars: {{summaries: all.summary}}}}
"#
    )
}

fn node<'a>(r: &'a Value, problem: usize, id: &str) -> &'a Value {
    &r["problems"][problem]["samples"][0][id]
}

#[test]
fn each_strategy_makes_the_calls_it_should() {
    let p = Project::new();
    let llm = "kind: summarize, strategy: llm, model: reasoner, prompt: summarize/backtracking";
    let chunked = "kind: summarize, strategy: chunked, model: reasoner, prompt: summarize/chunk, chunk_words: 200, overlap_words: 20";
    let cases = [
        ("llm", llm.to_string(), 9u64),
        ("chunked", chunked.to_string(), 0),
        (
            "first_k",
            "kind: summarize, strategy: first_k, k: 50".into(),
            5,
        ),
        (
            "last_k",
            "kind: summarize, strategy: last_k, k: 50".into(),
            5,
        ),
        (
            "random_k",
            "kind: summarize, strategy: random_k, k: 50".into(),
            5,
        ),
        (
            "post_think",
            "kind: summarize, strategy: post_think".into(),
            5,
        ),
        (
            "answer_only",
            "kind: summarize, strategy: answer_only".into(),
            5,
        ),
    ];
    for (name, summary, calls_per_problem) in cases {
        let pname = format!("s-{}", name.replace('_', "-"));
        p.write(
            &format!("pipelines/{pname}.yaml"),
            &with_strategy(&pname, &summary, ""),
        );
        run_ok(
            &p,
            &[
                "pipeline",
                "run",
                &format!("pipelines/{pname}.yaml"),
                "--no-progress",
                "--cache",
                &format!("c-{name}"),
            ],
        );
        let run = p.last_run(&pname);
        let m = metrics(&run);
        let r = json(&run.join("results.json"));
        let s1 = node(&r, 0, "summary_1");
        assert_eq!(s1["output"]["strategy"], name, "{name}");
        let attempt0 = node(&r, 0, "attempt_0")["output"].clone();
        let summary = s1["output"]["text"].as_str().unwrap();
        match name {
            "chunked" => {
                // 600-word traces in 200-word chunks with 20 overlap: 4 chunks each
                let chunks = s1["output"]["chunks"].as_u64().unwrap();
                assert!(chunks >= 3, "{chunks}");
                assert_eq!(m["calls"].as_u64().unwrap() % 8, 0);
                assert!(m["calls"].as_u64().unwrap() >= 8 * (5 + 4 * 3));
                assert_eq!(
                    summary.matches("Summary (simulated)").count() as u64,
                    chunks,
                    "parts joined in order"
                );
            }
            "first_k" | "last_k" | "random_k" => {
                assert_eq!(s1["output"]["tokens"], 50);
                assert_eq!(s1["output"]["tokenizer"], "cl100k_base");
                let reasoning = attempt0["reasoning"].as_str().unwrap();
                if name == "first_k" {
                    assert!(reasoning.starts_with(summary), "first-k is a prefix");
                } else if name == "last_k" {
                    assert!(reasoning.ends_with(summary), "last-k is a suffix");
                } else {
                    // kept in order: every word of the subset appears in the trace
                    assert!(
                        summary.split_whitespace().count() < reasoning.split_whitespace().count()
                    );
                }
            }
            "post_think" => assert_eq!(summary, attempt0["answer_text"].as_str().unwrap()),
            "answer_only" => assert_eq!(
                summary,
                format!("The answer is {}.", attempt0["answer"].as_str().unwrap())
            ),
            _ => assert!(summary.contains("Summary (simulated)")),
        }
        if calls_per_problem > 0 {
            assert_eq!(m["calls"], 8 * calls_per_problem, "{name}: {m}");
        }
        // round 3's prompt holds the summaries of attempts 0, 1, 2 in order
        let prompt = node(&r, 0, "attempt_3")["output"]["prompt"]
            .as_str()
            .unwrap()
            .to_string();
        let mut at = 0;
        for (i, s) in ["summary_1", "summary_2", "summary_3"].iter().enumerate() {
            let label = format!(
                "Attempt {i}:\n{}",
                node(&r, 0, s)["output"]["text"].as_str().unwrap()
            );
            let pos = prompt[at..].find(&label).unwrap_or_else(|| {
                panic!("{name}: `{label}` missing or out of order in\n{prompt}")
            });
            at += pos + label.len();
        }
        assert!(!prompt.contains("Attempt 3:"));
    }
}

#[test]
fn random_k_is_seeded() {
    let p = Project::new();
    let rk = "kind: summarize, strategy: random_k, k: 40";
    p.write("pipelines/rk.yaml", &with_strategy("rk", rk, ""));
    let texts = |cache: &str, extra: &[&str]| {
        let mut args = vec![
            "pipeline",
            "run",
            "pipelines/rk.yaml",
            "--no-progress",
            "--cache",
            cache,
        ];
        args.extend_from_slice(extra);
        run_ok(&p, &args);
        let r = json(&p.last_run("rk").join("results.json"));
        (0..8)
            .map(|i| {
                node(&r, i, "summary_1")["output"]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    let a = texts("a", &[]);
    let b = texts("b", &[]);
    assert_eq!(a, b, "one seed, same subsets on a rerun without cache");
    let c = texts("c", &["--set", "seed=7"]);
    assert_ne!(a, c, "another seed, other subsets");
}

#[test]
fn wait_continuation_grows_the_context() {
    let p = Project::new();
    p.write(
        "pipelines/wait.yaml",
        "name: wait\nproblems: {path: data/arithmetic.csv}\nmodels:\n  r: {provider: sim, endpoint: completions, chat_format: chatml}\ngrade: {extract: boxed, compare: math}\nnodes:\n  attempt_0: {kind: reason, model: r, prompt: reason/default}\n  rounds:\n    repeat: 3\n    body:\n      attempt: {kind: continue, model: r, prompt: reason/default, input: previous.attempt}\n",
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/wait.yaml", "--no-progress"],
    );
    let run = p.last_run("wait");
    assert_eq!(metrics(&run)["calls"], 8 * 4);
    let r = json(&run.join("results.json"));
    let t = |id: &str| {
        node(&r, 0, id)["output"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t0 = t("attempt_0");
    let cut0 = &t0[..t0.rfind("</think>").unwrap()];
    assert!(
        t("attempt_1").starts_with(&format!("{cut0}Wait")),
        "round 1 continues round 0's trace after `Wait`"
    );
    let t1 = t("attempt_1");
    assert!(t("attempt_2").starts_with(&format!("{}Wait", &t1[..t1.rfind("</think>").unwrap()])));
    assert_eq!(t("attempt_3").matches("Wait").count(), 3);
    // the answer is read from the new text only
    let a3 = &node(&r, 0, "attempt_3")["output"];
    assert!(
        a3["new_text"]
            .as_str()
            .unwrap()
            .contains(&format!("\\boxed{{{}}}", a3["answer"].as_str().unwrap()))
    );
}

#[test]
fn vote_gives_majority_and_pass_at_k() {
    let p = Project::new();
    p.write(
        "pipelines/v.yaml",
        "name: v\nproblems: {path: data/arithmetic.csv}\nsamples: 5\nmodels:\n  r: {provider: sim}\ngrade: {extract: boxed, compare: math}\nnodes:\n  attempt_0: {kind: reason, model: r, prompt: reason/default}\n  vote: {kind: vote, input: attempt_0, k: [1, 5]}\n",
    );
    let t = run_ok(
        &p,
        &["pipeline", "run", "pipelines/v.yaml", "--no-progress"],
    );
    assert!(t.contains("majority@5 (round 0, vote node `vote`)"), "{t}");
    let r = json(&p.last_run("v").join("results.json"));
    for q in r["problems"].as_array().unwrap() {
        let v = &q["aggregates"]["vote"]["output"];
        let samples: Vec<&Value> = (0..5)
            .map(|s| &q["samples"][s]["attempt_0"]["output"])
            .collect();
        let c = samples.iter().filter(|o| o["correct"] == true).count() as f64;
        assert_eq!(v["n"], 5);
        assert_eq!(v["correct_count"].as_f64().unwrap(), c);
        assert!((v["pass_at"]["1"].as_f64().unwrap() - c / 5.0).abs() < 1e-12);
        assert_eq!(
            v["pass_at"]["5"].as_f64().unwrap(),
            if c > 0.0 { 1.0 } else { 0.0 }
        );
        let winner = v["answer"].as_str().unwrap();
        let votes = samples
            .iter()
            .filter(|o| o["answer"].as_str() == Some(winner))
            .count() as u64;
        assert_eq!(v["votes"].as_u64().unwrap(), votes);
        assert!(samples.iter().all(|o| {
            let a = o["answer"].as_str().unwrap();
            samples
                .iter()
                .filter(|x| x["answer"].as_str() == Some(a))
                .count() as u64
                <= votes
        }));
    }
}

#[test]
fn strategies_share_round_zero_through_the_cache() {
    let p = Project::new();
    let llm = "kind: summarize, strategy: llm, model: reasoner, prompt: summarize/backtracking";
    p.write("pipelines/a.yaml", &with_strategy("a", llm, ""));
    p.write(
        "pipelines/b.yaml",
        &with_strategy("b", "kind: summarize, strategy: last_k, k: 30", ""),
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/a.yaml", "--no-progress"],
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/b.yaml", "--no-progress"],
    );
    let m = metrics(&p.last_run("b"));
    assert_eq!(
        m["node_cache_hits"], 8,
        "exactly the 8 round-0 attempts are hits: {m}"
    );
    assert_eq!(m["calls"], 8 * 4);
}

#[test]
fn imports_initial_reasoning_and_rejects_bad_files() {
    let p = Project::new();
    let llm = "kind: summarize, strategy: llm, model: reasoner, prompt: summarize/backtracking";
    p.write("pipelines/im.yaml", &with_strategy("im", llm, ""));
    // an original-format file: iteration 0 of two problems
    let good = serde_json::json!({"results": [
        {"problem_id": "add-1", "iterations": [{"iteration": 0, "reasoning": "<think>17+25</think> so \\boxed{42}", "answer": "42", "correct": true, "finish_reason": "stop"}]},
        {"problem_id": "mul-1", "iterations": [{"iteration": 0, "reasoning": "I think \\boxed{90}", "answer": "90", "correct": false}]}
    ]});
    p.write("old.json", &good.to_string());
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/im.yaml",
            "--no-progress",
            "--load_initial_reasoning",
            "old.json",
            "--question_ids",
            "add-1,mul-1",
        ],
    );
    let run = p.last_run("im");
    let m = metrics(&run);
    assert_eq!(m["node_cache_hits"], 2, "{m}");
    let r = json(&run.join("results.json"));
    assert_eq!(node(&r, 0, "attempt_0")["output"]["answer"], "42");
    assert_eq!(node(&r, 1, "attempt_0")["output"]["correct"], false);
    // distill's own results.json imports too
    let prev = run.join("results.json");
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/im.yaml",
        "--no-progress",
        "--cache",
        "fresh",
        "--load_initial_reasoning",
        prev.to_str().unwrap(),
        "--question_ids",
        "add-1,mul-1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(metrics(&p.last_run("im"))["node_cache_hits"], 2);
    // bad files: each named, exit 2, nothing run
    let bad = [
        (
            r#"{"results": [{"problem_id": "nope", "iterations": [{"iteration": 0, "reasoning": "x"}]}]}"#,
            "`nope` is not in",
        ),
        (
            r#"{"results": [{"problem_id": "add-1", "question": "What is 1+1?", "iterations": [{"iteration": 0, "reasoning": "x"}]}]}"#,
            "question differs",
        ),
        (
            r#"{"results": [{"problem_id": "add-1", "correct_answer": "41", "iterations": [{"iteration": 0, "reasoning": "x"}]}]}"#,
            "answer `41` differs",
        ),
        (
            r#"{"results": [{"problem_id": "add-1", "iterations": [{"iteration": 0, "reasoning": null, "answer": "42"}]}]}"#,
            "`add-1` (sample 0, node `iteration_0`): no text to import",
        ),
        (r#"{"something": 1}"#, "not a recognized results file"),
        ("not json", "not JSON"),
    ];
    let before = p.runs("im").len();
    for (i, (body, want)) in bad.iter().enumerate() {
        p.write(&format!("bad{i}.json"), body);
        let out = p.run(&[
            "pipeline",
            "run",
            "pipelines/im.yaml",
            "--no-progress",
            "--cache",
            "c-bad",
            "--load_initial_reasoning",
            &format!("bad{i}.json"),
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(want), "{want}: {}", text(&out));
    }
    assert_eq!(
        p.runs("im").len(),
        before,
        "no run directory for a refused import"
    );
}

#[test]
fn vote_counts_the_samples_that_finished() {
    let p = Project::new();
    p.write(
        "pipelines/vf.yaml",
        "name: vf\nproblems: {path: data/arithmetic.csv}\nsamples: 5\nmodels:\n  r: {provider: sim, sim: {fail_rate: 0.3}}\ngrade: {extract: boxed, compare: math}\nnodes:\n  attempt_0: {kind: reason, model: r, prompt: reason/default}\n  vote: {kind: vote, input: attempt_0, k: [1]}\n",
    );
    let out = p.run(&["pipeline", "run", "pipelines/vf.yaml", "--no-progress"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some samples fail: {}",
        text(&out)
    );
    let r = json(&p.last_run("vf").join("results.json"));
    let mut partial = 0;
    for q in r["problems"].as_array().unwrap() {
        let done = (0..5)
            .filter(|&s| q["samples"][s]["attempt_0"]["status"] == "done")
            .count();
        let v = &q["aggregates"]["vote"];
        assert_eq!(
            v["status"], "done",
            "a vote runs over the samples that finished"
        );
        assert_eq!(v["output"]["n"].as_u64().unwrap() as usize, done);
        if done < 5 {
            partial += 1;
        }
    }
    assert!(partial > 0, "the fail rate should have failed some samples");
}

#[test]
fn regrading_updates_continue_nodes_and_votes() {
    let p = Project::new();
    p.write(
        "pipelines/rg.yaml",
        "name: rg\nproblems: {path: data/arithmetic.csv}\nsamples: 3\nmodels:\n  r: {provider: sim, endpoint: completions, chat_format: chatml, sim: {base_accuracy: 1.0}}\ngrade: {extract: boxed, compare: math}\nnodes:\n  attempt_0: {kind: reason, model: r, prompt: reason/default}\n  attempt_1: {kind: continue, model: r, prompt: reason/default, input: attempt_0}\n  vote: {kind: vote, input: attempt_1, k: [1, 3]}\n",
    );
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/rg.yaml", "--no-progress"],
    );
    let run = p.last_run("rg");
    let before = json(&run.join("results.json"));
    assert_eq!(
        before["problems"][0]["aggregates"]["vote"]["output"]["correct"],
        true
    );
    // an extractor that finds nothing: every attempt and every vote becomes wrong
    let out = p.run(&[
        "grade",
        run.join("results.json").to_str().unwrap(),
        "--extract",
        "regex:NOPE(\\d+)",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = json(&run.join("results.regraded.json"));
    for q in after["problems"].as_array().unwrap() {
        for s in 0..3 {
            assert_eq!(
                q["samples"][s]["attempt_1"]["output"]["correct"], false,
                "continue nodes are regraded"
            );
        }
        let v = &q["aggregates"]["vote"]["output"];
        assert_eq!(v["correct"], false);
        assert_eq!(v["correct_count"], 0);
        assert_eq!(v["pass_at"]["3"], 0.0);
        assert!(v["answer"].is_null());
    }
    assert!(
        text(&out).contains("vote"),
        "changed votes are listed: {}",
        text(&out)
    );
    // and the report reads the regraded file (pretty-printed, not a problem a line)
    let out = p.run(&[
        "report",
        run.join("results.regraded.json").to_str().unwrap(),
        "--out",
        "rep",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rep = json(&p.path().join("rep/report.json"));
    assert_eq!(rep["runs"][0]["problems"], 8);
    assert_eq!(
        rep["runs"][0]["rounds"][0]["per_round_accuracy"]["value"],
        0.0
    );
}

/// A word-level tokenizer.json: every word one token (unknown words are [UNK]).
const WORDS_TOKENIZER: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [{"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
  "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}
}"#;

#[test]
fn token_strategies_count_in_the_producing_models_tokenizer() {
    let p = Project::new();
    p.write("pipelines/tok.json", WORDS_TOKENIZER);
    let fk = "kind: summarize, strategy: first_k, k: 7, ellipsis: true";
    let text = with_strategy("fk", fk, "").replace(
        "sim: {trace_words: 600}}",
        "sim: {trace_words: 600}, tokenizer: tok.json}",
    );
    p.write("pipelines/fk.yaml", &text);
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/fk.yaml", "--no-progress"],
    );
    let r = json(&p.last_run("fk").join("results.json"));
    let out = &node(&r, 0, "summary_1")["output"];
    assert!(
        out["tokenizer"].as_str().unwrap().ends_with("tok.json"),
        "{out}"
    );
    assert_eq!(out["tokens"], 7);
    let t = out["text"].as_str().unwrap();
    assert!(t.ends_with("..."), "a cut first-k ends with ...: {t}");
    assert_eq!(
        t.trim_end_matches("...").split_whitespace().count(),
        7,
        "{t}"
    );
    // without a model tokenizer: cl100k_base, as before
    p.write("pipelines/fk2.yaml", &with_strategy("fk2", fk, ""));
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/fk2.yaml", "--no-progress"],
    );
    let r = json(&p.last_run("fk2").join("results.json"));
    assert_eq!(
        node(&r, 0, "summary_1")["output"]["tokenizer"],
        "cl100k_base"
    );
}

#[test]
fn chunked_summaries_take_overlap_zero_and_a_separator() {
    let p = Project::new();
    let c = "kind: summarize, strategy: chunked, model: reasoner, prompt: summarize/chunk, chunk_words: 200, overlap_words: 0, chunk_separator: \"\\n\"";
    p.write("pipelines/ch.yaml", &with_strategy("ch", c, ""));
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/ch.yaml", "--no-progress"],
    );
    let r = json(&p.last_run("ch").join("results.json"));
    let out = &node(&r, 0, "summary_1")["output"];
    let n = out["chunks"].as_u64().unwrap();
    assert!(n >= 2, "{out}");
    assert!(!out["text"].as_str().unwrap().contains("\n\n"), "{out}");
}

#[test]
fn sample_offset_makes_other_draws_and_keeps_its_own() {
    let p = Project::new();
    let llm = "kind: summarize, strategy: llm, model: reasoner, prompt: summarize/backtracking";
    p.write("pipelines/s.yaml", &with_strategy("s", llm, ""));
    run_ok(
        &p,
        &["pipeline", "run", "pipelines/s.yaml", "--no-progress"],
    );
    // offset 1 shares no model call with offset 0
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/s.yaml",
        "--no-progress",
        "--offline",
        "--set",
        "sample_offset=1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // its own rerun hits
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/s.yaml",
            "--no-progress",
            "--set",
            "sample_offset=1",
        ],
    );
    run_ok(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/s.yaml",
            "--no-progress",
            "--offline",
            "--set",
            "sample_offset=1",
        ],
    );
    // samples: 2 at offset 0 draws sample 1 = offset 1's sample 0: a cache hit
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/s.yaml",
        "--no-progress",
        "--offline",
        "--set",
        "samples=2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
