//! The `models:` section of a pipeline: which backend a named model uses, its sampling
//! parameters, continuation limits, concurrency/rate limits, prices, `sim` settings and the
//! tokenizer that estimates usage a server did not report; the checks of those settings and
//! the warnings they call for. It describes and checks; `llm::build_provider` turns a spec
//! into a working provider.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::LocMap;
use super::{Diag, Node, PipelineSpec};
use crate::calls::tokenizer::Tokenizer;

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
    /// Several replicas of one model (instead of `base_url`): each request goes to the one
    /// with the fewest in flight; a failing one is benched. Not part of the cache key.
    #[serde(default)]
    pub base_urls: Option<Vec<String>>,
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
    /// Largest response text (content plus reasoning) accepted from one call, in bytes
    /// (default 8 MiB): a longer answer is an error, never stored whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_bytes: Option<u64>,
    /// Tokenizer used to estimate usage when the server reports none: `cl100k` (default,
    /// approximate), `o200k`, or a path to a Hugging Face tokenizer.json (relative to the
    /// pipeline file's folder).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Send this model's cache misses through the provider's batch API (`--batch` turns it
    /// on for every OpenAI-compatible model that does not say `batch: false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<bool>,
    /// Lines per batch (default 5000), the quiet time that closes a batch (default 5 s), the
    /// longest pause between status polls (default 60 s), and how many later batches a
    /// failed line is resubmitted in before it is sent directly (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_wait_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_poll_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_retries: Option<u32>,
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
    /// Dollars per million tokens of a batch answer; without them, the list price times
    /// `batch_discount` (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
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

    /// Dollars for this usage answered by a batch.
    pub fn batch_cost(&self, u: &crate::llm::Usage) -> f64 {
        let d = self
            .batch_discount
            .unwrap_or(super::batch::DEFAULT_DISCOUNT);
        let i = self.batch_input_per_m.unwrap_or(self.input_per_m * d);
        let o = self.batch_output_per_m.unwrap_or(self.output_per_m * d);
        (u.prompt_tokens as f64 * i + u.completion_tokens as f64 * o) / 1e6
    }
}

impl ModelSpec {
    /// The cap on one response's text, in bytes.
    pub fn response_cap(&self) -> usize {
        self.max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES) as usize
    }

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

/// The folder that a model's relative `tokenizer:` path is resolved against: the pipeline
/// file's own folder.
pub fn tokenizer_base_dir(pipeline_file: &Path) -> &Path {
    pipeline_file.parent().unwrap_or(Path::new("."))
}

