//! The run directory `results/<pipeline>/<run-id>/`: `config.json` (the resolved pipeline,
//! prompts and provenance, no secrets), `events.jsonl` (one line per event, written as it
//! happens), `results.json` (problems streamed in problem order as they finish, never all
//! held in memory), `metrics.json`, `cache_keys.txt` (for `cache gc`), `report.md`, and the
//! end-of-run summary table printed to stdout.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::scheduler::{Event, NodeRecord, Outcome, ProblemRecord, Sink};
use super::{RunCtx, RunOptions, RunSummary};

pub struct RunWriter {
    pub dir: PathBuf,
    pub run_id: String,
    /// Buffered; written out by `Sink::flush` before the scheduler waits.
    events: BufWriter<File>,
    /// results.jsonl as problems finish; results.json from it at the end (`runfile`).
    journal: crate::runfile::Journal,
    problems_written: usize,
    /// The report folded as problems finish (none for a resumed run: its earlier problems
    /// are in the file only).
    live: Option<crate::report::live::Live>,
}

pub fn new_run_id() -> String {
    let t = time::OffsetDateTime::now_utc();
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    // milliseconds keep run directories in time order when sorted by name
    format!(
        "{}{:03}Z-{:06x}",
        t.format(&f).unwrap_or_default().trim_end_matches('Z'),
        t.millisecond(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// The resolved pipeline, prompts and provenance, as written to config.json (the dashboard's
/// copy: the selected ids as values).
pub fn config_json(ctx: &RunCtx, opts: &RunOptions, run_id: &str) -> Value {
    let mut cfg = config_head(ctx, opts, run_id);
    let ids: Vec<String> = ctx
        .pipeline
        .problems
        .iter()
        .map(|q| q.map(|q| q.id))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    cfg["problems"]["selected"] = json!(ids);
    cfg
}

/// config.json without the selected ids (`problems.selected` is an empty list): they are
/// written from the selection as it is read ([`write_config`]).
fn config_head(ctx: &RunCtx, opts: &RunOptions, run_id: &str) -> Value {
    let p = &ctx.pipeline;
    let mut cfg = config_fields(ctx, opts, run_id);
    // a shard's piece and the config it is a piece of (`distill report` merges by it)
    if let Some(s) = crate::runfile::config::ShardRecord::of_pipeline(p) {
        cfg["shard"] = json!(s);
    }
    cfg
}

/// `cfg` with `problems.selected` streamed from the selection (100,000 ids are not held as
/// JSON values): the bytes `serde_json` writes for the whole value.
struct Streamed<'a> {
    value: &'a Value,
    /// Where the ids go: `problems`, then `selected`.
    path: &'a [&'a str],
    selection: &'a crate::data::Selection,
}

impl serde::Serialize for Streamed<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap, SerializeSeq};
        let (Some((key, rest)), Some(obj)) = (self.path.split_first(), self.value.as_object())
        else {
            let mut seq = s.serialize_seq(Some(self.selection.len()))?;
            for q in self.selection.iter() {
                seq.serialize_element(&q.map_err(S::Error::custom)?.id)?;
            }
            return seq.end();
        };
        let mut m = s.serialize_map(Some(obj.len()))?;
        for (k, v) in obj {
            if k == key {
                let inner = Streamed {
                    value: v,
                    path: rest,
                    selection: self.selection,
                };
                m.serialize_entry(k, &inner)?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

/// Writes config.json (pretty) with the selection's ids streamed into `problems.selected`.
fn write_config(path: &Path, cfg: &Value, selection: &crate::data::Selection) -> Result<()> {
    let f = File::create(path).with_context(|| format!("writing {}", path.display()))?;
    let mut w = BufWriter::new(f);
    let v = Streamed {
        value: cfg,
        path: &["problems", "selected"],
        selection,
    };
    serde_json::to_writer_pretty(&mut w, &v)
        .and_then(|_| w.flush().map_err(serde_json::Error::io))
        .with_context(|| format!("writing {}", path.display()))
}

fn config_fields(ctx: &RunCtx, opts: &RunOptions, run_id: &str) -> Value {
    let p = &ctx.pipeline;
    json!({
        "run_id": run_id,
        "pipeline": p.tree,
        "pipeline_file": p.file.display().to_string(),
        "expanded_nodes": p.nodes,
        "prompts": p.prompts,
        "problems": {
            "path": p.problems_path.display().to_string(),
            "blake3": p.problem_set.file_hash,
            "selected": [],
        },
        "provenance": {
            "distill_version": env!("CARGO_PKG_VERSION"),
            "cache_format_version": crate::cache::FORMAT_VERSION,
            "command_line": opts.command_line,
            "concurrency": opts.concurrency,
            "offline": opts.offline,
            "cache_dir": opts.cache_dir.display().to_string(),
            "cache_remote": ctx.remote.as_ref().map(|r| r.url.to_string()),
            "simulated_models": p.spec.models.iter().filter(|(_, m)| m.provider == "sim").map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        },
        "warnings": p.recorded_warnings(),
        // how to load it again, and what must still hash the same (`--resume`)
        "load": opts.load,
        "config_hash": crate::runfile::config::hashes(p),
    })
}

impl RunWriter {
    pub fn create(ctx: &RunCtx, opts: &RunOptions) -> Result<Self> {
        let run_id = new_run_id();
        let dir = opts
            .results_root
            .join(&ctx.pipeline.spec.name)
            .join(&run_id);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating run directory {}", dir.display()))?;
        let cfg = config_head(ctx, opts, &run_id);
        write_config(&dir.join("config.json"), &cfg, &ctx.pipeline.problems)?;
        let events = File::create(dir.join("events.jsonl"))
            .with_context(|| format!("creating {}", dir.join("events.jsonl").display()))?;
        let nodes: Vec<String> = ctx.pipeline.nodes.iter().map(|n| n.id.clone()).collect();
        let journal = crate::runfile::Journal::create(
            &dir,
            &run_id,
            &ctx.pipeline.spec.name,
            &nodes,
            ctx.pipeline.spec.samples,
        )?;
        let mut w = Self::with(dir, run_id, events, journal);
        w.live = Some(crate::report::live::Live::new(cfg));
        Ok(w)
    }

    /// Reopens a stopped run's directory to finish it in place (`--resume`): its journal,
    /// events and used keys are appended to; config.json stays as it was.
    pub fn reopen(dir: &Path) -> Result<Self> {
        let journal = crate::runfile::Journal::reopen(dir)?;
        let run_id = journal.run_id().to_string();
        let events = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("events.jsonl"))
            .with_context(|| format!("opening {}", dir.join("events.jsonl").display()))?;
        Ok(Self::with(dir.to_path_buf(), run_id, events, journal))
    }

    fn with(dir: PathBuf, run_id: String, events: File, journal: crate::runfile::Journal) -> Self {
        RunWriter {
            dir,
            run_id,
            events: BufWriter::with_capacity(64 * 1024, events),
            journal,
            problems_written: 0,
            live: None,
        }
    }

    /// cache_keys.txt, appended to (a resumed run adds the keys it uses).
    pub fn keys_file(&self) -> Result<BufWriter<File>> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(crate::runfile::KEYS))
            .with_context(|| {
                format!("opening {}", self.dir.join(crate::runfile::KEYS).display())
            })?;
        Ok(BufWriter::new(f))
    }

    fn write_problem(&mut self, p: &ProblemRecord) -> Result<()> {
        if let Some(live) = &mut self.live {
            live.finished(p);
        }
        self.journal.close(p)?;
        self.problems_written += 1;
        match (&mut self.live, self.journal.written_in_order()) {
            (Some(live), Some(upto)) => live.written(upto),
            // out of CSV order: results.json is written anew at the end, read it back then
            _ if !self.journal.in_order() => self.live = None,
            _ => {}
        }
        Ok(())
    }

    /// Closes the files, writes metrics and the report, prints the summary.
    pub fn finish(self, ctx: &RunCtx, outcome: &Outcome) -> Result<RunSummary> {
        let status = if outcome.interrupted {
            "interrupted"
        } else {
            "complete"
        };
        let RunWriter {
            dir,
            run_id,
            journal,
            problems_written,
            mut events,
            live,
        } = self;
        let live = live.filter(|_| journal.in_order());
        events
            .flush()
            .with_context(|| format!("appending to {}", dir.join("events.jsonl").display()))?;
        journal.finish(status)?;
        let this = Finished {
            dir,
            run_id,
            problems_written,
            live,
        };
        this.summarize(ctx, outcome)
    }
}

