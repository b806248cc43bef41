//! Client-side flow control of one OpenAI-compatible provider instance:
//! - `rpm`: a `governor` limiter with burst 1, so requests are spread evenly (60/rpm s apart);
//! - `tpm`: a `governor` limiter over tokens with a burst of one minute's budget; each request
//!   reserves `ceil(prompt chars / 4) + max_tokens` tokens (1024 when max_tokens is unset),
//!   clamped to the budget; there is no refund after the answer (the estimate is an upper
//!   bound for the output, a rough one for the prompt);
//! - an adaptive (AIMD) in-flight limit: starts at `SLOW_START` (or `max_in_flight` when
//!   lower) and grows by one per success (doubling each round trip) up to `max_in_flight`
//!   (or 512) until the first congestion; is halved (min 1) on a rate-limit 429 — at most
//!   once per "epoch", so a burst of 429s from requests sent together halves once — and
//!   then grows back by 1/4 per success;
//! - with no `rpm:`, a request rate learned from the server (`pace`: its
//!   `x-ratelimit-limit-requests`, else its 429s), so a server's limit is found and kept
//!   instead of being hit again and again; during the slow start (before any rate is known)
//!   a round's new requests are spread over half the round trip, so the first 429 holds the
//!   rest of the round back;
//! - a stream the server cut (ended without a `finish_reason`) lowers the ceiling of that
//!   limit to half the requests then in flight (min 1, once per epoch) for the rest of the
//!   run: llama-cpp-python cuts a stream whenever another request arrives, so only fewer
//!   requests at once get whole answers from it;
//! - `x-ratelimit-remaining-requests: 0` pauses new requests until
//!   `x-ratelimit-reset-requests` has elapsed since the request was sent, and a rate-limit
//!   429 with `Retry-After` / `retry-after-ms` pauses new requests for that long; requests
//!   already waiting for their paced slot wait for the pause too and are spaced after it.
//!
//! Every attempt (retries included) goes through all of them.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::retry::parse_go_duration;

/// Default ceiling of the adaptive in-flight limit when the spec sets no `max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Reserved output tokens when a request sets no `max_tokens`.
pub const DEFAULT_TOKEN_RESERVE: u64 = 1024;
/// Additive increase of the in-flight limit per successful request.
const INCREASE_PER_SUCCESS: f64 = 0.25;
/// The in-flight limit a provider starts at, before any congestion: a burst of 512
/// requests at a server that admits 5 a second would be 507 refusals.
const SLOW_START: f64 = 4.0;

struct AimdState {
    limit: f64,
    /// The most the limit grows back to (lowered by cut streams).
    ceiling: f64,
    in_flight: usize,
    epoch: u64,
    /// Growing by one per success until the first congestion.
    slow_start: bool,
    /// Smoothed duration of a successful request (s; 0: none yet).
    srtt: f64,
}

/// The limits of one provider instance.
pub struct Limits {
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<(DefaultDirectRateLimiter, u32)>,
    state: Mutex<AimdState>,
    wake: Notify,
    paused_until: Mutex<Option<Instant>>,
    /// The learned rate, when no `rpm:` is set.
    pace: Option<super::pace::Pace>,
}

/// One admitted request: holds an in-flight slot until dropped.
pub struct Permit<'a> {
    limits: &'a Limits,
    epoch: u64,
    /// When it was let through (after any pacing).
    sent: Instant,
}

