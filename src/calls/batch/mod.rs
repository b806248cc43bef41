//! Provider batch APIs under `Calls::generate`: a model with `batch: true` (or every
//! OpenAI-compatible model under `--batch`) has its cache misses collected by one collector
//! per model into batches (up to `batch_size` lines, or once no new call came for
//! `batch_wait_s`), each written as a JSONL file, uploaded, created, polled with backoff,
//! and read back by `custom_id` (the call's cache key). Nodes never know: their call simply
//! takes longer, holds no `--concurrency` slot and takes no single-flight lock. Submitted
//! batches are recorded at once (`registry`) so a rerun or `--resume` waits for them
//! instead of paying again; Ctrl-C leaves them running (`batch_pending`) or cancels them
//! (`--cancel-batches`). The answers themselves are stored by the caller
//! (`Calls::batched`), under the same rules and keys as a direct call's.

mod claim;
mod read;
pub mod registry;
mod wait;

pub(super) use wait::resume_settings;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;
use serde_json::Value;
use tokio::sync::{Notify, oneshot, watch};

use super::{NotSent, complete};
use crate::cache::{Cache, Key};
use crate::llm::CallResponse;
use crate::llm::openai::batch::{BatchApi, BatchInfo, LineResult, RequestCounts};
use crate::spec::batch::BatchSettings;
use registry::{Record, Registry, unix_now};

/// What a waiting call gets back.
#[derive(Debug, Clone)]
pub enum Got {
    /// The batch's answer (not yet stored), and the batch's id.
    Answer(CallResponse, String),
    /// Already in the cache (another batch or process stored it meanwhile).
    Stored(CallResponse),
    /// The line failed (error file, a failed, expired or cancelled batch, no result line):
    /// it may go into a later batch.
    Error(String),
    NotSent(NotSent),
}

/// A batch in flight, for the progress line and the dashboard.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InFlight {
    pub id: String,
    pub model: String,
    /// `submitted` until the first poll, then the provider's status (`validating`,
    /// `in_progress`, `finalizing`, …).
    pub status: String,
    pub requests: usize,
    /// The provider's `request_counts` at the last poll, when it gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<RequestCounts>,
    /// Unix seconds of the submission (its age on the progress line and dashboard).
    pub submitted_at: u64,
}

impl InFlight {
    /// E.g. `batch_abc in_progress 12/60 (2 failed)`, or `batch_abc validating (60)`.
    pub fn label(&self) -> String {
        match self.counts {
            Some(c) if c.total > 0 => format!(
                "{} {} {}/{}{}",
                self.id,
                self.status,
                c.completed + c.failed,
                c.total,
                if c.failed > 0 {
                    format!(" ({} failed)", c.failed)
                } else {
                    String::new()
                }
            ),
            _ => format!("{} {} ({})", self.id, self.status, self.requests),
        }
    }
}

/// The batches of one run.
pub struct Batches {
    shared: Arc<Shared>,
}

struct Shared {
    registry: Registry,
    /// A second handle on the run's cache directory (re-checked before a key is queued).
    cache: Cache,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    waiting: AtomicUsize,
    changed: Notify,
    stop: watch::Sender<bool>,
    cancel_on_stop: AtomicBool,
    in_flight: Mutex<BTreeMap<String, InFlight>>,
    /// Notified after every poll of a batch (its status may have changed).
    polled: Notify,
    pub submitted: AtomicU64,
    pub lines: AtomicU64,
    pub picked_up: AtomicU64,
    /// Micro-dollars of submitted lines' estimates not yet answered (`--max_cost`).
    reserved_micro: AtomicU64,
}

/// One model's collector.
struct Queue {
    name: String,
    provider_model: String,
    api: BatchApi,
    cfg: BatchSettings,
    state: Mutex<QueueState>,
    wake: Notify,
}

/// One request of a batch: its key (the `custom_id`), body and cost estimate.
struct Line {
    key: String,
    body: Value,
    est_micro: u64,
}

#[derive(Default)]
struct QueueState {
    /// Lines not yet submitted.
    lines: Vec<Line>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// Everyone waiting for a key that is queued or in a batch.
    waiters: HashMap<String, Vec<oneshot::Sender<Got>>>,
    /// Keys in a submitted batch, with its id.
    in_batch: HashMap<String, String>,
    /// The records (batch or claim ids) this process follows or wrote.
    known: std::collections::HashSet<String>,
}