/// A run whose records are written: metrics, report and summary remain.
struct Finished {
    dir: PathBuf,
    run_id: String,
    problems_written: usize,
    live: Option<crate::report::live::Live>,
}

impl Finished {
    fn summarize(self, ctx: &RunCtx, outcome: &Outcome) -> Result<RunSummary> {
        let metrics = metrics_json(ctx, outcome, self.problems_written);
        std::fs::write(
            self.dir.join("metrics.json"),
            serde_json::to_vec_pretty(&metrics)?,
        )
        .context("writing metrics.json")?;
        // the full report (intervals, plots) goes beside the results, and the per-round
        // table printed here is the report's own (one load, one place computes accuracy):
        // the summary, report.md, report.json and the dashboard agree
        // SVG figures only: `distill report RUN_DIR` adds the PNGs (rasterizing them took
        // ~0.1 s and ~30 MB at the end of every run)
        let full = crate::report::ReportOptions {
            runs: vec![self.dir.clone()],
            png: false,
            ..Default::default()
        };
        let table = match crate::report::report_with_compact(&full, self.live) {
            Ok((_, table)) => table,
            Err(e) => {
                tracing::warn!("report: {e}");
                let report = format!(
                    "# {} — run {}\n\n(no report: {e})\n\n{}\n",
                    ctx.pipeline.spec.name,
                    self.run_id,
                    summary_line(ctx)
                );
                std::fs::write(self.dir.join("report.md"), report)
                    .with_context(|| format!("writing {}", self.dir.join("report.md").display()))?;
                format!("(no per-round table: {e})")
            }
        };
        println!("{table}");
        println!("{}", summary_line(ctx));
        for (id, e) in outcome.failed.iter().take(20) {
            println!("FAILED {id}: {e}");
        }
        if outcome.failed.len() > 20 {
            println!(
                "… and {} more failed problems (see results.json)",
                outcome.failed.len() - 20
            );
        }
        if !outcome.not_run.is_empty() {
            let why: Vec<String> = outcome
                .not_run
                .iter()
                .map(|(r, n)| format!("{n} {}", not_run_text(r)))
                .collect();
            println!(
                "NOT RUN: {} node(s): {} (status not_run, with its reason, in results.json)",
                outcome.not_run.values().sum::<usize>(),
                why.join(", ")
            );
        }
        let uncached = ctx.calls.stats.uncached.load(Ordering::Relaxed);
        if uncached > 0 {
            let why = ctx.calls.cache_failure().unwrap_or_default();
            eprintln!(
                "ERROR: {uncached} answer(s) are in the results but not in the cache at {} ({why}): a rerun pays for them again",
                ctx.calls.cache.root().display()
            );
            println!("NOT CACHED: {uncached} answer(s) (see the error above)");
        }
        if let Some(r) = &ctx.remote {
            let (line, warnings) = r.report().lines();
            println!("{line}");
            for w in warnings {
                println!("{w}");
            }
        }
        println!("results: {}", self.dir.display());
        Ok(RunSummary {
            run_dir: Some(self.dir.clone()),
            problems: ctx.pipeline.problems.len(),
            failed_problems: outcome.failed.clone(),
            interrupted: outcome.interrupted,
            signal: outcome.signal,
            uncached,
            incomplete: outcome.incomplete,
        })
    }
}

