//! The lock file beside a cache entry: what a look at one finds, when it is stale (dead
//! process on this host, or unrefreshed for a minute), removing exactly the stale file, and
//! this host's name.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use super::STALE_AFTER;

/// What a look at an existing lock file found.
pub(super) enum Look {
    Gone,
    Fresh,
    /// Stale, as seen (to remove only this very file).
    Stale(Seen),
    /// Exists but cannot be opened: give up on the file lock.
    Unreadable,
}

#[derive(PartialEq, Eq)]
pub(super) struct Seen {
    pub(super) content: Vec<u8>,
    pub(super) modified: SystemTime,
}

pub(super) fn look(path: &Path) -> Look {
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
pub(super) fn read_seen(path: &Path) -> io::Result<Seen> {
    let mut file = File::open(path)?;
    let modified = file.metadata()?.modified()?;
    let mut content = Vec::new();
    file.read_to_end(&mut content)?;
    Ok(Seen { content, modified })
}

pub(super) fn is_stale(seen: &Seen, now: SystemTime) -> bool {
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

pub(super) fn field<'c>(content: &'c str, name: &str) -> Option<&'c str> {
    content.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether no process `pid` runs on this host (false when that cannot be told).
pub(super) fn process_is_dead(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the stale lock `seen` unless it was replaced meanwhile: renames it to a unique
/// name, checks it is the file judged stale, then deletes it (or links it back if it is not
/// and no newer lock exists). An error means the folder cannot be changed.
pub(super) fn remove_stale(lock_path: &Path, seen: &Seen) -> io::Result<()> {
    let grave = lock_path.with_file_name(format!(
        ".tmp-lock-{}-{:016x}",
        crate::atomic::pid(),
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

pub(super) fn lock_path_of(entry_path: &Path) -> PathBuf {
    let mut p = entry_path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

pub(super) fn hostname() -> &'static str {
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
