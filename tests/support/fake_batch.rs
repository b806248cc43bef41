//! The fake server's Batch API, as OpenAI serves it: `POST /v1/files` (multipart, purpose
//! `batch`), `GET /v1/files/{id}/content`, `POST /v1/batches`, `GET /v1/batches/{id}`,
//! `POST /v1/batches/{id}/cancel`. A batch walks `validating → in_progress → finalizing →
//! completed` one `step` per status (or ends `failed`, `expired`, `cancelled` as scripted or
//! asked); its lines are answered by the server's responder, written to the output file in
//! reverse input order; scripted lines go to the error file (or come back without a
//! `finish_reason`) the first time their `custom_id` is seen. Counters say what was
//! uploaded, created, polled and cancelled, so a test can prove nothing was submitted twice.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Fault, Inner, error, make_reply, set, usage_of};

/// How a batch ends when nobody cancels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchEnd {
    #[default]
    Completed,
    /// Fails validation: no output at all.
    Failed,
    /// Runs out of its window after `in_progress`: half its lines answered, the rest in the
    /// error file with `batch_expired`.
    Expired,
    /// Cancelled by the provider after `in_progress`: half its lines answered.
    Cancelled,
}

/// What the fake Batch API does.
#[derive(Debug, Clone)]
pub struct BatchScript {
    /// Time in each status before the next.
    pub step: Duration,
    /// How the n-th created batch ends (later ones complete).
    pub ends: Vec<BatchEnd>,
    /// This many distinct `custom_id`s get an error line (500 in the error file) the first
    /// time they are submitted.
    pub error_lines: usize,
    /// This many distinct `custom_id`s come back once with `finish_reason: null`.
    pub incomplete_lines: usize,
    /// Print one line per Batch API request (the standalone example server's log).
    pub log: bool,
    /// The first `POST /v1/batches` creates the batch at once but answers only after this
    /// long (a client killed meanwhile never learns the id).
    pub create_delay: Duration,
}

impl Default for BatchScript {
    fn default() -> Self {
        BatchScript {
            step: Duration::from_millis(150),
            ends: Vec::new(),
            error_lines: 0,
            incomplete_lines: 0,
            log: false,
            create_delay: Duration::ZERO,
        }
    }
}

struct Batch {
    id: String,
    input_file_id: String,
    endpoint: String,
    created: Instant,
    created_unix: u64,
    end: BatchEnd,
    cancelled_at: Option<Instant>,
    /// Set once the batch reached its final status and its files exist.
    files: Option<(Option<String>, Option<String>, usize, usize)>,
    lines: usize,
}

/// The Batch API's state inside the fake server.
#[derive(Default)]
pub struct BatchState {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    batches: Mutex<BTreeMap<String, Batch>>,
    ends: Mutex<VecDeque<BatchEnd>>,
    failed_once: Mutex<HashSet<String>>,
    incomplete_once: Mutex<HashSet<String>>,
    next: AtomicU64,
    pub uploads: AtomicU64,
    pub created: AtomicU64,
    pub polls: AtomicU64,
    pub cancels: AtomicU64,
    /// `GET /v1/batches` (list) requests.
    pub lists: AtomicU64,
    /// Lines of every created batch (a `custom_id` submitted twice counts twice).
    pub lines: AtomicU64,
    /// Every `custom_id` submitted, in order.
    pub custom_ids: Mutex<Vec<String>>,
}

