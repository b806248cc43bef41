//! The command line's shape (clap derive): every command, option and its help text. Flags are
//! kebab-case (`--question-ids`); the original tool's underscore spellings (`--question_ids`)
//! are hidden aliases so its scripts keep working.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "distill",
    version,
    about = "Run LLM reasoning experiments (iterated summarization and friends) described as YAML graphs"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

// parsed once per process: a boxed variant would buy nothing
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub(super) enum Cmd {
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
        /// Where report.md, report.csv, report.json and the figures (SVG, PNG) go (default: the run's
        /// directory for one run, ./report for several).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Group problems by a problem-set column, or by `re:REGEX` over ids.
        #[arg(long = "group-by", alias = "group_by")]
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
    /// Serve the dashboard over finished runs (read-only) until Ctrl-C; several runs are
    /// shown side by side.
    View {
        /// The run directories (results/<pipeline>/<run-id>/); several: compared.
        #[arg(required = true, num_args = 1..)]
        run_dirs: Vec<PathBuf>,
        /// Port to listen on (0: any free port).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Address to listen on; anything but loopback exposes the run to the network.
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
        #[arg(long = "rel-tol", alias = "rel_tol")]
        rel_tol: Option<f64>,
        /// Look for the answer only after the last </think>.
        #[arg(long = "no-fallback", alias = "no_fallback")]
        no_fallback: bool,
        /// Where to write the regraded file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a shell completion script: `distill completions bash > ~/.local/share/bash-completion/completions/distill`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `distill man > ~/.local/share/man/man1/distill.1`.
    Man,
}

#[derive(Subcommand)]
pub(super) enum DataCmd {
    /// Fetch NAME (aime-2024, aime-2025, math-500, gpqa-diamond, gsm8k-test) into data/NAME.csv.
    Pull {
        /// The dataset (`distill data list` shows the names).
        name: String,
        /// Where to write the CSV (default data/<name with - → _>.csv).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Shuffle seed of multiple-choice options (GPQA), recorded in data/SOURCES.md.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace a local file whose rows differ from the pulled ones (without it the pull
        /// refuses and lists the rows added, removed and edited).
        #[arg(long)]
        force: bool,
        /// Pull only this revision (commit sha) of the dataset; without a value, the one
        /// data/SOURCES.md recorded for the file. Refuses when upstream has moved on.
        #[arg(long, value_name = "SHA", num_args = 0..=1, default_missing_value = crate::datasets::RECORDED)]
        revision: Option<String>,
    },
    /// What can be pulled and what is already in data/.
    List,
}

#[derive(Subcommand)]
pub(super) enum PipelineCmd {
    /// Run a pipeline over its problem set; every model call goes through the cache.
    Run(RunArgs),
    /// Check a pipeline (and its prompts and problem set) without running anything.
    Validate(LoadArgs),
    /// Print the expanded graph that runs for each problem.
    Graph {
        #[command(flatten)]
        load: LoadArgs,
        /// `text` (indented tree) or `dot` (Graphviz).
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// Dry run: nodes and calls per problem, calls already cached, calls to make, tokens.
    Plan(PlanArgs),
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
pub(super) enum GraphFormat {
    Text,
    Dot,
}

#[derive(Args, Clone)]
pub(super) struct LoadArgs {
    /// The pipeline YAML file (`run --resume` takes none).
    pub file: Option<PathBuf>,
    /// Override any pipeline field, e.g. --set models.reasoner.params.temperature=0.8 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub sets: Vec<String>,
    /// Only these problem ids (comma-separated).
    #[arg(long = "question-ids", alias = "question_ids", value_delimiter = ',')]
    pub question_ids: Option<Vec<String>>,
    /// Leave out these problem ids (comma-separated; applied last).
    #[arg(
        long = "exclude-question-ids",
        alias = "exclude_question_ids",
        value_delimiter = ','
    )]
    pub exclude_question_ids: Option<Vec<String>>,
    /// Only rows a..b of the CSV (0-based, inclusive), e.g. 0-4.
    #[arg(long = "index-range", alias = "index_range", value_name = "A-B")]
    pub index_range: Option<String>,
    /// Print every repeated warning (e.g. each group of problems with the same question)
    /// instead of one summary line; for run and plan also each call's parameters and prompt.
    #[arg(long)]
    pub verbose: bool,
}

/// `--results-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ResultsFormat {
    Distill,
    Original,
}

