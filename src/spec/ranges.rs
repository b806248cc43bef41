//! The documented range of every number a model may set (sampling parameters,
//! continuation, limits, prices, the response cap), checked at validation: one table, so
//! the check, its message and the README agree.

use super::Diag;
use super::load::LocMap;
use super::model::{MAX_CONTINUATIONS, MAX_TOKENS, ModelSpec};

/// A number a model may set, with its documented range.
struct Range {
    key: &'static str,
    value: Option<f64>,
    lo: f64,
    hi: f64,
    what: &'static str,
}

/// Every number of a model against its range (README: pipeline format).
pub(super) fn check_ranges(name: &str, m: &ModelSpec, locs: &LocMap, diags: &mut Vec<Diag>) {
    let p = &m.params;
    let f = |v: Option<u64>| v.map(|v| v as f64);
    let i = |v: Option<i64>| v.map(|v| v as f64);
    let ranges = [
        Range {
            key: "params.max_tokens",
            value: f(p.max_tokens),
            lo: 1.0,
            hi: MAX_TOKENS as f64,
            what: "a whole number",
        },
        Range {
            key: "params.temperature",
            value: p.temperature,
            lo: 0.0,
            hi: 2.0,
            what: "a number",
        },
        Range {
            key: "params.top_p",
            value: p.top_p,
            lo: 0.0,
            hi: 1.0,
            what: "a number",
        },
        Range {
            key: "params.top_k",
            value: i(p.top_k),
            lo: -1.0,
            hi: 1e6,
            what: "a whole number (-1 or 0: off)",
        },
        Range {
            key: "params.presence_penalty",
            value: p.presence_penalty,
            lo: -2.0,
            hi: 2.0,
            what: "a number",
        },
        Range {
            key: "params.frequency_penalty",
            value: p.frequency_penalty,
            lo: -2.0,
            hi: 2.0,
            what: "a number",
        },
        Range {
            key: "continuation.max_continuations",
            value: Some(f64::from(m.continuation.max_continuations)),
            lo: 0.0,
            hi: f64::from(MAX_CONTINUATIONS),
            what: "a whole number",
        },
        Range {
            key: "continuation.max_total_tokens",
            value: f(m.continuation.max_total_tokens),
            lo: 1.0,
            hi: MAX_TOKENS as f64,
            what: "a whole number",
        },
        Range {
            key: "max_in_flight",
            value: m.max_in_flight.map(|v| v as f64),
            lo: 1.0,
            hi: 4096.0,
            what: "a whole number",
        },
        Range {
            key: "rpm",
            value: m.rpm.map(f64::from),
            lo: 1.0,
            hi: 1e7,
            what: "a whole number",
        },
        Range {
            key: "tpm",
            value: m.tpm.map(f64::from),
            lo: 1.0,
            hi: 4e9,
            what: "a whole number",
        },
        Range {
            key: "price.input_per_m",
            value: Some(m.price.input_per_m),
            lo: 0.0,
            hi: 1_000_000.0,
            what: "dollars per million tokens",
        },
        Range {
            key: "price.output_per_m",
            value: Some(m.price.output_per_m),
            lo: 0.0,
            hi: 1_000_000.0,
            what: "dollars per million tokens",
        },
        Range {
            key: "sim.trace_words",
            value: Some(m.sim.trace_words as f64),
            lo: 1.0,
            hi: 1e6,
            what: "a whole number",
        },
        Range {
            key: "max_retries",
            value: Some(f64::from(m.max_retries)),
            lo: 0.0,
            hi: 100.0,
            what: "a whole number",
        },
        Range {
            key: "max_response_bytes",
            value: f(m.max_response_bytes),
            lo: 1024.0,
            hi: (1u64 << 30) as f64,
            what: "a number of bytes",
        },
    ];
    for r in ranges {
        let Some(v) = r.value else { continue };
        if !(v.is_finite() && (r.lo..=r.hi).contains(&v)) {
            diags.push(
                Diag::at(
                    &locs.find(&format!("models.{name}.{}", r.key)),
                    format!(
                        "model `{name}`: `{}: {v}` is out of range: it must be {} from {} to {}",
                        r.key, r.what, r.lo, r.hi
                    ),
                )
                .hint("see README: pipeline format (every number has a range)"),
            );
        }
    }
    if m.model.trim().is_empty() {
        diags.push(
            Diag::at(
                &locs.find(&format!("models.{name}.model")),
                format!("model `{name}`: `model:` is empty"),
            )
            .hint("name the provider's model id, e.g. `model: accounts/fireworks/models/qwq-32b`"),
        );
    }
}