impl BatchState {
    pub fn new(script: &BatchScript) -> Self {
        BatchState {
            ends: Mutex::new(script.ends.iter().copied().collect()),
            ..Default::default()
        }
    }
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.next.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

pub(super) fn routes() -> Router<Arc<Inner>> {
    Router::new()
        .route("/v1/files", post(upload))
        .route("/v1/files/{id}/content", get(content))
        .route("/v1/batches", post(create).get(list))
        .route("/v1/batches/{id}", get(status))
        .route("/v1/batches/{id}/cancel", post(cancel))
}

fn log(s: &Inner, line: &str) {
    if s.cfg.batch.log {
        println!("{line}");
    }
}

fn unauthorized(s: &Inner, headers: &HeaderMap) -> Option<Response> {
    let key = s.cfg.api_key.as_ref()?;
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("Bearer ");
    (given != key).then(|| error(401, "invalid_request_error", "Incorrect API key provided."))
}

fn json_ok(v: Value) -> Response {
    let mut r = Response::new(axum::body::Body::from(v.to_string()));
    set(&mut r, "content-type", "application/json");
    r
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The parts of a `multipart/form-data` body, by field name: (file name, bytes).
fn multipart(headers: &HeaderMap, body: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    let ct = headers.get("content-type")?.to_str().ok()?;
    let boundary = ct.split("boundary=").nth(1)?.trim_matches('"');
    let delim = format!("--{boundary}").into_bytes();
    let mut out = BTreeMap::new();
    let mut rest = body;
    let find = |h: &[u8], n: &[u8]| h.windows(n.len()).position(|w| w == n);
    while let Some(at) = find(rest, &delim) {
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let data_start = head_end + 4;
        let next = find(&rest[data_start..], &delim)?;
        let data = &rest[data_start..data_start + next];
        let data = data.strip_suffix(b"\r\n").unwrap_or(data);
        let name = head.split("name=\"").nth(1)?.split('"').next()?.to_string();
        out.insert(name, data.to_vec());
        rest = &rest[data_start..];
    }
    Some(out)
}

async fn upload(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(parts) = multipart(&headers, &body) else {
        return error(400, "invalid_request_error", "expected multipart/form-data");
    };
    if parts.get("purpose").map(|p| p.as_slice()) != Some(b"batch".as_slice()) {
        return error(400, "invalid_request_error", "purpose must be `batch`");
    }
    let Some(file) = parts.get("file") else {
        return error(400, "invalid_request_error", "missing `file`");
    };
    for (n, line) in file.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if serde_json::from_slice::<Value>(line).is_err() {
            return error(
                400,
                "invalid_request_error",
                &format!("line {} is not JSON", n + 1),
            );
        }
    }
    s.batch.uploads.fetch_add(1, Ordering::SeqCst);
    let id = s.batch.id("file");
    let bytes = file.len();
    log(&s, &format!("POST /v1/files -> {id} ({bytes} bytes)"));
    s.batch
        .files
        .lock()
        .unwrap()
        .insert(id.clone(), file.clone());
    json_ok(
        json!({"id": id, "object": "file", "bytes": bytes, "purpose": "batch",
        "filename": "input.jsonl", "created_at": unix_now()}),
    )
}

async fn content(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    match s.batch.files.lock().unwrap().get(&id) {
        Some(b) => Response::new(axum::body::Body::from(b.clone())),
        None => error(
            404,
            "invalid_request_error",
            &format!("No such File object: {id}"),
        ),
    }
}

async fn create(State(s): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "invalid_request_error", "invalid JSON");
    };
    let input = req["input_file_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let endpoint = req["endpoint"].as_str().unwrap_or_default().to_string();
    if !["/v1/chat/completions", "/v1/completions"].contains(&endpoint.as_str()) {
        return error(400, "invalid_request_error", "unsupported endpoint");
    }
    let Some(file) = s.batch.files.lock().unwrap().get(&input).cloned() else {
        return error(404, "invalid_request_error", "No such File object");
    };
    let lines: Vec<Value> = file
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    for l in &lines {
        if l["url"].as_str() != Some(&endpoint) {
            return error(
                400,
                "invalid_request_error",
                "a line's url is not the batch's endpoint",
            );
        }
    }
    {
        let mut ids = s.batch.custom_ids.lock().unwrap();
        ids.extend(
            lines
                .iter()
                .map(|l| l["custom_id"].as_str().unwrap_or("").to_string()),
        );
    }
    s.batch.created.fetch_add(1, Ordering::SeqCst);
    s.batch
        .lines
        .fetch_add(lines.len() as u64, Ordering::SeqCst);
    let end = s.batch.ends.lock().unwrap().pop_front().unwrap_or_default();
    let id = s.batch.id("batch");
    let b = Batch {
        id: id.clone(),
        input_file_id: input,
        endpoint,
        created: Instant::now(),
        created_unix: unix_now(),
        end,
        cancelled_at: None,
        files: None,
        lines: lines.len(),
    };
    let v = view(&b, "validating");
    log(
        &s,
        &format!(
            "POST /v1/batches -> {id} ({} lines; {} batches created so far)",
            b.lines,
            s.batch.created.load(Ordering::SeqCst)
        ),
    );
    s.batch.batches.lock().unwrap().insert(id, b);
    if !s.cfg.batch.create_delay.is_zero() && s.batch.created.load(Ordering::SeqCst) == 1 {
        tokio::time::sleep(s.cfg.batch.create_delay).await;
    }
    json_ok(v)
}

async fn list(State(s): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    s.batch.lists.fetch_add(1, Ordering::SeqCst);
    let mut g = s.batch.batches.lock().unwrap();
    let mut data: Vec<(u64, Value)> = g
        .values_mut()
        .map(|b| {
            let st = advance(&s, b);
            (b.created_unix, view(b, st))
        })
        .collect();
    data.sort_by_key(|d| std::cmp::Reverse(d.0));
    log(&s, &format!("GET /v1/batches -> {} batches", data.len()));
    json_ok(
        json!({"object": "list", "data": data.into_iter().map(|d| d.1).collect::<Vec<_>>(),
        "has_more": false}),
    )
}

fn view(b: &Batch, status: &str) -> Value {
    let (out, err, done, failed) = b.files.clone().unwrap_or((None, None, 0, 0));
    let mut v = json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "input_file_id": b.input_file_id,
        "completion_window": "24h", "status": status, "output_file_id": out, "error_file_id": err,
        "created_at": b.created_unix,
        "request_counts": {"total": b.lines, "completed": done, "failed": failed},
    });
    if status == "failed" {
        v["errors"] = json!({"object": "list", "data": [{"code": "invalid_request",
            "message": "the fake server was told to fail this batch", "line": null}]});
    }
    v
}

