//! What distill knows of the original tool's results files, shared by `distill grade`,
//! `distill report`, `distill view` and `--load_initial_reasoning`: they were written by
//! Python's `json.dump`, which may hold the non-finite tokens `NaN`, `Infinity` and
//! `-Infinity` that strict JSON parsers refuse, and they name the ground truth and the
//! model's text with several field names over the tool's versions.

use serde_json::Value;

/// A JSON scalar as text: strings as they are, numbers and booleans printed; null is None.
pub fn text_of(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// A stored verdict: a boolean, `"True"`/`"false"`/`"yes"`/`"1"`…, or 1/0.
pub fn verdict(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_f64().map(|x| x != 0.0),
        _ => None,
    }
}

/// Truth fields the original tool (and its variants) used, in order of preference.
pub const TRUTH_KEYS: &[&str] = &[
    "correct_answer",
    "ground_truth",
    "gold_answer",
    "expected_answer",
    "gold",
    "answer",
    "target",
];
/// Fields holding an original-format record's model output, in order of preference.
pub const TEXT_KEYS: &[&str] = &[
    "reasoning",
    "reasoning_output",
    "text",
    "completion",
    "response",
    "output",
];

/// Parses JSON; on failure retries with Python's non-finite float tokens (`NaN`, `Infinity`,
/// `-Infinity`) outside strings replaced by `null`. The first error is the one reported.
pub fn parse_json(raw: &str) -> Result<Value, serde_json::Error> {
    match serde_json::from_str(raw) {
        Ok(v) => Ok(v),
        Err(e) => match python_nonfinite_to_null(raw) {
            Some(fixed) => serde_json::from_str(&fixed).map_err(|_| e),
            None => Err(e),
        },
    }
}

/// `raw` with `NaN`/`Infinity`/`-Infinity` outside strings replaced by `null`; None when there are none.
pub fn python_nonfinite_to_null(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let (mut in_str, mut escaped, mut changed) = (false, false, false);
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
        } else if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push_str("null");
            rest = &rest[tok.len()..];
            changed = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonfinite_tokens_become_null_outside_strings_only() {
        let raw = r#"{"a": NaN, "b": "NaN \" Infinity", "c": [-Infinity, Infinity, 1]}"#;
        let fixed = python_nonfinite_to_null(raw).unwrap();
        assert_eq!(
            fixed,
            r#"{"a": null, "b": "NaN \" Infinity", "c": [null, null, 1]}"#
        );
        assert!(python_nonfinite_to_null(r#"{"a": "NaN"}"#).is_none());
        let v = parse_json(raw).unwrap();
        assert_eq!(v["b"], "NaN \" Infinity");
        assert!(parse_json("{").is_err());
    }
}
