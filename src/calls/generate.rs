//! `Calls::generate`: one node's model call through both cache levels (a node entry for a
//! chain's final outputs; a call entry per HTTP call, continuation steps included), with
//! continuation on `finish_reason: length` inside `max_continuations` and
//! `max_total_tokens` (each step asks for at most what is left), the gates, single-flight,
//! usage estimates, and the split of the answer into the DESIGN.md output fields.

use std::sync::atomic::Ordering;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::flight::Turn;
use super::text::{continue_prompt, partial_answer, split_reasoning};
use super::{Calls, Mode, Model, NotSent, Output, Site, complete, params};
use crate::cache::{self, Key};
use crate::llm::{CallRequest, CallResponse, Prompt, Usage};

/// What a model-call node's call did, besides its outputs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CallInfo {
    /// Served from a node entry or call entries only, without any call now.
    pub cached: bool,
    /// HTTP calls made now, and calls answered from call entries.
    pub calls: u32,
    pub call_hits: u32,
    /// Usage of every step (cached ones included), and of the calls made now.
    pub usage: Usage,
    pub fresh: Usage,
    /// Keys of the cache entries this node used (for `cache gc`).
    pub keys: Vec<String>,
    /// The part of `usage` and of `fresh` answered by a provider batch (batch-priced).
    #[serde(default, skip_serializing_if = "no_usage")]
    pub batch_usage: Usage,
    #[serde(default, skip_serializing_if = "no_usage")]
    pub batch_fresh: Usage,
}

fn no_usage(u: &Usage) -> bool {
    u.total() == 0
}

/// Dollars for `all` usage of which `batched` was answered by batches (at the batch price).
pub(super) fn priced(price: &crate::spec::model::Price, all: &Usage, batched: &Usage) -> f64 {
    let direct = Usage {
        prompt_tokens: all.prompt_tokens.saturating_sub(batched.prompt_tokens),
        completion_tokens: all
            .completion_tokens
            .saturating_sub(batched.completion_tokens),
        ..Default::default()
    };
    price.cost(&direct) + price.batch_cost(batched)
}

/// A node's outputs and what its call did.
#[derive(Debug, Clone)]
pub struct Generated {
    pub output: Output,
    pub info: CallInfo,
}

/// The stored value of a node entry: the outputs, and the part of their usage a provider
/// batch answered, so a rerun prices the chain as the run that made it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeEntry {
    output: Output,
    #[serde(default, skip_serializing_if = "no_usage")]
    batch_usage: Usage,
}

/// The steps of one node's call so far (continuation steps appended).
#[derive(Default)]
struct Chain {
    text: String,
    reasoning: String,
    finish_reasons: Vec<String>,
    model_id: Option<String>,
    /// The seed the first step sent, when one was configured.
    seed: Option<Value>,
}

impl Chain {
    fn add(&mut self, resp: CallResponse) {
        self.text.push_str(&resp.text);
        if let Some(r) = &resp.reasoning {
            self.reasoning.push_str(r);
        }
        self.model_id = resp.model_id.or(self.model_id.take());
        self.finish_reasons.push(resp.finish_reason);
    }

    fn last_finish(&self) -> &str {
        self.finish_reasons.last().map_or("", String::as_str)
    }

    /// The DESIGN.md output fields (usage and cost are added by the caller).
    fn outputs(self, prompt: &Prompt, round: u32, configured_model: &str) -> Output {
        let (reasoning, answer_text) = split_reasoning(&self.text, Some(&self.reasoning));
        let mut out = Output::new();
        out.insert("prompt".into(), Value::String(prompt.full_text()));
        out.insert("text".into(), Value::String(self.text));
        out.insert("reasoning".into(), Value::String(reasoning));
        out.insert("answer_text".into(), Value::String(answer_text));
        out.insert(
            "finish_reason".into(),
            json!(self.finish_reasons.last().cloned().unwrap_or_default()),
        );
        out.insert("finish_reasons".into(), json!(self.finish_reasons));
        out.insert("round".into(), json!(round));
        out.insert(
            "model".into(),
            json!(
                self.model_id
                    .unwrap_or_else(|| configured_model.to_string())
            ),
        );
        if let Some(s) = self.seed {
            out.insert("seed".into(), s);
        }
        out
    }
}

/// What one step of a chain got.
pub(super) struct Step {
    pub(super) resp: CallResponse,
    pub(super) sent: bool,
}

