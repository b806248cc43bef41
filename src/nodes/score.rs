//! `score`: extracts an answer from an upstream output and grades it in one step (an
//! `extract` followed by a `grade`, for graphs that grade a node the `grade:` block does not,
//! such as a summary). Provides `answer` and `correct`. It is also the proof that a graded
//! kind is one file and one registry line: everything else (validation of its fields,
//! references to its outputs, the report's accuracy) asks its `KindInfo`.

use anyhow::Result;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Output, Produced};
use crate::grade::{Compare, ExtractOptions, Extractor};

pub struct Score;

static INFO: KindInfo = KindInfo {
    name: "score",
    summary: "extracts an answer from an upstream text and grades it against a problem column",
    provides: &["answer", "correct", "round"],
    params: &[
        (
            "extract",
            "the extractor (default boxed; `{regex: \"…\"}` takes a pattern)",
        ),
        ("field", "the input's output field to read (default `text`)"),
        ("compare", "the comparison (default exact; not llm_judge)"),
        (
            "rel_tol",
            "relative tolerance of numeric comparisons: a number from 0 to 1",
        ),
        (
            "truth_column",
            "the problem-set column holding the truth (default `answer`)",
        ),
    ],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
    graded: Graded::Always,
};

/// The fields of a `score` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub extract: Extractor,
    pub field: Option<String>,
    pub compare: Compare,
    pub rel_tol: Option<f64>,
    pub truth_column: Option<String>,
}

#[async_trait]
impl Kind for Score {
    type Params = Params;

    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        p: &Params,
        _: &crate::spec::Node,
        _: &crate::spec::PipelineSpec,
    ) -> Vec<FieldError> {
        let mut v = Vec::new();
        if let Err(e) = crate::grade::check_extractor(&p.extract) {
            v.push(("extract".into(), e, None));
        }
        if p.compare == Compare::LlmJudge {
            v.push((
                "compare".into(),
                "`score` compares without a model; use a `grade` node for llm_judge".into(),
                Some("compare: exact, numeric, math or mc".into()),
            ));
        }
        if let Some(e) = super::grade::check_rel_tol(p.rel_tol) {
            v.push(("rel_tol".into(), e, None));
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let text = cx
            .input_str(p.field.as_deref().unwrap_or("text"))
            .unwrap_or_default();
        let answer = crate::grade::extract(&p.extract, &text, &ExtractOptions::default());
        let col = p.truth_column.as_deref().unwrap_or("answer");
        let truth = cx.problem.get(col).unwrap_or("");
        let correct = super::grade::verdict(
            p.compare,
            answer.as_deref(),
            truth,
            cx.problem.question(),
            p.rel_tol,
        )?;
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
