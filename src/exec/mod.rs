//! Running a pipeline: the shared run context (the pipeline, its templates, the call layer),
//! the run options, and `run`, which builds the context, drives the scheduler, and writes the
//! run directory. The scheduling itself is in `scheduler`, the files in `output`, the
//! terminal progress in `progress`.

mod grouped;
pub mod import;
mod instance;
pub mod output;
pub mod progress;
pub mod scheduler;
pub mod signals;
pub mod waves;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::cache::Cache;
use crate::calls::{self, Calls, Listener, Settings, Site};
use crate::nodes::NodeCx;
use crate::spec::Pipeline;
use crate::template::Templates;

/// An error in what the user gave (a missing key, a bad import file): exit code 2, found
/// before any call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make calls, write results.
    Run,
    /// Read the cache only and count what a run would send (`pipeline plan`).
    Plan,
}

/// Options of one run from the command line.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub concurrency: usize,
    pub offline: bool,
    pub cache_dir: PathBuf,
    pub results_root: PathBuf,
    pub verbose: bool,
    pub command_line: Vec<String>,
    pub progress: bool,
    /// Stop sending new calls once this run's spend reaches this many dollars.
    pub max_cost: Option<f64>,
    /// Import round-0 outputs from an earlier run (`--load_initial_reasoning`).
    pub load_initial_reasoning: Option<PathBuf>,
    /// Import every round of an earlier run (`--load_run`).
    pub load_run: Option<PathBuf>,
    /// Also write the results in the original tool's schema (`--results_format original`).
    pub original_results: bool,
    /// Serve a live dashboard on (host, port).
    pub dashboard: Option<(String, u16)>,
    /// How the pipeline was loaded (recorded in config.json for `--resume`).
    pub load: Option<crate::runfile::config::LoadRecord>,
    /// Finish this stopped run in place instead of starting a new one.
    pub resume: Option<PathBuf>,
    /// The remote cache (`--cache-remote`, `DISTILL_CACHE_REMOTE`); else the pipeline's.
    pub cache_remote: Option<String>,
    /// `--batch`: OpenAI-compatible models use their provider's batch API.
    pub batch: bool,
    /// `--cancel-batches`: Ctrl-C cancels submitted batches instead of leaving them running.
    pub cancel_batches: bool,
}

/// Everything the scheduler and the run directory share during a run.
pub struct RunCtx {
    pub pipeline: Pipeline,
    pub templates: Templates,
    /// The call path (providers, cache, caps, counters).
    pub calls: Calls,
    pub concurrency: usize,
    pub started: Instant,
    /// The live dashboard (`--dashboard`).
    pub dashboard: Option<crate::dashboard::Dashboard>,
    /// What `--load_run` / `--load_initial_reasoning` brought (its table is in `calls`).
    pub import: Option<import::Loaded>,
    /// The remote cache behind the cache directory (`--cache-remote`), for its counts.
    pub remote: Option<Arc<crate::remote::Remote>>,
}

/// The run's remote cache, if one is named (the command line's, else the pipeline's): read
/// through by every run, kept locally and written behind only by a run that may send.
fn open_remote(
    p: &Pipeline,
    opts: &RunOptions,
    mode: Mode,
) -> Result<Option<Arc<crate::remote::Remote>>> {
    let Some(url) = opts
        .cache_remote
        .as_deref()
        .or(p.spec.cache_remote.as_deref())
    else {
        return Ok(None);
    };
    let access = crate::remote::Access {
        keep_local: mode == Mode::Run,
        upload: mode == Mode::Run && !opts.offline,
    };
    let r = crate::remote::Remote::open(url, access).map_err(|e| InvalidInput(e.to_string()))?;
    Ok(Some(Arc::new(r)))
}

/// Waits for the remote cache's pending uploads (at most `wait`), saying so when there are any.
fn flush_remote(ctx: &RunCtx, wait: std::time::Duration) {
    if let Some(r) = &ctx.remote {
        let pending = r.report().unfinished;
        if pending > 0 {
            eprintln!(
                "remote cache {}: waiting for {pending} upload(s) (at most {} s)",
                r.url,
                wait.as_secs()
            );
        }
        r.flush(wait);
    }
}

/// The models some node of the pipeline calls (only those need a provider and a key).
fn used_models(pipeline: &Pipeline) -> Vec<String> {
    pipeline
        .spec
        .models
        .keys()
        .filter(|name| {
            let name = name.as_str();
            pipeline.nodes.iter().any(|n| {
                n.model.as_deref() == Some(name)
                    || n.params.get("judge_model").and_then(|m| m.as_str()) == Some(name)
            }) || pipeline
                .spec
                .grade
                .as_ref()
                .and_then(|g| g.judge_model.as_deref())
                == Some(name)
        })
        .cloned()
        .collect()
}

