//! The browser test's views over several runs and over samples: `distill view` of a 2-sample
//! run against its report, a run interrupted by SIGTERM, and two runs side by side (columns
//! per run, cell links to attempts, labels of missing answers, the grid's scroll and sticky
//! header at a desktop and a narrow width, screenshots that are not blank).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use distill::dashboard;
use serde_json::{Value, json};

use super::cdp::Cdp;

/// `distill view` of a quickstart run with 2 samples: every accuracy row of the page has the
/// report's successes (a sum of per-problem shares), n (problems) and interval.
pub fn samples_like_the_report(rt: &tokio::runtime::Runtime, cdp: &mut Cdp, root: &Path) {
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
pub fn interrupted_run(root: &Path) -> PathBuf {
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
pub fn compare_two_runs(rt: &tokio::runtime::Runtime, cdp: &mut Cdp, a: &Path, b: &Path) {
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
    let (scroll, narrow) = scroll_and_screens(cdp);
    println!(
        "compare view: columns per run {heads:?}, accuracy rows {accrows:?}, grid scroll {scroll}, narrow {narrow}"
    );
}

/// The compare page's grid scrolls both ways with its header on top, at 1400 px and at 600 px
/// (panels stacked); a screenshot of each, neither blank. Returns what was measured.
fn scroll_and_screens(cdp: &mut Cdp) -> (Value, Value) {
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
    (scroll, narrow)
}
