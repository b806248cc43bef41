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

use std::borrow::Cow;

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
        // the usual chunk is read straight into `Chunk`; any other shape (a number where a
        // string goes, an error object) through a JSON tree, with the same rules
        let tree: Value;
        let chunk = match serde_json::from_str::<Chunk<'_>>(data) {
            Ok(c) if c.error.is_none() && c.object.as_deref() != Some("error") => c,
            _ => {
                tree = serde_json::from_str(data).map_err(|e| {
                    AttemptError::retryable(format!(
                        "malformed JSON in stream chunk ({e}): {}",
                        snippet(data)
                    ))
                })?;
                if let Some(err) = tree.get("error").filter(|e| !e.is_null()) {
                    return Err(body_error(err));
                }
                if tree.get("object").and_then(Value::as_str) == Some("error") {
                    return Err(body_error(&tree));
                }
                Chunk::of(&tree)
            }
        };
        apply(&mut ans, &chunk, true, observer);
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
    apply(&mut ans, &Chunk::of(&v), false, observer);
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

/// A chunk (or a whole body) as far as an answer is made of it. Read straight from a
/// stream chunk's text (strings borrowed where they have no escapes), or from a JSON tree
/// by [`Chunk::of`] for any other shape, so both go through one [`apply`].
#[derive(Debug, Default, serde::Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(borrow, default)]
    choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(borrow, default)]
    object: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Choice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow, default)]
    delta: Option<Part<'a>>,
    #[serde(borrow, default)]
    message: Option<Part<'a>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Part<'a> {
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    reasoning: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
}

impl<'a> Chunk<'a> {
    /// The chunk of a JSON tree of any shape: a field of another type counts as absent.
    fn of(v: &'a Value) -> Chunk<'a> {
        let text = |o: &'a Value, k: &str| o.get(k).and_then(Value::as_str).map(Cow::Borrowed);
        let part = |p: &'a Value| Part {
            reasoning_content: text(p, "reasoning_content"),
            reasoning: text(p, "reasoning"),
            content: text(p, "content"),
        };
        Chunk {
            model: text(v, "model"),
            usage: v.get("usage").cloned(),
            choices: v.get("choices").and_then(Value::as_array).map(|cs| {
                cs.iter()
                    .map(|c| Choice {
                        index: Some(c.get("index").and_then(Value::as_u64).unwrap_or(0)),
                        delta: c.get("delta").map(part),
                        message: c.get("message").map(part),
                        text: text(c, "text"),
                        finish_reason: text(c, "finish_reason"),
                    })
                    .collect()
            }),
            error: v.get("error").filter(|e| !e.is_null()).cloned(),
            object: text(v, "object"),
        }
    }
}

/// Adds one chunk (or a whole body) to the answer.
fn apply(ans: &mut Answer, v: &Chunk<'_>, streaming: bool, observer: &dyn CallObserver) {
    if let Some(m) = &v.model {
        ans.model = Some(m.to_string());
    }
    // a usage object without token counts (some proxies send `{}`) is no usage
    if let Some(u) = v.usage.as_ref().filter(|u| {
        u.get("prompt_tokens").is_some_and(Value::is_u64)
            || u.get("completion_tokens").is_some_and(Value::is_u64)
    }) {
        ans.usage = Some(parse_usage(u));
    }
    let Some(choices) = &v.choices else {
        return;
    };
    let Some(choice) = choices.iter().find(|c| c.index.unwrap_or(0) == 0) else {
        return;
    };
    let part = if streaming {
        choice.delta.as_ref()
    } else {
        choice.message.as_ref()
    };
    if let Some(part) = part {
        let reasoning = [&part.reasoning_content, &part.reasoning]
            .into_iter()
            .flatten()
            .find(|r| !r.is_empty());
        if let Some(r) = reasoning {
            observer.delta(r);
            ans.reasoning.get_or_insert_with(String::new).push_str(r);
        }
        if let Some(c) = part.content.as_deref().filter(|c| !c.is_empty()) {
            observer.delta(c);
            ans.text.push_str(c);
        }
    }
    if let Some(t) = choice.text.as_deref().filter(|t| !t.is_empty()) {
        observer.delta(t);
        ans.text.push_str(t);
    }
    if let Some(f) = &choice.finish_reason {
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Quiet;
    impl CallObserver for Quiet {}

    fn answer(chunks: &[&str], typed: bool) -> Answer {
        let mut ans = Answer::default();
        for c in chunks {
            let tree: Value = serde_json::from_str(c).unwrap();
            let chunk = if typed {
                serde_json::from_str::<Chunk<'_>>(c).unwrap()
            } else {
                Chunk::of(&tree)
            };
            apply(&mut ans, &chunk, true, &Quiet);
        }
        ans
    }

    #[test]
    fn a_chunk_read_typed_or_from_a_tree_gives_the_same_answer() {
        let chunks = [
            r#"{"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"th\"ink\n","content":null}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"other choice"}},{"delta":{"reasoning_content":"","reasoning":"r2","content":"A é"}}]}"#,
            r#"{"choices":[{"index":0,"text":"","delta":{"content":"B"},"finish_reason":null}],"usage":null}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":5,"completion_tokens_details":{"reasoning_tokens":2}},"error":null}"#,
        ];
        let (a, b) = (answer(&chunks, true), answer(&chunks, false));
        assert_eq!(a.text, "A éB");
        assert_eq!(a.reasoning.as_deref(), Some("th\"ink\nr2"));
        assert_eq!(a.finish_reason.as_deref(), Some("stop"));
        assert_eq!(a.model.as_deref(), Some("m"));
        assert_eq!(
            a.usage.map(|u| (u.prompt_tokens, u.reasoning_tokens)),
            Some((3, 2))
        );
        assert_eq!(
            (a.text, a.reasoning, a.finish_reason, a.model),
            (b.text, b.reasoning, b.finish_reason, b.model)
        );
    }

    #[test]
    fn odd_shapes_fall_back_to_the_tree() {
        // a number where a string goes does not read typed; the tree reads it as absent
        let odd = r#"{"model":7,"choices":[{"index":"0","delta":{"content":"x"},"finish_reason":"length"}]}"#;
        assert!(serde_json::from_str::<Chunk<'_>>(odd).is_err());
        let tree: Value = serde_json::from_str(odd).unwrap();
        let mut ans = Answer::default();
        apply(&mut ans, &Chunk::of(&tree), true, &Quiet);
        assert_eq!((ans.text.as_str(), ans.model), ("x", None));
        assert_eq!(ans.finish_reason.as_deref(), Some("length"));
    }
}
