//! The OpenAI-compatible HTTP backend (`openai`, `fireworks`, `together`, `deepseek`,
//! `openrouter`, `openai-compatible`): builds `/chat/completions` or `/completions`
//! requests, streams or reads the answer, retries transient failures and applies the
//! client-side rate limits. Submodules: `keys` (base URLs, API keys), `retry` (policy and
//! header parsing), `limits` (rpm/tpm/adaptive in-flight), `sse` (reading answers).

pub mod batch;
pub mod keys;
pub mod limits;
pub mod pace;
pub mod pool;
pub mod retry;
pub mod sse;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use backon::Retryable as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Map, Value};

use super::chat_format::{self, ChatFormat};
use super::{CallContext, CallError, CallRequest, CallResponse, Prompt, Provider};
use crate::spec::model::{Endpoint, ModelSpec};
use limits::Limits;
use retry::{AttemptError, RetryTiming, classify_status, classify_transport};

pub use keys::openai_compatible;

/// What to do about a server that cuts streams (named in the warning and the final error).
pub const CUT_HINT: &str = "Known server-side fixes: llama-cpp-python interrupts a stream whenever another request arrives unless started with `--interrupt_requests False`; llama.cpp's llama-server needs `--parallel N` slots for N requests at once; behind a proxy (LiteLLM) check the upstream server. Or set `max_in_flight: 1` or `stream: false` on the model.";

/// Request fields this client sets itself; a param of the same name is not sent.
const RESERVED: &[&str] = &["model", "messages", "prompt", "stream"];

/// One OpenAI-compatible endpoint with its pooled HTTP client, retry policy and limits.
pub struct OpenAiProvider {
    provider: String,
    base_url: String,
    /// The request URL of every replica (one unless `base_urls:` names several).
    pool: pool::Pool,
    endpoint: Endpoint,
    chat_format: Option<ChatFormat>,
    stream: bool,
    timeout: Duration,
    max_retries: u32,
    timing: RetryTiming,
    client: reqwest::Client,
    /// Only used to scrub the key out of messages; never printed.
    key: Option<String>,
    key_env: Option<String>,
    limits: Arc<Limits>,
    /// Set once the first cut stream lowered the in-flight limit (one warning per model).
    cut_warned: std::sync::atomic::AtomicBool,
    /// Largest answer text accepted (`max_response_bytes`).
    response_cap: usize,
}

impl fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiProvider")
            .field("provider", &self.provider)
            .field("urls", &self.pool.stats())
            .field("stream", &self.stream)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field(
                "api_key",
                &match (&self.key, &self.key_env) {
                    (Some(_), Some(v)) => format!("<redacted, from {v}>"),
                    (Some(_), None) => "<redacted>".to_string(),
                    (None, _) => "<none>".to_string(),
                },
            )
            .finish_non_exhaustive()
    }
}

/// Checks that a spec's base URL and API key can be resolved (run before a run starts).
/// The message names the missing variable and how to set it.
pub fn check_api_key(spec: &ModelSpec) -> Result<(), String> {
    keys::resolve(spec).map(|_| ())
}

impl OpenAiProvider {
    pub fn new(spec: &ModelSpec) -> anyhow::Result<Self> {
        Self::new_for(spec, true)
    }

