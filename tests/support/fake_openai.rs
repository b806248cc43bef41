//! A faithful fake OpenAI-compatible server for tests and benchmarks: `/v1/chat/completions`
//! and `/v1/completions`, streamed (SSE chunks, usage chunk, `data: [DONE]`) or not, with a
//! scripted or deterministic responder, replay of real traces, continuation splitting, and
//! injectable faults (429 with Retry-After, 500/503/529, dropped connections, invalid JSON,
//! slow answers, an rps limit, quota 429, 401, 400, exhausted x-ratelimit headers) and the
//! broken-but-200 shapes real servers produce (a stream cut by a bare `[DONE]` or a clean EOF
//! without any `finish_reason`, empty `choices`, no usage, an error object in a 200 body, a
//! cut answer relabelled `stop`). `interrupt_on_new_request` mimics llama-cpp-python's
//! default `interrupt_requests=True`: one request is served at a time and a stream in
//! progress is ended with a bare `data: [DONE]` as soon as another request waits.
//! Runs in-process on 127.0.0.1 (port 0 = random). Also used by `examples/fake_openai.rs`.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::post;
use futures_util::StreamExt;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

#[path = "fake_traces.rs"]
pub mod traces;
#[allow(unused_imports)]
pub use traces::{Trace, load_traces, shared_dir, trace_responder};
#[path = "fake_batch.rs"]
pub mod batch;

/// What the fake model answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub content: String,
    pub reasoning: Option<String>,
    pub finish_reason: String,
}

impl Reply {
    pub fn text(content: impl Into<String>) -> Self {
        Reply {
            content: content.into(),
            reasoning: None,
            finish_reason: "stop".into(),
        }
    }
    /// An answer whose reasoning goes in `reasoning_content` (chat endpoint only).
    pub fn reasoned(reasoning: impl Into<String>, content: impl Into<String>) -> Self {
        Reply {
            reasoning: Some(reasoning.into()),
            ..Reply::text(content)
        }
    }
    /// The same answer with another `finish_reason`.
    pub fn finish(mut self, finish_reason: &str) -> Self {
        self.finish_reason = finish_reason.into();
        self
    }
    /// The first half of the answer (reasoning first, then content), as a cut stream has it.
    pub fn cut(&self) -> Reply {
        let r: Vec<char> = self.reasoning.as_deref().unwrap_or("").chars().collect();
        let c: Vec<char> = self.content.chars().collect();
        let total = r.len() + c.len();
        let keep = (total / 2).max(total.min(1));
        Reply {
            reasoning: self
                .reasoning
                .as_ref()
                .map(|_| r[..keep.min(r.len())].iter().collect()),
            content: c[..keep.saturating_sub(r.len()).min(c.len())]
                .iter()
                .collect(),
            finish_reason: self.finish_reason.clone(),
        }
    }
}

pub type Responder = Arc<dyn Fn(&Value) -> Reply + Send + Sync>;

/// One injected fault (or `None` for a normal answer).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    None,
    /// 429 with optional `Retry-After` (seconds) and `retry-after-ms` headers.
    RateLimit {
        retry_after_s: Option<u64>,
        retry_after_ms: Option<u64>,
    },
    ServerError,
    Unavailable,
    Overloaded,
    /// Sends part of the answer, then drops the connection.
    DropMidStream,
    /// 200 with a broken JSON body or SSE chunk.
    InvalidJson,
    /// Waits this long before answering.
    Slow(Duration),
    QuotaExhausted,
    Unauthorized,
    BadRequest,
    /// A normal answer carrying `x-ratelimit-remaining-requests: 0` and this reset value.
    ExhaustedHeaders(String),
    /// Streams the first half of the answer, then `data: [DONE]`, no chunk having a
    /// `finish_reason` and no usage (llama-cpp-python interrupting a stream). Not streamed:
    /// a complete JSON body holding the first half with `finish_reason: null`.
    BareDoneMidStream,
    /// Streams the first half of the answer, then ends the body cleanly: no `[DONE]`, no
    /// `finish_reason`, no usage. Not streamed: the first half of the JSON body, ended cleanly.
    EofMidStream,
    /// HTTP 200 with `"choices": []` (and usage). Streamed: only chunks with empty `choices`
    /// (a usage chunk when asked for), then `[DONE]`.
    EmptyChoices,
    /// A normal complete answer without usage anywhere (no usage chunk even when
    /// `stream_options.include_usage` was asked for; no `usage` field).
    NoUsage,
    /// HTTP 200 whose body is `{"error": {"message", "type": "server_error", "code": 500}}`;
    /// streamed: the first data chunk is that object, then `[DONE]`.
    ErrorBody200,
    /// LiteLLM's shape: the first half of the answer whose last chunk says
    /// `finish_reason: "stop"` (usage and `[DONE]` follow). A client cannot tell it is cut.
    RelabelledStop,
}

