//! The call path under the node kinds: everything between "this node wants this model to
//! answer this prompt" and a provider's HTTP request. It owns the two cache levels, the
//! complete-answer rule (`complete`), single-flight per cache directory (`flight`), the
//! gates that keep a call from being sent (plan, offline, interrupt, budget) as the typed
//! [`NotSent`], the run's concurrency caps, usage estimates (`tokenizer`), key redaction
//! (`redact`), the counters, and what the run is told while calls go on (a [`Listener`]).
//! Node kinds get a [`Calls`] and a [`Site`]; like a solver handed `generate`, they know
//! nothing of the scheduler. Nothing here imports `exec` or `nodes`.

mod answer;
pub mod batch;
pub mod complete;
pub mod flight;
mod generate;
pub mod imports;
mod keys;
mod params;
pub mod redact;
mod text;
pub mod tokenizer;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;
use tokio::sync::Semaphore;

pub use generate::{CallInfo, Generated};
pub use params::sample_seed;
pub use text::{chat, partial_answer, split_reasoning};

use crate::cache::Cache;
use crate::llm::{CallRequest, CallResponse, Provider};
use crate::spec::model::ModelSpec;

/// Node outputs, as the node kinds see them.
pub type Output = serde_json::Map<String, serde_json::Value>;

/// Where a call comes from: what events, the dashboard and the `sim` model need. Never sent
/// to a remote API, never part of a cache key.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub problem_id: &'a str,
    /// The problem record (all CSV columns); only the `sim` provider reads it.
    pub problem: &'a BTreeMap<String, String>,
    pub node_id: &'a str,
    pub node_kind: &'a str,
    pub round: u32,
    pub sample: u32,
}

/// What the run is told while calls go on (implemented by the scheduler's side).
pub trait Listener: Send + Sync {
    /// A call is really being sent (not served by the cache).
    fn started(&self, _site: &Site<'_>) {}
    /// A provider retries a failed attempt.
    fn retry(&self, _site: &Site<'_>, _attempt: u32, _reason: &str) {}
    /// A streamed piece of text.
    fn delta(&self, _site: &Site<'_>, _text: &str) {}
}

struct Silent;
impl Listener for Silent {}

/// Why a call was not sent. The scheduler reads it by type, never by message; records
/// carry it as the `reason` of a `not_run` node (`planned`, `interrupted`, `budget`,
/// `offline_miss`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NotSent {
    #[error("planned: this call is not in the cache")]
    Planned,
    #[error("interrupted before this call was sent")]
    Interrupted,
    #[error("not sent: this run's spend reached --max_cost")]
    Budget,
    #[error(
        "offline: no cache entry for this call (run without --offline / ENABLE_API_CALLS=0 to make it)"
    )]
    OfflineMiss,
    /// Not a call distill held back: the record imported from an earlier run (the original
    /// tool's) was written there as an error, so there is no answer to count.
    #[error("recorded as an error by the run it was read from")]
    RecordedError,
    /// Submitted in a provider batch that is still running: a rerun or `--resume` picks
    /// the batch up instead of submitting it again.
    #[error(
        "in a provider batch still running: rerun or --resume the run to collect it (nothing is submitted twice)"
    )]
    BatchPending,
}

impl NotSent {
    /// The reason's name in records (`not_run` reasons of DESIGN.md).
    pub fn reason(&self) -> &'static str {
        match self {
            NotSent::Planned => "planned",
            NotSent::Interrupted => "interrupted",
            NotSent::Budget => "budget",
            NotSent::OfflineMiss => "offline_miss",
            NotSent::RecordedError => "recorded_error",
            NotSent::BatchPending => "batch_pending",
        }
    }
}

/// What the run may do with a cache miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Send it.
    Run,
    /// Never send: a miss is `NotSent::OfflineMiss`.
    Offline,
    /// Count it (`pipeline plan`): a miss is `NotSent::Planned`.
    Plan,
}