impl Calls {
    fn model(&self, name: &str) -> Result<&Model> {
        self.models
            .get(name)
            .ok_or_else(|| anyhow!("unknown model `{name}`"))
    }

    /// The node key of a prompt given as its canonical JSON (shared with the keys of the
    /// node's calls). `extra` is hashed into it (kind-specific settings that shape the
    /// output).
    fn node_key_of(
        &self,
        site: &Site<'_>,
        model_name: &str,
        prompt: &[u8],
        extra: &Value,
    ) -> Result<Key> {
        let m = self.model(model_name)?;
        let sample = site.sample + self.sample_offset;
        Ok(m.keys.node(site.node_kind, sample, extra, prompt))
    }

    /// Stores a node's final outputs as its node entry (also used to import earlier reasoning).
    pub fn store_node_entry(&self, key: &Key, output: &Output) -> Result<()> {
        self.store_chain(key, output, Usage::default())
    }

    /// A node entry whose `batch_usage` was answered by provider batches.
    fn store_chain(&self, key: &Key, output: &Output, batch_usage: Usage) -> Result<()> {
        let entry = NodeEntry {
            output: output.clone(),
            batch_usage,
        };
        self.cache
            .put(key, "node", &entry)
            .context("writing a node entry to the cache")
    }

    /// Forgets entries that turned out unusable (an unreadable judge verdict).
    pub fn forget(&self, keys: &[String]) {
        for k in keys {
            self.cache.remove(&Key(k.clone()));
        }
    }

    /// The parameters sent by a step and its call key (`left`: completion tokens left).
    fn step_key(
        keys: &super::keys::KeyBase,
        sample: u32,
        left: Option<u64>,
        prompt_c: &[u8],
    ) -> (std::collections::BTreeMap<String, Value>, Key) {
        let sent_params = params::as_sent(&keys.params, sample, left);
        let key = keys.call(&sent_params, sample, prompt_c);
        (sent_params, key)
    }

    /// Makes a node's model call (with continuation) through both cache levels.
    ///
    /// The first step's call entry is read first: it answers most nodes whole (one call that
    /// the length limit did not cut). A node entry is looked for only when that entry is
    /// missing (reasoning imported from an earlier run, an entry brought by `cache import`) or
    /// was cut (a chain of several steps), so a warm node costs one read, not a miss and a read.
    pub async fn generate(
        &self,
        site: &Site<'_>,
        model_name: &str,
        prompt: Prompt,
        extra: Value,
    ) -> Result<Generated> {
        // the prompt's canonical JSON is written once for the node key and the first call key
        let prompt_c = cache::canonical(&serde_json::to_value(&prompt)?);
        let node_key = self.node_key_of(site, model_name, &prompt_c, &extra)?;
        let model = self.model(model_name)?;
        let spec = &model.spec;
        let mut info = CallInfo {
            keys: vec![node_key.0.clone()],
            ..Default::default()
        };
        let max_total = spec.continuation.max_total_tokens;
        let sample = site.sample + self.sample_offset;
        let mut first = Some(Self::step_key(&model.keys, sample, max_total, &prompt_c));
        let mut first_hit = first.as_ref().and_then(|(_, k)| self.cached(k));
        if first_hit
            .as_ref()
            .is_none_or(|r| r.finish_reason == "length")
        {
            if let Some(e) = self.cache.get_recent::<NodeEntry>(&node_key, "node")
                && complete::node_output(&e.output).is_ok()
            {
                return Ok(self.served_by_node_entry(model, e, info));
            }
            if first_hit.is_none()
                && let Some(rec) = self.imports().and_then(|i| i.lookup(site))
            {
                return self.imported(model, rec, &prompt, site, &node_key, info);
            }
        }
        let mut chain = Chain::default();
        let mut step_prompt = prompt.clone();
        loop {
            let left = max_total.map(|m| m.saturating_sub(info.usage.completion_tokens));
            let (sent_params, call_key) = match first.take() {
                Some(f) => f,
                None => {
                    let c = cache::canonical(&serde_json::to_value(&step_prompt)?);
                    Self::step_key(&model.keys, sample, left, &c)
                }
            };
            if chain.finish_reasons.is_empty() {
                chain.seed = sent_params.get("seed").cloned();
            }
            info.keys.push(call_key.0.clone());
            let req = CallRequest {
                model: spec.model.clone(),
                prompt: step_prompt,
                params: sent_params,
                sample,
            };
            let step = match first_hit.take() {
                Some(resp) => Step { resp, sent: false },
                None => self.step(model, &call_key, &req, site).await?,
            };
            let usage = step.resp.usage.unwrap_or_default();
            if step.sent {
                info.calls += 1;
                info.fresh.add(&usage);
            } else {
                info.call_hits += 1;
            }
            info.usage.add(&usage);
            if step.resp.batch.is_some() {
                info.batch_usage.add(&usage);
                if step.sent {
                    info.batch_fresh.add(&usage);
                }
            }
            chain.add(step.resp);
            let steps = chain.finish_reasons.len() as u32;
            let under_budget = max_total.is_none_or(|m| info.usage.completion_tokens < m);
            if chain.last_finish() != "length"
                || steps > spec.continuation.max_continuations
                || !under_budget
            {
                break;
            }
            let so_far = partial_answer(&chain.reasoning, &chain.text);
            step_prompt = continue_prompt(&prompt, &so_far, spec.endpoint);
        }
        let steps = chain.finish_reasons.len();
        let mut out = chain.outputs(&prompt, site.round, &spec.model);
        out.insert("usage".into(), serde_json::to_value(info.usage)?);
        // A single call's outputs are a pure function of its call entry, so a node entry is
        // written only for a chain of several steps (it saves re-reading every step), and
        // only by a run that may send: a plan or an offline run never writes (a published
        // cache may be read-only).
        if steps > 1
            && self.mode == Mode::Run
            && let Err(e) = self.store_chain(&node_key, &out, info.batch_usage)
        {
            self.cache_write_failed(&e);
        }
        info.cached = info.calls == 0;
        self.record(model, &info);
        // priced now, never cached: a price changed later applies to reruns
        out.insert(
            "cost_usd".into(),
            json!(priced(&spec.price, &info.usage, &info.batch_usage)),
        );
        Ok(Generated { output: out, info })
    }

