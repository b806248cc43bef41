//! Single-flight of model calls: at most one call per cache key in flight per cache directory,
//! within one process and across the processes that share that directory.
//!
//! What it owns:
//! - In-process: a map key → leader. The first asker of a key leads; later askers wait (on a
//!   channel, no polling) until the leader's [`FlightGuard`] is dropped, then get
//!   [`Turn::Waited`] and re-check the cache themselves.
//! - Across processes (when enabled): the in-process leader takes the key's byte-range lock
//!   in `<cache>/flight.locks` (`range.rs`: nothing created or deleted per call, released
//!   by the kernel when its holder dies); a waiter polls it as below until it is free
//!   (→ `Waited`). Where the file system takes no such locks, a lock file next to the
//!   entry instead, `<entry path>.lock`, created with `create_new` (O_EXCL). Its text is
//!   `pid=<pid>\nhost=<hostname>\ntaken=<unix seconds>\nid=<random hex>\n`; `id` tells this
//!   holder's file from a later holder's. While held, one background task per [`Flights`]
//!   (spawned on the first lock, ended when none is held) sets the mtime of every held lock
//!   every 5 s, on a blocking thread.
//! - Staleness: a lock is stale when its mtime is more than 60 s old, or when it names this
//!   host and its pid has no `/proc/<pid>` (Linux only; skipped without `/proc`; processes in
//!   separate pid namespaces that share a host name would misjudge each other). A stale
//!   lock is renamed to a unique `.tmp-lock-…` name in the same folder (the cache listing
//!   skips `.tmp-` names), checked to be the same file that was judged stale (content and
//!   mtime), and deleted; if it is not the same, it is linked back unless a newer lock exists.
//!   Then the asker tries to create the lock again.
//! - A waiter on a fresh foreign lock polls (20 ms, doubling to 250 ms) until the lock is
//!   gone (→ `Waited`: re-check the cache, and on a miss, the holder failed, so ask again) or
//!   stale (→ remove it and take it).
//! - A counter of callers currently waiting (in-process or on a lock file) and a
//!   [`Notify`] for changes to it, so a scheduler can run other work meanwhile.
//!
//! What it does not do: it knows nothing of concurrency slots, never reads or writes cache
//! entries, never blocks a call because the directory cannot be written (a lock that cannot
//! be created yields a `Lead` without a file lock, see [`FlightGuard::file_locked`]), and
//! logs nothing. Cancellation: dropping the future of [`Flights::turn`] or a [`FlightGuard`]
//! (an aborted task) releases everything it held, synchronously.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

mod lockfile;
mod range;
use lockfile::{Look, hostname, lock_path_of, look, remove_stale};

/// How often a held lock's mtime is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// A lock not refreshed for this long is stale.
const STALE_AFTER: Duration = Duration::from_secs(60);
/// First and longest pause between two looks at a foreign lock.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);
/// Stale locks removed by one `turn` before it gives up on the file lock (guards a loop on
/// a file system that accepts the removal but keeps the file).
const MAX_STALE_REMOVALS: u32 = 100;

/// Single-flight of calls for one cache directory (one per process and directory).
pub struct Flights {
    lock_across_processes: bool,
    /// The cache directory's byte-range locks, where its file system takes them (else lock
    /// files).
    ranges: Option<range::RangeLocks>,
    shared: Arc<Shared>,
}

struct Shared {
    /// Keys led in this process; a leader's sender is dropped when it finishes, which ends
    /// every receiver's wait.
    leaders: Mutex<HashMap<String, watch::Receiver<()>>>,
    waiting: AtomicUsize,
    waits: AtomicU64,
    changed: Notify,
    held: Mutex<Held>,
    refresh_every: Duration,
}

/// Lock files this process holds, and the task refreshing them (while any is held).
#[derive(Default)]
struct Held {
    next_id: u64,
    locks: HashMap<u64, Arc<HeldLock>>,
    refresher: Option<JoinHandle<()>>,
}

struct HeldLock {
    path: PathBuf,
    content: String,
}

/// Whose turn it is to send a call.
#[derive(Debug)]
pub enum Turn<'a> {
    /// This caller sends the call. Dropping the guard releases the in-process slot and removes
    /// the lock file (if one was taken) and wakes in-process waiters.
    Lead(FlightGuard<'a>),
    /// Someone else had the call in flight and has now finished (or died): re-check the cache;
    /// on a miss call `Flights::turn` again.
    Waited,
}

impl<'a> Turn<'a> {
    /// The lead, with the cross-process lock it holds (a lock file or a byte range), if any.
    fn lead(slot: Slot<'a>, file: Option<FileLock<'a>>, range: Option<range::RangeLock>) -> Self {
        Turn::Lead(FlightGuard { file, range, slot })
    }
}

/// Held by the caller that sends a call; see [`Turn::Lead`].
pub struct FlightGuard<'a> {
    // Field order is drop order: the lock file goes before the in-process slot, so an
    // in-process waiter that asks again does not find this caller's own lock.
    file: Option<FileLock<'a>>,
    range: Option<range::RangeLock>,
    slot: Slot<'a>,
}