impl Fault {
    /// The faults that cut the answer (the client receives its first half).
    pub fn cuts_the_answer(&self) -> bool {
        matches!(
            self,
            Fault::BareDoneMidStream | Fault::EofMidStream | Fault::RelabelledStop
        )
    }
}

#[derive(Clone)]
pub struct FakeConfig {
    pub responder: Responder,
    /// Probability that a request (not scripted) gets a fault drawn from `faults`.
    pub fault_rate: f64,
    pub faults: Vec<Fault>,
    /// Faults for the first requests, in order (before random faults apply).
    pub script: Vec<Fault>,
    pub seed: u64,
    /// Answer 429 beyond this many requests in any one-second window (a sliding window of
    /// the requests it admitted; refused ones do not count).
    pub rps_limit: Option<u32>,
    /// With `rps_limit`, every answer (429s too) carries OpenAI's request headers for that
    /// window: `x-ratelimit-limit-requests` (the limit per minute, 60 × `rps_limit`),
    /// `x-ratelimit-remaining-requests` (left in the window after this request) and
    /// `x-ratelimit-reset-requests` (until the oldest request in the window leaves it, i.e.
    /// the next one is admitted, as `183ms`).
    pub rate_headers: bool,
    /// Delay before every answer.
    pub latency: Duration,
    /// When set, requests must carry `Authorization: Bearer <key>` (else 401).
    pub api_key: Option<String>,
    /// Split each answer into this many parts served one per request, `finish_reason: length`
    /// for all but the last (the prompt of a continuation ends with the parts so far). The
    /// parts cut the answer's reasoning followed by its content, so a first part may hold
    /// only reasoning (`reasoning_content` on the chat endpoint). A request continues after
    /// part `j` when its prompt (all message contents joined, or `prompt`) or, on the chat
    /// endpoint, its last assistant message ends with the content so far and contains the
    /// reasoning so far (e.g. `<think>\n` + reasoning so far).
    pub split_parts: Option<usize>,
    /// Move a leading `<think>…</think>` block of the answer into `reasoning_content` (done
    /// before `split_parts` splits the answer).
    pub reasoning_field: bool,
    /// Characters per streamed chunk.
    pub chunk_chars: usize,
    pub cached_tokens: u64,
    /// Delay before each streamed chunk (zero: the whole stream at once).
    pub chunk_delay: Duration,
    /// llama-cpp-python's `interrupt_requests=True`: requests are served one at a time (one
    /// model), and a stream in progress ends with a bare `data: [DONE]` (no finish_reason)
    /// right after the chunk during which another request started waiting. Needs a
    /// `chunk_delay` to be observable.
    pub interrupt_on_new_request: bool,
    /// What the Batch API (`/v1/files`, `/v1/batches`) does.
    pub batch: batch::BatchScript,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            responder: Arc::new(|body: &Value| echo_reply(&prompt_text(body))),
            fault_rate: 0.0,
            faults: Vec::new(),
            script: Vec::new(),
            seed: 7,
            rps_limit: None,
            rate_headers: false,
            latency: Duration::ZERO,
            api_key: None,
            split_parts: None,
            reasoning_field: false,
            chunk_chars: 16,
            cached_tokens: 0,
            chunk_delay: Duration::ZERO,
            interrupt_on_new_request: false,
            batch: batch::BatchScript::default(),
        }
    }
}