#[derive(Args, Clone)]
pub(super) struct RunArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Model calls in flight across the whole run, 1 to 4096 (a model's max_in_flight may be lower).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_CONCURRENCY))]
    pub concurrency: usize,
    /// Never call a model: a cache miss fails that node (also ENABLE_API_CALLS=0).
    #[arg(long)]
    pub offline: bool,
    /// Cache directory.
    #[arg(long, env = "DISTILL_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Root of run directories (results/<pipeline>/<run-id>/).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Accepted for compatibility with the original tool: distill always runs problems concurrently.
    #[arg(long)]
    pub parallel: bool,
    /// No progress bar.
    #[arg(long = "no-progress", alias = "no_progress")]
    pub no_progress: bool,
    /// Serve a live dashboard of the run (127.0.0.1; stays up after the run until Ctrl-C).
    #[arg(long)]
    pub dashboard: bool,
    /// Dashboard port (default: the pipeline's `dashboard_port:`, else 8080).
    #[arg(long = "dashboard-port", alias = "dashboard_port")]
    pub dashboard_port: Option<u16>,
    /// Dashboard address; anything but loopback exposes the run to the network (a warning is printed).
    #[arg(
        long = "dashboard-host",
        alias = "dashboard_host",
        default_value = "127.0.0.1"
    )]
    pub dashboard_host: String,
    /// Import round-0 outputs from an earlier run (distill's or the original tool's) into the cache.
    #[arg(
        long = "load-initial-reasoning",
        alias = "load_initial_reasoning",
        value_name = "RESULTS.json"
    )]
    pub load_initial_reasoning: Option<PathBuf>,
    /// Import every round (reasoning, summaries) of an earlier run (distill's or the original
    /// tool's) into the cache under this pipeline's keys; with --offline, reproduce its table.
    #[arg(long = "load-run", alias = "load_run", value_name = "RESULTS.json")]
    pub load_run: Option<PathBuf>,
    /// `original` also writes results.original.json in the original tool's schema (for its
    /// analysis scripts); distill's own files are always written.
    #[arg(
        long = "results-format",
        alias = "results_format",
        value_enum,
        default_value = "distill"
    )]
    pub results_format: ResultsFormat,
    /// Stop sending new calls once this run's spend reaches USD (calls in flight finish; all is saved).
    #[arg(long = "max-cost", alias = "max_cost", value_name = "USD", value_parser = parse_max_cost)]
    pub max_cost: Option<f64>,
    /// Finish a stopped run in place (same id and directory), sending only what is not
    /// finished; takes no pipeline file, --set or filters: the run's own config is used.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Run only shard I of N (I 0-based: 0 to N-1, N up to 10000) of the selected problems,
    /// split by a hash of the question text (after the filters); `distill report` over the
    /// N run directories merges them into one column.
    #[arg(long, value_name = "I/N", value_parser = crate::data::Shard::parse)]
    pub shard: Option<crate::data::Shard>,
    /// Send the cache misses of every OpenAI-compatible model (unless it says `batch: false`)
    /// through its provider's batch API: about half price, answers within 24 h.
    #[arg(long)]
    pub batch: bool,
    /// On Ctrl-C, cancel submitted batches (default: leave them running for a rerun or --resume).
    #[arg(long = "cancel-batches", alias = "cancel_batches")]
    pub cancel_batches: bool,
}

#[derive(Args, Clone)]
pub(super) struct PlanArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// For each call to make, the nearest earlier record of the same node under --results
    /// and what differs (prompt, parameters, model, sample, cache format).
    #[arg(long)]
    pub explain: bool,
}

