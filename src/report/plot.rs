//! SVG plots of a report (plotters, SVG backend: text is SVG text, no font files):
//! `accuracy_vs_round.svg` (per-round accuracy of every run with its Wilson 95% band, each
//! point labelled with its n: the attempts with a verdict) and `accuracy_vs_tokens.svg`
//! (per-round accuracy against cumulative tokens per attempt). A run that stopped early says so
//! in the legend, with its failed and not-run counts.

use std::path::Path;

use plotters::prelude::*;

use super::Report;
use super::metrics::{PER_ROUND, RunReport};

/// A run's legend entry: its label, and for a run that stopped early or has attempts without
/// a verdict, `STOPPED EARLY` and those counts.
fn legend(r: &RunReport) -> String {
    let mut l = r.label.clone();
    if r.stopped_early.is_some() {
        l.push_str(" — STOPPED EARLY");
    }
    if r.failed_attempts + r.not_run_attempts > 0 {
        l.push_str(&format!(
            " (failed {}, not run {})",
            r.failed_attempts, r.not_run_attempts
        ));
    }
    l
}

pub const ACCURACY_VS_ROUND: &str = "accuracy_vs_round.svg";
pub const ACCURACY_VS_TOKENS: &str = "accuracy_vs_tokens.svg";

/// Writes the plots into `dir`; returns the names of the files written (none when no run has a
/// graded round).
pub fn write_plots(rep: &Report, dir: &Path) -> Result<Vec<String>, String> {
    if rep.runs.iter().all(|r| r.rounds.is_empty()) {
        return Ok(Vec::new());
    }
    let err = |name: &str| {
        let name = name.to_string();
        move |e: String| format!("drawing {name}: {e}")
    };
    accuracy_vs_round(rep, &dir.join(ACCURACY_VS_ROUND)).map_err(err(ACCURACY_VS_ROUND))?;
    accuracy_vs_tokens(rep, &dir.join(ACCURACY_VS_TOKENS)).map_err(err(ACCURACY_VS_TOKENS))?;
    Ok(vec![ACCURACY_VS_ROUND.into(), ACCURACY_VS_TOKENS.into()])
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    C[i % C.len()]
}

fn accuracy_vs_round(rep: &Report, path: &Path) -> Result<(), String> {
    let max_round = rep
        .runs
        .iter()
        .flat_map(|r| r.rounds.iter().map(|x| x.round))
        .max()
        .unwrap_or(0) as f64;
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{PER_ROUND} by round (95% Wilson band; n = attempts with a verdict)"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.25f64..max_round + 0.25, 0f64..100f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc(format!("{PER_ROUND} (%)"))
        .x_labels(max_round as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(e)?;
    for (i, r) in rep.runs.iter().enumerate() {
        let c = color(i);
        let upper = r
            .rounds
            .iter()
            .map(|x| (x.round as f64, 100.0 * x.per_round_accuracy.ci_high));
        let lower = r
            .rounds
            .iter()
            .rev()
            .map(|x| (x.round as f64, 100.0 * x.per_round_accuracy.ci_low));
        let band: Vec<(f64, f64)> = upper.chain(lower).collect();
        chart
            .draw_series(std::iter::once(Polygon::new(band, c.mix(0.15).filled())))
            .map_err(e)?;
        let pts: Vec<(f64, f64)> = r
            .rounds
            .iter()
            .filter(|x| x.per_round_accuracy.value.is_finite())
            .map(|x| (x.round as f64, 100.0 * x.per_round_accuracy.value))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(legend(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(e)?;
        chart
            .draw_series(
                r.rounds
                    .iter()
                    .filter(|x| x.per_round_accuracy.value.is_finite())
                    .map(|x| {
                        let at = (x.round as f64 + 0.03, 100.0 * x.per_round_accuracy.value);
                        let n = x.per_round_accuracy.n;
                        Text::new(
                            format!("n={n}"),
                            at,
                            ("sans-serif", 11).into_font().color(&c),
                        )
                    }),
            )
            .map_err(e)?;
        chart
            .draw_series(r.rounds.iter().map(|x| {
                // a whisker from the interval's low to its high end, with short caps
                let a = &x.per_round_accuracy;
                let (r, lo, hi, w) = (x.round as f64, 100.0 * a.ci_low, 100.0 * a.ci_high, 0.04);
                PathElement::new(
                    vec![
                        (r - w, lo),
                        (r + w, lo),
                        (r, lo),
                        (r, hi),
                        (r - w, hi),
                        (r + w, hi),
                    ],
                    c.stroke_width(1),
                )
            }))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

fn accuracy_vs_tokens(rep: &Report, path: &Path) -> Result<(), String> {
    let max_tokens = rep
        .runs
        .iter()
        .flat_map(|r| r.rounds.iter().map(|x| x.cumulative_tokens_per_attempt))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let root = SVGBackend::new(path, (820, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{PER_ROUND} vs tokens spent"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..max_tokens * 1.05, 0f64..100f64)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("cumulative tokens per attempt (prompt + completion, all nodes up to the round)")
        .y_desc(format!("{PER_ROUND} (%)"))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(e)?;
    for (i, r) in rep.runs.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = r
            .rounds
            .iter()
            .filter(|x| x.per_round_accuracy.value.is_finite())
            .map(|x| {
                (
                    x.cumulative_tokens_per_attempt,
                    100.0 * x.per_round_accuracy.value,
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(legend(r))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}
