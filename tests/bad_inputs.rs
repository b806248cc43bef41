//! The bad-input corpus of issue 13, by class: paths from config, numbers out of range,
//! nesting past the depth limits, template errors, `--set` that would silently mean
//! something else, input sizes and messages. Every case must be refused before anything
//! runs, by `validate` and by `run`: exit code 2, no panic, the place (`file:line`, the
//! `--set` argument or the flag) and a fix (a `hint:` line, or the flag's range).

mod common;
use common::*;

const HEAD: &str =
    "name: bad\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim}\n";

struct Case {
    name: &'static str,
    yaml: String,
    /// Other files of the project (prompts, problem sets).
    files: Vec<(&'static str, String)>,
    want: &'static str,
    /// Where: `@:N` is the pipeline file at line N; anything else is searched as written.
    at: &'static str,
    args: Vec<String>,
}

fn case(name: &'static str, yaml: String, want: &'static str, at: &'static str) -> Case {
    Case {
        name,
        yaml,
        files: Vec::new(),
        want,
        at,
        args: Vec::new(),
    }
}

impl Case {
    fn args(mut self, a: &[&str]) -> Self {
        self.args = a.iter().map(|s| s.to_string()).collect();
        self
    }
    fn file(mut self, path: &'static str, text: impl Into<String>) -> Self {
        self.files.push((path, text.into()));
        self
    }
}

/// HEAD with `nodes:` (line 5) and these node lines (from line 6).
fn n(body: &str) -> String {
    format!("{HEAD}nodes:\n{body}")
}

/// A pipeline whose model `m` (line 4) is `model` and whose one node (line 6) is a reason.
fn model(m: &str) -> String {
    format!(
        "name: bad\nproblems: {{path: data/arithmetic.csv}}\nmodels:\n  m: {m}\nnodes:\n  a: {{kind: reason, model: m, prompt: reason/default}}\n"
    )
}

const A: &str = "  a: {kind: reason, model: m, prompt: reason/default}\n";

fn paths() -> Vec<Case> {
    let with_name = |name: &str| format!("name: {name}\n{}", &n(A)["name: bad\n".len()..]);
    vec![
        case(
            "name with ..",
            with_name("../../escaped"),
            "contains a path separator",
            "@:1",
        ),
        case(
            "absolute name",
            with_name("/tmp/abs"),
            "contains a path separator",
            "@:1",
        ),
        case("empty name", with_name("\"\""), "is empty", "@:1"),
        case("name ..", with_name("\"..\""), "is a relative path", "@:1"),
        case(
            "name via --set",
            n(A),
            "contains a path separator",
            "--set name=../../x",
        )
        .args(&["--set", "name=../../x"]),
        case(
            "missing prompts_dir",
            format!("{HEAD}prompts_dir: nowhere\nnodes:\n{A}"),
            "no such folder",
            "@:5",
        ),
        case(
            "prompt leaving prompts/",
            n("  a: {kind: reason, model: m, prompt: ../../etc/passwd}\n"),
            "not found",
            "@:6",
        ),
        case(
            "missing tokenizer file",
            model("{provider: sim, tokenizer: nope/tokenizer.json}"),
            "cannot read tokenizer file",
            "@:4",
        ),
    ]
}

fn numbers() -> Vec<Case> {
    vec![
        case(
            "huge samples",
            format!("{HEAD}samples: 10000000\nnodes:\n{A}"),
            "`samples: 10000000` is out of range",
            "@:5",
        ),
        case(
            "zero samples",
            format!("{HEAD}samples: 0\nnodes:\n{A}"),
            "`samples: 0` is out of range",
            "@:5",
        ),
        case(
            "huge max_continuations",
            model("{provider: sim, continuation: {max_continuations: 4294967295}}"),
            "max_continuations: 4294967295` is out of range",
            "@:4",
        ),
        case(
            "negative temperature",
            model("{provider: sim, params: {temperature: -0.5}}"),
            "`params.temperature: -0.5` is out of range",
            "@:4",
        ),
        case(
            "top_p above 1",
            model("{provider: sim, params: {top_p: 1.5}}"),
            "`params.top_p: 1.5` is out of range",
            "@:4",
        ),
        case(
            "zero max_tokens",
            model("{provider: sim, params: {max_tokens: 0}}"),
            "`params.max_tokens: 0` is out of range",
            "@:4",
        ),
        case(
            "negative price",
            model("{provider: sim, price: {input_per_m: -1}}"),
            "`price.input_per_m: -1` is out of range",
            "@:4",
        ),
        case(
            "zero rpm",
            model("{provider: sim, rpm: 0}"),
            "`rpm: 0` is out of range",
            "@:4",
        ),
        case(
            "tiny max_response_bytes",
            model("{provider: sim, max_response_bytes: 10}"),
            "`max_response_bytes: 10` is out of range",
            "@:4",
        ),
        case(
            "empty model id",
            model("{provider: sim, model: \"\"}"),
            "`model:` is empty",
            "@:4",
        ),
        case(
            "empty nodes",
            format!("{HEAD}nodes: {{}}\n"),
            "`nodes:` is empty",
            "@:5",
        ),
        case(
            "zero k",
            n(&format!(
                "{A}  s: {{kind: summarize, strategy: last_k, k: 0, input: a}}\n"
            )),
            "`k: 0` is out of range",
            "@:7",
        ),
        case(
            "zero chunk_words",
            n(&format!(
                "{A}  s: {{kind: summarize, strategy: chunked, chunk_words: 0, model: m, prompt: summarize/backtracking, input: a}}\n"
            )),
            "`chunk_words: 0` is out of range",
            "@:7",
        ),
        case(
            "overlap past chunk",
            n(&format!(
                "{A}  s: {{kind: summarize, strategy: chunked, chunk_words: 10, overlap_words: 10, model: m, prompt: summarize/backtracking, input: a}}\n"
            )),
            "`overlap_words: 10` is out of range",
            "@:7",
        ),
        case(
            "zero vote k",
            format!(
                "{HEAD}samples: 3\ngrade: {{extract: boxed}}\nnodes:\n{}  v: {{kind: vote, input: a, k: [1, 0]}}\n",
                A
            ),
            "`k:` must be whole numbers",
            "@:9",
        ),
        case(
            "grade node tolerance",
            n(&format!(
                "{A}  e: {{kind: extract, input: a}}\n  g: {{kind: grade, input: e, compare: numeric, rel_tol: 2}}\n"
            )),
            "`rel_tol: 2` is out of range",
            "@:8",
        ),
        case(
            "--concurrency 0",
            n(A),
            "0 is not in 1..=4096",
            "--concurrency",
        )
        .args(&["--concurrency", "0"]),
        case(
            "--concurrency huge",
            n(A),
            "is not in 1..=4096",
            "--concurrency",
        )
        .args(&["--concurrency", "2305843009213693952"]),
        case("--max_cost NaN", n(A), "is not a budget", "--max-cost").args(&["--max_cost", "NaN"]),
        case("--max_cost -1", n(A), "is not a budget", "--max-cost").args(&["--max_cost=-1"]),
        case("--max_cost -inf", n(A), "is not a budget", "--max-cost").args(&["--max_cost=-inf"]),
    ]
}

fn depth() -> Vec<Case> {
    let when = |w: String| {
        n(&format!(
            "{A}  b: {{kind: reason, model: m, prompt: reason/default, when: \"{w}\"}}\n"
        ))
    };
    vec![
        case(
            "6000 parentheses in when",
            when(format!("{}a.correct{}", "(".repeat(6000), ")".repeat(6000))),
            "at most 10000 characters",
            "@:7",
        ),
        case(
            "3000 parentheses in when",
            when(format!("{}a.correct{}", "(".repeat(3000), ")".repeat(3000))),
            "nest deeper than 64",
            "@:7",
        ),
        case(
            "2000 nots in when",
            when(format!("{}a.correct", "not ".repeat(2000))),
            "nest deeper than 64",
            "@:7",
        ),
        case(
            "deep YAML list",
            format!(
                "{HEAD}x-shared: {}{}\nnodes:\n{A}",
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            "nests deeper than 64 levels",
            "@:5",
        ),
        case(
            "deep YAML map",
            format!(
                "{HEAD}x-shared: {}1{}\nnodes:\n{A}",
                "{a: ".repeat(3000),
                "}".repeat(3000)
            ),
            "nests deeper than 64 levels",
            "@:5",
        ),
        case(
            "deep template blocks",
            n("  a: {kind: reason, model: m, prompt: t/deep}\n"),
            "blocks nest deeper than 32",
            "@:6",
        )
        .file(
            "prompts/t/deep.hbs",
            "{{#if question}}".repeat(5000) + "x" + &"{{/if}}".repeat(5000),
        ),
        case(
            "deep template subexpressions",
            n("  a: {kind: reason, model: m, prompt: t/paren}\n"),
            "subexpressions nest deeper",
            "@:6",
        )
        .file(
            "prompts/t/paren.hbs",
            format!("{{{{inc {}1{}}}}}", "(".repeat(3000), ")".repeat(3000)),
        ),
        case(
            "partial includes itself",
            n("  a: {kind: reason, model: m, prompt: t/self}\n"),
            "includes itself",
            "@:6",
        )
        .file("prompts/t/self.hbs", "again {{> t/self}}"),
        case(
            "partials in a loop",
            n("  a: {kind: reason, model: m, prompt: t/p1}\n"),
            "includes itself",
            "@:6",
        )
        .file("prompts/t/p1.hbs", "{{question}} {{> t/p2}}")
        .file("prompts/t/p2.hbs", "{{> t/p1}}"),
    ]
}

fn templates() -> Vec<Case> {
    vec![
        case(
            "unknown problem column",
            n("  a: {kind: reason, model: m, prompt: t/col}\n"),
            "col.hbs:2) uses `{{problem.nonexistent_col}}`",
            "@:6",
        )
        .file(
            "prompts/t/col.hbs",
            "Q {{question}}\n{{problem.nonexistent_col}}\n",
        ),
        case(
            "missing partial",
            n("  a: {kind: reason, model: m, prompt: t/part}\n"),
            "`{{> missing_partial}}` (in",
            "@:6",
        )
        .file(
            "prompts/t/part.hbs",
            "Q {{question}}\n\n{{> missing_partial}}\n",
        ),
        case(
            "unknown variable names the template line",
            n("  a: {kind: reason, model: m, prompt: t/var}\n"),
            "var.hbs:3) uses `{{hints}}`",
            "@:6",
        )
        .file("prompts/t/var.hbs", "Q\n{{question}}\n{{hints}}\n"),
        case(
            "unknown variable in a partial",
            n("  a: {kind: reason, model: m, prompt: t/outer}\n"),
            "inner.hbs:1) uses `{{nope}}`",
            "@:6",
        )
        .file("prompts/t/outer.hbs", "{{question}} {{> t/inner}}")
        .file("prompts/t/inner.hbs", "{{nope}}"),
        case(
            "template syntax error",
            n("  a: {kind: reason, model: m, prompt: t/syn}\n"),
            "does not compile",
            "syn.hbs:",
        )
        .file("prompts/t/syn.hbs", "{{question}}\n{{#if question}}open\n"),
    ]
}

fn sets() -> Vec<Case> {
    let rep = n(&format!("{A}  r:\n    repeat: 2\n    body:\n      s: {{kind: summarize, model: m, prompt: summarize/backtracking, input: previous.a}}\n")).replace("previous.a}", "a}");
    vec![
        case(
            "--set typo in a model name",
            n(A),
            "there is no model `reasner`",
            "--set models.reasner.model=x",
        )
        .args(&["--set", "models.reasner.model=x"]),
        case(
            "--set typo in a node name",
            n(A),
            "there is no node `atempt`",
            "--set nodes.atempt.kind=reason",
        )
        .args(&["--set", "nodes.atempt.kind=reason"]),
        case(
            "--set typo in a repeat body",
            rep,
            "there is no node `sumary`",
            "--set nodes.r.body.sumary.k=3",
        )
        .args(&["--set", "nodes.r.body.sumary.k=3"]),
        case(
            "--set into a number",
            n(A),
            "invalid type: map, expected u32",
            "--set samples.x=1",
        )
        .args(&["--set", "samples.x=1"]),
        case(
            "--set null on a required field",
            n(A),
            "missing field `provider`",
            "@:4",
        )
        .args(&["--set", "models.m.provider=null"]),
        case(
            "--set an unknown sampling parameter",
            n(A),
            "unknown field `temprature`",
            "--set models.m.params.temprature=1",
        )
        .args(&["--set", "models.m.params.temprature=1"]),
    ]
}

fn messages() -> Vec<Case> {
    vec![
        case(
            "kind typo",
            n("  a: {kind: reasn, model: m, prompt: reason/default}\n"),
            "unknown kind `reasn`",
            "@:6",
        ),
        case(
            "field typo",
            n("  a: {kind: reason, model: m, prompt: reason/default, sytem: hi}\n"),
            "unknown field `sytem`",
            "@:6",
        ),
        case(
            "provider typo",
            model("{provider: fireworkz}"),
            "unknown provider `fireworkz`",
            "@:4",
        ),
        case(
            "top-level typo",
            format!("{HEAD}smaples: 3\nnodes:\n{A}"),
            "unknown field `smaples`",
            "@:5",
        ),
        case(
            "comparison typo",
            format!("{HEAD}grade: {{extract: boxed, compare: mth}}\nnodes:\n{A}"),
            "did you mean `math`?",
            "@:5",
        ),
        case(
            "strategy typo",
            n(&format!(
                "{A}  s: {{kind: summarize, strategy: frist_k, input: a}}\n"
            )),
            "did you mean `first_k`?",
            "@:7",
        ),
        case(
            "extractor typo",
            n(&format!(
                "{A}  e: {{kind: extract, input: a, extract: boxd}}\n"
            )),
            "did you mean `boxed`?",
            "@:7",
        ),
        case(
            "wrong type",
            n(&format!(
                "{A}  s: {{kind: summarize, strategy: last_k, k: many, input: a}}\n"
            )),
            "`k: \"many\"`",
            "@:7",
        ),
        case(
            "unknown judge model",
            n(&format!(
                "{A}  e: {{kind: extract, input: a}}\n  g: {{kind: grade, input: e, compare: llm_judge, judge_model: judg}}\n"
            )),
            "unknown model `judg`",
            "@:8",
        ),
        case(
            "vote with a judge",
            format!(
                "{HEAD}samples: 2\ngrade: {{extract: boxed}}\nnodes:\n{A}  v: {{kind: vote, input: a, compare: llm_judge}}\n"
            ),
            "`compare:` of a vote must be",
            "@:9",
        ),
        case(
            "empty continue suffix",
            n(&format!(
                "{A}  c: {{kind: continue, model: m, prompt: reason/default, input: a, suffix: \"\"}}\n"
            )),
            "`suffix:` is empty",
            "@:7",
        ),
        case(
            "model name typo on a node",
            n("  a: {kind: reason, model: mm, prompt: reason/default}\n"),
            "unknown model `mm`",
            "@:6",
        ),
        case(
            "empty question",
            n(A).replace("data/arithmetic.csv", "q.csv"),
            "has an empty question",
            "q.csv:3",
        )
        .file(
            "q.csv",
            "id,question,solution,answer\na,What is 1+1?,2,2\nb,,3,3\n",
        ),
        case(
            "duplicated column",
            n(A).replace("data/arithmetic.csv", "dup.csv"),
            "column `answer` appears twice",
            "dup.csv:1",
        )
        .file(
            "dup.csv",
            "id,question,solution,answer,answer\na,What?,2,2,3\n",
        ),
    ]
}

#[test]
fn every_bad_input_is_refused_with_its_place_a_fix_and_exit_2() {
    let p = Project::new();
    let cases: Vec<Case> = [paths(), numbers(), depth(), templates(), sets(), messages()]
        .into_iter()
        .flatten()
        .collect();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let file = format!("pipelines/in{i}.yaml");
        p.write(&file, &c.yaml);
        for (path, text) in &c.files {
            p.write(path, text);
        }
        let at = c.at.replace('@', &format!("in{i}.yaml"));
        for cmd in ["validate", "run"] {
            let mut args = vec!["pipeline", cmd, file.as_str(), "--no-progress"];
            if cmd == "validate" {
                args.pop();
            }
            args.extend(c.args.iter().map(String::as_str));
            if cmd == "validate"
                && c.args
                    .iter()
                    .any(|a| a.starts_with("--concurrency") || a.starts_with("--max_cost"))
            {
                continue; // run-only flags
            }
            let out = p.run(&args);
            let msg = text(&out);
            let mut problems = Vec::new();
            if out.status.code() != Some(2) {
                problems.push(format!("exit {:?}", out.status.code()));
            }
            if !msg.contains(c.want) {
                problems.push(format!("message lacks `{}`", c.want));
            }
            if !msg.contains(&at) {
                problems.push(format!("no `{at}`"));
            }
            let flag = c.at.starts_with("--concurrency") || c.at.starts_with("--max-cost");
            if !(msg.contains("hint:") || flag && msg.contains("--help")) {
                problems.push("no hint".into());
            }
            if msg.contains("panicked") || msg.contains("RUST_BACKTRACE") {
                problems.push("panic".into());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{} ({cmd}): {}\n---\n{}",
                    c.name,
                    problems.join(", "),
                    msg.chars().take(1500).collect::<String>()
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
fn a_misspelled_reference_read_by_every_round_is_one_error() {
    let p = Project::new();
    let yaml = format!(
        "{HEAD}grade: {{extract: boxed}}\nnodes:\n  attempt_0: {{kind: reason, model: m, prompt: reason/default}}\n  rounds:\n    repeat: 4\n    body:\n      summary: {{kind: summarize, model: m, prompt: summarize/backtracking, input: previous.atempt}}\n      attempt: {{kind: reason, model: m, prompt: reason/with_summaries, vars: {{summaries: all.summary.txt}}}}\n"
    );
    p.write("pipelines/typo.yaml", &yaml);
    let out = p.run(&["pipeline", "validate", "pipelines/typo.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("1 error(s)"), "{msg}");
    assert_eq!(msg.matches("previous.atempt").count(), 1, "{msg}");
    assert!(msg.contains("did you mean `attempt`?"), "{msg}");
    p.write(
        "pipelines/typo2.yaml",
        &yaml.replace("previous.atempt", "previous.attempt"),
    );
    let out = p.run(&["pipeline", "validate", "pipelines/typo2.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("1 error(s)"), "{msg}");
    assert_eq!(msg.matches("reads `txt`").count(), 1, "{msg}");
    assert!(msg.contains("did you mean `text`?"), "{msg}");
}

#[test]
fn every_unknown_field_of_a_node_is_reported_at_once_with_the_nearest_name() {
    let p = Project::new();
    p.write(
        "pipelines/f.yaml",
        &n("  a: {kind: reason, model: m, prompt: reason/default}\n  s: {kind: summarize, input: a, stratgy: last_k, kk: 3, fallback: true, model: m, prompt: summarize/backtracking}\n"),
    );
    let out = p.run(&["pipeline", "validate", "pipelines/f.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("3 error(s)"), "{msg}");
    assert!(
        msg.contains("unknown field `stratgy`") && msg.contains("did you mean `strategy`?"),
        "{msg}"
    );
    assert!(
        msg.contains("unknown field `kk`") && msg.contains("did you mean `k`?"),
        "{msg}"
    );
    assert!(msg.contains("unknown field `fallback`"), "{msg}");
}

#[test]
fn csv_content_errors_carry_no_path_hint_and_a_missing_key_is_warned_about() {
    let p = Project::new();
    p.write(
        "bad.csv",
        "id,question,solution,answer\na,\"unterminated,1,1\n",
    );
    p.write(
        "pipelines/c.yaml",
        &n(A).replace("data/arithmetic.csv", "bad.csv"),
    );
    let out = p.run(&["pipeline", "validate", "pipelines/c.yaml"]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(msg.contains("bad.csv:"), "{msg}");
    assert!(!msg.contains("problems.path"), "{msg}");

    p.write(
        "pipelines/k.yaml",
        &model("{provider: openai-compatible, base_url: \"http://127.0.0.1:9/v1\", api_key_env: DISTILL_TEST_UNSET_KEY}"),
    );
    let out = p
        .cmd()
        .args(["pipeline", "validate", "pipelines/k.yaml"])
        .env_remove("DISTILL_TEST_UNSET_KEY")
        .output()
        .unwrap();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    assert!(
        msg.contains("warning:") && msg.contains("DISTILL_TEST_UNSET_KEY"),
        "{msg}"
    );
}

#[test]
fn set_reaches_fields_absent_from_the_file_and_null_removes_optional_ones() {
    let p = Project::new();
    let yaml = format!(
        "name: s\nproblems: {{path: data/arithmetic.csv}}\nmodels:\n  m: {{provider: sim, price: {{input_per_m: 1}}, sim: {{latency_ms: 1}}, params: {{top_k: 40}}}}\nnodes:\n{A}  r:\n    repeat: 2\n    body:\n      b: {{kind: reason, model: m, prompt: reason/default}}\n"
    );
    p.write("pipelines/s.yaml", &yaml);
    let out = p.run(&[
        "pipeline",
        "validate",
        "pipelines/s.yaml",
        "--set",
        "models.m.params.seed=1",
        "--set",
        "models.m.params.top_k=null",
        "--set",
        "models.m.price=null",
        "--set",
        "models.m.sim=null",
        "--set",
        "nodes.r=null",
    ]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(0), "{msg}");
    assert!(msg.contains("valid — 1 nodes"), "{msg}");
}