/// The status a batch has now, making its files when it reaches a final one.
fn advance(s: &Inner, b: &mut Batch) -> &'static str {
    let step = s.cfg.batch.step.max(Duration::from_millis(1));
    let phase = (b.created.elapsed().as_nanos() / step.as_nanos()) as u32;
    if let Some(at) = b.cancelled_at {
        if at.elapsed() < step {
            return "cancelling";
        }
        finish(s, b, b.lines / 2, "batch_cancelled");
        return "cancelled";
    }
    match (phase, b.end) {
        (0, _) => "validating",
        (_, BatchEnd::Failed) => "failed",
        (1, _) => "in_progress",
        (_, BatchEnd::Expired) => {
            finish(s, b, b.lines / 2, "batch_expired");
            "expired"
        }
        (_, BatchEnd::Cancelled) => {
            finish(s, b, b.lines / 2, "batch_cancelled");
            "cancelled"
        }
        (2, _) => "finalizing",
        _ => {
            finish(s, b, b.lines, "");
            "completed"
        }
    }
}

/// Writes the output and error files of a batch whose first `answered` lines ran (the rest
/// get `why` in the error file), once.
fn finish(s: &Inner, b: &mut Batch, answered: usize, why: &str) {
    if b.files.is_some() {
        return;
    }
    let input = s
        .batch
        .files
        .lock()
        .unwrap()
        .get(&b.input_file_id)
        .cloned()
        .unwrap_or_default();
    let lines: Vec<Value> = input
        .split(|c| *c == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    let chat = b.endpoint.ends_with("/chat/completions");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    for (n, l) in lines.iter().enumerate() {
        let cid = l["custom_id"].as_str().unwrap_or_default().to_string();
        let rid = format!("batch_req_{}_{n}", b.id);
        if n >= answered {
            err.push(json!({"id": rid, "custom_id": cid, "response": null,
                "error": {"code": why, "message": "this request was not run before the batch ended"}}));
            continue;
        }
        let first_seen = |set: &Mutex<HashSet<String>>, limit: usize| {
            let mut g = set.lock().unwrap();
            (g.len() < limit && g.insert(cid.clone())).then_some(())
        };
        if first_seen(&s.batch.failed_once, s.cfg.batch.error_lines).is_some() {
            err.push(json!({"id": rid, "custom_id": cid, "response": {"status_code": 500,
                "request_id": rid, "body": {"error": {"message": "The server had an error processing this line.",
                "type": "server_error"}}}, "error": null}));
            continue;
        }
        let body = &l["body"];
        s.recorded.lock().unwrap().push(super::Recorded {
            path: format!("batch:{}", b.endpoint),
            headers: BTreeMap::new(),
            body: body.clone(),
            at: Instant::now(),
        });
        let reply = make_reply(&s.cfg, body);
        let usage = usage_of(&s.cfg, body, &reply);
        let model = body["model"].as_str().unwrap_or("fake-model");
        let fault = if first_seen(&s.batch.incomplete_once, s.cfg.batch.incomplete_lines).is_some()
        {
            Fault::BareDoneMidStream
        } else {
            Fault::None
        };
        let answer = super::answer_json(chat, model, &reply, usage, &fault);
        out.push(json!({"id": rid, "custom_id": cid,
            "response": {"status_code": 200, "request_id": rid, "body": answer}, "error": null}));
    }
    // the provider writes lines as they finish, not in input order
    out.reverse();
    let mut files = s.batch.files.lock().unwrap();
    let mut save = |lines: &[Value], prefix: &str| -> Option<String> {
        if lines.is_empty() {
            return None;
        }
        let id = s.batch.id(prefix);
        let mut text = String::new();
        for l in lines {
            text.push_str(&l.to_string());
            text.push('\n');
        }
        files.insert(id.clone(), text.into_bytes());
        Some(id)
    };
    let (o, e) = (save(&out, "file-out"), save(&err, "file-err"));
    b.files = Some((o, e, out.len(), err.len()));
}

async fn status(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    s.batch.polls.fetch_add(1, Ordering::SeqCst);
    let mut g = s.batch.batches.lock().unwrap();
    let Some(b) = g.get_mut(&id) else {
        return error(
            404,
            "invalid_request_error",
            &format!("No such Batch: {id}"),
        );
    };
    let st = advance(&s, b);
    log(&s, &format!("GET /v1/batches/{id} -> {st}"));
    json_ok(view(b, st))
}

async fn cancel(
    State(s): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    s.batch.cancels.fetch_add(1, Ordering::SeqCst);
    log(&s, &format!("POST /v1/batches/{id}/cancel"));
    let mut g = s.batch.batches.lock().unwrap();
    let Some(b) = g.get_mut(&id) else {
        return error(
            404,
            "invalid_request_error",
            &format!("No such Batch: {id}"),
        );
    };
    let st = advance(&s, b);
    if ["completed", "failed", "expired", "cancelled"].contains(&st) {
        return json_ok(view(b, st));
    }
    b.cancelled_at = Some(Instant::now());
    json_ok(view(b, "cancelling"))
}
