//! Reading an OpenAI-compatible answer: a server-sent event stream of chunks (chat
//! `choices[0].delta.{content,reasoning_content,reasoning}`, completions `choices[0].text`,
//! a final usage chunk, `data: [DONE]`) or one JSON body. Broken streams and bodies become
//! retryable [`AttemptError`]s, by the complete-answer rule of DESIGN.md:
//! - a stream that ends (`[DONE]`, EOF, reset) before a choice carried a `finish_reason` is
//!   truncated (llama-cpp-python cuts a stream that way when another request arrives);
//! - a body with no choice, or whose choice has no text, no reasoning and no
//!   `finish_reason`, is no answer; a choice with text but no `finish_reason` is recorded
//!   as `unreported` (a whole body cannot have been cut in transit);
//! - an `error` object (or `"object": "error"`) inside a 200 is an error.
//!
//! Usage is `None` when the server sent none (the call layer estimates it). An answer whose
//! text (content plus reasoning) passes the model's `max_response_bytes`, or whose bytes on
//! the wire pass [`wire_cap`] of it, is an error that is not retried: nothing that large
//! is held or stored.

use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::StreamExt;
use serde_json::Value;

use super::retry::{AttemptError, classify_transport};
use crate::llm::{CallObserver, Usage};

/// What an answer said, gathered from its chunks or its body.
#[derive(Debug, Default)]
pub struct Answer {
    pub text: String,
    pub reasoning: Option<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    pub model: Option<String>,
}

/// The finish reason recorded for a whole (non-streamed) answer whose server named none.
pub const UNREPORTED: &str = "unreported";

/// Bytes on the wire allowed for an answer of at most `cap` bytes of text (JSON framing,
/// escapes and per-chunk envelopes included).
pub fn wire_cap(cap: usize) -> usize {
    cap.saturating_mul(8).saturating_add(1 << 20)
}

/// The error for an answer past the cap.
pub fn too_large(cap: usize, what: &str) -> AttemptError {
    AttemptError::fatal(format!(
        "the answer's {what} is larger than max_response_bytes ({cap} bytes); nothing of it was kept. Lower `params.max_tokens`, or raise the model's `max_response_bytes:`"
    ))
}

/// Why the byte stream of a response stopped.
#[derive(Debug)]
enum Wire {
    Transport(reqwest::Error),
    TooLarge,
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wire::Transport(e) => write!(f, "{e}"),
            Wire::TooLarge => write!(f, "too large"),
        }
    }
}

