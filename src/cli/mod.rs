//! The command line (clap): `pipeline run|validate|graph|plan` and `cache stats|verify|gc`,
//! the original tool's run options, and the exit codes of DESIGN.md (0 done, 1 some problems
//! failed, 2 invalid input, 130 interrupted).

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

mod cache;
mod convert;
pub mod plan;
mod runs;

use crate::data::Filters;
use crate::exec::{self, RunOptions};
use crate::spec::{self, LoadOptions, Pipeline};

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Run LLM reasoning experiments (iterated summarization and friends) described as YAML graphs"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run, check, draw or plan a pipeline.
    #[command(subcommand)]
    Pipeline(PipelineCmd),
    /// Inspect and clean the cache.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// List runs: name, id, status, problems done/total, per-round accuracy, spend, start.
    Runs {
        /// Root of run directories.
        #[arg(default_value = "results")]
        results: PathBuf,
    },
    /// Report on one or more finished runs: per-round and cumulative accuracy with Wilson
    /// intervals, pass@k, majority@k, bootstrap differences, tokens, outcome classes, plots.
    Report {
        /// Run directories or results.json files (distill's or the original tool's).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where report.md, report.csv, report.json and the SVG plots go (default: the run's
        /// directory for one run, ./report for several).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Group problems by a problem-set column, or by `re:REGEX` over ids.
        #[arg(long = "group_by", visible_alias = "group-by")]
        group_by: Option<String>,
        /// Seed of the paired bootstrap.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Bootstrap resamples (0 to 100000; 0: no bootstrap).
        #[arg(long, default_value_t = 2000, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_BOOTSTRAP))]
        bootstrap: usize,
    },
    /// Fetch public benchmarks into data/ (`pull`) or show what can be pulled (`list`).
    #[command(subcommand)]
    Data(DataCmd),
    /// Serve the dashboard over a finished run (read-only) until Ctrl-C.
    View {
        run_dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
    },
    /// Regrade a finished run (distill's results.json or the original tool's) and list
    /// every verdict that changed; writes <stem>.regraded.json beside it.
    Grade {
        /// The results file.
        file: PathBuf,
        /// Extractor (help made from the extractor table).
        #[arg(long, default_value = "boxed")]
        extract: String,
        /// Comparison (help made from the comparison table).
        #[arg(long, default_value = "math")]
        grader: String,
        /// Relative tolerance for numeric comparisons.
        #[arg(long = "rel_tol", visible_alias = "rel-tol")]
        rel_tol: Option<f64>,
        /// Look for the answer only after the last </think>.
        #[arg(long = "no_fallback", visible_alias = "no-fallback")]
        no_fallback: bool,
        /// Where to write the regraded file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DataCmd {
    /// Fetch NAME (aime-2024, aime-2025, math-500, gpqa-diamond, gsm8k-test) into data/NAME.csv.
    Pull {
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shuffle seed of multiple-choice options (GPQA), recorded in data/SOURCES.md.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// What can be pulled and what is already in data/.
    List,
}

#[derive(Subcommand)]
enum PipelineCmd {
    /// Run a pipeline over its problem set; every model call goes through the cache.
    Run(RunArgs),
    /// Check a pipeline (and its prompts and problem set) without running anything.
    Validate(LoadArgs),
    /// Print the expanded graph that runs for each problem.
    Graph {
        #[command(flatten)]
        load: LoadArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// Dry run: nodes and calls per problem, calls already cached, calls to make, tokens.
    Plan(RunArgs),
    /// Write the original tool's flat experiment configs (config/experiments/*.yaml) as
    /// distill pipelines plus .hbs prompts, validate them, and warn about configs that would
    /// share every cache key.
    Convert {
        /// The original tool's config files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder for the pipelines (<stem>.yaml) and their prompts (prompts/…).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Text,
    Dot,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// The pipeline YAML file (`run --resume` takes none).
    file: Option<PathBuf>,
    /// Override any pipeline field, e.g. --set models.reasoner.params.temperature=0.8 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// Only these problem ids (comma-separated).
    #[arg(
        long = "question_ids",
        visible_alias = "question-ids",
        value_delimiter = ','
    )]
    question_ids: Option<Vec<String>>,
    /// Leave out these problem ids (comma-separated; applied last).
    #[arg(
        long = "exclude_question_ids",
        visible_alias = "exclude-question-ids",
        value_delimiter = ','
    )]
    exclude_question_ids: Option<Vec<String>>,
    /// Only rows a..b of the CSV (0-based, inclusive), e.g. 0-4.
    #[arg(
        long = "index_range",
        visible_alias = "index-range",
        value_name = "A-B"
    )]
    index_range: Option<String>,
}

