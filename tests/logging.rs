//! `DISTILL_LOG` / `RUST_LOG` seen from the binary: `distill=debug` prints run phases,
//! scheduling decisions, cache misses with their reason and retries (over real HTTP to the
//! fake OpenAI server, which fails the first request); the API key never appears; what goes
//! on the wire stays `--verbose`'s.

mod common;
mod support;

use std::process::Output;

use common::{Project, iterated, text};
use support::fake_openai::{FakeConfig, FakeServer, Fault};

const KEY: &str = "sk-test-LOGSECRET-987";

fn pipeline(server: &FakeServer) -> String {
    let model = format!(
        "{{provider: openai-compatible, base_url: \"{}\", model: m, api_key_env: FAKE_KEY, max_retries: 5, timeout_s: 5, params: {{max_tokens: 256}}}}",
        server.base_url()
    );
    iterated("logs", 1, &model, "")
}

async fn run(p: &Project, env: &[(&str, &str)], more: &[&str]) -> Output {
    let mut c = p.cmd();
    c.args([
        "pipeline",
        "run",
        "pipelines/logs.yaml",
        "--no-progress",
        "--question-ids",
        "add-1",
    ])
    .args(more)
    .env("FAKE_KEY", KEY)
    .env("DISTILL_RETRY_BASE_MS", "5")
    .env("DISTILL_RETRY_MAX_MS", "20")
    .env_remove("DISTILL_LOG")
    .env_remove("RUST_LOG");
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::task::spawn_blocking(move || c.output().expect("run distill"))
        .await
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn distill_log_debug_answers_what_happened() {
    let p = Project::new();
    let server =
        FakeServer::start(FakeConfig::default().with_script(vec![Fault::ServerError])).await;
    p.write("pipelines/logs.yaml", &pipeline(&server));

    let o = run(&p, &[("DISTILL_LOG", "distill=debug")], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = stderr(&o);
    for want in [
        "run: pipeline `logs`",
        "schedule: 1 problem(s)",
        "schedule: start add-1/attempt_0",
        "cache miss add-1/attempt_0 sample 0 round 0",
        "no entry under this key",
        "retry 1/5",
        "run: results written to",
    ] {
        assert!(err.contains(want), "stderr lacks `{want}`:\n{err}");
    }
    assert!(
        !err.contains(KEY) && !err.contains("LOGSECRET"),
        "the key leaked:\n{err}"
    );
    assert!(
        !err.contains("→ POST"),
        "wire detail without --verbose:\n{err}"
    );

    // a rerun is served by the cache, and says so; RUST_LOG works too
    let o = run(&p, &[("RUST_LOG", "distill=debug")], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = stderr(&o);
    assert!(err.contains("schedule: cached add-1/attempt_0"), "{err}");
    assert!(!err.contains("cache miss"), "{err}");

    // --verbose adds the wire (still no key); no filter at all prints no debug line
    let o = run(
        &p,
        &[("DISTILL_LOG", "distill=debug")],
        &["--cache", "other-cache", "--verbose"],
    )
    .await;
    let err = stderr(&o);
    assert!(err.contains("→ POST"), "{err}");
    assert!(!err.contains(KEY) && !err.contains("LOGSECRET"), "{err}");
    let o = run(&p, &[], &["--cache", "third-cache"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!stderr(&o).contains("schedule:"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_filter_is_a_warning_not_a_failure() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write("pipelines/logs.yaml", &pipeline(&server));
    let o = run(&p, &[("DISTILL_LOG", "distill=loud")], &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("is not a log filter"), "{}", stderr(&o));
}
