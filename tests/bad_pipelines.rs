//! A corpus of invalid pipelines: each must be refused before anything runs, with exit
//! code 2, the file and line, and a message saying what is wrong.

mod common;
use common::*;

const HEAD: &str =
    "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim}\n";

/// (case name, pipeline text, expected message part, expected `file:line` suffix, extra args)
/// (case name, pipeline text, expected message part, expected line, extra args)
type Case = (
    &'static str,
    String,
    &'static str,
    Option<usize>,
    Vec<&'static str>,
);

fn corpus() -> Vec<Case> {
    let n = |body: &str| format!("{HEAD}nodes:\n{body}");
    vec![
        ("unknown kind", n("  a: {kind: reasonn, model: m, prompt: reason/default}\n"), "unknown kind `reasonn`", Some(6), vec![]),
        ("unknown node field", n("  a: {kind: reason, model: m, prompt: reason/default, temprature: 1}\n"), "unknown field `temprature`", Some(6), vec![]),
        ("unknown top-level field", format!("{HEAD}colour: red\nnodes:\n  a: {{kind: reason, model: m, prompt: reason/default}}\n"), "unknown field `colour`", Some(5), vec![]),
        ("unknown sampling parameter", "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m:\n    provider: sim\n    params: {temprature: 0.6}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "unknown field `temprature`", Some(6), vec![]),
        ("wrong type", "name: bad\nproblems: {path: data/arithmetic.csv}\nsamples: many\nmodels:\n  m: {provider: sim}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "`samples`", Some(3), vec![]),
        ("missing nodes", HEAD.to_string(), "missing field `nodes`", None, vec![]),
        ("unknown provider", "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: openia}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "unknown provider `openia`", Some(4), vec![]),
        ("unknown model", n("  a: {kind: reason, model: gpt, prompt: reason/default}\n"), "unknown model `gpt`", Some(6), vec![]),
        ("missing model", n("  a: {kind: reason, prompt: reason/default}\n"), "needs `model:`", Some(6), vec![]),
        ("missing prompt file", n("  a: {kind: reason, model: m, prompt: reason/nope}\n"), "prompt `reason/nope` not found", Some(6), vec![]),
        ("missing input", n("  a: {kind: extract}\n"), "needs `input:`", Some(6), vec![]),
        ("input to unknown node", n("  a: {kind: extract, input: ghost}\n"), "there is no node `ghost`", Some(6), vec![]),
        ("unknown template variable", n("  s: {kind: reason, model: m, prompt: reason/with_summaries}\n"), "uses `{{summaries}}`", Some(6), vec![]),
        ("unknown output field", n("  a: {kind: reason, model: m, prompt: reason/default}\n  e: {kind: extract, input: a.txt}\n"), "which kind `reason` does not provide", Some(7), vec![]),
        ("cycle", n("  a: {kind: extract, input: b}\n  b: {kind: extract, input: a}\n"), "cycle", Some(6), vec![]),
        ("self reference", n("  a: {kind: extract, input: a}\n"), "cannot use its own output", Some(6), vec![]),
        ("previous outside repeat", n("  a: {kind: extract, input: previous.a}\n"), "only works inside a repeat body", Some(6), vec![]),
        ("previous without round 0", n("  r:\n    repeat: 2\n    body:\n      s: {kind: summarize, model: m, prompt: summarize/backtracking, input: previous.attempt}\n"), "there is no node `attempt` in this repeat body", Some(9), vec![]),
        ("bad repeat count", n("  r:\n    repeat: two\n    body:\n      a: {kind: reason, model: m, prompt: reason/default}\n"), "`repeat:` must be a whole number", Some(7), vec![]),
        ("unknown repeat field", n("  r:\n    repeat: 2\n    times: 3\n    body:\n      a: {kind: reason, model: m, prompt: reason/default}\n"), "unknown field `times` in repeat block", Some(8), vec![]),
        ("bad condition", n("  a: {kind: reason, model: m, prompt: reason/default}\n  b: {kind: reason, model: m, prompt: reason/default, when: \"a.correct ==\"}\n"), "bad `when:` condition", Some(7), vec![]),
        ("condition without field", n("  a: {kind: reason, model: m, prompt: reason/default}\n  b: {kind: reason, model: m, prompt: reason/default, when: \"not a\"}\n"), "say which output", Some(7), vec![]),
        ("unknown strategy", n("  a: {kind: reason, model: m, prompt: reason/default}\n  s: {kind: summarize, strategy: telepathy, model: m, prompt: summarize/backtracking, input: a}\n"), "unknown strategy", Some(7), vec![]),
        ("missing problem file", "name: bad\nproblems: {path: data/aime_2024.csv}\nmodels:\n  m: {provider: sim}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "--set problems.path=PATH", Some(2), vec![]),
        ("range past the end", n("  a: {kind: reason, model: m, prompt: reason/default}\n").to_string(), "reaches past the last row", None, vec!["--index_range", "0-99"]),
        ("unknown question id", n("  a: {kind: reason, model: m, prompt: reason/default}\n"), "unknown id `nope`", None, vec!["--question_ids", "nope"]),
        ("range and ids together", "name: bad\nproblems: {path: data/arithmetic.csv, index_range: 0-2, question_ids: [add-1]}\nmodels:\n  m: {provider: sim}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "exclude each other", Some(2), vec![]),
        ("filters select nothing", n("  a: {kind: reason, model: m, prompt: reason/default}\n"), "select no problem", None, vec!["--index_range", "0-0", "--exclude_question_ids", "add-1"]),
        ("bad --set", n("  a: {kind: reason, model: m, prompt: reason/default}\n"), "is not PATH=VALUE", None, vec!["--set", "samples"]),
        ("--set makes it invalid", n("  a: {kind: reason, model: m, prompt: reason/default}\n"), "`samples: 0` is out of range", None, vec!["--set", "samples=0"]),
        ("invalid yaml", "name: bad\nproblems: {path: data/arithmetic.csv\nnodes: {}\n".into(), "invalid YAML", None, vec![]),
        ("extends a missing file", "extends: base.yaml\nname: x\n".into(), "no such file", Some(1), vec![]),
        ("bad node name", n("  \"a b\": {kind: reason, model: m, prompt: reason/default}\n"), "may only use letters", Some(6), vec![]),
                ("unknown chat format", "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim, endpoint: completions, chat_format: llama9}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "unknown chat format `llama9`", Some(4), vec![]),
                ("when on an aggregating node", "name: bad\nproblems: {path: data/arithmetic.csv}\nsamples: 3\nmodels:\n  m: {provider: sim}\ngrade: {extract: boxed}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n  v: {kind: vote, input: a, when: \"a.correct\"}\n".into(), "runs once over all samples", Some(9), vec![]),
        ("ungraded answer referenced", n("  a: {kind: reason, model: m, prompt: reason/default}\n  b: {kind: reason, model: m, prompt: reason/default, when: \"not a.correct\"}\n"), "that is not graded", Some(7), vec![]),
        ("unknown truth column", n("  a: {kind: reason, model: m, prompt: reason/default}\n  e: {kind: extract, input: a}\n  g: {kind: grade, input: e, truth_column: anwser}\n"), "no column `anwser`", Some(8), vec![]),
        ("negative tolerance", format!("{HEAD}grade: {{extract: boxed, compare: numeric, rel_tol: -1}}\nnodes:\n  a: {{kind: reason, model: m, prompt: reason/default}}\n"), "`rel_tol: -1` is out of range", Some(5), vec![]),
        ("absurd sim latency", n("  a: {kind: reason, model: m, prompt: reason/default}\n"), "`sim.latency_ms` must be", None, vec!["--set", "models.m.sim.latency_ms=1e300"]),
        ("round overflow", n("  a: {kind: reason, model: m, prompt: reason/default}\n  r:\n    repeat: 2\n    start: 4294967295\n    body:\n      b: {kind: reason, model: m, prompt: reason/default}\n"), "`start:` must be", Some(9), vec![]),
        ("zero max_in_flight", "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim, max_in_flight: 0}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n".into(), "max_in_flight", Some(4), vec![]),
    ]
}

#[test]
fn every_bad_pipeline_is_refused_with_file_line_and_exit_2() {
    let p = Project::new();
    let cases = corpus();
    assert!(cases.len() >= 20);
    let mut failures = Vec::new();
    for (i, (name, yaml, want, line, extra)) in cases.iter().enumerate() {
        let file = format!("pipelines/bad{i}.yaml");
        p.write(&file, yaml);
        for cmd in ["validate", "run"] {
            let mut args = vec!["pipeline", cmd, file.as_str()];
            args.extend(extra.iter().copied());
            let out = p.run(&args);
            let msg = text(&out);
            let mut problems = Vec::new();
            if out.status.code() != Some(2) {
                problems.push(format!("exit {:?}", out.status.code()));
            }
            if !msg.contains(want) {
                problems.push(format!("message lacks `{want}`"));
            }
            if let Some(l) = line
                && !msg.contains(&format!("bad{i}.yaml:{l}:"))
            {
                problems.push(format!("no `bad{i}.yaml:{l}:`"));
            }
            if msg.contains("panicked") {
                problems.push("panic".into());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{name} ({cmd}): {}\n---\n{msg}",
                    problems.join(", ")
                ));
            }
        }
    }
    assert!(p.runs("bad").is_empty(), "nothing may run");
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn reports_all_errors_at_once() {
    let p = Project::new();
    p.write("pipelines/many.yaml", &format!("{HEAD}nodes:\n  a: {{kind: reasonn}}\n  b: {{kind: reason, model: zz, prompt: reason/default}}\n  c: {{kind: extract, input: ghost}}\n"));
    let out = p.run(&["pipeline", "validate", "pipelines/many.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(msg.contains("3 error(s)"), "{msg}");
}