/// Counters of one run (atomics: calls run concurrently).
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub call_hits: AtomicU64,
    pub node_hits: AtomicU64,
    /// Calls waiting for the same call in flight elsewhere (single-flight).
    pub flight_waits: AtomicU64,
    /// Calls whose usage the server did not report (estimated with the tokenizer).
    pub usage_estimated: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub reasoning_tokens: AtomicU64,
    /// Tokens of this run's own calls (not served by the cache).
    pub spent_prompt_tokens: AtomicU64,
    pub spent_completion_tokens: AtomicU64,
    /// Micro-dollars: this run's spend and the experiment's total (cached calls included).
    pub spend_micro_usd: AtomicU64,
    pub total_cost_micro_usd: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub planned_calls: AtomicU64,
    pub planned_tokens: AtomicU64,
    pub planned_cost_micro: AtomicU64,
    /// Answers that arrived but could not be written to the cache.
    pub uncached: AtomicU64,
    /// Node calls answered by an imported record.
    pub imported: AtomicU64,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// One model as the call layer uses it.
struct Model {
    /// The pipeline's name for it.
    name: String,
    spec: ModelSpec,
    /// Its cache misses go through the provider's batch API.
    batch: Option<crate::spec::batch::BatchSettings>,
    provider: Arc<dyn Provider>,
    /// The model's own `max_in_flight` below the run's `--concurrency`.
    slots: Option<Semaphore>,
    tokenizer: tokenizer::Tokenizer,
    /// Its cache keys' unchanging part.
    keys: keys::KeyBase,
}

/// How to build the call layer of one run.
pub struct Settings<'a> {
    pub models: &'a BTreeMap<String, ModelSpec>,
    /// The models some node uses (only those get a provider: an unused model needs no key).
    pub used: Vec<String>,
    pub cache: Cache,
    pub mode: Mode,
    pub concurrency: usize,
    pub max_cost: Option<f64>,
    /// The folder of the pipeline file (relative `tokenizer:` paths resolve against it).
    pub base_dir: &'a Path,
    /// The pipeline's `sample_offset`, added to the sample index in keys and seeds.
    pub sample_offset: u32,
    /// `--batch`: every OpenAI-compatible model without `batch: false` uses its batch API.
    pub batch: bool,
}

/// The call layer of one run.
pub struct Calls {
    models: HashMap<String, Model>,
    pub cache: Cache,
    flights: flight::Flights,
    global: Semaphore,
    pub concurrency: usize,
    pub mode: Mode,
    pub stats: Stats,
    stop: AtomicBool,
    max_cost_micro: Option<u64>,
    listener: OnceLock<Arc<dyn Listener>>,
    /// Cache keys this run used (for `cache gc`), written as they come.
    keys_out: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    pub redactor: redact::Redactor,
    /// The first failed cache write (path and OS error), reported once.
    cache_failure: Mutex<Option<String>>,
    /// Answers of an earlier run, for the calls that miss the cache (`imports`).
    imports: OnceLock<Arc<imports::Imports>>,
    /// Added to a site's sample index wherever it decides a response (keys, seeds, `sim`).
    pub sample_offset: u32,
    /// The calls a plan found missing from the cache, in order (`plan --explain`).
    pub planned: Mutex<Vec<PlannedMiss>>,
    /// The provider batches of this run's batch models.
    pub batches: batch::Batches,
}

/// A call a plan would send: where, and the prompt it would send first.
#[derive(Debug, Clone)]
pub struct PlannedMiss {
    pub problem_id: String,
    pub node_id: String,
    pub sample: u32,
    /// The node's prompt as a node output records it (`Prompt::full_text`).
    pub prompt: String,
    pub key: String,
}

impl Calls {
    /// Builds every used model's provider and tokenizer. An error names the model.
    pub fn new(s: Settings<'_>) -> Result<Calls> {
        let mut models = HashMap::new();
        let mut keys = Vec::new();
        for name in &s.used {
            let Some(spec) = s.models.get(name) else {
                continue;
            };
            let provider = crate::llm::build_provider(spec, s.mode == Mode::Run)
                .map_err(|e| anyhow::anyhow!("model `{name}`: {e:#}"))?;
            let tokenizer = tokenizer::Tokenizer::load(spec.tokenizer.as_deref(), s.base_dir)
                .map_err(|e| anyhow::anyhow!("model `{name}`: {e:#}"))?;
            keys.extend(crate::llm::openai::keys::key_value(spec));
            let batch = spec
                .batch_settings(s.batch)
                .or_else(|| batch::resume_settings(name, spec, provider.as_ref(), &s));
            let key_base = keys::KeyBase::new(spec, provider.as_ref())
                .map_err(|e| anyhow::anyhow!("model `{name}`: {e:#}"))?;
            models.insert(
                name.clone(),
                Model {
                    keys: key_base,
                    name: name.clone(),
                    batch,
                    spec: spec.clone(),
                    provider,
                    slots: spec.max_in_flight.map(Semaphore::new),
                    tokenizer,
                },
            );
        }
        let concurrency = s.concurrency.max(1);
        let batches = batch::Batches::new(s.cache.root())?;
        let flights = if s.mode == Mode::Run {
            flight::Flights::for_cache(s.cache.root())
        } else {
            // a plan or an offline run sends nothing (and may read a read-only cache)
            flight::Flights::new(false)
        };
        Ok(Calls {
            batches,
            models,
            cache: s.cache,
            flights,
            global: Semaphore::new(concurrency),
            concurrency,
            mode: s.mode,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            max_cost_micro: s.max_cost.map(|c| (c * 1e6) as u64),
            listener: OnceLock::new(),
            keys_out: Mutex::new(None),
            redactor: redact::Redactor::new(keys),
            cache_failure: Mutex::new(None),
            imports: OnceLock::new(),
            sample_offset: s.sample_offset,
            planned: Mutex::new(Vec::new()),
        })
    }

