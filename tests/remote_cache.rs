//! The remote cache on S3-compatible storage, against a real S3 API server (moto's, started
//! here on 127.0.0.1) and the tests' fake OpenAI server: two "machines" (two cache
//! directories) sharing one bucket, where the second sends no request for what the first
//! did and reports the same table; a plan from the second machine's empty cache counts 0
//! calls to make; uploads that fail (no such bucket, the store stopped) do not fail the run
//! and are reported; `cache push|pull` round trip; the secret key is written nowhere; a bad
//! URL, or no credentials, is exit 2 before any request. Skips with a printed notice only
//! when no S3 server can be started (`.ci/run` installs `moto[server]` from PyPI).

mod common;
#[path = "support/call_helpers.rs"]
mod helpers;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use helpers::*;
use support::fake_openai::{FakeConfig, FakeServer};

const SECRET: &str = "s3cret-DO-NOT-WRITE-7f1e2d9c4b";
const KEY_ID: &str = "AKIDREMOTETEST0001";

/// A moto S3 server on a free loopback port, stopped on drop.
struct S3 {
    child: Child,
    port: u16,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl S3 {
    /// Starts `moto_server` (or `python3 -m moto.server`); None, with a notice, when neither runs.
    fn start() -> Option<S3> {
        for (prog, pre) in [
            ("moto_server", vec![]),
            ("python3", vec!["-m", "moto.server"]),
        ] {
            let port = free_port();
            let p = port.to_string();
            let mut args: Vec<&str> = pre.clone();
            args.extend(["-H", "127.0.0.1", "-p", &p]);
            let Ok(child) = Command::new(prog)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            else {
                continue;
            };
            let mut s3 = S3 { child, port };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(s3);
                }
                if let Ok(Some(_)) = s3.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = s3.child.kill();
        }
        eprintln!(
            "SKIPPED: no S3 API server could be started (install it with `python3 -m pip install 'moto[server]'`, as .ci/run does)"
        );
        None
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts an unsigned request).
    async fn bucket(&self, name: &str) {
        let r = distill::tls::client_builder()
            .build()
            .expect("client")
            .put(format!("{}/{name}", self.endpoint()))
            .send()
            .await
            .expect("create bucket");
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// The child command with the AWS_* settings pointing at `s3`.
fn aws(mut c: Command, endpoint: &str) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k == "DISTILL_CACHE_REMOTE" {
            c.env_remove(k);
        }
    }
    c.env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", endpoint)
        // every crate's log: the secret must not show in any of them
        .env("DISTILL_LOG", "debug");
    c
}

async fn go(p: &Project, endpoint: &str, args: &[&str]) -> std::process::Output {
    output(aws(cmd(p, args), endpoint)).await
}

fn table(run: &Path) -> Vec<(f64, u64)> {
    json(&run.join("report.json"))["runs"][0]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let a = &r["per_round_accuracy"];
            (a["successes"].as_f64().unwrap(), a["n"].as_u64().unwrap())
        })
        .collect()
}

