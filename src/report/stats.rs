//! The statistics of the report, free of any file format: Wilson score intervals, the paired
//! bootstrap over problems (seeded, reproducible), the unbiased pass@k estimator and the
//! majority vote over graded samples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The 0.975 quantile of the standard normal distribution (95% two-sided).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score 95% interval for `successes` out of `n` (successes may be fractional: a mean
/// of per-problem shares in [0, 1], whose variance is at most that of a Bernoulli).
/// `n == 0` gives the uninformative [0, 1].
pub fn wilson(successes: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let p = (successes / n).clamp(0.0, 1.0);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// The unbiased pass@k estimator (one implementation, shared with the `vote` kind).
pub use crate::nodes::vote::pass_at_k;

/// The majority vote over one problem's samples `(answer, correct)`: None when no sample has
/// an answer. Right answers are all equivalent to the truth and form one group; wrong ones are
/// grouped by math equivalence (`0.5` and `1/2` vote together, as in a `vote` node with the
/// default comparison). Ties go to the group that appears first (as `vote` nodes do).
pub fn majority(samples: &[(Option<&str>, bool)]) -> Option<bool> {
    // (key, right, votes); the key of the right group is None
    let mut groups: Vec<(Option<&str>, bool, usize)> = Vec::new();
    for (a, ok) in samples {
        let Some(a) = a.map(str::trim).filter(|a| !a.is_empty()) else {
            continue;
        };
        let key = if *ok { None } else { Some(a) };
        let same = |g: &Option<&str>| match (g, key) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                *x == y
                    || crate::grade::equivalent(
                        crate::grade::Compare::Math,
                        x,
                        y,
                        &Default::default(),
                    )
                    .unwrap_or(false)
            }
            _ => false,
        };
        match groups.iter_mut().find(|g| same(&g.0)) {
            Some(g) => g.2 += 1,
            None => groups.push((key, *ok, 1)),
        }
    }
    let best = groups.iter().map(|g| g.2).max()?;
    groups.iter().find(|g| g.2 == best).map(|g| g.1)
}

/// A paired difference with its bootstrap interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PairedDiff {
    /// mean of `a`, mean of `b`, mean of `b − a`
    pub a: f64,
    pub b: f64,
    pub diff: f64,
    /// 95% percentile interval of the resampled mean difference
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: usize,
    pub resamples: usize,
    pub seed: u64,
}

/// Paired values `(a, b)` in the order added, kept as the sums of `a` and `b` and the
/// differences `b − a`. A run's differences take few values (shares of a few samples: 3 with
/// one sample, 21 with ten), so each is one byte naming one of at most 256 distinct values,
/// eight bytes only past that: a report of 100,000 problems holds 0.1 MB here, not 1.6.
#[derive(Debug, Clone)]
pub struct Pairs {
    sums: (f64, f64, f64),
    diffs: Diffs,
}

#[derive(Debug, Clone)]
enum Diffs {
    Coded { values: Vec<f64>, codes: Vec<u8> },
    Wide(Vec<f64>),
}

impl Default for Pairs {
    fn default() -> Self {
        Pairs {
            // `Sum for f64` begins at -0.0: the means are those of summing the slices
            sums: (-0.0, -0.0, -0.0),
            diffs: Diffs::Coded {
                values: Vec::new(),
                codes: Vec::new(),
            },
        }
    }
}

impl Pairs {
    pub fn push(&mut self, a: f64, b: f64) {
        let d = b - a;
        self.sums.0 += a;
        self.sums.1 += b;
        self.sums.2 += d;
        match &mut self.diffs {
            Diffs::Coded { values, codes } => {
                match values.iter().position(|v| v.to_bits() == d.to_bits()) {
                    Some(i) => codes.push(i as u8),
                    None if values.len() < 256 => {
                        codes.push(values.len() as u8);
                        values.push(d);
                    }
                    None => {
                        let mut wide: Vec<f64> =
                            codes.iter().map(|&c| values[c as usize]).collect();
                        wide.push(d);
                        self.diffs = Diffs::Wide(wide);
                    }
                }
            }
            Diffs::Wide(v) => v.push(d),
        }
    }

    fn len(&self) -> usize {
        match &self.diffs {
            Diffs::Coded { codes, .. } => codes.len(),
            Diffs::Wide(v) => v.len(),
        }
    }