impl Batches {
    pub fn new(cache_root: &std::path::Path) -> anyhow::Result<Batches> {
        let (stop, _) = watch::channel(false);
        Ok(Batches {
            shared: Arc::new(Shared {
                registry: Registry::new(cache_root),
                cache: Cache::open(cache_root)?,
                queues: Mutex::new(HashMap::new()),
                waiting: AtomicUsize::new(0),
                changed: Notify::new(),
                stop,
                cancel_on_stop: AtomicBool::new(false),
                in_flight: Mutex::new(BTreeMap::new()),
                polled: Notify::new(),
                submitted: AtomicU64::new(0),
                lines: AtomicU64::new(0),
                picked_up: AtomicU64::new(0),
                reserved_micro: AtomicU64::new(0),
            }),
        })
    }

    /// Where this run records its batches (`batches.jsonl` in the run directory).
    pub fn set_run_log(&self, path: std::path::PathBuf) {
        self.shared.registry.set_run_log(path);
    }

    /// On Ctrl-C: cancel submitted batches instead of leaving them running.
    pub fn set_cancel_on_stop(&self, yes: bool) {
        self.shared.cancel_on_stop.store(yes, Ordering::SeqCst);
    }

    /// No batch is submitted from now on; calls waiting for a submitted one are told
    /// `batch_pending` (or, with `--cancel-batches`, the batch is cancelled).
    pub fn stop(&self) {
        let _ = self.shared.stop.send(true);
        self.shared.changed.notify_one();
    }

    /// Calls now waiting for a batch (they hold no call slot).
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// Notified whenever `waiting()` changes.
    pub fn changed(&self) -> &Notify {
        &self.shared.changed
    }

