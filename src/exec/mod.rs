//! Running a pipeline: the shared run context (providers, cache, concurrency caps, counters),
//! the run options, and `run`, which builds the context, drives the scheduler, and writes the
//! run directory. The scheduling itself is in `scheduler`, the files in `output`, the
//! terminal progress in `progress`.

pub mod import;
pub mod output;
pub mod progress;
pub mod scheduler;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;
use tokio::sync::Semaphore;

use crate::cache::Cache;
use crate::llm::{CallRequest, CallResponse, Provider};
use crate::nodes::NodeCx;
use crate::nodes::call::CallInfo;
use crate::spec::Pipeline;
use crate::template::Templates;

/// An error in what the user gave (a missing key, a bad import file): exit code 2, found
/// before any call.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// Marker error of a call that a plan would make.
pub const PLANNED: &str = "planned: this call is not in the cache";
/// Marker error of a call not started because the run was interrupted.
pub const INTERRUPTED: &str = "interrupted before this call was sent";
/// Marker error of a call not sent because `--max_cost` was reached.
pub const BUDGET: &str = "not sent: this run's spend reached --max_cost";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Make calls, write results.
    Run,
    /// Read the cache only and count what a run would send (`pipeline plan`).
    Plan,
}

/// Counters of one run (atomics: nodes run concurrently).
#[derive(Debug, Default)]
pub struct Stats {
    pub calls: AtomicU64,
    pub call_hits: AtomicU64,
    pub node_hits: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub reasoning_tokens: AtomicU64,
    /// Tokens of this run's own calls (not served by the cache).
    pub spent_prompt_tokens: AtomicU64,
    pub spent_completion_tokens: AtomicU64,
    /// Micro-dollars: this run's spend and the experiment's total (cached calls included).
    pub spend_micro_usd: AtomicU64,
    pub total_cost_micro_usd: AtomicU64,
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub planned_calls: AtomicU64,
    pub planned_tokens: AtomicU64,
    pub planned_cost_micro: AtomicU64,
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
    /// Import round-0 outputs from an earlier results.json before running.
    pub load_initial_reasoning: Option<PathBuf>,
    /// Serve a live dashboard on (host, port).
    pub dashboard: Option<(String, u16)>,
}

/// Everything nodes share during a run.
pub struct RunCtx {
    pub pipeline: Pipeline,
    pub templates: Templates,
    pub providers: HashMap<String, Arc<dyn Provider>>,
    pub cache: Cache,
    pub offline: bool,
    pub mode: Mode,
    pub verbose: bool,
    pub global: Arc<Semaphore>,
    pub per_model: HashMap<String, Arc<Semaphore>>,
    pub concurrency: usize,
    pub stats: Stats,
    pub interrupted: AtomicBool,
    /// Cache keys this run used (for `cache gc`), written as they come.
    pub keys_out: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    pub started: Instant,
    pub max_cost_micro: Option<u64>,
    /// Events raised inside nodes (retries), drained by the scheduler into the sink.
    pub side_events: Mutex<Vec<scheduler::Event>>,
    /// The live dashboard (`--dashboard`).
    pub dashboard: Option<crate::dashboard::Dashboard>,
}

impl RunCtx {
    pub fn new(pipeline: Pipeline, opts: &RunOptions, mode: Mode) -> Result<Self> {
        let templates = Templates::compile(&pipeline.prompts)
            .map_err(|e| anyhow::anyhow!("prompt templates: {e:?}"))?;
        let mut providers = HashMap::new();
        let mut per_model = HashMap::new();
        for (name, spec) in &pipeline.spec.models {
            let used = pipeline.nodes.iter().any(|n| {
                n.model.as_deref() == Some(name.as_str())
                    || n.params.get("judge_model").and_then(|m| m.as_str()) == Some(name.as_str())
            }) || pipeline
                .spec
                .grade
                .as_ref()
                .and_then(|g| g.judge_model.as_deref())
                == Some(name.as_str());
            if !used {
                continue;
            }
            let p = crate::llm::build_provider(spec)
                .map_err(|e| InvalidInput(format!("model `{name}`: {e:#}")))?;
            providers.insert(name.clone(), p);
            if let Some(m) = spec.max_in_flight {
                per_model.insert(name.clone(), Arc::new(Semaphore::new(m)));
            }
        }
        let cache = Cache::open(&opts.cache_dir)?;
        let concurrency = opts.concurrency.max(1);
        Ok(RunCtx {
            pipeline,
            templates,
            providers,
            cache,
            offline: opts.offline,
            mode,
            verbose: opts.verbose,
            global: Arc::new(Semaphore::new(concurrency)),
            per_model,
            concurrency,
            stats: Stats::default(),
            interrupted: AtomicBool::new(false),
            keys_out: Mutex::new(None),
            started: Instant::now(),
            max_cost_micro: opts.max_cost.map(|c| (c * 1e6) as u64),
            side_events: Mutex::new(Vec::new()),
            dashboard: None,
        })
    }

