//! Write-behind: entries written to the local cache are queued here and uploaded by a
//! background task (a bounded queue, a bounded number of requests in flight), each retried
//! with exponential backoff and counted; a failure is reported, never an error of the node
//! that wrote the entry. The end of a run waits for the queue to drain, up to a limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use object_store::aws::AmazonS3;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{Counters, object_path, scrub};
use crate::cache::Key;

/// One thing to do in the bucket.
pub(super) enum Op {
    /// Upload an entry's stored bytes.
    Put(Key, Vec<u8>),
    /// Remove an entry found unusable.
    Delete(Key),
}

/// What the uploads share with the remote.
pub(super) struct Shared {
    pub store: Arc<AmazonS3>,
    pub prefix: String,
    pub counters: Arc<Counters>,
    pub last_error: Arc<Mutex<Option<String>>>,
    pub secrets: Arc<Vec<String>>,
    pub url: String,
}

/// The queue's sending side and its count of unfinished operations.
#[derive(Clone)]
pub(super) struct Queue {
    tx: tokio::sync::mpsc::Sender<Op>,
    pending: Arc<AtomicU64>,
}

/// The backoff of one upload: 5 tries over about 3 s (tests shorten it with
/// `DISTILL_RETRY_BASE_MS` / `DISTILL_RETRY_MAX_MS`, as for model calls).
pub(super) fn backoff() -> ExponentialBuilder {
    let ms = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(
            ms("DISTILL_RETRY_BASE_MS").unwrap_or(200),
        ))
        .with_max_delay(Duration::from_millis(
            ms("DISTILL_RETRY_MAX_MS").unwrap_or(2000),
        ))
        .with_max_times(4)
        .with_jitter()
}

impl Queue {
    /// Starts the background task on `rt`.
    pub fn start(
        rt: &tokio::runtime::Handle,
        shared: Shared,
        capacity: usize,
        in_flight: usize,
    ) -> Queue {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Op>(capacity);
        let pending = Arc::new(AtomicU64::new(0));
        let left = pending.clone();
        let shared = Arc::new(shared);
        rt.spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
            while let Some(op) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (shared, left) = (shared.clone(), left.clone());
                tokio::spawn(async move {
                    run(&shared, op).await;
                    left.fetch_sub(1, Ordering::AcqRel);
                    drop(permit);
                });
            }
        });
        Queue { tx, pending }
    }

    /// Queues `op` without waiting; a full queue is counted (`cache push` catches up).
    pub fn push(&self, op: Op, counters: &Counters) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(op) {
            Ok(()) => {
                counters.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.pending.fetch_sub(1, Ordering::AcqRel);
                counters.not_queued.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Waits until nothing is pending or `wait` has passed; returns what is still pending.
    pub async fn drained(&self, wait: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + wait;
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.pending()
    }
}

/// How one upload ended.
pub(super) enum Put {
    Stored,
    AlreadyThere,
}

/// Uploads `bytes` unless the bucket has the entry (the first stored answer wins, as in a
/// cache directory); a store without conditional writes gets a plain write.
pub(super) async fn put_once(
    store: &AmazonS3,
    path: &object_store::path::Path,
    bytes: &[u8],
) -> object_store::Result<Put> {
    let create = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let payload = PutPayload::from(bytes.to_vec());
    match store.put_opts(path, payload, create).await {
        Ok(_) => Ok(Put::Stored),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::AlreadyThere),
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(path, PutPayload::from(bytes.to_vec())).await?;
            Ok(Put::Stored)
        }
        Err(e) => Err(e),
    }
}

async fn run(s: &Shared, op: Op) {
    let c = &s.counters;
    match op {
        Op::Put(key, bytes) => {
            let path = object_path(&s.prefix, &key);
            let tried = (|| put_once(&s.store, &path, &bytes))
                .retry(backoff())
                .notify(|_, _| {
                    c.upload_retries.fetch_add(1, Ordering::Relaxed);
                })
                .await;
            match tried {
                Ok(Put::Stored) => {
                    c.uploaded.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Put::AlreadyThere) => {
                    c.already_there.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    c.upload_failed.fetch_add(1, Ordering::Relaxed);
                    failed(s, &format!("uploading {}: {e}", key.0));
                }
            }
        }
        Op::Delete(key) => {
            let path = object_path(&s.prefix, &key);
            match (|| s.store.delete(&path)).retry(backoff()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => failed(s, &format!("removing {}: {e}", key.0)),
            }
        }
    }
}

fn failed(s: &Shared, what: &str) {
    let msg = format!("remote cache {}: {}", s.url, scrub(what, &s.secrets));
    tracing::warn!("{msg}");
    if let Ok(mut e) = s.last_error.lock() {
        *e = Some(msg);
    }
}