impl Limits {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>, max_in_flight: Option<usize>) -> Arc<Self> {
        let max = max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1) as f64;
        let one = NonZeroU32::MIN;
        Arc::new(Limits {
            rpm: rpm
                .and_then(NonZeroU32::new)
                .map(|r| RateLimiter::direct(Quota::per_minute(r).allow_burst(one))),
            tpm: tpm
                .and_then(NonZeroU32::new)
                .map(|t| (RateLimiter::direct(Quota::per_minute(t)), t.get())),
            state: Mutex::new(AimdState {
                limit: max.min(SLOW_START),
                ceiling: max,
                in_flight: 0,
                epoch: 0,
                slow_start: true,
                srtt: 0.0,
            }),
            wake: Notify::new(),
            paused_until: Mutex::new(None),
            pace: rpm.is_none().then(super::pace::Pace::default),
        })
    }

    /// Waits for an in-flight slot, the end of any header pause, the learned pace and the
    /// rpm / tpm budgets. A pause or a cut of the pace that comes while a request waits for its
    /// slot holds it too (it takes a new slot after the pause).
    pub async fn admit(&self, est_tokens: u64) -> Permit<'_> {
        let mut permit = self.acquire_slot().await;
        let mut used = None;
        loop {
            self.wait_for_pause().await;
            let Some(p) = &self.pace else { break };
            let Some(slot) = p.reserve(Instant::now(), self.provisional_rate()) else {
                break;
            };
            tokio::time::sleep_until(slot.at).await;
            if p.still_valid(slot) && !self.paused() {
                used = Some(slot.at);
                break;
            }
        }
        if let Some(r) = &self.rpm {
            r.until_ready().await;
        }
        if let Some((t, cap)) = &self.tpm {
            let n = est_tokens.clamp(1, u64::from(*cap)) as u32;
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            // n <= cap = the burst size, so this cannot fail.
            let _ = t.until_n_ready(n).await;
        }
        permit.sent = Instant::now();
        if let Some(p) = &self.pace {
            p.started(permit.sent, used);
        }
        permit
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self.paused_until.lock().expect("pause lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
    }

    fn paused(&self) -> bool {
        self.paused_until
            .lock()
            .expect("pause lock")
            .is_some_and(|t| t > Instant::now())
    }

    /// While the in-flight limit is in its slow start and no rate is learned, a round's
    /// requests are spread over twice its share of the round trip instead of sent at once
    /// (as TCP paces its slow start), so a server's first refusal stops the rest of the
    /// round before they are sent. None before the first answer.
    fn provisional_rate(&self) -> Option<f64> {
        let s = self.state.lock().expect("aimd lock");
        if !s.slow_start || s.srtt <= 0.0 || s.limit >= s.ceiling {
            return None;
        }
        Some(2.0 * s.limit.max(1.0) / s.srtt)
    }

    async fn acquire_slot(&self) -> Permit<'_> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            {
                let mut s = self.state.lock().expect("aimd lock");
                if (s.in_flight as f64) < s.limit.floor().max(1.0) {
                    s.in_flight += 1;
                    return Permit {
                        limits: self,
                        epoch: s.epoch,
                        sent: Instant::now(),
                    };
                }
                // Registered before the lock is released, so no wake-up is lost.
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// Reads `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests` and
    /// `x-ratelimit-reset-requests` of the answer to a request sent at `sent` (the server
    /// counted its window when the request arrived, so an exhausted window's reset counts
    /// from then, not from the answer, which may come much later).
    pub fn observe_headers(&self, headers: &HeaderMap, sent: Instant) {
        let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        if let Some(p) = &self.pace
            && let Some(limit) =
                get("x-ratelimit-limit-requests").and_then(|v| v.trim().parse::<f64>().ok())
        {
            p.limit_per_minute(limit);
        }
        let remaining =
            get("x-ratelimit-remaining-requests").and_then(|v| v.trim().parse::<f64>().ok());
        if remaining.is_some_and(|r| r <= 0.0) {
            let reset = get("x-ratelimit-reset-requests")
                .and_then(parse_go_duration)
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(300));
            self.hold_until(sent + reset);
        }
    }

    /// Holds every new request of this provider back for `d` (a 429's Retry-After: the
    /// limit is the account's, so the other requests would be refused too).
    pub fn pause_for(&self, d: Duration) {
        self.hold_until(Instant::now() + d.min(Duration::from_secs(300)));
    }

    fn hold_until(&self, until: Instant) {
        if until <= Instant::now() {
            return;
        }
        if let Some(pace) = &self.pace {
            pace.hold_until(until);
        }
        let mut p = self.paused_until.lock().expect("pause lock");
        if p.is_none_or(|old| old < until) {
            *p = Some(until);
        }
    }

    /// The learned request rate (requests per second; None: not paced).
    pub fn paced_rate(&self) -> Option<f64> {
        self.pace.as_ref().and_then(|p| p.rate())
    }

    /// The current adaptive in-flight limit (for tests and progress displays).
    pub fn in_flight_limit(&self) -> usize {
        self.state.lock().expect("aimd lock").limit.floor().max(1.0) as usize
    }
}

