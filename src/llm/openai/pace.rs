//! A request rate learned from the server, for a provider with no `rpm:` of its own.
//!
//! - A server's `x-ratelimit-limit-requests` (requests per minute) sets the rate to `BACKOFF`
//!   times it at once (and caps any learned rate), so a server that says its limit is never
//!   refused for it.
//! - Otherwise nothing is paced before the first rate-limit refusal (the caller may pass a
//!   provisional rate, e.g. its slow start spread over a round trip). At a refusal the rate
//!   the server admits is estimated as the requests started in the last second that it did
//!   not refuse (lowered by one for each later refusal of a request that was in flight at
//!   the cut; when already paced and that count is near the rate, the rate itself), and new
//!   requests are spaced evenly at `BACKOFF` times that (never above what it was): slightly under the limit, so a window the server counts from its own clock is
//!   not overrun by a few milliseconds of jitter.
//! - From then on the rate grows slowly while it stays near the level it was cut at (it
//!   probes the limit about once every `(1 - BACKOFF) / SLOW_GROWTH` seconds), and fast when
//!   far from it (a limit that was raised, or an estimate that was too low).
//! - Refusals that are not the rate's are told apart by what a cut does: when the refused
//!   share since the last cut is not below half the share that caused it (and at most half of
//!   all requests), the server refuses at random (or for something else): that cut is undone,
//!   the share is remembered as noise, and later refusals cut only when the window's share
//!   rises well above it. So a server refusing a share at random is cut at most once, and not
//!   for long. A refusal while nothing of this client's was admitted in the window says
//!   nothing of its rate: no cut. Nor does a single refusal that comes before the rate has
//!   grown back halfway to the level it was cut at (a found limit is probed only when the
//!   rate reaches it again): the refusals after it tell noise from a lower limit.
//! - At most one cut per `WINDOW`: the refusals of requests sent together are one signal.
//!
//! Deliberately not here: waiting for a server's Retry-After or an exhausted
//! `x-ratelimit-remaining-requests` (the caller's pause), and the in-flight limit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The span over which admissions are counted.
const WINDOW: Duration = Duration::from_secs(1);
/// The share of the estimated (or announced) admission rate that is paced at.
pub const BACKOFF: f64 = 0.98;
/// Relative growth per second near the level of the last cut.
const SLOW_GROWTH: f64 = 0.0015;
/// Relative growth per second away from it.
const FAST_GROWTH: f64 = 0.05;
/// The band around the last cut's level where growth is slow.
const NEAR: f64 = 0.10;
/// The lowest rate it paces at (requests per second).
const FLOOR: f64 = 0.2;
/// Requests since a cut before its effect on the refused share is judged.
const MIN_JUDGED: u32 = 6;
/// How much of a request's lateness (a timer that fired late, a busy machine) the next
/// slots may take back after a respace, instead of the whole schedule shifting by it.
const CATCHUP: Duration = Duration::from_millis(10);
/// Spacing below this is not paced (a timer cannot keep it; such a rate is no constraint).
const FINEST: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    /// Requests per second, once learned.
    rate: Option<f64>,
    /// The estimated admission rate at the last cut.
    level: f64,
    /// The earliest start of the next request.
    next: Option<Instant>,
    grown: Option<Instant>,
    last_cut: Option<Instant>,
    /// The last cut as counted: requests started and refused in its window, its span (s).
    cut: Cut,
    /// Requests started and refused since the last cut.
    since_started: u32,
    since_refused: u32,
    /// The refused share that a cut did not lower (0: none seen).
    noise: f64,
    /// Bumped by every change of the rate (or hold) that should re-space requests already
    /// waiting: they reserve again, from the last start on.
    generation: u64,
    /// When the last request was sent, or its slot when it was sent late by less than
    /// `CATCHUP`: the schedule restarts from here after a respace.
    last_started: Option<Instant>,
    started: VecDeque<Instant>,
    refused: VecDeque<Instant>,
    /// From `x-ratelimit-limit-requests`, per second.
    cap: Option<f64>,
}