impl FakeConfig {
    pub fn with_responder(mut self, f: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> Self {
        self.responder = Arc::new(f);
        self
    }
    pub fn with_faults(mut self, rate: f64, faults: Vec<Fault>) -> Self {
        self.fault_rate = rate;
        self.faults = faults;
        self
    }
    pub fn with_script(mut self, script: Vec<Fault>) -> Self {
        self.script = script;
        self
    }
}

/// One request as received: its whole JSON body (`model`, `messages` or `prompt`,
/// `max_tokens`, `seed`, `stream`, … exactly as sent).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl Recorded {
    pub fn max_tokens(&self) -> Option<u64> {
        self.body.get("max_tokens").and_then(Value::as_u64)
    }
    pub fn seed(&self) -> Option<i64> {
        self.body.get("seed").and_then(Value::as_i64)
    }
    pub fn stream(&self) -> bool {
        self.body
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    /// The chat messages (empty for a completions request).
    pub fn messages(&self) -> Vec<Value> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
    /// The raw prompt of a completions request.
    pub fn prompt(&self) -> Option<&str> {
        self.body.get("prompt").and_then(Value::as_str)
    }
    /// All text of the prompt ([`prompt_text`]).
    pub fn prompt_text(&self) -> String {
        prompt_text(&self.body)
    }
}

struct Inner {
    cfg: FakeConfig,
    script: Mutex<VecDeque<Fault>>,
    rng: Mutex<ChaCha8Rng>,
    window: Mutex<VecDeque<Instant>>,
    recorded: Mutex<Vec<Recorded>>,
    requests: AtomicU64,
    rate_limited: AtomicU64,
    faults: AtomicU64,
    /// The one model of `interrupt_on_new_request`, and how many requests wait for it.
    model_lock: Arc<tokio::sync::Mutex<()>>,
    waiting: Arc<AtomicU64>,
    interrupted: Arc<AtomicU64>,
    batch: batch::BatchState,
}

/// A running fake server; stopped on `shutdown` or drop.
pub struct FakeServer {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Starts on a random port of 127.0.0.1.
    pub async fn start(cfg: FakeConfig) -> FakeServer {
        Self::start_on(0, cfg).await
    }