#[derive(Subcommand)]
pub(super) enum CacheCmd {
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
    /// Upload the cache entries some runs used (their cache_keys.txt) to the remote cache.
    Push {
        #[command(flatten)]
        c: CacheArgs,
        #[command(flatten)]
        r: RemoteArgs,
        /// Run directories whose entries are uploaded.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
    },
    /// Fetch the cache entries some runs used from the remote cache into the cache
    /// directory, each checked (checksum, key) first.
    Pull {
        #[command(flatten)]
        c: CacheArgs,
        #[command(flatten)]
        r: RemoteArgs,
        /// Run directories (their config.json and cache_keys.txt) whose entries are fetched.
        #[arg(required = true, value_name = "RUN_DIR")]
        runs: Vec<PathBuf>,
    },
    /// Remove entries no run under the results directory refers to (shows them unless --yes).
    Gc {
        #[command(flatten)]
        c: CacheArgs,
        /// Root of the run directories whose entries are kept.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Delete them (without it, only list what would go).
        #[arg(long)]
        yes: bool,
    },
}

/// `--cache-remote`.
#[derive(Args, Clone)]
pub(super) struct RemoteArgs {
    /// Remote cache shared by many machines, s3://bucket/prefix (credentials and endpoint
    /// from the AWS_* variables): read after a local miss, written behind (default: the
    /// pipeline's `cache_remote:`).
    #[arg(
        long = "cache-remote",
        alias = "cache_remote",
        env = "DISTILL_CACHE_REMOTE",
        value_name = "URL",
        value_parser = parse_remote
    )]
    pub cache_remote: Option<String>,
}

impl RemoteArgs {
    /// The URL given, if any (an empty `DISTILL_CACHE_REMOTE=` names none).
    pub fn url(&self) -> Option<&str> {
        self.cache_remote.as_deref().filter(|u| !u.is_empty())
    }
}

/// `--cache-remote`: an `s3://bucket/prefix` URL (empty: none).
fn parse_remote(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    crate::remote::RemoteUrl::parse(s)
        .map(|u| u.to_string())
        .map_err(|e| e.to_string())
}

#[derive(Args)]
pub(super) struct CacheArgs {
    /// Cache directory.
    #[arg(long, env = "DISTILL_CACHE", default_value = "cache")]
    pub cache: PathBuf,
}

/// Most calls in flight (`--concurrency`).
const MAX_CONCURRENCY: u64 = 4096;
/// Most bootstrap resamples (`report --bootstrap`).
const MAX_BOOTSTRAP: u64 = 100_000;

/// `--max-cost`: dollars, a finite number of at least 0.
fn parse_max_cost(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of dollars (e.g. --max-cost 5)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "`{s}` is not a budget: give a number of dollars of at least 0 (e.g. --max-cost 5)"
        ));
    }
    Ok(v)
}

/// The command line, its help texts of named choices made from their tables.
pub(super) fn command() -> clap::Command {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every option and positional of every command says what it is for, and every long
    /// flag is kebab-case (underscore spellings are only aliases).
    #[test]
    fn every_option_has_help_and_is_kebab_case() {
        fn walk(c: &clap::Command, path: &str, bad: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() {
                    bad.push(format!("{path} {id}: no help"));
                }
                if let Some(l) = a.get_long()
                    && l.contains('_')
                {
                    bad.push(format!("{path} --{l}: not kebab-case"));
                }
            }
            for s in c.get_subcommands() {
                walk(s, &format!("{path} {}", s.get_name()), bad);
            }
        }
        let mut bad = Vec::new();
        walk(&command(), "distill", &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
    }

    /// The original tool's spellings still parse, to the same fields.
    #[test]
    fn underscore_spellings_are_aliases() {
        use clap::FromArgMatches;
        let m = command()
            .try_get_matches_from([
                "distill",
                "pipeline",
                "plan",
                "p.yaml",
                "--question_ids",
                "a,b",
                "--max_cost",
                "2",
                "--no_progress",
                "--cache_remote",
                "s3://lab-cache/team/",
            ])
            .expect("parses");
        let Cmd::Pipeline(PipelineCmd::Plan(PlanArgs { run: a, .. })) =
            Cli::from_arg_matches(&m).unwrap().cmd
        else {
            panic!("not plan");
        };
        assert_eq!(a.load.question_ids, Some(vec!["a".into(), "b".into()]));
        assert_eq!(a.max_cost, Some(2.0));
        assert!(a.no_progress);
        assert_eq!(
            a.remote.cache_remote.as_deref(),
            Some("s3://lab-cache/team")
        );
    }
}