#[derive(Default, Clone, Copy)]
struct Cut {
    started: f64,
    refused: f64,
    span: f64,
    /// The rate before the cut (None: not paced).
    before: Option<f64>,
}

impl Cut {
    fn share(&self) -> f64 {
        self.refused / self.started.max(1.0)
    }
    fn admitted(&self) -> f64 {
        (self.started - self.refused).max(0.0) / self.span
    }
}

/// The learned rate of one provider instance.
#[derive(Default)]
pub struct Pace {
    state: Mutex<State>,
}

/// A slot for one request: when it may start, and the pace's generation at the reservation
/// (a later cut re-spaces it: see [`Pace::still_valid`]).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub at: Instant,
    generation: u64,
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
        self.set_rate(rate * (1.0 + g * dt));
    }

    /// Sets the rate, within the cap and above the floor.
    fn set_rate(&mut self, r: f64) {
        let r = self.cap.map_or(r, |c| r.min(BACKOFF * c));
        self.rate = Some(r.max(FLOOR));
    }

    /// Paces at `BACKOFF` times the last cut's estimate (corrected), never above the rate
    /// before it.
    fn apply_cut(&mut self) {
        // paced and refused: the limit is about the rate sent at, unless far fewer were
        // admitted (a count over a second is a noisy estimate of a rate near it)
        let admitted = self.cut.admitted();
        let estimate = match self.cut.before {
            Some(r) if admitted >= (1.0 - NEAR) * r => r,
            Some(r) => admitted.min(r),
            None => admitted,
        }
        .max(FLOOR);
        self.level = estimate;
        let r = BACKOFF * estimate;
        self.set_rate(self.rate.map_or(r, |x| x.min(r)));
        self.respace(None);
    }

    /// Requests waiting for slots reserve them again (at the current rate, from the last
    /// start, not before `not_before`): abandoned slots leave no hole in the schedule.
    fn respace(&mut self, not_before: Option<Instant>) {
        self.generation += 1;
        let after_last = match (self.last_started, self.rate) {
            (Some(t), Some(r)) => Some(t + Duration::from_secs_f64(1.0 / r)),
            _ => None,
        };
        self.next = after_last.max(not_before);
    }

    /// The last cut did not lower the refused share (by half; a share above half is taken
    /// for a limit still not found). Below a limit that was found, a refusal comes only when
    /// the slow growth reaches it again, one at a time: a single refusal since the cut is the
    /// next probe, not noise.
    fn judged_noise(&self) -> bool {
        let share = f64::from(self.since_refused) / f64::from(self.since_started.max(1));
        self.since_refused >= 2
            && self.since_started >= MIN_JUDGED
            && share >= self.cut.share() / 2.0
            && share <= 0.5
    }
}

impl Pace {
    /// A request may start at `now`: returns the slot it should wait for (reserving it), or
    /// `None` when nothing is paced. `provisional` is a rate to use while none is learned.
    pub fn reserve(&self, now: Instant, provisional: Option<f64>) -> Option<Slot> {
        let mut s = self.state.lock().expect("pace lock");
        s.grow(now);
        let rate = s.rate.or(provisional)?;
        let gap = Duration::from_secs_f64(1.0 / rate.max(FLOOR));
        if gap < FINEST {
            return None;
        }
        let at = s.next.map_or(now, |n| n.max(now));
        s.next = Some(at + gap);
        Some(Slot {
            at,
            generation: s.generation,
        })
    }

    /// Whether a slot reserved earlier still holds (no cut re-spaced the requests since).
    pub fn still_valid(&self, slot: Slot) -> bool {
        self.state.lock().expect("pace lock").generation == slot.generation
    }