    pub async fn start_on(port: u16, cfg: FakeConfig) -> FakeServer {
        let inner = Arc::new(Inner {
            script: Mutex::new(cfg.script.iter().cloned().collect()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.seed)),
            window: Mutex::new(VecDeque::new()),
            recorded: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            model_lock: Arc::new(tokio::sync::Mutex::new(())),
            waiting: Arc::new(AtomicU64::new(0)),
            interrupted: Arc::new(AtomicU64::new(0)),
            batch: batch::BatchState::new(&cfg.batch),
            cfg,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/completions", post(handle))
            .merge(batch::routes())
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("binding the fake server");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeServer { addr, inner, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.recorded.lock().unwrap().clone()
    }
    pub fn request_count(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }
    /// 429s sent (scripted, random and rps-limit ones).
    pub fn rate_limited_count(&self) -> u64 {
        self.inner.rate_limited.load(Ordering::SeqCst)
    }
    pub fn faults_injected(&self) -> u64 {
        self.inner.faults.load(Ordering::SeqCst)
    }
    /// Streams ended early by `interrupt_on_new_request`.
    pub fn interrupted_count(&self) -> u64 {
        self.inner.interrupted.load(Ordering::SeqCst)
    }
    /// The Batch API's counters (uploads, batches created, polls, cancels, lines).
    pub fn batches(&self) -> &batch::BatchState {
        &self.inner.batch
    }
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// All text of a request's prompt: message contents joined by newlines, or `prompt`.
pub fn prompt_text(body: &Value) -> String {
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        return msgs
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
    }
    body.get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The default deterministic answer: a short think block and `\boxed{N}`, N from the prompt.
pub fn echo_reply(prompt: &str) -> Reply {
    let h = prompt.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    Reply::text(format!(
        "<think>\nThe prompt has {} characters. Let me work it out step by step.\n</think>\n\nThe answer is \\boxed{{{}}}.",
        prompt.chars().count(),
        h % 1000
    ))
}

async fn handle(
    State(s): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let chat = uri.path().ends_with("/chat/completions");
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, "invalid_request_error", &format!("invalid JSON: {e}")),
    };
    s.recorded.lock().unwrap().push(Recorded {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.clone(),
        at: Instant::now(),
    });
    if let Some(key) = &s.cfg.api_key {
        let given = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim_start_matches("Bearer ")
            .to_string();
        if &given != key {
            return error(
                401,
                "invalid_request_error",
                &format!("Incorrect API key provided: {given}."),
            );
        }
    }
    // llama-cpp-python serves one request at a time; a waiting request interrupts the stream
    // in progress (see `Pacer`)
    let guard = if s.cfg.interrupt_on_new_request {
        s.waiting.fetch_add(1, Ordering::SeqCst);
        let g = s.model_lock.clone().lock_owned().await;
        s.waiting.fetch_sub(1, Ordering::SeqCst);
        Some(g)
    } else {
        None
    };
    let mut window_headers = None;
    if let Some(limit) = s.cfg.rps_limit {
        let now = Instant::now();
        let mut w = s.window.lock().unwrap();
        while w
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            w.pop_front();
        }
        let refused = w.len() >= limit as usize;
        if !refused {
            w.push_back(now);
        }
        let wait = Duration::from_secs(1).saturating_sub(now.duration_since(w[0]));
        if s.cfg.rate_headers {
            window_headers = Some([
                (60 * limit).to_string(),
                (limit as usize).saturating_sub(w.len()).to_string(),
                format!("{}ms", wait.as_millis()),
            ]);
        }
        drop(w);
        if refused {
            s.rate_limited.fetch_add(1, Ordering::SeqCst);
            let mut r = error(
                429,
                "rate_limit_exceeded",
                "Rate limit reached for requests",
            );
            set(
                &mut r,
                "retry-after-ms",
                &wait.as_millis().max(1).to_string(),
            );
            set(
                &mut r,
                "retry-after",
                &wait.as_secs_f64().ceil().max(1.0).to_string(),
            );
            set_window_headers(&mut r, window_headers.as_ref());
            return r;
        }
    }
    let fault = next_fault(&s);
    if fault != Fault::None {
        s.faults.fetch_add(1, Ordering::SeqCst);
    }
    if !s.cfg.latency.is_zero() {
        tokio::time::sleep(s.cfg.latency).await;
    }
    match &fault {
        Fault::RateLimit {
            retry_after_s,
            retry_after_ms,
        } => {
            s.rate_limited.fetch_add(1, Ordering::SeqCst);
            let mut r = error(
                429,
                "rate_limit_exceeded",
                "Rate limit reached for requests",
            );
            if let Some(v) = retry_after_s {
                set(&mut r, "retry-after", &v.to_string());
            }
            if let Some(v) = retry_after_ms {
                set(&mut r, "retry-after-ms", &v.to_string());
            }
            return r;
        }
        Fault::QuotaExhausted => {
            s.rate_limited.fetch_add(1, Ordering::SeqCst);
            return error(
                429,
                "insufficient_quota",
                "You exceeded your current quota, please check your plan and billing details.",
            );
        }
        Fault::ServerError => {
            return error(
                500,
                "server_error",
                "The server had an error while processing your request.",
            );
        }
        Fault::Unavailable => {
            return error(
                503,
                "server_error",
                "The engine is currently overloaded, please try again later.",
            );
        }
        Fault::Overloaded => return error(529, "overloaded_error", "Overloaded"),
        Fault::Unauthorized => {
            return error(
                401,
                "invalid_request_error",
                "Invalid authentication credentials.",
            );
        }
        Fault::BadRequest => {
            return error(
                400,
                "invalid_request_error",
                "This model's maximum context length is 4096 tokens.",
            );
        }
        Fault::Slow(d) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let mut reply = make_reply(&s.cfg, &body);
    if fault.cuts_the_answer() {
        reply = reply.cut();
        if fault == Fault::RelabelledStop {
            reply.finish_reason = "stop".into();
        }
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    let usage = usage_of(&s.cfg, &body, &reply);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut resp = if stream {
        let include_usage = body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let pacer = Pacer {
            items: VecDeque::new(),
            delay: s.cfg.chunk_delay,
            interrupt: guard.map(|g| Interrupt {
                _guard: g,
                waiting: s.waiting.clone(),
                interrupted: s.interrupted.clone(),
            }),
            cut_next: false,
            ended: false,
        };
        stream_response(
            chat,
            &model,
            &reply,
            include_usage.then_some(usage),
            s.cfg.chunk_chars,
            &fault,
            pacer,
        )
    } else {
        drop(guard);
        json_response(chat, &model, &reply, usage, &fault)
    };
    if let Fault::ExhaustedHeaders(reset) = &fault {
        set(&mut resp, "x-ratelimit-remaining-requests", "0");
        set(&mut resp, "x-ratelimit-reset-requests", reset);
    }
    set_window_headers(&mut resp, window_headers.as_ref());
    resp
}

/// The `x-ratelimit-*-requests` headers of `rate_headers`: limit, remaining, reset.
fn set_window_headers(r: &mut Response, h: Option<&[String; 3]>) {
    if let Some([limit, remaining, reset]) = h {
        set(r, "x-ratelimit-limit-requests", limit);
        set(r, "x-ratelimit-remaining-requests", remaining);
        set(r, "x-ratelimit-reset-requests", reset);
    }
}

/// The usage the fake reports for an answer: characters / 4.
fn usage_of(cfg: &FakeConfig, body: &Value, reply: &Reply) -> Value {
    let prompt_chars = prompt_text(body).chars().count() as u64;
    let reasoning_chars = reply.reasoning.as_ref().map_or(0, |r| r.chars().count()) as u64;
    let completion = (reply.content.chars().count() as u64 + reasoning_chars).div_ceil(4);
    json!({
        "prompt_tokens": prompt_chars.div_ceil(4),
        "completion_tokens": completion,
        "total_tokens": prompt_chars.div_ceil(4) + completion,
        "prompt_tokens_details": {"cached_tokens": cfg.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reasoning_chars.div_ceil(4)},
    })
}

fn next_fault(s: &Inner) -> Fault {
    if let Some(f) = s.script.lock().unwrap().pop_front() {
        return f;
    }
    if s.cfg.faults.is_empty() || s.cfg.fault_rate <= 0.0 {
        return Fault::None;
    }
    let mut rng = s.rng.lock().unwrap();
    if rng.random::<f64>() < s.cfg.fault_rate {
        s.cfg.faults[rng.random_range(0..s.cfg.faults.len())].clone()
    } else {
        Fault::None
    }
}

fn make_reply(cfg: &FakeConfig, body: &Value) -> Reply {
    let mut reply = (cfg.responder)(body);
    if cfg.reasoning_field
        && reply.reasoning.is_none()
        && let Some(rest) = reply.content.trim_start().strip_prefix("<think>")
        && let Some((inner, after)) = rest.split_once("</think>")
    {
        let (inner, after) = (inner.trim().to_string(), after.trim_start().to_string());
        reply.reasoning = Some(inner);
        reply.content = after;
    }
    if let Some(n) = cfg.split_parts.filter(|n| *n > 1) {
        reply = split_reply(&reply, n, body);
    }
    reply
}

/// The part of a split answer a request asks for (see `FakeConfig::split_parts`).
fn split_reply(reply: &Reply, n: usize, body: &Value) -> Reply {
    let r: Vec<char> = reply.reasoning.as_deref().unwrap_or("").chars().collect();
    let c: Vec<char> = reply.content.chars().collect();
    let all: String = r.iter().chain(c.iter()).collect();
    // part boundaries, in chars of reasoning followed by content
    let mut bounds = vec![0usize];
    for p in split_chars(&all, n) {
        bounds.push(bounds.last().unwrap() + p.chars().count());
    }
    let slice = |lo: usize, hi: usize| -> (String, String) {
        let rl = r.len();
        (
            r[lo.min(rl)..hi.min(rl)].iter().collect(),
            c[lo.saturating_sub(rl)..hi.saturating_sub(rl)]
                .iter()
                .collect(),
        )
    };
    let mut haystacks = vec![prompt_text(body)];
    if let Some(last) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        })
        .and_then(|m| m.get("content").and_then(Value::as_str))
    {
        haystacks.push(last.to_string());
    }
    let mut k = 0;
    for j in (1..n).rev() {
        let (rj, cj) = slice(0, bounds[j]);
        if haystacks
            .iter()
            .any(|h| h.ends_with(&cj) && (rj.trim().is_empty() || h.contains(rj.trim())))
        {
            k = j;
            break;
        }
    }
    let (rk, ck) = slice(bounds[k], bounds[k + 1]);
    Reply {
        reasoning: reply.reasoning.as_ref().map(|_| rk),
        content: ck,
        finish_reason: if k + 1 < n {
            "length".into()
        } else {
            reply.finish_reason.clone()
        },
    }
}

/// Splits a text into `n` parts of about equal length, on char boundaries.
pub fn split_chars(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    let mut parts: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
    parts.resize(n, String::new());
    parts
}

/// The parts of a split answer as `(reasoning, content)` pairs, as served one per request
/// (after `reasoning_field` moved a think block out, when it is set).
pub fn split_reply_parts(reply: &Reply, n: usize) -> Vec<(String, String)> {
    let r: Vec<char> = reply.reasoning.as_deref().unwrap_or("").chars().collect();
    let all: String = r
        .iter()
        .copied()
        .chain(reply.content.chars())
        .collect::<String>();
    let mut out = Vec::new();
    let mut at = 0usize;
    for p in split_chars(&all, n) {
        let len = p.chars().count();
        let chars: Vec<char> = p.chars().collect();
        let in_r = r.len().saturating_sub(at).min(len);
        out.push((
            chars[..in_r].iter().collect(),
            chars[in_r..].iter().collect(),
        ));
        at += len;
    }
    out
}

fn chunk(chat: bool, model: &str, delta: Value, text: &str, finish: Option<&str>) -> Value {
    let choice = if chat {
        json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish})
    };
    json!({
        "id": "cmpl-fake", "object": if chat { "chat.completion.chunk" } else { "text_completion" },
        "created": 1_700_000_000u64, "model": model, "choices": [choice],
    })
}

