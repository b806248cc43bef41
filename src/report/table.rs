//! Rendering a `Report`: the markdown (report.md and stdout) and the JSON; the long CSV is in
//! `csv.rs`, the compact per-round table printed after a run in `compact.rs`. Every accuracy
//! cell's n is the number with a verdict; beside it, `failed` and `not run` columns; a run that
//! stopped early says so in the title, the runs table and its own section.

use std::fmt::Write as _;

use super::Report;
use super::metrics::{CUMULATIVE, Estimate, PER_ROUND, RunReport, reasons_text};

pub use super::compact::compact;

pub(super) fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}%", 100.0 * v)
    } else {
        "–".into()
    }
}

fn signed_pts(v: f64) -> String {
    if v.is_finite() {
        format!("{:+.1} pts", 100.0 * v)
    } else {
        "–".into()
    }
}

pub(super) fn count(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.2}")
    }
}

/// `37.5% [13.7–69.4] (3/8)`
pub(super) fn est(e: &Estimate) -> String {
    if e.n == 0 {
        return "–".into();
    }
    format!(
        "{} [{:.1}–{:.1}] ({}/{})",
        pct(e.value),
        100.0 * e.ci_low,
        100.0 * e.ci_high,
        count(e.successes),
        e.n
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

pub(super) fn ids(v: &[String]) -> String {
    shown_ids(v.iter().map(String::as_str), v.len())
}

/// The first ids of `n`, and how many more.
fn shown_ids<'a>(v: impl Iterator<Item = &'a str>, n: usize) -> String {
    const MAX: usize = 40;
    let mut s = v.take(MAX).collect::<Vec<_>>().join(", ");
    if n > MAX {
        let _ = write!(s, ", … ({} more)", n - MAX);
    }
    s
}

/// All rounds of all runs, in order.
fn all_rounds(rep: &Report) -> Vec<u32> {
    let mut r: Vec<u32> = rep
        .runs
        .iter()
        .flat_map(|r| r.rounds.iter().map(|x| x.round))
        .collect();
    r.sort_unstable();
    r.dedup();
    r
}

/// A table's header: the `first` columns, then per run its label, `failed` and `not run`.
fn header(s: &mut String, first: &[&str], runs: &[RunReport]) {
    let cols: Vec<String> = first
        .iter()
        .map(|c| c.to_string())
        .chain(
            runs.iter()
                .flat_map(|r| [r.label.replace('|', "/"), "failed".into(), "not run".into()]),
        )
        .collect();
    let _ = writeln!(s, "| {} |", cols.join(" | "));
    let align: Vec<&str> = first
        .iter()
        .map(|_| "---")
        .chain(runs.iter().flat_map(|_| ["---:"; 3]))
        .collect();
    let _ = writeln!(s, "|{}|", align.join("|"));
}

/// A run's three cells of a table row: the figure, failed, not run (`–` when absent).
fn cells3(x: Option<(String, usize, usize)>) -> String {
    match x {
        Some((e, f, n)) => format!("{e} | {f} | {n}"),
        None => "– | – | –".into(),
    }
}

/// The report's title line: says which runs stopped early.
fn title(rep: &Report) -> String {
    let stopped: Vec<&RunReport> = rep
        .runs
        .iter()
        .filter(|r| r.stopped_early.is_some())
        .collect();
    match stopped.as_slice() {
        [] => "# distill report".into(),
        [r] if rep.runs.len() == 1 => format!(
            "# distill report — {}",
            r.stopped_early.as_deref().unwrap_or("")
        ),
        rs => {
            let names: Vec<&str> = rs.iter().map(|r| r.label.as_str()).collect();
            format!(
                "# distill report — STOPPED EARLY: {} (see the runs table)",
                names.join(", ")
            )
        }
    }
}

/// report.md; `png`: the figures' PNG copies were written beside their SVGs (else each
/// caption says how to make them).
pub fn markdown(rep: &Report, plots: &[String], png: bool) -> String {
    let mut s = format!("{}\n\n", title(rep));
    s.push_str("| run | format | pipeline | run id | status | problems | samples | rounds | failed | not run | file |\n|---|---|---|---|---|---:|---:|---|---:|---:|---|\n");
    for r in &rep.runs {
        let rounds: Vec<String> = r.rounds.iter().map(|x| x.round.to_string()).collect();
        let status = match &r.stopped_early {
            Some(n) => format!("{} — **{n}**", r.status),
            None => r.status.clone(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.format,
            r.pipeline,
            r.run_id,
            status,
            r.problems,
            r.samples,
            rounds.join(", "),
            r.failed_attempts,
            r.not_run_attempts,
            r.path
        );
    }
    for r in rep.runs.iter().filter(|r| r.simulated) {
        let _ = writeln!(
            s,
            "\n> **{}** used `sim`, a SIMULATED reasoner, not a language model: its figures test the tool, not a method.",
            r.label
        );
    }
    s.push_str("\nMetrics:\n");
    for (name, def) in &rep.metrics {
        let _ = writeln!(s, "- **{name}**: {def}");
    }
    let _ = writeln!(
        s,
        "\nIntervals are 95%: Wilson score for a proportion over problems (with samples > 1, the per-problem shares are fractional successes); differences use a paired bootstrap over problems ({} resamples, seed {}, 2.5–97.5 percentiles). Cells read `value [low–high] (successes/n)`, n = the attempts with a verdict (with samples > 1: the problems with one); `failed` and `not run` count the attempts without one, left out of n.",
        rep.bootstrap, rep.seed
    );

    let rounds = all_rounds(rep);
    for (title, cumulative) in [(PER_ROUND, false), (CUMULATIVE, true)] {
        let _ = writeln!(s, "\n## {title}\n");
        header(&mut s, &["round"], &rep.runs);
        for &round in &rounds {
            let cells: Vec<String> = rep
                .runs
                .iter()
                .map(|r| {
                    cells3(r.rounds.iter().find(|x| x.round == round).map(|x| {
                        let e = if cumulative {
                            &x.cumulative_accuracy
                        } else {
                            &x.per_round_accuracy
                        };
                        (est(e), x.attempts.failed, x.attempts.not_run)
                    }))
                })
                .collect();
            let _ = writeln!(s, "| {round} | {} |", cells.join(" | "));
        }
    }

    // pass@k / majority@k: one row per (metric, round, source)
    let mut keys: Vec<(u32, u64, String, String)> = Vec::new();
    for r in &rep.runs {
        for m in &r.k_metrics {
            let k = (m.round, m.k, m.metric.clone(), m.source.clone());
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    if !keys.is_empty() {
        keys.sort_by_key(|(round, k, metric, source)| {
            (*round, metric.starts_with("majority"), *k, source.clone())
        });
        s.push_str("\n## pass@k and majority@k\n\n");
        header(&mut s, &["metric", "round", "source"], &rep.runs);
        for (round, k, metric, source) in &keys {
            let cells: Vec<String> = rep
                .runs
                .iter()
                .map(|r| {
                    cells3(
                        r.k_metrics
                            .iter()
                            .find(|m| {
                                m.round == *round
                                    && m.k == *k
                                    && &m.metric == metric
                                    && &m.source == source
                            })
                            .map(|m| (est(&m.estimate), m.failed, m.not_run)),
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "| {metric} | {round} | {source} | {} |",
                cells.join(" | ")
            );
        }
    }

    if rep.runs.iter().any(|r| r.first_vs_last.is_some()) {
        let _ = writeln!(
            s,
            "\n## {PER_ROUND}: first round → last round (paired bootstrap)\n\n| run | rounds | first | last | difference | 95% CI | problems |\n|---|---|---:|---:|---:|---|---:|"
        );
        for r in &rep.runs {
            if let Some(d) = &r.first_vs_last {
                let _ = writeln!(
                    s,
                    "| {} | {} → {} | {} | {} | {} | [{}, {}] | {} |",
                    r.label,
                    r.outcomes.first_round,
                    r.outcomes.last_round,
                    pct(d.a),
                    pct(d.b),
                    signed_pts(d.diff),
                    signed_pts(d.ci_low),
                    signed_pts(d.ci_high),
                    d.n
                );
            }
        }
    }
    if !rep.comparisons.is_empty() {
        let _ = writeln!(
            s,
            "\n## runs compared: {PER_ROUND} at each run's last round (paired bootstrap over common problems)\n\n| run | vs | common problems | accuracy (run) | accuracy (vs) | difference | 95% CI | only in run / only in vs |\n|---|---|---:|---:|---:|---:|---|---|"
        );
        for c in rep.comparisons.iter().filter(|c| c.diff.n > 0) {
            let d = &c.diff;
            let _ = writeln!(
                s,
                "| {} (round {}) | {} (round {}) | {} | {} | {} | {} | [{}, {}] | {} / {} |",
                c.run_b,
                c.round_b,
                c.run_a,
                c.round_a,
                d.n,
                pct(d.b),
                pct(d.a),
                signed_pts(d.diff),
                signed_pts(d.ci_low),
                signed_pts(d.ci_high),
                c.only_in_b,
                c.only_in_a
            );
        }
        for c in rep.comparisons.iter().filter(|c| c.diff.n == 0) {
            let _ = writeln!(
                s,
                "\n{} and {} share no problem: not compared.",
                c.run_b, c.run_a
            );
        }
    }
    if let Some(g) = &rep.group_by {
        let _ = writeln!(s, "\n## {PER_ROUND} by `{g}`\n");
        header(&mut s, &["group", "round"], &rep.runs);
        let mut names: Vec<&str> = rep
            .runs
            .iter()
            .flat_map(|r| r.groups.iter().map(|g| g.group.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            for &round in &rounds {
                let cells: Vec<String> = rep
                    .runs
                    .iter()
                    .map(|r| {
                        cells3(
                            r.groups
                                .iter()
                                .find(|g| g.group == name)
                                .and_then(|g| g.rounds.iter().find(|x| x.round == round))
                                .map(|x| (est(&x.per_round_accuracy), x.failed, x.not_run)),
                        )
                    })
                    .collect();
                if cells.iter().any(|c| c != "– | – | –") {
                    let _ = writeln!(s, "| {name} | {round} | {} |", cells.join(" | "));
                }
            }
        }
    }
    for r in &rep.runs {
        run_section(&mut s, r);
    }
    if !plots.is_empty() {
        s.push_str("\n## plots\n\n");
        for p in plots {
            let png_name = p.replace(".svg", ".png");
            let _ = writeln!(s, "![{p}]({p})\n");
            match super::plot::caption(p) {
                Some(c) if png => {
                    let _ = writeln!(s, "*{c}* (PNG, 300 dpi: [{png_name}]({png_name}))\n");
                }
                Some(c) if super::plot::PNG => {
                    let _ = writeln!(
                        s,
                        "*{c}* (PNG, 300 dpi: `distill report` on this run writes {png_name})\n"
                    );
                }
                Some(c) => {
                    let _ = writeln!(s, "*{c}*\n");
                }
                None => {}
            }
        }
    }
    s
}

fn run_section(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## run {}\n", r.label);
    if let Some(n) = &r.stopped_early {
        let _ = writeln!(s, "**{n}**\n");
    }
    s.push_str("| round | with a verdict | graded | carried (skipped) | missing | failed | not run | prompt tokens | completion tokens | cumulative tokens / attempt | cost | mean reasoning chars | mean completion tokens | finish reasons | truncated (length) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for x in &r.rounds {
        let fr: Vec<String> = x
            .finish_reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let c = &x.attempts;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            x.round,
            c.verdicts,
            c.graded,
            c.carried,
            c.missing,
            c.failed,
            c.not_run,
            x.tokens_text(x.prompt_tokens),
            x.tokens_text(x.completion_tokens),
            x.cumulative_tokens_per_attempt,
            x.cost_usd
                .map_or("– (price unknown)".into(), |c| format!("${c:.4}")),
            opt(x.mean_reasoning_chars, 0),
            opt(x.mean_completion_tokens, 0),
            fr.join(", "),
            x.truncated
        );
    }
    if !r.not_run_reasons.is_empty() {
        let _ = writeln!(
            s,
            "\nNot run, by reason (attempts, all rounds): {}",
            reasons_text(&r.not_run_reasons)
        );
    }
    if let Some(n) = super::metrics::estimated_note(&r.rounds) {
        let _ = writeln!(s, "\n{n}");
    }
    let o = &r.outcomes;
    let _ = writeln!(
        s,
        "\nOutcome classes (round {} → round {}{}):\n\n| class | count | problems |\n|---|---:|---|",
        o.first_round,
        o.last_round,
        if r.samples > 1 {
            "; one entry per problem#sample"
        } else {
            ""
        }
    );
    for (name, v) in [
        ("improved", &o.improved),
        ("regressed", &o.regressed),
        ("always right", &o.always_right),
        ("never right", &o.never_right),
        ("mixed", &o.mixed),
        (
            "no verdict (first or last round failed / not run)",
            &o.no_verdict,
        ),
    ] {
        let _ = writeln!(
            s,
            "| {name} | {} | {} |",
            v.len(),
            shown_ids(v.iter(), v.len())
        );
    }
    if r.failures.is_empty() {
        s.push_str("\nFailed: none.\n");
    } else {
        let _ = writeln!(
            s,
            "\nFailed (problems: {}; a failed attempt has no verdict: left out of the accuracy, counted in `failed`):\n\n| problem | status | failed attempts | error |\n|---|---|---:|---|",
            r.failures.len()
        );
        for f in &r.failures {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                f.id,
                f.status,
                f.failed_attempts,
                f.error.replace('|', "/").replace('\n', " ")
            );
        }
    }
    if !r.not_run.is_empty() {
        let _ = writeln!(
            s,
            "\nNot run (problems: {}; a not-run attempt has no verdict: left out of the accuracy, counted in `not run`):\n\n| problem | status | not-run attempts | reason |\n|---|---|---:|---|",
            r.not_run.len()
        );
        for n in &r.not_run {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                n.id, n.status, n.not_run_attempts, n.reason
            );
        }
    }
    for w in &r.warnings {
        let _ = writeln!(s, "\nWarning: {w}");
    }
}
