//! `reason`: one model call (with continuation) on a rendered prompt. Provides the call
//! fields of DESIGN.md; when the pipeline has a `grade:` block (and the node does not say
//! `graded: false`), also `answer` and `correct`.

use anyhow::Result;
use async_trait::async_trait;
use serde_json::{Map, json};

use super::{KindInfo, Need, NodeCx, NodeKind, Produced};
use crate::calls::chat;
use crate::llm::Prompt;

pub struct Reason;

static INFO: KindInfo = KindInfo {
    name: "reason",
    summary: "a model call on a prompt; graded by the pipeline's grade: block",
    provides: &[
        "prompt",
        "text",
        "reasoning",
        "answer_text",
        "finish_reason",
        "finish_reasons",
        "usage",
        "round",
        "model",
        "seed",
        "answer",
        "correct",
    ],
    params: &["system", "graded"],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Optional,
    template_vars: &[],
    aggregate: false,
};

/// The messages a reason node sends (also how an import finds its cache key).
pub fn prompt_of(cx: &NodeCx<'_>) -> Result<Prompt> {
    let prompt_name = cx.node.prompt.as_deref().expect("validated");
    let user = cx
        .templates
        .render(prompt_name, &cx.template_data(Map::new()))?;
    let system = cx.param_str("system").map(|s| s.to_string());
    Ok(chat(system, user))
}

#[async_trait]
impl NodeKind for Reason {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        node: &crate::spec::Node,
        _p: &crate::spec::PipelineSpec,
    ) -> Vec<(String, String)> {
        let mut v = Vec::new();
        if node.params.get("system").is_some_and(|s| !s.is_string()) {
            v.push(("system".into(), "`system:` must be a text".into()));
        }
        if node.params.get("graded").is_some_and(|s| !s.is_boolean()) {
            v.push(("graded".into(), "`graded:` must be true or false".into()));
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced> {
        let model = cx.node.model.as_deref().expect("validated");
        let g = cx.generate(model, prompt_of(cx)?, json!(null)).await?;
        let mut out = g.output;
        let graded = cx
            .node
            .params
            .get("graded")
            .and_then(|g| g.as_bool())
            .unwrap_or(true);
        if graded && let Some(g) = cx.pipeline().grade() {
            super::grade::attach_grade(cx, g, &mut out).await?;
        }
        Ok(Produced {
            output: out,
            cached: g.info.cached,
        })
    }
}
