//! Writing a file whole or not at all: a temporary file in the same folder, synced, checked
//! if the caller asks, then renamed over the target; on any failure the target is untouched
//! and the temporary file is removed. Used by `data pull`, data/SOURCES.md and `distill grade`.
//! Also the process id that temporary and lock file names carry ([`pid`], read once).

use std::io::Write;
use std::path::{Path, PathBuf};

/// This process's id, read once: temporary and lock file names carry it, and
/// `std::process::id` is a system call each time (one per cache write on the hot path).
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_checked(path, bytes, |_| Ok(()))
}

/// Writes `bytes` to a temporary file next to `path`, runs `check` on it, then renames it
/// over `path`. On any failure the temporary file is removed and `path` is untouched.
pub fn write_checked(
    path: &Path,
    bytes: &[u8],
    check: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .to_string();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{file_name}.{}.{nanos}.tmp", pid()));
    let guard = TempGuard(tmp.clone());
    let mut f =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    drop(f);
    check(&tmp)?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("cannot move {} to {}: {e}", tmp.display(), path.display()))?;
    std::mem::forget(guard);
    Ok(())
}

/// Removes a temporary file unless forgotten.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
