//! A request rate learned from the server, for a provider with no `rpm:` of its own.
//!
//! Before the first rate-limit refusal nothing is paced. At a refusal the rate the server
//! admits is estimated as the requests started in the last second that it did not refuse
//! (lowered by one for each later refusal of a request that was in flight at the cut), and
//! new requests are spaced evenly at `BACKOFF` times that (never above what it was).
//! From then on the rate grows slowly while it stays near the level it was cut at (so it
//! probes the limit about once every `1 / SLOW_GROWTH × (1 - BACKOFF)` seconds), and fast
//! when far from it (a limit that was raised, or an estimate that was too low). It never
//! falls below half the best estimate (a server refusing at random is not a limit). An
//! `x-ratelimit-limit-requests` header (requests per minute) caps the rate. At most one cut
//! per `WINDOW`: the refusals of requests sent together are one signal.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The span over which admissions are counted.
const WINDOW: Duration = Duration::from_secs(1);
/// The share of the estimated admission rate that is used after a refusal.
const BACKOFF: f64 = 0.97;
/// Relative growth per second near the level of the last cut.
const SLOW_GROWTH: f64 = 0.0015;
/// Relative growth per second away from it.
const FAST_GROWTH: f64 = 0.05;
/// The band around the last cut's level where growth is slow.
const NEAR: f64 = 0.10;
/// The lowest rate it paces at (requests per second).
const FLOOR: f64 = 0.2;

#[derive(Default)]
struct State {
    /// Requests per second, once learned.
    rate: Option<f64>,
    /// The estimated admission rate at the last cut.
    level: f64,
    /// The span (s) its count was taken over.
    span: f64,
    /// The highest admission rate estimated at any cut: the rate never falls below half of
    /// it, so a server that refuses a share of requests at random (whatever the rate) does
    /// not drive the rate down cut after cut.
    best: f64,
    /// The earliest start of the next request.
    next: Option<Instant>,
    grown: Option<Instant>,
    last_cut: Option<Instant>,
    started: VecDeque<Instant>,
    refused: VecDeque<Instant>,
    /// From `x-ratelimit-limit-requests`, per second.
    cap: Option<f64>,
}

/// The learned rate of one provider instance.
#[derive(Default)]
pub struct Pace {
    state: Mutex<State>,
}

fn trim(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        q.pop_front();
    }
}

impl State {
    fn grow(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        let dt = self
            .grown
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
        self.grown = Some(now);
        let near = (rate - self.level).abs() <= NEAR * self.level;
        let g = if near { SLOW_GROWTH } else { FAST_GROWTH };
        let mut r = rate * (1.0 + g * dt);
        if let Some(c) = self.cap {
            r = r.min(c);
        }
        self.rate = Some(r.max(FLOOR));
    }
}

impl Pace {
    /// A request is about to start at `now`: returns when it may (reserving that slot), or
    /// `None` when nothing is paced yet.
    pub fn reserve(&self, now: Instant) -> Option<Instant> {
        let mut s = self.state.lock().expect("pace lock");
        s.grow(now);
        let at = s.rate.map(|rate| {
            let at = s.next.map_or(now, |n| n.max(now));
            s.next = Some(at + Duration::from_secs_f64(1.0 / rate));
            at
        });
        let t = at.unwrap_or(now);
        s.started.push_back(t);
        trim(&mut s.started, now);
        at
    }

    /// The server refused a request sent at `sent` for its rate, asking to wait `retry`
    /// (its Retry-After): cut the rate (once per `WINDOW`, and not for a request sent before
    /// the last cut: it says nothing of the rate since).
    ///
    /// The admitted requests are counted over the span from the oldest start in the window
    /// to when the server will take requests again (at most `WINDOW`; `WINDOW` when the
    /// server gave no Retry-After): a server that refuses at random and asks for a short
    /// wait is not taken for one with a low limit.
    pub fn refused(&self, sent: Instant, now: Instant, retry: Option<Duration>) {
        let mut s = self.state.lock().expect("pace lock");
        s.refused.push_back(now);
        trim(&mut s.refused, now);
        trim(&mut s.started, now);
        if let Some(t) = s.last_cut {
            if sent < t {
                // in flight at the cut, so counted as admitted then: correct the estimate
                if now.duration_since(t) < WINDOW {
                    s.level = (s.level - 1.0 / s.span).max(FLOOR);
                    let r = (BACKOFF * s.level).max(s.best / 2.0);
                    s.rate = Some(s.rate.map_or(r, |x| x.min(r)).max(FLOOR));
                }
                return;
            }
            if now.duration_since(t) < WINDOW {
                return;
            }
        }
        let span = match (retry, s.started.front()) {
            (Some(d), Some(first)) => (now.saturating_duration_since(*first) + d).min(WINDOW),
            _ => WINDOW,
        }
        .as_secs_f64()
        .max(0.001);
        s.span = span;
        let admitted = s.started.len().saturating_sub(s.refused.len()) as f64 / span;
        let estimate = match s.rate {
            Some(r) => admitted.min(r),
            None => admitted,
        }
        .max(FLOOR);
        s.best = s.best.max(estimate);
        let mut rate = (BACKOFF * estimate).max(s.best / 2.0);
        if let Some(c) = s.cap {
            rate = rate.min(c);
        }
        s.rate = Some(rate.max(FLOOR));
        s.level = estimate;
        s.last_cut = Some(now);
        s.grown = Some(now);
        s.refused.clear();
    }

