//! `reason`: one model call (with continuation) on a rendered prompt. Provides the call
//! fields of DESIGN.md; when the pipeline has a `grade:` block (and the node does not say
//! `graded: false`), also `answer` and `correct`.

use anyhow::Result;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, json};

use super::{Graded, Kind, KindInfo, Need, NodeCx, Produced};
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
    params: &[
        ("system", "a system message (text)"),
        (
            "graded",
            "true (default) or false: false leaves this node out of the grade: block",
        ),
    ],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Optional,
    template_vars: &[],
    aggregate: false,
    graded: Graded::ByGradeBlock {
        answer_field: "text",
    },
};

/// The fields of a `reason` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub system: Option<String>,
    pub graded: Option<bool>,
}

/// The messages a reason node sends (also how an import finds its cache key).
pub fn prompt_of(cx: &NodeCx<'_>) -> Result<Prompt> {
    let user = cx.render_prompt(Map::new())?;
    let system = cx.param_str("system").map(|s| s.to_string());
    Ok(chat(system, user))
}

#[async_trait]
impl Kind for Reason {
    type Params = Params;

    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let model = cx.node.model.as_deref().expect("validated");
        let g = cx.generate(model, prompt_of(cx)?, json!(null)).await?;
        let mut out = g.output;
        if p.graded.unwrap_or(true)
            && let Some(g) = cx.pipeline().grade()
        {
            super::grade::attach_grade(cx, g, &mut out).await?;
        }
        Ok(Produced {
            output: out,
            cached: g.info.cached,
        })
    }
}
