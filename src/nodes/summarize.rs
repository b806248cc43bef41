//! `summarize`: turns an upstream attempt's trace into a summary. Strategy `llm` (default)
//! renders the node's prompt with `trace` (the chosen text of the input) and calls the
//! model; with a self summarizer (`keep_after_think: true`, the default) only the text after
//! the summarizer's own `</think>` is kept.

use anyhow::{Result, bail};
use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::call::{chat, model_call, split_reasoning};
use super::{KindInfo, Need, NodeCx, NodeKind, Output};

pub struct Summarize;

static INFO: KindInfo = KindInfo {
    name: "summarize",
    summary: "summarizes an upstream trace (strategy: llm)",
    provides: &[
        "text",
        "reasoning",
        "answer_text",
        "finish_reason",
        "finish_reasons",
        "usage",
        "round",
        "model",
        "strategy",
    ],
    params: &[
        "strategy",
        "field",
        "fallback_full_text",
        "keep_after_think",
        "system",
    ],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Required,
    template_vars: &["trace"],
    aggregate: false,
};

pub const STRATEGIES: [&str; 1] = ["llm"];

/// The text of the input to summarize: `field` (default `reasoning`), or the whole `text`
/// when that is empty and `fallback_full_text` (default true).
pub fn trace_of(cx: &NodeCx<'_>) -> String {
    let Some(input) = cx.input() else {
        return String::new();
    };
    let field = cx.param_str("field").unwrap_or("reasoning");
    let fallback = cx
        .node
        .params
        .get("fallback_full_text")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let get = |f: &str| {
        input
            .get(f)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let t = get(field);
    if t.trim().is_empty() && fallback {
        get("text")
    } else {
        t
    }
}

#[async_trait]
impl NodeKind for Summarize {
    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        node: &crate::spec::Node,
        _p: &crate::spec::PipelineSpec,
    ) -> Vec<(String, String)> {
        let mut v = Vec::new();
        match node.params.get("strategy") {
            None => {}
            Some(Value::String(s)) if STRATEGIES.contains(&s.as_str()) => {}
            Some(s) => v.push((
                "strategy".into(),
                format!(
                    "unknown strategy {s}; strategies: {}",
                    STRATEGIES.join(", ")
                ),
            )),
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>) -> Result<Output> {
        let strategy = cx.param_str("strategy").unwrap_or("llm");
        if strategy != "llm" {
            bail!("unknown strategy `{strategy}`");
        }
        let trace = trace_of(cx);
        let mut extra = Map::new();
        extra.insert("trace".into(), Value::String(trace));
        let user = cx.run.templates.render(
            cx.node.prompt.as_deref().expect("validated"),
            &cx.template_data(extra),
        )?;
        let system = cx.param_str("system").map(|s| s.to_string());
        let model = cx.node.model.as_deref().expect("validated");
        let (mut out, info) =
            model_call(cx, model, chat(system, user), json!({"strategy": strategy})).await?;
        let keep_after = cx
            .node
            .params
            .get("keep_after_think")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        if keep_after {
            let text = out
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or("")
                .to_string();
            let (_, after) = split_reasoning(&text, None);
            out.insert("text".into(), Value::String(after));
        }
        out.insert("strategy".into(), json!(strategy));
        out.insert("cached".into(), json!(info.cached));
        Ok(out)
    }
}