impl FlightGuard<'_> {
    /// Whether this caller holds the lock file. False when locking across processes is off,
    /// and when the lock could not be taken (unwritable directory, full disk, …): the call
    /// goes ahead anyway, and the caller may warn once.
    pub fn file_locked(&self) -> bool {
        self.file.is_some() || self.range.is_some()
    }
}

impl fmt::Debug for FlightGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlightGuard")
            .field("key", &self.slot.key)
            .field("lock", &self.file.as_ref().map(|l| &l.held.path))
            .finish()
    }
}

impl fmt::Debug for Flights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flights")
            .field("lock_across_processes", &self.lock_across_processes)
            .field("waiting", &self.waiting())
            .field("waits", &self.waits())
            .finish()
    }
}

impl Flights {
    /// `lock_across_processes`: also take lock files, for directories shared by processes.
    /// Needs no runtime; [`Flights::turn`] runs inside a tokio runtime.
    pub fn new(lock_across_processes: bool) -> Flights {
        Flights::with_refresh(lock_across_processes, REFRESH_EVERY)
    }

    /// Single-flight for the cache directory at `root`, across processes: byte-range locks
    /// in its `flight.locks` where the file system takes them, lock files otherwise.
    pub fn for_cache(root: &Path) -> Flights {
        let mut f = Flights::new(true);
        match range::RangeLocks::open(root) {
            Ok(r) => f.ranges = Some(r),
            Err(e) => tracing::debug!(
                "single-flight: no byte-range locks in {} ({e}); lock files instead",
                root.display()
            ),
        }
        f
    }

    fn with_refresh(lock_across_processes: bool, refresh_every: Duration) -> Flights {
        Flights {
            lock_across_processes,
            ranges: None,
            shared: Arc::new(Shared {
                leaders: Mutex::new(HashMap::new()),
                waiting: AtomicUsize::new(0),
                waits: AtomicU64::new(0),
                changed: Notify::new(),
                held: Mutex::new(Held::default()),
                refresh_every,
            }),
        }
    }

    /// `entry_path`: the cache entry's file path (the lock is `<entry_path>.lock`). `key`: the
    /// key's hex string (the in-process map key).
    pub async fn turn(&self, key: &str, entry_path: &Path) -> Turn<'_> {
        self.turn_with(key, entry_path, self.lock_across_processes)
            .await
    }

    /// Like `turn`, in this process only (no lock file): for calls that cost nothing to
    /// repeat in another process, where a lock file would cost more than the call.
    pub async fn turn_in_process(&self, key: &str) -> Turn<'_> {
        self.turn_with(key, Path::new(""), false).await
    }

    async fn turn_with(&self, key: &str, entry_path: &Path, across: bool) -> Turn<'_> {
        let slot = match self.lead_in_process(key) {
            Ok(slot) => slot,
            Err(mut done) => {
                let _waiting = self.start_waiting();
                // the leader never sends; its sender's drop ends this
                while done.changed().await.is_ok() {}
                return Turn::Waited;
            }
        };
        let unlocked = |slot| Turn::lead(slot, None, None);
        if !across {
            return unlocked(slot);
        }
        if let Some(ranges) = &self.ranges {
            return self.turn_by_range(ranges, key, slot).await;
        }
        let lock_path = lock_path_of(entry_path);
        let mut waiting: Option<Waiting<'_>> = None;
        let mut delay = POLL_FIRST;
        let mut removals = 0;
        // create the lock; after a look found it fresh, only look again (a lock that is then
        // gone was freed by its holder: the caller re-checks the cache)
        let mut create = true;
        loop {
            if create {
                match self.try_lock(&lock_path) {
                    Ok(file) => {
                        return Turn::lead(slot, Some(file), None);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(_) => return unlocked(slot),
                }
            }
            match look(&lock_path) {
                Look::Gone => {
                    if waiting.is_none() {
                        // freed between our attempt and our look: the holder just finished
                        self.shared.waits.fetch_add(1, Ordering::Relaxed);
                    }
                    return Turn::Waited;
                }
                Look::Stale(seen) => {
                    removals += 1;
                    if removals > MAX_STALE_REMOVALS || remove_stale(&lock_path, &seen).is_err() {
                        return unlocked(slot);
                    }
                    create = true;
                    continue;
                }
                Look::Fresh => create = false,
                Look::Unreadable => return unlocked(slot),
            }
            if waiting.is_none() {
                waiting = Some(self.start_waiting());
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_MAX);
        }
    }

    /// `turn` with byte-range locks: take the key's lock, or poll it while another process
    /// holds it; once free, `Waited` (the caller re-checks the cache). A lock that cannot be
    /// taken for another reason: lead without it, as with an unwritable lock file.
    async fn turn_by_range<'s>(
        &'s self,
        ranges: &range::RangeLocks,
        key: &str,
        slot: Slot<'s>,
    ) -> Turn<'s> {
        let lead = |range, slot| Turn::lead(slot, None, range);
        match ranges.try_lock(key) {
            Ok(range::Attempt::Taken(l)) => return lead(Some(l), slot),
            Ok(range::Attempt::Busy) => {}
            Err(_) => return lead(None, slot),
        }
        let _waiting = self.start_waiting();
        let mut delay = POLL_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_MAX);
            match ranges.is_held(key) {
                Ok(true) => {}
                Ok(false) => return Turn::Waited,
                Err(_) => return lead(None, slot),
            }
        }
    }

    /// Callers currently waiting (in-process or on a lock file).
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// Notified whenever `waiting()` changes. Each change wakes every current listener and
    /// also leaves one permit, so a listener that reads `waiting()` and then awaits
    /// `notified()` misses nothing; wake-ups may be spurious, so read `waiting()` again.
    pub fn changed(&self) -> &Notify {
        &self.shared.changed
    }

    /// How many times a caller waited (for counters / tests): every `Waited`, and every wait
    /// that was cancelled.
    pub fn waits(&self) -> u64 {
        self.shared.waits.load(Ordering::Relaxed)
    }

    /// Makes this caller the in-process leader of `key`, or returns the leader's channel.
    fn lead_in_process(&self, key: &str) -> Result<Slot<'_>, watch::Receiver<()>> {
        let mut leaders = locked(&self.shared.leaders);
        if let Some(done) = leaders.get(key) {
            return Err(done.clone());
        }
        let (sender, receiver) = watch::channel(());
        leaders.insert(key.to_string(), receiver);
        Ok(Slot {
            shared: &self.shared,
            key: key.to_string(),
            _sender: sender,
        })
    }

    fn start_waiting(&self) -> Waiting<'_> {
        self.shared.waits.fetch_add(1, Ordering::Relaxed);
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.notify();
        Waiting(&self.shared)
    }

    /// Creates the lock file and registers it for refreshing.
    fn try_lock(&self, path: &Path) -> io::Result<FileLock<'_>> {
        let content = format!(
            "pid={}\nhost={}\ntaken={}\nid={:016x}\n",
            crate::atomic::pid(),
            hostname(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            rand::random::<u64>()
        );
        let create = || OpenOptions::new().write(true).create_new(true).open(path);
        let mut file = match create() {
            // the entry's folder is made when first needed (a fresh cache has none)
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
                create()?
            }
            other => other?,
        };
        if let Err(e) = file.write_all(content.as_bytes()) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(e);
        }
        drop(file);
        let held = Arc::new(HeldLock {
            path: path.to_path_buf(),
            content,
        });
        let mut all = locked(&self.shared.held);
        all.next_id += 1;
        let id = all.next_id;
        all.locks.insert(id, held.clone());
        self.ensure_refresher(&mut all);
        Ok(FileLock {
            shared: &self.shared,
            id,
            held,
        })
    }

    /// Spawns the refresher unless one runs (called with `held` locked; a refresher ends, and
    /// clears its handle, under the same lock when it finds no lock held).
    fn ensure_refresher(&self, held: &mut Held) {
        if held.refresher.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        // a runtime that shut down took its refresher with it (`is_finished`): spawn anew
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        held.refresher = Some(runtime.spawn(refresh_loop(shared)));
    }
}

