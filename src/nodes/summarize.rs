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
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::tokens::{self, Pick};
use super::{FieldError, Graded, Kind, KindInfo, Need, NodeCx, Output, Produced};
use crate::calls::{chat, split_reasoning};
use crate::grade::Named;
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
        (
            "strategy",
            "the summary strategy (default llm; first_k, last_k, random_k, post_think and answer_only need no model)",
        ),
        (
            "field",
            "the input's output field to summarize (default `reasoning`)",
        ),
        (
            "fallback_full_text",
            "true (default) or false: use the input's `text` when `field` is empty",
        ),
        (
            "keep_after_think",
            "true (default) or false: keep only the summarizer's text after its own </think>",
        ),
        ("system", "a system message (text)"),
        (
            "k",
            "tokens kept by first_k, last_k, random_k and post_think: a whole number from 1 to 1000000 (default 404)",
        ),
        (
            "tokenizer",
            "the tokenizer of token strategies: cl100k_base or o200k_base (default: the `tokenizer:` of the model that wrote the input, else cl100k_base)",
        ),
        (
            "chunk_words",
            "words per chunk of `chunked`: a whole number from 1 to 1000000 (default 1000)",
        ),
        (
            "overlap_words",
            "words shared by neighbouring chunks: from 0 to below chunk_words (default 100)",
        ),
        (
            "chunk_separator",
            "the text between chunk summaries (default two newlines)",
        ),
        (
            "ellipsis",
            "true or false (default): `...` after a cut first_k, before a cut last_k / post_think fallback",
        ),
    ],
    model: Need::Required,
    prompt: Need::Required,
    input: Need::Required,
    template_vars: &["trace", "chunk_index", "chunk_count"],
    aggregate: false,
    graded: Graded::No,
};

/// A summary strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    #[default]
    Llm,
    Chunked,
    FirstK,
    LastK,
    RandomK,
    PostThink,
    AnswerOnly,
}

impl Named for Strategy {
    const WHAT: &'static str = "strategy";
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (Strategy::Llm, "llm", "the node's prompt sent to its model"),
        (
            Strategy::Chunked,
            "chunked",
            "map-reduce over word chunks, each summarized by the prompt",
        ),
        (
            Strategy::FirstK,
            "first_k",
            "the first k tokens of the trace",
        ),
        (Strategy::LastK, "last_k", "the last k tokens of the trace"),
        (
            Strategy::RandomK,
            "random_k",
            "a seeded random k tokens, kept in order",
        ),
        (
            Strategy::PostThink,
            "post_think",
            "the attempt's text after its last </think> (else last_k)",
        ),
        (Strategy::AnswerOnly, "answer_only", "\"The answer is X.\""),
    ];
}
crate::named_serde!(Strategy);

impl Strategy {
    /// Whether the strategy calls the node's model (and so needs `model:` and `prompt:`).
    pub fn calls_model(self) -> bool {
        matches!(self, Strategy::Llm | Strategy::Chunked)
    }
}

/// The fields of a `summarize` node.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Params {
    pub strategy: Strategy,
    pub field: Option<String>,
    pub fallback_full_text: Option<bool>,
    pub keep_after_think: Option<bool>,
    pub system: Option<String>,
    pub k: Option<u64>,
    pub tokenizer: Option<String>,
    pub chunk_words: Option<u64>,
    pub overlap_words: Option<u64>,
    pub chunk_separator: Option<String>,
    pub ellipsis: Option<bool>,
}

pub const DEFAULT_K: u64 = 404;

