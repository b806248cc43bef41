//! `vote`: an aggregating kind that runs once per problem over every sample's `input`
//! output. Majority vote: answers are grouped by equivalence under `compare` (default: the
//! pipeline's grade comparison, else exact); the largest group wins, and a tie goes to the
//! group whose first answer came from the lowest sample index. A sample without an answer
//! votes for nothing. pass@k uses the unbiased estimator 1 − C(n−c, k) / C(n, k) for every
//! requested k ≤ n (n samples, c of them correct).

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Output, Produced};
use crate::grade::{Compare, GradeContext};

pub struct Vote;

static INFO: KindInfo = KindInfo {
    name: "vote",
    summary: "majority vote and pass@k over the samples of one problem",
    provides: &[
        "input",
        "answer",
        "correct",
        "votes",
        "n",
        "n_answered",
        "correct_count",
        "pass_at",
        "answers",
        "round",
    ],
    params: &[
        (
            "compare",
            "how answers are grouped: exact, numeric, math or mc (default: the grade block's, else exact)",
        ),
        (
            "k",
            "pass@k for k (a whole number from 1 to 10000, or a list of them; default 1; k above `samples:` is left out)",
        ),
    ],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: true,
    graded: Graded::Always,
};

/// `k:` — one number or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Ks {
    One(u64),
    Many(Vec<u64>),
}

/// The fields of a `vote` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub compare: Option<Compare>,
    pub k: Option<Ks>,
}

impl Params {
    pub fn ks(&self) -> Vec<u64> {
        match &self.k {
            None => vec![1],
            Some(Ks::One(k)) => vec![*k],
            Some(Ks::Many(v)) => v.clone(),
        }
    }
}

/// Unbiased pass@k estimator (Chen et al. 2021): 1 − C(n−c, k)/C(n, k), computed as a product.
pub fn pass_at_k(n: u64, c: u64, k: u64) -> f64 {
    if k == 0 || k > n {
        return f64::NAN;
    }
    let c = c.min(n);
    if n - c < k {
        return 1.0;
    }
    let mut prod = 1.0;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    1.0 - prod
}

/// Groups answers by `same`; returns (winning answer, its votes). Ties: lowest first index.
pub fn majority(
    answers: &[Option<String>],
    same: &dyn Fn(&str, &str) -> bool,
) -> Option<(String, usize)> {
    let mut groups: Vec<(String, usize)> = Vec::new();
    for a in answers.iter().flatten() {
        match groups.iter_mut().find(|(rep, _)| same(rep, a)) {
            Some(g) => g.1 += 1,
            None => groups.push((a.clone(), 1)),
        }
    }
    // max_by_key keeps the last maximum; iterate reversed so the first group wins ties
    groups.into_iter().rev().max_by_key(|(_, n)| *n)
}

