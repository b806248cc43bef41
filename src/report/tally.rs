//! The numbers of one run's report as a fold over its problems, one problem at a time, so
//! that a report of any size holds per-round counters and sums, not its problems: what a
//! table needs of a problem (its shares, pass@k, majority, outcome class, failures) is taken
//! from it as it passes and the problem is dropped. The fold adds in the problems' order, so
//! a report streamed from a run file and one computed over a loaded run are the same numbers
//! to the last bit (`metrics::run_report` folds a loaded run through here). What it keeps per
//! problem: the first- and last-round shares (the paired bootstrap resamples them) and the
//! problem's id in its outcome class (report.json lists them; one text per class).

use std::collections::{BTreeMap, BTreeSet};

use super::figures::{Counts, Estimate};
use super::load::{Attempt, Problem, Run, State, VoteRecord};
use super::metrics::{Group, GroupRound, Grouping, RoundRow, RunReport, share};
use super::passk::KMetric;
use super::problems::{Failure, NotRun, Outcomes};
use super::stats::{Pairs, majority, pass_at_k};

/// A sum of f64 in the order the values came, with the same neutral element as
/// `Iterator::sum` (so it equals `values.iter().sum()` bit for bit), and their count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sum {
    sum: f64,
    n: usize,
}

impl Default for Sum {
    fn default() -> Self {
        Sum {
            sum: std::iter::empty::<f64>().sum(),
            n: 0,
        }
    }
}

impl Sum {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn estimate(&self) -> Estimate {
        Estimate::of_sum(self.sum, self.n)
    }
    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// One round's running figures (a [`RoundRow`] in the making).
#[derive(Debug, Clone)]
struct RowAcc {
    share: Sum,
    cumulative: Sum,
    counts: Counts,
    prompt_tokens: u64,
    completion_tokens: u64,
    estimated: bool,
    cost_usd: Option<f64>,
    chars: Sum,
    toks: Sum,
    finish_reasons: BTreeMap<String, usize>,
    truncated: usize,
}

impl Default for RowAcc {
    fn default() -> Self {
        RowAcc {
            share: Sum::default(),
            cumulative: Sum::default(),
            counts: Counts::default(),
            prompt_tokens: 0,
            completion_tokens: 0,
            estimated: false,
            cost_usd: Some(0.0),
            chars: Sum::default(),
            toks: Sum::default(),
            finish_reasons: BTreeMap::new(),
            truncated: 0,
        }
    }
}

/// The per-round rows over some problems (the run's, or a group's).
#[derive(Debug, Clone)]
struct Rows {
    problems: usize,
    /// Samples of the problems with a record.
    attempts: usize,
    rounds: Vec<RowAcc>,
}

impl Rows {
    fn new(rounds: usize) -> Self {
        Rows {
            problems: 0,
            attempts: 0,
            rounds: vec![RowAcc::default(); rounds],
        }
    }

    fn add(&mut self, p: &Problem) {
        self.problems += 1;
        if p.status != "not_run" {
            self.attempts += p.samples.len();
        }
        for (j, row) in self.rounds.iter_mut().enumerate() {
            if let Some(s) = share(p, j, false) {
                row.share.add(s);
            }
            if let Some(s) = share(p, j, true) {
                row.cumulative.add(s);
            }
            for a in p.samples.iter().filter_map(|s| s.get(j)) {
                row.counts.add(a);
            }
            if let Some(u) = p.usage.get(j) {
                row.prompt_tokens += u.prompt_tokens;
                row.completion_tokens += u.completion_tokens;
                row.estimated |= u.estimated;
                row.cost_usd = row.cost_usd.zip(u.cost_usd).map(|(a, b)| a + b);
            }
            for a in p.samples.iter().filter_map(|s| s.get(j)) {
                if a.state != State::Done {
                    continue;
                }
                if let Some(c) = a.reasoning_chars {
                    row.chars.add(c as f64);
                }
                if let Some(c) = a.completion_tokens {
                    row.toks.add(c as f64);
                }
                let fr = a.finish_reason.as_deref().unwrap_or("(none)");
                if fr == "length" {
                    row.truncated += 1;
                }
                match row.finish_reasons.get_mut(fr) {
                    Some(n) => *n += 1,
                    None => {
                        row.finish_reasons.insert(fr.to_string(), 1);
                    }
                }
            }
        }
    }