    /// True once this run's spend reached `--max_cost`.
    pub fn over_budget(&self) -> bool {
        self.max_cost_micro
            .is_some_and(|m| self.stats.spend_micro_usd.load(Ordering::Relaxed) >= m)
    }

    /// Queues an event raised inside a node (e.g. a retry) for events.jsonl.
    pub fn side_event(&self, cx: &NodeCx<'_>, event: &'static str, detail: Option<String>) {
        let e = scheduler::Event {
            time: scheduler::now(),
            problem: cx.problem.id.clone(),
            sample: Some(cx.sample),
            node: cx.node.id.clone(),
            round: cx.node.round,
            event,
            cached: None,
            usage: None,
            answer: None,
            correct: None,
            error: detail,
            latency_ms: None,
        };
        if let Ok(mut v) = self.side_events.lock() {
            v.push(e);
        }
    }

    /// Forwards a streamed text piece to the dashboard, if one is open.
    pub fn stream_delta(&self, cx: &NodeCx<'_>, text: &str) {
        if let Some(d) = &self.dashboard {
            d.delta(&cx.problem.id, cx.sample, &cx.node.id, text);
        }
    }

    /// True once Ctrl-C was pressed: no new call is sent.
    pub fn stop_new_calls(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    /// One provider call under the run's caps: the model's own `max_in_flight`, then the
    /// run's `--concurrency`.
    pub async fn limited_call(
        &self,
        model: &str,
        provider: &dyn Provider,
        req: &CallRequest,
        cx: &NodeCx<'_>,
    ) -> Result<CallResponse> {
        let _m = match self.per_model.get(model) {
            Some(s) => Some(s.acquire().await?),
            None => None,
        };
        let _g = self.global.acquire().await?;
        // `started` marks a call really sent (a node served by the cache only finishes)
        if !self.stop_new_calls() {
            self.side_event(cx, "started", None);
        }
        let now = self.stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if self.verbose {
            tracing::info!(problem = %cx.problem.id, node = %cx.node.id, model, sample = req.sample, params = %serde_json::to_string(&req.params).unwrap_or_default(), prompt = %req.prompt.full_text(), "call");
        }
        let r = crate::nodes::call::send(provider, req, cx).await;
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Adds one model node's calls to the counters and the list of used cache keys.
    pub fn record_call_info(&self, model: &str, info: &CallInfo) {
        let s = &self.stats;
        if info.cached {
            s.node_hits.fetch_add(1, Ordering::Relaxed);
        }
        s.calls.fetch_add(info.calls as u64, Ordering::Relaxed);
        s.call_hits
            .fetch_add(info.call_hits as u64, Ordering::Relaxed);
        s.prompt_tokens
            .fetch_add(info.usage.prompt_tokens, Ordering::Relaxed);
        s.completion_tokens
            .fetch_add(info.usage.completion_tokens, Ordering::Relaxed);
        s.reasoning_tokens
            .fetch_add(info.usage.reasoning_tokens, Ordering::Relaxed);
        let price = self
            .pipeline
            .spec
            .models
            .get(model)
            .map(|m| m.price.clone())
            .unwrap_or_default();
        let cost = |u: &crate::llm::Usage| {
            (u.prompt_tokens as f64 * price.input_per_m
                + u.completion_tokens as f64 * price.output_per_m)
                .round() as u64
        };
        s.total_cost_micro_usd
            .fetch_add(cost(&info.usage), Ordering::Relaxed);
        if info.calls > 0 && !info.cached {
            // the calls made now: the usage of this node minus what came from call entries is
            // not separable per step, so a node with any fresh call counts its fresh share
            let share = info.calls as f64 / (info.calls + info.call_hits).max(1) as f64;
            let fresh = crate::llm::Usage {
                prompt_tokens: (info.usage.prompt_tokens as f64 * share) as u64,
                completion_tokens: (info.usage.completion_tokens as f64 * share) as u64,
                ..Default::default()
            };
            s.spent_prompt_tokens
                .fetch_add(fresh.prompt_tokens, Ordering::Relaxed);
            s.spent_completion_tokens
                .fetch_add(fresh.completion_tokens, Ordering::Relaxed);
            s.spend_micro_usd.fetch_add(cost(&fresh), Ordering::Relaxed);
        }
        if let Ok(mut g) = self.keys_out.lock()
            && let Some(w) = g.as_mut()
        {
            use std::io::Write;
            for k in &info.keys {
                let _ = writeln!(w, "{k}");
            }
            // flushed as it goes, so `cache gc` never deletes a crashed run's entries
            let _ = w.flush();
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunSummary {
    pub run_dir: Option<PathBuf>,
    pub problems: usize,
    pub failed_problems: Vec<(String, String)>,
    pub interrupted: bool,
}

impl RunSummary {
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            130
        } else if self.failed_problems.is_empty() {
            0
        } else {
            1
        }
    }
}

/// Runs a validated pipeline and writes its run directory.
pub async fn run(pipeline: Pipeline, opts: &RunOptions) -> Result<RunSummary> {
    let mut rc = RunCtx::new(pipeline, opts, Mode::Run)?;
    if let Some(f) = &opts.load_initial_reasoning {
        let n = import::import_initial_reasoning(&rc, f)
            .map_err(|e| InvalidInput(format!("--load_initial_reasoning {e:#}")))?;
        eprintln!(
            "imported {n} round-0 output(s) from {} into the cache",
            f.display()
        );
    }
    let mut out = output::RunWriter::create(&rc, opts)?;
    if let Some((host, port)) = &opts.dashboard {
        let p = &rc.pipeline;
        let problems = p
            .problems
            .iter()
            .map(|q| (q.id.clone(), q.question().to_string()))
            .collect();
        let columns = p
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.round, n.kind.clone()))
            .collect();
        let config = output::config_json(&rc, opts, &out.run_id);
        let d = crate::dashboard::Dashboard::start(host, *port, config, problems, columns)
            .await
            .map_err(InvalidInput)?;
        eprintln!("dashboard: {}", d.url());
        rc.dashboard = Some(d);
    }
    let ctx = Arc::new(rc);
    *ctx.keys_out.lock().expect("fresh lock") = Some(out.keys_file()?);
    let progress = progress::Progress::new(ctx.pipeline.problems.len(), opts.progress);
    let ticker = ctx.dashboard.clone().map(|d| {
        let c = ctx.clone();
        tokio::spawn(async move {
            loop {
                d.metrics(&output::metrics_json(&c, &scheduler::Outcome::default(), 0));
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        })
    });
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
    if let Some(t) = ticker {
        t.abort();
    }
    progress.finish();
    if let Some(mut w) = ctx.keys_out.lock().expect("lock").take() {
        use std::io::Write;
        let _ = w.flush();
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            // close results.json and write metrics even so: nothing finished is lost
            let o = scheduler::Outcome {
                interrupted: true,
                ..Default::default()
            };
            let _ = out.finish(&ctx, &o);
            return Err(e);
        }
    };
    ctx.cache.sync();
    let summary = out.finish(&ctx, &outcome)?;
    if let Some(d) = &ctx.dashboard {
        let metrics = std::fs::read(
            summary
                .run_dir
                .as_ref()
                .expect("a run dir")
                .join("metrics.json"),
        )
        .ok();
        let metrics: serde_json::Value = metrics
            .and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or_default();
        d.metrics(&metrics);
        d.finished(&serde_json::json!({"exit_code": summary.exit_code(), "failed": summary.failed_problems, "interrupted": summary.interrupted}));
        if !summary.interrupted {
            eprintln!(
                "the run is over; the dashboard keeps serving at {} until Ctrl-C",
                d.url()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    Ok(summary)
}