    /// Requests per replica of each model served by several (`base_urls:`), for metrics.json.
    pub fn replicas(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (name, m) in &self.models {
            let r = m.provider.replicas();
            if !r.is_empty() {
                out.insert(name.clone(), serde_json::json!(r));
            }
        }
        serde_json::Value::Object(out)
    }

    /// Sets the answers imported from an earlier run (once).
    pub fn set_imports(&self, i: Arc<imports::Imports>) {
        let _ = self.imports.set(i);
    }

    pub fn imports(&self) -> Option<&imports::Imports> {
        self.imports.get().map(Arc::as_ref)
    }

    /// The tokenizer of a model this run uses (its `tokenizer:` setting, cl100k by default).
    pub fn tokenizer_of(&self, model: &str) -> Option<&tokenizer::Tokenizer> {
        self.models.get(model).map(|m| &m.tokenizer)
    }

    /// Sets who hears about started calls, retries and streamed text (once).
    pub fn set_listener(&self, l: Arc<dyn Listener>) {
        let _ = self.listener.set(l);
    }

    fn listener(&self) -> &dyn Listener {
        match self.listener.get() {
            Some(l) => l.as_ref(),
            None => &Silent,
        }
    }

    /// Sets the file the used cache keys are appended to.
    pub fn set_keys_file(&self, w: std::io::BufWriter<std::fs::File>) {
        if let Ok(mut g) = self.keys_out.lock() {
            *g = Some(w);
        }
    }

    /// Flushes and closes the keys file.
    pub fn close_keys_file(&self) {
        if let Some(mut w) = self.keys_out.lock().ok().and_then(|mut g| g.take()) {
            let _ = w.flush();
        }
    }

    /// No new call is sent from now on (Ctrl-C, a signal).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.batches.stop();
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// True once this run's spend reached `--max_cost`.
    pub fn over_budget(&self) -> bool {
        self.max_cost_micro
            .is_some_and(|m| load(&self.stats.spend_micro_usd) >= m)
    }

    /// Calls now waiting for the same call in flight elsewhere: they hold no call slot, so
    /// the scheduler may start that many more model nodes.
    pub fn waiting(&self) -> usize {
        self.flights.waiting() + self.batches.waiting()
    }

    /// The largest `batch_size` of this run's batch models (0: none batches), so the
    /// scheduler can open enough problems to fill a batch.
    pub fn batch_window(&self) -> usize {
        self.models
            .values()
            .filter_map(|m| m.batch.as_ref().map(|b| b.size))
            .max()
            .unwrap_or(0)
    }

    /// True when this model's misses go to its provider's batch API.
    pub fn is_batched(&self, model: &str) -> bool {
        self.models.get(model).is_some_and(|m| m.batch.is_some())
    }