/// The `error` object of [`Fault::ErrorBody200`].
fn error_object() -> Value {
    json!({"error": {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
        "code": 500,
    }})
}

/// One piece of a streamed body.
enum Item {
    /// A frame; `cuttable` when the answer is not complete yet after it (before the
    /// `finish_reason` chunk), so an interrupt there truncates the answer.
    Data(Bytes, bool),
    /// The connection drops (after a moment).
    Drop,
}

/// What `interrupt_on_new_request` needs while a stream is sent: the model, held until the
/// stream ends, and the count of requests waiting for it.
struct Interrupt {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    waiting: Arc<AtomicU64>,
    interrupted: Arc<AtomicU64>,
}

/// Sends a stream's items with `chunk_delay` before each, and ends it with a bare
/// `data: [DONE]` after a cuttable frame during which another request started waiting.
struct Pacer {
    items: VecDeque<Item>,
    delay: Duration,
    interrupt: Option<Interrupt>,
    cut_next: bool,
    ended: bool,
}

impl Pacer {
    fn into_body(self) -> Body {
        Body::from_stream(futures_util::stream::unfold(self, |mut p| async move {
            if p.ended {
                return None;
            }
            if p.cut_next {
                p.ended = true;
                if let Some(i) = &p.interrupt {
                    i.interrupted.fetch_add(1, Ordering::SeqCst);
                }
                return Some((Ok(Bytes::from_static(b"data: [DONE]\n\n")), p));
            }
            let item = p.items.pop_front()?;
            if !p.delay.is_zero() {
                tokio::time::sleep(p.delay).await;
            }
            match item {
                Item::Data(b, cuttable) => {
                    if cuttable
                        && p.interrupt
                            .as_ref()
                            .is_some_and(|i| i.waiting.load(Ordering::SeqCst) > 0)
                    {
                        p.cut_next = true;
                    }
                    Some((Ok::<Bytes, std::io::Error>(b), p))
                }
                Item::Drop => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    p.ended = true;
                    Some((Err(std::io::Error::other("fake connection drop")), p))
                }
            }
        }))
    }
}

