//! The signals that stop a run: Ctrl-C (SIGINT), SIGTERM (what `timeout`, `docker stop`,
//! Kubernetes and Slurm send before killing) and SIGHUP (a closed terminal). The first one
//! stops new calls and gives the calls in flight [`GRACE`] to finish (their answers are
//! paid for: keeping them is worth a few seconds); a second one, or the end of the grace
//! period, abandons what is still running. The run then writes everything and exits with
//! 128 + the signal's number.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long calls in flight may still finish after the first stop signal.
pub const GRACE: Duration = Duration::from_secs(5);

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;

/// The stop signals, listened to from creation on.
pub struct Signals {
    int: Option<Signal>,
    term: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    /// Starts listening (a signal that cannot be listened to is left to its default).
    pub fn new() -> Signals {
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// The next stop signal's number.
    pub async fn recv(&mut self) -> i32 {
        async fn next(s: &mut Option<Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.int) => SIGINT,
            _ = next(&mut self.term) => SIGTERM,
            _ = next(&mut self.hup) => SIGHUP,
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// The signal's name for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
