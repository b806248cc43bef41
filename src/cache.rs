//! The content-addressed cache of model calls and node outputs.
//!
//! A key is the blake3 hash of a canonical JSON form (object keys sorted) of everything that
//! determines a response; callers build that material (`calls`), this module never sees
//! an API key. An entry is a magic line, the blake3 of the payload, then the
//! zstd-compressed payload `{"key", "kind", "value"}`. Reads verify both the checksum and
//! the key, so a corrupt or misplaced entry is a miss (counted and reported), never a wrong
//! answer; errors are never stored. Entries are written as records of this process's pack
//! segment (`pack`: one append-only file per writing process, indexed when sealed, read
//! by every process sharing the directory); entries of the loose layout, one file each
//! under `objects/ab/cdef…` (what earlier versions wrote), are read as well. A second tier
//! (the remote cache, `crate::remote`) may sit behind the directory through the [`Tier`]
//! trait: read after a local miss and verified here, told of every entry written. The
//! maintenance side (listing, checking, dropping, installing entries) is `admin`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod admin;
mod key;
mod pack;
mod tier;
pub use admin::Where;
pub use key::{Key, Part, canonical};
pub use tier::Tier;

/// Bumped when the entry layout or key material changes; part of every key.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"DSTLC2\n\0";
/// Header: magic, blake3 of the payload, payload length (u64 LE), then zstd data.
const HEADER: usize = 8 + 32 + 8;

/// Counters of one process's use of the cache.
#[derive(Debug, Default)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub corrupt: AtomicU64,
    pub writes: AtomicU64,
}

pub struct Cache {
    root: PathBuf,
    pub counters: Counters,
    packs: pack::Packs,
    /// Whether `objects/` held loose entries when the cache was opened (read after packs).
    loose: bool,
    /// A second tier behind the directory (the remote cache), if configured.
    tier: Option<std::sync::Arc<dyn Tier>>,
}

#[derive(serde::Deserialize)]
struct Envelope<T> {
    key: String,
    kind: String,
    value: T,
}

thread_local! {
    // one compression context per thread: creating one per entry is a measurable cost
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(3)?);
        }
        c.as_mut().expect("set above").compress(data)
    })
}

fn decompress(data: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("set above").decompress(data, len)
    })
}

/// Largest payload a header may announce (guards the allocation of a corrupt entry).
const MAX_PAYLOAD: u64 = 1 << 31;