/// `--results_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ResultsFormat {
    Distill,
    Original,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Model calls in flight across the whole run, 1 to 4096 (a model's max_in_flight may be lower).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_CONCURRENCY))]
    concurrency: usize,
    /// Never call a model: a cache miss fails that node (also ENABLE_API_CALLS=0).
    #[arg(long)]
    offline: bool,
    /// Cache directory.
    #[arg(long, env = "DISTILL_CACHE", default_value = "cache")]
    cache: PathBuf,
    /// Root of run directories (results/<pipeline>/<run-id>/).
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Log each call's parameters and prompt (API keys are never logged).
    #[arg(long)]
    verbose: bool,
    /// Accepted for compatibility with the original tool: distill always runs problems concurrently.
    #[arg(long)]
    parallel: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Serve a live dashboard of the run (127.0.0.1; stays up after the run until Ctrl-C).
    #[arg(long)]
    dashboard: bool,
    /// Dashboard port (default: the pipeline's `dashboard_port:`, else 8080).
    #[arg(long = "dashboard_port", visible_alias = "dashboard-port")]
    dashboard_port: Option<u16>,
    /// Dashboard address; anything but loopback exposes the run to the network (a warning is printed).
    #[arg(
        long = "dashboard_host",
        visible_alias = "dashboard-host",
        default_value = "127.0.0.1"
    )]
    dashboard_host: String,
    /// Import round-0 outputs from an earlier run (distill's or the original tool's) into the cache.
    #[arg(
        long = "load_initial_reasoning",
        visible_alias = "load-initial-reasoning",
        value_name = "RESULTS.json"
    )]
    load_initial_reasoning: Option<PathBuf>,
    /// Import every round (reasoning, summaries) of an earlier run (distill's or the original
    /// tool's) into the cache under this pipeline's keys; with --offline, reproduce its table.
    #[arg(
        long = "load_run",
        visible_alias = "load-run",
        value_name = "RESULTS.json"
    )]
    load_run: Option<PathBuf>,
    /// `original` also writes results.original.json in the original tool's schema (for its
    /// analysis scripts); distill's own files are always written.
    #[arg(
        long = "results_format",
        visible_alias = "results-format",
        value_enum,
        default_value = "distill"
    )]
    results_format: ResultsFormat,
    /// Stop sending new calls once this run's spend reaches USD (calls in flight finish; all is saved).
    #[arg(long = "max_cost", visible_alias = "max-cost", value_name = "USD", value_parser = parse_max_cost)]
    max_cost: Option<f64>,
    /// Finish a stopped run in place (same id and directory), sending only what is not
    /// finished; takes no pipeline file, --set or filters: the run's own config is used.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum CacheCmd {
    /// Count entries by kind and size.
    Stats(CacheArgs),
    /// Read and check every entry; list corrupt ones (exit 1 when any).
    Verify {
        #[command(flatten)]
        c: CacheArgs,
        /// Delete the corrupt entries found.
        #[arg(long)]
        delete: bool,
    },
    /// Write the cache entries some runs used (and their config.json) into one bundle file
    /// (tar + zstd) that another machine imports to reproduce them offline.
    Export {
        #[command(flatten)]
        c: CacheArgs,
        /// Run directories whose entries go into the bundle.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
        /// The bundle file to write (e.g. paper-tables.tar.zst).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add a bundle's entries to the cache, each checked (checksum, key) first.
    Import {
        #[command(flatten)]
        c: CacheArgs,
        /// A bundle written by `distill cache export`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove entries no run under the results directory refers to (shows them unless --yes).
    Gc {
        #[command(flatten)]
        c: CacheArgs,
        #[arg(long, default_value = "results")]
        results: PathBuf,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args)]
pub(crate) struct CacheArgs {
    #[arg(long, env = "DISTILL_CACHE", default_value = "cache")]
    cache: PathBuf,
}

/// Most calls in flight (`--concurrency`).
const MAX_CONCURRENCY: u64 = 4096;
/// Most bootstrap resamples (`report --bootstrap`).
const MAX_BOOTSTRAP: u64 = 100_000;

/// `--max_cost`: dollars, a finite number of at least 0.
fn parse_max_cost(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of dollars (e.g. --max_cost 5)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "`{s}` is not a budget: give a number of dollars of at least 0 (e.g. --max_cost 5)"
        ));
    }
    Ok(v)
}

