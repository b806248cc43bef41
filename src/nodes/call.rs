//! The model-call machinery shared by every kind that calls a model: the two cache levels
//! (a node entry for the node's final outputs; a call entry per HTTP call, continuation
//! steps included), `--offline` misses, the run's concurrency caps, continuation on
//! `finish_reason: length`, and the split of a response into the DESIGN.md output fields.
//! Providers below this layer only make single calls.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{NodeCx, Output};
use crate::cache::Key;
use crate::exec::Mode;
use crate::llm::{CallContext, CallRequest, CallResponse, Message, Prompt, Usage};
use crate::spec::model::Endpoint;

/// What a model-call node returns besides its outputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallInfo {
    /// Served from a node entry without any call.
    pub cached: bool,
    /// HTTP calls made now, and calls answered from call entries.
    pub calls: u32,
    pub call_hits: u32,
    pub usage: Usage,
    /// Keys of the cache entries this node used (for `cache gc`).
    pub keys: Vec<String>,
}

/// The stored value of a node entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeEntry {
    output: Output,
}

/// Splits a response into `reasoning` and `answer_text` (DESIGN.md, settled semantics).
pub fn split_reasoning(text: &str, reasoning_field: Option<&str>) -> (String, String) {
    let reasoning = match reasoning_field {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => match text.find("</think>") {
            Some(i) => text[..i]
                .trim_start()
                .trim_start_matches("<think>")
                .trim()
                .to_string(),
            None => String::new(),
        },
    };
    let answer_text = match text.rfind("</think>") {
        Some(i) => text[i + "</think>".len()..].trim().to_string(),
        None => text.trim().to_string(),
    };
    (reasoning, answer_text)
}

/// Makes the node's model call (with continuation), through both cache levels.
/// `extra` is hashed into the node key (kind-specific settings that shape the output).
/// The call-level key material shared by every step of a node's calls, and the node key.
pub fn node_key(
    cx: &NodeCx<'_>,
    model_name: &str,
    prompt: &Prompt,
    extra: &Value,
) -> Result<(Value, Key)> {
    let run = cx.run;
    let spec = run
        .pipeline
        .spec
        .models
        .get(model_name)
        .ok_or_else(|| anyhow!("unknown model `{model_name}`"))?;
    let provider = run
        .providers
        .get(model_name)
        .ok_or_else(|| anyhow!("no provider for model `{model_name}`"))?;
    let model_ident = match &spec.cache_namespace {
        Some(ns) => format!("{ns}/{}", spec.model),
        None => spec.model.clone(),
    };
    let common = json!({
        "provider": provider.kind(),
        "backend": provider.cache_identity(),
        "endpoint": spec.endpoint.as_str(),
        "model": model_ident,
        "params": spec.param_map(),
        "sample": cx.sample,
    });
    let key = Key::of(
        &json!({"level": "node", "kind": cx.node.kind, "call": common, "prompt": prompt, "continuation": spec.continuation, "extra": extra}),
    );
    Ok((common, key))
}

/// Stores a node's final outputs as its node entry (also used to import earlier reasoning).
pub fn store_node_entry(cx: &NodeCx<'_>, key: &Key, output: &Output) -> Result<()> {
    cx.run
        .cache
        .put(
            key,
            "node",
            &NodeEntry {
                output: output.clone(),
            },
        )
        .context("writing a node entry to the cache")
}

