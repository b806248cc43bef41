//! The complete-answer rule (DESIGN.md): only a real, whole answer reaches a grader, the
//! cache or a report. Providers refuse cut streams and empty choices as they read them
//! (`llm::openai::sse`); this module is the same rule applied to what is stored, so answers
//! cached before the rule existed (a cut stream recorded as `finish_reason: unknown`, an
//! empty reply) are misses when read and are listed by `cache verify`. No format change:
//! paid work that follows the rule stays usable.

use serde_json::Value;

use crate::llm::CallResponse;

/// Why a response or a stored entry is not a complete answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Incomplete {
    /// No choice carried a finish_reason (a cut stream; earlier versions stored `unknown`).
    #[error("no finish_reason: a cut stream, not a whole answer")]
    NoFinishReason,
    /// The stored value is not a response at all.
    #[error("not a readable answer")]
    Empty,
}

fn finish_ok(f: &str) -> bool {
    !f.is_empty() && f != "unknown"
}

/// Checks one call's response.
pub fn response(r: &CallResponse) -> Result<(), Incomplete> {
    if !finish_ok(&r.finish_reason) {
        return Err(Incomplete::NoFinishReason);
    }
    // an empty text with a finish_reason is what the model said (a server's empty choice
    // never gets this far: it has no finish_reason)
    Ok(())
}

/// Checks a node entry's stored outputs (a chain's final outputs).
pub fn node_output(o: &serde_json::Map<String, Value>) -> Result<(), Incomplete> {
    let f = o.get("finish_reason").and_then(Value::as_str).unwrap_or("");
    if !finish_ok(f) {
        return Err(Incomplete::NoFinishReason);
    }
    let steps_ok = o
        .get("finish_reasons")
        .and_then(Value::as_array)
        .is_none_or(|a| a.iter().all(|f| f.as_str().is_some_and(finish_ok)));
    if !steps_ok {
        return Err(Incomplete::NoFinishReason);
    }
    Ok(())
}

/// Checks a stored entry's value by its kind (`call` or `node`; other kinds pass).
pub fn stored(kind: &str, value: &Value) -> Result<(), Incomplete> {
    match kind {
        "call" => match serde_json::from_value::<CallResponse>(value.clone()) {
            Ok(r) => response(&r),
            Err(_) => Err(Incomplete::Empty),
        },
        "node" => match value.get("output").and_then(Value::as_object) {
            Some(o) => node_output(o),
            None => Err(Incomplete::Empty),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resp(text: &str, finish: &str) -> CallResponse {
        CallResponse {
            text: text.into(),
            reasoning: None,
            finish_reason: finish.into(),
            usage: None,
            latency_ms: 0,
            model_id: None,
            batch: None,
        }
    }

    #[test]
    fn cut_and_empty_answers_are_not_answers() {
        assert_eq!(
            response(&resp("The", "unknown")),
            Err(Incomplete::NoFinishReason)
        );
        assert_eq!(response(&resp("The", "")), Err(Incomplete::NoFinishReason));
        assert!(response(&resp("\\boxed{4}", "stop")).is_ok());
        assert!(response(&resp("x", "unreported")).is_ok());
        assert!(
            stored(
                "node",
                &json!({"output": {"finish_reason": "stop", "finish_reasons": ["length", "stop"]}})
            )
            .is_ok()
        );
        assert!(
            stored(
                "node",
                &json!({"output": {"finish_reason": "stop", "finish_reasons": ["unknown", "stop"]}})
            )
            .is_err()
        );
        assert!(stored("call", &json!({"text": "", "finish_reason": "unknown", "usage": {"prompt_tokens": 1, "completion_tokens": 0}})).is_err());
    }
}