/// The command line, its help texts of named choices made from their tables.
fn command() -> clap::Command {
    use crate::grade::{Compare, Extractor, Named};
    let graders: Vec<&str> = Compare::names()
        .into_iter()
        .filter(|n| *n != "llm_judge")
        .collect();
    Cli::command().mut_subcommand("grade", |c| {
        c.mut_arg("extract", |a| {
            a.help(format!(
                "Extractor: {}, or regex:PATTERN",
                Extractor::names()
                    .into_iter()
                    .filter(|n| *n != "regex")
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
        .mut_arg("grader", |a| {
            a.help(format!("Comparison: {}", graders.join(", ")))
        })
    })
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let parsed = command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.cmd {
        Cmd::Pipeline(p) => pipeline(p),
        Cmd::Cache(c) => cache::run(c),
        Cmd::Runs { results } => runs::list(&results),
        Cmd::Report {
            runs,
            out,
            group_by,
            seed,
            bootstrap,
        } => {
            let opts = crate::report::ReportOptions {
                runs,
                out_dir: out,
                group_by,
                seed,
                bootstrap,
            };
            match crate::report::report(&opts) {
                Ok(md) => {
                    println!("{md}");
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            }
        }
        Cmd::Data(DataCmd::List) => {
            print!("{}", crate::datasets::list(Path::new("data")));
            0
        }
        Cmd::Data(DataCmd::Pull { name, out, seed }) => {
            let mut opts = crate::datasets::PullOptions::new(&name);
            opts.out = out;
            opts.seed = seed;
            match runtime().block_on(crate::datasets::pull(&opts)) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            }
        }
        Cmd::View {
            run_dir,
            port,
            host,
        } => match runtime().block_on(crate::dashboard::view(&run_dir, &host, port)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Cmd::Grade {
            file,
            extract,
            grader,
            rel_tol,
            no_fallback,
            out,
        } => regrade(&file, &extract, &grader, rel_tol, no_fallback, out),
    }
}

fn regrade(
    file: &Path,
    extract: &str,
    grader: &str,
    rel_tol: Option<f64>,
    no_fallback: bool,
    out: Option<PathBuf>,
) -> i32 {
    use crate::grade::{Compare, Extractor, Named};
    let extract = match extract.split_once(':') {
        Some(("regex", pat)) => Ok(Extractor::Regex(pat.to_string())),
        _ => Extractor::parse_name(extract),
    };
    let extract = match extract.and_then(|e| crate::grade::check_extractor(&e).map(|()| e)) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: --extract: {e}");
            return 2;
        }
    };
    let compare = match Compare::parse_name(grader) {
        Ok(Compare::LlmJudge) => {
            eprintln!(
                "error: --grader llm_judge needs a model call; `distill grade` regrades without calls"
            );
            return 2;
        }
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --grader: {e}");
            return 2;
        }
    };
    if let Some(e) = crate::nodes::grade::check_rel_tol(rel_tol) {
        eprintln!("error: --rel_tol: {e}");
        return 2;
    }
    let opts = crate::regrade::RegradeOptions {
        extract,
        compare,
        fallback_full_text: !no_fallback,
        rel_tol,
        out,
    };
    match crate::regrade::regrade_file(file, &opts) {
        Ok(r) => {
            crate::regrade::print_report(&r);
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn init_tracing(verbose: bool) {
    let filter = if verbose {
        "distill=info"
    } else {
        "distill=warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DISTILL_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// `validate` says which models could not send for want of a key (plan and `--offline`
/// need none).
fn warn_missing_keys(p: &Pipeline) {
    for (name, spec) in &p.spec.models {
        let used = p
            .nodes
            .iter()
            .any(|n| n.model.as_deref() == Some(name.as_str()));
        if used
            && spec.provider != "sim"
            && let Err(e) = crate::llm::openai::check_api_key(spec)
        {
            eprintln!("warning: {e} (plan and --offline runs need no key)");
        }
    }
}

fn load(args: &LoadArgs) -> Result<Pipeline, i32> {
    let opts = LoadOptions {
        sets: args.sets.clone(),
        filters: Filters {
            question_ids: args.question_ids.clone(),
            exclude_question_ids: args.exclude_question_ids.clone(),
            index_range: args.index_range.clone(),
        },
    };
    let Some(file) = &args.file else {
        eprintln!("error: name a pipeline file (or, for `pipeline run`, --resume RUN_DIR)");
        return Err(2);
    };
    match spec::load(file, &opts) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("warning: {w}");
            }
            Ok(p)
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!("{} error(s); nothing was run", diags.len());
            Err(2)
        }
    }
}

fn offline_env() -> bool {
    std::env::var("ENABLE_API_CALLS")
        .map(|v| v.trim() == "0" || v.eq_ignore_ascii_case("false"))
        .unwrap_or(false)
}

fn run_options(a: &RunArgs) -> RunOptions {
    RunOptions {
        concurrency: a.concurrency,
        offline: a.offline || offline_env(),
        cache_dir: a.cache.clone(),
        results_root: a.results.clone(),
        verbose: a.verbose,
        command_line: std::env::args().collect(),
        progress: !a.no_progress,
        max_cost: a.max_cost,
        load_initial_reasoning: a.load_initial_reasoning.clone(),
        load_run: a.load_run.clone(),
        original_results: a.results_format == ResultsFormat::Original,
        dashboard: a
            .dashboard
            .then(|| (a.dashboard_host.clone(), a.dashboard_port.unwrap_or(8080))),
        load: a.load.file.as_ref().map(|f| {
            crate::runfile::config::LoadRecord::new(f, &a.load.sets, &filters_of(&a.load))
        }),
        resume: a.resume.clone(),
    }
}

fn filters_of(a: &LoadArgs) -> Filters {
    Filters {
        question_ids: a.question_ids.clone(),
        exclude_question_ids: a.exclude_question_ids.clone(),
        index_range: a.index_range.clone(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn pipeline(cmd: PipelineCmd) -> i32 {
    match cmd {
        PipelineCmd::Validate(a) => {
            init_tracing(false);
            match load(&a) {
                Ok(p) => {
                    warn_missing_keys(&p);
                    println!(
                        "{}: valid — {} nodes per problem and sample, {} problem(s) × {} sample(s)",
                        a.file.as_deref().unwrap_or(Path::new("")).display(),
                        p.nodes.len(),
                        p.problems.len(),
                        p.spec.samples
                    );
                    0
                }
                Err(c) => c,
            }
        }
        PipelineCmd::Graph { load: a, format } => {
            init_tracing(false);
            match load(&a) {
                Ok(p) => {
                    match format {
                        GraphFormat::Text => print!("{}", crate::graph::to_text(&p)),
                        GraphFormat::Dot => print!("{}", crate::graph::to_dot(&p)),
                    }
                    0
                }
                Err(c) => c,
            }
        }
        PipelineCmd::Run(a) if a.resume.is_some() => {
            init_tracing(a.verbose);
            runs::resume(&a)
        }
        PipelineCmd::Run(a) => {
            init_tracing(a.verbose);
            let p = match load(&a.load) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let mut opts = run_options(&a);
            // the port: --dashboard_port, else the pipeline's `dashboard_port:`, else 8080
            if let (Some(d), None, Some(port)) =
                (&mut opts.dashboard, a.dashboard_port, p.spec.dashboard_port)
            {
                d.1 = port;
            }
            let rt = runtime();
            match rt.block_on(exec::run(p, &opts)) {
                Ok(s) => s.exit_code(),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    if e.downcast_ref::<exec::InvalidInput>().is_some() {
                        2
                    } else {
                        1
                    }
                }
            }
        }
        PipelineCmd::Convert { files, out } => {
            init_tracing(false);
            convert::run(&files, &out)
        }
        PipelineCmd::Plan(a) => {
            init_tracing(a.verbose);
            let p = match load(&a.load) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let opts = run_options(&a);
            let rt = runtime();
            match rt.block_on(plan::run(p, &opts)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    2
                }
            }
        }
    }
}
