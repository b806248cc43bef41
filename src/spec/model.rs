//! The `models:` section of a pipeline: which backend a named model uses, its sampling
//! parameters, continuation limits, concurrency/rate limits, prices and `sim` settings.
//! It describes and checks; `llm::build_provider` turns a spec into a working provider.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::load::LocMap;
use super::{Diag, PipelineSpec};
use crate::llm::PROVIDERS;

/// One named model of a pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `sim` (built-in simulated reasoner), `openai`, `fireworks`, `together`, `deepseek`,
    /// `openrouter` or `openai-compatible`.
    pub provider: String,
    /// The provider's model id (for `sim`, any label).
    #[serde(default = "default_model_name")]
    pub model: String,
    /// API base URL; defaults per named provider. Not part of the cache key.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Name of the environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// `chat` (default) or `completions` (raw text with a chat format).
    #[serde(default)]
    pub endpoint: Endpoint,
    /// For `endpoint: completions`: how messages become one text (`deepseek_r1`, `chatml`).
    #[serde(default)]
    pub chat_format: Option<String>,
    /// Stream the answer over SSE (default true).
    #[serde(default = "yes")]
    pub stream: bool,
    #[serde(default)]
    pub params: SamplingParams,
    /// Provider-specific parameters passed through as they are.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub continuation: Continuation,
    /// At most this many calls of this model in flight (below the run's `--concurrency`).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Requests per minute and tokens per minute client-side limits.
    #[serde(default)]
    pub rpm: Option<u32>,
    #[serde(default)]
    pub tpm: Option<u32>,
    /// Dollars per million input / output tokens.
    #[serde(default)]
    pub price: Price,
    /// Keeps this model's cache entries apart from another endpoint's with the same name.
    #[serde(default)]
    pub cache_namespace: Option<String>,
    /// Per-request timeout in seconds and retries (never part of the cache key).
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Settings of the `sim` provider.
    #[serde(default)]
    pub sim: SimSettings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    #[default]
    Chat,
    Completions,
}

impl Endpoint {
    pub fn as_str(&self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Completions => "completions",
        }
    }
}

/// Sampling parameters; only those that are set are sent and hashed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// Continuation of a trace cut by `finish_reason: length`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Continuation {
    #[serde(default)]
    pub max_continuations: u32,
    #[serde(default)]
    pub max_total_tokens: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(default)]
    pub input_per_m: f64,
    #[serde(default)]
    pub output_per_m: f64,
}

/// The simulated reasoner's knobs. Its answers depend only on the request and sample
/// index; latency never changes what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    /// Mean latency per call in milliseconds, and its uniform jitter (±).
    #[serde(default)]
    pub latency_ms: f64,
    #[serde(default)]
    pub jitter_ms: f64,
    /// When set, latency also grows with the output: tokens / tokens_per_second.
    #[serde(default)]
    pub tokens_per_second: Option<f64>,
    /// Probability of a right answer with no earlier summaries in the prompt.
    #[serde(default = "default_base_accuracy")]
    pub base_accuracy: f64,
    /// Added to that probability per earlier summary in the prompt (capped at 0.95).
    #[serde(default = "default_gain")]
    pub gain_per_summary: f64,
    /// Approximate words in a reasoning trace.
    #[serde(default = "default_trace_words")]
    pub trace_words: usize,
    /// Probability that a call fails (for tests of failure handling); 0 by default.
    #[serde(default)]
    pub fail_rate: f64,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            latency_ms: 0.0,
            jitter_ms: 0.0,
            tokens_per_second: None,
            base_accuracy: default_base_accuracy(),
            gain_per_summary: default_gain(),
            trace_words: default_trace_words(),
            fail_rate: 0.0,
        }
    }
}

fn default_model_name() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}
fn default_timeout() -> f64 {
    600.0
}
fn default_retries() -> u32 {
    6
}
fn default_base_accuracy() -> f64 {
    0.35
}
fn default_gain() -> f64 {
    0.12
}
fn default_trace_words() -> usize {
    120
}

impl Price {
    /// Dollars for this usage at this price.
    pub fn cost(&self, u: &crate::llm::Usage) -> f64 {
        (u.prompt_tokens as f64 * self.input_per_m + u.completion_tokens as f64 * self.output_per_m)
            / 1e6
    }
}

impl ModelSpec {
    /// The sampling parameters as the ordered map that is sent and hashed (`extra` merged in).
    pub fn param_map(&self) -> BTreeMap<String, serde_json::Value> {
        let mut map: BTreeMap<String, serde_json::Value> = match serde_json::to_value(&self.params)
        {
            Ok(serde_json::Value::Object(o)) => o.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        map
    }
}

/// Checks every model of a pipeline (providers, chat formats, limits, `sim` settings).
pub(super) fn check_models(spec: &PipelineSpec, locs: &LocMap, diags: &mut Vec<Diag>) {
    for (name, m) in &spec.models {
        let at = |k: &str| locs.find(&format!("models.{name}.{k}"));
        if !PROVIDERS.contains(&m.provider.as_str()) {
            diags.push(
                Diag::at(
                    &at("provider"),
                    format!("model `{name}`: unknown provider `{}`", m.provider),
                )
                .hint(format!("providers: {}", PROVIDERS.join(", "))),
            );
        }
        if m.provider == "openai-compatible" && m.base_url.is_none() {
            diags.push(
                Diag::at(
                    &at("provider"),
                    format!("model `{name}`: provider openai-compatible needs `base_url:`"),
                )
                .hint("e.g. base_url: http://127.0.0.1:8000/v1"),
            );
        }
        if let Some(f) = &m.chat_format
            && crate::llm::chat_format::lookup(f).is_none()
        {
            diags.push(
                Diag::at(
                    &at("chat_format"),
                    format!("model `{name}`: unknown chat format `{f}`"),
                )
                .hint(format!(
                    "formats: {}",
                    crate::llm::chat_format::KNOWN.join(", ")
                )),
            );
        }
        if !(m.timeout_s.is_finite() && m.timeout_s > 0.0 && m.timeout_s <= 86_400.0) {
            diags.push(Diag::at(
                &at("timeout_s"),
                format!(
                    "model `{name}`: `timeout_s` must be a number of seconds between 0 and 86400"
                ),
            ));
        }
        if m.max_in_flight == Some(0) {
            diags.push(Diag::at(
                &at("max_in_flight"),
                "`max_in_flight` must be at least 1",
            ));
        }
        let sim_numbers = [
            ("latency_ms", m.sim.latency_ms),
            ("jitter_ms", m.sim.jitter_ms),
            ("tokens_per_second", m.sim.tokens_per_second.unwrap_or(1.0)),
            ("gain_per_summary", m.sim.gain_per_summary.abs()),
        ];
        for (k, v) in sim_numbers {
            if !(v.is_finite() && (0.0..=3_600_000.0).contains(&v)) {
                diags.push(Diag::at(
                    &at(&format!("sim.{k}")),
                    format!("`sim.{k}` must be a number from 0 to 3,600,000"),
                ));
            }
        }
        for (k, v) in [
            ("base_accuracy", m.sim.base_accuracy),
            ("fail_rate", m.sim.fail_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                diags.push(Diag::at(
                    &at(&format!("sim.{k}")),
                    format!("`sim.{k}` must be between 0 and 1"),
                ));
            }
        }
    }
}
