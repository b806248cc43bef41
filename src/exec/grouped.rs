//! The scheduler's sink wrapper that groups the run files' writes: records of nodes that
//! end together are written at once (`Sink::flush`, with the used cache keys), before the
//! scheduler waits, or within [`FLUSH_GROUP`] in a burst.

use anyhow::Result;

use super::RunCtx;
use super::scheduler::{Event, NodeRecord, ProblemRecord, Sink};
use crate::data::Problem;

/// Writes to the run's files within this long of a node's end when nodes end in a burst
/// (cache hits); a node ending after a quieter spell is written before the scheduler waits.
pub(super) const FLUSH_GROUP: std::time::Duration = std::time::Duration::from_millis(20);

/// The sink as the scheduler uses it: records of nodes that end together are written at
/// once (`Sink::flush`, with the used cache keys). Before every wait what is buffered is
/// written out, unless the last write is under [`FLUSH_GROUP`] old: then it is written
/// when that has passed, so a SIGKILL in a burst of cache hits loses at most that much of
/// the run files (the answers themselves are in the cache already).
pub(super) struct Grouped<'a> {
    inner: &'a mut dyn Sink,
    calls: &'a crate::calls::Calls,
    last: tokio::time::Instant,
    pending: bool,
}

impl<'a> Grouped<'a> {
    pub(super) fn new(inner: &'a mut dyn Sink, ctx: &'a RunCtx) -> Self {
        Grouped {
            inner,
            calls: &ctx.calls,
            last: tokio::time::Instant::now(),
            pending: false,
        }
    }

    /// Before a wait: writes out now, or returns by when (None: nothing waits to be written).
    pub(super) fn before_wait(&mut self) -> Result<Option<tokio::time::Instant>> {
        if !self.pending {
            return Ok(None);
        }
        if self.last.elapsed() >= FLUSH_GROUP {
            self.flush()?;
            return Ok(None);
        }
        Ok(Some(self.last + FLUSH_GROUP))
    }
}

impl Sink for Grouped<'_> {
    fn event(&mut self, e: &Event) -> Result<()> {
        self.pending = true;
        self.inner.event(e)
    }
    fn problem_open(&mut self, p: &Problem) -> Result<()> {
        self.pending = true;
        self.inner.problem_open(p)
    }
    fn node_done(&mut self, index: usize, sample: Option<u32>, r: &NodeRecord) -> Result<()> {
        self.pending = true;
        self.inner.node_done(index, sample, r)
    }
    fn problem_done(&mut self, p: ProblemRecord) -> Result<()> {
        self.pending = true;
        self.inner.problem_done(p)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()?;
        self.calls.flush_keys();
        self.last = tokio::time::Instant::now();
        self.pending = false;
        Ok(())
    }
}
