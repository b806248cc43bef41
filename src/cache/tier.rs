//! The cache's second tier (the remote cache, `crate::remote`, implements [`Tier`]): its
//! handle on a [`Cache`], the read-through after a local miss (verified here exactly as a
//! local entry is) and the hook that tells the tier of every entry written.

use std::sync::atomic::Ordering;

use serde::de::DeserializeOwned;

use super::{Cache, Key, decode};

/// A second tier behind a cache directory (`crate::remote` implements it): read after a
/// local miss, told of every entry written or removed. Single-flight stays per directory: a
/// tier is not locked.
pub trait Tier: Send + Sync {
    /// The stored bytes of an entry, if the tier has them (unverified: the cache checks).
    fn fetch(&self, key: &Key) -> Option<Vec<u8>>;
    /// Whether what `fetch` found is kept in the directory (a plan only counts).
    fn keep_local(&self) -> bool;
    /// A fetched entry failed the check.
    fn rejected(&self, key: &Key, why: &str);
    /// An entry was written with these stored bytes (the tier copies them in the
    /// background).
    fn written(&self, key: &Key, bytes: Vec<u8>);
    /// An entry was found unusable and removed.
    fn removed(&self, key: &Key);
}

/// The second tier's part of the cache: its handle, read-through and write-behind hooks.
impl Cache {
    /// Puts `tier` behind this directory.
    pub fn set_tier(&mut self, tier: std::sync::Arc<dyn Tier>) {
        self.tier = Some(tier);
    }

    /// After a local miss: the tier's entry, checked exactly as a local one (checksum, key,
    /// kind) and kept locally (through `install`, which checks it again) unless the tier
    /// says not to. A hit counts as a cache hit.
    pub(super) fn read_through<T: DeserializeOwned>(&self, key: &Key, kind: &str) -> Option<T> {
        let tier = self.tier.as_ref()?;
        let bytes = tier.fetch(key)?;
        match decode::<T>(&bytes, key) {
            Ok((k, v)) if k == kind => {
                if tier.keep_local()
                    && let Err(e) = self.install(key, &bytes)
                {
                    tracing::debug!("cache: a remote entry is used but not kept here: {e}");
                }
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Ok((k, _)) => {
                tier.rejected(
                    key,
                    &format!("a {k} entry where a {kind} entry was expected"),
                );
                None
            }
            Err(e) => {
                tier.rejected(key, &e);
                None
            }
        }
    }

    pub(super) fn tell_written(&self, key: &Key, bytes: Vec<u8>) {
        if let Some(t) = &self.tier {
            t.written(key, bytes);
        }
    }
}