pub async fn model_call(
    cx: &NodeCx<'_>,
    model_name: &str,
    prompt: Prompt,
    extra: Value,
) -> Result<(Output, CallInfo)> {
    let run = cx.run;
    let (common, node_key) = node_key(cx, model_name, &prompt, &extra)?;
    let spec = run
        .pipeline
        .spec
        .models
        .get(model_name)
        .ok_or_else(|| anyhow!("unknown model `{model_name}`"))?;
    let provider = run.providers.get(model_name).expect("checked by node_key");
    let params = spec.param_map();
    let mut info = CallInfo {
        keys: vec![node_key.0.clone()],
        ..Default::default()
    };
    if let Some(e) = run.cache.get::<NodeEntry>(&node_key, "node") {
        info.cached = true;
        if let Some(u) = e
            .output
            .get("usage")
            .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
        {
            info.usage = u;
        }
        run.record_call_info(model_name, &info);
        let mut out = e.output;
        out.insert("cost_usd".into(), json!(spec.price.cost(&info.usage)));
        return Ok((out, info));
    }
    let max_cont = spec.continuation.max_continuations;
    let max_total = spec.continuation.max_total_tokens;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut finish_reasons: Vec<String> = Vec::new();
    let mut model_id = None;
    let mut step_prompt = prompt.clone();
    loop {
        let req = CallRequest {
            model: spec.model.clone(),
            prompt: step_prompt.clone(),
            params: params.clone(),
            sample: cx.sample,
        };
        let call_key = Key::of(&json!({"level": "call", "call": common, "prompt": step_prompt}));
        info.keys.push(call_key.0.clone());
        let resp: CallResponse = match run.cache.get::<CallResponse>(&call_key, "call") {
            Some(r) => {
                info.call_hits += 1;
                r
            }
            None => {
                if run.mode == Mode::Plan {
                    run.stats.planned_calls.fetch_add(1, Ordering::Relaxed);
                    // estimate: prompt ≈ characters / 4, completion ≈ max_tokens
                    let est = Usage {
                        prompt_tokens: crate::llm::sim::approx_tokens(&step_prompt.full_text()),
                        completion_tokens: spec.params.max_tokens.unwrap_or(1000),
                        ..Default::default()
                    };
                    run.stats
                        .planned_tokens
                        .fetch_add(est.total(), Ordering::Relaxed);
                    let micro = spec.price.cost(&est) * 1e6;
                    run.stats
                        .planned_cost_micro
                        .fetch_add(micro as u64, Ordering::Relaxed);
                    bail!(crate::exec::PLANNED);
                }
                if run.offline {
                    bail!(
                        "offline: no cache entry for this call of model `{model_name}` (run without --offline / ENABLE_API_CALLS=0 to make it)"
                    );
                }
                if run.stop_new_calls() {
                    bail!(crate::exec::INTERRUPTED);
                }
                if run.over_budget() {
                    bail!(crate::exec::BUDGET);
                }
                let r = run
                    .limited_call(model_name, provider.as_ref(), &req, cx)
                    .await?;
                info.calls += 1;
                run.cache
                    .put(&call_key, "call", &r)
                    .context("writing a call entry to the cache")?;
                r
            }
        };
        info.usage.add(&resp.usage);
        text.push_str(&resp.text);
        if let Some(r) = &resp.reasoning {
            reasoning.push_str(r);
        }
        model_id = resp.model_id.clone().or(model_id);
        finish_reasons.push(resp.finish_reason.clone());
        let steps = finish_reasons.len() as u32;
        let under_budget = max_total.is_none_or(|m| info.usage.completion_tokens < m);
        if resp.finish_reason != "length" || steps > max_cont || !under_budget {
            break;
        }
        step_prompt = continue_prompt(&prompt, &text, spec.endpoint);
    }
    let (reasoning, answer_text) = split_reasoning(&text, Some(&reasoning));
    let mut out = Output::new();
    out.insert("prompt".into(), Value::String(prompt.full_text()));
    out.insert("text".into(), Value::String(text));
    out.insert("reasoning".into(), Value::String(reasoning));
    out.insert("answer_text".into(), Value::String(answer_text));
    out.insert(
        "finish_reason".into(),
        json!(finish_reasons.last().cloned().unwrap_or_default()),
    );
    out.insert("finish_reasons".into(), json!(finish_reasons));
    out.insert("usage".into(), serde_json::to_value(info.usage)?);
    out.insert("round".into(), json!(cx.node.round));
    out.insert(
        "model".into(),
        json!(model_id.unwrap_or_else(|| spec.model.clone())),
    );
    // A single call's outputs are a pure function of its call entry, so a node entry is
    // written only for a chain of several steps (it saves re-reading every step).
    if finish_reasons.len() > 1 {
        store_node_entry(cx, &node_key, &out)?;
    }
    info.cached = info.calls == 0;
    run.record_call_info(model_name, &info);
    // priced now, never cached: a price changed later applies to reruns
    out.insert("cost_usd".into(), json!(spec.price.cost(&info.usage)));
    Ok((out, info))
}

/// The prompt that continues a cut answer. Raw text is extended. For a completions
/// endpoint the partial answer becomes a trailing assistant message, which the chat format
/// leaves open (prompt + text so far). A chat endpoint cannot continue a message, so it gets
/// the partial answer and a request to go on.
fn continue_prompt(original: &Prompt, so_far: &str, endpoint: Endpoint) -> Prompt {
    match original {
        Prompt::Completion(t) => Prompt::Completion(format!("{t}{so_far}")),
        Prompt::Chat(msgs) => {
            let mut m = msgs.clone();
            m.push(Message {
                role: "assistant".into(),
                content: so_far.to_string(),
            });
            if endpoint == Endpoint::Chat {
                m.push(Message {
                    role: "user".into(),
                    content: "Continue exactly where you stopped.".into(),
                });
            }
            Prompt::Chat(m)
        }
    }
}

/// Builds a one-message chat prompt from rendered text (the `system:` param adds a system
/// message first).
pub fn chat(system: Option<String>, user: String) -> Prompt {
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(Message {
            role: "system".into(),
            content: s,
        });
    }
    msgs.push(Message {
        role: "user".into(),
        content: user,
    });
    Prompt::Chat(msgs)
}

/// Reports a call's retries as `retry` events of its node, and its streamed text to the
/// dashboard when one is open.
struct NodeObserver<'a> {
    cx: &'a NodeCx<'a>,
}

impl crate::llm::CallObserver for NodeObserver<'_> {
    fn delta(&self, text: &str) {
        self.cx.run.stream_delta(self.cx, text);
    }
    fn retry(&self, attempt: u32, reason: &str) {
        self.cx.run.side_event(
            self.cx,
            "retry",
            Some(format!("attempt {attempt}: {reason}")),
        );
    }
}

/// Sends one call through the provider (used by `RunCtx::limited_call`).
pub async fn send(
    provider: &dyn crate::llm::Provider,
    req: &CallRequest,
    cx: &NodeCx<'_>,
) -> Result<CallResponse> {
    let obs = NodeObserver { cx };
    let ctx = CallContext {
        problem: &cx.problem.fields,
        observer: &obs,
    };
    provider
        .call(req, &ctx)
        .await
        .map_err(|e| anyhow!("model call failed: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_think_blocks() {
        assert_eq!(
            split_reasoning("<think>a\nb</think>\n\nThe answer", None),
            ("a\nb".into(), "The answer".into())
        );
        assert_eq!(split_reasoning("plain", None), ("".into(), "plain".into()));
        assert_eq!(
            split_reasoning("x</think>y</think>z", Some("R")),
            ("R".into(), "z".into())
        );
    }
}
