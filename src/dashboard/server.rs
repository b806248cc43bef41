//! The HTTP side: the page (embedded), `/api/snapshot`, `/api/events` (server-sent events:
//! first the current state, then every change), `/api/attempt` (one attempt's full text, on
//! demand), `/api/config`, `/api/plot/<name>` (the report's figures over the viewed runs), and in `view` mode `/run/<file>` (files of that run directory
//! only: anything that is not a plain relative path inside it is a 404).

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State as Ext};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::state::State;

/// Messages kept for slow pages; one that falls further behind reconnects.
const CHANNEL: usize = 4096;
/// How often streamed pieces are sent to the pages (batched).
pub const FLUSH: Duration = Duration::from_millis(100);

/// The page, with its script and style inlined.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("assets/index.html")
        .replace("/*STYLE*/", include_str!("assets/style.css"))
        .replace("/*SCRIPT*/", include_str!("assets/app.js"))
});

pub struct Shared {
    pub state: Mutex<State>,
    pub tx: broadcast::Sender<Arc<str>>,
    /// The run directory whose files `/run/…` serves (`view` of one run), canonical.
    pub run_dir: Option<PathBuf>,
    /// The report's figures over the viewed runs: (file name, SVG), served at `/api/plot/…`.
    pub plots: Vec<(String, String)>,
}

impl Shared {
    pub fn new(state: State, run_dir: Option<PathBuf>) -> Arc<Self> {
        Self::with_plots(state, run_dir, Vec::new())
    }

    pub fn with_plots(
        state: State,
        run_dir: Option<PathBuf>,
        plots: Vec<(String, String)>,
    ) -> Arc<Self> {
        let (tx, _) = broadcast::channel(CHANNEL);
        Arc::new(Shared {
            state: Mutex::new(state),
            tx,
            run_dir,
            plots,
        })
    }

    /// Runs `f` on the state and broadcasts the message it returns, under the same lock so
    /// a page that subscribes sees every change exactly once after its snapshot.
    pub fn update(&self, f: impl FnOnce(&mut State) -> Option<Value>) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if let Some(m) = f(&mut st) {
            let _ = self.tx.send(Arc::from(m.to_string()));
        }
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/snapshot", get(snapshot))
        .route("/api/events", get(events))
        .route("/api/attempt", get(attempt))
        .route("/api/config", get(config))
        .route("/api/plot/{name}", get(plot))
        .route("/run/{*path}", get(run_file))
        .fallback(|| async { not_found() })
        .with_state(shared)
}

/// Sends queued streamed pieces every `FLUSH` until the dashboard is gone.
pub fn spawn_flusher(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(FLUSH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(sh) = weak.upgrade() else { break };
            sh.update(State::take_pending);
        }
    });
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE.as_str())
}

async fn snapshot(Ext(sh): Ext<Arc<Shared>>) -> Response {
    let snap = sh.state.lock().map(|s| s.snapshot()).unwrap_or(Value::Null);
    Json(with_files(&sh, snap)).into_response()
}

/// A view's snapshot lists the run directory's files (links on the page) and its figures.
fn with_files(sh: &Shared, mut snap: Value) -> Value {
    if !sh.plots.is_empty() {
        let names: Vec<&str> = sh.plots.iter().map(|(n, _)| n.as_str()).collect();
        snap["plots"] = json!(names);
    }
    if let Some(dir) = &sh.run_dir {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        files.sort();
        snap["files"] = json!(files);
    }
    snap
}

async fn events(Ext(sh): Ext<Arc<Shared>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (snap, rx) = {
        let mut st = sh.state.lock().expect("dashboard state");
        // pieces queued before the snapshot go to the pages already there, not to this one
        if let Some(m) = st.take_pending() {
            let _ = sh.tx.send(Arc::from(m.to_string()));
        }
        (st.snapshot(), sh.tx.subscribe())
    };
    let snap = with_files(&sh, snap).to_string();
    let first = stream::once(async move { Ok(Event::default().data(snap)) });
    let rest = stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Ok(m) => Some((Ok(Event::default().data(&*m)), Some(rx))),
            // too far behind: tell the page to reconnect (it then gets a fresh snapshot)
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Some((Ok(Event::default().data(r#"{"t":"resync"}"#)), None))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(first.chain(rest)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Deserialize)]
struct AttemptQuery {
    p: String,
    #[serde(default)]
    s: u32,
    n: String,
    /// The run's index among the runs shown (0 for a single run).
    #[serde(default)]
    r: usize,
}

async fn attempt(Ext(sh): Ext<Arc<Shared>>, Query(q): Query<AttemptQuery>) -> Response {
    let found = sh
        .state
        .lock()
        .ok()
        .and_then(|st| st.attempt(&q.p, q.s, &q.n, q.r));
    match found {
        Some(v) => Json(v).into_response(),
        None => not_found(),
    }
}

async fn config(Ext(sh): Ext<Arc<Shared>>) -> Response {
    let c = sh
        .state
        .lock()
        .map(|s| s.config.clone())
        .unwrap_or_default();
    Json(c).into_response()
}

async fn plot(Ext(sh): Ext<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    match sh.plots.iter().find(|(n, _)| *n == name) {
        Some((_, svg)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            svg.clone(),
        )
            .into_response(),
        None => not_found(),
    }
}

/// The file `rel` of the run directory `root` (canonical), if it is one.
fn resolve_in(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains(['\\', '\0', ':']) {
        return None;
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = root.join(p).canonicalize().ok()?;
    (full.starts_with(root) && full.is_file()).then_some(full)
}

async fn run_file(Ext(sh): Ext<Arc<Shared>>, UrlPath(rel): UrlPath<String>) -> Response {
    let Some(path) = sh.run_dir.as_deref().and_then(|r| resolve_in(r, &rel)) else {
        return not_found();
    };
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return not_found();
    };
    let ty = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response()
}
