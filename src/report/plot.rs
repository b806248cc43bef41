//! The report's figures, sized for a two-column paper (3.3 in wide, text 7–8 pt at that
//! size): `accuracy_vs_round` (per-round accuracy of every run, one 95% Wilson band each),
//! `cumulative_accuracy` (solved by round i, same bands) and `accuracy_vs_tokens` (per-round
//! accuracy against the mean tokens spent per attempt up to the round, round labels at the
//! points, Wilson bars). Each run has its own colour, line style and marker (`marks`), so the
//! figures read in greyscale. Drawn with plotters' SVG backend (text stays SVG text); the PNG
//! beside each SVG is that SVG rendered by `png`. What each figure and band is: [`FIGURES`],
//! the caption lines of report.md. This module computes no number: it draws the report's.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Report;
use super::metrics::{CUMULATIVE, PER_ROUND, RunReport};

#[path = "marks.rs"]
mod marks;
#[path = "png.rs"]
mod png;

pub use marks::{Look, Marker, look};
use marks::{line, marker};

pub const ACCURACY_VS_ROUND: &str = "accuracy_vs_round.svg";
pub const CUMULATIVE_ACCURACY: &str = "cumulative_accuracy.svg";
pub const ACCURACY_VS_TOKENS: &str = "accuracy_vs_tokens.svg";

/// A figure's file name (SVG; the PNG has the same stem) and its caption line in report.md.
pub struct Figure {
    pub name: &'static str,
    pub caption: &'static str,
}

/// The figures, in the order report.md lists them.
pub const FIGURES: [Figure; 3] = [
    Figure {
        name: ACCURACY_VS_ROUND,
        caption: "Per-round accuracy: the share right among the attempts at round i that have a verdict (n in the legend). Band: 95% Wilson interval per round over the attempts with a verdict. One colour, line style and marker per run.",
    },
    Figure {
        name: CUMULATIVE_ACCURACY,
        caption: "Cumulative accuracy (solved by round i, \"any correct so far\"): among the attempts with a verdict at round i, the share whose sample was right at some round ≤ i (with samples > 1: per problem over its samples, then the mean over problems). Band: 95% Wilson interval per round over those attempts.",
    },
    Figure {
        name: ACCURACY_VS_TOKENS,
        caption: "Per-round accuracy against the mean tokens per attempt spent up to round i (prompt + completion of every node of rounds ≤ i, per sample of the problems with a record); the label at each point is its round i. Bars: 95% Wilson interval per round over the attempts with a verdict.",
    },
];

/// Whether the figures are also written as PNG (the `png` feature).
pub const PNG: bool = png::ENABLED;

/// The caption of figure `name` (an SVG name of [`FIGURES`]).
pub fn caption(name: &str) -> Option<&'static str> {
    FIGURES.iter().find(|f| f.name == name).map(|f| f.caption)
}

/// Drawing units per point: the SVG is drawn at 144 units per inch and declared 3.3 in wide.
const U: i32 = 2;
const WIDTH_IN: f64 = 3.3;
const W: u32 = 475; // 3.3 in × 72 pt × U
const CHART_H: u32 = 317; // 2.2 in
/// Legend rows below the chart, one per run.
const LEGEND_ROW: u32 = 11 * U as u32;
const LEGEND_PAD: u32 = 4 * U as u32;
/// Text sizes in units (7 pt and 8 pt at 3.3 in wide).
const TEXT: i32 = 7 * U;
const AXIS_TEXT: i32 = 8 * U;
/// Characters of a run's label kept in the legend.
const LABEL_CHARS: usize = 58;

/// Writes every figure into `dir` as SVG, and as PNG when `png` (and the build has [`PNG`]);
/// returns the SVG names written (none when no run has a graded round). A PNG that cannot be
/// rendered is a warning, the SVG stays.
pub fn write_plots(rep: &Report, dir: &Path, png: bool) -> Result<Vec<String>, String> {
    if rep.runs.iter().all(|r| r.rounds.is_empty()) {
        return Ok(Vec::new());
    }
    let mut written = Vec::new();
    let mut svgs = Vec::new();
    for f in &FIGURES {
        let svg = svg(rep, f.name)?;
        let path = dir.join(f.name);
        std::fs::write(&path, &svg).map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(f.name.to_string());
        svgs.push((path.with_extension("png"), svg));
    }
    if png && png::ENABLED {
        // the figures are rasterized side by side: it is most of a warm run's end
        std::thread::scope(|s| {
            let jobs: Vec<_> = svgs
                .iter()
                .map(|(path, svg)| s.spawn(move || (path, png::render(svg))))
                .collect();
            for j in jobs {
                let Ok((path, r)) = j.join() else { continue };
                match r.and_then(|bytes| {
                    std::fs::write(path, bytes).map_err(|e| format!("writing: {e}"))
                }) {
                    Ok(()) => {}
                    Err(e) => eprintln!("warning: {}: not written: {e}", path.display()),
                }
            }
        });
    }
    Ok(written)
}

