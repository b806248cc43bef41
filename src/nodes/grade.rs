//! `grade`: compares an upstream `answer` with the problem's ground truth (`compare:`,
//! default exact). Provides `answer` and `correct`. Also `attach_grade`, which the pipeline
//! `grade:` block uses to grade every `reason` node in place.

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Output, Produced};
use crate::grade::{Compare, GradeContext, Named};
use crate::spec::GradeSpec;

pub struct Grade;

static INFO: KindInfo = KindInfo {
    name: "grade",
    summary: "grades an upstream answer against the problem's answer column",
    provides: &["answer", "correct", "round"],
    params: &[
        (
            "compare",
            "the comparison (default exact; llm_judge needs judge_model)",
        ),
        (
            "rel_tol",
            "relative tolerance of numeric comparisons: a number from 0 to 1",
        ),
        (
            "truth_column",
            "the problem-set column holding the truth (default `answer`)",
        ),
        (
            "judge_model",
            "for compare: llm_judge, the judging model (one of `models:`)",
        ),
    ],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
    graded: Graded::Always,
};

/// The fields of a `grade` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub compare: Compare,
    pub rel_tol: Option<f64>,
    pub truth_column: Option<String>,
    pub judge_model: Option<String>,
}

/// The range of `rel_tol` (here and in the `grade:` block).
pub fn check_rel_tol(t: Option<f64>) -> Option<String> {
    t.filter(|t| !(t.is_finite() && (0.0..=1.0).contains(t)))
        .map(|t| format!("`rel_tol: {t}` is out of range: it must be a number from 0 to 1"))
}

/// Grades `answer` (None = no answer = wrong) against the truth.
pub fn verdict(
    cmp: Compare,
    answer: Option<&str>,
    truth: &str,
    question: &str,
    rel_tol: Option<f64>,
) -> Result<bool> {
    let Some(a) = answer else { return Ok(false) };
    if cmp == Compare::LlmJudge {
        bail!("compare: llm_judge needs a judge model call (set grade.judge_model)");
    }
    crate::grade::equivalent(
        cmp,
        a,
        truth,
        &GradeContext {
            question: Some(question),
            rel_tol,
        },
    )
    .map_err(anyhow::Error::msg)
}

/// Asks the judge model whether `answer` matches the truth; the verdict is parsed strictly
/// (an unparseable verdict is an error, never a pass).
async fn judge(cx: &NodeCx<'_>, judge_model: &str, answer: &str, truth: &str) -> Result<bool> {
    let mut hb = handlebars::Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    let data = json!({"question": cx.problem.question(), "truth": truth, "answer": answer});
    let prompt = hb.render_template(crate::grade::JUDGE_PROMPT, &data)?;
    let g = cx
        .generate(
            judge_model,
            crate::calls::chat(None, prompt),
            json!({"judge": cx.node.id}),
        )
        .await?;
    let reply = g
        .output
        .get("answer_text")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    crate::grade::parse_judge_verdict(reply).map_err(|e| {
        // an unreadable verdict is an error, and not one to keep: the judgement is asked
        // again on the next run instead of failing the same way from the cache
        cx.calls.forget(&g.info.keys);
        anyhow::anyhow!("judge `{judge_model}`: {e}")
    })
}

/// Adds `answer` and `correct` to a model node's output per the pipeline's `grade:` block.
pub async fn attach_grade(cx: &NodeCx<'_>, g: &GradeSpec, out: &mut Output) -> Result<()> {
    attach_grade_from(cx, g, out, "text").await
}

/// Like `attach_grade`, reading the answer from the output field `field`.
pub async fn attach_grade_from(
    cx: &NodeCx<'_>,
    g: &GradeSpec,
    out: &mut Output,
    field: &str,
) -> Result<()> {
    let text = out
        .get(field)
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let answer = crate::grade::extract(&g.extract, &text, &g.extract_options());
    let correct = match (&answer, g.compare, g.judge_model.as_deref()) {
        (Some(a), Compare::LlmJudge, Some(m)) => judge(cx, m, a, cx.problem.answer()).await?,
        _ => verdict(
            g.compare,
            answer.as_deref(),
            cx.problem.answer(),
            cx.problem.question(),
            g.rel_tol,
        )?,
    };
    out.insert(
        "answer".into(),
        answer.map(Value::String).unwrap_or(Value::Null),
    );
    out.insert("correct".into(), json!(correct));
    Ok(())
}

#[async_trait]
impl Kind for Grade {
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
        if let Some(e) = check_rel_tol(p.rel_tol) {
            v.push(("rel_tol".into(), e, Some("e.g. `rel_tol: 1e-6`".into())));
        }
        let models = || spec.models.keys().map(String::as_str);
        match (&p.judge_model, p.compare) {
            (None, Compare::LlmJudge) => v.push((
                "compare".into(),
                "`compare: llm_judge` needs `judge_model:`".into(),
                Some(format!(
                    "name one of `models:`: {}",
                    models().collect::<Vec<_>>().join(", ")
                )),
            )),
            (Some(m), _) if !spec.models.contains_key(m) => v.push((
                "judge_model".into(),
                format!("unknown model `{m}`"),
                Some(format!(
                    "{}models: {}",
                    super::params::did_you_mean(m, models()),
                    models().collect::<Vec<_>>().join(", ")
                )),
            )),
            (Some(_), c) if c != Compare::LlmJudge => v.push((
                "judge_model".into(),
                format!(
                    "`judge_model:` is only used by `compare: llm_judge`, not `{}`",
                    c.name()
                ),
                Some("remove it, or set `compare: llm_judge`".into()),
            )),
            _ => {}
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let input = cx.input();
        let answer = input
            .as_ref()
            .and_then(|i| i.get("answer"))
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let col = p.truth_column.as_deref().unwrap_or("answer");
        let truth = cx.problem.get(col).unwrap_or("");
        let correct = match (&answer, p.judge_model.as_deref()) {
            (Some(a), Some(m)) if p.compare == Compare::LlmJudge => judge(cx, m, a, truth).await?,
            _ => verdict(
                p.compare,
                answer.as_deref(),
                truth,
                cx.problem.question(),
                p.rel_tol,
            )?,
        };
        let mut out = Output::new();
        out.insert(
            "answer".into(),
            answer.map(Value::String).unwrap_or(Value::Null),
        );
        out.insert("correct".into(), json!(correct));
        out.insert("round".into(), json!(cx.node.round));
        Ok(out.into())
    }
}
