//! The live dashboard of a run and the viewer of a finished one (`distill view RUN_DIR`):
//! one embedded page (no external resources) served by axum, fed by the run's events, its
//! finished problems' records, the streamed text of running nodes and metrics snapshots,
//! and updated live through server-sent events. A page that (re)connects first gets the
//! current state, then the stream. The model is in `state`, the HTTP side in `server`,
//! reading a run directory in `load`.

mod load;
mod server;
mod state;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::serve::ListenerExt;
use serde_json::Value;

use server::Shared;
use state::State;

/// A running dashboard server; cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    shared: Arc<Shared>,
    url: String,
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Binds `host:port` and serves `shared` in a background task; returns the page's URL.
async fn serve(
    shared: Arc<Shared>,
    host: &str,
    port: u16,
) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    if !is_loopback(host) {
        eprintln!(
            "warning: the dashboard listens on {host}, reachable from other machines; it shows prompts, outputs and the run's config (no keys)"
        );
    }
    let listener = tokio::net::TcpListener::bind((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| format!("dashboard: cannot listen on {host}:{port}: {e}"))?;
    let addr: SocketAddr = listener
        .local_addr()
        .map_err(|e| format!("dashboard: {e}"))?;
    let url = match addr.ip() {
        IpAddr::V6(ip) => format!("http://[{ip}]:{}/", addr.port()),
        IpAddr::V4(ip) if ip.is_unspecified() => format!("http://127.0.0.1:{}/", addr.port()),
        IpAddr::V4(ip) => format!("http://{ip}:{}/", addr.port()),
    };
    server::spawn_flusher(&shared);
    let app = server::router(shared);
    // no Nagle delay: a response's head and body otherwise wait for the peer's delayed ACK
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("dashboard: server stopped: {e}");
        }
    });
    Ok((url, task))
}

impl Dashboard {
    /// Binds host:port (127.0.0.1 when empty; a warning on stderr when not loopback; port 0
    /// picks a free one) and serves in a background tokio task. `config` is the run's
    /// config.json value; `rounds` the grid's columns: (node id, round, kind).
    pub async fn start(
        host: &str,
        port: u16,
        config: Value,
        problems: Vec<(String, String)>,
        rounds: Vec<(String, u32, String)>,
    ) -> Result<Self, String> {
        let shared = Shared::new(State::new("live", config, problems, rounds), None);
        let (url, _task) = serve(shared.clone(), host, port).await?;
        Ok(Dashboard { shared, url })
    }

    /// The page's address, e.g. `http://127.0.0.1:8080/`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every run event (an events.jsonl line).
    pub fn event(&self, e: &Value) {
        self.shared.update(|s| s.event(e));
    }

    /// A finished problem's full record (a results.json entry).
    pub fn problem(&self, record: &Value) {
        self.shared.update(|s| s.record(record));
    }

    /// A streamed text piece of a running node (sent to the pages in batches).
    pub fn delta(&self, problem: &str, sample: u32, node: &str, text: &str) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.delta(problem, sample, node, text);
        }
    }

    /// A metrics snapshot (metrics.json's shape).
    pub fn metrics(&self, m: &Value) {
        self.shared.update(|s| Some(s.set_metrics(m)));
    }

    /// The run ended; the server keeps serving (until the process ends; the caller says so).
    pub fn finished(&self, summary: &Value) {
        self.shared.update(|s| {
            let flushed = s.take_pending();
            let end = s.finish(summary);
            Some(match flushed {
                Some(d) => serde_json::json!({"t": "batch", "m": [d, end]}),
                None => end,
            })
        });
    }

    /// Bytes of streamed text the server holds (bounded; freed when problems finish).
    pub fn streamed_bytes(&self) -> usize {
        self.shared
            .state
            .lock()
            .map(|s| s.stream_bytes())
            .unwrap_or(0)
    }
}

/// `distill view RUN_DIR…`: serves the same page over finished runs (distill's or the
/// original tool's results.json), read-only, until Ctrl-C; several runs side by side, with
/// the report's figures over them. `/run/<file>` serves files of a single run's directory.
pub async fn view(run_dirs: &[PathBuf], host: &str, port: u16) -> Result<(), String> {
    let (url, task) = view_runs_start(run_dirs, host, port).await?;
    match run_dirs {
        [one] => println!("viewing {} at {url} (Ctrl-C to stop)", one.display()),
        _ => println!(
            "viewing {} runs side by side at {url} (Ctrl-C to stop)",
            run_dirs.len()
        ),
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = task => {}
    }
    Ok(())
}

/// Starts serving a finished run and returns its URL (what `view` does before waiting).
pub async fn view_start(
    run_dir: &Path,
    host: &str,
    port: u16,
) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    view_runs_start(&[run_dir.to_path_buf()], host, port).await
}

/// Starts serving finished runs side by side and returns the URL.
pub async fn view_runs_start(
    run_dirs: &[PathBuf],
    host: &str,
    port: u16,
) -> Result<(String, tokio::task::JoinHandle<()>), String> {
    if run_dirs.is_empty() {
        return Err("view: no run directory given".into());
    }
    let roots = run_dirs
        .iter()
        .map(|d| {
            d.canonicalize()
                .map_err(|e| format!("{}: {e}", d.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (labels, plots) = figures(&roots);
    let state = load::load_runs(&roots, &labels)?;
    let run_dir = (roots.len() == 1).then(|| roots[0].clone());
    serve(Shared::with_plots(state, run_dir, plots), host, port).await
}

/// The report's run labels and figures (SVG) over these runs; none, with a note on stderr,
/// when the report cannot be built (e.g. a run with only events).
fn figures(dirs: &[PathBuf]) -> (Vec<String>, Vec<(String, String)>) {
    let opts = crate::report::ReportOptions {
        runs: dirs.to_vec(),
        bootstrap: 1,
        ..Default::default()
    };
    let rep = match crate::report::build(&opts) {
        Ok(rep) => rep,
        Err(e) => {
            eprintln!("note: the view shows no figures: {e}");
            return (Vec::new(), Vec::new());
        }
    };
    let labels = rep.runs.iter().map(|r| r.label.clone()).collect();
    if rep.runs.iter().all(|r| r.rounds.is_empty()) {
        return (labels, Vec::new());
    }
    let plots = crate::report::plot::FIGURES
        .iter()
        .filter_map(|f| match crate::report::plot::svg(&rep, f.name) {
            Ok(svg) => Some((f.name.to_string(), svg)),
            Err(e) => {
                eprintln!("note: {e}");
                None
            }
        })
        .collect();
    (labels, plots)
}