fn stream_response(
    chat: bool,
    model: &str,
    reply: &Reply,
    usage: Option<Value>,
    chunk_chars: usize,
    fault: &Fault,
    mut pacer: Pacer,
) -> Response {
    let usage = match fault {
        Fault::NoUsage | Fault::BareDoneMidStream | Fault::EofMidStream => None,
        _ => usage,
    };
    let usage_chunk = |u: Value| {
        json!({"id": "cmpl-fake", "object": if chat { "chat.completion.chunk" } else { "text_completion" }, "created": 1_700_000_000u64, "model": model, "choices": [], "usage": u}).to_string()
    };
    // (frame, cuttable)
    let mut events: Vec<(String, bool)> = Vec::new();
    match fault {
        Fault::EmptyChoices => {
            events.push((
                json!({"id": "cmpl-fake", "object": if chat { "chat.completion.chunk" } else { "text_completion" }, "created": 1_700_000_000u64, "model": model, "choices": []}).to_string(),
                true,
            ));
            if let Some(u) = usage {
                events.push((usage_chunk(u), true));
            }
            events.push(("[DONE]".into(), false));
        }
        Fault::ErrorBody200 => {
            events.push((error_object().to_string(), false));
            events.push(("[DONE]".into(), false));
        }
        _ => {
            let n = chunk_chars.max(1);
            let pieces = |t: &str| -> Vec<String> {
                t.chars()
                    .collect::<Vec<_>>()
                    .chunks(n)
                    .map(|c| c.iter().collect())
                    .collect()
            };
            if chat {
                events.push((
                    chunk(
                        true,
                        model,
                        json!({"role": "assistant", "content": ""}),
                        "",
                        None,
                    )
                    .to_string(),
                    true,
                ));
                for p in pieces(reply.reasoning.as_deref().unwrap_or("")) {
                    events.push((
                        chunk(true, model, json!({"reasoning_content": p}), "", None).to_string(),
                        true,
                    ));
                }
            }
            for p in pieces(&reply.content) {
                events.push((
                    chunk(chat, model, json!({"content": p}), &p, None).to_string(),
                    true,
                ));
            }
            let cut = matches!(fault, Fault::BareDoneMidStream | Fault::EofMidStream);
            if !cut {
                let delta = if chat { json!({}) } else { Value::Null };
                events.push((
                    chunk(chat, model, delta, "", Some(&reply.finish_reason)).to_string(),
                    false,
                ));
                if let Some(u) = usage {
                    events.push((usage_chunk(u), false));
                }
            }
            if *fault != Fault::EofMidStream {
                events.push(("[DONE]".into(), false));
            }
        }
    }
    let mut frames: Vec<Item> = events
        .into_iter()
        .map(|(e, cuttable)| Item::Data(Bytes::from(format!("data: {e}\n\n")), cuttable))
        .collect();
    match fault {
        Fault::DropMidStream => {
            frames.truncate((frames.len() / 2).max(1));
            frames.push(Item::Drop);
        }
        Fault::InvalidJson => {
            let at = (frames.len() / 2).max(1);
            frames.insert(
                at,
                Item::Data(
                    Bytes::from_static(b"data: {\"choices\": [{\"delta\": {\"content\": \"x\n\n"),
                    false,
                ),
            );
        }
        _ => {}
    }
    pacer.items = frames.into();
    sse(pacer.into_body())
}

