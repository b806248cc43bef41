//! The content-addressed cache of model calls and node outputs.
//!
//! A key is the blake3 hash of a canonical JSON form (object keys sorted) of everything that
//! determines a response; callers build that material (`calls`), this module never sees
//! an API key. An entry is one file `objects/ab/cdef…`: a magic line, the blake3 of the
//! payload, then the zstd-compressed payload `{"key", "kind", "value"}`. Reads verify both the
//! checksum and the key, so a corrupt or misplaced file is a miss (counted and reported),
//! never a wrong answer. Writes go to a temporary file in the same folder and are renamed
//! (or, where the first stored answer must win, hard-linked) into place, so several
//! processes can share one directory; errors are never stored. A second tier (the remote
//! cache, `crate::remote`) may sit behind the directory through the [`Tier`] trait: read
//! after a local miss and verified here, told of every entry written.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

mod key;
mod tier;
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
        let objects = root.join("objects");
        fs::create_dir_all(&objects)
            .with_context(|| format!("creating cache directory {}", root.display()))?;
        for i in 0..256 {
            let d = objects.join(format!("{i:02x}"));
            if !d.exists() {
                fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            }
        }
        Ok(Cache {
            root: root.to_path_buf(),
            counters: Counters::default(),
            tier: None,
        })
    }

    /// Checks that entries can be written (a run that may send needs it; a plan or an
    /// offline run does not): creates and removes an empty file where entries go. A
    /// read-only or forbidden directory fails here; a full disk only when an entry is
    /// written (answers are then kept and the run ends with exit 1).
    pub fn check_writable(&self) -> Result<()> {
        let probe = self
            .root
            .join("objects")
            .join("00")
            .join(format!(".tmp-probe-{}", crate::atomic::pid()));
        fs::File::create(&probe).with_context(|| {
            format!(
                "the cache directory {} cannot be written",
                self.root.display()
            )
        })?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of an entry (its single-flight lock is this path + `.lock`).
    pub fn entry_path(&self, key: &Key) -> PathBuf {
        self.root
            .join("objects")
            .join(&key.0[..2])
            .join(&key.0[2..])
    }

    /// Reads and verifies an entry. A corrupt entry is a miss and is reported once.
    pub fn get<T: DeserializeOwned>(&self, key: &Key, kind: &str) -> Option<T> {
        let path = self.entry_path(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // a directory or other non-file where an entry belongs: moved aside, so
                    // the answer fetched again can be written
                    let moved = self.quarantine(&path);
                    return self.corrupt(&path, &format!("unreadable: {e}; {moved}"));
                }
                if let Some(v) = self.read_through(key, kind) {
                    return Some(v);
                }
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        match decode::<T>(&bytes, key) {
            Ok((k, v)) if k == kind => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(v)
            }
            Ok((k, _)) => self.corrupt(
                &path,
                &format!("a {k} entry where a {kind} entry was expected"),
            ),
            Err(e) => self.corrupt(&path, &e),
        }
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

    fn corrupt<T>(&self, path: &Path, why: &str) -> Option<T> {
        self.counters.corrupt.fetch_add(1, Ordering::Relaxed);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "cache entry {} is corrupt ({why}); treating it as a miss and fetching again",
            path.display()
        );
        None
    }

    /// Writes an entry atomically (temporary file + rename; no fsync, see `sync`).
    pub fn put<T: Serialize>(&self, key: &Key, kind: &str, value: &T) -> Result<()> {
        let (tmp, path) = self.write_tmp(key, kind, value)?;
        if fs::rename(&tmp, &path).is_err() {
            // a directory in the entry's place: moved aside, then the rename is retried
            self.clear_non_file(&path);
            fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.tell_written(key);
        Ok(())
    }

    /// Writes an entry unless a usable one is already there (several processes answering
    /// the same call: the first stored answer wins). `usable` judges an existing entry's
    /// value; an unusable or unreadable one is replaced. Returns the value now stored.
    pub fn put_first<T: Serialize + DeserializeOwned>(
        &self,
        key: &Key,
        kind: &str,
        value: T,
        usable: impl Fn(&T) -> bool,
    ) -> Result<T> {
        let (tmp, path) = self.write_tmp(key, kind, &value)?;
        match rename_noreplace(&tmp, &path) {
            Ok(()) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.tell_written(key);
                return Ok(value);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let existing = fs::read(&path)
                    .ok()
                    .and_then(|b| decode::<T>(&b, key).ok())
                    .filter(|(k, v)| k == kind && usable(v));
                if let Some((_, v)) = existing {
                    let _ = fs::remove_file(&tmp);
                    return Ok(v);
                }
                // unusable, or not an entry file at all (a directory is moved aside)
                self.clear_non_file(&path);
            }
            // file systems with neither renameat2 nor hard links: a plain rename
            Err(_) => {}
        }
        fs::rename(&tmp, &path).with_context(|| format!("renaming into {}", path.display()))?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.tell_written(key);
        Ok(value)
    }

    /// A directory (or other non-file) where an entry goes is moved to `quarantine/`.
    fn clear_non_file(&self, path: &Path) {
        if fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
            let moved = self.quarantine(path);
            tracing::warn!("cache: {} was not an entry file; {moved}", path.display());
        }
    }

    /// Writes an entry's bytes to a temporary file beside its place; returns both paths.
    fn write_tmp<T: Serialize>(
        &self,
        key: &Key,
        kind: &str,
        value: &T,
    ) -> Result<(PathBuf, PathBuf)> {
        let payload =
            serde_json::to_vec(&serde_json::json!({"key": key.0, "kind": kind, "value": value}))?;
        let compressed = compress(&payload)?;
        let path = self.entry_path(key);
        let dir = path.parent().expect("has parent");
        let tmp = tmp_beside(dir);
        let mut buf = Vec::with_capacity(HEADER + compressed.len());
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(blake3::hash(&payload).as_bytes());
        buf.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        buf.extend_from_slice(&compressed);
        if let Err(e) = fs::write(&tmp, &buf) {
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", tmp.display()));
        }
        Ok((tmp, path))
    }

    /// Forgets an entry (a response that turned out unusable, e.g. an unreadable verdict).
    pub fn remove(&self, key: &Key) {
        let _ = fs::remove_file(self.entry_path(key));
        if let Some(t) = &self.tier {
            t.removed(key);
        }
    }

    /// Flushes the cache's files to disk once (called at the end of a run).
    pub fn sync(&self) {
        // a run that wrote nothing (a warm rerun) has nothing of its own to flush
        if self.counters.writes.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Ok(f) = fs::File::open(self.root.join("objects")) {
            // flushes the cache's file system only, not every disk of the machine
            let _ = rustix::fs::syncfs(&f);
        }
    }

    /// Every entry: (key, path).
    pub fn entries(&self) -> Vec<(Key, PathBuf)> {
        let mut out = Vec::new();
        let Ok(dirs) = fs::read_dir(self.root.join("objects")) else {
            return out;
        };
        for d in dirs.flatten() {
            let prefix = d.file_name().to_string_lossy().to_string();
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with(".tmp-") || name.ends_with(".lock") {
                    continue;
                }
                out.push((Key(format!("{prefix}{name}")), f.path()));
            }
        }
        out.sort();
        out
    }

    /// Adds an entry's stored bytes brought from elsewhere (`distill cache import`): checked
    /// first (header, checksum, the key it says it is); an entry already here and sound is
    /// kept. Returns whether it was added.
    pub fn install(&self, key: &Key, bytes: &[u8]) -> Result<bool, String> {
        if key.0.len() < 3 || !key.0.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{}` is not a cache key", key.0));
        }
        decode::<serde::de::IgnoredAny>(bytes, key)?;
        let path = self.entry_path(key);
        if fs::read(&path).is_ok_and(|b| decode::<serde::de::IgnoredAny>(&b, key).is_ok()) {
            return Ok(false);
        }
        let dir = path.parent().expect("has parent");
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.clear_non_file(&path);
        let tmp = tmp_beside(dir);
        fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("renaming into {}: {e}", path.display()))?;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Reads one entry's kind and value after verifying it (for `cache verify`).
    pub fn read_entry(&self, key: &Key, path: &Path) -> Result<(String, Value), String> {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        decode::<Value>(&bytes, key)
    }

    /// Reads one entry's kind after verifying it (for `cache verify|stats`).
    pub fn verify_entry(&self, key: &Key, path: &Path) -> Result<String, String> {
        let bytes = fs::read(path).map_err(|e| e.to_string())?;
        let (kind, _) = decode::<serde::de::IgnoredAny>(&bytes, key)?;
        Ok(kind)
    }
}

/// A temporary file's name in `dir` (renamed into place once written; `entries` skips it).
fn tmp_beside(dir: &Path) -> PathBuf {
    dir.join(format!(
        ".tmp-{}-{:x}",
        crate::atomic::pid(),
        rand::random::<u64>()
    ))
}

/// Moves `tmp` to `path` unless `path` exists (`AlreadyExists` then): one `renameat2`
/// with `RENAME_NOREPLACE`, or where the file system lacks it, a hard link (which never
/// replaces either) and the removal of `tmp`.
fn rename_noreplace(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            fs::hard_link(tmp, path)?;
            let _ = fs::remove_file(tmp);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
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
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_directory_in_an_entrys_place_is_a_miss_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let k = Key::of(&json!({"x": 4}));
        fs::create_dir_all(c.entry_path(&k).join("inner")).unwrap();
        assert!(c.get::<Value>(&k, "call").is_none());
        assert_eq!(c.counters.corrupt.load(Ordering::Relaxed), 1);
        assert!(!c.entry_path(&k).exists(), "moved aside");
        assert_eq!(
            fs::read_dir(dir.path().join("quarantine")).unwrap().count(),
            1
        );
        // and the entry fetched again can be written, by either writer
        fs::create_dir_all(c.entry_path(&k)).unwrap();
        c.put(&k, "call", &json!({"ok": true})).unwrap();
        assert_eq!(c.get::<Value>(&k, "call").unwrap()["ok"], true);
        let k2 = Key::of(&json!({"x": 5}));
        fs::create_dir_all(c.entry_path(&k2)).unwrap();
        let v = c.put_first(&k2, "call", json!({"n": 1}), |_| true).unwrap();
        assert_eq!(v["n"], 1);
        assert_eq!(c.get::<Value>(&k2, "call").unwrap()["n"], 1);
    }

    #[test]
    fn the_first_usable_answer_stays() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let k = Key::of(&json!({"x": 3}));
        let ok = |v: &Value| v["ok"] == true;
        assert_eq!(
            c.put_first(&k, "call", json!({"ok": true, "n": 1}), ok)
                .unwrap()["n"],
            1
        );
        // a second answer to the same call does not replace the first
        assert_eq!(
            c.put_first(&k, "call", json!({"ok": true, "n": 2}), ok)
                .unwrap()["n"],
            1
        );
        assert_eq!(c.get::<Value>(&k, "call").unwrap()["n"], 1);
        // an unusable stored entry is replaced
        c.put(&k, "call", &json!({"ok": false})).unwrap();
        assert_eq!(
            c.put_first(&k, "call", json!({"ok": true, "n": 3}), ok)
                .unwrap()["n"],
            3
        );
        assert_eq!(c.get::<Value>(&k, "call").unwrap()["n"], 3);
        let leftovers = std::fs::read_dir(c.entry_path(&k).parent().unwrap())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn roundtrip_and_corruption_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path()).unwrap();
        let k = Key::of(&json!({"x": 1}));
        assert!(c.get::<Value>(&k, "call").is_none());
        c.put(&k, "call", &json!({"text": "hello"})).unwrap();
        assert_eq!(c.get::<Value>(&k, "call").unwrap()["text"], "hello");
        assert!(c.get::<Value>(&k, "node").is_none(), "kind is checked");
        let p = c.entry_path(&k);
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        fs::write(&p, bytes).unwrap();
        assert!(c.get::<Value>(&k, "call").is_none());
        assert!(c.counters.corrupt.load(Ordering::Relaxed) >= 1);
        // moved to another key's place: also a miss
        let k2 = Key::of(&json!({"x": 2}));
        c.put(&k, "call", &json!(1)).unwrap();
        fs::create_dir_all(c.entry_path(&k2).parent().unwrap()).unwrap();
        fs::copy(c.entry_path(&k), c.entry_path(&k2)).unwrap();
        assert!(c.get::<Value>(&k2, "call").is_none());
    }
}
