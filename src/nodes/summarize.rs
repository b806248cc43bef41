//! `summarize`: turns an upstream attempt's trace into a summary, by one of the paper's
//! strategies:
//! - `llm` (default): the node's prompt, rendered with `trace`, sent to its model (the
//!   reasoner itself or an external summarizer); with `keep_after_think` (default) only the
//!   text after the summarizer's own `</think>` is kept;
//! - `chunked`: the trace split into word chunks with overlap, each summarized by the prompt
//!   concurrently (under the run's limits), joined in order;
//! - `first_k` / `last_k` / `random_k`: k tokens of the trace (random-k: a uniform subset kept
//!   in order, seeded by the pipeline seed, problem, round and sample);
//! - `post_think`: the attempt's own text after its last `</think>`, or last-k without one;
//! - `answer_only`: "The answer is X." or "No answer found.".
//!
//! The trace is the input's `field` (default `reasoning`), or its whole `text` when that is
//! empty and `fallback_full_text` (default true).

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use futures_util::future::try_join_all;
use serde_json::{Map, Value, json};

use super::tokens::{self, Pick};
use super::{KindInfo, Need, NodeCx, NodeKind, Output, Produced};
use crate::calls::{chat, split_reasoning};
use crate::llm::Usage;

pub struct Summarize;

static INFO: KindInfo = KindInfo {
    name: "summarize",
    summary: "summarizes an upstream trace (llm, chunked, first_k, last_k, random_k, post_think, answer_only)",
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
        "strategy",
        "tokenizer",
        "tokens",
        "chunks",
    ],
    params: &[
        "strategy",
        "field",
        "fallback_full_text",
        "keep_after_think",
        "system",
        "k",
        "tokenizer",
        "chunk_words",
        "overlap_words",
        "chunk_separator",
        "ellipsis",
    ],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Required,
    template_vars: &["trace", "chunk_index", "chunk_count"],
    aggregate: false,
};

pub const STRATEGIES: [&str; 7] = [
    "llm",
    "chunked",
    "first_k",
    "last_k",
    "random_k",
    "post_think",
    "answer_only",
];
pub const DEFAULT_K: u64 = 404;

/// Whether a summarize node uses a strategy without a model call (first/last/random-k,
/// post-think, answer-only): it then needs neither `model:` nor `prompt:`.
pub fn without_model(node: &crate::spec::Node) -> bool {
    node.kind == "summarize"
        && node
            .params
            .get("strategy")
            .and_then(|s| s.as_str())
            .is_some_and(|s| !matches!(s, "llm" | "chunked"))
}

/// The text of the input to summarize. With `fallback_full_text: false` an input without
/// that field (an attempt with no `</think>`, for `reasoning`) fails the node, as the original
/// tool stops on a trace without `</think>` unless `allow_fallback` is set.
pub fn trace_of(cx: &NodeCx<'_>) -> Result<String> {
    let Some(input) = cx.input() else {
        return Ok(String::new());
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
    match (t.trim().is_empty(), fallback) {
        (true, true) => Ok(get("text")),
        (true, false) => Err(anyhow!(
            "the input has no `{field}` to summarize (for `reasoning`: its text has no `</think>`); set `fallback_full_text: true` to summarize its whole text instead"
        )),
        _ => Ok(t),
    }
}

fn uint(node: &crate::spec::Node, name: &str, default: u64) -> Result<u64, String> {
    match node.params.get(name) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("`{name}:` must be a positive whole number")),
    }
}

/// Splits words into chunks of `size` with `overlap` words shared between neighbours.
pub fn chunks(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return vec![String::new()];
    }
    let step = size.saturating_sub(overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + size).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        start += step;
    }
    out
}

