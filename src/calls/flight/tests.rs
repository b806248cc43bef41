//! Tests of single-flight: in-process waiting, foreign lock files, staleness, cancellation.

use super::lockfile::*;
use super::*;
use std::fs::File;
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
    let waiter = tokio::spawn(async move { matches!(f.turn("abcdef", &p).await, Turn::Waited) });
    sleep(SOON).await;
    assert!(!waiter.is_finished());
    assert_eq!(flights.waiting(), 1);
    // an in-process asker queues behind the in-process leader (which polls the file)
    let (f, p) = (flights.clone(), path.clone());
    let second = tokio::spawn(async move { matches!(f.turn("abcdef", &p).await, Turn::Waited) });
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
async fn a_missing_entry_folder_is_made_for_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("objects").join("ab").join("cdef");
    let flights = Flights::new(true);
    let g = lead(timeout(LIMIT, flights.turn("abcdef", &path)).await.unwrap());
    assert!(g.file_locked());
}

#[tokio::test]
async fn unwritable_directory_leads_without_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    // a folder that cannot be made (a file is in the way; a missing one is made)
    fs::write(dir.path().join("file"), b"").unwrap();
    let path = dir.path().join("file").join("ab").join("cdef");
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
    let Look::Stale(seen) = look(&foreign_lock(&path, DEAD_PID, hostname(), Duration::ZERO)) else {
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

#[tokio::test]
async fn byte_range_locks_make_another_process_wait_and_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = "3f2a9c0d1e5b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";
    let path = entry(&dir, key);
    // two `Flights` on one directory stand for two processes: their locks are separate
    // open file descriptions, which conflict as another process's would
    let a = Flights::for_cache(dir.path());
    let b = Arc::new(Flights::for_cache(dir.path()));
    let guard = lead(a.turn(key, &path).await);
    assert!(guard.file_locked());
    assert!(
        !lock_path_of(&path).exists(),
        "no lock file beside the entry"
    );
    let (b2, p) = (b.clone(), path.clone());
    let other = tokio::spawn(async move { matches!(b2.turn(key, &p).await, Turn::Waited) });
    sleep(SOON).await;
    assert!(!other.is_finished(), "b waits while a holds the key");
    assert_eq!(b.waiting(), 1);
    drop(guard);
    assert!(timeout(LIMIT, other).await.unwrap().unwrap());
    assert_eq!(b.waiting(), 0);
    // free now: b leads
    assert!(lead(b.turn(key, &path).await).file_locked());
    let names: Vec<String> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.is_empty(),
        "nothing created beside entries: {names:?}"
    );
}
