//! The command line (clap): `pipeline run|validate|graph|plan` and `cache stats|verify|gc`,
//! the original tool's run options, and the exit codes of DESIGN.md (0 done, 1 some problems
//! failed, 2 invalid input, 130 interrupted).

use std::path::{Path, PathBuf};

use clap::FromArgMatches;

mod args;
mod cache;
mod convert;
mod explain;
pub mod plan;
mod runs;

use crate::data::Filters;
use crate::exec::{self, RunOptions};
use crate::spec::{self, LoadOptions, Pipeline};
use args::CacheCmd;
use args::{
    Cli, Cmd, DataCmd, GraphFormat, LoadArgs, PipelineCmd, ResultsFormat, RunArgs, command,
};

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
                png: true,
            };
            match crate::report::report(&opts) {
                Ok(md) => {
                    use std::io::Write as _;
                    // `distill report … | head`: the reader had enough (the files are written)
                    let _ = writeln!(std::io::stdout(), "{md}");
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
        Cmd::Data(DataCmd::Pull {
            name,
            out,
            seed,
            force,
            revision,
        }) => {
            let mut opts = crate::datasets::PullOptions::new(&name);
            opts.out = out;
            opts.seed = seed;
            opts.force = force;
            opts.revision = revision;
            match runtime().block_on(crate::datasets::pull(&opts)) {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    2
                }
            }
        }
        Cmd::View {
            run_dirs,
            port,
            host,
        } => match runtime().block_on(crate::dashboard::view(&run_dirs, &host, port)) {
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
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "distill", &mut std::io::stdout());
            0
        }
        Cmd::Man => match clap_mangen::Man::new(command()).render(&mut std::io::stdout()) {
            Ok(()) => 0,
            // `distill man | head`: the reader had enough
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
            Err(e) => {
                eprintln!("error: writing the man page: {e}");
                1
            }
        },
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
        eprintln!("error: --rel-tol: {e}");
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

/// The log filter: `DISTILL_LOG`, else `RUST_LOG` (tracing's env-filter syntax, e.g.
/// `distill=debug`: run phases, scheduling, cache misses with their reason, retries), else
/// warnings only. What goes on the wire (each request's parameters and prompt) is
/// `--verbose`'s: a filter that does not name `distill::wire` leaves it out without it.
fn log_filter(verbose: bool, env: Option<(&str, String)>) -> (String, Option<String>) {
    let wire = if verbose { "info" } else { "warn" };
    let Some((var, given)) = env else {
        let base = if verbose {
            "distill=info"
        } else {
            "distill=warn"
        };
        return (base.to_string(), None);
    };
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&given) {
        let note = format!("{var}=`{given}` is not a log filter ({e}); e.g. {var}=distill=debug");
        return (format!("distill=warn,distill::wire={wire}"), Some(note));
    }
    if given.contains("distill::wire") {
        (given, None)
    } else {
        (format!("{given},distill::wire={wire}"), None)
    }
}

fn init_tracing(verbose: bool) {
    let var = |k: &'static str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (k, v))
    };
    let env = var("DISTILL_LOG").or_else(|| var("RUST_LOG"));
    let (filter, note) = log_filter(verbose, env);
    if let Some(n) = note {
        eprintln!("warning: {n}");
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
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

/// Loads the pipeline file of `args`; `shard`: `--shard I/N` of run and plan.
fn load(args: &LoadArgs, shard: Option<crate::data::Shard>) -> Result<Pipeline, i32> {
    let opts = LoadOptions {
        sets: args.sets.clone(),
        filters: filters_of(args),
        shard,
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
            for g in &p.warning_groups {
                for w in g.printed(args.verbose) {
                    eprintln!("warning: {w}");
                }
            }
            if let Some(s) = &p.shard {
                eprintln!(
                    "shard {}: {} of the {} selected problem(s)",
                    s.shard,
                    p.problems.len(),
                    s.whole.len()
                );
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
        verbose: a.load.verbose,
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
            crate::runfile::config::LoadRecord::new(f, &a.load.sets, &filters_of(&a.load), a.shard)
        }),
        resume: a.resume.clone(),
        cache_remote: a.remote.url().map(str::to_string),
        batch: a.batch,
        cancel_batches: a.cancel_batches,
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
            match load(&a, None) {
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
            match load(&a, None) {
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
            init_tracing(a.load.verbose);
            runs::resume(&a)
        }
        PipelineCmd::Run(a) => {
            init_tracing(a.load.verbose);
            let p = match load(&a.load, a.shard) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let mut opts = run_options(&a);
            // the port: --dashboard-port, else the pipeline's `dashboard_port:`, else 8080
            if let (Some(d), None, Some(port)) =
                (&mut opts.dashboard, a.dashboard_port, p.spec.dashboard_port)
            {
                d.1 = port;
            }
            let rt = runtime();
            // the scheduler runs on a worker like its nodes, not on this thread: a node that
            // ends then wakes it where it ran (no hand-over to a parked thread per node)
            let run = rt.spawn(async move { exec::run(p, &opts).await });
            match rt
                .block_on(run)
                .unwrap_or_else(|e| Err(anyhow::anyhow!("the run stopped: {e}")))
            {
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
        PipelineCmd::Plan(args::PlanArgs { run: a, explain }) => {
            init_tracing(a.load.verbose);
            let p = match load(&a.load, a.shard) {
                Ok(p) => p,
                Err(c) => return c,
            };
            let opts = run_options(&a);
            let rt = runtime();
            match rt.block_on(plan::run_with(p, &opts, explain)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    2
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn the_log_filter_keeps_the_wire_for_verbose() {
        assert_eq!(log_filter(false, None).0, "distill=warn");
        assert_eq!(log_filter(true, None).0, "distill=info");
        let env = |s: &str| Some(("DISTILL_LOG", s.to_string()));
        assert_eq!(
            log_filter(false, env("distill=debug")).0,
            "distill=debug,distill::wire=warn"
        );
        assert_eq!(
            log_filter(true, env("distill=debug")).0,
            "distill=debug,distill::wire=info"
        );
        assert_eq!(
            log_filter(false, env("distill::wire=info")).0,
            "distill::wire=info"
        );
        let (f, note) = log_filter(false, env("distill=loud"));
        assert_eq!(f, "distill=warn,distill::wire=warn");
        assert!(note.unwrap().contains("DISTILL_LOG"));
    }
}
