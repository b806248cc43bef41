//! Terminal progress. The bar counts model-call nodes, not problems: the scheduler advances
//! every open problem together, so problems finish late and a bar of problems sits still
//! for the first third of a run. It shows model nodes done of the expected total
//! (problems × samples × model nodes: continuations and `when:` skips move the real number),
//! problems done, calls sent, cache hits, tokens, spend and an ETA. On a terminal it is an
//! indicatif bar; otherwise a plain line every tenth of the model nodes. With batch models
//! a ticker (`batch_ticker`) also refreshes it every second and after every poll, so the
//! batches in flight (status, lines done of total) stay current through a wave that takes
//! hours; without a terminal it prints a line whenever that list changes. It only
//! displays: the counters live in the call layer's `Stats` and `Batches`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::RunCtx;

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Model-call nodes expected, and done.
    nodes: u64,
    nodes_done: AtomicU64,
    problems: u64,
    problems_done: AtomicU64,
    failed: AtomicU64,
    plain: bool,
    started: Instant,
    /// The batches part of the last plain line printed by the ticker.
    last_batches: Mutex<String>,
}

impl Progress {
    /// `problems` to run, each with `model_nodes` model-call node instances (all samples).
    pub fn new(problems: usize, model_nodes: usize, enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let nodes = (problems * model_nodes).max(1) as u64;
        let bar = (enabled && tty).then(|| {
            let b = ProgressBar::new(nodes);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} model nodes · ETA {eta} · {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(std::time::Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            nodes,
            nodes_done: AtomicU64::new(0),
            problems: problems as u64,
            problems_done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            plain: enabled && !tty,
            started: Instant::now(),
            last_batches: Mutex::new(String::new()),
        }
    }

    /// A quiet progress (plans, tests).
    pub fn hidden() -> Self {
        let mut p = Progress::new(0, 0, false);
        p.plain = false;
        p
    }

    fn message(&self, ctx: &RunCtx) -> String {
        let s = &ctx.calls.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let failed = g(&self.failed);
        format!(
            "{}/{} problems · {} calls sent · {} cache hits · {} tokens · ${:.4}{}{}",
            g(&self.problems_done),
            self.problems,
            g(&s.calls),
            g(&s.call_hits) + g(&s.node_hits),
            g(&s.prompt_tokens) + g(&s.completion_tokens),
            g(&s.spend_micro_usd) as f64 / 1e6,
            batches_line(ctx),
            if failed > 0 {
                format!(" · {failed} problem(s) failed")
            } else {
                String::new()
            }
        )
    }

    /// A model-call node finished (done, failed, skipped or not run).
    pub fn node_done(&self, ctx: &RunCtx) {
        let d = self.nodes_done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(b) = &self.bar {
            b.set_position(d.min(self.nodes));
            b.set_message(self.message(ctx));
        } else if self.plain {
            let step = (self.nodes / 10).max(1);
            if d.is_multiple_of(step) {
                let secs = self.started.elapsed().as_secs_f64();
                let eta = (self.nodes.saturating_sub(d)) as f64 * secs / d as f64;
                eprintln!(
                    "[{d}/{} model nodes · ETA {eta:.0} s] {}",
                    self.nodes,
                    self.message(ctx)
                );
            }
        }
    }

    pub fn problem_done(&self, ctx: &RunCtx, failed: bool) {
        self.problems_done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.set_message(self.message(ctx));
        }
    }

    /// Redraws the message (a batch was polled, or a second passed); a plain display
    /// prints a line only when the batches in flight changed.
    pub fn refresh(&self, ctx: &RunCtx) {
        if let Some(b) = &self.bar {
            b.set_message(self.message(ctx));
        } else if self.plain {
            let now = batches_line(ctx);
            let Ok(mut last) = self.last_batches.lock() else {
                return;
            };
            if *last != now {
                if !now.is_empty() {
                    eprintln!(
                        "[{}/{} model nodes] batches in flight:{}",
                        self.nodes_done.load(Ordering::Relaxed),
                        self.nodes,
                        now.trim_start_matches(" · batches:")
                    );
                }
                *last = now;
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// The batches in flight, e.g. ` · batches: batch_abc in_progress (60)`.
fn batches_line(ctx: &RunCtx) -> String {
    let f = ctx.calls.batches.in_flight();
    if f.is_empty() {
        return String::new();
    }
    let each: Vec<String> = f.iter().map(|b| b.label()).collect();
    format!(" · batches: {}", each.join(", "))
}

/// With batch models: refreshes the progress every second and after each batch poll
/// (stopped by aborting the handle).
pub fn batch_ticker(
    progress: &Arc<Progress>,
    ctx: &Arc<RunCtx>,
) -> Option<tokio::task::JoinHandle<()>> {
    if ctx.calls.batch_models().is_empty() || (progress.bar.is_none() && !progress.plain) {
        return None;
    }
    let (p, c) = (progress.clone(), ctx.clone());
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = c.calls.batches.polled().notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            p.refresh(&c);
        }
    }))
}