    /// A node answered by an earlier run's record: written as its node entry (a plan only
    /// counts it), so it is a cache hit from then on.
    fn imported(
        &self,
        model: &Model,
        rec: &super::imports::Imported,
        prompt: &Prompt,
        site: &Site<'_>,
        node_key: &Key,
        mut info: CallInfo,
    ) -> Result<Generated> {
        use super::imports::Imported;
        let Imported::Answer {
            text,
            reasoning,
            finish_reason,
            usage,
        } = rec
        else {
            return Err(NotSent::RecordedError.into());
        };
        let source = self.imports().map_or("", |i| i.source.as_str());
        let chain = Chain {
            text: text.clone(),
            reasoning: reasoning.clone().unwrap_or_default(),
            finish_reasons: vec![finish_reason.clone()],
            model_id: Some(format!("imported:{source}")),
            seed: None,
        };
        let mut out = chain.outputs(prompt, site.round, &model.spec.model);
        info.usage = usage.unwrap_or_default();
        out.insert("usage".into(), serde_json::to_value(info.usage)?);
        if self.mode != Mode::Plan
            && let Err(e) = self.store_node_entry(node_key, &out)
        {
            self.cache_write_failed(&e);
        }
        self.stats.imported.fetch_add(1, Ordering::Relaxed);
        info.cached = true;
        self.record(model, &info);
        out.insert("cost_usd".into(), json!(model.spec.price.cost(&info.usage)));
        Ok(Generated { output: out, info })
    }

    /// A node served whole from its node entry (priced as when it was made: the part a
    /// batch answered at the batch price).
    fn served_by_node_entry(&self, model: &Model, e: NodeEntry, mut info: CallInfo) -> Generated {
        let mut out = e.output;
        info.cached = true;
        info.batch_usage = e.batch_usage;
        if let Some(u) = out
            .get("usage")
            .and_then(|u| serde_json::from_value::<Usage>(u.clone()).ok())
        {
            info.usage = u;
        }
        self.record(model, &info);
        let cost = priced(&model.spec.price, &info.usage, &info.batch_usage);
        out.insert("cost_usd".into(), json!(cost));
        Generated { output: out, info }
    }

    /// A complete call entry for `key`, if the cache holds one. An entry that breaks the
    /// complete-answer rule is a miss.
    fn cached(&self, key: &Key) -> Option<CallResponse> {
        self.cached_with(key, false)
    }

    /// [`Calls::cached`] that sees every entry stored so far, by any process (after a
    /// single-flight wait or lock).
    fn cached_fresh(&self, key: &Key) -> Option<CallResponse> {
        self.cached_with(key, true)
    }

