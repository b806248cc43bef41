//! End-to-end test of the dashboard page in headless Chromium (Debian's `chromium`; skipped
//! with a notice when absent), driven over the DevTools protocol (`browser/cdp.rs`): a real
//! `distill pipeline run --dashboard` on the sim model with latency (the page must show every
//! problem done and the report's accuracy), a live run fed through the API (the streamed text
//! shows in the panel as it comes), `distill view` over the finished run, `distill view` of
//! two runs side by side (one of them interrupted by SIGTERM: columns per run, cell links to
//! attempts, labels of missing answers, the grid's scroll and sticky header at a desktop and a
//! narrow width, screenshots that are not blank), and the timings of
//! a 500-problem grid and of selecting an attempt with a 100 KB trace. Screenshots go to
//! /tmp, never into the repository.

#[path = "browser/cdp.rs"]
mod cdp;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdp::{Browser, Cdp, chromium};
use distill::dashboard::{self, Dashboard};
use serde_json::{Value, json};

/// The page's accuracy rows: node → (accuracy text, "correct/graded").
const ACC_JS: &str = "JSON.stringify([...document.querySelectorAll('#acc tbody tr[data-node]')].map(r => [r.dataset.node, Number(r.dataset.round), r.dataset.acc, r.dataset.correct + '/' + r.dataset.graded]))";

/// The page's accuracy rows: (node, round, accuracy text, "correct/graded").
fn page_accuracy(cdp: &mut Cdp) -> Vec<(String, u32, String, String)> {
    serde_json::from_str(cdp.eval(ACC_JS).as_str().unwrap()).unwrap()
}

fn cols(rounds: u32) -> Vec<(String, u32, String)> {
    let mut c = vec![("attempt_0".to_string(), 0, "reason".to_string())];
    for r in 1..=rounds {
        c.push((format!("summary_{r}"), r, "summarize".into()));
        c.push((format!("attempt_{r}"), r, "reason".into()));
    }
    c
}

fn verdict(p: usize, node: &str) -> bool {
    !(p * 7 + node.len() * 3 + node.bytes().last().unwrap() as usize).is_multiple_of(3)
}

fn node_json(node: &str, round: u32, kind: &str, text: &str, correct: Option<bool>) -> Value {
    let mut out = json!({"prompt": format!("prompt of {node}"), "text": text});
    if let Some(c) = correct {
        out["answer"] = json!(if c { "42" } else { "41" });
        out["correct"] = json!(c);
    }
    json!({"node": node, "kind": kind, "round": round, "status": "done", "cached": false, "output": out, "latency_ms": 1})
}

fn event(p: &str, node: &str, round: u32, ev: &str, extra: Value) -> Value {
    let mut e =
        json!({"time": "t", "problem": p, "sample": 0, "node": node, "round": round, "event": ev});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

/// Feeds a synthetic run: 4 problems at a time, each node streamed in 5 pieces.
async fn feed(d: Dashboard, ids: Vec<String>, cols: Vec<(String, u32, String)>) {
    let mut set = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(4)) {
        let (d, chunk, cols) = (d.clone(), chunk.to_vec(), cols.clone());
        set.spawn(async move {
            for id in chunk {
                let p: usize = id[1..].parse().unwrap();
                let mut nodes = serde_json::Map::new();
                for (node, round, kind) in &cols {
                    d.event(&event(&id, node, *round, "started", json!({})));
                    let mut text = String::new();
                    for k in 0..5 {
                        let piece = format!("{node} piece {k}. ");
                        d.delta(&id, 0, node, &piece);
                        text.push_str(&piece);
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    }
                    let c = (kind == "reason").then(|| verdict(p, node));
                    let extra = match c {
                        Some(c) => json!({"cached": false, "answer": if c {"42"} else {"41"}, "correct": c}),
                        None => json!({"cached": false}),
                    };
                    d.event(&event(&id, node, *round, "finished", extra));
                    nodes.insert(node.clone(), node_json(node, *round, kind, &text, c));
                }
                let rec = json!({"id": id, "index": p, "question": "q", "answer": "42", "status": "ok", "samples": [nodes]});
                d.problem(&rec);
            }
        });
    }
    let mut calls = 0;
    while !set.is_empty() {
        tokio::select! {
            _ = set.join_next() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                calls += 4;
                d.metrics(&json!({"calls": calls, "tokens": {"prompt": calls * 100, "completion": calls * 50}, "cache": {"hits": 1, "misses": calls}, "spend_usd": 0.01}));
            }
        }
    }
    d.finished(&json!({"status": "complete"}));
}

