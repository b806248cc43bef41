//! Terminal progress: an indicatif bar (problems done, calls sent, cache hits, tokens) when
//! stderr is a terminal, otherwise a plain line every tenth of the run. It only displays;
//! the counters live in `RunCtx::stats`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use super::RunCtx;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: AtomicU64,
    plain: bool,
}

impl Progress {
    pub fn new(total: usize, enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} problems · {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            total: total as u64,
            done: AtomicU64::new(0),
            plain: enabled && !tty,
        }
    }

    /// A quiet progress (plans, tests).
    pub fn hidden() -> Self {
        Progress {
            bar: None,
            total: 0,
            done: AtomicU64::new(0),
            plain: false,
        }
    }

    pub fn problem_done(&self, ctx: &RunCtx, failed: bool) {
        let d = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let s = &ctx.calls.stats;
        let msg = format!(
            "{} calls sent · {} cache hits · {} tokens · ${:.4} spent{}",
            s.calls.load(Ordering::Relaxed),
            s.call_hits.load(Ordering::Relaxed) + s.node_hits.load(Ordering::Relaxed),
            s.prompt_tokens.load(Ordering::Relaxed) + s.completion_tokens.load(Ordering::Relaxed),
            s.spend_micro_usd.load(Ordering::Relaxed) as f64 / 1e6,
            if failed { " · a problem failed" } else { "" }
        );
        if let Some(b) = &self.bar {
            b.set_position(d);
            b.set_message(msg);
        } else if self.plain {
            let step = (self.total / 10).max(1);
            if d.is_multiple_of(step) || d == self.total {
                eprintln!("[{d}/{} problems] {msg}", self.total);
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
