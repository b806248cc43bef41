//! `extract`: pulls an answer out of an upstream output's text (`field`, default `text`)
//! with an extractor (`extract:`, default the last `\boxed{}`). Provides `answer` (null when
//! none is found: never guessed).

use anyhow::Result;
use async_trait::async_trait;
use serde_json::{Value, json};

use super::{KindInfo, Need, NodeCx, NodeKind, Output, Produced};
use crate::grade::{ExtractOptions, Extractor};

pub struct Extract;

static INFO: KindInfo = KindInfo {
    name: "extract",
    summary: "extracts an answer from an upstream text",
    provides: &["answer", "round"],
    params: &["extract", "field", "fallback_full_text"],
    model: Need::Never,
    prompt: Need::Never,
    input: Need::Required,
    template_vars: &[],
    aggregate: false,
};

pub fn extractor_of(node: &crate::spec::Node) -> Result<Extractor, String> {
    match node.params.get("extract") {
        None => Ok(Extractor::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("bad `extract:` ({e}); use boxed, multiple_choice, final_answer, last_number or {{regex: …}}")),
    }
}

#[async_trait]
impl NodeKind for Extract {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        node: &crate::spec::Node,
        _p: &crate::spec::PipelineSpec,
    ) -> Vec<(String, String)> {
        match extractor_of(node).and_then(|e| crate::grade::check_extractor(&e)) {
            Ok(()) => Vec::new(),
            Err(e) => vec![("extract".into(), e)],
        }
    }

    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced> {
        let ex = extractor_of(cx.node).map_err(anyhow::Error::msg)?;
        let field = cx.param_str("field").unwrap_or("text");
        let input = cx.input();
        let text = input
            .as_ref()
            .and_then(|i| i.get(field))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let mut opts = ExtractOptions::default();
        if let Some(f) = cx
            .node
            .params
            .get("fallback_full_text")
            .and_then(|v| v.as_bool())
        {
            opts.fallback_full_text = f;
        }
        let mut out = Output::new();
        out.insert(
            "answer".into(),
            crate::grade::extract(&ex, text, &opts)
                .map(Value::String)
                .unwrap_or(Value::Null),
        );
        out.insert("round".into(), json!(cx.node.round));
        Ok(out.into())
    }
}