#[test]
fn dashboard_in_headless_chromium() {
    let Some(bin) = chromium() else {
        println!(
            "SKIPPED: chromium not found (apt-get install -y chromium); the browser test did not run"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let browser = Browser::launch(&bin);
    let mut cdp = browser.page();
    cdp.call("Page.enable", json!({}));

    // 1. a real run on the sim model with latency and --dashboard
    let tmp = tempfile::tempdir().unwrap();
    let cli = CliRun::start(tmp.path());
    cdp.navigate(&cli.url);
    cdp.wait_for("document.querySelectorAll('#grid .row').length === 8", 20);
    cdp.eval("window.sawRunning = false; setInterval(() => { if (document.querySelector('.c.st-r, .c.st-s')) window.sawRunning = true; }, 5)");
    cdp.wait_for(
        "document.getElementById('badge').dataset.allDone === '1'",
        90,
    );
    cdp.wait_for("window.sawRunning", 1);
    // the run's end reaches the page before the server is stopped
    cdp.wait_for(
        "document.getElementById('badge').textContent.includes('finished')",
        60,
    );
    let stdout = cli.finish();
    let run = std::fs::read_dir(tmp.path().join("results/quickstart"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let report_acc = report_rounds(&run, &stdout);
    assert_eq!(report_acc.len(), 5, "{stdout}");
    let acc: Vec<(u32, String)> = page_accuracy(&mut cdp)
        .into_iter()
        .map(|(_, round, a, cg)| (round, format!("{cg} {a}")))
        .collect();
    assert_eq!(acc, report_acc);
    cdp.screenshot("/tmp/distill-dashboard-run.png");
    println!("--dashboard run: page accuracy per round = the report's: {acc:?}");

    // 2. a live run through the API, streamed text in the panel
    let n = 12;
    let ids: Vec<String> = (0..n).map(|i| format!("q{i:02}")).collect();
    let cols = cols(2);
    let config = json!({"run_id": "e2e", "pipeline": {"name": "live", "samples": 1}});
    let problems = ids
        .iter()
        .map(|i| (i.clone(), format!("question {i}")))
        .collect();
    let d = rt
        .block_on(Dashboard::start(
            "127.0.0.1",
            0,
            config,
            problems,
            cols.clone(),
        ))
        .unwrap();
    cdp.navigate(&format!("{}#sel=q00/0/attempt_0", d.url()));
    cdp.wait_for(
        &format!("document.querySelectorAll('#grid .row').length === {n}"),
        20,
    );
    cdp.eval("window.sawStreaming = false; setInterval(() => { if (document.querySelector('.c.st-s')) window.sawStreaming = true; }, 5)");
    rt.spawn(feed(d.clone(), ids.clone(), cols.clone()));
    // the selected attempt streams into the panel while it runs
    cdp.wait_for(
        "document.getElementById('ptext').textContent.includes('attempt_0 piece 2.')",
        20,
    );
    let live_text = cdp.eval("document.getElementById('ptext').textContent");
    assert!(
        live_text
            .as_str()
            .unwrap()
            .starts_with("attempt_0 piece 0. attempt_0 piece 1. "),
        "{live_text}"
    );
    cdp.wait_for("window.sawStreaming", 20);
    cdp.wait_for("document.getElementById('badge').dataset.allDone === '1' && document.querySelectorAll('.c.st-w, .c.st-r, .c.st-s').length === 0", 60);
    cdp.wait_for(
        "document.getElementById('badge').textContent.includes('finished')",
        10,
    );
    let done = cdp.eval("document.querySelectorAll('.lab.ok').length");
    assert_eq!(done, json!(n));
    let acc = page_accuracy(&mut cdp);
    let expected: Vec<(String, u32, String, String)> = cols
        .iter()
        .filter(|c| c.2 == "reason")
        .map(|(node, round, _)| {
            let right = (0..n).filter(|p| verdict(*p, node)).count();
            let acc = format!("{:.1}%", 100.0 * right as f64 / n as f64);
            (node.clone(), *round, acc, format!("{right}/{n}"))
        })
        .collect();
    assert_eq!(acc, expected);
    // after the record came, the panel shows it (prompt and full text)
    cdp.wait_for(
        "document.getElementById('pprompt').textContent === 'prompt of attempt_0'",
        10,
    );
    cdp.wait_for(
        "document.getElementById('ptext').textContent.endsWith('attempt_0 piece 4. ')",
        10,
    );
    cdp.screenshot("/tmp/distill-dashboard-live.png");
    println!("live page accuracy: {acc:?}");

    // 3. `view` over that run: accuracy equals the report's
    let (url, _task) = rt
        .block_on(dashboard::view_start(&run, "127.0.0.1", 0))
        .unwrap();
    cdp.navigate(&format!("{url}#sel=add-1/0/attempt_0"));
    cdp.wait_for(
        "document.getElementById('badge').dataset.allDone === '1'",
        20,
    );
    cdp.wait_for(
        "document.getElementById('pprompt').textContent.includes('17 + 25')",
        10,
    );
    let acc: Vec<(u32, String)> = page_accuracy(&mut cdp)
        .into_iter()
        .map(|(_, round, a, cg)| (round, format!("{cg} {a}")))
        .collect();
    assert_eq!(acc, report_acc);
    cdp.screenshot("/tmp/distill-dashboard-view.png");
    println!("view page accuracy per round (= the report's): {acc:?}");

    // 3a. a run with 2 samples per problem: the page averages each problem's samples as the
    // report does (n = problems)
    samples_like_the_report(&rt, &mut cdp, tmp.path());

    // 3b. `view` of two runs side by side: the early-stopping run and a wider one, interrupted
    compare_two_runs(&rt, &mut cdp, &run, &interrupted_run(tmp.path()));

    // 4. 500 problems × 9 columns, attempts with 100 KB traces
    let big = rt.block_on(big_dashboard(500));
    cdp.navigate(&format!("{}#sel=p0250/0/attempt_2", big.url()));
    cdp.wait_for("document.getElementById('perf').dataset.selectPaintMs", 30);
    let perf = |cdp: &mut Cdp| cdp.eval("JSON.stringify(document.getElementById('perf').dataset)");
    let first: Value = serde_json::from_str(perf(&mut cdp).as_str().unwrap()).unwrap();
    // a click on another 100 KB attempt
    let click: Value = cdp.eval(
        "new Promise(res => { const perf = document.getElementById('perf'); delete perf.dataset.selectPaintMs; \
         document.querySelectorAll('#grid .row')[400].children[9].click(); \
         const t = setInterval(() => { if (perf.dataset.selectPaintMs) { clearInterval(t); res(JSON.stringify(perf.dataset)); } }, 5); })",
    );
    let click: Value = serde_json::from_str(click.as_str().unwrap()).unwrap();
    cdp.screenshot("/tmp/distill-dashboard-500.png");
    println!("page timings (ms): by URL {first}; by click {click}");
    let ms = |v: &Value, k: &str| v[k].as_str().unwrap().parse::<f64>().unwrap();
    println!(
        "500 problems × 9: grid built in {:.1} ms ({:.1} ms to paint), {} rows; \
         select 100 KB by URL: {:.1} ms ({:.1} ms to paint, {} chars); by click: {:.1} ms ({:.1} ms to paint)",
        ms(&first, "gridMs"),
        ms(&first, "gridPaintMs"),
        first["gridRows"],
        ms(&first, "selectMs"),
        ms(&first, "selectPaintMs"),
        first["selectChars"],
        ms(&click, "selectMs"),
        ms(&click, "selectPaintMs"),
    );
    assert_eq!(first["gridRows"], "500");
    assert!(ms(&click, "selectChars") >= 100_000.0);
    // the timings are printed, not asserted: a loaded machine is slower (speed is the
    // benchmark's business, not a test's)
}

/// `distill view` of a quickstart run with 2 samples: every accuracy row of the page has the
/// report's successes (a sum of per-problem shares), n (problems) and interval.
fn samples_like_the_report(rt: &tokio::runtime::Runtime, cdp: &mut Cdp, root: &Path) {
    let results = root.join("results-s2");
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "pipeline",
            "run",
            "pipelines/quickstart.yaml",
            "--no-progress",
        ])
        .args([
            "--set",
            "samples=2",
            "--set",
            "models.reasoner.sim.latency_ms=0",
        ])
        .arg("--results")
        .arg(&results)
        .arg("--cache")
        .arg(root.join("cache-s2"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = std::fs::read_dir(results.join("quickstart"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    let (url, _task) = rt
        .block_on(dashboard::view_start(&run, "127.0.0.1", 0))
        .unwrap();
    cdp.navigate(&url);
    cdp.wait_for("document.querySelectorAll('#grid .row').length === 16", 20);
    cdp.wait_for(
        "document.querySelectorAll('#acc tr[data-node]').length === 5",
        10,
    );
    let page: Vec<(f64, u64, f64, f64)> = serde_json::from_value(cdp.eval(
        "[...document.querySelectorAll('#acc tr[data-node]')].map(r => [Number(r.dataset.correct), Number(r.dataset.graded), Number(r.dataset.lo), Number(r.dataset.hi)])",
    ))
    .unwrap();
    let rounds = report["runs"][0]["rounds"].as_array().unwrap();
    assert_eq!(page.len(), rounds.len());
    for (p, r) in page.iter().zip(rounds) {
        let a = &r["per_round_accuracy"];
        assert_eq!(p.1, a["n"].as_u64().unwrap(), "n = problems: {p:?} {a}");
        assert!(
            (p.0 - a["successes"].as_f64().unwrap()).abs() < 0.006,
            "{p:?} {a}"
        );
        assert!(
            (p.2 - 100.0 * a["ci_low"].as_f64().unwrap()).abs() < 0.06,
            "{p:?} {a}"
        );
        assert!(
            (p.3 - 100.0 * a["ci_high"].as_f64().unwrap()).abs() < 0.06,
            "{p:?} {a}"
        );
    }
    println!("samples = 2: page accuracy rows = the report's (successes, n, interval): {page:?}");
}

/// A run of the quickstart with 6 rounds and slow calls, stopped by SIGTERM part way: its
/// later rounds are not run (interrupted).
fn interrupted_run(root: &Path) -> std::path::PathBuf {
    let results = root.join("results-cut");
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "pipeline",
            "run",
            "pipelines/quickstart.yaml",
            "--no-progress",
        ])
        .args(["--set", "models.reasoner.sim.latency_ms=300"])
        .args(["--set", "nodes.rounds.repeat=6"])
        .arg("--results")
        .arg(&results)
        .arg("--cache")
        .arg(root.join("cache-cut"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // past round 0 of every problem, well before the last round
    let t = Instant::now();
    let journal = || {
        std::fs::read_dir(results.join("quickstart"))
            .ok()?
            .flatten()
            .next()
            .map(|d| d.path().join("events.jsonl"))
    };
    while journal()
        .and_then(|j| std::fs::read_to_string(j).ok())
        .is_none_or(|e| e.matches("\"attempt_1\"").count() < 2)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the run did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "SIGTERM ends the run with 143");
    journal().unwrap().parent().unwrap().to_path_buf()
}

/// The distinct colours of a screenshot, counted by the browser (drawn into a canvas): a
/// blank page has one or two.
fn colours(cdp: &mut Cdp, png: &str) -> u64 {
    let bytes = std::fs::read(png).unwrap();
    let b64 = base64(&bytes);
    let js = format!(
        "new Promise(res => {{ const i = new Image(); i.onload = () => {{ const c = document.createElement('canvas'); c.width = i.width; c.height = i.height; \
         const x = c.getContext('2d'); x.drawImage(i, 0, 0); const d = x.getImageData(0, 0, c.width, c.height).data; const seen = new Set(); \
         for (let k = 0; k < d.length; k += 4 * 7) seen.add((d[k] << 16) | (d[k + 1] << 8) | d[k + 2]); res(seen.size); }}; i.onerror = () => res(0); \
         i.src = 'data:image/png;base64,{b64}'; }})"
    );
    cdp.eval(&js).as_u64().unwrap()
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for ch in bytes.chunks(3) {
        let n = (ch[0] as u32) << 16
            | (*ch.get(1).unwrap_or(&0) as u32) << 8
            | *ch.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= ch.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `distill view A B`: both runs' columns side by side, cells that link to their attempts,
/// labels for attempts without an answer, a grid that scrolls with its header on top, the
/// figures; screenshots at a desktop and a narrow width.
fn compare_two_runs(rt: &tokio::runtime::Runtime, cdp: &mut Cdp, a: &Path, b: &Path) {
    let (url, _task) = rt
        .block_on(dashboard::view_runs_start(
            &[a.to_path_buf(), b.to_path_buf()],
            "127.0.0.1",
            0,
        ))
        .unwrap();
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    cdp.navigate(&url);
    cdp.wait_for("document.querySelectorAll('#grid .row').length === 8", 20);
    // both runs' columns: run 0 has 1 + 2×4 nodes, run 1 has 1 + 2×6
    let heads: Vec<usize> = serde_json::from_value(cdp.eval(
        "[0, 1].map(k => document.querySelectorAll('#gridhead .h[data-run=\"' + k + '\"]').length)",
    ))
    .unwrap();
    assert_eq!(heads, vec![9, 13]);
    let accrows: Vec<usize> = serde_json::from_value(cdp.eval(
        "[0, 1].map(k => document.querySelectorAll('#acc tr[data-run=\"' + k + '\"]').length)",
    ))
    .unwrap();
    assert_eq!(accrows[0], 5, "run 0: a row per round");
    assert!(
        accrows[1] >= 2,
        "run 1: its rounds with a verdict: {accrows:?}"
    );
    // every accuracy row has its interval around its value
    let ci_ok = cdp.eval(
        "[...document.querySelectorAll('#acc tr[data-run]')].filter(r => r.dataset.graded > 0).every(r => { const v = 100 * r.dataset.correct / r.dataset.graded; \
         return Number(r.dataset.lo) <= v + 0.05 && v <= Number(r.dataset.hi) + 0.05; })",
    );
    assert_eq!(ci_ok, json!(true));
    // no blank cell: an attempt without an answer says why
    let blank = cdp.eval(
        "[...document.querySelectorAll('#grid .c')].filter(e => !e.classList.contains('k-s') && /st-[nxf]/.test(e.className) && e.textContent.trim() === '').length",
    );
    assert_eq!(blank, json!(0));
    let interrupted = cdp.eval(
        "[...document.querySelectorAll('#grid .c.st-x[data-run=\"1\"]')].filter(e => e.textContent === 'interrupted').length",
    );
    assert!(
        interrupted.as_u64().unwrap() > 0,
        "interrupted cells are labelled"
    );
    // each cell links to its attempt: the API answers for the run it shows
    let links: Vec<Value> = serde_json::from_value(cdp.eval(
        "Promise.all([0, 1].map(async k => { const el = document.querySelector('#grid a.c.st-y[data-run=\"' + k + '\"], #grid a.c.st-n[data-run=\"' + k + '\"]'); \
         const a = await (await fetch(el.dataset.attempt)).json(); \
         return {href: el.getAttribute('href'), run: a.run, node: a.node, text: (a.record.output || {}).text || ''}; }))",
    ))
    .unwrap();
    for (k, l) in links.iter().enumerate() {
        assert_eq!(l["run"], json!(k), "{l}");
        assert!(!l["text"].as_str().unwrap().is_empty(), "{l}");
        assert!(l["href"].as_str().unwrap().starts_with("#sel="), "{l}");
    }
    // following run 1's link shows that attempt in the panel
    cdp.eval(&format!("location.hash = {}", json!(links[1]["href"])));
    cdp.wait_for(
        &format!(
            "document.getElementById('ptitle').textContent.endsWith({}) && document.getElementById('ptext').textContent.length > 0",
            json!(format!(" · {}", links[1]["node"].as_str().unwrap()))
        ),
        10,
    );
    let title = cdp.eval("document.getElementById('ptitle').textContent");
    let label = cdp.eval("S.grid.runs[1].label");
    assert!(
        title
            .as_str()
            .unwrap()
            .contains(&format!("· B {}", label.as_str().unwrap())),
        "{title}"
    );
    // the panel shows that attempt's text (the second run's)
    assert_eq!(
        cdp.eval("document.getElementById('ptext').textContent"),
        links[1]["text"]
    );
    // the grid scrolls sideways (22 columns do not fit) with its header row on top
    let scroll: Value = serde_json::from_str(
        cdp.eval(
            "(() => { const w = document.getElementById('gridwrap'); w.scrollTop = 0; w.scrollLeft = w.scrollWidth; \
             const last = document.querySelector('#grid .row .c:last-child').getBoundingClientRect(); const box = w.getBoundingClientRect(); \
             return JSON.stringify({sw: w.scrollWidth, cw: w.clientWidth, left: w.scrollLeft, lastVisible: last.right <= box.right + 1 && last.left >= box.left}); })()",
        )
        .as_str()
        .unwrap(),
    )
    .unwrap();
    assert!(scroll["sw"].as_f64() > scroll["cw"].as_f64(), "{scroll}");
    assert!(scroll["left"].as_f64().unwrap() > 0.0, "{scroll}");
    assert_eq!(
        scroll["lastVisible"],
        json!(true),
        "the last column scrolls into view: {scroll}"
    );
    cdp.eval("document.getElementById('gridwrap').scrollLeft = 0");
    // the figures of both runs are on the page
    cdp.wait_for(
        "[...document.querySelectorAll('#plotlist img')].length === 3 && [...document.querySelectorAll('#plotlist img')].every(i => i.complete && i.naturalWidth > 0)",
        10,
    );
    std::thread::sleep(Duration::from_millis(300));
    let desk = "/tmp/distill-dashboard-compare.png";
    cdp.screenshot(desk);
    // a narrow window: the panels stack, the grid keeps its scroll and its header
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 600, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );
    let narrow: Value = serde_json::from_str(
        cdp.eval(
            "(() => { const w = document.getElementById('gridwrap'); w.style.height = '120px'; w.scrollTop = 60; const h = document.getElementById('gridhead').getBoundingClientRect(); \
             const box = w.getBoundingClientRect(); const out = {sw: w.scrollWidth, cw: w.clientWidth, top: w.scrollTop, headTop: h.top - box.top}; \
             w.style.height = ''; w.scrollTop = 0; return JSON.stringify(out); })()",
        )
        .as_str()
        .unwrap(),
    )
    .unwrap();
    assert!(narrow["sw"].as_f64() > narrow["cw"].as_f64(), "{narrow}");
    assert!(
        narrow["top"].as_f64().unwrap() > 0.0,
        "the grid scrolls down: {narrow}"
    );
    assert!(
        narrow["headTop"].as_f64().unwrap().abs() <= 2.0,
        "sticky header: {narrow}"
    );
    cdp.eval("document.getElementById('gridwrap').scrollIntoView()");
    std::thread::sleep(Duration::from_millis(300));
    let small = "/tmp/distill-dashboard-compare-narrow.png";
    cdp.screenshot(small);
    cdp.call("Emulation.clearDeviceMetricsOverride", json!({}));
    for png in [desk, small] {
        let n = colours(cdp, png);
        assert!(n > 20, "{png} looks blank ({n} colours)");
    }
    println!(
        "compare view: columns per run {heads:?}, accuracy rows {accrows:?}, grid scroll {scroll}, narrow {narrow}"
    );
}

async fn big_dashboard(n: usize) -> Dashboard {
    let cols = cols(4);
    let ids: Vec<String> = (0..n).map(|i| format!("p{i:04}")).collect();
    let problems = ids
        .iter()
        .map(|i| (i.clone(), format!("question {i}")))
        .collect();
    let config = json!({"run_id": "big", "pipeline": {"name": "big", "samples": 1}});
    let d = Dashboard::start("127.0.0.1", 0, config, problems, cols.clone())
        .await
        .unwrap();
    let trace: String = "Let me reconsider the substitution carefully; ".repeat(2200); // ~100 KB
    for (p, id) in ids.iter().enumerate() {
        let mut nodes = serde_json::Map::new();
        for (node, round, kind) in &cols {
            let c = (kind == "reason").then(|| verdict(p, node));
            let text = if p % 50 == 0 {
                trace.as_str()
            } else {
                "short trace"
            };
            nodes.insert(node.clone(), node_json(node, *round, kind, text, c));
        }
        d.problem(&json!({"id": id, "index": p, "question": "q", "answer": "42", "status": "ok", "samples": [nodes]}));
    }
    d.finished(&json!({"status": "complete"}));
    d
}

/// `distill pipeline run` of the quickstart on the sim model with latency and `--dashboard`
/// (port 0): the page's URL from stderr; the process is killed on drop (it serves until Ctrl-C).
struct CliRun {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    url: String,
}

impl Drop for CliRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl CliRun {
    fn start(root: &Path) -> CliRun {
        let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "pipeline",
                "run",
                "pipelines/quickstart.yaml",
                "--no-progress",
            ])
            .args(["--set", "models.reasoner.sim.latency_ms=150"])
            // early stopping: skipped rounds carry their verdict, on the page as in the report
            .args(["--set", "nodes.rounds.when=not previous.attempt.correct"])
            .args(["--dashboard", "--dashboard_port", "0"])
            .arg("--results")
            .arg(root.join("results"))
            .arg("--cache")
            .arg(root.join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        let (tx, lines) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut run = CliRun {
            child,
            lines,
            stdout: Some(stdout),
            url: String::new(),
        };
        let l = run.wait_line(|l| l.contains("dashboard: http"), 60);
        run.url = l[l.find("http").unwrap()..].trim().to_string();
        run
    }

    fn wait_line(&mut self, f: impl Fn(&str) -> bool, secs: u64) -> String {
        let t = Instant::now();
        loop {
            let left = Duration::from_secs(secs).saturating_sub(t.elapsed());
            let l = self.lines.recv_timeout(left).expect("a line from distill");
            if f(&l) {
                return l;
            }
        }
    }

    /// Waits for the end of the run, stops the server, returns what the run printed.
    fn finish(mut self) -> String {
        self.wait_line(|l| l.contains("the run is over"), 60);
        let _ = self.child.kill();
        self.stdout.take().unwrap().join().unwrap()
    }
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