    /// Batches submitted by this run, and their lines; batches of an earlier run followed.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = &self.shared;
        (
            s.submitted.load(Ordering::Relaxed),
            s.lines.load(Ordering::Relaxed),
            s.picked_up.load(Ordering::Relaxed),
        )
    }

    /// The estimate (micro-dollars) of lines waiting for an answer, counted against
    /// `--max-cost` until their answer's real cost is.
    pub fn reserved_micro(&self) -> u64 {
        self.shared.reserved_micro.load(Ordering::Relaxed)
    }

    /// Notified after every poll of a batch of this run.
    pub fn polled(&self) -> &Notify {
        &self.shared.polled
    }

    /// The batches in flight now.
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.shared
            .in_flight
            .lock()
            .map(|g| g.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Waits for the answer to one line (queued now, or found in a batch already
    /// submitted, by this run or a killed one).
    async fn submit(
        &self,
        model: &str,
        q: impl FnOnce() -> Queue,
        key: &str,
        body: Value,
        est_micro: u64,
    ) -> Got {
        let queue = self.queue(model, q);
        let (tx, rx) = oneshot::channel();
        {
            let mut st = match queue.state.lock() {
                Ok(g) => g,
                Err(_) => return Got::Error("batch state poisoned".into()),
            };
            if let Some(w) = st.waiters.get_mut(key) {
                w.push(tx);
            } else if let Some(r) = stored(&self.shared.cache, key) {
                return Got::Stored(r);
            } else if *self.shared.stop.borrow() {
                // a line of a batch still running is collected by a rerun, not lost
                return Got::NotSent(if st.in_batch.contains_key(key) {
                    NotSent::BatchPending
                } else {
                    NotSent::Interrupted
                });
            } else {
                st.waiters.insert(key.to_string(), vec![tx]);
                if !st.in_batch.contains_key(key) {
                    st.lines.push(Line {
                        key: key.to_string(),
                        body,
                        est_micro,
                    });
                    let now = Instant::now();
                    st.first_at.get_or_insert(now);
                    st.last_at = Some(now);
                    queue.wake.notify_one();
                }
            }
        }
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_one();
        let got = rx.await.unwrap_or(Got::NotSent(NotSent::BatchPending));
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
        self.shared.changed.notify_one();
        got
    }

    /// The model's collector, started (with the pending batches of earlier runs) on first use.
    fn queue(&self, model: &str, make: impl FnOnce() -> Queue) -> Arc<Queue> {
        let mut g = self.shared.queues.lock().expect("batch queues");
        if let Some(q) = g.get(model) {
            return q.clone();
        }
        let q = Arc::new(make());
        let pending = self.shared.registry.pending(
            q.api.base_url(),
            q.api.endpoint_path(),
            &q.provider_model,
        );
        // their keys are known before any call can find the queue: none is queued again
        if let Ok(mut st) = q.state.lock() {
            for r in &pending {
                claim::mark(&mut st, r);
            }
        }
        g.insert(model.to_string(), q.clone());
        drop(g);
        for r in pending {
            claim::follow_theirs(&self.shared, &q, r);
        }
        tokio::spawn(collect(self.shared.clone(), q.clone()));
        q
    }
}

/// A complete stored answer for `key`, if there is one.
fn stored(cache: &Cache, key: &str) -> Option<CallResponse> {
    let r = cache.get::<CallResponse>(&Key(key.to_string()), "call")?;
    complete::response(&r).is_ok().then_some(r)
}

/// Tells everyone waiting for `key`.
fn deliver(st: &mut QueueState, key: &str, got: impl Fn() -> Got) {
    for tx in st.waiters.remove(key).unwrap_or_default() {
        let _ = tx.send(got());
    }
}

/// The collector of one model: closes a batch at `batch_size` lines, or once no call came
/// for `batch_wait_s` (at most 20 waits after its first line), and submits it.
async fn collect(shared: Arc<Shared>, q: Arc<Queue>) {
    let mut stop = shared.stop.subscribe();
    loop {
        let now = Instant::now();
        let (due, deadline) = {
            let Ok(st) = q.state.lock() else { return };
            match (st.first_at, st.last_at) {
                (Some(first), Some(last)) => {
                    let deadline = (last + q.cfg.wait).min(first + q.cfg.wait * 20);
                    (
                        st.lines.len() >= q.cfg.size || now >= deadline,
                        Some(deadline),
                    )
                }
                _ => (false, None),
            }
        };
        if *stop.borrow() {
            let Ok(mut st) = q.state.lock() else { return };
            for l in std::mem::take(&mut st.lines) {
                deliver(&mut st, &l.key, || Got::NotSent(NotSent::Interrupted));
            }
            return;
        }
        if due {
            let lines = {
                let Ok(mut st) = q.state.lock() else { return };
                let n = st.lines.len().min(q.cfg.size);
                let lines: Vec<_> = st.lines.drain(..n).collect();
                let now = Instant::now();
                st.first_at = (!st.lines.is_empty()).then_some(now);
                st.last_at = st.first_at;
                lines
            };
            tokio::spawn(submit_batch(shared.clone(), q.clone(), lines));
            continue;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = q.wake.notified() => {}
            _ = sleep => {}
            _ = stop.changed() => {}
        }
    }
}

/// Claims, uploads and creates one batch, records it, then follows it.
async fn submit_batch(shared: Arc<Shared>, q: Arc<Queue>, lines: Vec<Line>) {
    // lines another process submitted meanwhile are left to its batch
    let Some((lines, mut record)) = claim::claim(&shared, &q, lines) else {
        return;
    };
    let fail_all = |why: String| {
        if let Ok(mut st) = q.state.lock() {
            for l in &lines {
                deliver(&mut st, &l.key, || Got::Error(why.clone()));
            }
        }
    };
    let jsonl: String = lines
        .iter()
        .map(|l| q.api.line(&l.key, &l.body) + "\n")
        .collect();
    let file = match q.api.upload(&jsonl).await {
        Ok(f) => f,
        Err(e) => {
            shared.registry.remove(&record.id);
            return fail_all(format!("{e:#}"));
        }
    };
    // the last moment to hold back: a stop after the upload submits nothing
    if *shared.stop.borrow() {
        shared.registry.remove(&record.id);
        if let Ok(mut st) = q.state.lock() {
            for l in &lines {
                deliver(&mut st, &l.key, || Got::NotSent(NotSent::Interrupted));
            }
        }
        return;
    }
    // recorded before the batch exists: a kill while it is created leaves a record a rerun
    // resolves through the provider's list of batches
    record.input_file_id = file.clone();
    if let Err(e) = shared.registry.write(&record) {
        tracing::warn!("batch of {file}: {e:#}");
    }
    let claim_id = record.id.clone();
    let info = match q.api.create(&file).await {
        Ok(i) => i,
        Err(e) => {
            shared.registry.remove(&claim_id);
            return fail_all(format!("{e:#}"));
        }
    };
    record.id = info.id.clone();
    record.state = "submitted".into();
    if let Ok(mut st) = q.state.lock() {
        st.known.insert(record.id.clone());
    }
    let written = shared.registry.write(&record);
    shared.registry.remove(&claim_id);
    if let Err(e) = written {
        eprintln!(
            "WARNING: batch {} was submitted but could not be recorded ({e:#}): a rerun after a crash would submit its requests again",
            record.id
        );
    }
    shared.submitted.fetch_add(1, Ordering::Relaxed);
    shared
        .lines
        .fetch_add(record.keys.len() as u64, Ordering::Relaxed);
    if let Ok(mut st) = q.state.lock() {
        for k in &record.keys {
            st.in_batch.insert(k.clone(), record.id.clone());
        }
    }
    // said on the terminal: a batch may take hours, and this is what the run waits for
    eprintln!(
        "batch {} submitted: model `{}`, {} requests (estimate ${:.4}); its status is polled until it ends",
        record.id,
        q.name,
        record.keys.len(),
        record.estimate_usd
    );
    follow(shared, q, record).await;
}

/// Polls a submitted batch with backoff until it ends, then reads its files and answers
/// its waiters. On stop it leaves the batch running (waiters: `batch_pending`) or, with
/// `--cancel-batches`, cancels it.
async fn follow(shared: Arc<Shared>, q: Arc<Queue>, mut record: Record) {
    let mut stop = shared.stop.subscribe();
    set_status(&shared, &q, &record, "submitted", None);
    let mut delays = backon::ExponentialBuilder::default()
        .with_min_delay(q.cfg.poll_min)
        .with_max_delay(q.cfg.poll_max)
        .with_factor(1.5)
        .without_max_times()
        .build();
    let mut cancelled = false;
    let info = loop {
        let d = delays.next().unwrap_or(q.cfg.poll_max);
        if !cancelled && *stop.borrow() {
            // another live process's batch is never cancelled from here: it waits for it
            let ours = record.pid == std::process::id() || !record.writer_alive();
            if !shared.cancel_on_stop.load(Ordering::SeqCst) || !ours {
                leave_running(&shared, &q, &record);
                return;
            }
            cancelled = true;
            match q.api.cancel(&record.id).await {
                Ok(_) => eprintln!("batch {}: cancel requested (--cancel-batches)", record.id),
                Err(e) => eprintln!("batch {}: could not cancel it: {e:#}", record.id),
            }
            answer_not_sent(&q, &record, NotSent::Interrupted);
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed(), if !cancelled => continue,
        }
        match q.api.get(&record.id).await {
            Ok(i) => {
                set_status(&shared, &q, &record, &i.status, i.counts);
                if i.is_final() {
                    break i;
                }
            }
            Err(e) => tracing::warn!("batch {}: {e:#} (polling again)", record.id),
        }
    };
    read::read_back(&shared, &q, &info, &mut record).await;
}

/// Waiters of a batch left running are told `batch_pending`; the record stays `submitted`.
fn leave_running(shared: &Shared, q: &Queue, record: &Record) {
    eprintln!(
        "batch {} (model `{}`, {} requests) is left running at the provider; a rerun or --resume RUN_DIR picks it up (record: {}); pass --cancel-batches to cancel instead",
        record.id,
        q.name,
        record.keys.len(),
        shared.registry_path(&record.id).display()
    );
    answer_not_sent(q, record, NotSent::BatchPending);
    if let Ok(mut g) = shared.in_flight.lock() {
        g.remove(&record.id);
    }
}

fn answer_not_sent(q: &Queue, record: &Record, why: NotSent) {
    if let Ok(mut st) = q.state.lock() {
        for k in &record.keys {
            deliver(&mut st, k, || Got::NotSent(why));
        }
    }
}

impl Shared {
    fn registry_path(&self, id: &str) -> std::path::PathBuf {
        self.cache.root().join("batches").join(format!("{id}.json"))
    }
}

fn set_status(
    shared: &Shared,
    q: &Queue,
    record: &Record,
    status: &str,
    counts: Option<RequestCounts>,
) {
    let Ok(mut g) = shared.in_flight.lock() else {
        return;
    };
    let prev = g.get(&record.id).map(|f| f.status.clone());
    if prev.as_deref() != Some(status) {
        tracing::info!("batch {} (model `{}`): {status}", record.id, q.name);
    }
    g.insert(
        record.id.clone(),
        InFlight {
            id: record.id.clone(),
            model: q.name.clone(),
            status: status.to_string(),
            requests: record.keys.len(),
            counts,
            submitted_at: record.submitted_at,
        },
    );
    drop(g);
    // the progress line and the dashboard follow each poll
    shared.polled.notify_waiters();
}

/// The response marked with the batch that answered it (priced at the batch price).
pub fn with_batch(mut r: CallResponse, id: &str) -> CallResponse {
    r.batch = Some(id.to_string());
    r
}

/// Polling starts at this interval (or `batch_poll_s` when smaller).
pub const FIRST_POLL: Duration = Duration::from_secs(2);