#[async_trait]
impl Kind for Vote {
    type Params = Params;

    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        p: &Params,
        _: &crate::spec::Node,
        spec: &crate::spec::PipelineSpec,
    ) -> Vec<FieldError> {
        let mut v = Vec::new();
        let n = u64::from(spec.samples.max(1));
        let ks = p.ks();
        let max = u64::from(crate::spec::MAX_SAMPLES);
        if ks.is_empty() || ks.iter().any(|&k| k == 0 || k > max) {
            v.push((
                "k".into(),
                format!("`k:` must be whole numbers from 1 to {max}, got {ks:?}"),
                Some(format!(
                    "e.g. `k: [1, {n}]` (a k above `samples:` is left out of pass@k)"
                )),
            ));
        }
        if p.compare == Some(Compare::LlmJudge) {
            v.push((
                "compare".into(),
                "`compare:` of a vote must be exact, numeric, math or mc (a vote groups answers without a judge)".into(),
                Some("use `compare: math` (or leave it out: the grade block's comparison is used)".into()),
            ));
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let Some(input) = &cx.node.input else {
            bail!("vote needs `input:`")
        };
        let samples = cx.pipeline().spec.samples.max(1);
        let grade = cx.pipeline().grade();
        let cmp = match p.compare {
            Some(c) => c,
            None => grade
                .map(|g| g.compare)
                .filter(|c| *c != Compare::LlmJudge)
                .unwrap_or(Compare::Exact),
        };
        let rel_tol = grade.and_then(|g| g.rel_tol);
        let gctx = GradeContext {
            question: Some(cx.problem.question()),
            rel_tol,
        };
        let mut answers = Vec::new();
        let mut correct_count = 0u64;
        let mut n = 0u64;
        for s in 0..samples {
            let Some(o) = cx.upstream.get(&format!("{}#{s}", input.node)) else {
                continue;
            };
            n += 1;
            answers.push(
                o.get("answer")
                    .and_then(|a| a.as_str())
                    .map(|a| a.to_string()),
            );
            if o.get("correct").and_then(|c| c.as_bool()) == Some(true) {
                correct_count += 1;
            }
        }
        let same = |a: &str, b: &str| crate::grade::equivalent(cmp, a, b, &gctx).unwrap_or(false);
        let winner = majority(&answers, &same);
        let truth = cx.problem.answer();
        let correct = winner.as_ref().is_some_and(|(a, _)| same(a, truth));
        let mut pass = Map::new();
        for k in p.ks() {
            if k <= n {
                pass.insert(k.to_string(), json!(pass_at_k(n, correct_count, k)));
            }
        }
        let mut out = Output::new();
        out.insert(
            "answer".into(),
            winner
                .as_ref()
                .map(|(a, _)| json!(a))
                .unwrap_or(Value::Null),
        );
        out.insert("correct".into(), json!(correct));
        out.insert("votes".into(), json!(winner.map(|(_, v)| v).unwrap_or(0)));
        out.insert("n".into(), json!(n));
        out.insert("n_answered".into(), json!(answers.iter().flatten().count()));
        out.insert("correct_count".into(), json!(correct_count));
        out.insert("pass_at".into(), Value::Object(pass));
        out.insert("answers".into(), json!(answers));
        out.insert("input".into(), json!(input.node));
        out.insert("round".into(), json!(cx.node.round));
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_at_k_matches_hand_computed_values() {
        // n=5, c=2: pass@1 = 2/5; pass@2 = 1 - C(3,2)/C(5,2) = 1 - 3/10; pass@5 = 1
        assert!((pass_at_k(5, 2, 1) - 0.4).abs() < 1e-12);
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        assert_eq!(pass_at_k(5, 2, 5), 1.0);
        assert_eq!(pass_at_k(5, 0, 3), 0.0);
        // n=10, c=3, k=4: 1 - C(7,4)/C(10,4) = 1 - 35/210
        assert!((pass_at_k(10, 3, 4) - (1.0 - 35.0 / 210.0)).abs() < 1e-12);
        assert!(pass_at_k(3, 1, 4).is_nan());
    }

    #[test]
    fn majority_groups_equivalent_answers_and_breaks_ties_by_first_sample() {
        let a = |v: &[Option<&str>]| {
            v.iter()
                .map(|x| x.map(|s| s.to_string()))
                .collect::<Vec<_>>()
        };
        let exact = |x: &str, y: &str| x == y;
        assert_eq!(
            majority(&a(&[Some("1"), Some("2"), Some("2")]), &exact),
            Some(("2".into(), 2))
        );
        assert_eq!(
            majority(&a(&[Some("1"), Some("2"), Some("2"), Some("1")]), &exact),
            Some(("1".into(), 2))
        );
        assert_eq!(
            majority(&a(&[None, Some("7"), None]), &exact),
            Some(("7".into(), 1))
        );
        assert_eq!(majority(&a(&[None, None]), &exact), None);
        let math = |x: &str, y: &str| {
            crate::grade::equivalent(Compare::Math, x, y, &GradeContext::default()).unwrap_or(false)
        };
        assert_eq!(
            majority(&a(&[Some("1/2"), Some("3"), Some("0.5")]), &math).map(|w| w.1),
            Some(2)
        );
    }
}