/// Figure `name` of [`FIGURES`] as an SVG document.
pub fn svg(rep: &Report, name: &str) -> Result<String, String> {
    let err = |e: String| format!("drawing {name}: {e}");
    let est = |cum: bool| {
        move |x: &super::metrics::RoundRow| {
            let a = if cum {
                &x.cumulative_accuracy
            } else {
                &x.per_round_accuracy
            };
            (a.value, a.ci_low, a.ci_high)
        }
    };
    match name {
        ACCURACY_VS_ROUND => {
            let pts = series(rep, |x| x.round as f64, est(false));
            let spec = Spec::rounds(format!("{PER_ROUND} (%)"));
            draw(rep, &spec, &pts).map_err(err)
        }
        CUMULATIVE_ACCURACY => {
            let pts = series(rep, |x| x.round as f64, est(true));
            let spec = Spec::rounds(format!("{CUMULATIVE} (%)"));
            draw(rep, &spec, &pts).map_err(err)
        }
        ACCURACY_VS_TOKENS => {
            let pts = series(rep, |x| x.cumulative_tokens_per_attempt, est(false));
            let spec = Spec {
                x_desc: "mean tokens per attempt, rounds ≤ i".into(),
                y_desc: format!("{PER_ROUND} (%)"),
                rounds_axis: false,
                bars: true,
            };
            draw(rep, &spec, &pts).map_err(err)
        }
        _ => Err(format!("no figure named {name}")),
    }
}

/// One plotted point: x, the estimate and its interval (in %), and its round.
#[derive(Clone, Copy)]
struct Pt {
    x: f64,
    y: f64,
    lo: f64,
    hi: f64,
    round: u32,
}

struct Spec {
    x_desc: String,
    y_desc: String,
    /// x is the round (integer ticks), else a token count
    rounds_axis: bool,
    /// intervals as bars with round labels at the points, else a band per run
    bars: bool,
}

impl Spec {
    fn rounds(y_desc: String) -> Self {
        Spec {
            x_desc: "round i".into(),
            y_desc,
            rounds_axis: true,
            bars: false,
        }
    }
}

fn series(
    rep: &Report,
    x: impl Fn(&super::metrics::RoundRow) -> f64,
    y: impl Fn(&super::metrics::RoundRow) -> (f64, f64, f64),
) -> Vec<Vec<Pt>> {
    rep.runs
        .iter()
        .map(|r| {
            r.rounds
                .iter()
                .filter_map(|row| {
                    let (v, lo, hi) = y(row);
                    v.is_finite().then(|| Pt {
                        x: x(row),
                        y: 100.0 * v,
                        lo: 100.0 * lo,
                        hi: 100.0 * hi,
                        round: row.round,
                    })
                })
                .collect()
        })
        .collect()
}

/// A run's legend entry: its label (shortened), n (the attempts with a verdict per round),
/// and for a run that stopped early or has attempts without a verdict, `STOPPED EARLY` and
/// those counts.
fn legend(r: &RunReport) -> String {
    let mut l: String = r.label.chars().take(LABEL_CHARS).collect();
    if r.label.chars().count() > LABEL_CHARS {
        l.push('…');
    }
    let ns = r.rounds.iter().map(|x| x.per_round_accuracy.n);
    let (lo, hi) = (ns.clone().min().unwrap_or(0), ns.max().unwrap_or(0));
    if lo == hi {
        l.push_str(&format!(" (n={hi})"));
    } else {
        l.push_str(&format!(" (n={lo}–{hi})"));
    }
    if r.stopped_early.is_some() {
        l.push_str(" STOPPED EARLY");
    }
    if r.failed_attempts + r.not_run_attempts > 0 {
        l.push_str(&format!(
            " failed {}, not run {}",
            r.failed_attempts, r.not_run_attempts
        ));
    }
    l
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// The y range (in %) that holds every point and interval, on multiples of 10 (at least
/// 20 points tall), within 0–100.
fn y_range(series: &[Vec<Pt>]) -> (f64, f64) {
    let all = series.iter().flatten();
    let lo = all
        .clone()
        .map(|p| p.lo.min(p.y))
        .fold(f64::INFINITY, f64::min);
    let hi = all.map(|p| p.hi.max(p.y)).fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 100.0);
    }
    let mut lo = (((lo - 2.0) / 10.0).floor() * 10.0).max(0.0);
    let mut hi = (((hi + 2.0) / 10.0).ceil() * 10.0).min(100.0);
    if hi - lo < 20.0 {
        hi = (lo + 20.0).min(100.0);
        lo = (hi - 20.0).max(0.0);
    }
    (lo, hi)
}

