//! Endpoint pools: a model served by several replicas (`base_urls:`) is one model with
//! several URLs. Each request goes to the replica with the fewest requests in flight (ties:
//! the one sent fewer); a replica that refuses connections or answers 5xx is benched for a
//! while (0.5 s, doubling to 30 s while it keeps failing) and the retry goes elsewhere; when
//! every replica is benched the one whose bench ends first is tried. Cache keys do not name
//! a replica: the model answers, not the replica. Counts per replica go to metrics.json.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One replica.
#[derive(Debug)]
struct Replica {
    /// The request URL (base URL + endpoint path).
    url: String,
    in_flight: AtomicUsize,
    sent: AtomicU64,
    failed: AtomicU64,
    benched: AtomicU64,
    /// Failures in a row (the bench doubles with each).
    strikes: AtomicU32,
    until: Mutex<Option<Instant>>,
}

/// What metrics.json says of a replica.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplicaStats {
    pub url: String,
    pub sent: u64,
    pub failed: u64,
    pub benched: u64,
}

/// The replicas of one model.
#[derive(Debug)]
pub struct Pool {
    replicas: Vec<Replica>,
}

/// A request's hold on its replica (in flight until dropped).
pub struct Lease<'a> {
    pool: &'a Pool,
    i: usize,
}

const FIRST_BENCH: Duration = Duration::from_millis(500);
const LONGEST_BENCH: Duration = Duration::from_secs(30);

impl Pool {
    /// `urls`: full request URLs, at least one.
    pub fn new(urls: Vec<String>) -> Pool {
        Pool {
            replicas: urls
                .into_iter()
                .map(|url| Replica {
                    url,
                    in_flight: AtomicUsize::new(0),
                    sent: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    benched: AtomicU64::new(0),
                    strikes: AtomicU32::new(0),
                    until: Mutex::new(None),
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    fn bench_end(&self, i: usize) -> Option<Instant> {
        *self.replicas[i].until.lock().expect("bench lock")
    }

    /// The replica for the next request.
    pub fn pick(&self) -> Lease<'_> {
        let now = Instant::now();
        let free = |i: &usize| self.bench_end(*i).is_none_or(|t| t <= now);
        let load = |i: &usize| {
            let r = &self.replicas[*i];
            (
                r.in_flight.load(Ordering::Relaxed),
                r.sent.load(Ordering::Relaxed),
            )
        };
        let all = 0..self.replicas.len();
        let i = all
            .clone()
            .filter(free)
            .min_by_key(load)
            .or_else(|| all.min_by_key(|i| self.bench_end(*i)))
            .unwrap_or(0);
        let r = &self.replicas[i];
        r.in_flight.fetch_add(1, Ordering::Relaxed);
        r.sent.fetch_add(1, Ordering::Relaxed);
        Lease { pool: self, i }
    }

    /// The URL, or the replicas' URLs joined with ` | ` (for messages).
    pub fn shown(&self) -> String {
        self.replicas
            .iter()
            .map(|r| r.url.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Every replica's counts.
    pub fn stats(&self) -> Vec<ReplicaStats> {
        self.replicas
            .iter()
            .map(|r| ReplicaStats {
                url: r.url.clone(),
                sent: r.sent.load(Ordering::Relaxed),
                failed: r.failed.load(Ordering::Relaxed),
                benched: r.benched.load(Ordering::Relaxed),
            })
            .collect()
    }
}

impl Lease<'_> {
    pub fn url(&self) -> &str {
        &self.pool.replicas[self.i].url
    }

    /// The replica failed the request (refused, reset, 5xx): benched, longer each time in a
    /// row. A pool of one is never benched (there is nowhere else to go; the retry policy
    /// waits instead).
    pub fn failed(&self) {
        let r = &self.pool.replicas[self.i];
        r.failed.fetch_add(1, Ordering::Relaxed);
        if self.pool.replicas.len() < 2 {
            return;
        }
        let strikes = r.strikes.fetch_add(1, Ordering::Relaxed).min(16);
        let bench = FIRST_BENCH.saturating_mul(1 << strikes).min(LONGEST_BENCH);
        *r.until.lock().expect("bench lock") = Some(Instant::now() + bench);
        r.benched.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            "replica {} failed; benched for {:.1} s, requests go to the others",
            r.url,
            bench.as_secs_f64()
        );
    }

    /// The replica answered: its failures in a row are forgotten.
    pub fn answered(&self) {
        let r = &self.pool.replicas[self.i];
        r.strikes.store(0, Ordering::Relaxed);
        *r.until.lock().expect("bench lock") = None;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.replicas[self.i]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_replica_is_picked_and_a_failing_one_is_benched() {
        let p = Pool::new(vec!["a".into(), "b".into(), "c".into()]);
        let (x, y) = (p.pick(), p.pick());
        assert_eq!((x.url(), y.url()), ("a", "b"));
        let z = p.pick();
        assert_eq!(z.url(), "c");
        drop(y);
        assert_eq!(p.pick().url(), "b", "b has none in flight now");
        z.failed();
        drop(z);
        drop(x);
        // c is benched: a and b take the requests
        for _ in 0..4 {
            assert_ne!(p.pick().url(), "c");
        }
        let s = p.stats();
        assert_eq!((s[2].failed, s[2].benched), (1, 1));
        // all benched: the one whose bench ends first
        let q = Pool::new(vec!["a".into(), "b".into()]);
        q.pick().failed();
        q.pick().failed();
        assert_eq!(q.pick().url(), "a");
    }
}