/// No file under `dir` holds the secret.
fn secret_nowhere(dir: &Path) {
    for f in walk(dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_machines_share_one_bucket_and_the_second_sends_nothing() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("lab-cache").await;
    let ep = s3.endpoint();
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write(
        "pipelines/r.yaml",
        &iterated("r", 2, &model(&server, ""), ""),
    );
    let remote = ["--cache-remote", "s3://lab-cache/team/distill"];
    // before anything ran: every call is to make, per model with its tokens and cost
    let out = go(
        &p,
        &ep,
        &[
            &[
                "pipeline",
                "plan",
                "pipelines/r.yaml",
                "--cache",
                "m1/cache",
            ][..],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    let t = assert_exit(&out, 0);
    let total = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("to make: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{t}"))
        .to_string();
    assert_ne!(total, "0", "{t}");
    let per_model = t
        .lines()
        .find(|l| l.trim_start().starts_with("reasoner") && l.contains("tokens ~"))
        .unwrap_or_else(|| panic!("{t}"));
    assert!(per_model.contains(&format!("to make {total:>6}")), "{t}");
    assert!(t.contains("0 of the entries read came from it"), "{t}");
    let out = go(
        &p,
        &ep,
        &[
            &[
                "pipeline",
                "run",
                "pipelines/r.yaml",
                "--no-progress",
                "--cache",
                "m1/cache",
            ][..],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    let t1 = assert_exit(&out, 0);
    let sent = server.request_count();
    assert!(sent > 0, "{t1}");
    let first = p.last_run("r");
    let m = metrics(&first);
    let rc = &m["remote_cache"];
    assert_eq!(rc["upload_failed"], 0, "{t1}");
    assert!(rc["uploaded"].as_u64().unwrap() > 0, "{rc}");
    assert_eq!(rc["unfinished"], 0, "{rc}");
    assert!(
        t1.contains("remote cache s3://lab-cache/team/distill:"),
        "{t1}"
    );
    assert!(!t1.contains("NOT UPLOADED"), "{t1}");

    // the second machine plans from an empty cache: everything is in the bucket
    let out = go(
        &p,
        &ep,
        &[
            &[
                "pipeline",
                "plan",
                "pipelines/r.yaml",
                "--cache",
                "m2/cache",
            ][..],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    let t = assert_exit(&out, 0);
    assert!(t.contains("to make: 0"), "{t}");
    assert!(t.contains("(none: every call is cached)"), "{t}");
    assert!(t.contains("came from it"), "{t}");
    assert!(
        stored_keys(&p.path().join("m2/cache")).is_empty(),
        "a plan keeps nothing"
    );

    // and runs it: no request reaches the model, the table is the same
    let out = go(
        &p,
        &ep,
        &[
            &[
                "pipeline",
                "run",
                "pipelines/r.yaml",
                "--no-progress",
                "--cache",
                "m2/cache",
            ][..],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    let t2 = assert_exit(&out, 0);
    assert_eq!(server.request_count(), sent, "{t2}");
    let second = p.last_run("r");
    assert_eq!(metrics(&second)["calls"], 0, "{t2}");
    assert!(metrics(&second)["remote_cache"]["hits"].as_u64().unwrap() > 0);
    assert_eq!(comparable(&first), comparable(&second));
    for r in [&first, &second] {
        assert_exit(&go(&p, &ep, &["report", r.to_str().unwrap()]).await, 0);
    }
    assert_eq!(table(&first), table(&second));
    // what it read was kept: the same run offline with no remote needs nothing more
    let out = run_pipeline(&p, "pipelines/r.yaml", "m2/cache", &["--offline"]).await;
    assert_exit(&out, 0);

    // the secret key is written nowhere: run directories, caches, what was printed
    secret_nowhere(p.path());
    for t in [&t1, &t2] {
        assert!(!t.contains(SECRET), "the secret was printed");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_uploads_do_not_fail_the_run_and_are_reported() {
    let Some(s3) = S3::start() else { return };
    let ep = s3.endpoint();
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write(
        "pipelines/f.yaml",
        &iterated(
            "f",
            1,
            &model(&server, ""),
            "cache_remote: s3://no-such-bucket/x",
        ),
    );
    // the bucket does not exist: every upload fails after its retries
    let out = go(
        &p,
        &ep,
        &[
            "pipeline",
            "run",
            "pipelines/f.yaml",
            "--no-progress",
            "--cache",
            "c1",
        ],
    )
    .await;
    let t = assert_exit(&out, 0);
    let r = p.last_run("f");
    let rc = &metrics(&r)["remote_cache"];
    assert!(rc["upload_failed"].as_u64().unwrap() > 0, "{rc}");
    assert_eq!(rc["uploaded"], 0, "{rc}");
    assert!(t.contains("NOT UPLOADED"), "{t}");
    assert!(t.contains("distill cache push"), "{t}");
    assert!(!t.contains(SECRET));
    let done = json(&r.join("results.json"))["problems"]
        .as_array()
        .unwrap()
        .len();
    assert!(done > 0);

    // the store stopped: reads fail (misses), uploads fail, the run completes all the same
    drop(s3);
    let before = server.request_count();
    let out = go(
        &p,
        &ep,
        &[
            "pipeline",
            "run",
            "pipelines/f.yaml",
            "--no-progress",
            "--cache",
            "c2",
        ],
    )
    .await;
    let t = assert_exit(&out, 0);
    assert!(server.request_count() > before, "{t}");
    let rc = &metrics(&p.last_run("f"))["remote_cache"];
    assert!(rc["read_errors"].as_u64().unwrap() > 0, "{rc}");
    assert!(rc["upload_failed"].as_u64().unwrap() > 0, "{rc}");
    assert!(t.contains("NOT UPLOADED"), "{t}");
    assert!(!t.contains(SECRET));
    secret_nowhere(p.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn push_and_pull_move_whole_runs() {
    let Some(s3) = S3::start() else { return };
    s3.bucket("runs").await;
    let ep = s3.endpoint();
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write(
        "pipelines/q.yaml",
        &iterated("q", 1, &model(&server, ""), ""),
    );
    assert_exit(&run_pipeline(&p, "pipelines/q.yaml", "m1", &[]).await, 0);
    let sent = server.request_count();
    let r = p.last_run("q");
    let rs = r.to_str().unwrap();
    let push = [
        "cache",
        "push",
        rs,
        "--cache",
        "m1",
        "--cache_remote",
        "s3://runs/p",
    ];
    let t = assert_exit(&go(&p, &ep, &push).await, 0);
    let n = stored_keys(&p.path().join("m1")).len();
    assert!(t.contains(&format!("pushed {n} entries")), "{n}: {t}");
    let t = assert_exit(&go(&p, &ep, &push).await, 0);
    assert!(
        t.contains(&format!(
            "pushed 0 entries of 1 run(s) to s3://runs/p: {n} already"
        )),
        "{t}"
    );
    // DISTILL_CACHE_REMOTE names the remote too
    let mut c = aws(cmd(&p, &["cache", "pull", rs, "--cache", "m2"]), &ep);
    c.env("DISTILL_CACHE_REMOTE", "s3://runs/p");
    let t = assert_exit(&output(c).await, 0);
    assert!(t.contains(&format!("pulled {n} entries")), "{t}");
    assert!(t.contains("0 refused"), "{t}");
    assert_eq!(stored_keys(&p.path().join("m2")).len(), n);
    drop(server);
    let out = run_pipeline(&p, "pipelines/q.yaml", "m2", &["--offline"]).await;
    let t = assert_exit(&out, 0);
    assert_eq!(metrics(&p.last_run("q"))["calls"], 0, "{t}");
    assert!(sent > 0);
    // without a remote named anywhere: exit 2 and what to do
    let t = assert_exit(
        &go(&p, &ep, &["cache", "pull", rs, "--cache", "m3"]).await,
        2,
    );
    assert!(t.contains("--cache-remote"), "{t}");
    secret_nowhere(p.path());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_remote_url_is_bad_input() {
    let p = Project::new();
    p.write(
        "pipelines/b.yaml",
        &iterated("b", 1, &sim_model(0), "cache_remote: gs://bucket/x"),
    );
    let out = run(&p, &["pipeline", "validate", "pipelines/b.yaml"]).await;
    let t = assert_exit(&out, 2);
    assert!(t.contains("b.yaml:6"), "{t}");
    assert!(t.contains("only s3:// URLs"), "{t}");
    assert!(t.contains("e.g. `cache_remote: s3://"), "{t}");
    p.write("pipelines/ok.yaml", &iterated("ok", 1, &sim_model(0), ""));
    for bad in ["/tmp/cache", "s3://", "s3://Bad_Bucket/x"] {
        let out = run_pipeline(&p, "pipelines/ok.yaml", "c", &["--cache-remote", bad]).await;
        let t = assert_exit(&out, 2);
        assert!(t.contains("e.g. s3://"), "{bad}: {t}");
    }
    // no credentials: refused before any request (no surprise metadata lookups)
    let mut c = cmd(
        &p,
        &[
            "pipeline",
            "run",
            "pipelines/ok.yaml",
            "--no-progress",
            "--cache",
            "c",
            "--cache-remote",
            "s3://lab-cache/x",
        ],
    );
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    let t = assert_exit(&output(c).await, 2);
    assert!(t.contains("no credentials: set AWS_ACCESS_KEY_ID"), "{t}");
    assert!(!p.path().join("results").exists(), "nothing ran");
}
