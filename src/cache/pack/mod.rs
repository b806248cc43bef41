//! Pack segments: where the cache writes its entries and how every process finds them.
//!
//! An entry costs an inode on most file systems when it is a file of its own (on ext4,
//! allocating it was half the CPU of a cold run). A process that writes instead appends
//! to one segment of its own, `packs/<stamp>-<pid>-<rand>.pack`, holding an exclusive
//! `flock` on it while it is open, and lists its name in `packs/segments.log` before the
//! first record. Each record is a checked header and the entry's bytes in the loose format,
//! so a record is verified exactly as a file is. A segment is sealed when its writer closes
//! it (the end of a run, or past a size): a sorted index `<name>.idx` is written beside it.
//! A segment without an index whose lock is free belongs to a process that died; the next
//! process to open the cache indexes what it holds (a torn last record is cut off). A live
//! segment of another process is read by scanning its new tail, checked on every miss
//! (one `statx` of the log, one `fstat` per live segment), so a process waiting on another's
//! single-flight lock finds the answer the moment it is written. Lookups go newest segment
//! first; a removal is a record too.

mod format;

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use rustix::fs::{FlockOperation, flock};

use format::{Index, REC, Rec, SEG_MAGIC, header, hex_of, scan, write_index};
pub use format::{Raw, raw_of};

/// The file listing every segment (one name per line, in creation order).
const LOG: &str = "segments.log";
/// A segment is sealed and another begun past this many records or bytes.
const ROLL_RECORDS: usize = 65_536;
const ROLL_BYTES: u64 = 1 << 30;

/// Where a stored entry's bytes are.
#[derive(Clone)]
pub struct Found {
    file: Arc<File>,
    /// The segment's name (for messages).
    pub segment: Arc<str>,
    pub off: u64,
    pub len: u32,
}

impl Found {
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len as usize];
        self.file.read_exact_at(&mut buf, self.off)?;
        Ok(buf)
    }
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "packs/{}.pack at byte {}", self.segment, self.off)
    }
}

enum Lookup {
    Sealed(Index),
    /// Read up to `scanned` (another process's segment still being written, or this
    /// process's own).
    Live {
        scanned: u64,
        map: HashMap<Raw, Rec>,
    },
}

struct Seg {
    name: Arc<str>,
    file: Arc<File>,
    lookup: Lookup,
}

impl Seg {
    fn get(&self, key: &Raw) -> Option<Rec> {
        match &self.lookup {
            Lookup::Sealed(i) => i.get(key),
            Lookup::Live { map, .. } => map.get(key).copied(),
        }
    }

    fn found(&self, r: Rec) -> Option<Found> {
        (!r.removed).then(|| Found {
            file: self.file.clone(),
            segment: self.name.clone(),
            off: r.off,
            len: r.len,
        })
    }
}

/// The segments of other processes (and this one's sealed ones), newest first.
#[derive(Default)]
struct View {
    segs: Vec<Seg>,
    /// (inode, size) of the log when last read.
    log: (u64, u64),
}

struct Writer {
    seg: Seg,
    off: u64,
}

