//! `extract`: pulls an answer out of an upstream output's text (`field`, default `text`)
//! with an extractor (`extract:`, default the last `\boxed{}`). Provides `answer` (null when
//! none is found: never guessed).

use anyhow::Result;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Output, Produced};
use crate::grade::{ExtractOptions, Extractor};

pub struct Extract;

static INFO: KindInfo = KindInfo {
    name: "extract",
    summary: "extracts an answer from an upstream text",
    provides: &["answer", "round"],
    params: &[
        (
            "extract",
            "the extractor (default boxed; `{regex: \"…\"}` takes a pattern)",
        ),
        ("field", "the input's output field to read (default `text`)"),
        (
            "fallback_full_text",
            "true (default) or false: look in the whole text when the part after </think> has no answer",
        ),
    ],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
    graded: Graded::No,
};

/// The fields of an `extract` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub extract: Extractor,
    pub field: Option<String>,
    pub fallback_full_text: Option<bool>,
}

#[async_trait]
impl Kind for Extract {
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
        match crate::grade::check_extractor(&p.extract) {
            Ok(()) => Vec::new(),
            Err(e) => vec![("extract".into(), e, None)],
        }
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let field = p.field.as_deref().unwrap_or("text");
        let input = cx.input();
        let text = input
            .as_ref()
            .and_then(|i| i.get(field))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let mut opts = ExtractOptions::default();
        if let Some(f) = p.fallback_full_text {
            opts.fallback_full_text = f;
        }
        let mut out = Output::new();
        out.insert(
            "answer".into(),
            crate::grade::extract(&p.extract, text, &opts)
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        out.insert("round".into(), json!(cx.node.round));
        Ok(out.into())
    }
}