/// Checks every model of a pipeline (providers, chat formats, limits, `sim` settings,
/// tokenizers); `pipeline_file` is the file loaded (relative `tokenizer:` paths start at its
/// folder).
pub(super) fn check_models(
    spec: &PipelineSpec,
    locs: &LocMap,
    pipeline_file: &Path,
    diags: &mut Vec<Diag>,
) {
    for (name, m) in &spec.models {
        let at = |k: &str| locs.find(&format!("models.{name}.{k}"));
        if let Some(t) = &m.tokenizer
            && let Err(e) = Tokenizer::load(Some(t), tokenizer_base_dir(pipeline_file))
        {
            diags.push(
                Diag::at(&at("tokenizer"), format!("model `{name}`: {e:#}")).hint(
                    "`tokenizer:` is cl100k, o200k or the path of a Hugging Face tokenizer.json (relative to the pipeline's folder)",
                ),
            );
        }
        if crate::llm::provider(&m.provider).is_none() {
            diags.push(
                Diag::at(
                    &at("provider"),
                    format!("model `{name}`: unknown provider `{}`", m.provider),
                )
                .hint({
                    let names = crate::llm::provider_names();
                    format!(
                        "{}providers: {}",
                        crate::nodes::params::did_you_mean(&m.provider, names.iter().copied()),
                        names.join(", ")
                    )
                }),
            );
        }
        if m.provider == "openai-compatible" && m.base_url.is_none() && m.base_urls.is_none() {
            diags.push(
                Diag::at(
                    &at("provider"),
                    format!("model `{name}`: provider openai-compatible needs `base_url:`"),
                )
                .hint("e.g. base_url: http://127.0.0.1:8000/v1 (or base_urls: [...] for replicas)"),
            );
        }
        if m.base_url.is_some() && m.base_urls.is_some() {
            diags.push(
                Diag::at(
                    &at("base_urls"),
                    format!("model `{name}`: give `base_url:` (one server) or `base_urls:` (replicas), not both"),
                )
                .hint("base_urls: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]"),
            );
        }
        if let Some(list) = &m.base_urls {
            let bad = list
                .iter()
                .find(|u| !(u.trim().starts_with("http://") || u.trim().starts_with("https://")));
            if list.is_empty() || bad.is_some() {
                diags.push(
                    Diag::at(
                        &at("base_urls"),
                        match bad {
                            Some(u) => format!("model `{name}`: base_urls entry `{u}` must start with http:// or https://"),
                            None => format!("model `{name}`: base_urls is empty"),
                        },
                    )
                    .hint("base_urls: [http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1]"),
                );
            }
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
        super::ranges::check_ranges(name, m, locs, diags);
        super::batch::check(name, m, locs, diags);
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

/// Most continuation calls after the first (a server that always answers `length` costs at
/// most this many calls per node).
pub const MAX_CONTINUATIONS: u32 = 100;

/// Largest `max_tokens` / `max_total_tokens`.
pub const MAX_TOKENS: u64 = 10_000_000;

/// Default cap on one response's text (content plus reasoning), in bytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 << 20;

/// Warnings about how the nodes use the models: `samples: N` (N > 1) with a model at
/// temperature 0 set explicitly (in `params` or `extra`), where every sample will likely get
/// the same answer. The `sim` provider is left out: its answers differ per sample whatever the
/// temperature.
pub(super) fn model_warnings(spec: &PipelineSpec, nodes: &[Node], locs: &LocMap) -> Vec<String> {
    let mut out = Vec::new();
    if spec.samples <= 1 {
        return out;
    }
    let used: BTreeSet<&str> = nodes.iter().filter_map(|n| n.model.as_deref()).collect();
    for name in used {
        let Some(m) = spec.models.get(name) else {
            continue;
        };
        if m.provider == "sim" {
            continue;
        }
        let zero = m
            .param_map()
            .get("temperature")
            .and_then(|t| t.as_f64())
            .is_some_and(|t| t == 0.0);
        if !zero {
            continue;
        }
        let key = if m.extra.contains_key("temperature") {
            "extra.temperature"
        } else {
            "params.temperature"
        };
        let loc = locs.find(&format!("models.{name}.{key}"));
        let at = match loc.line {
            Some(l) => format!("{}:{l}", loc.file),
            None => loc.file,
        };
        out.push(format!(
            "{at}: samples: {} with model `{name}` at temperature 0: every sample will likely get the same answer (pass@k = pass@1); set a temperature > 0",
            spec.samples
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::spec::{Diag, LoadOptions, Pipeline};

    /// Writes a pipeline with `models` (YAML lines under `models:`), `samples` and one `reason`
    /// node per model into a fresh folder, and loads it.
    fn load(
        samples: u32,
        models: &str,
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<Pipeline, Vec<Diag>>) {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let names: Vec<&str> = models
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
            .filter_map(|l| l.trim().split(':').next())
            .collect();
        let nodes: String = names
            .iter()
            .map(|m| format!("  a_{m}: {{kind: reason, model: {m}, prompt: reason/default}}\n"))
            .collect();
        let text = format!(
            "name: t\nproblems: {{path: {}}}\nprompts_dir: {}\nsamples: {samples}\nmodels:\n{models}nodes:\n{nodes}",
            repo.join("data/arithmetic.csv").display(),
            repo.join("prompts").display(),
        );
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).unwrap();
        let r = crate::spec::load(&path, &LoadOptions::default());
        (dir, r)
    }

    const WORD_LEVEL: &str = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
      "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"}}"#;

    #[test]
    fn tokenizer_names_and_paths_are_checked() {
        let (_d, r) = load(
            1,
            "  a: {provider: sim}\n  b: {provider: sim, tokenizer: o200k}\n  c:\n    provider: sim\n    tokenizer: tok/tokenizer.json\n",
            &[("tok/tokenizer.json", WORD_LEVEL)],
        );
        let p = r.unwrap();
        assert_eq!(p.spec.models["a"].tokenizer, None);
        assert_eq!(p.spec.models["b"].tokenizer.as_deref(), Some("o200k"));

        let (d, r) = load(
            1,
            "  a: {provider: sim}\n  b:\n    provider: sim\n    tokenizer: gpt2\n  c:\n    provider: sim\n    tokenizer: tok/missing.json\n  e:\n    provider: sim\n    tokenizer: bad.json\n",
            &[("bad.json", "{\"model\": 3}")],
        );
        let diags = r.unwrap_err();
        assert_eq!(diags.len(), 3, "{diags:?}");
        let find = |m: &str| {
            diags
                .iter()
                .find(|x| x.message.contains(m))
                .unwrap_or_else(|| panic!("no `{m}` in {diags:?}"))
        };
        let b = find("model `b`: unknown tokenizer `gpt2`");
        assert_eq!(b.line, Some(9));
        assert!(b.message.contains("`o200k`"), "{b}");
        let c = find("model `c`: cannot read tokenizer file");
        assert_eq!(c.line, Some(12));
        assert!(
            c.message
                .contains(&d.path().join("tok/missing.json").display().to_string()),
            "{c}"
        );
        let e = find("model `e`");
        assert_eq!(e.line, Some(15));
        assert!(
            e.message
                .contains(&d.path().join("bad.json").display().to_string())
                && e.message
                    .contains("is not a valid Hugging Face tokenizer.json"),
            "{e}"
        );
    }

    #[test]
    fn several_samples_at_temperature_zero_are_warned_about() {
        let models = "  z:\n    provider: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n    params: {temperature: 0}\n  x:\n    provider: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n    extra: {temperature: 0.0}\n  w:\n    provider: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n    params: {temperature: 0.7}\n  u:\n    provider: openai-compatible\n    base_url: http://127.0.0.1:9/v1\n  s: {provider: sim, params: {temperature: 0}}\n";
        let (d, r) = load(4, models, &[]);
        let p = r.unwrap();
        let file = d.path().join("p.yaml").display().to_string();
        assert_eq!(
            p.warnings,
            vec![
                format!(
                    "{file}:13: samples: 4 with model `x` at temperature 0: every sample will likely get the same answer (pass@k = pass@1); set a temperature > 0"
                ),
                format!(
                    "{file}:9: samples: 4 with model `z` at temperature 0: every sample will likely get the same answer (pass@k = pass@1); set a temperature > 0"
                ),
            ]
        );
        let (_d, r) = load(1, models, &[]);
        assert!(r.unwrap().warnings.is_empty());
    }
}
