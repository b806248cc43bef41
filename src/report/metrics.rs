//! From loaded runs to the report's numbers: per-round accuracy, cumulative accuracy, pass@k
//! and majority@k with 95% intervals, tokens/cost/reasoning length/finish reasons per round,
//! outcome classes, failures, groups, and the paired bootstrap comparisons (round 0 vs the
//! last round; each run vs the first run on their common problems).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use regex::Regex;
use serde::Serialize;

use super::load::{Problem, Run, State};
use super::stats::{PairedDiff, majority, paired_bootstrap, pass_at_k, wilson};

pub const PER_ROUND: &str = "per-round accuracy";
pub const CUMULATIVE: &str = "cumulative accuracy";

/// A proportion over problems with its Wilson 95% interval. `successes` is the sum of
/// per-problem shares (fractional when samples > 1), `n` the number of problems.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub successes: f64,
    pub n: usize,
}

impl Estimate {
    pub fn of(shares: &[f64]) -> Self {
        let successes: f64 = shares.iter().sum();
        let n = shares.len();
        let (ci_low, ci_high) = wilson(successes, n as f64);
        Estimate {
            value: if n > 0 {
                successes / n as f64
            } else {
                f64::NAN
            },
            ci_low,
            ci_high,
            successes,
            n,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    pub round: u32,
    pub per_round_accuracy: Estimate,
    pub cumulative_accuracy: Estimate,
    /// Attempts (problems × samples) by how their verdict was obtained.
    pub graded: usize,
    pub carried: usize,
    pub missing: usize,
    pub failed: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Some of this round's tokens were estimated (the server reported no usage).
    pub tokens_estimated: bool,
    /// Tokens (prompt + completion) of rounds ≤ this one, per problem and sample.
    pub cumulative_tokens_per_attempt: f64,
    pub cost_usd: Option<f64>,
    pub mean_reasoning_chars: Option<f64>,
    pub mean_completion_tokens: Option<f64>,
    pub finish_reasons: BTreeMap<String, usize>,
    /// Graded attempts whose finish reason is `length`.
    pub truncated: usize,
}

/// pass@k or majority@k at one round.
#[derive(Debug, Clone, Serialize)]
pub struct KMetric {
    pub metric: String,
    pub round: u32,
    pub k: u64,
    pub source: String,
    pub estimate: Estimate,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes {
    pub first_round: u32,
    pub last_round: u32,
    /// wrong at the first round, right at the last
    pub improved: Vec<String>,
    /// right at the first round, wrong at the last
    pub regressed: Vec<String>,
    pub always_right: Vec<String>,
    pub never_right: Vec<String>,
    /// same verdict at the first and last rounds, a different one in between
    pub mixed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub id: String,
    pub status: String,
    pub failed_attempts: usize,
    pub error: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupRound {
    pub round: u32,
    pub per_round_accuracy: Estimate,
    pub cumulative_accuracy: Estimate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub group: String,
    pub problems: usize,
    pub rounds: Vec<GroupRound>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub label: String,
    pub path: String,
    pub format: String,
    pub pipeline: String,
    pub run_id: String,
    pub status: String,
    pub simulated: bool,
    pub problems: usize,
    pub samples: usize,
    pub rounds: Vec<RoundRow>,
    pub k_metrics: Vec<KMetric>,
    /// per-round accuracy: the first round (a) vs the last (b), paired over problems
    pub first_vs_last: Option<PairedDiff>,
    pub outcomes: Outcomes,
    pub failures: Vec<Failure>,
    pub groups: Vec<Group>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub metric: String,
    /// the first run (a) and this one (b), each at its last round
    pub run_a: String,
    pub run_b: String,
    pub round_a: u32,
    pub round_b: u32,
    pub only_in_a: usize,
    pub only_in_b: usize,
    pub diff: PairedDiff,
}

/// How problems are grouped: by a problem-set column or by a regex over ids.
pub enum Grouping {
    Column(String),
    Regex(Regex),
}

impl Grouping {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.strip_prefix("re:") {
            Some(re) => Regex::new(re)
                .map(Grouping::Regex)
                .map_err(|e| format!("group_by: bad regex `{re}`: {e}")),
            None => Ok(Grouping::Column(s.to_string())),
        }
    }
    fn group_of(&self, p: &Problem) -> String {
        match self {
            Grouping::Column(c) => p
                .columns
                .get(c)
                .cloned()
                .unwrap_or_else(|| format!("(no {c})")),
            Grouping::Regex(re) => re
                .captures(&p.id)
                .and_then(|c| c.get(1).or_else(|| c.get(0)))
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| "(no match)".into()),
        }
    }
}

/// Per problem: the share of its samples right at round index `j` (cumulative: by round `j`).
fn shares(p: &Problem, j: usize, cumulative: bool) -> f64 {
    if p.samples.is_empty() {
        return 0.0;
    }
    let right = p
        .samples
        .iter()
        .filter(|s| {
            if cumulative {
                s.iter().take(j + 1).any(|a| a.correct)
            } else {
                s.get(j).is_some_and(|a| a.correct)
            }
        })
        .count();
    right as f64 / p.samples.len() as f64
}

impl RoundRow {
    /// A token figure of this round as shown in tables: `~N` when some of it is estimated.
    pub fn tokens_text(&self, n: u64) -> String {
        if self.tokens_estimated {
            format!("~{n}")
        } else {
            n.to_string()
        }
    }
}

/// The footnote of a table that shows an estimated (`~`) token figure, if any does.
pub fn estimated_note(rows: &[RoundRow]) -> Option<&'static str> {
    rows.iter()
        .any(|r| r.tokens_estimated)
        .then_some("~ tokens estimated with the model's `tokenizer:`: its server reported no usage")
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn round_rows(run: &Run, problems: &[&Problem]) -> Vec<RoundRow> {
    let attempts_per_round = problems
        .iter()
        .map(|p| p.samples.len())
        .sum::<usize>()
        .max(1);
    let mut cum_tokens = 0u64;
    let mut rows = Vec::new();
    for (j, &round) in run.rounds.iter().enumerate() {
        let acc: Vec<f64> = problems.iter().map(|p| shares(p, j, false)).collect();
        let cum: Vec<f64> = problems.iter().map(|p| shares(p, j, true)).collect();
        let mut row = RoundRow {
            round,
            per_round_accuracy: Estimate::of(&acc),
            cumulative_accuracy: Estimate::of(&cum),
            graded: 0,
            carried: 0,
            missing: 0,
            failed: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            tokens_estimated: false,
            cumulative_tokens_per_attempt: 0.0,
            cost_usd: Some(0.0),
            mean_reasoning_chars: None,
            mean_completion_tokens: None,
            finish_reasons: BTreeMap::new(),
            truncated: 0,
        };
        let (mut chars, mut toks) = (Vec::new(), Vec::new());
        for p in problems {
            if let Some(u) = p.usage.get(j) {
                row.prompt_tokens += u.prompt_tokens;
                row.completion_tokens += u.completion_tokens;
                row.tokens_estimated |= u.estimated;
                row.cost_usd = row.cost_usd.zip(u.cost_usd).map(|(a, b)| a + b);
            }
            for a in p.samples.iter().filter_map(|s| s.get(j)) {
                match a.state {
                    State::Done => row.graded += 1,
                    State::Carried => row.carried += 1,
                    State::Missing => row.missing += 1,
                    State::Failed => row.failed += 1,
                }
                if a.state != State::Done {
                    continue;
                }
                chars.extend(a.reasoning_chars.map(|c| c as f64));
                toks.extend(a.completion_tokens.map(|c| c as f64));
                let fr = a.finish_reason.clone().unwrap_or_else(|| "(none)".into());
                if fr == "length" {
                    row.truncated += 1;
                }
                *row.finish_reasons.entry(fr).or_default() += 1;
            }
        }
        if row.prompt_tokens + row.completion_tokens == 0 && row.cost_usd == Some(0.0) {
            row.cost_usd = None;
        }
        row.mean_reasoning_chars = mean(&chars);
        row.mean_completion_tokens = mean(&toks);
        cum_tokens += row.prompt_tokens + row.completion_tokens;
        row.cumulative_tokens_per_attempt = cum_tokens as f64 / attempts_per_round as f64;
        rows.push(row);
    }
    rows
}

fn k_metrics(run: &Run) -> Vec<KMetric> {
    let mut out = Vec::new();
    let n_problems = run.problems.len();
    // from the samples: pass@k for k in {1, vote ks, samples}, majority@samples
    if run.samples >= 2 {
        let mut ks: BTreeSet<u64> = [1, run.samples as u64].into();
        for v in run.problems.iter().flat_map(|p| &p.votes) {
            ks.extend(v.pass_at.keys().filter(|&&k| k <= run.samples as u64));
        }
        for (j, &round) in run.rounds.iter().enumerate() {
            for &k in &ks {
                let shares: Vec<f64> = run
                    .problems
                    .iter()
                    .map(|p| {
                        let n = p.samples.len() as u64;
                        let c = p
                            .samples
                            .iter()
                            .filter(|s| s.get(j).is_some_and(|a| a.correct))
                            .count() as u64;
                        let v = pass_at_k(n, c, k);
                        if v.is_nan() { 0.0 } else { v }
                    })
                    .collect();
                out.push(KMetric {
                    metric: format!("pass@{k}"),
                    round,
                    k,
                    source: "samples".into(),
                    estimate: Estimate::of(&shares),
                });
            }
            let maj: Vec<f64> = run
                .problems
                .iter()
                .map(|p| {
                    let votes: Vec<(Option<&str>, bool)> = p
                        .samples
                        .iter()
                        .filter_map(|s| s.get(j))
                        .map(|a| (a.answer.as_deref(), a.correct))
                        .collect();
                    f64::from(u8::from(majority(&votes) == Some(true)))
                })
                .collect();
            out.push(KMetric {
                metric: format!("majority@{}", run.samples),
                round,
                k: run.samples as u64,
                source: "samples".into(),
                estimate: Estimate::of(&maj),
            });
        }
    }
    // from vote nodes (or the original tool's consensus), absent records counting as wrong
    let mut by_source: BTreeMap<(u32, String), Vec<&Problem>> = BTreeMap::new();
    for p in &run.problems {
        for v in &p.votes {
            by_source
                .entry((v.round, v.source.clone()))
                .or_default()
                .push(p);
        }
    }
    for ((round, source), _) in by_source {
        let recs: Vec<Option<&super::load::VoteRecord>> = run
            .problems
            .iter()
            .map(|p| {
                p.votes
                    .iter()
                    .find(|v| v.round == round && v.source == source)
            })
            .collect();
        let mut ks: BTreeSet<u64> = BTreeSet::new();
        ks.extend(
            recs.iter()
                .flatten()
                .flat_map(|v| v.pass_at.keys().copied()),
        );
        for k in ks {
            let shares: Vec<f64> = recs
                .iter()
                .map(|v| v.and_then(|v| v.pass_at.get(&k)).copied().unwrap_or(0.0))
                .collect();
            out.push(KMetric {
                metric: format!("pass@{k}"),
                round,
                k,
                source: source.clone(),
                estimate: Estimate::of(&shares),
            });
        }
        if recs.iter().flatten().any(|v| v.correct.is_some()) {
            let k = recs.iter().flatten().map(|v| v.n).max().unwrap_or(0);
            let shares: Vec<f64> = recs
                .iter()
                .map(|v| f64::from(u8::from(v.and_then(|v| v.correct) == Some(true))))
                .collect();
            out.push(KMetric {
                metric: format!("majority@{k}"),
                round,
                k,
                source: source.clone(),
                estimate: Estimate::of(&shares),
            });
        }
    }
    debug_assert!(out.iter().all(|m| m.estimate.n == n_problems));
    out
}

fn outcomes(run: &Run) -> Outcomes {
    let mut o = Outcomes {
        first_round: run.rounds.first().copied().unwrap_or(0),
        last_round: run.rounds.last().copied().unwrap_or(0),
        ..Default::default()
    };
    if run.rounds.is_empty() {
        return o;
    }
    for p in &run.problems {
        for (si, s) in p.samples.iter().enumerate() {
            let unit = if run.samples > 1 {
                format!("{}#{si}", p.id)
            } else {
                p.id.clone()
            };
            let v: Vec<bool> = s.iter().map(|a| a.correct).collect();
            let (first, last) = (v[0], v[v.len() - 1]);
            let list = if v.iter().all(|&c| c) {
                &mut o.always_right
            } else if !v.iter().any(|&c| c) {
                &mut o.never_right
            } else if !first && last {
                &mut o.improved
            } else if first && !last {
                &mut o.regressed
            } else {
                &mut o.mixed
            };
            list.push(unit);
        }
    }
    o
}

fn failures(run: &Run) -> Vec<Failure> {
    let mut out = Vec::new();
    for p in &run.problems {
        let bad: Vec<_> = p
            .samples
            .iter()
            .flatten()
            .filter(|a| a.state == State::Failed)
            .collect();
        // a first round without a verdict of its own (absent or skipped) has nothing to carry
        let missing_first = p.samples.iter().any(|s| {
            s.first()
                .is_some_and(|a| matches!(a.state, State::Missing | State::Carried))
        });
        if p.status == "ok" && bad.is_empty() && !missing_first {
            continue;
        }
        let error = p
            .error
            .clone()
            .or_else(|| bad.iter().find_map(|a| a.error.clone()))
            .unwrap_or_else(|| "no record of the first round".into());
        out.push(Failure {
            id: p.id.clone(),
            status: p.status.clone(),
            failed_attempts: bad.len(),
            error,
        });
    }
    out
}

fn groups(run: &Run, g: &Grouping) -> Vec<Group> {
    let mut by: BTreeMap<String, Vec<&Problem>> = BTreeMap::new();
    for p in &run.problems {
        by.entry(g.group_of(p)).or_default().push(p);
    }
    by.into_iter()
        .map(|(group, ps)| Group {
            group,
            problems: ps.len(),
            rounds: round_rows(run, &ps)
                .into_iter()
                .map(|r| GroupRound {
                    round: r.round,
                    per_round_accuracy: r.per_round_accuracy,
                    cumulative_accuracy: r.cumulative_accuracy,
                })
                .collect(),
        })
        .collect()
}

pub fn run_report(
    run: &Run,
    grouping: Option<&Grouping>,
    bootstrap: usize,
    seed: u64,
) -> RunReport {
    let all: Vec<&Problem> = run.problems.iter().collect();
    let mut warnings = run.warnings.clone();
    let first_vs_last = (run.rounds.len() >= 2).then(|| {
        let last = run.rounds.len() - 1;
        let a: Vec<f64> = all.iter().map(|p| shares(p, 0, false)).collect();
        let b: Vec<f64> = all.iter().map(|p| shares(p, last, false)).collect();
        paired_bootstrap(&a, &b, bootstrap, seed)
    });
    if let Some(Grouping::Column(c)) = grouping
        && !run.problems.iter().any(|p| p.columns.contains_key(c))
    {
        warnings.push(format!(
            "no problem has a `{c}` column (results carry id/question/answer; other columns come from the problem-set CSV named in config.json)"
        ));
    }
    RunReport {
        label: run.label.clone(),
        path: run.path.display().to_string(),
        format: run.format.clone(),
        pipeline: run.pipeline.clone(),
        run_id: run.run_id.clone(),
        status: run.status.clone(),
        simulated: run.simulated,
        problems: run.problems.len(),
        samples: run.samples,
        rounds: round_rows(run, &all),
        k_metrics: k_metrics(run),
        first_vs_last,
        outcomes: outcomes(run),
        failures: failures(run),
        groups: grouping.map(|g| groups(run, g)).unwrap_or_default(),
        warnings,
    }
}

/// Each run against the first, at each one's last round, on the problems they share.
pub fn comparisons(runs: &[Run], bootstrap: usize, seed: u64) -> Vec<Comparison> {
    let Some(base) = runs.first() else {
        return Vec::new();
    };
    let last_share = |r: &Run| -> HashMap<String, f64> {
        let j = r.rounds.len().saturating_sub(1);
        r.problems
            .iter()
            .map(|p| {
                (
                    p.id.clone(),
                    if r.rounds.is_empty() {
                        0.0
                    } else {
                        shares(p, j, false)
                    },
                )
            })
            .collect()
    };
    let a_map = last_share(base);
    let mut out = Vec::new();
    for other in &runs[1..] {
        let b_map = last_share(other);
        // distinct ids in the base run's order (a file may repeat an id)
        let mut seen = std::collections::HashSet::new();
        let common: Vec<&String> = base
            .problems
            .iter()
            .map(|p| &p.id)
            .filter(|id| b_map.contains_key(*id) && seen.insert(*id))
            .collect();
        let a: Vec<f64> = common.iter().map(|id| a_map[*id]).collect();
        let b: Vec<f64> = common.iter().map(|id| b_map[*id]).collect();
        out.push(Comparison {
            metric: PER_ROUND.into(),
            run_a: base.label.clone(),
            run_b: other.label.clone(),
            round_a: base.rounds.last().copied().unwrap_or(0),
            round_b: other.rounds.last().copied().unwrap_or(0),
            only_in_a: a_map.len().saturating_sub(common.len()),
            only_in_b: b_map.len().saturating_sub(common.len()),
            diff: paired_bootstrap(&a, &b, bootstrap, seed),
        });
    }
    out
}
