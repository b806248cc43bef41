//! Pack segments: where the cache writes its entries and how every process finds them.
//!
//! An entry costs an inode on most file systems when it is a file of its own (on ext4,
//! allocating it was half the CPU of a cold run). A process that writes instead appends
//! to one segment of its own, `packs/<stamp>-<pid>-<rand>.pack`, holding an exclusive
//! `flock` on it while it is open, and lists its name in `packs/segments.log` first. Each
//! record is a checked header and the entry's bytes in the loose format, so a record is
//! verified exactly as a file is. A segment is sealed when its writer closes it (the end of
//! a run, or past 14,336 records or 1 GiB): a sorted index `<name>.idx` with a Bloom filter
//! is written beside it. A segment without an index whose lock is free belongs to a process
//! that died; the next process to open the cache indexes what it holds (a torn last record
//! is left unindexed). A live segment of another process is read by scanning its new tail,
//! checked on every miss (one `statx` of the log, one `fstat` per live segment), so a
//! process waiting on another's single-flight lock finds the answer the moment it is
//! written. Lookups go newest segment (by the time it was begun) first; a removal is a
//! record too. `drop_keys` merges sealed segments (`cache gc`, `cache verify --delete`).
//! Locks: `writer` before `view`; `own` and `unindexed` are taken last and alone.

mod format;
mod merge;
use merge::records;

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
/// A segment is sealed and another begun past this many records or bytes. The records of
/// the segment being written are held in memory (a map of 16,384 buckets at most, 0.8 MB;
/// sealed segments cost only their index's header and filter pages): what a run holds does
/// not grow with what it writes.
const ROLL_RECORDS: usize = 14_336;
const ROLL_BYTES: u64 = 1 << 30;
/// After a segment could not be begun (a full disk, no descriptors), writes fail at once
/// for this long before the next try.
const RETRY_BEGIN: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// Names the log lists whose segment is gone (not looked for again).
    gone: HashSet<Arc<str>>,
    /// (inode, size, change time in ns) of the log when last read in full.
    log: (u64, u64, i128),
}

struct Writer {
    seg: Seg,
    off: u64,
}

impl Writer {
    /// Writes one record (an entry, or with `body` None a removal) and adds it to the
    /// segment's map; returns how many records the map holds. A partial record would shift
    /// every later offset: it is cut off, and if that fails too, `Err(_, true)` says the
    /// segment must end here.
    fn push(&mut self, key: &Raw, body: Option<&[u8]>) -> Result<usize, (std::io::Error, bool)> {
        let removed = body.is_none();
        let body = body.unwrap_or(&[]);
        let len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= format::MAX_BODY)
            .ok_or_else(|| (std::io::Error::other("entry too large for a pack"), false))?;
        let mut rec = Vec::with_capacity(REC + body.len());
        rec.extend_from_slice(&header(key, len, removed));
        rec.extend_from_slice(body);
        if let Err(e) = (&*self.seg.file).write_all(&rec) {
            return Err((e, self.seg.file.set_len(self.off).is_err()));
        }
        let off = self.off + REC as u64;
        self.off += rec.len() as u64;
        let Lookup::Live { map, scanned } = &mut self.seg.lookup else {
            unreachable!("a writer's segment is live")
        };
        map.insert(*key, Rec { off, len, removed });
        *scanned = self.off;
        Ok(map.len())
    }
}

pub struct Packs {
    dir: PathBuf,
    view: RwLock<View>,
    writer: Mutex<Option<Writer>>,
    /// The name of the segment being written (read by `read_log`, which holds `view` and so
    /// must not take `writer`: the order is always writer, then view).
    own: Mutex<Option<Arc<str>>>,
    /// When and why the last segment could not be begun (tried again after a pause, not on
    /// every write).
    broken: Mutex<Option<(std::time::Instant, String)>>,
    /// This process's finished segments not yet indexed (their locks still held).
    unindexed: Mutex<Vec<Arc<str>>>,
    /// When the last refresh began (microseconds since `born`): a miss that may be stale
    /// ([`Packs::get`]'s `fresh` false) looks for other processes' records at most every
    /// [`RECENT`].
    last_refresh: std::sync::atomic::AtomicU64,
    born: std::time::Instant,
}

