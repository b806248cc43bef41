//! The compact per-round table printed at the end of a run (and by `compact_table`): the same
//! numbers as report.md's, with `failed` and `not run` columns and, for a run that stopped
//! early, the note on its first line.

use std::fmt::Write as _;

use super::metrics::{CUMULATIVE, PER_ROUND, RunReport, reasons_text};
use super::table::{count, est, ids, pct};

/// The per-round table printed at the end of a run (markdown).
pub fn compact(r: &RunReport) -> String {
    let mut s = format!(
        "{} problems × {} sample(s){}{}\n\n| round | {PER_ROUND} | 95% CI | {CUMULATIVE} | tokens | truncated | carried | failed | not run |\n|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
        r.problems,
        r.samples,
        if r.simulated {
            " — model: sim (SIMULATED reasoner, not a real model)"
        } else {
            ""
        },
        r.stopped_early
            .as_deref()
            .map_or(String::new(), |n| format!(" — {n}"))
    );
    for x in &r.rounds {
        let a = &x.per_round_accuracy;
        let c = &x.attempts;
        let ci = if a.n > 0 {
            format!("[{:.1}–{:.1}]", 100.0 * a.ci_low, 100.0 * a.ci_high)
        } else {
            "–".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} ({}/{}) | {ci} | {} | {} | {} | {} | {} | {} |",
            x.round,
            pct(a.value),
            count(a.successes),
            a.n,
            pct(x.cumulative_accuracy.value),
            x.tokens_text(x.prompt_tokens + x.completion_tokens),
            x.truncated,
            c.carried,
            c.failed,
            c.not_run
        );
    }
    if r.rounds.is_empty() {
        s.push_str("| – | (no graded node) | | | | | | | |\n");
    }
    s.push_str(
        "\nn = attempts with a verdict (graded or carried); failed and not-run attempts have none and are left out of the accuracy.\n",
    );
    if let Some(n) = super::metrics::estimated_note(&r.rounds) {
        let _ = writeln!(s, "\n{n}");
    }
    let last = r.rounds.last().map(|x| x.round);
    let shown = |m: &&super::metrics::KMetric| Some(m.round) == last || m.source != "samples";
    if r.k_metrics.iter().any(|m| shown(&m)) {
        s.push('\n');
    }
    for m in r.k_metrics.iter().filter(shown) {
        let _ = writeln!(
            s,
            "- {} (round {}, {}): {}; failed {}, not run {}",
            m.metric,
            m.round,
            m.source,
            est(&m.estimate),
            m.failed,
            m.not_run
        );
    }
    if !r.failures.is_empty() {
        let names: Vec<String> = r.failures.iter().map(|f| f.id.clone()).collect();
        let _ = writeln!(s, "\nfailed: {}", ids(&names));
    }
    if !r.not_run.is_empty() {
        let names: Vec<String> = r.not_run.iter().map(|n| n.id.clone()).collect();
        let _ = writeln!(
            s,
            "\nnot run ({}): {}",
            reasons_text(&r.not_run_reasons),
            ids(&names)
        );
    }
    s
}