    fn finish(self, rounds: &[u32]) -> Vec<RoundRow> {
        let attempts = self.attempts.max(1);
        let mut cum_tokens = 0u64;
        let mut out = Vec::with_capacity(rounds.len());
        for (acc, &round) in self.rounds.into_iter().zip(rounds) {
            let mut cost_usd = acc.cost_usd;
            if acc.prompt_tokens + acc.completion_tokens == 0 && cost_usd == Some(0.0) {
                cost_usd = None;
            }
            cum_tokens += acc.prompt_tokens + acc.completion_tokens;
            out.push(RoundRow {
                round,
                per_round_accuracy: acc.share.estimate(),
                cumulative_accuracy: acc.cumulative.estimate(),
                attempts: acc.counts,
                prompt_tokens: acc.prompt_tokens,
                completion_tokens: acc.completion_tokens,
                tokens_estimated: acc.estimated,
                cumulative_tokens_per_attempt: cum_tokens as f64 / attempts as f64,
                cost_usd,
                mean_reasoning_chars: acc.chars.mean(),
                mean_completion_tokens: acc.toks.mean(),
                finish_reasons: acc.finish_reasons,
                truncated: acc.truncated,
            });
        }
        out
    }
}

/// pass@k and majority@k from samples, per round: a sum per k of the run's set.
#[derive(Debug, Clone, Default)]
struct SampleK {
    pass: BTreeMap<u64, Sum>,
    majority: Sum,
}

/// One vote source at one round: its records, first per problem.
#[derive(Debug, Clone, Default)]
struct VoteAcc {
    failed: usize,
    done: usize,
    keys: BTreeSet<u64>,
    pass: BTreeMap<u64, Sum>,
    any_correct: bool,
    max_n: Option<u64>,
    majority: Sum,
}

impl VoteAcc {
    fn add(&mut self, v: &VoteRecord) {
        self.failed += usize::from(v.status == "failed");
        self.done += usize::from(v.status == "done");
        for (&k, &x) in &v.pass_at {
            self.keys.insert(k);
            if x.is_finite() {
                self.pass.entry(k).or_default().add(x);
            }
        }
        self.any_correct |= v.correct.is_some();
        self.max_n = Some(self.max_n.map_or(v.n, |m| m.max(v.n)));
        if let Some(c) = v.correct {
            self.majority.add(f64::from(u8::from(c)));
        }
    }
}

/// The fold of one run's report.
pub struct Tally<'g> {
    grouping: Option<&'g Grouping>,
    rounds: Vec<u32>,
    samples: usize,
    /// The ks of pass@k from samples (with samples ≥ 2): 1, the samples, the vote nodes'.
    ks: BTreeSet<u64>,
    rows: Rows,
    groups: BTreeMap<String, Rows>,
    /// Per problem with a verdict at both: its share at the first and at the last round.
    first_last: Pairs,
    total: Counts,
    not_started: usize,
    incomplete: usize,
    /// Some problem has the grouping column.
    has_column: bool,
    sample_k: Vec<SampleK>,
    votes: BTreeMap<(u32, String), VoteAcc>,
    outcomes: Outcomes,
    failures: Vec<Failure>,
    not_run: Vec<NotRun>,
    /// Per round: (right, n) over the attempts with a verdict or a recorded error.
    recorded: Vec<(usize, usize)>,
}

impl<'g> Tally<'g> {
    /// For `run`'s rounds and samples (its problems are not read); `vote_ks`: the ks of the
    /// run's vote records (pass@k from samples is shown for those ≤ samples too).
    pub fn new(run: &Run, grouping: Option<&'g Grouping>, vote_ks: &BTreeSet<u64>) -> Self {
        let n = run.rounds.len();
        let mut ks = BTreeSet::new();
        if run.samples >= 2 {
            ks.extend([1, run.samples as u64]);
            ks.extend(vote_ks.iter().filter(|&&k| k <= run.samples as u64));
        }
        let sample_k = SampleK {
            pass: ks.iter().map(|&k| (k, Sum::default())).collect(),
            majority: Sum::default(),
        };
        Tally {
            grouping,
            rounds: run.rounds.clone(),
            samples: run.samples,
            ks,
            rows: Rows::new(n),
            groups: BTreeMap::new(),
            first_last: Pairs::default(),
            total: Counts::default(),
            not_started: 0,
            incomplete: 0,
            has_column: false,
            sample_k: vec![sample_k; n],
            votes: BTreeMap::new(),
            outcomes: Outcomes {
                first_round: run.rounds.first().copied().unwrap_or(0),
                last_round: run.rounds.last().copied().unwrap_or(0),
                ..Default::default()
            },
            failures: Vec::new(),
            not_run: Vec::new(),
            recorded: vec![(0, 0); n],
        }
    }

