//! Rendering a `Report`: the markdown (report.md and stdout), the long CSV (one row per run,
//! group, metric and round), the JSON, and the compact per-round table printed after a run.

use std::fmt::Write as _;

use serde_json::Value;

use super::Report;
use super::metrics::{CUMULATIVE, Estimate, PER_ROUND, RunReport};

fn pct(v: f64) -> String {
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

fn count(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.2}")
    }
}

/// `37.5% [13.7–69.4] (3/8)`
fn est(e: &Estimate) -> String {
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

fn ids(v: &[String]) -> String {
    const MAX: usize = 40;
    let mut s = v.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > MAX {
        let _ = write!(s, ", … ({} more)", v.len() - MAX);
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

fn header(s: &mut String, first: &[&str], runs: &[RunReport]) {
    let cols: Vec<String> = first
        .iter()
        .map(|c| c.to_string())
        .chain(runs.iter().map(|r| r.label.replace('|', "/")))
        .collect();
    let _ = writeln!(s, "| {} |", cols.join(" | "));
    let align: Vec<&str> = first
        .iter()
        .map(|_| "---")
        .chain(runs.iter().map(|_| "---:"))
        .collect();
    let _ = writeln!(s, "|{}|", align.join("|"));
}

pub fn markdown(rep: &Report, plots: &[String]) -> String {
    let mut s = String::from("# distill report\n\n");
    s.push_str("| run | format | pipeline | run id | status | problems | samples | rounds | file |\n|---|---|---|---|---|---:|---:|---|---|\n");
    for r in &rep.runs {
        let rounds: Vec<String> = r.rounds.iter().map(|x| x.round.to_string()).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.format,
            r.pipeline,
            r.run_id,
            r.status,
            r.problems,
            r.samples,
            rounds.join(", "),
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
        "\nIntervals are 95%: Wilson score for a proportion over problems (with samples > 1, the per-problem shares are fractional successes); differences use a paired bootstrap over problems ({} resamples, seed {}, 2.5–97.5 percentiles). Cells read `value [low–high] (successes/problems)`.",
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
                    r.rounds
                        .iter()
                        .find(|x| x.round == round)
                        .map_or("–".into(), |x| {
                            est(if cumulative {
                                &x.cumulative_accuracy
                            } else {
                                &x.per_round_accuracy
                            })
                        })
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
                    r.k_metrics
                        .iter()
                        .find(|m| {
                            m.round == *round
                                && m.k == *k
                                && &m.metric == metric
                                && &m.source == source
                        })
                        .map_or("–".into(), |m| est(&m.estimate))
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
                        r.groups
                            .iter()
                            .find(|g| g.group == name)
                            .and_then(|g| g.rounds.iter().find(|x| x.round == round))
                            .map_or("–".into(), |x| est(&x.per_round_accuracy))
                    })
                    .collect();
                if cells.iter().any(|c| c != "–") {
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
            let _ = writeln!(s, "![{p}]({p})");
        }
    }
    s
}

fn run_section(s: &mut String, r: &RunReport) {
    let _ = writeln!(s, "\n## run {}\n", r.label);
    s.push_str("| round | graded | carried (skipped) | missing | failed | prompt tokens | completion tokens | cumulative tokens / attempt | cost | mean reasoning chars | mean completion tokens | finish reasons | truncated (length) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for x in &r.rounds {
        let fr: Vec<String> = x
            .finish_reasons
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            x.round,
            x.graded,
            x.carried,
            x.missing,
            x.failed,
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
    ] {
        let _ = writeln!(s, "| {name} | {} | {} |", v.len(), ids(v));
    }
    if r.failures.is_empty() {
        s.push_str("\nFailures: none.\n");
    } else {
        let _ = writeln!(
            s,
            "\nFailures ({}; counted as wrong and kept in the denominator):\n\n| problem | status | failed attempts | error |\n|---|---|---:|---|",
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
    for w in &r.warnings {
        let _ = writeln!(s, "\nWarning: {w}");
    }
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

/// One row per run, group, metric, round and source.
pub fn csv(rep: &Report) -> String {
    let mut s = String::from("run,group,metric,round,k,source,value,ci_low,ci_high,successes,n\n");
    let mut row = |run: &str,
                   group: &str,
                   metric: &str,
                   round: String,
                   k: String,
                   source: &str,
                   vals: [String; 5]| {
        let f: Vec<String> = [run, group, metric, &round, &k, source]
            .iter()
            .map(|x| csv_field(x))
            .chain(vals)
            .collect();
        s.push_str(&f.join(","));
        s.push('\n');
    };
    let e5 = |e: &Estimate| {
        [
            num(e.value),
            num(e.ci_low),
            num(e.ci_high),
            num(e.successes),
            e.n.to_string(),
        ]
    };
    let v1 = |v: f64| {
        [
            num(v),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ]
    };
    for r in &rep.runs {
        let l = r.label.as_str();
        for x in &r.rounds {
            let rd = x.round.to_string();
            row(
                l,
                "",
                PER_ROUND,
                rd.clone(),
                String::new(),
                "",
                e5(&x.per_round_accuracy),
            );
            row(
                l,
                "",
                CUMULATIVE,
                rd.clone(),
                String::new(),
                "",
                e5(&x.cumulative_accuracy),
            );
            for (name, v) in [
                ("prompt tokens", Some(x.prompt_tokens as f64)),
                ("completion tokens", Some(x.completion_tokens as f64)),
                (
                    "cumulative tokens per attempt",
                    Some(x.cumulative_tokens_per_attempt),
                ),
                ("cost usd", x.cost_usd),
                ("mean reasoning chars", x.mean_reasoning_chars),
                ("mean completion tokens", x.mean_completion_tokens),
                ("truncated", Some(x.truncated as f64)),
                ("failed attempts", Some(x.failed as f64)),
                ("carried attempts", Some(x.carried as f64)),
            ] {
                row(
                    l,
                    "",
                    name,
                    rd.clone(),
                    String::new(),
                    "",
                    v1(v.unwrap_or(f64::NAN)),
                );
            }
        }
        for m in &r.k_metrics {
            row(
                l,
                "",
                &m.metric,
                m.round.to_string(),
                m.k.to_string(),
                &m.source,
                e5(&m.estimate),
            );
        }
        if let Some(d) = &r.first_vs_last {
            let metric = format!(
                "{PER_ROUND} difference (round {} → {})",
                r.outcomes.first_round, r.outcomes.last_round
            );
            row(
                l,
                "",
                &metric,
                r.outcomes.last_round.to_string(),
                String::new(),
                "paired bootstrap",
                [
                    num(d.diff),
                    num(d.ci_low),
                    num(d.ci_high),
                    String::new(),
                    d.n.to_string(),
                ],
            );
        }
        for g in &r.groups {
            for x in &g.rounds {
                let rd = x.round.to_string();
                row(
                    l,
                    &g.group,
                    PER_ROUND,
                    rd.clone(),
                    String::new(),
                    "",
                    e5(&x.per_round_accuracy),
                );
                row(
                    l,
                    &g.group,
                    CUMULATIVE,
                    rd,
                    String::new(),
                    "",
                    e5(&x.cumulative_accuracy),
                );
            }
        }
    }
    for c in &rep.comparisons {
        let d = &c.diff;
        let metric = format!("{PER_ROUND} difference vs {}", c.run_a);
        row(
            &c.run_b,
            "",
            &metric,
            c.round_b.to_string(),
            String::new(),
            "paired bootstrap",
            [
                num(d.diff),
                num(d.ci_low),
                num(d.ci_high),
                String::new(),
                d.n.to_string(),
            ],
        );
    }
    s
}

pub fn json(rep: &Report) -> Value {
    serde_json::to_value(rep).unwrap_or(Value::Null)
}

/// The per-round table printed at the end of a run.
pub fn compact(r: &RunReport) -> String {
    let mut s = format!(
        "{} problems × {} sample(s){}\n\n| round | {PER_ROUND} | 95% CI | {CUMULATIVE} | tokens | truncated | failed |\n|---:|---:|---|---:|---:|---:|---:|\n",
        r.problems,
        r.samples,
        if r.simulated {
            " — model: sim (SIMULATED reasoner, not a real model)"
        } else {
            ""
        }
    );
    for x in &r.rounds {
        let a = &x.per_round_accuracy;
        let _ = writeln!(
            s,
            "| {} | {} ({}/{}) | [{:.1}–{:.1}] | {} | {} | {} | {} |",
            x.round,
            pct(a.value),
            count(a.successes),
            a.n,
            100.0 * a.ci_low,
            100.0 * a.ci_high,
            pct(x.cumulative_accuracy.value),
            x.tokens_text(x.prompt_tokens + x.completion_tokens),
            x.truncated,
            x.failed
        );
    }
    if r.rounds.is_empty() {
        s.push_str("| – | (no graded node) | | | | | |\n");
    }
    if let Some(n) = super::metrics::estimated_note(&r.rounds) {
        let _ = writeln!(s, "\n{n}");
    }
    let last = r.rounds.last().map(|x| x.round);
    if r.k_metrics
        .iter()
        .any(|m| Some(m.round) == last || m.source != "samples")
    {
        s.push('\n');
    }
    for m in r
        .k_metrics
        .iter()
        .filter(|m| Some(m.round) == last || m.source != "samples")
    {
        let _ = writeln!(
            s,
            "- {} (round {}, {}): {}",
            m.metric,
            m.round,
            m.source,
            est(&m.estimate)
        );
    }
    if !r.failures.is_empty() {
        let names: Vec<String> = r.failures.iter().map(|f| f.id.clone()).collect();
        let _ = writeln!(s, "\nfailed (counted as wrong): {}", ids(&names));
    }
    s
}
