//! Retry policy of the OpenAI-compatible client: which failures are retried, how long to
//! wait (exponential backoff with jitter, `Retry-After` / `retry-after-ms` as a minimum),
//! and the header parsers that go with it.
//!
//! Backoff timing: base delay 500 ms doubling up to 30 s, plus up to 100 % random jitter.
//! The base and cap can be lowered (for tests) with `DISTILL_RETRY_BASE_MS` and
//! `DISTILL_RETRY_MAX_MS`, or with `OpenAiProvider::with_retry_timing`.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// The longest server-requested wait that is honored; longer ones are clamped to it.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(300);

/// Backoff timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryTiming {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryTiming {
    fn default() -> Self {
        RetryTiming {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
        }
    }
}

impl RetryTiming {
    /// Defaults, overridden by `DISTILL_RETRY_BASE_MS` / `DISTILL_RETRY_MAX_MS` when set.
    pub fn from_env() -> Self {
        let mut t = RetryTiming::default();
        let ms = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_millis)
        };
        if let Some(b) = ms("DISTILL_RETRY_BASE_MS") {
            t.base = b;
        }
        if let Some(c) = ms("DISTILL_RETRY_MAX_MS") {
            t.cap = c;
        }
        if t.cap < t.base {
            t.cap = t.base;
        }
        t
    }

    pub fn builder(&self, max_retries: u32) -> backon::ExponentialBuilder {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.cap)
            .with_factor(2.0)
            .with_max_times(max_retries as usize)
            .with_total_delay(None)
            .with_jitter()
    }
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct AttemptError {
    pub message: String,
    pub retryable: bool,
    /// The server asked to wait at least this long (Retry-After, retry-after-ms).
    pub min_delay: Option<Duration>,
    /// A 429 that is not a quota error: shrinks the adaptive in-flight limit.
    pub rate_limited: bool,
    /// A stream the server ended before any choice carried a `finish_reason`.
    pub truncated: bool,
}

impl AttemptError {
    pub fn retryable(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retryable: true,
            min_delay: None,
            rate_limited: false,
            truncated: false,
        }
    }
    /// A stream cut by the server (retried like a 5xx; lowers the in-flight limit).
    pub fn truncated(message: impl Into<String>) -> Self {
        AttemptError {
            truncated: true,
            ..AttemptError::retryable(message)
        }
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        AttemptError {
            message: message.into(),
            retryable: false,
            min_delay: None,
            rate_limited: false,
            truncated: false,
        }
    }
}

/// Classifies a non-2xx answer. `body` is the response body as text.
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> AttemptError {
    let server_msg = error_message(body);
    let code = status.as_u16();
    let lower = body.to_ascii_lowercase();
    // only an exhausted balance is final; "Quota exceeded for … per minute" is a rate limit
    let quota = code == 429
        && (lower.contains("insufficient_quota") || lower.contains("exceeded your current quota"));
    let overloaded = lower.contains("overloaded");
    let retryable = !quota
        && (matches!(code, 408 | 409 | 425 | 429 | 529) || code >= 500 || overloaded)
        && !matches!(code, 400 | 401 | 403 | 404 | 501);
    let what = if quota {
        "quota exhausted"
    } else if code == 429 {
        "rate limited"
    } else if overloaded || code == 529 {
        "overloaded"
    } else {
        status.canonical_reason().unwrap_or("error")
    };
    AttemptError {
        message: format!("HTTP {code} ({what}): {server_msg}"),
        retryable,
        min_delay: if retryable {
            server_delay(headers, SystemTime::now())
        } else {
            None
        },
        rate_limited: code == 429 && !quota,
        truncated: false,
    }
}

/// The server's own error text: `error.message` (or `error` / `message` / `detail`) of a
/// JSON body, else the body itself, cut to 500 characters.
pub fn error_message(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error").unwrap_or(&v);
            e.get("message")
                .or_else(|| e.get("detail"))
                .and_then(|m| m.as_str().map(str::to_string))
                .or_else(|| e.as_str().map(str::to_string))
        });
    let msg = from_json.unwrap_or_else(|| body.trim().to_string());
    let msg = if msg.is_empty() {
        "(empty body)".to_string()
    } else {
        msg
    };
    if msg.chars().count() > 500 {
        let cut: String = msg.chars().take(500).collect();
        format!("{cut}…")
    } else {
        msg
    }
}

/// The wait a server asks for: `retry-after-ms` (milliseconds) or `Retry-After` (seconds,
/// possibly fractional, or an HTTP date), clamped to [`MAX_SERVER_DELAY`].
pub fn server_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    let d = if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        secs(ms / 1000.0)
    } else {
        get("retry-after").and_then(|v| parse_retry_after(v, now))
    };
    d.map(|d| d.min(MAX_SERVER_DELAY))
}

/// `Retry-After: 3`, `Retry-After: 0.5` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(s) = v.parse::<f64>() {
        return secs(s);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Go-style durations as in `x-ratelimit-reset-requests`: `1s`, `6m0s`, `20ms`, `1h2m3.5s`,
/// or a bare number of seconds.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(s) = v.parse::<f64>() {
        return secs_capped(s, MAX_RESET);
    }
    let mut total = 0.0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    secs_capped(total, MAX_RESET)
}

/// Seconds from a server as a duration: finite, not negative, at most [`MAX_SERVER_DELAY`]
/// (a huge or infinite value from a header must not crash the run).
fn secs(s: f64) -> Option<Duration> {
    secs_capped(s, MAX_SERVER_DELAY)
}

fn secs_capped(s: f64, cap: Duration) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(cap.as_secs_f64())))
}

/// Longest reset a rate-limit header may announce (daily quotas reset within a day).
const MAX_RESET: Duration = Duration::from_secs(86_400);

/// Classifies a transport error (connect, reset, timeout, truncated body).
pub fn classify_transport(e: &reqwest::Error) -> AttemptError {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broken off"
    } else if e.is_builder() {
        return AttemptError::fatal(format!("invalid request: {}", full_error(e)));
    } else {
        "request failed"
    };
    AttemptError::retryable(format!("{kind}: {}", full_error(e)))
}

/// An error with its chain of causes, `a: b: c`. Never includes headers (so never a key).
pub fn full_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("abc"), None);
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        h.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(server_delay(&h, now), Some(Duration::from_millis(250)));
        h.insert("retry-after", HeaderValue::from_static("100000"));
        h.remove("retry-after-ms");
        assert_eq!(server_delay(&h, now), Some(MAX_SERVER_DELAY));
    }

    #[test]
    fn status_classes() {
        let h = HeaderMap::new();
        assert_eq!(secs(f64::INFINITY), None);
        assert_eq!(secs(1e300), Some(MAX_SERVER_DELAY));
        assert_eq!(parse_go_duration("99999999999999999999h"), Some(MAX_RESET));
        let quota = r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        let e = classify_status(StatusCode::TOO_MANY_REQUESTS, &h, quota);
        assert!(!e.retryable && !e.rate_limited);
        assert!(e.message.contains("You exceeded your current quota"));
        assert!(classify_status(StatusCode::TOO_MANY_REQUESTS, &h, "{}").rate_limited);
        assert!(classify_status(StatusCode::SERVICE_UNAVAILABLE, &h, "").retryable);
        let o = StatusCode::from_u16(529).unwrap();
        assert!(classify_status(o, &h, "overloaded").retryable);
        for c in [400u16, 401, 403, 404] {
            let e = classify_status(StatusCode::from_u16(c).unwrap(), &h, "nope");
            assert!(!e.retryable, "{c}");
        }
    }
}