/// The import table of `--load_run` or `--load_initial_reasoning` (one of them), checked.
fn load_import(p: &Pipeline, opts: &RunOptions) -> Result<Option<import::Loaded>> {
    let (file, scope) = match (&opts.load_run, &opts.load_initial_reasoning) {
        (Some(_), Some(_)) => {
            return Err(InvalidInput(
                "--load-run imports every round, --load-initial-reasoning round 0 only: give one of them".into(),
            )
            .into());
        }
        (Some(f), None) => (f, import::Scope::All),
        (None, Some(f)) => (f, import::Scope::Round0),
        (None, None) => return Ok(None),
    };
    let l = import::load(p, file, scope)
        .map_err(|e| InvalidInput(format!("{} {e:#}", scope.flag())))?;
    eprintln!(
        "importing {} record(s) from {} ({}){}",
        l.imports.len(),
        file.display(),
        l.format,
        if l.recorded_errors.is_empty() {
            String::new()
        } else {
            format!(
                "; {} problem(s) it recorded as errors are not run",
                l.recorded_errors.len()
            )
        }
    );
    Ok(Some(l))
}

impl RunCtx {
    pub fn new(pipeline: Pipeline, opts: &RunOptions, mode: Mode) -> Result<Self> {
        let templates = Templates::compile(&pipeline.prompts)
            .map_err(|e| anyhow::anyhow!("prompt templates: {e:?}"))?;
        let mut cache = Cache::open(&opts.cache_dir).map_err(|e| InvalidInput(format!("{e:#}")))?;
        let remote = open_remote(&pipeline, opts, mode)?;
        if let Some(r) = &remote {
            cache.set_tier(r.clone());
        }
        // a run that may send must be able to keep what it pays for: refused before any call
        if mode == Mode::Run && !opts.offline {
            cache.check_writable().map_err(|e| {
                InvalidInput(format!(
                    "{e:#}: fix its permissions or free space, or pass --cache DIR (plan and --offline need no write access)"
                ))
            })?;
        }
        let base_dir = crate::spec::model::tokenizer_base_dir(&pipeline.file).to_path_buf();
        let calls = Calls::new(Settings {
            models: &pipeline.spec.models,
            used: used_models(&pipeline),
            cache,
            mode: match (mode, opts.offline) {
                (Mode::Plan, _) => calls::Mode::Plan,
                (Mode::Run, true) => calls::Mode::Offline,
                (Mode::Run, false) => calls::Mode::Run,
            },
            concurrency: opts.concurrency,
            max_cost: opts.max_cost,
            base_dir: &base_dir,
            sample_offset: pipeline.spec.sample_offset,
            batch: opts.batch,
        })
        .map_err(|e| InvalidInput(format!("{e:#}")))?;
        calls.batches.set_cancel_on_stop(opts.cancel_batches);
        let import = load_import(&pipeline, opts)?;
        if let Some(l) = &import {
            calls.set_imports(l.imports.clone());
        }
        Ok(RunCtx {
            pipeline,
            templates,
            concurrency: calls.concurrency,
            calls,
            started: Instant::now(),
            dashboard: None,
            import,
            remote,
        })
    }

    /// True once Ctrl-C was pressed: no new call is sent.
    pub fn stop_new_calls(&self) -> bool {
        self.calls.stopped()
    }

    /// The context a node instance runs in.
    pub fn node_cx<'a>(
        &'a self,
        node: &'a crate::spec::Node,
        problem: &'a crate::data::Problem,
        sample: u32,
        upstream: &'a HashMap<String, Arc<crate::nodes::Output>>,
    ) -> NodeCx<'a> {
        NodeCx {
            pipeline: &self.pipeline,
            templates: &self.templates,
            calls: &self.calls,
            node,
            problem,
            sample,
            upstream,
        }
    }
}

/// Hears the call layer: started calls and retries become events.jsonl lines (drained by
/// the scheduler), streamed text goes to the dashboard. A `started` event waits in a buffer
/// for the scheduler's next wake-up (one per sent call: waking it for each would cost more
/// than the event is worth); a `retry` wakes it, so a call that keeps failing shows at once.
struct RunListener {
    events: tokio::sync::mpsc::UnboundedSender<scheduler::Event>,
    quiet: Arc<std::sync::Mutex<Vec<scheduler::Event>>>,
    dashboard: Option<crate::dashboard::Dashboard>,
}

fn site_event(site: &Site<'_>, event: &'static str) -> scheduler::Event {
    scheduler::Event::new(
        site.problem_id,
        Some(site.sample),
        site.node_id,
        site.round,
        event,
    )
}

