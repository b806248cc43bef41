//! HTTP-level tests of the dashboard: the page and its endpoints, the server-sent event stream
//! fed through the public API, a reconnecting page getting the current state first, the
//! bounded streamed text, and `distill view` over a real finished run (distill's format, the
//! original tool's, one cut short) with path traversal attempts answered 404. Several runs
//! side by side: `dashboard_compare.rs`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use distill::dashboard::{self, Dashboard};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn cols() -> Vec<(String, u32, String)> {
    [
        ("attempt_0", 0, "reason"),
        ("summary_1", 1, "summarize"),
        ("attempt_1", 1, "reason"),
    ]
    .iter()
    .map(|(n, r, k)| (n.to_string(), *r, k.to_string()))
    .collect()
}

async fn start() -> Dashboard {
    let problems = vec![
        ("p1".to_string(), "What is 1+1?".to_string()),
        ("p2".to_string(), "What is 2+2?".to_string()),
    ];
    let config = json!({"run_id": "r1", "pipeline": {"name": "t", "samples": 1}});
    Dashboard::start("127.0.0.1", 0, config, problems, cols())
        .await
        .unwrap()
}

fn ev(problem: &str, node: &str, round: u32, event: &str, extra: Value) -> Value {
    let mut e = json!({"time": "t", "problem": problem, "sample": 0, "node": node, "round": round, "event": event});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

fn record(id: &str, correct0: bool) -> Value {
    let node = |n: &str, r: u32, kind: &str, out: Value| json!({"node": n, "kind": kind, "round": r, "status": "done", "cached": false, "output": out, "latency_ms": 5});
    json!({
        "id": id, "index": 0, "question": "What is 1+1?", "answer": "2", "status": "ok",
        "samples": [{
            "attempt_0": node("attempt_0", 0, "reason", json!({"prompt": "PROMPT-0", "text": "TRACE-0 \\boxed{2}", "answer": "2", "correct": correct0})),
            "summary_1": node("summary_1", 1, "summarize", json!({"prompt": "S", "text": "SUMMARY"})),
            "attempt_1": node("attempt_1", 1, "reason", json!({"prompt": "PROMPT-1", "text": "TRACE-1", "answer": "3", "correct": false})),
        }]
    })
}

async fn get(url: &str) -> (u16, String) {
    let r = distill::tls::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn get_json(url: &str) -> Value {
    let (s, body) = get(url).await;
    assert_eq!(s, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Reads server-sent `data:` messages from `/api/events`.
struct SseReader {
    stream: futures_util::stream::BoxStream<'static, reqwest::Result<axum::body::Bytes>>,
    buf: String,
}

impl SseReader {
    async fn open(base: &str) -> Self {
        let r = distill::tls::get(format!("{base}api/events"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        SseReader {
            stream: r.bytes_stream().boxed(),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                if data.is_empty() {
                    continue; // keep-alive comment
                }
                return serde_json::from_str(&data.join("\n")).unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("an SSE message within 5 s")
                .expect("stream open")
                .unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next message with type `t` (others are skipped).
    async fn until(&mut self, t: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["t"] == t {
                return m;
            }
            if m["t"] == "batch" {
                for x in m["m"].as_array().unwrap() {
                    if x["t"] == t {
                        return x.clone();
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn page_and_snapshot() {
    let d = start().await;
    let url = d.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (s, html) = get(&url).await;
    assert_eq!(s, 200);
    assert!(html.contains("<title>distill dashboard</title>"));
    assert!(html.contains("function renderGrid") && html.contains("#gridhead"));
    for external in ["src=\"http", "href=\"http", "url(http", "@import", "//cdn"] {
        assert!(!html.contains(external), "external resource: {external}");
    }
    let snap = get_json(&format!("{url}api/snapshot")).await;
    assert_eq!(snap["mode"], "live");
    assert_eq!(snap["title"], "t r1");
    assert_eq!(snap["grid"]["rows"].as_array().unwrap().len(), 2);
    assert_eq!(snap["grid"]["cols"][2], json!(["attempt_1", 1, "reason"]));
    assert_eq!(snap["grid"]["cells"][1][2][0], "w");
    let cfg = get_json(&format!("{url}api/config")).await;
    assert_eq!(cfg["run_id"], "r1");
    let (s, _) = get(&format!("{url}nope")).await;
    assert_eq!(s, 404);
    // no run directory in a live dashboard
    let (s, _) = get(&format!("{url}run/config.json")).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn event_stream_carries_events_deltas_records_metrics_and_the_end() {
    let d = start().await;
    let base = d.url();
    let mut sse = SseReader::open(&base).await;
    let snap = sse.next().await;
    assert_eq!(snap["t"], "snapshot");

    d.event(&ev("p1", "attempt_0", 0, "started", json!({})));
    let m = sse.until("c").await;
    assert_eq!(m["cells"][0], json!([0, 0, ["r", 0, null, 0, null]]));

    d.delta("p1", 0, "attempt_0", "Let me ");
    d.delta("p1", 0, "attempt_0", "think… ünïcode");
    let m = sse.until("d").await;
    // batched: one piece per node, with the offset (UTF-16 units) it starts at
    assert_eq!(m["d"], json!([[0, 0, 0, "Let me think… ünïcode"]]));
    assert_eq!(m["cells"][0][2][0], "s");
    d.delta("p1", 0, "attempt_0", "more");
    let m = sse.until("d").await;
    assert_eq!(m["d"], json!([[0, 0, 21, "more"]]));

    d.event(&ev(
        "p1",
        "attempt_0",
        0,
        "finished",
        json!({"cached": true, "answer": "2", "correct": true}),
    ));
    let m = sse.until("c").await;
    assert_eq!(m["cells"][0], json!([0, 0, ["y", 1, "2", 0, null]]));

    d.event(&ev(
        "p1",
        "attempt_1",
        1,
        "retry",
        json!({"error": "429 rate limited"}),
    ));
    let m = sse.until("c").await;
    assert_eq!(
        (m["cells"][0][2][3].clone(), m["retries"].clone()),
        (json!(1), json!(1))
    );

    d.problem(&record("p1", true));
    let m = sse.until("p").await;
    assert_eq!(
        (m["p"].clone(), m["status"].clone()),
        (json!(0), json!("ok"))
    );
    assert_eq!(m["cells"].as_array().unwrap().len(), 3);

    d.metrics(&json!({"calls": 7, "tokens": {"prompt": 10, "completion": 20}}));
    let m = sse.until("m").await;
    assert_eq!(m["metrics"]["calls"], 7);

    // an event for a node the grid did not list adds a column and resends the grid
    d.event(&ev(
        "p2",
        "vote",
        5,
        "finished",
        json!({"answer": "4", "correct": true}),
    ));
    let m = sse.until("c").await;
    assert_eq!(m["grid"]["cols"][3], json!(["vote", 5, ""]));

    d.finished(&json!({"status": "complete"}));
    let m = sse.until("end").await;
    assert_eq!(m["summary"]["status"], "complete");
}

#[tokio::test]
async fn a_reconnecting_page_gets_the_current_state_then_the_stream() {
    let d = start().await;
    let base = d.url();
    d.event(&ev("p1", "attempt_0", 0, "started", json!({})));
    d.event(&ev(
        "p1",
        "attempt_0",
        0,
        "finished",
        json!({"answer": "2", "correct": true}),
    ));
    d.event(&ev("p2", "attempt_0", 0, "started", json!({})));
    d.delta("p2", 0, "attempt_0", "partial ");
    d.metrics(&json!({"calls": 3}));
    d.problem(&record("p1", true));

    let mut sse = SseReader::open(&base).await;
    let snap = sse.next().await;
    assert_eq!(snap["t"], "snapshot");
    let cells = &snap["grid"]["cells"];
    assert_eq!(cells[0][0][0], "y");
    assert_eq!(cells[0][2][0], "n"); // from p1's record
    assert_eq!(cells[1][0][0], "s");
    assert_eq!(snap["grid"]["status"], json!(["ok", null]));
    assert_eq!(snap["metrics"]["calls"], 3);
    // the streamed text so far is in the attempt, and pieces after it continue at its end
    let a = get_json(&format!("{base}api/attempt?p=p2&s=0&n=attempt_0")).await;
    assert_eq!(
        (
            a["source"].clone(),
            a["streamed"].clone(),
            a["units"].clone()
        ),
        (json!("live"), json!("partial "), json!(8))
    );
    d.delta("p2", 0, "attempt_0", "rest");
    let m = sse.until("d").await;
    // pieces queued before the snapshot are not sent again to this page
    assert_eq!(m["d"], json!([[1, 0, 8, "rest"]]));

    // a second page gets the same state; the first keeps its stream
    let snap2 = SseReader::open(&base).await.next().await;
    assert_eq!(snap2["grid"]["status"], json!(["ok", null]));
    d.event(&ev(
        "p2",
        "attempt_0",
        0,
        "failed",
        json!({"error": "boom"}),
    ));
    let m = sse.until("c").await;
    assert_eq!(m["cells"][0][2][0], "f");
}

#[tokio::test]
async fn attempts_come_from_the_stream_then_from_the_record() {
    let d = start().await;
    let base = d.url();
    let (s, _) = get(&format!("{base}api/attempt?p=nope&s=0&n=attempt_0")).await;
    assert_eq!(s, 404);
    let (s, _) = get(&format!("{base}api/attempt?p=p1&s=0&n=nope")).await;
    assert_eq!(s, 404);
    d.event(&ev("p1", "attempt_0", 0, "started", json!({})));
    let big = "x".repeat(100_000);
    d.delta("p1", 0, "attempt_0", &big);
    let a = get_json(&format!("{base}api/attempt?p=p1&s=0&n=attempt_0")).await;
    assert_eq!(a["streamed"].as_str().unwrap().len(), 100_000);
    d.problem(&record("p1", false));
    let a = get_json(&format!("{base}api/attempt?p=p1&s=0&n=attempt_0")).await;
    assert_eq!(a["source"], "record");
    assert_eq!(a["record"]["output"]["prompt"], "PROMPT-0");
    assert_eq!(a["record"]["output"]["text"], "TRACE-0 \\boxed{2}");
    assert_eq!(a["truth"], "2");
    assert_eq!(a["cell"][0], "n");
    assert!(a.get("streamed").is_none());
}

#[tokio::test]
async fn streamed_text_held_by_the_server_is_bounded() {
    let d = start().await;
    let piece = "y".repeat(64 * 1024);
    for _ in 0..40 {
        d.delta("p2", 0, "attempt_0", &piece); // 2.5 MiB streamed
    }
    assert!(d.streamed_bytes() <= 1 << 20, "{}", d.streamed_bytes());
    let a = get_json(&format!("{}api/attempt?p=p2&s=0&n=attempt_0", d.url())).await;
    assert_eq!(a["truncated"], true);
    assert_eq!(a["units"], 40 * 64 * 1024);
    d.problem(&record("p2", true));
    assert_eq!(d.streamed_bytes(), 0);
}

/// A finished quickstart run (the sim model) made by the real binary.
fn quickstart_run(root: &Path) -> (PathBuf, String) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(&repo)
        .args([
            "pipeline",
            "run",
            "pipelines/quickstart.yaml",
            "--no-progress",
        ])
        .arg("--results")
        .arg(root.join("results"))
        .arg("--cache")
        .arg(root.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = root.join("results/quickstart");
    let run = std::fs::read_dir(&base).unwrap().flatten().next().unwrap();
    (
        run.path(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The run's accuracy per round as "correct/graded acc%": from report.json when the report
/// module wrote it, else from the table the run printed.
fn report_rounds(run: &Path, stdout: &str) -> Vec<(u32, String)> {
    let fmt = |c: f64, n: f64| format!("{c}/{n} {:.1}%", 100.0 * c / n);
    if let Ok(raw) = std::fs::read_to_string(run.join("report.json"))
        && let Ok(doc) = serde_json::from_str::<Value>(&raw)
        && let Some(rounds) = doc["runs"][0]["rounds"].as_array()
    {
        let v: Vec<(u32, String)> = rounds
            .iter()
            .filter_map(|r| {
                let a = &r["per_round_accuracy"];
                Some((
                    r["round"].as_u64()? as u32,
                    fmt(a["successes"].as_f64()?, a["n"].as_f64()?),
                ))
            })
            .collect();
        if !v.is_empty() {
            return v;
        }
    }
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("attempt_"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((
                f[1].parse().ok()?,
                fmt(f[3].parse().ok()?, f[4].parse().ok()?),
            ))
        })
        .collect()
}

#[tokio::test]
async fn view_serves_a_finished_run_like_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (run, stdout) = quickstart_run(tmp.path());
    let (url, _task) = dashboard::view_start(&run, "127.0.0.1", 0).await.unwrap();
    let snap = get_json(&format!("{url}api/snapshot")).await;
    assert_eq!(snap["mode"], "view");
    let g = &snap["grid"];
    assert_eq!(g["status"].as_array().unwrap().len(), 8);
    assert!(g["status"].as_array().unwrap().iter().all(|s| s == "ok"));
    assert_eq!(g["cols"].as_array().unwrap().len(), 9);
    let mut shown = Vec::new();
    for (c, col) in g["cols"].as_array().unwrap().iter().enumerate() {
        if col[2] != "reason" {
            continue;
        }
        let cells: Vec<&Value> = g["cells"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r[c])
            .collect();
        let right = cells.iter().filter(|x| x[0] == "y").count();
        let n = cells.len();
        let acc = 100.0 * right as f64 / n as f64;
        shown.push((
            col[1].as_u64().unwrap() as u32,
            format!("{right}/{n} {acc:.1}%"),
        ));
    }
    let expected = report_rounds(&run, &stdout);
    assert_eq!(expected.len(), 5, "{stdout}");
    assert_eq!(shown, expected);
    assert_eq!(snap["metrics"]["calls"], 72);
    assert!(
        snap["files"]
            .as_array()
            .unwrap()
            .contains(&json!("report.md"))
    );
    let a = get_json(&format!("{url}api/attempt?p=add-1&s=0&n=attempt_2")).await;
    assert!(
        a["record"]["output"]["prompt"]
            .as_str()
            .unwrap()
            .contains("17 + 25")
    );
    let (s, body) = get(&format!("{url}run/report.md")).await;
    assert_eq!((s, body.starts_with("# ")), (200, true));
    // the stream of a view is its snapshot, then nothing
    let mut sse = SseReader::open(&url).await;
    assert_eq!(sse.next().await["mode"], "view");
}

/// Sends one raw request line (no client-side normalization of `..` or `%2e`).
fn raw_status(url: &str, target: &str) -> u16 {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn view_serves_only_files_of_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("runs/r1");
    std::fs::create_dir_all(run.join("sub")).unwrap();
    std::fs::write(
        run.join("results.json"),
        r#"{"problems": [], "status": "complete"}"#,
    )
    .unwrap();
    std::fs::write(run.join("config.json"), "{}").unwrap();
    std::fs::write(run.join("sub/plot.svg"), "<svg/>").unwrap();
    std::fs::write(tmp.path().join("runs/secret.txt"), "secret").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "secret").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), run.join("link.txt")).unwrap();
    let (url, _task) = dashboard::view_start(&run, "127.0.0.1", 0).await.unwrap();
    let u = url.clone();
    let statuses = tokio::task::spawn_blocking(move || {
        let ok = ["/run/config.json", "/run/results.json", "/run/sub/plot.svg"];
        let bad = [
            "/../config.json",
            "/%2e%2e/config.json",
            "/config.json",
            "/run/../config.json",
            "/run/../secret.txt",
            "/run/%2e%2e/secret.txt",
            "/run/%2E%2E/%2e%2e/secret.txt",
            "/run/..%2fsecret.txt",
            "/run/sub/../../secret.txt",
            "/run/sub/%2e%2e/%2e%2e/secret.txt",
            "/run//etc/passwd",
            "/run/%2Fetc%2Fpasswd",
            "/run/%2e%2e%5csecret.txt",
            "/run/..\\secret.txt",
            "/run/link.txt",
            "/run/",
            "/run/sub",
            "/etc/passwd",
            "/run/C:%5Cwindows",
            "/run/config.json%00.txt",
        ];
        let ok: Vec<u16> = ok.iter().map(|t| raw_status(&u, t)).collect();
        let bad: Vec<(String, u16)> = bad
            .iter()
            .map(|t| (t.to_string(), raw_status(&u, t)))
            .collect();
        (ok, bad)
    })
    .await
    .unwrap();
    assert_eq!(statuses.0, vec![200, 200, 200]);
    for (target, status) in statuses.1 {
        assert_eq!(status, 404, "{target}");
    }
    // absolute paths as a client would send them
    let (s, _) = get(&format!(
        "{url}run/{}",
        tmp.path().join("secret.txt").display()
    ))
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn view_reads_the_original_tools_results_and_a_cut_short_run() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = tmp.path().join("orig");
    std::fs::create_dir_all(&orig).unwrap();
    let doc = json!({
        "experiment_name": "aime", "config": {"max_iterations": 1},
        "results": [
            {"problem_id": "a", "question": "q", "correct_answer": "33", "iterations": [
                {"iteration": 0, "reasoning": "T0", "answer": "34", "correct": false, "summary": "tried"},
                {"iteration": 1, "reasoning": "T1", "answer": "33", "correct": "True"}]},
            {"problem_id": "b", "error": "boom", "status": "error"}
        ]
    });
    // Python writes NaN
    let raw = doc
        .to_string()
        .replace("\"max_iterations\":1", "\"max_iterations\":1,\"x\":NaN");
    std::fs::write(orig.join("results.json"), raw).unwrap();
    let (url, _t) = dashboard::view_start(&orig, "127.0.0.1", 0).await.unwrap();
    let snap = get_json(&format!("{url}api/snapshot")).await;
    let g = &snap["grid"];
    assert_eq!(
        g["cols"],
        json!([
            ["iteration_0", 0, "reason"],
            ["summary_1", 1, "summarize"],
            ["iteration_1", 1, "reason"]
        ])
    );
    assert_eq!(g["cells"][0][0][0], "n");
    assert_eq!(g["cells"][0][2][0], "y");
    // b was recorded as an error: not run, not wrong
    assert_eq!(g["status"], json!(["ok", "incomplete"]));
    assert_eq!(g["cells"][1][0][0], "x");
    let a = get_json(&format!("{url}api/attempt?p=a&s=0&n=iteration_0")).await;
    assert_eq!(a["record"]["output"]["summary"], "tried");
    assert_eq!(a["truth"], "33");

    // a distill results.json a crash left open, plus events of a problem with no record
    let cut = tmp.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    let rec = record("p1", true);
    std::fs::write(
        cut.join("results.json"),
        format!("{{\n\"run_id\": \"x\",\n\"pipeline\": \"t\",\n\"problems\": [\n{rec},\n"),
    )
    .unwrap();
    let events = [
        ev("p2", "attempt_0", 0, "started", json!({})),
        ev("p2", "attempt_0", 0, "retry", json!({"error": "timeout"})),
        ev(
            "p2",
            "attempt_0",
            0,
            "finished",
            json!({"answer": "4", "correct": true}),
        ),
    ];
    let lines: Vec<String> = events.iter().map(Value::to_string).collect();
    std::fs::write(cut.join("events.jsonl"), lines.join("\n")).unwrap();
    let (url, _t) = dashboard::view_start(&cut, "127.0.0.1", 0).await.unwrap();
    let snap = get_json(&format!("{url}api/snapshot")).await;
    let g = &snap["grid"];
    assert_eq!(g["status"], json!(["ok", null]));
    assert_eq!(g["cells"][1][0], json!(["y", 0, "4", 1, null]));
    // what the crash left unrun is labelled, not blank
    assert_eq!(g["cells"][1][2], json!(["x", 0, null, 0, "interrupted"]));
    assert_eq!(snap["retries"], 1);
    assert_eq!(snap["summary"]["status"], "truncated");

    // not a run directory
    assert!(
        dashboard::view_start(tmp.path(), "127.0.0.1", 0)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn samples_are_rows_and_unknown_nodes_are_added() {
    let config = json!({"run_id": "r", "pipeline": {"name": "s", "samples": 2}});
    let problems = vec![("a".to_string(), "q".to_string())];
    // any interface: a warning goes to stderr; the URL still names a reachable address
    let d = Dashboard::start("0.0.0.0", 0, config, problems, cols())
        .await
        .unwrap();
    assert!(d.url().starts_with("http://127.0.0.1:"), "{}", d.url());
    let snap = get_json(&format!("{}api/snapshot", d.url())).await;
    assert_eq!(snap["grid"]["rows"], json!([[0, 0], [0, 1]]));
    let mut sse = SseReader::open(&d.url()).await;
    sse.next().await;
    d.delta("a", 1, "extra_node", "hello");
    let m = sse.until("d").await;
    assert_eq!(m["grid"]["cols"][3][0], "extra_node");
    assert_eq!(m["d"], json!([[1, 3, 0, "hello"]]));
    let mut e = ev(
        "a",
        "attempt_0",
        0,
        "finished",
        json!({"answer": 7, "correct": false}),
    );
    e["sample"] = json!(1);
    d.event(&e);
    let m = sse.until("c").await;
    assert_eq!(m["cells"][0], json!([1, 0, ["n", 0, "7", 0, null]]));
}