    /// Takes what the report needs of one problem (problems come in the run's order).
    pub fn add(&mut self, p: &Problem) {
        let n = self.rounds.len();
        self.rows.add(p);
        if let Some(g) = self.grouping {
            if let Grouping::Column(c) = g {
                self.has_column |= p.columns.contains_key(c);
            }
            let name = g.group_of(p);
            match self.groups.get_mut(&name) {
                Some(r) => r.add(p),
                None => {
                    let mut r = Rows::new(n);
                    r.add(p);
                    self.groups.insert(name, r);
                }
            }
        }
        if n >= 2
            && let Some((a, b)) = share(p, 0, false).zip(share(p, n - 1, false))
        {
            self.first_last.push(a, b);
        }
        let mut own = Counts::default();
        for a in p.samples.iter().flatten() {
            own.add(a);
            self.total.add(a);
        }
        for (j, r) in self.recorded.iter_mut().enumerate() {
            for a in p.samples.iter().filter_map(|s| s.get(j)) {
                let recorded = a.reason.as_deref() == Some("recorded_error");
                if a.verdict().is_some() || recorded {
                    r.1 += 1;
                    r.0 += usize::from(a.verdict() == Some(true));
                }
            }
        }
        if p.status == "not_run" {
            self.not_started += 1;
        } else if p.status == "incomplete" || own.not_run > 0 {
            self.incomplete += 1;
        }
        if own.not_run > 0 {
            self.not_run.push(NotRun {
                id: p.id.clone(),
                status: p.status.clone(),
                not_run_attempts: own.not_run,
                reason: own
                    .not_run_reasons
                    .into_keys()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.add_k(p);
        self.add_outcomes(p);
        self.add_failure(p);
    }

    fn add_k(&mut self, p: &Problem) {
        if self.samples >= 2 {
            for (j, acc) in self.sample_k.iter_mut().enumerate() {
                let v: Vec<(Option<&str>, bool)> = p
                    .samples
                    .iter()
                    .filter_map(|s| s.get(j))
                    .filter_map(|a| Some((a.answer.as_deref(), Attempt::verdict(a)?)))
                    .collect();
                let (n, right) = (v.len() as u64, v.iter().filter(|x| x.1).count() as u64);
                for (&k, sum) in acc.pass.iter_mut() {
                    if n >= k {
                        sum.add(pass_at_k(n, right, k));
                    }
                }
                if !v.is_empty() {
                    acc.majority
                        .add(f64::from(u8::from(majority(&v) == Some(true))));
                }
            }
        }
        let mut seen: Vec<(u32, &str)> = Vec::new();
        for v in &p.votes {
            if seen.contains(&(v.round, v.source.as_str())) {
                continue;
            }
            seen.push((v.round, v.source.as_str()));
            self.votes
                .entry((v.round, v.source.clone()))
                .or_default()
                .add(v);
        }
    }

    fn add_outcomes(&mut self, p: &Problem) {
        if self.rounds.is_empty() {
            return;
        }
        let o = &mut self.outcomes;
        for (si, s) in p.samples.iter().enumerate() {
            let numbered;
            let unit = if self.samples > 1 {
                numbered = format!("{}#{si}", p.id);
                numbered.as_str()
            } else {
                p.id.as_str()
            };
            let (Some(first), Some(last)) = (
                s.first().and_then(Attempt::verdict),
                s.last().and_then(Attempt::verdict),
            ) else {
                o.no_verdict.push(unit);
                continue;
            };
            let v = || s.iter().filter_map(Attempt::verdict);
            let list = if v().all(|c| c) {
                &mut o.always_right
            } else if !v().any(|c| c) {
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

    fn add_failure(&mut self, p: &Problem) {
        let bad: Vec<&Attempt> = p
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
        if p.status != "failed" && bad.is_empty() && !missing_first {
            return;
        }
        let error = p
            .error
            .clone()
            .or_else(|| bad.iter().find_map(|a| a.error.clone()))
            .unwrap_or_else(|| "no record of the first round".into());
        self.failures.push(Failure {
            id: p.id.clone(),
            status: p.status.clone(),
            failed_attempts: bad.len(),
            error,
        });
    }

    /// The report of `run` (its head: label, status, warnings, coverage; its problems are
    /// the ones added).
    pub fn finish(self, run: &Run, bootstrap: usize, seed: u64) -> RunReport {
        let problems = self.rows.problems;
        let mut warnings = run.warnings.clone();
        if let Some(Grouping::Column(c)) = self.grouping
            && !self.has_column
        {
            warnings.push(format!(
                "no problem has a `{c}` column (results carry id/question/answer; other columns come from the problem-set CSV named in config.json)"
            ));
        }
        let first_vs_last =
            (self.rounds.len() >= 2).then(|| self.first_last.bootstrap(bootstrap, seed));
        let finished = problems - self.not_started - self.incomplete;
        let stop = super::metrics::StopFacts {
            problems,
            finished,
            incomplete: self.incomplete,
            not_started: self.not_started,
            total: &self.total,
            recorded: &self.recorded,
        };
        let stopped_early = super::metrics::stop_note(run, &stop);
        let rows = self.rows.finish(&self.rounds);
        let k_metrics = k_metrics(
            &self.rounds,
            self.samples,
            &self.ks,
            self.sample_k,
            &rows,
            self.votes,
            problems,
        );
        let groups = self
            .groups
            .into_iter()
            .map(|(group, r)| Group {
                group,
                problems: r.problems,
                rounds: r
                    .finish(&self.rounds)
                    .into_iter()
                    .map(|r| GroupRound {
                        round: r.round,
                        per_round_accuracy: r.per_round_accuracy,
                        cumulative_accuracy: r.cumulative_accuracy,
                        failed: r.attempts.failed,
                        not_run: r.attempts.not_run,
                    })
                    .collect(),
            })
            .collect();
        RunReport {
            label: run.label.clone(),
            path: run.path.display().to_string(),
            format: run.format.clone(),
            pipeline: run.pipeline.clone(),
            run_id: run.run_id.clone(),
            status: run.status.clone(),
            simulated: run.simulated,
            problems,
            problems_finished: finished,
            problems_incomplete: self.incomplete,
            problems_not_started: self.not_started,
            samples: run.samples,
            failed_attempts: self.total.failed,
            not_run_attempts: self.total.not_run,
            stopped_early,
            shards: run.coverage.clone(),
            not_run_reasons: self.total.not_run_reasons,
            rounds: rows,
            k_metrics,
            first_vs_last,
            outcomes: self.outcomes,
            failures: self.failures,
            not_run: self.not_run,
            groups,
            warnings,
        }
    }
}

/// pass@k and majority@k: from samples per round, then per vote source (problems whose vote
/// has no verdict are left out and counted).
fn k_metrics(
    rounds: &[u32],
    samples: usize,
    ks: &BTreeSet<u64>,
    sample_k: Vec<SampleK>,
    rows: &[RoundRow],
    votes: BTreeMap<(u32, String), VoteAcc>,
    problems: usize,
) -> Vec<KMetric> {
    let mut out = Vec::new();
    if samples >= 2 {
        for ((&round, acc), row) in rounds.iter().zip(sample_k).zip(rows) {
            let c = &row.attempts;
            let mut push = |metric: String, k: u64, estimate: Estimate| {
                out.push(KMetric {
                    metric,
                    round,
                    k,
                    source: "samples".into(),
                    estimate,
                    failed: c.failed,
                    not_run: c.not_run,
                });
            };
            for &k in ks {
                push(format!("pass@{k}"), k, acc.pass[&k].estimate());
            }
            push(
                format!("majority@{samples}"),
                samples as u64,
                acc.majority.estimate(),
            );
        }
    }
    for ((round, source), v) in votes {
        let not_run = problems - v.failed - v.done;
        let mut push = |metric: String, k: u64, estimate: Estimate| {
            out.push(KMetric {
                metric,
                round,
                k,
                source: source.clone(),
                estimate,
                failed: v.failed,
                not_run,
            });
        };
        for &k in &v.keys {
            let e = v.pass.get(&k).copied().unwrap_or_default().estimate();
            push(format!("pass@{k}"), k, e);
        }
        if v.any_correct {
            let k = v.max_n.unwrap_or(0);
            push(format!("majority@{k}"), k, v.majority.estimate());
        }
    }
    out
}