impl Permit<'_> {
    /// When the request was let through.
    pub fn sent(&self) -> Instant {
        self.sent
    }

    /// The request was rate limited (the server asked to wait `retry`): cut the learned
    /// rate, and halve the in-flight limit (once per epoch).
    pub fn congested(&self, retry: Option<Duration>) {
        if let Some(p) = &self.limits.pace {
            p.refused(self.sent, Instant::now(), retry);
        }
        let mut s = self.limits.state.lock().expect("aimd lock");
        s.slow_start = false;
        if s.epoch == self.epoch {
            let current = s.limit.min(s.in_flight as f64);
            s.limit = (current / 2.0).max(1.0);
            s.epoch += 1;
        }
    }

    /// The server cut this request's stream: halve the limit and its ceiling (once per
    /// epoch). Returns the new limit when this call lowered it.
    pub fn cut(&self) -> Option<usize> {
        let mut s = self.limits.state.lock().expect("aimd lock");
        if s.epoch != self.epoch {
            return None;
        }
        let current = s.limit.min(s.in_flight as f64);
        let new = (current / 2.0).floor().max(1.0);
        s.epoch += 1;
        s.slow_start = false;
        if new >= s.ceiling {
            return None;
        }
        s.limit = new;
        s.ceiling = new;
        Some(new as usize)
    }

    /// The request succeeded: grow the limit additively.
    pub fn succeeded(&self) {
        let mut s = self.limits.state.lock().expect("aimd lock");
        let took = self.sent.elapsed().as_secs_f64();
        s.srtt = if s.srtt > 0.0 {
            0.875 * s.srtt + 0.125 * took
        } else {
            took
        };
        let step = if s.slow_start {
            1.0
        } else {
            INCREASE_PER_SUCCESS
        };
        s.limit = (s.limit + step).min(s.ceiling);
        drop(s);
        self.limits.wake.notify_waiters();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.limits.state.lock().expect("aimd lock");
        s.in_flight -= 1;
        drop(s);
        self.limits.wake.notify_waiters();
    }
}

/// The tokens a request reserves from the tpm budget.
pub fn estimate_tokens(prompt_chars: usize, max_tokens: Option<u64>) -> u64 {
    (prompt_chars as u64).div_ceil(4) + max_tokens.unwrap_or(DEFAULT_TOKEN_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test]
    async fn aimd_halves_once_per_epoch_and_recovers() {
        let l = Limits::new(None, None, Some(4));
        let permits: Vec<_> = futures_util::future::join_all((0..4).map(|_| l.admit(1))).await;
        for p in &permits {
            p.congested(None);
        }
        assert_eq!(l.in_flight_limit(), 2);
        drop(permits);
        let p = l.admit(1).await;
        p.congested(None);
        assert_eq!(l.in_flight_limit(), 1);
        for _ in 0..8 {
            p.succeeded();
        }
        assert_eq!(l.in_flight_limit(), 3);
    }

    #[tokio::test]
    async fn it_starts_small_and_doubles_until_the_first_congestion() {
        let l = Limits::new(None, None, Some(64));
        assert_eq!(l.in_flight_limit(), SLOW_START as usize);
        let p = l.admit(1).await;
        for _ in 0..10 {
            p.succeeded();
        }
        assert_eq!(l.in_flight_limit(), SLOW_START as usize + 10);
        p.congested(None);
        let n = l.in_flight_limit();
        drop(p);
        let q = l.admit(1).await;
        for _ in 0..4 {
            q.succeeded();
        }
        assert_eq!(
            l.in_flight_limit(),
            n + 1,
            "a quarter per success after congestion"
        );
    }

    #[tokio::test]
    async fn cut_streams_lower_the_ceiling_for_good() {
        let l = Limits::new(None, None, None);
        let permits: Vec<_> = futures_util::future::join_all((0..4).map(|_| l.admit(1))).await;
        assert_eq!(permits[0].cut(), Some(2));
        assert_eq!(permits[1].cut(), None, "once per epoch");
        drop(permits);
        let p = l.admit(1).await;
        let q = l.admit(1).await;
        assert_eq!(q.cut(), Some(1));
        for _ in 0..20 {
            p.succeeded();
        }
        assert_eq!(
            l.in_flight_limit(),
            1,
            "a cutting server stays at its lowered limit"
        );
    }

    #[tokio::test]
    async fn header_pause_delays_next_request() {
        let l = Limits::new(None, None, None);
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        h.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("150ms"),
        );
        l.observe_headers(&h, Instant::now());
        let t = std::time::Instant::now();
        drop(l.admit(1).await);
        assert!(t.elapsed() >= Duration::from_millis(140));
    }
}
