//! Model access: the `Provider` trait every backend implements, the request and response
//! types that cross it, and the registry that builds a provider from a pipeline's model
//! spec. Caching, continuation, single-flight and the run's concurrency caps live above this
//! layer (in `calls`); retries and rate limiting of one HTTP backend live inside that backend.

pub mod chat_format;
pub mod openai;
pub mod sim;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::spec::model::ModelSpec;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What is sent: a list of chat messages, or one raw text for a completions endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    Chat(Vec<Message>),
    Completion(String),
}

impl Prompt {
    /// All text of the prompt, concatenated (for token estimates and the sim model).
    pub fn full_text(&self) -> String {
        match self {
            Prompt::Chat(msgs) => msgs
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            Prompt::Completion(t) => t.clone(),
        }
    }
}

/// One model call, as the provider sees it. `params` holds every sampling parameter that is
/// set (max_tokens, temperature, top_p, top_k, presence_penalty, frequency_penalty, seed,
/// stop, and the model's `extra:` map merged in), in a stable order.
#[derive(Debug, Clone, Serialize)]
pub struct CallRequest {
    pub model: String,
    pub prompt: Prompt,
    pub params: BTreeMap<String, serde_json::Value>,
    pub sample: u32,
}

/// Token usage as reported by the API (or simulated). `estimated` marks figures counted by
/// distill with the model's `tokenizer:` because the server reported none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default)]
    pub reasoning_tokens: u64,
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    pub fn add(&mut self, o: &Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.reasoning_tokens += o.reasoning_tokens;
        self.cached_tokens += o.cached_tokens;
        self.estimated |= o.estimated;
    }
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// One model call's answer. `text` is everything the model returned as content (with any
/// inline `<think>` block kept); `reasoning` is a separate reasoning field when the API
/// returned one (`reasoning_content` / `reasoning`). `usage` is `None` when the server
/// reported none; the call layer estimates it before the response is used or stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallResponse {
    pub text: String,
    #[serde(default)]
    pub reasoning: Option<String>,
    pub finish_reason: String,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub model_id: Option<String>,
    /// The provider batch that answered it (priced at the batch price); none for a direct
    /// call. Not part of any key: a batch answer and a direct one to the same request are
    /// the same entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

/// Things a provider may report while a call runs (streamed text, retries, a server that
/// keeps cutting streams).
pub trait CallObserver: Send + Sync {
    fn delta(&self, _text: &str) {}
    fn retry(&self, _attempt: u32, _reason: &str) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl CallObserver for NoObserver {}

/// Context of a call that is never sent to a remote API nor hashed into a cache key.
pub struct CallContext<'a> {
    /// The problem record (all CSV columns). Only the `sim` provider reads it.
    pub problem: &'a BTreeMap<String, String>,
    pub observer: &'a dyn CallObserver,
}

/// A failed call. `retryable` errors were already retried by the provider as far as its
/// policy allows; the engine never caches an error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub message: String,
    pub retryable: bool,
}

impl CallError {
    pub fn fatal(message: impl Into<String>) -> Self {
        CallError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A model backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Stable name of the backend family for the cache key ("sim", "openai-compatible").
    fn kind(&self) -> &'static str;
    /// Settings of the backend that change what it answers (hashed into cache keys); the
    /// endpoint URL, keys, retries and timeouts are deliberately not part of it.
    fn cache_identity(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Requests per replica of a model served by several (`base_urls:`); empty otherwise.
    fn replicas(&self) -> Vec<openai::pool::ReplicaStats> {
        Vec::new()
    }
    /// The OpenAI-compatible client behind this provider (its batch API), if it is one.
    fn openai(&self) -> Option<&openai::OpenAiProvider> {
        None
    }
    /// Makes one call (one HTTP request, with the backend's own retries).
    async fn call(
        &self,
        req: &CallRequest,
        ctx: &CallContext<'_>,
    ) -> std::result::Result<CallResponse, CallError>;
}

/// One `provider:` a model may name: its default base URL and API-key variable (none for
/// `sim`; `openai-compatible` takes both from the model), and whether it speaks the OpenAI
/// API. The one list from which validation, errors, hints and the client's defaults come.
#[derive(Debug, Clone, Copy)]
pub struct ProviderInfo {
    pub name: &'static str,
    pub base_url: Option<&'static str>,
    pub key_env: Option<&'static str>,
    pub openai_compatible: bool,
}

const fn remote(name: &'static str, url: &'static str, key: &'static str) -> ProviderInfo {
    ProviderInfo {
        name,
        base_url: Some(url),
        key_env: Some(key),
        openai_compatible: true,
    }
}

/// Every `provider:` a model may name.
pub const PROVIDERS: &[ProviderInfo] = &[
    ProviderInfo {
        name: "sim",
        base_url: None,
        key_env: None,
        openai_compatible: false,
    },
    remote("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    remote(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    ),
    remote(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
    ),
    remote(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
    ),
    remote(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    ),
    ProviderInfo {
        name: "openai-compatible",
        base_url: None,
        key_env: None,
        openai_compatible: true,
    },
];

/// The provider of that name.
pub fn provider(name: &str) -> Option<&'static ProviderInfo> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Every provider name, in order.
pub fn provider_names() -> Vec<&'static str> {
    PROVIDERS.iter().map(|p| p.name).collect()
}

/// Builds the provider for one model spec. `need_key`: false when the run will not send
/// (a plan, `--offline`): an API key is needed only to send.
pub fn build_provider(spec: &ModelSpec, need_key: bool) -> Result<Arc<dyn Provider>> {
    match provider(&spec.provider) {
        Some(p) if p.openai_compatible => {
            Ok(Arc::new(openai::OpenAiProvider::new_for(spec, need_key)?))
        }
        Some(_) => Ok(Arc::new(sim::SimProvider::new(spec.sim.clone()))),
        None => anyhow::bail!(
            "provider `{}` is not available (known: {})",
            spec.provider,
            provider_names().join(", ")
        ),
    }
}
