//! A node's cache keys: its node key and the key of each of its calls (DESIGN.md's key
//! material), hashed from the canonical JSON of the model's part that no call changes
//! (provider, backend, endpoint, model, parameters, continuation), written once per model,
//! and the call's own parts (sample, parameters as sent, prompt). The bytes hashed are those
//! of `Key::of` over the whole material object: the test below holds the two equal.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};

use crate::cache::{Key, canonical};
use crate::llm::Provider;
use crate::spec::model::ModelSpec;

/// The canonical JSON of a model's call material around what each call adds. The material's
/// `call` object, its keys in canonical (sorted) order, is
/// `{"backend":…,"endpoint":…,"model":…,"params":P,"provider":…,"sample":N}`.
pub(super) struct KeyBase {
    /// `{"backend":…,"endpoint":…,"model":…,"params":`
    head: Vec<u8>,
    /// `,"provider":…,"sample":`
    tail: Vec<u8>,
    /// The model's parameters (before a call adds its seed or what is left of its budget).
    pub params: BTreeMap<String, Value>,
    /// Canonical JSON of `params`.
    params_c: Vec<u8>,
    /// Canonical JSON of the model's continuation settings.
    continuation: Vec<u8>,
}

impl KeyBase {
    pub(super) fn new(spec: &ModelSpec, provider: &dyn Provider) -> Result<KeyBase> {
        let model = match &spec.cache_namespace {
            Some(ns) => format!("{ns}/{}", spec.model),
            None => spec.model.clone(),
        };
        let mut head = b"{".to_vec();
        let leading = [
            ("backend", provider.cache_identity()),
            ("endpoint", json!(spec.endpoint.as_str())),
            ("model", json!(model)),
        ];
        for (name, v) in leading {
            head.extend_from_slice(format!("\"{name}\":").as_bytes());
            head.extend_from_slice(&canonical(&v));
            head.push(b',');
        }
        head.extend_from_slice(b"\"params\":");
        let mut tail = b",\"provider\":".to_vec();
        tail.extend_from_slice(&canonical(&json!(provider.kind())));
        tail.extend_from_slice(b",\"sample\":");
        let params = spec.param_map();
        Ok(KeyBase {
            head,
            tail,
            params_c: canonical(&json!(params)),
            params,
            continuation: canonical(&serde_json::to_value(&spec.continuation)?),
        })
    }

    /// The node key of a node of `kind` at `sample` with `extra` settings (hashed: kind-
    /// specific settings that shape the output) and its prompt's canonical JSON.
    pub(super) fn node(&self, kind: &str, sample: u32, extra: &Value, prompt: &[u8]) -> Key {
        let sample = sample.to_string();
        Key::of_canonical(&[
            b"{\"call\":",
            &self.head,
            &self.params_c,
            &self.tail,
            sample.as_bytes(),
            b"},\"continuation\":",
            &self.continuation,
            b",\"extra\":",
            &canonical(extra),
            b",\"kind\":",
            &canonical(&json!(kind)),
            b",\"level\":\"node\",\"prompt\":",
            prompt,
            b"}",
        ])
    }

    /// The key of one call: the parameters it sends, its sample and its prompt's canonical
    /// JSON.
    pub(super) fn call(&self, sent: &BTreeMap<String, Value>, sample: u32, prompt: &[u8]) -> Key {
        let sample = sample.to_string();
        Key::of_canonical(&[
            b"{\"call\":",
            &self.head,
            &canonical(&json!(sent)),
            &self.tail,
            sample.as_bytes(),
            b"},\"level\":\"call\",\"prompt\":",
            prompt,
            b"}",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys of the material objects as DESIGN.md describes them, built whole.
    fn whole(spec: &ModelSpec, p: &dyn Provider, sample: u32, sent: &Value) -> (Key, Key) {
        let model = match &spec.cache_namespace {
            Some(ns) => format!("{ns}/{}", spec.model),
            None => spec.model.clone(),
        };
        let prompt = json!({"chat": [{"role": "user", "content": "Solve \"x\" — ü\n"}]});
        let mut call = json!({
            "provider": p.kind(),
            "backend": p.cache_identity(),
            "endpoint": spec.endpoint.as_str(),
            "model": model,
            "params": spec.param_map(),
            "sample": sample,
        });
        let node = Key::of(&json!({
            "level": "node", "kind": "reason", "call": call, "prompt": prompt,
            "continuation": serde_json::to_value(&spec.continuation).unwrap(),
            "extra": {"strategy": "llm", "n": 2},
        }));
        call["params"] = sent.clone();
        let call = Key::of(&json!({"level": "call", "call": call, "prompt": prompt}));
        (node, call)
    }

    #[test]
    fn keys_from_the_base_equal_the_keys_of_the_whole_material() {
        let prompt =
            canonical(&json!({"chat": [{"role": "user", "content": "Solve \"x\" — ü\n"}]}));
        for v in [
            json!({"provider": "sim", "model": "sim-reasoner", "params": {"max_tokens": 100}}),
            json!({"provider": "sim", "model": "m", "cache_namespace": "lab",
                   "params": {"temperature": 0.6, "top_k": 40, "max_tokens": 8192},
                   "sim": {"base_accuracy": 0.4}}),
        ] {
            let spec: ModelSpec = serde_json::from_value(v).unwrap();
            let p = crate::llm::build_provider(&spec, false).unwrap();
            let base = KeyBase::new(&spec, p.as_ref()).unwrap();
            for sample in [0, 7, 12345] {
                let sent = crate::calls::params::as_sent(&base.params, sample, Some(77));
                let (node, call) = whole(&spec, p.as_ref(), sample, &json!(sent));
                let extra = json!({"n": 2, "strategy": "llm"});
                assert_eq!(base.node("reason", sample, &extra, &prompt), node);
                assert_eq!(base.call(&sent, sample, &prompt), call);
            }
        }
    }
}