impl Listener for RunListener {
    fn started(&self, site: &Site<'_>) {
        if let Ok(mut q) = self.quiet.lock() {
            q.push(site_event(site, "started"));
        }
    }
    fn retry(&self, site: &Site<'_>, attempt: u32, reason: &str) {
        let mut e = site_event(site, "retry");
        e.error = Some(format!("attempt {attempt}: {reason}"));
        let _ = self.events.send(e);
    }
    fn delta(&self, site: &Site<'_>, text: &str) {
        if let Some(d) = &self.dashboard {
            d.delta(site.problem_id, site.sample, site.node_id, text);
        }
    }
}

/// The call layer's events for the scheduler: `wake` wakes it, `quiet` waits for it.
pub struct Heard {
    pub wake: tokio::sync::mpsc::UnboundedReceiver<scheduler::Event>,
    quiet: Arc<std::sync::Mutex<Vec<scheduler::Event>>>,
}

impl Heard {
    /// Every event heard so far, in order: the buffered ones, then `first`, then the rest.
    pub fn drain(&mut self, first: Option<scheduler::Event>) -> Vec<scheduler::Event> {
        let mut v = self
            .quiet
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default();
        v.extend(first);
        while let Ok(e) = self.wake.try_recv() {
            v.push(e);
        }
        v
    }
}

/// Connects the run to its call layer's news.
pub fn listen(ctx: &RunCtx) -> Heard {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let quiet = Arc::new(std::sync::Mutex::new(Vec::new()));
    ctx.calls.set_listener(Arc::new(RunListener {
        events: tx,
        quiet: quiet.clone(),
        dashboard: ctx.dashboard.clone(),
    }));
    Heard { wake: rx, quiet }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: Option<PathBuf>,
    pub problems: usize,
    pub failed_problems: Vec<(String, String)>,
    pub interrupted: bool,
    /// The stop signal's number (exit code 128 + it), when a signal stopped the run.
    pub signal: Option<i32>,
    /// Answers that arrived but could not be written to the cache.
    pub uncached: u64,
    /// Problems finished with some node not run (budget, offline miss).
    pub incomplete: usize,
}

impl RunSummary {
    pub fn exit_code(&self) -> i32 {
        if let Some(sig) = self.signal {
            128 + sig
        } else if self.interrupted {
            128 + signals::SIGINT
        } else if self.failed_problems.is_empty() && self.uncached == 0 && self.incomplete == 0 {
            0
        } else {
            1
        }
    }
}

/// Serves the live dashboard of a run about to start.
async fn start_dashboard(
    rc: &RunCtx,
    opts: &RunOptions,
    run_id: &str,
    host: &str,
    port: u16,
) -> Result<crate::dashboard::Dashboard> {
    let p = &rc.pipeline;
    let problems = p
        .problems
        .iter()
        .map(|q| q.map(|q| (q.id.clone(), q.question().to_string())))
        .collect::<Result<_, _>>()
        .map_err(|e| InvalidInput(e.to_string()))?;
    let columns = p
        .nodes
        .iter()
        .map(|n| (n.id.clone(), n.round, n.kind.clone()))
        .collect();
    let config = output::config_json(rc, opts, run_id);
    let d = crate::dashboard::Dashboard::start(host, port, config, problems, columns)
        .await
        .map_err(InvalidInput)?;
    eprintln!("dashboard: {}", d.url());
    Ok(d)
}

/// Hands the run's end to the dashboard, which keeps serving a finished run until Ctrl-C.
async fn dashboard_end(d: &crate::dashboard::Dashboard, summary: &RunSummary) {
    let metrics = summary
        .run_dir
        .as_ref()
        .and_then(|dir| std::fs::read(dir.join("metrics.json")).ok())
        .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
        .unwrap_or_default();
    d.metrics(&metrics);
    d.finished(&serde_json::json!({"exit_code": summary.exit_code(), "failed": summary.failed_problems, "interrupted": summary.interrupted}));
    if !summary.interrupted {
        // listening before saying so: a Ctrl-C right after the line must not be lost; SIGTERM
        // and SIGHUP end it too (`timeout`, `docker stop`, a closed terminal)
        let mut stop = signals::Signals::new();
        eprintln!(
            "the run is over; the dashboard keeps serving at {} until Ctrl-C",
            d.url()
        );
        stop.recv().await;
    }
}

/// `--results_format original`: results.original.json beside results.json (a failure is a
/// warning: distill's own files are written).
fn write_original_results(dir: &std::path::Path, name: &str) {
    let config = crate::runfile::read_config(dir)
        .map(|c| c["pipeline"].clone())
        .unwrap_or_default();
    match crate::runfile::original_out::write(dir, name, config) {
        Ok(f) => eprintln!("original-format results: {}", f.display()),
        Err(e) => eprintln!("warning: writing the original-format results: {e}"),
    }
}