impl Cache {
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating cache directory {}", root.display()))?;
        // entries of earlier versions, one file each under objects/ab/: still read when
        // present (a folder there is made only when a loose file or lock is written)
        let folders = fs::read_dir(root.join("objects")).into_iter().flatten();
        let loose = folders.flatten().any(|d| {
            let files = fs::read_dir(d.path()).into_iter().flatten();
            files
                .flatten()
                .any(|f| admin::is_entry_name(&f.file_name()))
        });
        Ok(Cache {
            root: root.to_path_buf(),
            counters: Counters::default(),
            packs: pack::Packs::open(root),
            loose,
            tier: None,
        })
    }

    /// Checks that entries can be written (a run that may send needs it; a plan or an
    /// offline run does not): creates and removes an empty file where entries go. A
    /// read-only or forbidden directory fails here; a full disk only when an entry is
    /// written (answers are then kept and the run ends with exit 1).
    pub fn check_writable(&self) -> Result<()> {
        let fail = || {
            format!(
                "the cache directory {} cannot be written",
                self.root.display()
            )
        };
        let packs = self.root.join("packs");
        fs::create_dir_all(&packs).with_context(fail)?;
        let probe = packs.join(format!(".tmp-probe-{}", crate::atomic::pid()));
        fs::File::create(&probe).with_context(fail)?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The loose file of an entry (its single-flight lock file, where range locks are not
    /// available, is this path + `.lock`).
    pub fn entry_path(&self, key: &Key) -> PathBuf {
        self.root
            .join("objects")
            .join(&key.0[..2])
            .join(&key.0[2..])
    }

    /// Where the entry of `key` is stored, if anywhere (unverified).
    pub fn find(&self, key: &Key) -> Option<Where> {
        self.find_with(key, true)
    }

    /// [`Cache::find`]; `fresh` false: an entry another process wrote in the last few
    /// milliseconds may be missed (`pack::Packs::get`).
    fn find_with(&self, key: &Key, fresh: bool) -> Option<Where> {
        if let Some(raw) = pack::raw_of(&key.0)
            && let Some(f) = self.packs.get(&raw, fresh)
        {
            return Some(Where::Pack(f));
        }
        let path = self.entry_path(key);
        (self.loose && fs::symlink_metadata(&path).is_ok()).then_some(Where::Loose(path))
    }

    /// Reads and verifies an entry. A corrupt entry is a miss and is reported once.
    pub fn get<T: DeserializeOwned>(&self, key: &Key, kind: &str) -> Option<T> {
        self.get_with(key, kind, true)
    }

    /// [`Cache::get`] that may miss an entry another process wrote in the last few
    /// milliseconds: a call's first look (its look under the single-flight lock is
    /// [`Cache::get`]).
    pub fn get_recent<T: DeserializeOwned>(&self, key: &Key, kind: &str) -> Option<T> {
        self.get_with(key, kind, false)
    }

    fn get_with<T: DeserializeOwned>(&self, key: &Key, kind: &str, fresh: bool) -> Option<T> {
        let Some(at) = self.find_with(key, fresh) else {
            if let Some(v) = self.read_through(key, kind) {
                return Some(v);
            }
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let bytes = match at.read() {
            Ok(b) => b,
            // a directory or other non-file where a loose entry belongs: moved aside, so the
            // answer fetched again can be written
            Err(e) => {
                let moved = match &at {
                    Where::Loose(path) => self.quarantine(path),
                    Where::Pack(_) => "left in place".into(),
                };
                return self.corrupt(&at, &format!("unreadable: {e}; {moved}"));
            }
        };
        match decode::<T>(&bytes, key) {
            Ok((k, v)) if k == kind => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Ok((k, _)) => self.corrupt(
                &at,
                &format!("a {k} entry where a {kind} entry was expected"),
            ),
            Err(e) => self.corrupt(&at, &e),
        }
    }

    /// The stored value of `key` if it is a sound `kind` entry (not counted as a hit or miss).
    fn peek<T: DeserializeOwned>(&self, key: &Key, kind: &str) -> Option<T> {
        let bytes = self.find(key)?.read().ok()?;
        decode::<T>(&bytes, key)
            .ok()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v)
    }

    /// Moves a non-file at an entry's place into `quarantine/` (kept for inspection, never
    /// read again); says where it went.
    fn quarantine(&self, path: &Path) -> String {
        let is_file = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
        if is_file {
            return "left in place".into();
        }
        let dir = self.root.join("quarantine");
        let name = format!(
            "{}-{:x}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            rand::random::<u32>()
        );
        match fs::create_dir_all(&dir).and_then(|_| fs::rename(path, dir.join(&name))) {
            Ok(()) => format!("moved to {}", dir.join(name).display()),
            Err(e) => format!("could not be moved aside: {e}"),
        }
    }

    fn corrupt<T>(&self, at: &dyn std::fmt::Display, why: &str) -> Option<T> {
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "cache entry {at} is corrupt ({why}); treating it as a miss and fetching again"
        );
        None
    }

    /// Writes an entry (a record of this process's pack segment; no fsync, see `sync`).
    pub fn put<T: Serialize>(&self, key: &Key, kind: &str, value: &T) -> Result<()> {
        let bytes = encode(key, kind, value)?;
        self.store(key, bytes)
    }

    /// Stores an entry's bytes: appended to the pack, or for a key that is not 64 hex
    /// characters (none made by `Key::of`), a loose file.
    fn store(&self, key: &Key, bytes: Vec<u8>) -> Result<()> {
        match pack::raw_of(&key.0) {
            Some(raw) => self
                .packs
                .append(&raw, Some(&bytes))
                .with_context(|| format!("writing to {}", self.root.join("packs").display()))?,
            None => self.write_loose(key, &bytes)?,
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.tell_written(key, bytes);
        Ok(())
    }

    fn write_loose(&self, key: &Key, bytes: &[u8]) -> Result<()> {
        let path = self.entry_path(key);
        let dir = path.parent().expect("has parent");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{:x}",
            crate::atomic::pid(),
            rand::random::<u64>()
        ));
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        self.clear_non_file(&path);
        fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))
    }

    /// Writes an entry unless a usable one is already there (several processes answering
    /// the same call: the first stored answer wins; single-flight makes the check and the
    /// write one step across processes). `usable` judges an existing entry's value; an
    /// unusable or unreadable one is replaced. Returns the value now stored.
    pub fn put_first<T: Serialize + DeserializeOwned>(
        &self,
        key: &Key,
        kind: &str,
        value: T,
        usable: impl Fn(&T) -> bool,
    ) -> Result<T> {
        if let Some(v) = self.peek::<T>(key, kind).filter(|v| usable(v)) {
            return Ok(v);
        }
        self.put(key, kind, &value)?;
        Ok(value)
    }

    /// A directory (or other non-file) where a loose entry goes is moved to `quarantine/`.
    fn clear_non_file(&self, path: &Path) {
        if fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
            let moved = self.quarantine(path);
            tracing::warn!("cache: {} was not an entry file; {moved}", path.display());
        }
    }

    /// Forgets an entry (a response that turned out unusable, e.g. an unreadable verdict).
    pub fn remove(&self, key: &Key) {
        if let Some(raw) = pack::raw_of(&key.0)
            && let Err(e) = self.packs.append(&raw, None)
        {
            tracing::warn!("cache: recording the removal of {}: {e}", key.0);
        }
        let _ = fs::remove_file(self.entry_path(key));
        if let Some(t) = &self.tier {
            t.removed(key);
        }
    }

    /// Seals this process's pack segment and flushes the cache's files to disk once (called
    /// at the end of a run).
    pub fn sync(&self) {
        self.packs.seal();
        // a run that wrote nothing (a warm rerun) has nothing of its own to flush
        if self.counters.writes.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(f) = fs::File::open(&self.root) {
            // flushes the cache's file system only, not every disk of the machine
            let _ = rustix::fs::syncfs(&f);
        }
    }
}