fn plain(cx: &NodeCx<'_>, strategy: &str, text: String) -> Output {
    let mut o = Output::new();
    o.insert("text".into(), Value::String(text));
    o.insert("strategy".into(), json!(strategy));
    o.insert("round".into(), json!(cx.node.round));
    o.insert(
        "usage".into(),
        serde_json::to_value(Usage::default()).unwrap_or_default(),
    );
    o
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
        let strategy = match node.params.get("strategy") {
            None => "llm".to_string(),
            Some(Value::String(s)) if STRATEGIES.contains(&s.as_str()) => s.clone(),
            Some(s) => {
                v.push((
                    "strategy".into(),
                    format!(
                        "unknown strategy {s}; strategies: {}",
                        STRATEGIES.join(", ")
                    ),
                ));
                return v;
            }
        };
        for (name, default) in [("k", DEFAULT_K), ("chunk_words", 1000)] {
            if let Err(e) = uint(node, name, default) {
                v.push((name.into(), e));
            }
        }
        if let Some(o) = node.params.get("overlap_words")
            && o.as_u64().is_none()
        {
            v.push((
                "overlap_words".into(),
                "`overlap_words:` must be a whole number (0 for none)".into(),
            ));
        }
        for name in ["ellipsis"] {
            if node.params.get(name).is_some_and(|b| !b.is_boolean()) {
                v.push((name.into(), format!("`{name}:` must be true or false")));
            }
        }
        if node
            .params
            .get("chunk_separator")
            .is_some_and(|b| !b.is_string())
        {
            v.push((
                "chunk_separator".into(),
                "`chunk_separator:` must be text".into(),
            ));
        }
        if let Some(t) = node.params.get("tokenizer")
            && !t.as_str().is_some_and(|t| tokens::TOKENIZERS.contains(&t))
        {
            v.push((
                "tokenizer".into(),
                format!(
                    "unknown tokenizer {t}; tokenizers: {}",
                    tokens::TOKENIZERS.join(", ")
                ),
            ));
        }
        if matches!(strategy.as_str(), "llm" | "chunked") && node.model.is_none() {
            v.push((
                "strategy".into(),
                format!("strategy `{strategy}` needs `model:` and `prompt:`"),
            ));
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced> {
        let strategy = cx.param_str("strategy").unwrap_or("llm");
        let k = uint(cx.node, "k", DEFAULT_K).map_err(anyhow::Error::msg)? as usize;
        let tok = tokenizer_for(cx)?;
        let trace = trace_of(cx)?;
        let ellipsis = cx
            .node
            .params
            .get("ellipsis")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let token_out = |text: String, n: usize| {
            let mut o = plain(cx, strategy, text);
            o.insert("tokenizer".into(), json!(tok.name()));
            o.insert("tokens".into(), json!(n));
            o
        };
        let keep = |pick: Pick| -> Result<(String, usize)> {
            let (t, n, cut) = tokens::keep_with(&tok, &trace, k, pick)?;
            Ok(match (ellipsis && cut, pick) {
                (true, Pick::First) => (format!("{t}..."), n),
                (true, Pick::Last) => (format!("...{t}"), n),
                _ => (t, n),
            })
        };
        match strategy {
            "first_k" | "last_k" | "random_k" => {
                let pick = match strategy {
                    "first_k" => Pick::First,
                    "last_k" => Pick::Last,
                    _ => Pick::Random(tokens::random_seed(
                        cx.pipeline().spec.seed,
                        &cx.problem.id,
                        cx.node.round,
                        cx.sample + cx.pipeline().spec.sample_offset,
                    )),
                };
                let (t, n) = keep(pick)?;
                Ok(token_out(t, n).into())
            }
            "post_think" => {
                let full = cx.input_str("text").unwrap_or_default();
                let after = full
                    .rfind("</think>")
                    .map(|i| full[i + "</think>".len()..].trim().to_string());
                match after.filter(|a| !a.is_empty()) {
                    Some(a) => {
                        let n = tok.count(&a) as usize;
                        Ok(token_out(a, n).into())
                    }
                    None => {
                        let (t, n) = keep(Pick::Last)?;
                        Ok(token_out(t, n).into())
                    }
                }
            }
            "answer_only" => {
                let answer = cx.input_str("answer").or_else(|| {
                    let text = cx.input_str("text").unwrap_or_default();
                    crate::grade::extract(
                        &crate::grade::Extractor::Boxed,
                        &text,
                        &crate::grade::ExtractOptions::default(),
                    )
                });
                let t = match answer {
                    Some(a) => format!("The answer is {a}."),
                    None => "No answer found.".to_string(),
                };
                let n = tok.count(&t) as usize;
                Ok(token_out(t, n).into())
            }
            "chunked" => self.chunked(cx, &trace).await,
            _ => {
                self.llm(cx, trace, Map::new(), json!({"strategy": "llm"}))
                    .await
            }
        }
    }
}

/// The tokenizer of the token strategies: the node's `tokenizer:` when set, else the
/// `tokenizer:` of the model that wrote the input (cl100k_base when it has none).
fn tokenizer_for(cx: &NodeCx<'_>) -> Result<crate::calls::tokenizer::Tokenizer> {
    use crate::calls::tokenizer::Tokenizer;
    if let Some(name) = cx.param_str("tokenizer") {
        return Tokenizer::load(Some(name), std::path::Path::new("."));
    }
    let producer = cx
        .node
        .input
        .as_ref()
        .and_then(|r| cx.pipeline().node(&r.node))
        .and_then(|n| n.model.as_deref())
        .and_then(|m| cx.calls.tokenizer_of(m));
    match producer {
        Some(t) => Ok(t.clone()),
        None => Tokenizer::load(None, std::path::Path::new(".")),
    }
}

impl Summarize {
    /// One summarizing model call on `trace` (plus template extras).
    async fn llm(
        &self,
        cx: &NodeCx<'_>,
        trace: String,
        mut extra: Map<String, Value>,
        key_extra: Value,
    ) -> Result<Produced> {
        extra.insert("trace".into(), Value::String(trace));
        extra.entry("chunk_index").or_insert(json!(0));
        extra.entry("chunk_count").or_insert(json!(1));
        let user = cx.templates.render(
            cx.node.prompt.as_deref().expect("validated"),
            &cx.template_data(extra),
        )?;
        let system = cx.param_str("system").map(|s| s.to_string());
        let model = cx.node.model.as_deref().expect("validated");
        let g = cx.generate(model, chat(system, user), key_extra).await?;
        let mut out = g.output;
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
        out.insert("strategy".into(), json!("llm"));
        Ok(Produced {
            output: out,
            cached: g.info.cached,
        })
    }

    async fn chunked(&self, cx: &NodeCx<'_>, trace: &str) -> Result<Produced> {
        let size = uint(cx.node, "chunk_words", 1000).map_err(anyhow::Error::msg)? as usize;
        let overlap = cx
            .node
            .params
            .get("overlap_words")
            .and_then(|o| o.as_u64())
            .unwrap_or(100) as usize;
        let parts = chunks(trace, size, overlap);
        let count = parts.len();
        let calls = parts.into_iter().enumerate().map(|(i, part)| {
            let mut extra = Map::new();
            extra.insert("chunk_index".into(), json!(i));
            extra.insert("chunk_count".into(), json!(count));
            self.llm(
                cx,
                part,
                extra,
                json!({"strategy": "chunked", "chunk": i, "of": count}),
            )
        });
        let produced = try_join_all(calls).await?;
        let all_cached = produced.iter().all(|p| p.cached);
        let outs: Vec<Output> = produced.into_iter().map(|p| p.output).collect();
        let mut usage = Usage::default();
        for o in &outs {
            if let Some(u) = o
                .get("usage")
                .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
            {
                usage.add(&u);
            }
        }
        let text = outs
            .iter()
            .map(|o| o.get("text").and_then(|t| t.as_str()).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(cx.param_str("chunk_separator").unwrap_or("\n\n"));
        let mut out = plain(cx, "chunked", text);
        out.insert("usage".into(), serde_json::to_value(usage)?);
        out.insert("chunks".into(), json!(count));
        let cost: f64 = outs
            .iter()
            .filter_map(|o| o.get("cost_usd").and_then(|c| c.as_f64()))
            .sum();
        out.insert("cost_usd".into(), json!(cost));
        out.insert(
            "finish_reasons".into(),
            json!(
                outs.iter()
                    .map(|o| o.get("finish_reason").cloned().unwrap_or(Value::Null))
                    .collect::<Vec<_>>()
            ),
        );
        Ok(Produced {
            output: out,
            cached: all_cached,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_overlap_and_cover_everything() {
        let text = (0..25).map(|i| i.to_string()).collect::<Vec<_>>().join(" ");
        let c = chunks(&text, 10, 2);
        assert_eq!(c.len(), 3);
        assert!(c[0].starts_with("0 1") && c[0].ends_with("8 9"));
        assert!(c[1].starts_with("8 9 10"));
        assert!(c[2].ends_with("24"));
        assert_eq!(chunks("", 10, 2), vec![String::new()]);
    }
}