/// How stale a lookup that allows it may be ([`Packs::get`]).
const RECENT: std::time::Duration = std::time::Duration::from_millis(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn log_id(meta: &fs::Metadata) -> (u64, u64, i128) {
    (
        meta.ino(),
        meta.len(),
        meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
    )
}

impl Packs {
    /// The packs of a cache directory (created on the first write).
    pub fn open(root: &Path) -> Packs {
        let p = Packs {
            dir: root.join("packs"),
            view: RwLock::default(),
            writer: Mutex::new(None),
            own: Mutex::new(None),
            broken: Mutex::new(None),
            unindexed: Mutex::new(Vec::new()),
            last_refresh: Default::default(),
            born: std::time::Instant::now(),
        };
        p.refresh();
        p
    }

    /// The stored entry of `key`, if any (a removal hides older records). A miss looks at
    /// what other processes wrote since the last look; with `fresh` false, only when that
    /// was more than [`RECENT`] ago (the first look of a call: the look under its
    /// single-flight lock is fresh, so no answer is asked for twice).
    pub fn get(&self, key: &Raw, fresh: bool) -> Option<Found> {
        let own_removal = {
            let w = lock(&self.writer);
            match w.as_ref().and_then(|w| w.seg.get(key).map(|r| (w, r))) {
                Some((w, r)) if !r.removed => return w.seg.found(r),
                Some((w, _)) => Some(w.seg.name.clone()),
                None => None,
            }
        };
        if let Some(own) = own_removal {
            // removed here: another process may have answered it again since, in a segment
            // begun after this one
            self.refresh();
            let v = self.view.read().unwrap_or_else(|e| e.into_inner());
            return v
                .segs
                .iter()
                .take_while(|s| s.name > own)
                .find_map(|s| s.get(key).map(|r| s.found(r)))
                .flatten();
        }
        match self.lookup(key) {
            Some(Some(found)) => Some(found),
            // a miss, or a removal another process may since have answered again: look at
            // what changed
            _ if (fresh || self.due()) && self.refresh() => self.lookup(key).flatten(),
            _ => None,
        }
    }

    fn micros(&self) -> u64 {
        self.born.elapsed().as_micros() as u64
    }

    /// Whether the last refresh is older than [`RECENT`].
    fn due(&self) -> bool {
        let last = self.last_refresh.load(std::sync::atomic::Ordering::Relaxed);
        self.micros().saturating_sub(last) >= RECENT.as_micros() as u64
    }

    /// Some(found or removed) when a segment of the view holds a record of `key`.
    fn lookup(&self, key: &Raw) -> Option<Option<Found>> {
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        v.segs.iter().find_map(|s| s.get(key).map(|r| s.found(r)))
    }

    /// Appends an entry (or, with `body` None, a removal) to this process's segment.
    pub fn append(&self, key: &Raw, body: Option<&[u8]>) -> std::io::Result<()> {
        let mut w = lock(&self.writer);
        if w.is_none() {
            *w = Some(self.begin(None)?);
        }
        let wr = w.as_mut().expect("set above");
        let pushed = wr.push(key, body);
        let end = match &pushed {
            Ok(records) => *records >= ROLL_RECORDS || wr.off >= ROLL_BYTES,
            // what it holds is sealed; the next write begins a segment
            Err((_, broken)) => *broken,
        };
        if end {
            let done = w.take().expect("set above");
            self.publish(done.seg);
            // indexed before the writer lock goes: the next map is not begun beside this one
            self.index_own();
            drop(w);
        }
        pushed.map(|_| ()).map_err(|(e, _)| e)
    }

    /// A new segment of this process: listed in the log, then created and locked before the
    /// log lock is released (a reader that finds the name finds the file locked). `name`:
    /// one given (a merge's), else a new one.
    fn begin(&self, name: Option<String>) -> std::io::Result<Writer> {
        if let Some((when, why)) = lock(&self.broken).clone()
            && when.elapsed() < RETRY_BEGIN
        {
            return Err(std::io::Error::other(why));
        }
        let made = self.begin_new(name);
        *lock(&self.broken) = match &made {
            Ok(_) => None,
            Err(e) => Some((
                std::time::Instant::now(),
                format!("{}: {e}", self.dir.display()),
            )),
        };
        made
    }

    fn begin_new(&self, name: Option<String>) -> std::io::Result<Writer> {
        fs::create_dir_all(&self.dir)?;
        let name = name.unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!(
                "{stamp:020}-{}-{:08x}",
                crate::atomic::pid(),
                rand::random::<u32>()
            )
        });
        let _listing = self.log_lock(false)?;
        let mut log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join(LOG))?;
        let path = self.dir.join(format!("{name}.pack"));
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)?;
        let name: Arc<str> = name.into();
        // known as this process's own before any reader of the log can see it
        *lock(&self.own) = Some(name.clone());
        let made = flock(&f, FlockOperation::NonBlockingLockExclusive)
            .map_err(std::io::Error::from)
            .and_then(|_| (&f).write_all(SEG_MAGIC))
            .and_then(|_| log.write_all(format!("{name}\n").as_bytes()));
        if let Err(e) = made {
            let _ = fs::remove_file(&path);
            *lock(&self.own) = None;
            return Err(e);
        }
        Ok(Writer {
            seg: Seg {
                name,
                file: Arc::new(f),
                lookup: Lookup::Live {
                    scanned: SEG_MAGIC.len() as u64,
                    map: HashMap::with_capacity(ROLL_RECORDS),
                },
            },
            off: SEG_MAGIC.len() as u64,
        })
    }

    /// The lock that keeps a rewrite of the log (`forget`, exclusive) from losing a name
    /// being added (`begin`, shared). Opened read-only where it exists (a shared cache whose
    /// lock file another user made).
    fn log_lock(&self, exclusive: bool) -> std::io::Result<File> {
        let path = self.dir.join(".log.lock");
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(_) => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)?,
        };
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
        let mut w = lock(&self.writer);
        if let Some(done) = w.take() {
            self.publish(done.seg);
            drop(w);
            self.index_own();
        }
    }

    /// Puts this process's finished segment into the view (called with `writer` held, so no
    /// lookup finds it in neither place).
    fn publish(&self, seg: Seg) {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        // a reader of the log may have opened it as another's while it was begun
        v.segs.retain(|s| s.name != seg.name);
        let at = v
            .segs
            .iter()
            .position(|s| s.name < seg.name)
            .unwrap_or(v.segs.len());
        lock(&self.unindexed).push(seg.name.clone());
        v.segs.insert(at, seg);
        *lock(&self.own) = None;
    }

    /// Indexes this process's finished segments (live in the view, their lock held) and
    /// releases their locks.
    fn index_own(&self) {
        let names = std::mem::take(&mut *lock(&self.unindexed));
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        for seg in v.segs.iter_mut().filter(|s| names.contains(&s.name)) {
            let Lookup::Live { map, scanned } = &seg.lookup else {
                continue;
            };
            let idx = self.dir.join(format!("{}.idx", seg.name));
            if let Err(e) = write_index(&idx, map) {
                tracing::warn!(
                    "cache: indexing {}: {e} (the next run indexes it)",
                    seg.name
                );
                continue;
            }
            let size = *scanned;
            if let Some(i) = Index::open(&idx, size) {
                seg.lookup = Lookup::Sealed(i);
            }
            let _ = flock(&*seg.file, FlockOperation::Unlock);
        }
    }

    /// Reads what changed since the last look: new segments in the log, new records of live
    /// segments. Returns whether anything did.
    fn refresh(&self) -> bool {
        (self.last_refresh).store(self.micros(), std::sync::atomic::Ordering::Relaxed);
        let Ok(meta) = fs::metadata(self.dir.join(LOG)) else {
            return false;
        };
        let id = log_id(&meta);
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
            let (added, whole) = self.read_log(&mut v);
            changed |= added;
            // a segment that could not be opened (say, out of descriptors) is tried again
            if whole {
                v.log = id;
            }
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

    /// Opens the segments the log names that the view lacks and drops the ones it no longer
    /// names (rewritten by a merge; the log is read whole whenever its inode, size or change
    /// time differ, which is once per segment begun). Returns (whether any was added, whether
    /// every listed one could be opened).
    fn read_log(&self, v: &mut View) -> (bool, bool) {
        let Ok(text) = fs::read_to_string(self.dir.join(LOG)) else {
            return (false, false);
        };
        let listed: HashSet<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let own = lock(&self.own).clone();
        v.segs.retain(|s| listed.contains(&*s.name));
        // another process began a segment: the one it wrote before is sealed by now, and
        // read through its index from here on (its map of records is let go)
        for s in v.segs.iter_mut() {
            if matches!(s.lookup, Lookup::Live { .. })
                && let Ok(m) = s.file.metadata()
                && let Some(i) = Index::open(&self.dir.join(format!("{}.idx", s.name)), m.len())
            {
                s.lookup = Lookup::Sealed(i);
            }
        }
        let known: HashSet<Arc<str>> = v.segs.iter().map(|s| s.name.clone()).collect();
        let (mut added, mut whole) = (false, true);
        for name in listed {
            if known.contains(name) || own.as_deref() == Some(name) || v.gone.contains(name) {
                continue;
            }
            if !is_name(name) {
                tracing::warn!("cache: {LOG} lists `{name}`, not a segment name; ignored");
                v.gone.insert(name.into());
                continue;
            }
            match self.open_seg(name) {
                Ok(s) => {
                    v.segs.push(s);
                    added = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    v.gone.insert(name.into());
                }
                // out of descriptors, say: tried again on a later miss
                Err(_) => whole = false,
            }
        }
        v.segs.sort_by(|a, b| b.name.cmp(&a.name));
        (added, whole)
    }

    /// Opens a listed segment: its index if sealed; else, if its writer is gone, indexes it
    /// now; else scans it as live.
    fn open_seg(&self, name: &str) -> std::io::Result<Seg> {
        let path = self.dir.join(format!("{name}.pack"));
        let idx = self.dir.join(format!("{name}.idx"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .or_else(|_| File::open(&path))?;
        let size = file.metadata()?.len();
        let name: Arc<str> = name.into();
        if let Some(i) = Index::open(&idx, size) {
            return Ok(Seg {
                name,
                file: Arc::new(file),
                lookup: Lookup::Sealed(i),
            });
        }
        let mut map = HashMap::new();
        let mut scanned = scan(&file, 0, size, &mut map);
        // a free lock: its writer is gone, or sealed it between our look and now
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
            // under the lock nothing writes it: its size now is final
            let size = file.metadata().map(|m| m.len()).unwrap_or(size);
            scanned = scan(&file, scanned, size, &mut map);
            // a torn last record of a process that died mid-write stays in the file, never
            // indexed (cutting it could cut good records behind a damaged header)
            if Index::open(&idx, size).is_none()
                && let Err(e) = write_index(&idx, &map)
            {
                tracing::debug!("cache: indexing the segment {name}: {e}");
            }
            let sealed = Index::open(&idx, size);
            let _ = flock(&file, FlockOperation::Unlock);
            if let Some(i) = sealed {
                return Ok(Seg {
                    name,
                    file: Arc::new(file),
                    lookup: Lookup::Sealed(i),
                });
            }
        }
        Ok(Seg {
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
            for (k, r) in records(s) {
                if seen.insert(k)
                    && let Some(f) = s.found(r)
                {
                    out.push((hex_of(&k), f));
                }
            }
        }
        out
    }
}

/// Whether a name from the log is one a segment can have (`begin` makes them; a damaged
/// or hostile log line such as `../x` names no file outside `packs/`).
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 120
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
}

impl Drop for Packs {
    fn drop(&mut self) {
        self.seal();
    }
}

#[cfg(test)]
mod tests;