pub struct Packs {
    dir: PathBuf,
    view: RwLock<View>,
    writer: Mutex<Option<Writer>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Packs {
    /// The packs of a cache directory (created on the first write).
    pub fn open(root: &Path) -> Packs {
        let p = Packs {
            dir: root.join("packs"),
            view: RwLock::default(),
            writer: Mutex::new(None),
        };
        p.refresh();
        p
    }

    /// The stored entry of `key`, if any (a removal hides older records).
    pub fn get(&self, key: &Raw) -> Option<Found> {
        if let Some(w) = lock(&self.writer).as_ref()
            && let Some(r) = w.seg.get(key)
        {
            return w.seg.found(r);
        }
        if let Some(hit) = self.lookup(key) {
            return hit;
        }
        // a miss: another process may have written it meanwhile
        if self.refresh() {
            return self.lookup(key).flatten();
        }
        None
    }

    /// Some(found or removed) when a segment of the view holds a record of `key`.
    fn lookup(&self, key: &Raw) -> Option<Option<Found>> {
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        v.segs.iter().find_map(|s| s.get(key).map(|r| s.found(r)))
    }

    /// Appends an entry (or, with `body` None, a removal) to this process's segment.
    pub fn append(&self, key: &Raw, body: Option<&[u8]>) -> std::io::Result<()> {
        let removed = body.is_none();
        let body = body.unwrap_or(&[]);
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= format::MAX_BODY)
            .ok_or_else(|| std::io::Error::other("entry too large for a pack"))?;
        let mut w = lock(&self.writer);
        if w.is_none() {
            *w = Some(self.begin()?);
        }
        let wr = w.as_mut().expect("set above");
        let mut rec = Vec::with_capacity(REC + body.len());
        rec.extend_from_slice(&header(key, len, removed));
        rec.extend_from_slice(body);
        (&*wr.seg.file).write_all(&rec)?;
        let off = wr.off + REC as u64;
        wr.off += rec.len() as u64;
        let Lookup::Live { map, scanned } = &mut wr.seg.lookup else {
            unreachable!("a writer's segment is live")
        };
        map.insert(*key, Rec { off, len, removed });
        *scanned = wr.off;
        if map.len() >= ROLL_RECORDS || wr.off >= ROLL_BYTES {
            let done = w.take().expect("set above");
            drop(w);
            self.seal_own(done);
        }
        Ok(())
    }