/// What a `not_run` reason means, for the end-of-run summary.
fn not_run_text(reason: &str) -> String {
    match serde_json::from_value::<crate::calls::NotSent>(serde_json::json!(reason)) {
        Ok(r) => format!("{reason} ({r})"),
        Err(_) => reason.to_string(),
    }
}

fn summary_line(ctx: &RunCtx) -> String {
    let st = &ctx.calls.stats;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let est = g(&st.usage_estimated);
    let estimated = if est > 0 {
        format!(" (estimated for {est} call(s) whose server reported no usage)")
    } else {
        String::new()
    };
    let imported = match g(&st.imported) {
        0 => String::new(),
        n => format!(" ({n} imported now)"),
    };
    format!(
        "calls: {} sent, {} from call cache, {} model nodes from node cache{imported} · tokens: {} prompt / {} completion{estimated} · spend ${:.4} (experiment total ${:.4}) · wall {:.2} s",
        g(&st.calls),
        g(&st.call_hits),
        g(&st.node_hits),
        g(&st.prompt_tokens),
        g(&st.completion_tokens),
        g(&st.spend_micro_usd) as f64 / 1e6,
        g(&st.total_cost_micro_usd) as f64 / 1e6,
        ctx.started.elapsed().as_secs_f64()
    )
}

pub fn metrics_json(ctx: &RunCtx, outcome: &Outcome, problems_written: usize) -> Value {
    let st = &ctx.calls.stats;
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let c = &ctx.calls.cache.counters;
    json!({
        "wall_time_s": ctx.started.elapsed().as_secs_f64(),
        "problems": ctx.pipeline.problems.len(),
        "problems_written": problems_written,
        "problems_done": outcome.problems_done,
        "problems_failed": outcome.failed.len(),
        "interrupted": outcome.interrupted,
        "calls": g(&st.calls),
        "usage_estimated_calls": g(&st.usage_estimated),
        "answers_not_cached": g(&st.uncached),
        "single_flight_waits": g(&st.flight_waits),
        "call_cache_hits": g(&st.call_hits),
        "node_cache_hits": g(&st.node_hits),
        "imported_nodes": g(&st.imported),
        "replicas": ctx.calls.replicas(),
        "tokens": {"prompt": g(&st.prompt_tokens), "completion": g(&st.completion_tokens), "reasoning": g(&st.reasoning_tokens)},
        "spent_tokens": {"prompt": g(&st.spent_prompt_tokens), "completion": g(&st.spent_completion_tokens)},
        "spend_usd": g(&st.spend_micro_usd) as f64 / 1e6,
        "total_cost_usd": g(&st.total_cost_micro_usd) as f64 / 1e6,
        "concurrency": ctx.concurrency,
        "max_calls_in_flight": g(&st.max_in_flight),
        "cache": {"hits": g(&c.hits), "misses": g(&c.misses), "corrupt": g(&c.corrupt), "writes": g(&c.writes)},
        "remote_cache": ctx.remote.as_ref().map(|r| r.report()),
        "batches": batches_json(ctx),
    })
}