    /// A request was sent at `now` (counted for the estimates), for the slot `at` it waited
    /// for (None: it waited for none).
    pub fn started(&self, now: Instant, at: Option<Instant>) {
        let mut s = self.state.lock().expect("pace lock");
        let mark = at.map_or(now, |a| a.max(now.checked_sub(CATCHUP).unwrap_or(now)));
        s.last_started = Some(mark);
        s.started.push_back(now);
        trim(&mut s.started, now);
        s.since_started = s.since_started.saturating_add(1);
    }

    /// The server refused a request sent at `sent` for its rate, asking to wait `retry`
    /// (its Retry-After): cut the rate (once per `WINDOW`, and not for a request sent before
    /// the last cut: it says nothing of the rate since, but corrects that cut's count).
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
                    s.cut.refused = (s.cut.refused + 1.0).min(s.cut.started);
                    if s.cut.started - s.cut.refused < 1.0 {
                        // nothing of the cut's window was admitted: it was no rate signal
                        s.rate = s.cut.before;
                        s.respace(None);
                    } else {
                        s.apply_cut();
                    }
                }
                return;
            }
            s.since_refused = s.since_refused.saturating_add(1);
            if now.duration_since(t) < WINDOW {
                return;
            }
            if s.judged_noise() {
                // cutting did not lower the refused share: not the rate's refusals
                s.noise = s
                    .noise
                    .max(f64::from(s.since_refused) / f64::from(s.since_started));
                if let Some(before) = s.cut.before.or(s.cap.map(|c| BACKOFF * c)) {
                    s.set_rate(before);
                } else {
                    s.rate = None;
                }
                s.respace(None);
                s.last_cut = None;
                return;
            }
            let early = s.rate.is_some_and(|r| r < s.level * (1.0 + BACKOFF) / 2.0);
            let share = f64::from(s.since_refused) / f64::from(s.since_started.max(1));
            if early && (s.since_refused < 2 || s.since_started < MIN_JUDGED) && share <= 0.5 {
                // before the rate has grown back halfway to the limit it found: the next
                // refusals tell noise (judged above) from a lower limit (a cut below)
                return;
            }
        }
        let started = s.started.len() as f64;
        let refused = (s.refused.len() as f64).min(started);
        if started - refused < 1.0 {
            // nothing of this client's admitted in the window: not its rate
            return;
        }
        if s.noise > 0.0 && refused / started <= 2.0 * s.noise + 0.05 {
            return;
        }
        let span = match (retry, s.started.front()) {
            (Some(d), Some(first)) => (now.saturating_duration_since(*first) + d).min(WINDOW),
            _ => WINDOW,
        }
        .as_secs_f64()
        .max(0.001);
        s.cut = Cut {
            started,
            refused,
            span,
            before: s.rate,
        };
        s.apply_cut();
        s.last_cut = Some(now);
        s.grown = Some(now);
        s.since_started = 0;
        s.since_refused = 0;
        s.refused.clear();
    }

    /// The server's `x-ratelimit-limit-requests` (requests per minute): paced at `BACKOFF`
    /// times it from now on (or lower, once refusals taught a lower rate).
    pub fn limit_per_minute(&self, per_minute: f64) {
        if !(per_minute > 0.0 && per_minute.is_finite()) {
            return;
        }
        let mut s = self.state.lock().expect("pace lock");
        let cap = per_minute / 60.0;
        if s.cap == Some(cap) {
            return;
        }
        s.cap = Some(cap);
        let r = s.rate.map_or(BACKOFF * cap, |r| r.min(BACKOFF * cap));
        if s.rate.is_none() {
            s.level = cap;
        }
        s.set_rate(r);
        s.respace(None);
    }

    /// No request may start before `until` (the server's Retry-After, or its exhausted
    /// window): the requests waiting for slots reserve them again from then on.
    pub fn hold_until(&self, until: Instant) {
        self.state.lock().expect("pace lock").respace(Some(until));
    }

    /// The paced rate in requests per second (None: not paced).
    pub fn rate(&self) -> Option<f64> {
        self.state.lock().expect("pace lock").rate
    }
}

#[cfg(test)]
mod tests;
