//! `distill cache push|pull RUN_DIR…`: every entry some runs used (the keys of their
//! `cache_keys.txt`, read by the caller) uploaded to the remote, or fetched from it into the local cache, with bounded
//! concurrency. A pulled entry goes through `Cache::install`, the check every entry brought
//! from elsewhere gets (header, checksum, the key it claims).

use std::sync::Arc;

use backon::Retryable;
use futures_util::StreamExt;
use object_store::ObjectStoreExt;

use super::{IN_FLIGHT, Remote, object_path, scrub, upload};
use crate::cache::{Cache, Key};

/// What a push or a pull did.
#[derive(Debug, Default)]
pub struct Moved {
    pub runs: usize,
    /// Distinct keys the runs used.
    pub keys: usize,
    /// Entries uploaded (push) or added to the local cache (pull).
    pub moved: usize,
    /// Entries already at the destination.
    pub present: usize,
    /// Keys with no entry at the source (a single-call node's node key is never stored).
    pub missing: usize,
    /// Transfers that failed (`key: why`, credentials removed).
    pub failed: Vec<String>,
    /// Pulled entries that failed the check (never installed).
    pub rejected: Vec<String>,
}

/// The keys that name entries (a run's file may hold anything).
fn entry_keys(keys: Vec<String>) -> Vec<String> {
    keys.into_iter()
        .filter(|k| k.len() > 2 && k.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

enum One {
    Moved,
    Present,
    Missing,
    Failed(String),
    Rejected(String),
}

fn tally(runs: usize, keys: usize, done: Vec<One>) -> Moved {
    let mut m = Moved {
        runs,
        keys,
        ..Default::default()
    };
    for d in done {
        match d {
            One::Moved => m.moved += 1,
            One::Present => m.present += 1,
            One::Missing => m.missing += 1,
            One::Failed(e) => m.failed.push(e),
            One::Rejected(e) => m.rejected.push(e),
        }
    }
    m
}

/// Uploads the local entries of `keys` (used by `runs` runs) that the bucket does not hold.
pub fn push(remote: &Remote, cache: &Cache, runs: usize, keys: Vec<String>) -> Moved {
    let keys = entry_keys(keys);
    let files: Vec<(String, Option<crate::cache::Where>)> = keys
        .iter()
        .map(|k| (k.clone(), cache.find(&Key(k.clone()))))
        .collect();
    let (store, prefix, secrets) = (
        remote.store.clone(),
        remote.url.prefix.clone(),
        remote.secrets.clone(),
    );
    let done = remote.block(async move {
        futures_util::stream::iter(files)
            .map(|(k, file)| {
                let (store, prefix, secrets) = (store.clone(), prefix.clone(), secrets.clone());
                async move {
                    let Some(Ok(bytes)) = file.map(|at| at.read()) else {
                        return One::Missing;
                    };
                    let path = object_path(&prefix, &Key(k.clone()));
                    match store.head(&path).await {
                        Ok(_) => return One::Present,
                        Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => {
                            return One::Failed(format!(
                                "{k}: {}",
                                scrub(&e.to_string(), &secrets)
                            ));
                        }
                    }
                    match (|| upload::put_once(&store, &path, &bytes))
                        .retry(upload::backoff())
                        .await
                    {
                        Ok(upload::Put::Stored) => One::Moved,
                        Ok(upload::Put::AlreadyThere) => One::Present,
                        Err(e) => One::Failed(format!("{k}: {}", scrub(&e.to_string(), &secrets))),
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
    });
    tally(runs, keys.len(), done)
}

/// Fetches the entries of `keys` (used by `runs` runs) the local cache lacks (or holds corrupt), each checked.
pub fn pull(remote: &Remote, cache: Arc<Cache>, runs: usize, keys: Vec<String>) -> Moved {
    let keys = entry_keys(keys);
    let n = keys.len();
    let (store, prefix, secrets) = (
        remote.store.clone(),
        remote.url.prefix.clone(),
        remote.secrets.clone(),
    );
    let done = remote.block(async move {
        futures_util::stream::iter(keys)
            .map(|k| {
                let (store, prefix, secrets, cache) = (
                    store.clone(),
                    prefix.clone(),
                    secrets.clone(),
                    cache.clone(),
                );
                async move {
                    let key = Key(k.clone());
                    if cache.verify(&key).is_ok() {
                        return One::Present;
                    }
                    let path = object_path(&prefix, &key);
                    let got = (|| async { store.get(&path).await?.bytes().await })
                        .retry(upload::backoff())
                        .when(|e| !matches!(e, object_store::Error::NotFound { .. }))
                        .await;
                    match got {
                        Ok(bytes) => match cache.install(&key, &bytes) {
                            Ok(true) => One::Moved,
                            Ok(false) => One::Present,
                            Err(why) => One::Rejected(format!("{k}: {why}")),
                        },
                        Err(object_store::Error::NotFound { .. }) => One::Missing,
                        Err(e) => One::Failed(format!("{k}: {}", scrub(&e.to_string(), &secrets))),
                    }
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
    });
    tally(runs, n, done)
}
