//! The remote cache: the same entries as a cache directory, shared by many machines through
//! an S3-compatible bucket (`--cache-remote s3://bucket/prefix`, `DISTILL_CACHE_REMOTE`, or a
//! pipeline's `cache_remote:`). An entry lives at `<prefix>/objects/ab/cdef…`, the same bytes
//! as the local file, so a bucket can also be filled or read with any S3 tool.
//!
//! It owns: the URL and its checks ([`RemoteUrl`]), the connection from the standard `AWS_*`
//! variables (credentials are handed to the client and never logged, written or put in an
//! error text, see [`scrub`]), read-through ([`Remote::fetch`]: a local miss looks here, the
//! cache verifies and keeps what it finds), write-behind (`upload`: entries written locally
//! are queued and uploaded in the background with retries, counted, flushed at the end of a
//! run with a bounded wait), and whole runs moved by `distill cache push|pull` (`transfer`).
//!
//! It does not verify entries (the cache does, with the very check a local entry gets), take
//! locks (single-flight stays per cache directory: the remote is read after a local miss and
//! is not locked, so two machines may both pay for one call; the first upload wins), or know
//! anything of runs (the caller reads their `cache_keys.txt`).

#[cfg(test)]
mod tier_tests;
mod transfer;
mod upload;

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStoreExt, RetryConfig};
use serde::Serialize;

use crate::cache::Key;

pub use transfer::{Moved, pull, push};

/// Why the remote cache cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not `s3://bucket/prefix`.
    #[error("`{url}` is not a remote cache URL: {why} (e.g. s3://my-bucket/distill-cache)")]
    BadUrl { url: String, why: String },
    /// The `AWS_*` settings do not make a client.
    #[error("the remote cache {url} cannot be reached with the AWS_* settings: {why}")]
    Config { url: String, why: String },
    /// A request failed (the store's message, credentials removed).
    #[error("remote cache {url}: {why}")]
    Request { url: String, why: String },
}

