//! `grade`: compares an upstream `answer` with the problem's ground truth (`compare:`,
//! default exact). Provides `answer` and `correct`. Also `attach_grade`, which the pipeline
//! `grade:` block uses to grade every `reason` node in place.

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{KindInfo, Need, NodeCx, NodeKind, Output, Produced};
use crate::grade::{Compare, GradeContext};
use crate::spec::GradeSpec;

pub struct Grade;

static INFO: KindInfo = KindInfo {
    name: "grade",
    summary: "grades an upstream answer against the problem's answer column",
    provides: &["answer", "correct", "round"],
    params: &["compare", "rel_tol", "truth_column", "judge_model"],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
};

fn compare_of(node: &crate::spec::Node) -> Result<Compare, String> {
    match node.params.get("compare") {
        None => Ok(Compare::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            format!("bad `compare:` ({e}); use exact, numeric, math, mc or llm_judge")
        }),
    }
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
async fn judge(cx: &NodeCx<'_>, judge_model: &str, answer: &str) -> Result<bool> {
    let mut hb = handlebars::Handlebars::new();
    hb.register_escape_fn(handlebars::no_escape);
    let data =
        json!({"question": cx.problem.question(), "truth": cx.problem.answer(), "answer": answer});
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
        (Some(a), Compare::LlmJudge, Some(m)) => judge(cx, m, a).await?,
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
impl NodeKind for Grade {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        node: &crate::spec::Node,
        p: &crate::spec::PipelineSpec,
    ) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if let Some(t) = node.params.get("rel_tol")
            && !t.as_f64().is_some_and(|t| t.is_finite() && t >= 0.0)
        {
            v.push((
                "rel_tol".into(),
                "`rel_tol` must be a number of at least 0".into(),
            ));
        }
        match compare_of(node) {
            Err(e) => v.push(("compare".into(), e)),
            Ok(Compare::LlmJudge) => {
                match node.params.get("judge_model").and_then(|m| m.as_str()) {
                    None => v.push((
                        "compare".into(),
                        "`compare: llm_judge` needs `judge_model:` (one of `models:`)".into(),
                    )),
                    Some(m) if !p.models.contains_key(m) => {
                        v.push(("judge_model".into(), format!("unknown model `{m}`")))
                    }
                    Some(_) => {}
                }
            }
            Ok(_) => {}
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced> {
        let cmp = compare_of(cx.node).map_err(anyhow::Error::msg)?;
        let input = cx.input();
        let answer = input
            .as_ref()
            .and_then(|i| i.get("answer"))
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let col = cx.param_str("truth_column").unwrap_or("answer");
        let truth = cx.problem.fields.get(col).map(|s| s.as_str()).unwrap_or("");
        let rel_tol = cx.node.params.get("rel_tol").and_then(|v| v.as_f64());
        let correct = match (&answer, cx.param_str("judge_model")) {
            (Some(a), Some(m)) if cmp == Compare::LlmJudge => judge(cx, m, a).await?,
            _ => verdict(
                cmp,
                answer.as_deref(),
                truth,
                cx.problem.question(),
                rel_tol,
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
