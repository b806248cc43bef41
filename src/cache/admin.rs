//! The cache's maintenance side (`distill cache stats|verify|gc|export|import|push|pull`):
//! listing every entry wherever it is stored ([`Where`]), reading and checking one,
//! installing entries brought from elsewhere and dropping entries.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{Cache, Key, decode, pack};

/// Where one entry is stored: a loose file or a record of a pack segment.
#[derive(Clone)]
pub enum Where {
    Loose(PathBuf),
    Pack(pack::Found),
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Loose(p) => write!(f, "{}", p.display()),
            Where::Pack(found) => write!(f, "{found}"),
        }
    }
}

impl Where {
    /// The entry's stored bytes (unverified).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        match self {
            Where::Loose(p) => fs::read(p),
            Where::Pack(f) => f.read(),
        }
    }

    /// Its stored size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            Where::Loose(p) => fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            Where::Pack(f) => f.len as u64,
        }
    }
}

/// Whether a file name in `objects/ab/` is a loose entry (not a temporary or lock file).
pub(super) fn is_entry_name(name: &std::ffi::OsStr) -> bool {
    let n = name.to_string_lossy();
    !n.starts_with(".tmp-") && !n.ends_with(".lock")
}

impl Cache {
    /// Every entry, sorted by key: pack records first; a loose file of a key no pack holds.
    pub fn entries(&self) -> Vec<(Key, Where)> {
        let mut out: Vec<(Key, Where)> = self
            .packs
            .entries()
            .into_iter()
            .map(|(k, f)| (Key(k), Where::Pack(f)))
            .collect();
        let packed: HashSet<String> = out.iter().map(|(k, _)| k.0.clone()).collect();
        if let Ok(dirs) = fs::read_dir(self.root.join("objects")) {
            for d in dirs.flatten() {
                let prefix = d.file_name().to_string_lossy().to_string();
                let Ok(files) = fs::read_dir(d.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    if !is_entry_name(&f.file_name()) {
                        continue;
                    }
                    let key = format!("{prefix}{}", f.file_name().to_string_lossy());
                    if !packed.contains(&key) {
                        out.push((Key(key), Where::Loose(f.path())));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The stored bytes of `key`'s entry, if any (unverified).
    pub fn bytes_of(&self, key: &Key) -> Option<Vec<u8>> {
        self.find(key)?.read().ok()
    }

    /// Adds an entry's stored bytes brought from elsewhere (`distill cache import`, the
    /// remote cache): checked first (header, checksum, the key it says it is); an entry
    /// already here and sound is kept. Returns whether it was added.
    pub fn install(&self, key: &Key, bytes: &[u8]) -> Result<bool, String> {
        if key.0.len() < 3 || !key.0.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{}` is not a cache key", key.0));
        }
        decode::<serde::de::IgnoredAny>(bytes, key)?;
        if self.verify(key).is_ok() {
            return Ok(false);
        }
        match pack::raw_of(&key.0) {
            Some(raw) => self
                .packs
                .append(&raw, Some(bytes))
                .map_err(|e| format!("writing to {}: {e}", self.root.join("packs").display()))?,
            None => self.write_loose(key, bytes).map_err(|e| format!("{e:#}"))?,
        }
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The kind of `key`'s entry if one is stored and sound.
    pub fn verify(&self, key: &Key) -> Result<String, String> {
        let at = self.find(key).ok_or("not stored")?;
        self.verify_entry(key, &at)
    }

    /// Reads one entry's kind and value after verifying it (for `cache verify`).
    pub fn read_entry(&self, key: &Key, at: &Where) -> Result<(String, Value), String> {
        let bytes = at.read().map_err(|e| e.to_string())?;
        decode::<Value>(&bytes, key)
    }

    /// Reads one entry's kind after verifying it (for `cache verify|stats`).
    pub fn verify_entry(&self, key: &Key, at: &Where) -> Result<String, String> {
        let bytes = at.read().map_err(|e| e.to_string())?;
        let (kind, _) = decode::<serde::de::IgnoredAny>(&bytes, key)?;
        Ok(kind)
    }

    /// Drops entries (`cache gc --yes`, `cache verify --delete`): loose files are removed,
    /// pack segments holding any are rewritten without them. Returns how many could not be
    /// dropped because a running process is still writing the segment that holds them.
    pub fn drop_entries(&self, entries: &[(Key, Where)]) -> std::io::Result<usize> {
        let mut packed = HashSet::new();
        for (k, at) in entries {
            match at {
                Where::Loose(p) => {
                    let _ = fs::remove_file(p);
                }
                Where::Pack(_) => {
                    packed.insert(k.0.clone());
                }
            }
        }
        if packed.is_empty() {
            return Ok(0);
        }
        self.packs.drop_keys(&packed)
    }

    /// Merges the sealed pack segments into one (`cache gc --yes`: every lookup reads each
    /// segment's index, so many small segments of many runs slow misses down).
    pub fn compact(&self) -> std::io::Result<()> {
        self.packs.drop_keys(&HashSet::new()).map(|_| ())
    }
}