impl Shared {
    fn notify(&self) {
        self.changed.notify_waiters();
        self.changed.notify_one();
    }
}

/// Every `refresh_every`, sets the mtime of each held lock; ends when none is held or the
/// `Flights` is gone.
async fn refresh_loop(shared: Weak<Shared>) {
    loop {
        let Some(every) = shared.upgrade().map(|s| s.refresh_every) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let locks: Vec<Arc<HeldLock>> = {
            let mut held = locked(&strong.held);
            if held.locks.is_empty() {
                held.refresher = None;
                return;
            }
            held.locks.values().cloned().collect()
        };
        drop(strong);
        let _ = tokio::task::spawn_blocking(move || {
            for l in locks {
                let _ = refresh(&l);
            }
        })
        .await;
    }
}

/// Sets the lock's mtime to now if the file is still this holder's.
fn refresh(held: &HeldLock) -> io::Result<()> {
    let mut file = OpenOptions::new().read(true).write(true).open(&held.path)?;
    let mut content = String::new();
    file.read_to_string(&mut content)?;
    if content == held.content {
        file.set_modified(SystemTime::now())?;
    }
    Ok(())
}

/// The in-process leadership of one key.
struct Slot<'a> {
    shared: &'a Shared,
    key: String,
    /// Dropped after `drop` removed the map entry: ends the waits of in-process waiters.
    _sender: watch::Sender<()>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        locked(&self.shared.leaders).remove(&self.key);
    }
}

/// A lock file this process created.
struct FileLock<'a> {
    shared: &'a Shared,
    id: u64,
    held: Arc<HeldLock>,
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        locked(&self.shared.held).locks.remove(&self.id);
        // only this holder's file: if it was taken over as stale, the new holder's stays
        if fs::read_to_string(&self.held.path).is_ok_and(|c| c == self.held.content) {
            let _ = fs::remove_file(&self.held.path);
        }
    }
}

/// One caller counted in `waiting()` while this lives.
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        self.0.notify();
    }
}

/// Locks a mutex, ignoring poisoning (the maps stay consistent: each update is one call).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