    /// With `need_key` false the provider may have no key (it will not send: a plan or an
    /// offline run reproducing tables from a shared cache).
    pub fn new_for(spec: &ModelSpec, need_key: bool) -> anyhow::Result<Self> {
        let resolved = keys::resolve_for(spec, need_key).map_err(anyhow::Error::msg)?;
        let chat_format = match &spec.chat_format {
            None => None,
            Some(name) => Some(chat_format::lookup(name).with_context(|| {
                format!(
                    "model `{}`: unknown chat_format `{name}` (known: {})",
                    spec.model,
                    chat_format::KNOWN.join(", ")
                )
            })?),
        };
        if !(spec.timeout_s.is_finite() && spec.timeout_s > 0.0) {
            anyhow::bail!(
                "model `{}`: timeout_s must be a positive number of seconds, not {}",
                spec.model,
                spec.timeout_s
            );
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = &resolved.key {
            let mut v = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                anyhow::anyhow!(
                    "model `{}`: the API key in {} contains characters not allowed in an HTTP header",
                    spec.model,
                    resolved.key_env.as_deref().unwrap_or("its variable")
                )
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let client = crate::tls::client_builder()
            .default_headers(headers)
            .user_agent(concat!("distill/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_keepalive(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        let path = match spec.endpoint {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        };
        Ok(OpenAiProvider {
            provider: spec.provider.clone(),
            pool: pool::Pool::new(
                resolved
                    .base_urls
                    .iter()
                    .map(|b| format!("{b}{path}"))
                    .collect(),
            ),
            base_url: resolved.base_url,
            endpoint: spec.endpoint,
            chat_format,
            stream: spec.stream,
            timeout: Duration::from_secs_f64(spec.timeout_s),
            max_retries: spec.max_retries,
            timing: RetryTiming::from_env(),
            client,
            key: resolved.key,
            key_env: resolved.key_env,
            limits: Limits::new(spec.rpm, spec.tpm, spec.max_in_flight),
            cut_warned: std::sync::atomic::AtomicBool::new(false),
            response_cap: spec.response_cap(),
        })
    }

    /// Overrides the backoff base delay and cap (tests use a few milliseconds).
    pub fn with_retry_timing(mut self, base: Duration, cap: Duration) -> Self {
        self.timing = RetryTiming {
            base,
            cap: cap.max(base),
        };
        self
    }

    /// The API base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Requests sent, failed and benched per replica (`base_urls:`), for metrics.json.
    pub fn replicas(&self) -> Vec<pool::ReplicaStats> {
        self.pool.stats()
    }

    /// The current adaptive in-flight limit.
    pub fn in_flight_limit(&self) -> usize {
        self.limits.in_flight_limit()
    }

    /// The request rate learned from the server's 429s (None: not paced).
    pub fn paced_rate(&self) -> Option<f64> {
        self.limits.paced_rate()
    }

    /// The JSON body of a request: model, messages or prompt, every set param, stream flags.
    pub fn request_body(&self, req: &CallRequest) -> Result<Value, CallError> {
        let mut body = Map::new();
        body.insert("model".into(), Value::String(req.model.clone()));
        match (self.endpoint, &req.prompt) {
            (Endpoint::Chat, Prompt::Chat(msgs)) => {
                let msgs = serde_json::to_value(msgs)
                    .map_err(|e| CallError::fatal(format!("serializing messages: {e}")))?;
                body.insert("messages".into(), msgs);
            }
            (Endpoint::Chat, Prompt::Completion(text)) => {
                // A raw text on a chat endpoint: the best available is one user message.
                body.insert(
                    "messages".into(),
                    serde_json::json!([{"role": "user", "content": text}]),
                );
            }
            (Endpoint::Completions, Prompt::Completion(text)) => {
                body.insert("prompt".into(), Value::String(text.clone()));
            }
            (Endpoint::Completions, Prompt::Chat(msgs)) => {
                let f = self.chat_format.as_ref().ok_or_else(|| {
                    CallError::fatal(format!(
                        "model `{}` uses endpoint: completions but has no chat_format \
                         (known: {}) to render chat messages",
                        req.model,
                        chat_format::KNOWN.join(", ")
                    ))
                })?;
                body.insert("prompt".into(), Value::String(f.render(msgs)));
            }
        }
        for (k, v) in &req.params {
            let empty_stop =
                k == "stop" && (v.as_array().is_some_and(Vec::is_empty) || v.as_str() == Some(""));
            if v.is_null() || empty_stop || RESERVED.contains(&k.as_str()) {
                continue;
            }
            body.insert(k.clone(), v.clone());
        }
        body.insert("stream".into(), Value::Bool(self.stream));
        if self.stream && !body.contains_key("stream_options") {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
        Ok(Value::Object(body))
    }

    /// Logs what goes on the wire (`--verbose`): URL, endpoint, stream settings, every
    /// parameter and the rendered prompt or messages; the key is never part of it.
    fn log_request(&self, body: &Value) {
        let mut shown = body.clone();
        let prompt = shown
            .as_object_mut()
            .and_then(|m| m.remove("prompt").or_else(|| m.remove("messages")))
            .unwrap_or(Value::Null);
        // the rendered text as the model sees it: a completions prompt whole (chat template
        // and `<think>` included), chat messages as `[role]` then their text
        let prompt = match prompt {
            Value::String(s) => s,
            Value::Array(msgs) => msgs
                .iter()
                .map(|m| {
                    format!(
                        "[{}]\n{}",
                        m["role"].as_str().unwrap_or("?"),
                        m["content"].as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        };
        let line = format!(
            "→ POST {} (endpoint {}, stream {}) {}\n{}",
            self.pool.shown(),
            self.endpoint.as_str(),
            self.stream,
            shown,
            prompt
        );
        tracing::info!(target: "distill::wire", "{}", self.redact(line));
    }

    /// Replaces the API key wherever it occurs in a message, and any 8-character or longer
    /// start of it (a server's echo of the key may have been cut inside it).
    fn redact(&self, s: String) -> String {
        let Some(k) = &self.key else { return s };
        if k.len() < 4 {
            return s;
        }
        let mut s = s.replace(k.as_str(), "[redacted]");
        for n in (8..k.len()).rev() {
            if let Some(prefix) = k.get(..n)
                && s.contains(prefix)
            {
                s = s.replace(prefix, "[redacted]");
            }
        }
        s
    }

    /// One HTTP request and its answer, within the limits and the per-request timeout.
    async fn attempt(
        &self,
        body: &Value,
        est_tokens: u64,
        ctx: &CallContext<'_>,
    ) -> Result<(sse::Answer, Duration), AttemptError> {
        let permit = self.limits.admit(est_tokens).await;
        let replica = self.pool.pick();
        let url = replica.url();
        let started = Instant::now();
        let exchange = async {
            let resp = self.client.post(url).json(body).send().await.map_err(|e| {
                // refused, reset, unreachable: this replica is benched for a while
                replica.failed();
                classify_transport(&e)
            })?;
            self.limits.observe_headers(resp.headers(), permit.sent());
            let status = resp.status();
            tracing::info!(
                target: "distill::wire",
                "← HTTP {} from {} after {} ms (headers)",
                status.as_u16(),
                url,
                started.elapsed().as_millis()
            );
            if !status.is_success() {
                if status.is_server_error() {
                    replica.failed();
                }
                let headers = resp.headers().clone();
                let text = resp.text().await.unwrap_or_default();
                let err = classify_status(status, &headers, &text);
                if err.rate_limited {
                    permit.congested(err.min_delay);
                    if let Some(d) = err.min_delay {
                        self.limits.pause_for(d);
                    }
                }
                return Err(err);
            }
            let is_sse = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if is_sse {
                sse::read_stream(resp, ctx.observer, self.response_cap).await
            } else {
                let text = sse::read_body(resp, self.response_cap).await?;
                sse::parse_body(&text, ctx.observer, self.response_cap)
            }
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| {
                AttemptError::retryable(format!(
                    "timed out after {:.1}s (timeout_s)",
                    self.timeout.as_secs_f64()
                ))
            })?;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                if e.truncated
                    && let Some(n) = permit.cut()
                    && !self.cut_warned.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        "{} model at {}: the server cut a stream (no finish_reason); lowering this model's in-flight limit to {n} (it halves again, down to 1, while cuts go on). {}",
                        self.provider,
                        url,
                        CUT_HINT
                    );
                }
                return Err(e);
            }
        };
        permit.succeeded();
        replica.answered();
        Ok((answer, started.elapsed()))
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn kind(&self) -> &'static str {
        "openai-compatible"
    }

    fn openai(&self) -> Option<&OpenAiProvider> {
        Some(self)
    }

    fn replicas(&self) -> Vec<pool::ReplicaStats> {
        if self.pool.len() > 1 {
            self.pool.stats()
        } else {
            Vec::new()
        }
    }

    /// The endpoint and the chat format change what the model is sent, so they change
    /// its answers; URL, key, streaming, retries and limits do not.
    fn cache_identity(&self) -> Value {
        serde_json::json!({
            "endpoint": self.endpoint.as_str(),
            "chat_format": self.chat_format.as_ref().map(|f| f.name),
        })
    }

    /// Sends the request, retrying transient failures (429 except quota, 5xx, 529,
    /// connection errors, timeouts, truncated streams and bodies) with exponential backoff
    /// and jitter, never sooner than a server's `Retry-After` / `retry-after-ms`.
    /// `latency_ms` is the duration of the successful attempt (queueing and retries excluded).
    async fn call(
        &self,
        req: &CallRequest,
        ctx: &CallContext<'_>,
    ) -> Result<CallResponse, CallError> {
        let body = self.request_body(req)?;
        let prompt_chars = match body.get("prompt") {
            Some(Value::String(p)) => p.chars().count(),
            _ => req.prompt.full_text().chars().count(),
        };
        let max_tokens = req
            .params
            .get("max_tokens")
            .or_else(|| req.params.get("max_completion_tokens"))
            .and_then(Value::as_u64);
        let est = limits::estimate_tokens(prompt_chars, max_tokens);
        if tracing::enabled!(target: "distill::wire", tracing::Level::INFO) {
            self.log_request(&body);
        }
        let retries = AtomicU32::new(0);
        let result = (|| self.attempt(&body, est, ctx))
            .retry(self.timing.builder(self.max_retries))
            .sleep(tokio::time::sleep)
            .when(|e: &AttemptError| e.retryable)
            .adjust(|e: &AttemptError, d: Option<Duration>| {
                d.map(|d| e.min_delay.map_or(d, |m| d.max(m)))
            })
            .notify(|e: &AttemptError, d: Duration| {
                let n = retries.fetch_add(1, Ordering::Relaxed) + 1;
                let reason = self.redact(format!(
                    "{} (retry {n}/{} in {:.2}s)",
                    e.message,
                    self.max_retries,
                    d.as_secs_f64()
                ));
                tracing::debug!(provider = %self.provider, model = %req.model, "{reason}");
                ctx.observer.retry(n, &reason);
            })
            .await;
        match result {
            Ok((ans, latency)) => {
                let finish_reason = ans.finish_reason.unwrap_or_default();
                tracing::info!(
                    target: "distill::wire",
                    "← {} {}: finish_reason {finish_reason}, usage {}, {} characters, latency {} ms",
                    self.provider,
                    req.model,
                    match &ans.usage {
                        Some(u) => format!("{} prompt / {} completion", u.prompt_tokens, u.completion_tokens),
                        None => "not reported".into(),
                    },
                    ans.text.chars().count() + ans.reasoning.as_deref().map_or(0, |r| r.chars().count()),
                    latency.as_millis()
                );
                Ok(CallResponse {
                    text: ans.text,
                    reasoning: ans.reasoning,
                    finish_reason,
                    usage: ans.usage,
                    latency_ms: latency.as_millis() as u64,
                    model_id: ans.model,
                    batch: None,
                })
            }
            Err(e) => {
                let n = retries.load(Ordering::Relaxed);
                let mut tail = if n > 0 {
                    format!(" (after {n} retries)")
                } else {
                    String::new()
                };
                if e.truncated {
                    tail.push_str(". ");
                    tail.push_str(CUT_HINT);
                }
                Err(CallError {
                    message: self.redact(format!(
                        "{} model `{}` at {}: {}{tail}",
                        self.provider,
                        req.model,
                        self.pool.shown(),
                        e.message
                    )),
                    retryable: e.retryable,
                })
            }
        }
    }
}
