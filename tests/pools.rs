//! Endpoint pools (`base_urls:`): three replicas of one model, one of which stops answering
//! mid-run (503 from its fourth request on) and one that refuses every connection; the run
//! completes with the same results as a run against one healthy server, the failing
//! replicas are benched, and metrics.json counts requests per replica. Cache keys do not
//! name a replica: the second run, on the healthy server alone, is all cache hits.

mod common;
#[path = "support/call_helpers.rs"]
mod helpers;
mod support;

use common::*;
use helpers::*;
use support::fake_openai::{FakeConfig, FakeServer, Fault};

fn pool_model(urls: &[String]) -> String {
    let list = urls
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{provider: openai-compatible, base_urls: [{list}], model: m, api_key_env: FAKE_KEY, max_retries: 10, timeout_s: 5, params: {{max_tokens: 512, temperature: 0.6}}}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_with_a_failing_replica_completes_with_the_same_results() {
    let p = Project::new();
    let healthy = FakeServer::start(FakeConfig::default()).await;
    let mut dies = vec![Fault::None; 3];
    dies.extend(std::iter::repeat_n(Fault::Unavailable, 10_000));
    let dying = FakeServer::start(FakeConfig {
        script: dies,
        ..FakeConfig::default()
    })
    .await;
    // a port nobody listens on: connections are refused
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let urls = [healthy.base_url(), dying.base_url(), refused];
    p.write(
        "pipelines/pool.yaml",
        &iterated("pool", 2, &pool_model(&urls), ""),
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/pool.yaml", "cache", &["--concurrency", "4"]).await,
        0,
    );
    let pooled = p.last_run("pool");
    let m = json(&pooled.join("metrics.json"));
    let reps = m["replicas"]["reasoner"]
        .as_array()
        .unwrap_or_else(|| panic!("{m}"));
    assert_eq!(reps.len(), 3, "{m}");
    let sent = |i: usize| reps[i]["sent"].as_u64().unwrap();
    let failed = |i: usize| reps[i]["failed"].as_u64().unwrap();
    assert!(sent(0) > 0 && failed(0) == 0, "{m}");
    assert!(
        failed(1) >= 1 && reps[1]["benched"].as_u64().unwrap() >= 1,
        "{m}"
    );
    assert!(
        failed(2) >= 1 && failed(2) == sent(2),
        "every try of the dead port failed: {m}"
    );
    let calls = m["calls"].as_u64().unwrap();
    assert_eq!(
        healthy.request_count() + 3,
        calls,
        "every call answered by the healthy replica, or by the dying one before it died: {t}"
    );
    assert!(
        sent(2) < calls / 2,
        "the refused replica is benched, not tried for every call: {m}"
    );

    // the same pipeline on the healthy server alone: the same results, all from the cache
    p.write(
        "pipelines/pool.yaml",
        &iterated("pool", 2, &model(&healthy, ""), ""),
    );
    let before = healthy.request_count();
    assert_exit(
        &run_pipeline(&p, "pipelines/pool.yaml", "cache", &[]).await,
        0,
    );
    let single = p.last_run("pool");
    assert_eq!(
        healthy.request_count(),
        before,
        "cache keys do not name a replica"
    );
    assert_eq!(comparable(&pooled), comparable(&single));
}

#[test]
fn base_url_and_base_urls_together_or_a_bad_entry_is_bad_input() {
    let p = Project::new();
    for (model, want) in [
        (
            "{provider: openai-compatible, base_url: \"http://127.0.0.1:9/v1\", base_urls: [\"http://127.0.0.1:9/v1\"], model: m}",
            "not both",
        ),
        (
            "{provider: openai-compatible, base_urls: [\"ftp://x\"], model: m}",
            "must start with http",
        ),
        (
            "{provider: openai-compatible, base_urls: [], model: m}",
            "empty",
        ),
    ] {
        p.write("pipelines/b.yaml", &iterated("b", 1, model, ""));
        let out = p.run(&["pipeline", "validate", "pipelines/b.yaml"]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(t.contains(want) && t.contains("base_urls"), "{want}: {t}");
    }
}