/// The files a finished run adds beside its results: the import manifest (`--load_run`,
/// `--load_initial_reasoning`) and the original tool's schema (`--results_format original`).
fn write_extras(ctx: &RunCtx, opts: &RunOptions, summary: &RunSummary) {
    let Some(dir) = &summary.run_dir else { return };
    if let Some(l) = &ctx.import
        && let Err(e) = import::write_manifest(dir, l)
    {
        eprintln!(
            "warning: writing {}: {e:#}",
            dir.join("import.json").display()
        );
    }
    if opts.original_results {
        write_original_results(dir, &ctx.pipeline.spec.name);
    }
}

/// Sends the run's metrics to the live dashboard once a second (when there is one).
fn metrics_ticker(ctx: &Arc<RunCtx>) -> Option<tokio::task::JoinHandle<()>> {
    let d = ctx.dashboard.clone()?;
    let c = ctx.clone();
    Some(tokio::spawn(async move {
        loop {
            d.metrics(&output::metrics_json(&c, &scheduler::Outcome::default(), 0));
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }))
}

/// Runs a validated pipeline and writes its run directory.
pub async fn run(pipeline: Pipeline, opts: &RunOptions) -> Result<RunSummary> {
    let mut rc = RunCtx::new(pipeline, opts, Mode::Run)?;
    tracing::debug!(
        "run: pipeline `{}` ({}): {} nodes, {} problem(s) × {} sample(s); concurrency {}, offline {}, cache {}",
        rc.pipeline.spec.name,
        rc.pipeline.file.display(),
        rc.pipeline.nodes.len(),
        rc.pipeline.problems.len(),
        rc.pipeline.spec.samples,
        opts.concurrency,
        opts.offline,
        opts.cache_dir.display()
    );
    let mut out = match &opts.resume {
        Some(dir) => output::RunWriter::reopen(dir).map_err(|e| InvalidInput(format!("{e:#}")))?,
        // before any call: a results root that cannot hold a run directory is bad input
        None => output::RunWriter::create(&rc, opts).map_err(|e| {
            InvalidInput(format!(
                "{e:#}: pass --results DIR with a directory distill can write (nothing was run)"
            ))
        })?,
    };
    if let Some((host, port)) = &opts.dashboard {
        rc.dashboard = Some(start_dashboard(&rc, opts, &out.run_id, host, *port).await?);
    }
    tracing::debug!("run: run id {}; scheduling", out.run_id);
    let ctx = Arc::new(rc);
    ctx.calls.set_keys_file(out.keys_file()?);
    ctx.calls
        .batches
        .set_run_log(out.dir.join(crate::calls::batch::registry::RUN_LOG));
    let p = &ctx.pipeline;
    let model_nodes = (0..p.nodes.len())
        .filter(|&i| crate::graph::uses_model(p, i))
        .count()
        * p.spec.samples.max(1) as usize;
    let progress = Arc::new(progress::Progress::new(
        p.problems.len(),
        model_nodes,
        opts.progress,
    ));
    let ticker = metrics_ticker(&ctx);
    let bar_ticker = progress::batch_ticker(&progress, &ctx);
    let result = match ctx.dashboard.clone() {
        Some(d) => {
            scheduler::schedule(
                ctx.clone(),
                &mut output::Tee {
                    inner: &mut out,
                    dashboard: d,
                },
                &progress,
            )
            .await
        }
        None => scheduler::schedule(ctx.clone(), &mut out, &progress).await,
    };
    for t in [ticker, bar_ticker].into_iter().flatten() {
        t.abort();
    }
    progress.finish();
    ctx.calls.close_keys_file();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            // close results.json and write metrics even so: nothing finished is lost
            let o = scheduler::Outcome {
                interrupted: true,
                ..Default::default()
            };
            flush_remote(&ctx, std::time::Duration::from_secs(10));
            let _ = out.finish(&ctx, &o);
            return Err(e);
        }
    };
    tracing::debug!(
        "run: scheduling finished: {} problem(s) done, {} failed, {} incomplete, interrupted {}; writing results",
        outcome.problems_done,
        outcome.failed.len(),
        outcome.incomplete,
        outcome.interrupted
    );
    flush_remote(
        &ctx,
        if outcome.interrupted {
            std::time::Duration::from_secs(10)
        } else {
            crate::remote::FLUSH_WAIT
        },
    );
    ctx.calls.cache.sync();
    let summary = out.finish(&ctx, &outcome)?;
    tracing::debug!(
        "run: results written to {}",
        summary
            .run_dir
            .as_deref()
            .map_or_else(|| "-".into(), |d| d.display().to_string())
    );
    write_extras(&ctx, opts, &summary);
    if let Some(d) = &ctx.dashboard {
        dashboard_end(d, &summary).await;
    }
    Ok(summary)
}