    fn cached_with(&self, key: &Key, fresh: bool) -> Option<CallResponse> {
        let r = if fresh {
            self.cache.get::<CallResponse>(key, "call")?
        } else {
            self.cache.get_recent::<CallResponse>(key, "call")?
        };
        match complete::response(&r) {
            Ok(()) => Some(r),
            Err(why) => {
                tracing::debug!("cache entry {} is not an answer ({why}): a miss", key.0);
                None
            }
        }
    }

    /// Why a miss may not be sent now, if it may not.
    fn gate(&self, model: &Model, req: &CallRequest) -> Result<(), NotSent> {
        match self.mode {
            Mode::Plan => {
                let s = &self.stats;
                s.planned_calls.fetch_add(1, Ordering::Relaxed);
                // estimate: prompt ≈ characters / 4, completion ≈ max_tokens
                let est = Usage {
                    prompt_tokens: crate::llm::sim::approx_tokens(&req.prompt.full_text()),
                    completion_tokens: model.spec.params.max_tokens.unwrap_or(1000),
                    ..Default::default()
                };
                s.planned_tokens.fetch_add(est.total(), Ordering::Relaxed);
                let micro = if model.batch.is_some() {
                    model.spec.price.batch_cost(&est)
                } else {
                    model.spec.price.cost(&est)
                } * 1e6;
                s.planned_cost_micro
                    .fetch_add(micro as u64, Ordering::Relaxed);
                return Err(NotSent::Planned);
            }
            Mode::Offline => return Err(NotSent::OfflineMiss),
            Mode::Run => {}
        }
        if self.stopped() {
            return Err(NotSent::Interrupted);
        }
        if self.over_budget() {
            return Err(NotSent::Budget);
        }
        Ok(())
    }

    /// One step: the call entry, or (after the gates, single-flight and the caps) a call
    /// whose complete answer is stored. An answer that cannot be stored is used all the same.
    async fn step(
        &self,
        model: &Model,
        key: &Key,
        req: &CallRequest,
        site: &Site<'_>,
    ) -> Result<Step> {
        if let Some(resp) = self.cached(key) {
            tracing::trace!("cache hit {}/{}: {}", site.problem_id, site.node_id, key.0);
            return Ok(Step { resp, sent: false });
        }
        tracing::debug!(
            "cache miss {}/{} sample {} round {} (model `{}`): {} [{}]",
            site.problem_id,
            site.node_id,
            req.sample,
            site.round,
            req.model,
            if self.cache.find(key).is_some() {
                "the entry under this key is unreadable or not a complete answer"
            } else {
                "no entry under this key: prompt, parameters, model, sample or cache format differ from every stored call"
            },
            key.0
        );
        if self.mode == Mode::Plan
            && let Ok(mut v) = self.planned.lock()
        {
            v.push(super::PlannedMiss {
                problem_id: site.problem_id.to_string(),
                node_id: site.node_id.to_string(),
                sample: site.sample,
                prompt: req.prompt.full_text(),
                key: key.0.clone(),
            });
        }
        self.gate(model, req)?;
        // a batch model's miss waits for its batch (no lock: batches register their keys);
        // after repeated failed batches it is sent directly below
        if model.batch.is_some()
            && let Some((resp, sent)) = self.batched(model, key, req, site).await?
        {
            if !sent {
                return Ok(Step { resp, sent: false });
            }
            return self.keep(model, key, req, resp);
        }
        // the simulated model costs nothing: other processes may repeat its calls, so it
        // takes no lock file (which would cost more than the call)
        let free = model.spec.provider == "sim";
        let entry = self.cache.entry_path(key);
        let _guard = loop {
            let turn = if free {
                self.flights.turn_in_process(&key.0).await
            } else {
                self.flights.turn(&key.0, &entry).await
            };
            match turn {
                Turn::Lead(g) => break g,
                Turn::Waited => {
                    self.stats.flight_waits.fetch_add(1, Ordering::Relaxed);
                    if let Some(resp) = self.cached_fresh(key) {
                        return Ok(Step { resp, sent: false });
                    }
                    self.gate(model, req)?;
                }
            }
        };
        // another process may have stored it between the miss and the lock
        if _guard.file_locked()
            && let Some(resp) = self.cached_fresh(key)
        {
            return Ok(Step { resp, sent: false });
        }
        let resp = self.send(model, req, site).await?;
        self.keep(model, key, req, resp)
    }
}