fn x_range(series: &[Vec<Pt>], rounds: bool) -> (f64, f64) {
    let hi = series.iter().flatten().map(|p| p.x).fold(0.0f64, f64::max);
    if rounds {
        (-0.3, hi.max(1.0) + 0.3)
    } else {
        (0.0, hi.max(1.0) * 1.1)
    }
}

fn tokens_label(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        let k = format!("{:.1}", x / 1000.0);
        format!("{}k", k.trim_end_matches(".0"))
    } else {
        format!("{x:.0}")
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one figure: bands (or bars) first, then each run's line and markers, then the legend
/// below the chart, one row per run.
fn draw(rep: &Report, spec: &Spec, series: &[Vec<Pt>]) -> Result<String, String> {
    let legend_h = LEGEND_PAD * 2 + LEGEND_ROW * rep.runs.len() as u32;
    let h = CHART_H + legend_h;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (W, h)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, bottom) = root.split_vertically(CHART_H);
        let (ylo, yhi) = y_range(series);
        let (xlo, xhi) = x_range(series, spec.rounds_axis);
        let mut chart = ChartBuilder::on(&top)
            .margin_top(6 * U)
            .margin_right(10 * U)
            .margin_left(2 * U)
            .x_label_area_size(20 * U)
            .y_label_area_size(24 * U)
            .build_cartesian_2d(xlo..xhi, ylo..yhi)
            .map_err(e)?;
        mesh(&mut chart, spec, series)?;
        if !spec.bars {
            bands(&mut chart, series)?;
        }
        let runs = series.len() as i32;
        for (i, pts) in series.iter().enumerate() {
            // bars of runs at the same x stand side by side, 4 units apart
            let dodge = if spec.bars {
                (2 * i as i32 - (runs - 1)) * 2 * U
            } else {
                0
            };
            let at = |x: f64, y: f64| {
                let (px, py) = chart.backend_coord(&(x, y));
                (px + dodge, py)
            };
            let px: Vec<Px> = pts
                .iter()
                .map(|p| Px {
                    at: at(p.x, p.y),
                    lo: at(p.x, p.lo),
                    hi: at(p.x, p.hi),
                    round: p.round,
                })
                .collect();
            run(&root, &px, look(i), spec.bars)?;
        }
        draw_legend(&bottom, rep)?;
        root.present().map_err(e)?;
    }
    Ok(physical_size(buf, h))
}

/// The axes, their labels and a light grid (major lines only).
fn mesh<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    spec: &Spec,
    series: &[Vec<Pt>],
) -> Result<(), String> {
    let grey = RGBColor(110, 110, 110);
    let text = ("sans-serif", TEXT).into_font().color(&BLACK);
    let int_label = |x: &f64| format!("{x:.0}");
    let tok_label = |x: &f64| tokens_label(*x);
    let max_round = series.iter().flatten().map(|p| p.round).max().unwrap_or(0);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(RGBColor(226, 226, 226).stroke_width(1))
        .light_line_style(WHITE.mix(0.0))
        .axis_style(grey.stroke_width(1))
        .label_style(text)
        .axis_desc_style(("sans-serif", AXIS_TEXT).into_font())
        .x_desc(spec.x_desc.as_str())
        .y_desc(spec.y_desc.as_str())
        .y_labels(6)
        .y_label_formatter(&int_label);
    if spec.rounds_axis {
        mesh.x_labels(max_round as usize + 2)
            .x_label_formatter(&int_label);
    } else {
        mesh.x_labels(5).x_label_formatter(&tok_label);
    }
    mesh.draw().map_err(e)
}