    /// The models whose misses go to a batch API, with their settings.
    pub fn batch_models(&self) -> Vec<(String, crate::spec::batch::BatchSettings)> {
        let mut v: Vec<_> = self
            .models
            .values()
            .filter_map(|m| m.batch.clone().map(|b| (m.name.clone(), b)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Notified whenever `waiting()` changes.
    pub fn waiting_changed(&self) -> &tokio::sync::Notify {
        self.flights.changed()
    }

    /// The spec of a model this run uses.
    pub fn spec(&self, model: &str) -> Option<&ModelSpec> {
        self.models.get(model).map(|m| &m.spec)
    }

    /// The first failed cache write, if any (path and OS error).
    pub fn cache_failure(&self) -> Option<String> {
        self.cache_failure.lock().ok().and_then(|g| g.clone())
    }

    /// An answer arrived but could not be stored: it is used all the same, counted, and the
    /// first such failure is reported prominently.
    fn cache_write_failed(&self, e: &anyhow::Error) {
        self.stats.uncached.fetch_add(1, Ordering::Relaxed);
        let mut g = match self.cache_failure.lock() {
            Ok(g) => g,
            Err(_) => return,
        };
        if g.is_none() {
            let msg = format!("{e:#}");
            eprintln!(
                "\nERROR: the cache at {} cannot be written ({msg}). Answers are still used and recorded in the results, but not cached: a rerun pays for them again. Free space or fix the directory's permissions.",
                self.cache.root().display()
            );
            *g = Some(msg);
        }
    }

    /// One provider call under the run's caps: the model's own `max_in_flight`, then the
    /// run's `--concurrency`. Waiting for a slot is not being in flight.
    async fn send(
        &self,
        model: &Model,
        req: &CallRequest,
        site: &Site<'_>,
    ) -> Result<CallResponse> {
        let _m = match &model.slots {
            Some(s) => Some(s.acquire().await?),
            None => None,
        };
        let _g = self.global.acquire().await?;
        if self.stopped() {
            return Err(NotSent::Interrupted.into());
        }
        self.listener().started(site);
        let now = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tracing::info!(
            problem = %site.problem_id,
            node = %site.node_id,
            sample = site.sample,
            "call of model `{}`",
            req.model
        );
        let obs = Observer {
            listener: self.listener(),
            site,
            redactor: &self.redactor,
        };
        let ctx = crate::llm::CallContext {
            problem: site.problem,
            observer: &obs,
        };
        let r = model.provider.call(req, &ctx).await;
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        r.map_err(|e| anyhow::anyhow!("model call failed: {}", self.redactor.redact(&e.message)))
    }

    /// Adds one model node's calls to the counters and the list of used cache keys.
    fn record(&self, model: &Model, info: &CallInfo) {
        let s = &self.stats;
        if info.cached {
            s.node_hits.fetch_add(1, Ordering::Relaxed);
        }
        s.calls.fetch_add(info.calls as u64, Ordering::Relaxed);
        s.call_hits
            .fetch_add(info.call_hits as u64, Ordering::Relaxed);
        s.prompt_tokens
            .fetch_add(info.usage.prompt_tokens, Ordering::Relaxed);
        s.completion_tokens
            .fetch_add(info.usage.completion_tokens, Ordering::Relaxed);
        s.reasoning_tokens
            .fetch_add(info.usage.reasoning_tokens, Ordering::Relaxed);
        let micro = |all: &crate::llm::Usage, batched: &crate::llm::Usage| {
            (generate::priced(&model.spec.price, all, batched) * 1e6).round() as u64
        };
        s.total_cost_micro_usd
            .fetch_add(micro(&info.usage, &info.batch_usage), Ordering::Relaxed);
        s.spent_prompt_tokens
            .fetch_add(info.fresh.prompt_tokens, Ordering::Relaxed);
        s.spent_completion_tokens
            .fetch_add(info.fresh.completion_tokens, Ordering::Relaxed);
        s.spend_micro_usd
            .fetch_add(micro(&info.fresh, &info.batch_fresh), Ordering::Relaxed);
        if let Ok(mut g) = self.keys_out.lock()
            && let Some(w) = g.as_mut()
        {
            for k in &info.keys {
                let _ = writeln!(w, "{k}");
            }
        }
    }

    /// Writes out the buffered used keys: the scheduler calls it before it waits, so
    /// `cache gc` never deletes the entries of what a crashed run finished.
    pub fn flush_keys(&self) {
        if let Ok(mut g) = self.keys_out.lock()
            && let Some(w) = g.as_mut()
        {
            let _ = w.flush();
        }
    }
}

/// Hands a provider's retries and streamed text to the listener, keys redacted.
struct Observer<'a> {
    listener: &'a dyn Listener,
    site: &'a Site<'a>,
    redactor: &'a redact::Redactor,
}

impl crate::llm::CallObserver for Observer<'_> {
    fn delta(&self, text: &str) {
        self.listener.delta(self.site, &self.redactor.redact(text));
    }
    fn retry(&self, attempt: u32, reason: &str) {
        self.listener
            .retry(self.site, attempt, &self.redactor.redact(reason));
    }
}