    /// Paired bootstrap over problems: resamples problem indices with replacement
    /// `resamples` times (ChaCha8 seeded with `seed`, so the same inputs and seed give the
    /// same interval) and takes the 2.5% and 97.5% percentiles of the mean of `b[i] − a[i]`.
    pub fn bootstrap(&self, resamples: usize, seed: u64) -> PairedDiff {
        let n = self.len();
        let mean = |s: f64| if n == 0 { f64::NAN } else { s / n as f64 };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // the form of the differences is matched once, not per draw
        let mut means = match &self.diffs {
            Diffs::Coded { values, codes } => {
                resampled_means(n, resamples, &mut rng, |i| values[codes[i] as usize])
            }
            Diffs::Wide(v) => resampled_means(n, resamples, &mut rng, |i| v[i]),
        };
        means.sort_by(f64::total_cmp);
        PairedDiff {
            a: mean(self.sums.0),
            b: mean(self.sums.1),
            diff: mean(self.sums.2),
            ci_low: percentile(&means, 0.025),
            ci_high: percentile(&means, 0.975),
            n,
            resamples,
            seed,
        }
    }
}

/// `resamples` means of `n` differences drawn with replacement (`diff(i)`: the `i`th).
fn resampled_means(
    n: usize,
    resamples: usize,
    rng: &mut ChaCha8Rng,
    diff: impl Fn(usize) -> f64,
) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    (0..resamples)
        .map(|_| {
            let mut s = 0.0;
            for _ in 0..n {
                s += diff(rng.random_range(0..n));
            }
            s / n as f64
        })
        .collect()
}

/// [`Pairs::bootstrap`] of the pairs `(a[i], b[i])`.
pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> PairedDiff {
    assert_eq!(a.len(), b.len(), "paired samples differ in length");
    let mut pairs = Pairs::default();
    for (x, y) in a.iter().zip(b) {
        pairs.push(*x, *y);
    }
    pairs.bootstrap(resamples, seed)
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        len => {
            let pos = q.clamp(0.0, 1.0) * (len - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(len - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), Table I / standard references
        let (l, h) = wilson(8.0, 10.0);
        assert!(
            (l - 0.4902).abs() < 1e-4 && (h - 0.9433).abs() < 1e-4,
            "{l} {h}"
        );
        let (l, h) = wilson(0.0, 10.0);
        assert!(l == 0.0 && (h - 0.2775).abs() < 1e-4, "{l} {h}");
    }

    #[test]
    fn pass_at_k_hand_values() {
        assert!((pass_at_k(5, 2, 1) - 0.4).abs() < 1e-12);
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 2, 5), 1.0);
        assert_eq!(pass_at_k(5, 0, 3), 0.0);
        assert!(pass_at_k(3, 1, 4).is_nan());
    }

    #[test]
    fn majority_ties_and_groups() {
        assert_eq!(
            majority(&[(Some("1"), false), (Some("2"), true)]),
            Some(false)
        );
        assert_eq!(
            majority(&[(Some("1"), false), (Some("2"), true), (Some("2.0"), true)]),
            Some(true)
        );
        assert_eq!(majority(&[(None, false)]), None);
    }

    #[test]
    fn percentile_interpolates() {
        assert_eq!(percentile(&[0.0, 1.0, 2.0, 3.0], 0.5), 1.5);
    }

    #[test]
    fn pairs_coded_and_wide_give_the_direct_bootstrap() {
        // few distinct differences (coded) and 600 distinct ones (wide past 256)
        for distinct in [3usize, 600] {
            let a: Vec<f64> = (0..1000)
                .map(|i| (i % distinct) as f64 / distinct as f64)
                .collect();
            let b: Vec<f64> = (0..1000).map(|i| ((i * 7) % 5) as f64 / 5.0).collect();
            let got = paired_bootstrap(&a, &b, 200, 7);
            let d: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut means: Vec<f64> = (0..200)
                .map(|_| (0..1000).map(|_| d[rng.random_range(0..1000)]).sum::<f64>() / 1000.0)
                .collect();
            means.sort_by(f64::total_cmp);
            assert_eq!(got.ci_low, percentile(&means, 0.025), "{distinct}");
            assert_eq!(got.ci_high, percentile(&means, 0.975), "{distinct}");
            assert_eq!(got.a, a.iter().sum::<f64>() / 1000.0);
            assert_eq!(got.b, b.iter().sum::<f64>() / 1000.0);
            assert_eq!(got.diff, d.iter().sum::<f64>() / 1000.0);
            assert_eq!(got.n, 1000);
        }
        let empty = paired_bootstrap(&[], &[], 10, 1);
        assert!(empty.a.is_nan() && empty.ci_low.is_nan() && empty.n == 0);
    }
}
