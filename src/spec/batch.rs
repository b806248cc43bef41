//! A model's batch settings (`batch: true`, `batch_size`, `batch_wait_s`, `batch_poll_s`,
//! `batch_retries`), their defaults and range checks, and whether a model goes through its
//! provider's batch API in a run (`--batch` turns it on for every OpenAI-compatible model
//! that does not say `batch: false`). The batching itself is `calls::batch`.

use std::time::Duration;

use super::Diag;
use super::load::LocMap;
use super::model::ModelSpec;

/// Lines per batch unless `batch_size:` says otherwise (OpenAI allows up to 50,000).
pub const DEFAULT_SIZE: usize = 5_000;
/// A batch closes once no new call came for this long.
pub const DEFAULT_WAIT_S: f64 = 5.0;
/// Longest pause between two status polls.
pub const DEFAULT_POLL_S: f64 = 60.0;
/// A failed line is resubmitted in this many later batches, then sent directly.
pub const DEFAULT_RETRIES: u32 = 1;
/// The share of the list price a batch costs when the model gives no batch price.
pub const DEFAULT_DISCOUNT: f64 = 0.5;

/// How one model's calls are batched.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    pub size: usize,
    pub wait: Duration,
    pub poll_min: Duration,
    pub poll_max: Duration,
    pub retries: u32,
}

impl ModelSpec {
    /// The model's batch settings when its calls go through the batch API in a run
    /// (`run_batch`: `--batch` was given).
    pub fn batch_settings(&self, run_batch: bool) -> Option<BatchSettings> {
        let compatible = crate::llm::provider(&self.provider).is_some_and(|p| p.openai_compatible);
        let on = match self.batch {
            Some(b) => b,
            None => run_batch,
        };
        if !(on && compatible) {
            return None;
        }
        let poll_max = Duration::from_secs_f64(self.batch_poll_s.unwrap_or(DEFAULT_POLL_S));
        Some(BatchSettings {
            size: self.batch_size.unwrap_or(DEFAULT_SIZE),
            wait: Duration::from_secs_f64(self.batch_wait_s.unwrap_or(DEFAULT_WAIT_S)),
            poll_min: poll_max.min(crate::calls::batch::FIRST_POLL),
            poll_max,
            retries: self.batch_retries.unwrap_or(DEFAULT_RETRIES),
        })
    }
}

/// Checks one model's batch fields.
pub(super) fn check(name: &str, m: &ModelSpec, locs: &LocMap, diags: &mut Vec<Diag>) {
    let at = |k: &str| locs.find(&format!("models.{name}.{k}"));
    let compatible = crate::llm::provider(&m.provider).is_some_and(|p| p.openai_compatible);
    if m.batch == Some(true) && !compatible && crate::llm::provider(&m.provider).is_some() {
        diags.push(
            Diag::at(
                &at("batch"),
                format!(
                    "model `{name}`: `batch: true` needs a provider with a batch API, not `{}`",
                    m.provider
                ),
            )
            .hint("batch APIs: openai, together and other OpenAI-compatible endpoints that serve /v1/batches"),
        );
    }
    if let Some(n) = m.batch_size
        && !(1..=50_000).contains(&n)
    {
        diags.push(Diag::at(
            &at("batch_size"),
            format!("model `{name}`: `batch_size` must be from 1 to 50000 lines (OpenAI's limit), not {n}"),
        ));
    }
    for (k, v, lo, hi) in [
        ("batch_wait_s", m.batch_wait_s, 0.0, 3_600.0),
        ("batch_poll_s", m.batch_poll_s, 0.01, 3_600.0),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && (lo..=hi).contains(&v))
        {
            diags.push(Diag::at(
                &at(k),
                format!(
                    "model `{name}`: `{k}` must be a number of seconds from {lo} to {hi}, not {v}"
                ),
            ));
        }
    }
    if let Some(r) = m.batch_retries
        && r > 20
    {
        diags.push(Diag::at(
            &at("batch_retries"),
            format!("model `{name}`: `batch_retries` must be from 0 to 20, not {r}"),
        ));
    }
    let p = &m.price;
    for (k, v) in [
        ("batch_input_per_m", p.batch_input_per_m),
        ("batch_output_per_m", p.batch_output_per_m),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && (0.0..=1_000_000.0).contains(&v))
        {
            diags.push(Diag::at(
                &at(&format!("price.{k}")),
                format!("model `{name}`: `price.{k}` must be dollars per million tokens from 0 to 1000000, not {v}"),
            ));
        }
    }
    if let Some(d) = p.batch_discount
        && !(d.is_finite() && (0.0..=1.0).contains(&d))
    {
        diags.push(
            Diag::at(
                &at("price.batch_discount"),
                format!("model `{name}`: `price.batch_discount` must be between 0 and 1, not {d}"),
            )
            .hint("the share of the list price a batch costs: 0.5 is half price"),
        );
    }
}
