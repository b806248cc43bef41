//! `compare: llm_judge` through the real binary against the loopback fake server: the judge
//! prompt goes through the normal provider and cache, its verdict is parsed strictly, and an
//! unparseable verdict fails the node instead of passing it.

mod common;
mod support;

use common::*;
use support::fake_openai::{FakeConfig, FakeServer, Reply, prompt_text};

fn pipeline(server: &FakeServer, grade: &str, extra_nodes: &str) -> String {
    format!(
        r#"name: judge
problems: {{path: data/arithmetic.csv, index_range: 0-3}}
models:
  reasoner: {{provider: openai-compatible, base_url: "{url}", model: m, max_retries: 0}}
  judge: {{provider: openai-compatible, base_url: "{url}", model: j, max_retries: 0}}
{grade}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: reason/default}}
{extra_nodes}"#,
        url = server.base_url()
    )
}

/// The reasoner always answers 42; the judge approves add-1, rejects mul-1 and sub-1, and
/// answers div-1 with something that is not a verdict.
fn fake() -> FakeConfig {
    FakeConfig::default().with_responder(|body| {
        let p = prompt_text(body);
        if !p.contains("VERDICT") {
            return Reply::text("<think>hmm</think>\n\nThe answer is \\boxed{42}.");
        }
        if p.contains("17 + 25") {
            Reply::text("The candidate matches.\nVERDICT: CORRECT")
        } else if p.contains("144") {
            Reply::text("I cannot tell.")
        } else {
            Reply::text("**VERDICT: INCORRECT**")
        }
    })
}

async fn run(p: &Project, args: &[&str]) -> std::process::Output {
    let mut c = p.cmd();
    c.args(args);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn check(p: &Project, attempt_correct: &str) {
    let r = json(&p.last_run("judge").join("results.json"));
    let q = |i: usize| &r["problems"][i]["samples"][0];
    assert_eq!(
        q(0)[attempt_correct]["output"]["correct"],
        true,
        "add-1 approved"
    );
    assert_eq!(
        q(1)[attempt_correct]["output"]["correct"],
        false,
        "mul-1 rejected"
    );
    assert_eq!(
        q(2)[attempt_correct]["output"]["correct"],
        false,
        "sub-1 rejected"
    );
    let failed = &q(3)[attempt_correct];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("judge `judge`"),
        "{failed}"
    );
    assert_eq!(r["problems"][3]["status"], "failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_judge_in_the_grade_block() {
    let server = FakeServer::start(fake()).await;
    let p = Project::new();
    p.write(
        "pipelines/judge.yaml",
        &pipeline(
            &server,
            "grade: {extract: boxed, compare: llm_judge, judge_model: judge}",
            "",
        ),
    );
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/judge.yaml", "--no-progress"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    check(&p, "attempt_0");
    assert_eq!(server.request_count(), 8, "4 attempts and 4 judgements");
    // judgements are cached like any call, except an unreadable one: a rerun asks the judge
    // about div-1 again and sends nothing else
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/judge.yaml", "--no-progress"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        server.request_count(),
        9,
        "only the unreadable judgement is asked again"
    );
    check(&p, "attempt_0");
}

#[tokio::test(flavor = "multi_thread")]
async fn llm_judge_on_a_grade_node() {
    let server = FakeServer::start(fake()).await;
    let p = Project::new();
    let nodes = "  answer_0: {kind: extract, input: attempt_0}\n  judged_0: {kind: grade, input: answer_0, compare: llm_judge, judge_model: judge}\n";
    p.write("pipelines/judge.yaml", &pipeline(&server, "", nodes));
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/judge.yaml", "--no-progress"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    check(&p, "judged_0");
    // a grade node with llm_judge and no judge model is refused before anything runs
    p.write("pipelines/judge.yaml", &pipeline(&server, "", "  answer_0: {kind: extract, input: attempt_0}\n  judged_0: {kind: grade, input: answer_0, compare: llm_judge}\n"));
    let out = run(&p, &["pipeline", "validate", "pipelines/judge.yaml"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("needs `judge_model:`"));
}

/// The report prices an HTTP provider's calls (the model id the server reports is not the
/// pipeline's model name, so the cost is recorded per node at call time).
#[tokio::test(flavor = "multi_thread")]
async fn report_prices_http_calls() {
    let server = FakeServer::start(fake()).await;
    let p = Project::new();
    let yaml = pipeline(&server, "grade: {extract: boxed, compare: math}", "").replace(
        "model: m, max_retries: 0}",
        "model: m, max_retries: 0, price: {input_per_m: 2.0, output_per_m: 8.0}}",
    );
    p.write("pipelines/judge.yaml", &yaml);
    let out = run(
        &p,
        &["pipeline", "run", "pipelines/judge.yaml", "--no-progress"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_dir = p.last_run("judge");
    let r = json(&run_dir.join("results.json"));
    let usage = &r["problems"][0]["samples"][0]["attempt_0"]["output"]["usage"];
    let want = (usage["prompt_tokens"].as_f64().unwrap() * 2.0
        + usage["completion_tokens"].as_f64().unwrap() * 8.0)
        / 1e6;
    let got = r["problems"][0]["samples"][0]["attempt_0"]["output"]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    let rep = json(&run_dir.join("report.json"));
    let cost = rep["runs"][0]["rounds"][0]["cost_usd"]
        .as_f64()
        .expect("a priced round");
    assert!(cost > 0.0);
    let metrics = json(&run_dir.join("metrics.json"));
    assert!(
        (metrics["total_cost_usd"].as_f64().unwrap() - cost).abs() < 1e-6,
        "report {cost} vs metrics {metrics}"
    );
}