/// Each run's interval band, light, under every line (a single round: a short thick bar).
fn bands<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, series: &[Vec<Pt>]) -> Result<(), String> {
    for (i, pts) in series.iter().enumerate() {
        let c = look(i).color;
        if pts.len() > 1 {
            let band: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| (p.x, p.hi))
                .chain(pts.iter().rev().map(|p| (p.x, p.lo)))
                .collect();
            chart
                .draw_series(std::iter::once(Polygon::new(band, c.mix(0.11).filled())))
                .map_err(e)?;
        } else if let Some(p) = pts.first() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(p.x, p.lo), (p.x, p.hi)],
                    c.mix(0.4).stroke_width(3 * U as u32),
                )))
                .map_err(e)?;
        }
    }
    Ok(())
}

/// A point in backend coordinates: the estimate, its interval's ends, its round.
struct Px {
    at: (i32, i32),
    lo: (i32, i32),
    hi: (i32, i32),
    round: u32,
}

/// One run: with `bars`, its interval bars (capped) and a round label at each point; then its
/// line and markers.
fn run<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pts: &[Px],
    lk: Look,
    bars: bool,
) -> Result<(), String> {
    if bars {
        let st = lk.color.mix(0.8).stroke_width(U as u32);
        let cap = 2 * U;
        for p in pts {
            root.draw(&PathElement::new(vec![p.lo, p.hi], st))
                .map_err(e)?;
            for end in [p.lo, p.hi] {
                root.draw(&PathElement::new(
                    vec![(end.0 - cap, end.1), (end.0 + cap, end.1)],
                    st,
                ))
                .map_err(e)?;
            }
        }
    }
    let line_pts: Vec<(i32, i32)> = pts.iter().map(|p| p.at).collect();
    line(root, &line_pts, lk)?;
    for p in pts {
        marker(root, p.at, lk)?;
        if bars {
            let style = ("sans-serif", TEXT).into_font().color(&lk.color);
            root.draw(&Text::new(
                p.round.to_string(),
                (p.at.0 + 5 * U, p.at.1 - 9 * U),
                style,
            ))
            .map_err(e)?;
        }
    }
    Ok(())
}

/// One legend row per run: a sample of its line with its marker, then its label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rep: &Report,
) -> Result<(), String> {
    let text = ("sans-serif", TEXT).into_font().color(&BLACK);
    for (i, r) in rep.runs.iter().enumerate() {
        let lk = look(i);
        let y = (LEGEND_PAD + LEGEND_ROW * i as u32 + LEGEND_ROW / 2) as i32;
        let x0 = 26 * U;
        line(area, &[(x0, y), (x0 + 24 * U, y)], lk)?;
        marker(area, (x0 + 12 * U, y), lk)?;
        area.draw(&Text::new(
            legend(r),
            (x0 + 30 * U, y - TEXT / 2 - 1),
            text.clone(),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// Declares the drawing's physical size (3.3 in wide) so that it prints at the size its
/// text was chosen for; the viewBox keeps the drawing units.
fn physical_size(svg: String, h: u32) -> String {
    let from = format!("width=\"{W}\" height=\"{h}\"");
    let to = format!(
        "width=\"{WIDTH_IN}in\" height=\"{:.3}in\"",
        WIDTH_IN * h as f64 / W as f64
    );
    svg.replacen(&from, &to, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_differ_in_colour_marker_and_line() {
        for i in 0..6 {
            for j in 0..i {
                let (a, b) = (look(i), look(j));
                assert_ne!(a.color, b.color, "{i} {j}");
                assert_ne!(a.marker, b.marker, "{i} {j}");
                if i < 4 {
                    assert_ne!(a.dash, b.dash, "{i} {j}");
                }
            }
        }
    }

    #[test]
    fn y_range_fits_the_data() {
        let p = |y: f64, lo: f64, hi: f64| Pt {
            x: 0.0,
            y,
            lo,
            hi,
            round: 0,
        };
        assert_eq!(y_range(&[vec![p(50.0, 40.0, 61.0)]]), (30.0, 70.0));
        assert_eq!(y_range(&[vec![p(99.0, 97.0, 100.0)]]), (80.0, 100.0));
        assert_eq!(y_range(&[vec![p(1.0, 0.0, 3.0)]]), (0.0, 20.0));
        assert_eq!(y_range(&[vec![]]), (0.0, 100.0));
    }
}