    /// The server's `x-ratelimit-limit-requests` (requests per minute).
    pub fn limit_per_minute(&self, per_minute: f64) {
        if per_minute > 0.0 && per_minute.is_finite() {
            self.state.lock().expect("pace lock").cap = Some(per_minute / 60.0);
        }
    }

    /// The paced rate in requests per second (None: not paced).
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().expect("pace lock").rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_paces_at_what_the_server_admitted() {
        let p = Pace::default();
        let t0 = Instant::now();
        // eight sent together; the server admits five and refuses three
        for _ in 0..8 {
            assert_eq!(p.reserve(t0), None, "nothing is paced before a refusal");
        }
        let cut = t0 + Duration::from_millis(10);
        for _ in 0..3 {
            p.refused(t0, cut, None);
        }
        // a refusal of a request sent before the cut does not cut again, even later
        p.refused(t0, t0 + Duration::from_secs(2), None);
        let r = p.rate().expect("paced");
        assert!((r - BACKOFF * 5.0).abs() < 1e-9, "{r}");
        // the next requests are spaced 1/r apart
        let a = p.reserve(t0).unwrap();
        let b = p.reserve(t0).unwrap();
        assert!((b.duration_since(a).as_secs_f64() - 1.0 / r).abs() < 1e-3);
    }

    #[test]
    fn near_the_cut_it_grows_slowly_and_far_from_it_fast() {
        let p = Pace::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            p.reserve(t0);
        }
        p.refused(t0, t0, None);
        let r0 = p.rate().unwrap();
        p.reserve(t0 + Duration::from_secs(10));
        let r1 = p.rate().unwrap();
        assert!(
            r1 > r0 && r1 < r0 * 1.02,
            "slow near the level: {r0} -> {r1}"
        );
        for i in 11..=200 {
            p.reserve(t0 + Duration::from_secs(i));
        }
        let r2 = p.rate().unwrap();
        assert!(r2 > r0 * 1.5, "fast once past the band: {r2}");
    }

    #[test]
    fn a_short_retry_after_is_not_a_low_limit() {
        // three answered, one refused within 2 ms, and the server asks to wait 5 ms
        let p = Pace::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            p.reserve(t0);
        }
        let now = t0 + Duration::from_millis(2);
        p.refused(t0, now, Some(Duration::from_millis(5)));
        let r = p.rate().unwrap();
        assert!(r > 300.0, "{r}");
        // a window limit: ten admitted, then a wait of 980 ms
        let q = Pace::default();
        for _ in 0..11 {
            q.reserve(t0);
        }
        q.refused(
            t0,
            t0 + Duration::from_millis(20),
            Some(Duration::from_millis(980)),
        );
        assert!((q.rate().unwrap() - BACKOFF * 10.0).abs() < 1e-6);
    }

    #[test]
    fn refusals_at_random_do_not_drive_the_rate_to_the_floor() {
        // 30% refused whatever the rate: cut after cut, second after second
        let p = Pace::default();
        let t0 = Instant::now();
        for sec in 0..30u64 {
            let now = t0 + Duration::from_secs(sec);
            let n = p.rate().map_or(20, |r| r.round() as usize).max(1);
            for _ in 0..n {
                p.reserve(now);
            }
            for _ in 0..(n * 3).div_ceil(10) {
                p.refused(now, now + Duration::from_millis(500), None);
            }
        }
        let r = p.rate().unwrap();
        assert!(
            r >= 6.0,
            "held at half the best estimate, not the floor: {r}"
        );
    }

    #[test]
    fn the_servers_header_caps_the_rate() {
        let p = Pace::default();
        p.limit_per_minute(120.0);
        let t0 = Instant::now();
        for _ in 0..50 {
            p.reserve(t0);
        }
        p.refused(t0, t0, None);
        assert_eq!(p.rate(), Some(2.0));
    }
}