fn sse(body: Body) -> Response {
    let mut r = Response::new(body);
    set(&mut r, "content-type", "text/event-stream");
    set(&mut r, "cache-control", "no-cache");
    r
}

/// A stream that fails after a moment: the server then drops the connection mid-body.
fn dropped() -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err(std::io::Error::other("fake connection drop"))
    })
}

/// A non-streamed answer's JSON body (`Fault::BareDoneMidStream`: no finish_reason,
/// `EmptyChoices`, `NoUsage` shape it).
fn answer_json(chat: bool, model: &str, reply: &Reply, usage: Value, fault: &Fault) -> Value {
    let finish = match fault {
        Fault::BareDoneMidStream => Value::Null,
        _ => json!(reply.finish_reason),
    };
    let choices = if *fault == Fault::EmptyChoices {
        json!([])
    } else if chat {
        let mut msg = json!({"role": "assistant", "content": reply.content});
        if let Some(r) = &reply.reasoning {
            msg["reasoning_content"] = json!(r);
        }
        json!([{"index": 0, "message": msg, "logprobs": null, "finish_reason": finish}])
    } else {
        json!([{"index": 0, "text": reply.content, "logprobs": null, "finish_reason": finish}])
    };
    let mut v = json!({
        "id": "cmpl-fake", "object": if chat { "chat.completion" } else { "text_completion" },
        "created": 1_700_000_000u64, "model": model, "choices": choices, "usage": usage,
    });
    if *fault == Fault::NoUsage {
        v.as_object_mut().unwrap().remove("usage");
    }
    v
}

fn json_response(chat: bool, model: &str, reply: &Reply, usage: Value, fault: &Fault) -> Response {
    let v = answer_json(chat, model, reply, usage, fault);
    let text = if *fault == Fault::ErrorBody200 {
        error_object().to_string()
    } else {
        v.to_string()
    };
    let mut at = text.len() / 2;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let half = text[..at].to_string();
    let mut r = match fault {
        Fault::InvalidJson | Fault::EofMidStream => Response::new(Body::from(half)),
        Fault::DropMidStream => Response::new(Body::from_stream(
            futures_util::stream::once(async move { Ok(Bytes::from(half)) }).chain(dropped()),
        )),
        _ => Response::new(Body::from(text)),
    };
    set(&mut r, "content-type", "application/json");
    r
}

fn error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": kind}});
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    set(&mut r, "content-type", "application/json");
    r
}

fn set(r: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        r.headers_mut().insert(name, v);
    }
}