/// Reads a non-streamed body of at most `wire_cap(cap)` bytes.
pub async fn read_body(mut resp: reqwest::Response, cap: usize) -> Result<String, AttemptError> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| classify_transport(&e))? {
        if buf.len() + chunk.len() > wire_cap(cap) {
            return Err(too_large(cap, "body"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads an SSE response to its end. Every content or reasoning piece goes to `observer`.
pub async fn read_stream(
    resp: reqwest::Response,
    observer: &dyn CallObserver,
    cap: usize,
) -> Result<Answer, AttemptError> {
    let mut seen = 0usize;
    let limit = wire_cap(cap);
    let bytes = resp.bytes_stream().map(move |c| match c {
        Err(e) => Err(Wire::Transport(e)),
        Ok(b) => {
            seen += b.len();
            if seen > limit {
                Err(Wire::TooLarge)
            } else {
                Ok(b)
            }
        }
    });
    let mut events = bytes.eventsource();
    let mut ans = Answer::default();
    let mut done = false;
    while let Some(ev) = events.next().await {
        let ev = ev.map_err(|e| match e {
            EventStreamError::Transport(Wire::Transport(t)) => classify_transport(&t),
            EventStreamError::Transport(Wire::TooLarge) => too_large(cap, "stream"),
            other => AttemptError::retryable(format!("malformed event stream: {other}")),
        })?;
        let data = ev.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            AttemptError::retryable(format!(
                "malformed JSON in stream chunk ({e}): {}",
                snippet(data)
            ))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(body_error(err));
        }
        if v.get("object").and_then(Value::as_str) == Some("error") {
            return Err(body_error(&v));
        }
        apply(&mut ans, &v, true, observer);
        if ans.text.len() + ans.reasoning.as_ref().map_or(0, String::len) > cap {
            return Err(too_large(cap, "text"));
        }
    }
    if ans.finish_reason.is_none() {
        let how = if done {
            "`data: [DONE]`"
        } else {
            "end of body"
        };
        let got =
            ans.text.chars().count() + ans.reasoning.as_deref().map_or(0, |r| r.chars().count());
        return Err(AttemptError::truncated(format!(
            "stream ended ({how}) after {got} characters without a finish_reason: the server cut the answer"
        )));
    }
    Ok(ans)
}

/// Parses a non-streamed JSON body. The whole content and reasoning go to `observer` once.
pub fn parse_body(
    body: &str,
    observer: &dyn CallObserver,
    cap: usize,
) -> Result<Answer, AttemptError> {
    let v: Value = serde_json::from_str(body).map_err(|e| {
        AttemptError::retryable(format!(
            "malformed or truncated JSON body ({e}): {}",
            snippet(body)
        ))
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(body_error(err));
    }
    if v.get("object").and_then(Value::as_str) == Some("error") {
        return Err(body_error(&v));
    }
    let choices = v.get("choices").and_then(Value::as_array);
    if choices.is_none_or(|c| c.is_empty()) {
        return Err(AttemptError::retryable(format!(
            "HTTP 200 without an answer (no choice in `choices`): {}",
            snippet(body)
        )));
    }
    let mut ans = Answer::default();
    apply(&mut ans, &v, false, observer);
    if ans.text.len() + ans.reasoning.as_ref().map_or(0, String::len) > cap {
        return Err(too_large(cap, "text"));
    }
    if ans.finish_reason.is_none() {
        if ans.text.is_empty() && ans.reasoning.as_deref().unwrap_or("").is_empty() {
            return Err(AttemptError::retryable(format!(
                "HTTP 200 whose choice has no text, no reasoning and no finish_reason: {}",
                snippet(body)
            )));
        }
        ans.finish_reason = Some(UNREPORTED.into());
    }
    Ok(ans)
}

/// Adds one chunk (or a whole body) to the answer.
fn apply(ans: &mut Answer, v: &Value, streaming: bool, observer: &dyn CallObserver) {
    if let Some(m) = v.get("model").and_then(Value::as_str) {
        ans.model = Some(m.to_string());
    }
    // a usage object without token counts (some proxies send `{}`) is no usage
    if let Some(u) = v.get("usage").filter(|u| {
        u.get("prompt_tokens").is_some_and(Value::is_u64)
            || u.get("completion_tokens").is_some_and(Value::is_u64)
    }) {
        ans.usage = Some(parse_usage(u));
    }
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return;
    };
    let choice = choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
    let Some(choice) = choice else { return };
    let part = if streaming {
        choice.get("delta")
    } else {
        choice.get("message")
    };
    if let Some(part) = part {
        for field in ["reasoning_content", "reasoning"] {
            if let Some(r) = part.get(field).and_then(Value::as_str)
                && !r.is_empty()
            {
                observer.delta(r);
                ans.reasoning.get_or_insert_with(String::new).push_str(r);
                break;
            }
        }
        if let Some(c) = part.get("content").and_then(Value::as_str)
            && !c.is_empty()
        {
            observer.delta(c);
            ans.text.push_str(c);
        }
    }
    if let Some(t) = choice.get("text").and_then(Value::as_str)
        && !t.is_empty()
    {
        observer.delta(t);
        ans.text.push_str(t);
    }
    if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
        ans.finish_reason = Some(f.to_string());
    }
}

/// `usage` of a response: prompt/completion tokens and the reasoning / cached details.
pub fn parse_usage(u: &Value) -> Usage {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n(u.get("prompt_tokens")),
        completion_tokens: n(u.get("completion_tokens")),
        reasoning_tokens: n(u.pointer("/completion_tokens_details/reasoning_tokens"))
            .max(n(u.get("reasoning_tokens"))),
        cached_tokens: n(u.pointer("/prompt_tokens_details/cached_tokens"))
            .max(n(u.get("prompt_cache_hit_tokens"))),
        estimated: false,
    }
}

/// An `error` object inside a 200 answer (some servers report overload mid-stream).
fn body_error(err: &Value) -> AttemptError {
    let msg = err
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| err.as_str().map(str::to_string))
        .unwrap_or_else(|| err.to_string());
    let kind = format!(
        "{} {}",
        err.get("type").and_then(Value::as_str).unwrap_or(""),
        err.get("code").map(|c| c.to_string()).unwrap_or_default()
    )
    .to_ascii_lowercase();
    let fatal = [
        "invalid_request",
        "authentication",
        "permission",
        "not_found",
        "insufficient_quota",
    ]
    .iter()
    .any(|k| kind.contains(k));
    let message = format!("error in response: {msg}");
    if fatal {
        AttemptError::fatal(message)
    } else {
        AttemptError::retryable(message)
    }
}

fn snippet(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}
