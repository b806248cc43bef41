//! The sampling parameters as sent for one call: a configured `seed` is sample 0's, and
//! sample i > 0 sends a seed hashed from (seed, i), so the k samples of a problem are k
//! distinct draws on servers that honour seeds (vLLM, SGLang) — `seed + i` would make seed
//! 2's sample 0 equal seed 1's sample 1. A continuation step asks for at most the tokens
//! left under `max_total_tokens`. Call keys hash these parameters, not the configured ones.

use std::collections::BTreeMap;

use serde_json::Value;

/// The seed sample `sample` sends when `seed` is configured: `seed` itself for sample 0,
/// else the first 8 bytes of blake3("distill-seed\0{seed}\0{sample}") as a non-negative
/// 31-bit integer (servers take 32-bit seeds).
pub fn sample_seed(seed: i64, sample: u32) -> i64 {
    if sample == 0 {
        return seed;
    }
    let h = blake3::hash(format!("distill-seed\0{seed}\0{sample}").as_bytes());
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (n & 0x7fff_ffff) as i64
}

/// The parameter naming the completion limit (`max_completion_tokens` when set, as the
/// OpenAI reasoning models want, else `max_tokens`).
fn limit_name(p: &BTreeMap<String, Value>) -> &'static str {
    if p.contains_key("max_completion_tokens") {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

/// `base` (the model's configured parameters) as sent by `sample` with `left` completion
/// tokens left of the continuation budget (None: no budget).
pub fn as_sent(
    base: &BTreeMap<String, Value>,
    sample: u32,
    left: Option<u64>,
) -> BTreeMap<String, Value> {
    let mut p = base.clone();
    if sample > 0
        && let Some(seed) = p.get("seed").and_then(Value::as_i64)
    {
        p.insert("seed".into(), Value::from(sample_seed(seed, sample)));
    }
    if let Some(left) = left {
        let name = limit_name(&p);
        let asked = p.get(name).and_then(Value::as_u64);
        if asked.is_none_or(|a| a > left) {
            p.insert(name.into(), Value::from(left.max(1)));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base(v: Value) -> BTreeMap<String, Value> {
        v.as_object().unwrap().clone().into_iter().collect()
    }

    #[test]
    fn samples_get_distinct_seeds_and_sweeps_do_not_overlap() {
        assert_eq!(sample_seed(1, 0), 1);
        let s: Vec<i64> = (0..5).map(|i| sample_seed(1, i)).collect();
        let mut d = s.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5, "{s:?}");
        assert_ne!(sample_seed(1, 1), sample_seed(2, 0));
        assert!(s.iter().all(|x| (0..=i32::MAX as i64).contains(x)));
        let p = as_sent(&base(json!({"seed": 1, "max_tokens": 20})), 2, None);
        assert_eq!(p["seed"], json!(sample_seed(1, 2)));
        let p = as_sent(&base(json!({"max_tokens": 20})), 2, None);
        assert!(!p.contains_key("seed"));
    }

    #[test]
    fn the_last_step_asks_for_what_is_left() {
        let b = base(json!({"max_tokens": 20}));
        assert_eq!(as_sent(&b, 0, Some(50))["max_tokens"], json!(20));
        assert_eq!(as_sent(&b, 0, Some(10))["max_tokens"], json!(10));
        assert_eq!(as_sent(&b, 0, None)["max_tokens"], json!(20));
        let b = base(json!({"max_completion_tokens": 8192}));
        assert_eq!(
            as_sent(&b, 0, Some(100))["max_completion_tokens"],
            json!(100)
        );
        assert_eq!(
            as_sent(&base(json!({})), 0, Some(7))["max_tokens"],
            json!(7)
        );
    }
}