/// An entry's stored bytes: header, checksum, length, compressed payload.
fn encode<T: Serialize>(key: &Key, kind: &str, value: &T) -> Result<Vec<u8>> {
    // the fields in the order a JSON object of them sorts to (the bytes, and so the
    // checksum, of earlier versions' entries), serialized without copying `value`
    #[derive(Serialize)]
    struct Fields<'a, T> {
        key: &'a str,
        kind: &'a str,
        value: &'a T,
    }
    let payload = serde_json::to_vec(&Fields {
        key: &key.0,
        kind,
        value,
    })?;
    let compressed = compress(&payload)?;
    let mut buf = Vec::with_capacity(HEADER + compressed.len());
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(blake3::hash(&payload).as_bytes());
    buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    buf.extend_from_slice(&compressed);
    Ok(buf)
}

fn decode<T: DeserializeOwned>(bytes: &[u8], key: &Key) -> Result<(String, T), String> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("bad header".into());
    }
    let sum = &bytes[8..40];
    let len = u64::from_le_bytes(bytes[40..48].try_into().expect("8 bytes"));
    if len > MAX_PAYLOAD {
        return Err("bad length".into());
    }
    let payload = decompress(&bytes[HEADER..], len as usize)
        .map_err(|e| format!("decompression failed: {e}"))?;
    if payload.len() as u64 != len || blake3::hash(&payload).as_bytes() != sum {
        return Err("checksum mismatch".into());
    }
    let env: Envelope<T> =
        serde_json::from_slice(&payload).map_err(|e| format!("bad payload: {e}"))?;
    if env.key != key.0 {
        return Err("entry holds another key".into());
    }
    Ok((env.kind, env.value))
}

#[cfg(test)]
mod tests;
