//! Cross-process locks of single-flight as byte-range locks on one file per cache directory,
//! `<cache>/flight.locks`: the lock of a key is one byte at an offset taken from the key,
//! held with an open-file-description lock (Linux `F_OFD_SETLK`) on the one descriptor the
//! process opened, and released by `F_UNLCK` when its guard drops (no open or close per call;
//! other processes' descriptors are other descriptions, so their locks conflict with ours).
//!
//! Why not a lock file per call: nothing is created or deleted per call here. A lock file
//! created and removed for every call made ext4 scan its inode bitmaps past the recently
//! deleted inodes at every new file (`find_inode_bit` → `recently_deleted`), which cost more
//! than half of distill's CPU per call against a fast server, for the lock files and the
//! cache entries alike. And the kernel drops a lock when its holder's descriptor closes, so
//! a killed holder leaves nothing stale behind: no refresh, no staleness to judge.
//!
//! Where the file system has no OFD locks (not Linux, or a file system that refuses them),
//! [`RangeLocks::open`] fails and single-flight keeps its lock files (`lockfile.rs`).
//! Two keys whose offsets collide (60 bits of the key) would wait for each other: harmless.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// The lock file's name in a cache directory.
pub const FILE: &str = "flight.locks";

/// The lock file of one cache directory.
#[derive(Debug)]
pub struct RangeLocks {
    file: Arc<File>,
}

/// A key's lock, held until dropped (then unlocked; the process's exit releases it too).
#[derive(Debug)]
pub struct RangeLock {
    file: Arc<File>,
    start: i64,
}

impl Drop for RangeLock {
    fn drop(&mut self) {
        let _ = set(&self.file, libc::F_UNLCK as i16, self.start);
    }
}

/// What an attempt to lock a key found.
pub enum Attempt {
    Taken(RangeLock),
    /// Another holder (another process, or another descriptor) has it.
    Busy,
}

impl RangeLocks {
    /// Opens (creating it once) the lock file of the cache at `root`, and checks that the
    /// file system takes OFD locks. An error: use lock files instead.
    pub fn open(root: &Path) -> io::Result<RangeLocks> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(root.join(FILE))?;
        // a probe at an offset no key maps to (keys use 60 bits), that takes nothing: a
        // probe that took a lock made a second process starting at the same moment find it
        // busy and fall back to lock files, which its range locks do not exclude
        let locks = RangeLocks {
            file: Arc::new(file),
        };
        locks.held_at(PROBE)?;
        Ok(locks)
    }

    /// Takes the lock of `key` unless another description (another process) holds it. Two
    /// keys of this process at one offset (60 bits of the key) share the byte: harmless,
    /// since single-flight in the process already keeps one call per key.
    pub fn try_lock(&self, key: &str) -> io::Result<Attempt> {
        let start = offset(key);
        match set(&self.file, libc::F_WRLCK as i16, start) {
            Ok(()) => Ok(Attempt::Taken(RangeLock {
                file: Arc::clone(&self.file),
                start,
            })),
            Err(e) if is_busy(&e) => Ok(Attempt::Busy),
            Err(e) => Err(e),
        }
    }

    /// Whether another description (another process) holds the lock of `key` now.
    pub fn is_held(&self, key: &str) -> io::Result<bool> {
        self.held_at(offset(key))
    }

    /// Whether another description holds the byte at `start` (`F_OFD_GETLK`; an error where
    /// the file system has no OFD locks).
    fn held_at(&self, start: i64) -> io::Result<bool> {
        let file = &self.file;
        let mut fl = flock(libc::F_WRLCK as i16, start);
        // SAFETY: `fl` is a valid `struct flock` for the duration of the call, and the
        // descriptor is open (owned by `file`).
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        if r == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(fl.l_type != libc::F_UNLCK as i16)
    }
}

/// Above every key's offset.
const PROBE: i64 = 1 << 61;

/// The byte of `key`: its first 15 hex digits (keys are blake3 hex).
fn offset(key: &str) -> i64 {
    let hex: String = key
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(15)
        .collect();
    match i64::from_str_radix(&hex, 16) {
        Ok(v) => v,
        // not a hex key (tests use short names): hashed
        Err(_) => {
            let h = blake3::hash(key.as_bytes());
            i64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) & ((1 << 60) - 1)
        }
    }
}

fn flock(kind: i16, start: i64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct; all-zero is a valid value of it.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = start;
    fl.l_len = 1;
    fl.l_pid = 0;
    fl
}

/// Sets (`F_WRLCK`) or clears (`F_UNLCK`) the OFD lock of one byte, without waiting.
fn set(file: &File, kind: i16, start: i64) -> io::Result<()> {
    let fl = flock(kind, start);
    // SAFETY: as in `is_held`.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_busy(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3f2a9c0d1e5b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e";

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = RangeLocks::open(dir.path()).unwrap();
        // a second opener stands for another process: its descriptors are its own
        let b = RangeLocks::open(dir.path()).unwrap();
        let Attempt::Taken(held) = a.try_lock(KEY).unwrap() else {
            panic!("the first attempt takes the lock")
        };
        assert!(matches!(b.try_lock(KEY).unwrap(), Attempt::Busy));
        assert!(b.is_held(KEY).unwrap());
        // another key is free
        let other = KEY.replace('3', "4");
        assert!(matches!(b.try_lock(&other).unwrap(), Attempt::Taken(_)));
        drop(held);
        assert!(!b.is_held(KEY).unwrap());
        assert!(matches!(b.try_lock(KEY).unwrap(), Attempt::Taken(_)));
    }

    #[test]
    fn offsets_come_from_the_key_and_stay_below_the_probe() {
        assert_eq!(offset(KEY), 0x3f2a9c0d1e5b7a8);
        assert!(offset("abcdef") < PROBE && offset("not hex at all!") < PROBE);
        assert_ne!(offset("not hex at all!"), offset("not hex either"));
    }

    #[test]
    fn a_killed_holder_leaves_no_lock() {
        // a child process takes the lock and is killed; the lock goes with it
        let dir = tempfile::tempdir().unwrap();
        let locks = RangeLocks::open(dir.path()).unwrap();
        let script = format!(
            "import fcntl,struct,os,time\nf=os.open('{}',os.O_RDWR)\n\
             fcntl.fcntl(f,37,struct.pack('hhqqi4x',1,0,{},1,0))\nprint('held',flush=True)\ntime.sleep(60)\n",
            dir.path().join(FILE).display(),
            offset(KEY)
        );
        let Ok(mut child) = std::process::Command::new("python3")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: python3 is not installed");
            return;
        };
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        assert!(locks.is_held(KEY).unwrap(), "the child holds it");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!locks.is_held(KEY).unwrap());
        assert!(matches!(locks.try_lock(KEY).unwrap(), Attempt::Taken(_)));
    }
}