/// Whether a summarize node uses a strategy without a model call (first/last/random-k,
/// post-think, answer-only): it then needs neither `model:` nor `prompt:`.
pub fn without_model(node: &crate::spec::Node) -> bool {
    node.kind == "summarize"
        && node
            .params
            .get("strategy")
            .and_then(|s| s.as_str())
            // an unknown strategy is reported as such, not also as a missing model
            .is_some_and(|s| Strategy::parse_name(s).map_or(true, |s| !s.calls_model()))
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
impl Kind for Summarize {
    type Params = Params;

    fn info(&self) -> &'static KindInfo {
        &INFO
    }

    fn check(
        &self,
        p: &Params,
        node: &crate::spec::Node,
        _: &crate::spec::PipelineSpec,
    ) -> Vec<FieldError> {
        let mut v = Vec::new();
        let range = |name: &str, val: Option<u64>, lo: u64, hi: u64, v: &mut Vec<FieldError>| {
            if let Some(x) = val
                && !(lo..=hi).contains(&x)
            {
                v.push((
                    name.into(),
                    format!(
                        "`{name}: {x}` is out of range: it must be a whole number from {lo} to {hi}"
                    ),
                    INFO.params
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map(|(n, d)| format!("`{n}`: {d}")),
                ));
            }
        };
        range("k", p.k, 1, 1_000_000, &mut v);
        range("chunk_words", p.chunk_words, 1, 1_000_000, &mut v);
        let chunk = p.chunk_words.unwrap_or(1000);
        range(
            "overlap_words",
            p.overlap_words,
            0,
            chunk.saturating_sub(1),
            &mut v,
        );
        if let Some(t) = &p.tokenizer
            && !tokens::TOKENIZERS.contains(&t.as_str())
        {
            v.push((
                "tokenizer".into(),
                crate::grade::names::unknown("tokenizer", t, &tokens::TOKENIZERS),
                None,
            ));
        }
        if p.strategy.calls_model() && node.model.is_none() {
            v.push((
                "strategy".into(),
                format!("strategy `{}` needs `model:` and `prompt:`", p.strategy.name()),
                Some("add them, or pick a strategy without a model: first_k, last_k, random_k, post_think, answer_only".into()),
            ));
        }
        v
    }

    async fn run(&self, cx: &NodeCx<'_>, p: &Params) -> Result<Produced> {
        let strategy = p.strategy.name();
        let k = p.k.unwrap_or(DEFAULT_K) as usize;
        let tok = tokenizer_for(cx, p)?;
        let trace = trace_of(cx)?;
        let ellipsis = p.ellipsis.unwrap_or(false);
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
            "chunked" => self.chunked(cx, p, &trace).await,
            _ => {
                self.llm(cx, p, trace, Map::new(), json!({"strategy": "llm"}))
                    .await
            }
        }
    }
}

/// The tokenizer of the token strategies: the node's `tokenizer:` when set, else the
/// `tokenizer:` of the model that wrote the input (cl100k_base when it has none).
fn tokenizer_for(cx: &NodeCx<'_>, p: &Params) -> Result<crate::calls::tokenizer::Tokenizer> {
    use crate::calls::tokenizer::Tokenizer;
    if let Some(name) = &p.tokenizer {
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
        p: &Params,
        trace: String,
        mut extra: Map<String, Value>,
        key_extra: Value,
    ) -> Result<Produced> {
        extra.insert("trace".into(), Value::String(trace));
        extra.entry("chunk_index").or_insert(json!(0));
        extra.entry("chunk_count").or_insert(json!(1));
        let user = cx.render_prompt(extra)?;
        let model = cx.node.model.as_deref().expect("validated");
        let g = cx
            .generate(model, chat(p.system.clone(), user), key_extra)
            .await?;
        let mut out = g.output;
        if p.keep_after_think.unwrap_or(true) {
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

    async fn chunked(&self, cx: &NodeCx<'_>, p: &Params, trace: &str) -> Result<Produced> {
        let size = p.chunk_words.unwrap_or(1000) as usize;
        let overlap = p
            .overlap_words
            .unwrap_or(100)
            .min(p.chunk_words.unwrap_or(1000).saturating_sub(1)) as usize;
        let parts = chunks(trace, size, overlap);
        let count = parts.len();
        let calls = parts.into_iter().enumerate().map(|(i, part)| {
            let mut extra = Map::new();
            extra.insert("chunk_index".into(), json!(i));
            extra.insert("chunk_count".into(), json!(count));
            self.llm(
                cx,
                p,
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
            .join(p.chunk_separator.as_deref().unwrap_or("\n\n"));
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