    /// A new segment of this process: created, locked, then listed in the log.
    fn begin(&self) -> std::io::Result<Writer> {
        fs::create_dir_all(&self.dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "{stamp:020}-{}-{:08x}",
            crate::atomic::pid(),
            rand::random::<u32>()
        );
        let path = self.dir.join(format!("{name}.pack"));
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        flock(&f, FlockOperation::NonBlockingLockExclusive)?;
        f.write_all(SEG_MAGIC)?;
        let _listing = self.log_lock(false)?;
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(LOG))?;
        log.write_all(format!("{name}\n").as_bytes())?;
        Ok(Writer {
            seg: Seg {
                name: name.into(),
                file: Arc::new(f),
                lookup: Lookup::Live {
                    scanned: SEG_MAGIC.len() as u64,
                    map: HashMap::new(),
                },
            },
            off: SEG_MAGIC.len() as u64,
        })
    }

    /// The lock that keeps a rewrite of the log (`forget`, exclusive) from losing a name
    /// being added (`begin`, shared).
    fn log_lock(&self, exclusive: bool) -> std::io::Result<File> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(".log.lock"))?;
        flock(
            &f,
            if exclusive {
                FlockOperation::LockExclusive
            } else {
                FlockOperation::LockShared
            },
        )?;
        Ok(f)
    }

    /// Seals this process's segment (its index written, its lock released); later writes
    /// begin a new one. Called at the end of a run and when the cache is dropped.
    pub fn seal(&self) {
        let w = lock(&self.writer).take();
        if let Some(w) = w {
            self.seal_own(w);
        }
    }

    fn seal_own(&self, w: Writer) {
        let Writer { seg, .. } = w;
        let Lookup::Live { map, .. } = &seg.lookup else {
            return;
        };
        let idx = self.dir.join(format!("{}.idx", seg.name));
        if let Err(e) = write_index(&idx, map) {
            tracing::warn!(
                "cache: indexing {}: {e} (the next run indexes it)",
                seg.name
            );
        }
        let _ = flock(&*seg.file, FlockOperation::Unlock);
        let size = seg.file.metadata().map(|m| m.len()).unwrap_or(0);
        let seg = match Index::open(&idx, size) {
            Some(i) => Seg {
                lookup: Lookup::Sealed(i),
                ..seg
            },
            None => seg,
        };
        // readable from the view from now on, newest first
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        let at = v
            .segs
            .iter()
            .position(|s| s.name < seg.name)
            .unwrap_or(v.segs.len());
        v.segs.insert(at, seg);
    }

    /// Reads what changed since the last look: new segments in the log, new records of live
    /// segments. Returns whether anything did.
    fn refresh(&self) -> bool {
        let Ok(meta) = fs::metadata(self.dir.join(LOG)) else {
            return false;
        };
        let id = (meta.ino(), meta.len());
        let grown = |s: &Seg| match &s.lookup {
            Lookup::Live { scanned, .. } => {
                s.file.metadata().map(|m| m.len()).unwrap_or(0) > *scanned
            }
            Lookup::Sealed(_) => false,
        };
        {
            let v = self.view.read().unwrap_or_else(|e| e.into_inner());
            if v.log == id && !v.segs.iter().any(grown) {
                return false;
            }
        }
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        if v.log != id {
            let replaced = id.0 != v.log.0;
            changed |= self.read_log(&mut v, replaced);
            v.log = id;
        }
        for s in v.segs.iter_mut() {
            if let Lookup::Live { scanned, map } = &mut s.lookup {
                let size = s.file.metadata().map(|m| m.len()).unwrap_or(0);
                if size > *scanned {
                    let before = *scanned;
                    *scanned = scan(&s.file, *scanned, size, map);
                    changed |= *scanned > before;
                }
            }
        }
        changed
    }

    /// Opens the segments the log names that the view lacks (and, when the log was
    /// rewritten by `rewrite`, drops the ones it no longer names).
    fn read_log(&self, v: &mut View, replaced: bool) -> bool {
        let Ok(text) = fs::read_to_string(self.dir.join(LOG)) else {
            return false;
        };
        let listed: HashSet<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let own = lock(&self.writer).as_ref().map(|w| w.seg.name.clone());
        if replaced {
            v.segs.retain(|s| listed.contains(&*s.name));
        }
        let known: HashSet<Arc<str>> = v.segs.iter().map(|s| s.name.clone()).collect();
        let mut added = false;
        for name in listed {
            if known.contains(name) || own.as_deref() == Some(name) {
                continue;
            }
            if let Some(s) = self.open_seg(name) {
                v.segs.push(s);
                added = true;
            }
        }
        v.segs.sort_by(|a, b| b.name.cmp(&a.name));
        added
    }

    /// Opens a listed segment: its index if sealed; else, if its writer is gone, indexes it
    /// now; else scans it as live.
    fn open_seg(&self, name: &str) -> Option<Seg> {
        let path = self.dir.join(format!("{name}.pack"));
        let idx = self.dir.join(format!("{name}.idx"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path))
            .ok()?;
        let size = file.metadata().ok()?.len();
        let name: Arc<str> = name.into();
        if let Some(i) = Index::open(&idx, size) {
            return Some(Seg {
                name,
                file: Arc::new(file),
                lookup: Lookup::Sealed(i),
            });
        }
        let mut map = HashMap::new();
        let scanned = scan(&file, 0, size, &mut map);
        // a free lock: its writer is gone (or sealing it right now: the index is re-checked)
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            if Index::open(&idx, size).is_none() {
                if scanned < size {
                    // a torn last record of a process that died mid-write
                    let _ = file.set_len(scanned);
                }
                if let Err(e) = write_index(&idx, &map) {
                    tracing::debug!("cache: indexing the segment {name}: {e}");
                }
            }
            let _ = flock(&file, FlockOperation::Unlock);
        }
        Some(Seg {
            name,
            file: Arc::new(file),
            lookup: Lookup::Live { scanned, map },
        })
    }

    /// Every stored entry (the newest record of each key, removals left out).
    pub fn entries(&self) -> Vec<(String, Found)> {
        self.seal();
        self.refresh();
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for s in &v.segs {
            let recs: Vec<(Raw, Rec)> = match &s.lookup {
                Lookup::Sealed(i) => i.all().collect(),
                Lookup::Live { map, .. } => map.iter().map(|(k, r)| (*k, *r)).collect(),
            };
            for (k, r) in recs {
                if seen.insert(k)
                    && let Some(f) = s.found(r)
                {
                    out.push((hex_of(&k), f));
                }
            }
        }
        out
    }

    /// Drops the records of `keys` from every sealed segment that holds one: the segments
    /// are rewritten into one new segment holding every other entry they decided, then
    /// removed. Segments still being written by a live process are left (counted in the
    /// returned number of entries that could not be dropped).
    pub fn drop_keys(&self, keys: &HashSet<String>) -> std::io::Result<usize> {
        self.seal();
        self.refresh();
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        let mut left = 0;
        let mut old = Vec::new();
        let mut keep: Vec<(Raw, Found)> = Vec::new();
        let mut seen = HashSet::new();
        let any_live = v.segs.iter().any(|s| is_live(&s.file));
        let mut removals = Vec::new();
        let mut dropped = 0;
        for s in &v.segs {
            let recs: Vec<(Raw, Rec)> = match &s.lookup {
                Lookup::Sealed(i) => i.all().collect(),
                Lookup::Live { map, .. } => map.iter().map(|(k, r)| (*k, *r)).collect(),
            };
            let live = is_live(&s.file);
            if live {
                left += recs
                    .iter()
                    .filter(|(k, _)| keys.contains(&hex_of(k)))
                    .count();
                seen.extend(recs.iter().map(|(k, _)| *k));
                continue;
            }
            old.push(s.name.clone());
            for (k, r) in recs {
                if !seen.insert(k) {
                    continue;
                }
                if keys.contains(&hex_of(&k)) {
                    dropped += 1;
                    continue;
                }
                match s.found(r) {
                    Some(f) => keep.push((k, f)),
                    // a removal still hides what an older live segment may hold
                    None if any_live => removals.push(k),
                    None => {}
                }
            }
        }
        drop(v);
        // nothing to drop and nothing to merge
        if old.is_empty() || (dropped == 0 && old.len() == 1) {
            return Ok(left);
        }
        for (k, f) in &keep {
            self.append(k, Some(&f.read()?))?;
        }
        for k in &removals {
            self.append(k, None)?;
        }
        self.seal();
        self.forget(&old)?;
        Ok(left)
    }

    /// Removes segments (rewritten elsewhere) and their names from the log.
    fn forget(&self, names: &[Arc<str>]) -> std::io::Result<()> {
        let gone: HashSet<&str> = names.iter().map(|n| &**n).collect();
        let log = self.dir.join(LOG);
        let _listing = self.log_lock(true)?;
        let text = fs::read_to_string(&log)?;
        let kept: String = text
            .lines()
            .filter(|l| !gone.contains(l.trim()))
            .map(|l| format!("{l}\n"))
            .collect();
        let tmp = self
            .dir
            .join(format!(".{LOG}.tmp-{:x}", rand::random::<u64>()));
        fs::write(&tmp, kept)?;
        fs::rename(&tmp, &log)?;
        for n in names {
            let _ = fs::remove_file(self.dir.join(format!("{n}.pack")));
            let _ = fs::remove_file(self.dir.join(format!("{n}.idx")));
        }
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.segs.retain(|s| !gone.contains(&*s.name));
        Ok(())
    }
}

/// Whether a process holds a segment's lock (is still writing it).
fn is_live(file: &File) -> bool {
    if flock(file, FlockOperation::NonBlockingLockShared).is_ok() {
        let _ = flock(file, FlockOperation::Unlock);
        return false;
    }
    true
}

impl Drop for Packs {
    fn drop(&mut self) {
        self.seal();
    }
}

#[cfg(test)]
mod tests;