/// `s3://bucket/prefix`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl RemoteUrl {
    pub fn parse(url: &str) -> Result<RemoteUrl, RemoteError> {
        let bad = |why: &str| RemoteError::BadUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("only s3:// URLs are supported (any S3-compatible store: set AWS_ENDPOINT_URL for one that is not AWS)"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("it names no bucket"));
        }
        if !(3..=63).contains(&bucket.len())
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            || !bucket.as_bytes()[0].is_ascii_alphanumeric()
        {
            return Err(bad(&format!(
                "`{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, `-` or `.`)"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        if prefix
            .split('/')
            .any(|s| s == "." || s == ".." || (s.is_empty() && !prefix.is_empty()))
        {
            return Err(bad("the prefix has an empty, `.` or `..` segment"));
        }
        if prefix.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("the prefix has a control character or a backslash"));
        }
        Ok(RemoteUrl {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// What the run may do with the remote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Keep what a read finds in the local cache (a plan only counts, it never writes).
    pub keep_local: bool,
    /// Upload what is written locally (write-behind).
    pub upload: bool,
}

/// Counters of one process's use of the remote (atomics: lookups run concurrently).
#[derive(Debug, Default)]
pub struct Counters {
    pub lookups: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Reads that failed (the store unreachable, a denied request): a miss, counted.
    pub read_errors: AtomicU64,
    /// Remote entries that failed verification (a miss; never used).
    pub rejected: AtomicU64,
    pub queued: AtomicU64,
    pub uploaded: AtomicU64,
    /// Uploads skipped because the bucket already held the entry.
    pub already_there: AtomicU64,
    pub upload_retries: AtomicU64,
    /// Uploads given up after their retries.
    pub upload_failed: AtomicU64,
    /// Entries not queued: the queue was full (`cache push` uploads them later).
    pub not_queued: AtomicU64,
}

/// A snapshot of the counters, as metrics.json and the summaries show it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub url: String,
    pub lookups: u64,
    pub hits: u64,
    pub misses: u64,
    pub read_errors: u64,
    pub rejected: u64,
    pub uploaded: u64,
    pub already_there: u64,
    pub upload_retries: u64,
    pub upload_failed: u64,
    pub not_queued: u64,
    /// Uploads still pending when the end-of-run wait ran out.
    pub unfinished: u64,
    /// The last error (credentials removed), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Largest number of uploads waiting in the queue (keys only: a few hundred KiB).
const QUEUE: usize = 10_000;
/// Requests to the store in flight at once, reads and writes each.
const IN_FLIGHT: usize = 16;
/// Most keys remembered as missing from the bucket.
const MAX_ABSENT: usize = 100_000;
/// How long the end of a run waits for pending uploads.
pub const FLUSH_WAIT: Duration = Duration::from_secs(120);

/// A connected remote cache.
pub struct Remote {
    pub url: RemoteUrl,
    store: Arc<AmazonS3>,
    access: Access,
    /// The remote's own runtime: the cache's reads are synchronous, and uploads go on while
    /// the run's runtime is busy.
    rt: Option<tokio::runtime::Runtime>,
    reads: Arc<tokio::sync::Semaphore>,
    counters: Arc<Counters>,
    /// Keys this process found missing: it makes them itself, so it does not ask again.
    absent: Mutex<HashSet<String>>,
    uploads: upload::Queue,
    last_error: Arc<Mutex<Option<String>>>,
    secrets: Arc<Vec<String>>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        // may be dropped inside the run's runtime, where a blocking shutdown would panic
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// `AWS_ENDPOINT_URL` (or the other spellings the client reads), if set.
fn endpoint(b: &AmazonS3Builder) -> Option<String> {
    b.get_config_value(&AmazonS3ConfigKey::Endpoint)
        .filter(|e| !e.trim().is_empty())
}

/// Where the credentials come from, or why there are none. Without keys, a web identity,
/// container credentials or an unsigned (public) bucket, the client would ask the EC2
/// instance metadata address: that is done only when `AWS_EC2_METADATA_DISABLED=false`
/// says so, never by surprise.
fn check_credentials(b: &AmazonS3Builder) -> Result<(), String> {
    use AmazonS3ConfigKey as K;
    let set = |k: K| b.get_config_value(&k).is_some_and(|v| !v.trim().is_empty());
    let skip = b
        .get_config_value(&K::SkipSignature)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let imds =
        std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("false"));
    if set(K::AccessKeyId) && !set(K::SecretAccessKey) {
        return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into());
    }
    if set(K::AccessKeyId)
        || skip
        || imds
        || set(K::WebIdentityTokenFile)
        || set(K::ContainerCredentialsRelativeUri)
        || set(K::ContainerCredentialsFullUri)
    {
        return Ok(());
    }
    Err("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), AWS_SKIP_SIGNATURE=true for a public bucket, or AWS_EC2_METADATA_DISABLED=false to use an EC2 instance role".into())
}

/// True for `http://127.0.0.1…`, `http://localhost…`, `http://[::1]…`.
fn is_loopback(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The credential values of the environment, to be removed from any text shown.
fn secrets() -> Vec<String> {
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ACCESS_KEY_ID",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok())
    .filter(|v| v.len() >= 4)
    .collect()
}

/// `text` with every credential value replaced by `[redacted]`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut s = text.to_string();
    for v in secrets {
        s = s.replace(v.as_str(), "[redacted]");
    }
    s
}

impl Remote {
    /// Connects to `url` with the `AWS_*` settings (nothing is sent yet).
    pub fn open(url: &str, access: Access) -> Result<Remote, RemoteError> {
        Remote::open_with(url, access, AmazonS3Builder::from_env())
    }

    /// Connects to `url` with the settings of `b` (the environment's, or a test's).
    fn open_with(url: &str, access: Access, b: AmazonS3Builder) -> Result<Remote, RemoteError> {
        let parsed = RemoteUrl::parse(url)?;
        let mut b = b.with_bucket_name(&parsed.bucket);
        check_credentials(&b).map_err(|why| RemoteError::Config {
            url: parsed.to_string(),
            why,
        })?;
        let mut client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        if let Some(e) = endpoint(&b) {
            if is_loopback(&e) {
                client = client.with_allow_http(true);
            } else if e.starts_with("http://")
                && !std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            {
                return Err(RemoteError::Config {
                    url: parsed.to_string(),
                    why: format!(
                        "AWS_ENDPOINT_URL `{e}` is plain http to another machine: use https, or set AWS_ALLOW_HTTP=true to send the cache unencrypted"
                    ),
                });
            }
        }
        // object_store builds its own reqwest client: the crypto provider must be in place
        crate::tls::init();
        b = b.with_client_options(client).with_retry(RetryConfig {
            // a read on the hot path tries twice; uploads retry with their own backoff
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 1,
            retry_timeout: Duration::from_secs(30),
        });
        let secrets = Arc::new(secrets());
        let store = b.build().map_err(|e| RemoteError::Config {
            url: parsed.to_string(),
            why: scrub(&e.to_string(), &secrets),
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("distill-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Config {
                url: parsed.to_string(),
                why: format!("starting its runtime: {e}"),
            })?;
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let last_error = Arc::new(Mutex::new(None));
        let uploads = upload::Queue::start(
            rt.handle(),
            upload::Shared {
                store: store.clone(),
                prefix: parsed.prefix.clone(),
                counters: counters.clone(),
                last_error: last_error.clone(),
                secrets: secrets.clone(),
                url: parsed.to_string(),
            },
            QUEUE,
            IN_FLIGHT,
        );
        Ok(Remote {
            url: parsed,
            store,
            access,
            rt: Some(rt),
            reads: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            counters,
            absent: Mutex::new(HashSet::new()),
            uploads,
            last_error,
            secrets,
        })
    }

    pub fn access(&self) -> Access {
        self.access
    }

    /// Where an entry lives in the bucket.
    fn object(&self, key: &Key) -> ObjectPath {
        object_path(&self.url.prefix, key)
    }

    /// Runs `f` on the remote's runtime and waits for it, from any thread: a worker of the
    /// run's runtime hands its other tasks on while it waits.
    pub(crate) fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self
            .rt
            .as_ref()
            .expect("runtime lives as long as the remote");
        let (tx, rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        let wait = move || rx.recv().expect("the remote's task answers");
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
    }

    /// Waits (at most `wait`) for the queued uploads; returns the counts.
    pub fn flush(&self, wait: Duration) -> Report {
        let uploads = self.uploads.clone();
        let unfinished = self.block(async move { uploads.drained(wait).await });
        let mut r = self.report();
        r.unfinished = unfinished;
        r
    }

    /// The counts so far.
    pub fn report(&self) -> Report {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Report {
            url: self.url.to_string(),
            lookups: g(&c.lookups),
            hits: g(&c.hits),
            misses: g(&c.misses),
            read_errors: g(&c.read_errors),
            rejected: g(&c.rejected),
            uploaded: g(&c.uploaded),
            already_there: g(&c.already_there),
            upload_retries: g(&c.upload_retries),
            upload_failed: g(&c.upload_failed),
            not_queued: g(&c.not_queued),
            unfinished: self.uploads.pending(),
            last_error: self.last_error.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Keeps `msg` (credentials removed) as the last error; returns it.
    fn note_error(&self, msg: &str) -> String {
        let msg = format!("remote cache {}: {}", self.url, scrub(msg, &self.secrets));
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(msg.clone());
        }
        msg
    }
}

/// The cache's second tier: read after a local miss, told of what is written.
impl crate::cache::Tier for Remote {
    fn keep_local(&self) -> bool {
        self.access.keep_local
    }

    /// The stored bytes of an entry, if the bucket has them; a failed read is a miss (counted,
    /// its error kept for the summary). Not verified here: the cache does that.
    fn fetch(&self, key: &Key) -> Option<Vec<u8>> {
        if self.absent.lock().is_ok_and(|a| a.contains(&key.0)) {
            return None;
        }
        self.counters.lookups.fetch_add(1, Ordering::Relaxed);
        let store = self.store.clone();
        let path = self.object(key);
        let reads = self.reads.clone();
        let got = self.block(async move {
            let _permit = reads.acquire_owned().await;
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        match got {
            Ok(Some(bytes)) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(bytes)
            }
            Ok(None) => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut a) = self.absent.lock() {
                    // bounded: forgetting only costs a second look
                    if a.len() >= MAX_ABSENT {
                        a.clear();
                    }
                    a.insert(key.0.clone());
                }
                None
            }
            Err(e) => {
                self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                let msg = self.note_error(&format!("reading {}: {e}", key.0));
                tracing::warn!("{msg}; treating it as a miss");
                None
            }
        }
    }

    /// A fetched entry failed the cache's check: counted, never used.
    fn rejected(&self, key: &Key, why: &str) {
        // counted as found by `fetch`; it is not a hit
        self.counters.hits.fetch_sub(1, Ordering::Relaxed);
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let msg = self.note_error(&format!("entry {} is corrupt ({why})", key.0));
        tracing::warn!("{msg}; treating it as a miss");
    }

    /// Queues the upload of an entry just written (write-behind; never blocks).
    fn written(&self, key: &Key, bytes: Vec<u8>) {
        if self.access.upload {
            self.uploads
                .push(upload::Op::Put(key.clone(), bytes), &self.counters);
        }
    }

    /// Queues the removal of an entry the run found unusable (so no machine reads it again).
    fn removed(&self, key: &Key) {
        if self.access.upload {
            self.uploads
                .push(upload::Op::Delete(key.clone()), &self.counters);
        }
    }
}

/// `<prefix>/objects/ab/cdef…`.
fn object_path(prefix: &str, key: &Key) -> ObjectPath {
    let rel = format!("objects/{}/{}", &key.0[..2], &key.0[2..]);
    if prefix.is_empty() {
        ObjectPath::from(rel)
    } else {
        ObjectPath::from(format!("{prefix}/{rel}"))
    }
}

impl Report {
    /// One line for a run's summary; the warning lines when something was not uploaded.
    pub fn lines(&self) -> (String, Vec<String>) {
        let line = format!(
            "remote cache {}: {} read ({} hit, {} miss{}), {} uploaded, {} already there{}",
            self.url,
            self.lookups,
            self.hits,
            self.misses,
            if self.read_errors + self.rejected > 0 {
                format!(
                    ", {} failed read, {} corrupt",
                    self.read_errors, self.rejected
                )
            } else {
                String::new()
            },
            self.uploaded,
            self.already_there,
            if self.upload_retries > 0 {
                format!(", {} upload retries", self.upload_retries)
            } else {
                String::new()
            }
        );
        let mut warn = Vec::new();
        let not_up = self.upload_failed + self.not_queued + self.unfinished;
        if not_up > 0 {
            warn.push(format!(
                "NOT UPLOADED: {not_up} entr{} to {} ({} failed after retries, {} not queued, {} still pending when the wait ended): they are in the local cache; `distill cache push RUN_DIR` uploads them",
                if not_up == 1 { "y" } else { "ies" },
                self.url,
                self.upload_failed,
                self.not_queued,
                self.unfinished
            ));
        }
        if not_up + self.read_errors > 0
            && let Some(e) = &self.last_error
        {
            warn.push(format!("last remote error: {e}"));
        }
        (line, warn)
    }
}

#[cfg(test)]
mod tests;
