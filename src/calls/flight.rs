//! Single-flight of model calls: at most one call per cache key in flight per cache directory,
//! within one process and across the processes that share that directory.
//!
//! What it owns:
//! - In-process: a map key → leader. The first asker of a key leads; later askers wait (on a
//!   channel, no polling) until the leader's [`FlightGuard`] is dropped, then get
//!   [`Turn::Waited`] and re-check the cache themselves.
//! - Across processes (when enabled): the in-process leader takes a lock file next to the
//!   entry, `<entry path>.lock`, created with `create_new` (O_EXCL). Its text is
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
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

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

/// Held by the caller that sends a call; see [`Turn::Lead`].
pub struct FlightGuard<'a> {
    // Field order is drop order: the lock file goes before the in-process slot, so an
    // in-process waiter that asks again does not find this caller's own lock.
    file: Option<FileLock<'a>>,
    slot: Slot<'a>,
}

impl FlightGuard<'_> {
    /// Whether this caller holds the lock file. False when locking across processes is off,
    /// and when the lock could not be taken (unwritable directory, full disk, …): the call
    /// goes ahead anyway, and the caller may warn once.
    pub fn file_locked(&self) -> bool {
        self.file.is_some()
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

    fn with_refresh(lock_across_processes: bool, refresh_every: Duration) -> Flights {
        Flights {
            lock_across_processes,
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
        let slot = match self.lead_in_process(key) {
            Ok(slot) => slot,
            Err(mut done) => {
                let _waiting = self.start_waiting();
                // the leader never sends; its sender's drop ends this
                while done.changed().await.is_ok() {}
                return Turn::Waited;
            }
        };
        if !self.lock_across_processes {
            return Turn::Lead(FlightGuard { file: None, slot });
        }
        let lock_path = lock_path_of(entry_path);
        let unlocked = |slot| Turn::Lead(FlightGuard { file: None, slot });
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
                        return Turn::Lead(FlightGuard {
                            file: Some(file),
                            slot,
                        });
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
            std::process::id(),
            hostname(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            rand::random::<u64>()
        );
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
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

/// What a look at an existing lock file found.
enum Look {
    Gone,
    Fresh,
    /// Stale, as seen (to remove only this very file).
    Stale(Seen),
    /// Exists but cannot be opened: give up on the file lock.
    Unreadable,
}

#[derive(PartialEq, Eq)]
struct Seen {
    content: Vec<u8>,
    modified: SystemTime,
}

fn look(path: &Path) -> Look {
    let seen = match read_seen(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Look::Gone,
        Err(_) => return Look::Unreadable,
    };
    if is_stale(&seen, SystemTime::now()) {
        Look::Stale(seen)
    } else {
        Look::Fresh
    }
}

/// Content and mtime of one file, from one open (so of one and the same file).
fn read_seen(path: &Path) -> io::Result<Seen> {
    let mut file = File::open(path)?;
    let modified = file.metadata()?.modified()?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok(Seen { content, modified })
}

fn is_stale(seen: &Seen, now: SystemTime) -> bool {
    // an mtime in the future is fresh (clock skew between hosts)
    if now
        .duration_since(seen.modified)
        .is_ok_and(|age| age > STALE_AFTER)
    {
        return true;
    }
    // a file being written (empty, or cut short) has no pid yet: fresh until it ages
    let content = String::from_utf8_lossy(&seen.content);
    let (Some(host), Some(pid)) = (field(&content, "host"), field(&content, "pid")) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname() && process_is_dead(pid)
}

fn field<'c>(content: &'c str, name: &str) -> Option<&'c str> {
    content.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether no process `pid` runs on this host (false when that cannot be told).
fn process_is_dead(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the stale lock `seen` unless it was replaced meanwhile: renames it to a unique
/// name, checks it is the file judged stale, then deletes it (or links it back if it is not
/// and no newer lock exists). An error means the folder cannot be changed.
fn remove_stale(lock_path: &Path, seen: &Seen) -> io::Result<()> {
    let grave = lock_path.with_file_name(format!(
        ".tmp-lock-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    match fs::rename(lock_path, &grave) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if read_seen(&grave).ok().as_ref() != Some(seen) {
        // a live holder's lock (refreshed, or taken anew): put it back unless one exists
        let _ = fs::hard_link(&grave, lock_path);
    }
    let _ = fs::remove_file(&grave);
    Ok(())
}

fn lock_path_of(entry_path: &Path) -> PathBuf {
    let mut p = entry_path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .chain(std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .find(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown".to_string())
    })
}

/// Locks a mutex, ignoring poisoning (the maps stay consistent: each update is one call).
fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::time::{sleep, timeout};

    const SOON: Duration = Duration::from_millis(100);
    const LIMIT: Duration = Duration::from_secs(1);

    /// A cache-like folder and the entry path of one key in it.
    fn entry(dir: &tempfile::TempDir, key: &str) -> PathBuf {
        let folder = dir.path().join("objects").join(&key[..2]);
        fs::create_dir_all(&folder).unwrap();
        folder.join(&key[2..])
    }

    fn foreign_lock(entry: &Path, pid: u32, host: &str, age: Duration) -> PathBuf {
        let path = lock_path_of(entry);
        fs::write(&path, format!("pid={pid}\nhost={host}\ntaken=0\nid=00\n")).unwrap();
        let f = File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    fn lead(turn: Turn<'_>) -> FlightGuard<'_> {
        match turn {
            Turn::Lead(g) => g,
            Turn::Waited => panic!("expected Lead, got Waited"),
        }
    }

    /// A pid no process has (above any `pid_max`).
    const DEAD_PID: u32 = 999_999_999;

    #[tokio::test]
    async fn same_key_waits_for_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Arc::new(Flights::new(true));
        let guard = lead(flights.turn("abcdef", &path).await);
        assert!(guard.file_locked());
        assert!(lock_path_of(&path).exists());

        let changed = flights.changed().notified();
        let (f, p) = (flights.clone(), path.clone());
        let other = tokio::spawn(async move { matches!(f.turn("abcdef", &p).await, Turn::Waited) });
        timeout(LIMIT, changed).await.expect("notified");
        sleep(SOON).await;
        assert!(!other.is_finished());
        assert_eq!(flights.waiting(), 1);

        drop(guard);
        assert!(!lock_path_of(&path).exists());
        assert!(timeout(LIMIT, other).await.unwrap().unwrap());
        assert_eq!(flights.waits(), 1);
        assert_eq!(flights.waiting(), 0);
        // the leader failed (no entry): asking again leads
        assert!(lead(flights.turn("abcdef", &path).await).file_locked());
    }

    #[tokio::test]
    async fn different_keys_do_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let flights = Flights::new(true);
        let (a, b) = (entry(&dir, "aa11"), entry(&dir, "aa22"));
        let ga = lead(timeout(LIMIT, flights.turn("aa11", &a)).await.unwrap());
        let gb = lead(timeout(LIMIT, flights.turn("aa22", &b)).await.unwrap());
        assert!(ga.file_locked() && gb.file_locked());
        assert_eq!(flights.waits(), 0);
    }

    #[tokio::test]
    async fn in_process_only_takes_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Flights::new(false);
        let g = lead(flights.turn("abcdef", &path).await);
        assert!(!g.file_locked());
        assert!(!lock_path_of(&path).exists());
    }

    #[tokio::test]
    async fn live_foreign_lock_is_waited_for_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let lock = foreign_lock(&path, 1, hostname(), Duration::ZERO);
        let flights = Arc::new(Flights::new(true));
        let (f, p) = (flights.clone(), path.clone());
        let waiter =
            tokio::spawn(async move { matches!(f.turn("abcdef", &p).await, Turn::Waited) });
        sleep(SOON).await;
        assert!(!waiter.is_finished());
        assert_eq!(flights.waiting(), 1);
        // an in-process asker queues behind the in-process leader (which polls the file)
        let (f, p) = (flights.clone(), path.clone());
        let second =
            tokio::spawn(async move { matches!(f.turn("abcdef", &p).await, Turn::Waited) });
        sleep(SOON).await;
        assert_eq!(flights.waiting(), 2);

        fs::remove_file(&lock).unwrap();
        let started = Instant::now();
        assert!(timeout(LIMIT, waiter).await.unwrap().unwrap());
        assert!(timeout(LIMIT, second).await.unwrap().unwrap());
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(flights.waiting(), 0);
        assert_eq!(flights.waits(), 2);
    }

    #[tokio::test]
    async fn a_lock_that_goes_stale_while_waited_for_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let lock = foreign_lock(&path, 1, "some-other-host", Duration::ZERO);
        let flights = Arc::new(Flights::new(true));
        let (f, p) = (flights.clone(), path.clone());
        let waiter = tokio::spawn(async move {
            matches!(&f.turn("abcdef", &p).await, Turn::Lead(g) if g.file_locked())
        });
        sleep(SOON).await;
        assert_eq!(flights.waiting(), 1);
        // its holder stopped refreshing it two minutes ago
        let old = SystemTime::now() - Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(timeout(LIMIT, waiter).await.unwrap().unwrap());
        assert_eq!(flights.waiting(), 0);
        assert!(!lock.exists(), "the guard went with the waiter's task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_askers_one_call_at_a_time() {
        use std::sync::atomic::AtomicBool;
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Arc::new(Flights::new(true));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let failed_once = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (f, p) = (flights.clone(), path.clone());
            let (in_flight, calls, failed_once) =
                (in_flight.clone(), calls.clone(), failed_once.clone());
            tasks.push(tokio::spawn(async move {
                while !p.exists() {
                    let Turn::Lead(g) = f.turn("abcdef", &p).await else {
                        continue;
                    };
                    assert_eq!(in_flight.fetch_add(1, Ordering::SeqCst), 0);
                    calls.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_millis(5)).await;
                    // the first call fails (no entry); the second stores it
                    if failed_once.swap(true, Ordering::SeqCst) {
                        fs::write(&p, "entry").unwrap();
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                }
            }));
        }
        for t in tasks {
            timeout(LIMIT, t).await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(flights.waiting(), 0);
        assert!(!lock_path_of(&path).exists());
    }

    #[tokio::test]
    async fn lock_of_a_dead_pid_on_this_host_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let lock = foreign_lock(&path, DEAD_PID, hostname(), Duration::ZERO);
        let flights = Flights::new(true);
        let g = lead(timeout(LIMIT, flights.turn("abcdef", &path)).await.unwrap());
        assert!(g.file_locked());
        let content = fs::read_to_string(&lock).unwrap();
        assert_eq!(
            field(&content, "pid"),
            Some(&*std::process::id().to_string())
        );
        assert_eq!(flights.waits(), 0);
        // no grave left behind
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[tokio::test]
    async fn dead_pid_on_another_host_is_not_judged_here() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        foreign_lock(&path, DEAD_PID, "some-other-host", Duration::ZERO);
        let flights = Flights::new(true);
        assert!(timeout(SOON, flights.turn("abcdef", &path)).await.is_err());
        assert_eq!(flights.waiting(), 0);
    }

    #[tokio::test]
    async fn old_lock_of_another_host_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let lock = foreign_lock(&path, 1, "some-other-host", Duration::from_secs(120));
        let flights = Flights::new(true);
        let g = lead(timeout(LIMIT, flights.turn("abcdef", &path)).await.unwrap());
        assert!(g.file_locked());
        let content = fs::read_to_string(&lock).unwrap();
        assert_eq!(field(&content, "host"), Some(hostname()));
        drop(g);
        assert!(!lock.exists());
    }

    #[tokio::test]
    async fn unwritable_directory_leads_without_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("ab").join("cdef");
        let flights = Flights::new(true);
        let g = lead(timeout(LIMIT, flights.turn("abcdef", &path)).await.unwrap());
        assert!(!g.file_locked());
        // the in-process rule still holds
        assert!(timeout(SOON, flights.turn("abcdef", &path)).await.is_err());
        assert_eq!(flights.waiting(), 0);
    }

    #[tokio::test]
    async fn aborting_waiters_restores_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Arc::new(Flights::new(true));

        // waiting on a foreign lock file
        foreign_lock(&path, 1, hostname(), Duration::ZERO);
        let (f, p) = (flights.clone(), path.clone());
        let on_file = tokio::spawn(async move {
            f.turn("abcdef", &p).await;
        });
        sleep(SOON).await;
        assert_eq!(flights.waiting(), 1);
        on_file.abort();
        assert!(on_file.await.unwrap_err().is_cancelled());
        assert_eq!(flights.waiting(), 0);
        // its in-process leadership went with it
        assert!(locked(&flights.shared.leaders).is_empty());
        fs::remove_file(lock_path_of(&path)).unwrap();

        // waiting on an in-process leader
        let g = lead(flights.turn("abcdef", &path).await);
        let (f, p) = (flights.clone(), path.clone());
        let in_process = tokio::spawn(async move {
            f.turn("abcdef", &p).await;
        });
        sleep(SOON).await;
        assert_eq!(flights.waiting(), 1);
        in_process.abort();
        assert!(in_process.await.unwrap_err().is_cancelled());
        assert_eq!(flights.waiting(), 0);
        drop(g);
    }

    #[tokio::test]
    async fn aborting_a_leader_removes_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Arc::new(Flights::new(true));
        let (f, p) = (flights.clone(), path.clone());
        let leader = tokio::spawn(async move {
            let _g = lead(f.turn("abcdef", &p).await);
            sleep(Duration::from_secs(3600)).await;
        });
        sleep(SOON).await;
        assert!(lock_path_of(&path).exists());
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert!(!lock_path_of(&path).exists());
        assert!(locked(&flights.shared.leaders).is_empty());
        assert!(locked(&flights.shared.held).locks.is_empty());
    }

    #[tokio::test]
    async fn guard_drop_removes_only_its_own_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Flights::new(true);
        let g = lead(flights.turn("abcdef", &path).await);
        assert!(lock_path_of(&path).exists());
        drop(g);
        assert!(!lock_path_of(&path).exists());

        // a lock taken over (as stale) by another process stays when the old holder ends
        let g = lead(flights.turn("abcdef", &path).await);
        let lock = foreign_lock(&path, 1, hostname(), Duration::ZERO);
        drop(g);
        assert!(lock.exists());
    }

    #[tokio::test]
    async fn held_locks_are_refreshed_and_the_refresher_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let flights = Flights::with_refresh(true, Duration::from_millis(50));
        let g = lead(flights.turn("abcdef", &path).await);
        let lock = lock_path_of(&path);
        let old = SystemTime::now() - Duration::from_secs(30);
        File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        sleep(Duration::from_millis(200)).await;
        let age = SystemTime::now()
            .duration_since(fs::metadata(&lock).unwrap().modified().unwrap())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(1), "not refreshed: {age:?}");
        drop(g);
        sleep(Duration::from_millis(200)).await;
        assert!(locked(&flights.shared.held).refresher.is_none());
        // and comes back with the next lock
        let _g = lead(flights.turn("abcdef", &path).await);
        assert!(locked(&flights.shared.held).refresher.is_some());
    }

    #[test]
    fn flights_are_made_outside_a_runtime() {
        let flights = Flights::new(true);
        assert_eq!(flights.waiting(), 0);
        assert_eq!(flights.waits(), 0);
    }

    #[test]
    fn a_replaced_stale_lock_is_put_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = entry(&dir, "abcdef");
        let lock = foreign_lock(&path, DEAD_PID, hostname(), Duration::ZERO);
        let Look::Stale(seen) = look(&lock) else {
            panic!("a dead pid's lock is stale");
        };
        // meanwhile another process removed it and took the lock anew
        fs::write(&lock, "pid=1\nhost=x\ntaken=0\nid=01\n").unwrap();
        remove_stale(&lock, &seen).unwrap();
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            "pid=1\nhost=x\ntaken=0\nid=01\n"
        );
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        // the same stale file is removed
        let Look::Stale(seen) = look(&foreign_lock(&path, DEAD_PID, hostname(), Duration::ZERO))
        else {
            panic!("stale");
        };
        remove_stale(&lock, &seen).unwrap();
        assert!(!lock.exists());
    }

    #[test]
    fn staleness_rules() {
        let now = SystemTime::now();
        let seen = |content: &str, age: u64| Seen {
            content: content.as_bytes().to_vec(),
            modified: now - Duration::from_secs(age),
        };
        let me = format!("pid={}\nhost={}\n", std::process::id(), hostname());
        assert!(!is_stale(&seen(&me, 0), now));
        assert!(!is_stale(&seen(&me, 59), now));
        assert!(is_stale(&seen(&me, 61), now));
        assert!(
            !is_stale(&seen("", 0), now),
            "a lock being written is fresh"
        );
        assert!(is_stale(&seen("", 61), now));
        let dead = format!("pid={DEAD_PID}\nhost={}\n", hostname());
        assert!(is_stale(&seen(&dead, 0), now));
        assert!(!is_stale(
            &seen(&format!("pid={DEAD_PID}\nhost=elsewhere\n"), 0),
            now
        ));
        let future = Seen {
            content: me.into_bytes(),
            modified: now + Duration::from_secs(600),
        };
        assert!(!is_stale(&future, now));
    }
}
