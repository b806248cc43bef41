//! The report's figures as files: for 1, 3 and 4 runs, every figure is written as an SVG
//! that parses (usvg) and declares a 3.3 in width, and as a PNG that decodes at 300 dpi;
//! each run is drawn with its own colour, marker and line style; report.md has a caption
//! line per figure saying what its band or bars are. No pixel is asserted (the figures were
//! looked at as images; the numbers they draw are the report's, tested in report.rs).
//! Needs the `png` feature (default): the SVG is parsed and the PNG decoded with resvg's crates.
#![cfg(feature = "png")]

mod report_support;

use std::path::{Path, PathBuf};

use distill::report::plot::{FIGURES, look};
use distill::report::report;
use report_support::*;
use serde_json::{Value, json};

/// A run of `n` problems over rounds 0..=4 whose chance of a right answer is
/// `base + gain × round` (deterministic), named `name`.
fn run(dir: &Path, name: &str, n: usize, base: f64, gain: f64) -> PathBuf {
    let problems: Vec<Value> = (0..n)
        .map(|p| {
            let mut nodes = Vec::new();
            for r in 0..=4u32 {
                if r > 0 {
                    nodes.push(summary(r));
                }
                // a fixed, well spread draw per (problem, round)
                let u = ((p * 37 + r as usize * 11 + name.len() * 5) % 97) as f64 / 97.0;
                nodes.push(attempt(r, "done", u < base + gain * r as f64));
            }
            problem(&format!("p{p}"), "ok", vec![sample(nodes)])
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|p| format!("p{p}")).collect();
    let cfg = json!({"problems": {"path": "nowhere.csv", "selected": ids}});
    let run = write_run(&dir.join(name), problems, Some(cfg));
    let mut doc = read_json(&run.join("results.json"));
    doc["pipeline"] = json!(name);
    std::fs::write(run.join("results.json"), doc.to_string()).unwrap();
    run
}

const RUNS: [(&str, f64, f64); 4] = [
    ("iterated", 0.35, 0.08),
    ("first-k", 0.35, 0.04),
    ("wait", 0.30, 0.02),
    ("summary-plain", 0.40, 0.05),
];

/// The report over the first `k` runs of [`RUNS`]: its directory.
fn report_of(tmp: &Path, k: usize) -> PathBuf {
    let runs = RUNS[..k]
        .iter()
        .map(|(name, b, g)| run(tmp, name, 40, *b, *g))
        .collect();
    let out = tmp.join(format!("out{k}"));
    report(&opts(runs, &out)).unwrap();
    if let Ok(keep) = std::env::var("DISTILL_KEEP_FIGURES") {
        // for looking at them: DISTILL_KEEP_FIGURES=DIR cargo test --test figures
        let dest = Path::new(&keep).join(format!("{k}-runs"));
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(&out).unwrap().flatten() {
            std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
        }
    }
    out
}

#[test]
fn figures_are_written_as_svg_and_png_for_one_three_and_four_runs() {
    let tmp = tempfile::tempdir().unwrap();
    for k in [1, 3, 4] {
        let out = report_of(tmp.path(), k);
        for f in &FIGURES {
            let svg = std::fs::read_to_string(out.join(f.name)).unwrap();
            assert!(
                svg.contains("width=\"3.3in\""),
                "{}: {}",
                f.name,
                &svg[..200]
            );
            let tree = resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default())
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.name));
            // 3.3 in at 96 px per inch
            assert!((tree.size().width() - 316.8).abs() < 0.5, "{}", f.name);
            let png = std::fs::read(out.join(f.name).with_extension("png")).unwrap();
            let img = resvg::tiny_skia::Pixmap::decode_png(&png).unwrap();
            assert_eq!(img.width(), 990, "{}: 3.3 in at 300 dpi", f.name);
            let h_in = img.height() as f64 / 300.0;
            assert!((2.3..3.5).contains(&h_in), "{}: {h_in} in tall", f.name);
            // the legend names every run
            for (name, _, _) in &RUNS[..k] {
                assert!(
                    svg.contains(&format!("{name} abcdef (n=40)")),
                    "{}: {name}",
                    f.name
                );
            }
        }
    }
}

#[test]
fn each_run_has_its_own_colour_marker_and_line_style() {
    let tmp = tempfile::tempdir().unwrap();
    let out = report_of(tmp.path(), 4);
    let svg = std::fs::read_to_string(out.join(FIGURES[0].name)).unwrap();
    let hex = |i: usize| {
        let c = look(i).color;
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    };
    // run 0: filled circles; run 1: open squares; run 2: filled triangles; run 3: open diamonds
    assert!(svg.contains("<circle") && svg.contains(&format!("fill=\"{}\"", hex(0))));
    assert!(svg.contains("<rect") && svg.contains(&format!("stroke=\"{}\"", hex(1))));
    assert!(svg.contains("<polygon") && svg.contains(&format!("fill=\"{}\"", hex(2))));
    assert!(svg.contains(&format!("stroke=\"{}\"", hex(3))));
    let dashes: Vec<(u32, u32)> = (0..4).map(|i| look(i).dash).collect();
    let mut unique = dashes.clone();
    unique.dedup();
    assert_eq!(unique.len(), 4, "{dashes:?}");
    // a dashed run is drawn as many short pieces, a solid one as one line per series
    let pieces = |i: usize| svg.matches(&format!("stroke=\"{}\"", hex(i))).count();
    assert!(pieces(1) > 3 * pieces(0), "{} vs {}", pieces(1), pieces(0));
}

#[test]
fn report_md_has_a_caption_line_per_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = report_of(tmp.path(), 3);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for f in &FIGURES {
        let png = f.name.replace(".svg", ".png");
        assert!(md.contains(&format!("![{0}]({0})", f.name)), "{md}");
        let line = md
            .lines()
            .find(|l| l.starts_with('*') && l.contains(&format!("[{png}]({png})")))
            .unwrap_or_else(|| panic!("no caption for {}: {md}", f.name));
        assert!(line.contains("95% Wilson interval"), "{line}");
        assert!(line.contains("Band:") || line.contains("Bars:"), "{line}");
    }
    assert!(
        md.contains("any correct so far"),
        "the cumulative figure is defined"
    );
}
