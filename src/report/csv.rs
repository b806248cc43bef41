//! The long CSV of a report (report.csv): one row per run, group, metric, round and source.
//! Accuracy rows (per-round, cumulative, pass@k, majority@k) carry `n` (the number with a
//! verdict) and the `failed` and `not_run` counts beside it; every row of a run that stopped
//! early carries its `stopped_early` note.

use super::Report;
use super::metrics::{CUMULATIVE, Estimate, PER_ROUND};

pub const HEADER: &str =
    "run,group,metric,round,k,source,value,ci_low,ci_high,successes,n,failed,not_run,stopped_early";

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

/// value, ci_low, ci_high, successes, n, failed, not_run
type Vals = [String; 7];

fn est(e: &Estimate, failed: usize, not_run: usize) -> Vals {
    [
        num(e.value),
        num(e.ci_low),
        num(e.ci_high),
        num(e.successes),
        e.n.to_string(),
        failed.to_string(),
        not_run.to_string(),
    ]
}

fn one(v: f64) -> Vals {
    let mut out: Vals = Default::default();
    out[0] = num(v);
    out
}

fn diff(d: &super::stats::PairedDiff) -> Vals {
    let mut out: Vals = Default::default();
    out[..3].clone_from_slice(&[num(d.diff), num(d.ci_low), num(d.ci_high)]);
    out[4] = d.n.to_string();
    out
}

/// One row per run, group, metric, round and source.
pub fn csv(rep: &Report) -> String {
    let mut s = format!("{HEADER}\n");
    let mut row = |run: &str, stop: &str, key: [&str; 5], vals: Vals| {
        let [group, metric, round, k, source] = key;
        let f: Vec<String> = [run, group, metric, round, k, source]
            .iter()
            .map(|x| csv_field(x))
            .chain(vals)
            .chain([csv_field(stop)])
            .collect();
        s.push_str(&f.join(","));
        s.push('\n');
    };
    for r in &rep.runs {
        let (l, stop) = (r.label.as_str(), r.stopped_early.as_deref().unwrap_or(""));
        for x in &r.rounds {
            let rd = x.round.to_string();
            let (f, n) = (x.attempts.failed, x.attempts.not_run);
            let key = |metric| ["", metric, rd.as_str(), "", ""];
            row(l, stop, key(PER_ROUND), est(&x.per_round_accuracy, f, n));
            row(l, stop, key(CUMULATIVE), est(&x.cumulative_accuracy, f, n));
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
                ("attempts with a verdict", Some(x.attempts.verdicts as f64)),
                ("carried attempts", Some(x.attempts.carried as f64)),
                ("failed attempts", Some(f as f64)),
                ("not run attempts", Some(n as f64)),
            ] {
                row(l, stop, key(name), one(v.unwrap_or(f64::NAN)));
            }
            for (why, c) in &x.attempts.not_run_reasons {
                let name = format!("not run attempts ({why})");
                row(l, stop, ["", &name, &rd, "", ""], one(*c as f64));
            }
        }
        for m in &r.k_metrics {
            let (rd, k) = (m.round.to_string(), m.k.to_string());
            let key = ["", m.metric.as_str(), &rd, &k, &m.source];
            row(l, stop, key, est(&m.estimate, m.failed, m.not_run));
        }
        if let Some(d) = &r.first_vs_last {
            let metric = format!(
                "{PER_ROUND} difference (round {} → {})",
                r.outcomes.first_round, r.outcomes.last_round
            );
            let rd = r.outcomes.last_round.to_string();
            row(l, stop, ["", &metric, &rd, "", "paired bootstrap"], diff(d));
        }
        for g in &r.groups {
            for x in &g.rounds {
                let rd = x.round.to_string();
                let (f, n) = (x.failed, x.not_run);
                let key = |metric| [g.group.as_str(), metric, rd.as_str(), "", ""];
                row(l, stop, key(PER_ROUND), est(&x.per_round_accuracy, f, n));
                row(l, stop, key(CUMULATIVE), est(&x.cumulative_accuracy, f, n));
            }
        }
    }
    for c in &rep.comparisons {
        let metric = format!("{PER_ROUND} difference vs {}", c.run_a);
        let stop = rep
            .runs
            .iter()
            .find(|r| r.label == c.run_b)
            .and_then(|r| r.stopped_early.as_deref())
            .unwrap_or("");
        let rd = c.round_b.to_string();
        let key = ["", metric.as_str(), &rd, "", "paired bootstrap"];
        row(&c.run_b, stop, key, diff(&c.diff));
    }
    s
}
