//! The call layer's side of batching: `Calls::batched` (a batch model's cache miss waits
//! for its line, resubmitted when it fails, sent directly after `batch_retries` failed
//! batches), the `--max_cost` estimate a line reserves while it waits, and the settings a
//! model gets when batches of an earlier run are pending for it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::Notify;

use super::registry::Registry;
use super::{Got, Queue, QueueState, with_batch};
use crate::cache::Key;
use crate::calls::{Calls, Model, NotSent, Site};
use crate::llm::{CallRequest, CallResponse};
use crate::spec::batch::BatchSettings;

impl Calls {
    /// A cache miss of a batch model: waits for its line's answer (resubmitted in a later
    /// batch when it fails). `Ok(None)`: after `batch_retries` failed batches, send it
    /// directly.
    pub(in crate::calls) async fn batched(
        &self,
        model: &Model,
        key: &Key,
        req: &CallRequest,
        site: &Site<'_>,
    ) -> anyhow::Result<Option<(CallResponse, bool)>> {
        let Some(cfg) = model.batch.clone() else {
            return Ok(None);
        };
        let Some(openai) = model.provider.openai() else {
            return Ok(None);
        };
        let body = openai
            .batch_body(req)
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let est = batch_estimate_micro(model, req);
        let reserved = &self.batches.shared.reserved_micro;
        if let Some(max) = self.max_cost_micro {
            let spent = self.stats.spend_micro_usd.load(Ordering::Relaxed);
            if spent + reserved.load(Ordering::Relaxed) + est > max {
                return Err(NotSent::Budget.into());
            }
        }
        reserved.fetch_add(est, Ordering::Relaxed);
        let _release = Release(reserved, est);
        self.listener().started(site);
        let mut failures = 0u32;
        loop {
            let make = || Queue {
                name: model_name(model),
                provider_model: model.spec.model.clone(),
                api: openai.batch_api(),
                cfg: cfg.clone(),
                state: Mutex::new(QueueState::default()),
                wake: Notify::new(),
            };
            match self
                .batches
                .submit(&model_name(model), make, &key.0, body.clone(), est)
                .await
            {
                Got::Stored(mut r) => {
                    self.redactor.redact_in_place(&mut r.text);
                    if let Some(x) = r.reasoning.as_mut() {
                        self.redactor.redact_in_place(x);
                    }
                    return Ok(Some((r, false)));
                }
                Got::Answer(r, id) => return Ok(Some((with_batch(r, &id), true))),
                Got::NotSent(n) => return Err(n.into()),
                Got::Error(why) => {
                    failures += 1;
                    let why = self.redactor.redact(&why);
                    if failures > cfg.retries {
                        self.listener().retry(
                            site,
                            failures,
                            &format!(
                                "{why}; sending it directly after {failures} failed batch(es)"
                            ),
                        );
                        return Ok(None);
                    }
                    self.listener().retry(
                        site,
                        failures,
                        &format!("{why}; resubmitting it in the next batch"),
                    );
                }
            }
        }
    }
}

fn model_name(model: &Model) -> String {
    model.name.clone()
}

/// Gives back a line's reserved estimate when its wait ends.
struct Release<'a>(&'a AtomicU64, u64);
impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
    }
}

/// A line's cost estimate at the batch price: prompt ≈ characters / 4, completion ≈
/// `max_tokens` (1000 when unset), in micro-dollars.
fn batch_estimate_micro(model: &Model, req: &CallRequest) -> u64 {
    let est = crate::llm::Usage {
        prompt_tokens: crate::llm::sim::approx_tokens(&req.prompt.full_text()),
        completion_tokens: req
            .params
            .get("max_tokens")
            .and_then(Value::as_u64)
            .or(model.spec.params.max_tokens)
            .unwrap_or(1000),
        ..Default::default()
    };
    (model.spec.price.batch_cost(&est) * 1e6).round() as u64
}

/// A model not batched in this run that has batches pending from an earlier one (a run
/// with `--batch` resumed without it): batched with the default settings, so those
/// batches are collected instead of their calls being paid again.
pub(in crate::calls) fn resume_settings(
    name: &str,
    spec: &crate::spec::model::ModelSpec,
    provider: &dyn crate::llm::Provider,
    s: &crate::calls::Settings<'_>,
) -> Option<BatchSettings> {
    if s.mode != crate::calls::Mode::Run {
        return None;
    }
    let api = provider.openai()?.batch_api();
    let pending =
        Registry::new(s.cache.root()).pending(api.base_url(), api.endpoint_path(), &spec.model);
    if pending.is_empty() {
        return None;
    }
    eprintln!(
        "model `{name}`: {} batch(es) submitted by an earlier run are pending: batching this model's calls so they are collected, not paid again",
        pending.len()
    );
    let mut forced = spec.clone();
    forced.batch = Some(true);
    forced.batch_settings(true)
}