/// This run's provider batches: submitted, their lines, those of earlier runs it followed,
/// the ones in flight with their status (the dashboard shows them), and the `--max-cost`
/// estimate of the lines still waiting for an answer.
fn batches_json(ctx: &RunCtx) -> Value {
    let (submitted, lines, picked_up) = ctx.calls.batches.counts();
    json!({"submitted": submitted, "lines": lines, "picked_up": picked_up,
        "in_flight": ctx.calls.batches.in_flight(),
        "waiting_estimate_usd": ctx.calls.batches.reserved_micro() as f64 / 1e6})
}

impl Sink for RunWriter {
    fn event(&mut self, e: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(e)?;
        line.push(b'\n');
        // whole lines, written out with the journal's before the scheduler waits again
        self.events
            .write_all(&line)
            .with_context(|| format!("appending to {}", self.dir.join("events.jsonl").display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.events
            .flush()
            .with_context(|| format!("appending to {}", self.dir.join("events.jsonl").display()))?;
        self.journal.flush()
    }

    fn problem_open(&mut self, p: &crate::data::Problem) -> Result<()> {
        self.journal.open(p)
    }

    fn node_done(&mut self, index: usize, sample: Option<u32>, r: &NodeRecord) -> Result<()> {
        self.journal.node(index, sample, r)
    }

    fn problem_done(&mut self, p: ProblemRecord) -> Result<()> {
        // its nodes are in the journal already; the close line ends it
        self.write_problem(&p)
    }
}

/// A sink that also feeds the live dashboard.
pub struct Tee<'a> {
    pub inner: &'a mut RunWriter,
    pub dashboard: crate::dashboard::Dashboard,
}

impl Sink for Tee<'_> {
    fn event(&mut self, e: &Event) -> Result<()> {
        self.dashboard.event(&serde_json::to_value(e)?);
        self.inner.event(e)
    }
    fn problem_open(&mut self, p: &crate::data::Problem) -> Result<()> {
        self.inner.problem_open(p)
    }
    fn node_done(&mut self, index: usize, sample: Option<u32>, r: &NodeRecord) -> Result<()> {
        self.inner.node_done(index, sample, r)
    }
    fn problem_done(&mut self, p: ProblemRecord) -> Result<()> {
        self.dashboard.problem(&serde_json::to_value(&p)?);
        self.inner.problem_done(p)
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
}

/// The sink of `pipeline plan`: counts, per node, instances served by the cache and calls
/// still to make.
#[derive(Default)]
pub struct PlanSink {
    /// Ids of the nodes that make model calls: only those are counted.
    pub model_nodes: std::collections::HashSet<String>,
    pub cached: HashMap<String, u64>,
    pub to_make: HashMap<String, u64>,
    pub other: HashMap<String, u64>,
    /// Model-call nodes that will not run, by reason (`recorded_error`, `skipped`, …).
    pub not_run: std::collections::BTreeMap<String, u64>,
}

impl Sink for PlanSink {
    fn event(&mut self, e: &Event) -> Result<()> {
        if !self.model_nodes.contains(&e.node) {
            return Ok(());
        }
        match (e.event, e.cached) {
            ("finished", Some(true)) => *self.cached.entry(e.node.clone()).or_default() += 1,
            ("failed", _) if e.reason == Some(crate::calls::NotSent::Planned.reason()) => {
                *self.to_make.entry(e.node.clone()).or_default() += 1
            }
            ("started", _) => {}
            (ev, _) => {
                *self.other.entry(e.node.clone()).or_default() += 1;
                if ev != "finished" {
                    let why = e.reason.unwrap_or(ev).to_string();
                    *self.not_run.entry(why).or_default() += 1;
                }
            }
        }
        Ok(())
    }
    fn problem_done(&mut self, _p: ProblemRecord) -> Result<()> {
        Ok(())
    }
}
