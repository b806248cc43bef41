//! The record of submitted batches, so that nothing is paid twice: one file per batch in
//! the cache directory (`<cache>/batches/<id>.json`, written atomically as soon as the
//! provider gave the batch an id, rewritten when it is collected) and a line per change in
//! the run directory (`batches.jsonl`). A rerun or `--resume` after a kill reads the cache
//! directory's files and waits for those batches instead of submitting their keys again.
//! Batches take no single-flight locks: this registry is what other processes see. Only
//! closing a batch takes a short lock (`<cache>/batches.lock`, held while the registry is
//! read and the new batch's `creating` record written), so two live processes never
//! submit the same request: the second finds the first's record and waits for its batch.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The run directory's log of its batches.
pub const RUN_LOG: &str = "batches.jsonl";

/// One submitted batch, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The pipeline's name for the model, its provider model id, the base URL and the
    /// endpoint the batch was submitted to (a batch id only means something there).
    pub model: String,
    pub provider_model: String,
    pub base_url: String,
    pub endpoint: String,
    pub input_file_id: String,
    /// Unix seconds.
    pub submitted_at: u64,
    /// `creating` while `POST /batches` is under way (`id` is then the input file's id),
    /// `submitted` until its results were read, then the provider's final status.
    pub state: String,
    /// The `custom_id` of every line: the call's cache key.
    pub keys: Vec<String>,
    /// The estimated cost counted against `--max_cost` when it was submitted.
    #[serde(default)]
    pub estimate_usd: f64,
    /// The id of the `creating` record this batch was claimed under (kept once the batch
    /// has its own id, so another process waiting on the claim finds the batch).
    #[serde(default)]
    pub claim: String,
    /// The process that wrote the record (0: unknown), so a `creating` record of a killed
    /// run is not waited for.
    #[serde(default)]
    pub pid: u32,
}

impl Record {
    pub fn pending(&self) -> bool {
        self.state == "submitted" || self.creating()
    }

    /// Whether the process that wrote the record may still run (on Linux, by `/proc`;
    /// elsewhere, or when unknown, assumed).
    pub fn writer_alive(&self) -> bool {
        if self.pid == 0 || !cfg!(target_os = "linux") {
            return true;
        }
        self.pid == std::process::id() || Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Recorded before the provider answered `POST /batches`: a kill then leaves a batch
    /// whose id only the provider's list of batches (by input file) can tell.
    pub fn creating(&self) -> bool {
        self.state == "creating"
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The registry of one cache directory and (once set) one run directory.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    run_log: std::sync::Mutex<Option<PathBuf>>,
}

impl Registry {
    pub fn new(cache_root: &Path) -> Self {
        Registry {
            dir: cache_root.join("batches"),
            run_log: std::sync::Mutex::new(None),
        }
    }

    /// Where this run's `batches.jsonl` goes.
    pub fn set_run_log(&self, path: PathBuf) {
        if let Ok(mut g) = self.run_log.lock() {
            *g = Some(path);
        }
    }

    fn path_of(&self, id: &str) -> PathBuf {
        // a provider's id is used as a file name: keep it to one safe component
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// Writes (or rewrites) a batch's file atomically and logs the change in the run
    /// directory.
    pub fn write(&self, r: &Record) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.path_of(&r.id);
        let bytes = serde_json::to_vec_pretty(r)?;
        crate::atomic::write_atomically(&path, &bytes)
            .map_err(|e| anyhow::anyhow!("recording batch {}: {e}", r.id))?;
        let log = self.run_log.lock().ok().and_then(|g| g.clone());
        if let Some(log) = log {
            let line = serde_json::json!({
                "time": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(), "batch": r.id, "model": r.model,
                "state": r.state, "requests": r.keys.len(), "estimate_usd": r.estimate_usd,
                "record": path.display().to_string(),
            });
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .with_context(|| format!("opening {}", log.display()))?;
            writeln!(f, "{line}").with_context(|| format!("writing {}", log.display()))?;
        }
        Ok(())
    }

    /// Holds the registry while a batch is claimed (released on drop); `None` when the lock
    /// file cannot be opened or locked (the claim then goes ahead unlocked).
    pub fn lock(&self) -> Option<std::fs::File> {
        std::fs::create_dir_all(&self.dir).ok()?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.with_extension("lock"))
            .ok()?;
        f.lock().ok()?;
        Some(f)
    }

    /// Whether the record `id` is still there.
    pub fn exists(&self, id: &str) -> bool {
        self.path_of(id).exists()
    }

    /// The batch recorded under the claim `claim`, once it has its own id.
    pub fn by_claim(&self, claim: &str) -> Option<Record> {
        self.all()
            .into_iter()
            .find(|r| r.claim == claim && !r.creating())
    }

    /// Removes a record (a `creating` one, once the batch has its own or never existed).
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path_of(id));
    }

    /// Every batch still pending at this base URL and endpoint for this provider model.
    pub fn pending(&self, base_url: &str, endpoint: &str, provider_model: &str) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .all()
            .into_iter()
            .filter(|r| {
                r.pending()
                    && r.base_url == base_url
                    && r.endpoint == endpoint
                    && r.provider_model == provider_model
            })
            .collect();
        out.sort_by(|a, b| (a.submitted_at, &a.id).cmp(&(b.submitted_at, &b.id)));
        out
    }

    /// Every readable record.
    fn all(&self) -> Vec<Record> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let text = std::fs::read(e.path()).ok()?;
                match serde_json::from_slice::<Record>(&text) {
                    Ok(r) => Some(r),
                    Err(err) => {
                        tracing::warn!(
                            "{}: not a batch record ({err}); ignored",
                            e.path().display()
                        );
                        None
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_batches_are_found_by_endpoint_and_model() {
        let d = tempfile::tempdir().unwrap();
        let reg = Registry::new(d.path());
        let log = d.path().join("batches.jsonl");
        reg.set_run_log(log.clone());
        let mut r = Record {
            id: "batch/1".into(),
            model: "m".into(),
            provider_model: "gpt".into(),
            base_url: "http://x/v1".into(),
            endpoint: "/v1/chat/completions".into(),
            input_file_id: "f".into(),
            submitted_at: 1,
            state: "submitted".into(),
            keys: vec!["k".into()],
            estimate_usd: 0.5,
            claim: "local-1".into(),
            pid: 0,
        };
        reg.write(&r).unwrap();
        assert!(d.path().join("batches/batch_1.json").exists());
        assert_eq!(
            reg.pending("http://x/v1", "/v1/chat/completions", "gpt"),
            vec![r.clone()]
        );
        assert!(
            reg.pending("http://y/v1", "/v1/chat/completions", "gpt")
                .is_empty()
        );
        r.state = "completed".into();
        reg.write(&r).unwrap();
        assert!(
            reg.pending("http://x/v1", "/v1/chat/completions", "gpt")
                .is_empty()
        );
        assert_eq!(std::fs::read_to_string(log).unwrap().lines().count(), 2);
        assert_eq!(
            reg.by_claim("local-1").map(|r| r.id),
            Some("batch/1".into())
        );
        assert!(reg.lock().is_some());
        assert!(d.path().join("batches.lock").exists());
    }
}
