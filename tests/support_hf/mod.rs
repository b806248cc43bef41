//! A loopback fake of the Hugging Face datasets-server (`GET /rows`) and of the Hub's
//! dataset info (`GET /api/datasets/OWNER/NAME`, for the revision sha), in the shapes the
//! real APIs document: `{features: [{feature_idx, name, type}], rows: [{row_idx, row,
//! truncated_cells}], num_rows_total, num_rows_per_page, partial}` and `{"error": …}` with
//! 401/404/422/500. Serves registered splits, checks a bearer token for gated datasets, caps
//! the page size, injects faults and logs every request. Runs on 127.0.0.1, random port.
#![allow(dead_code)]

pub mod fixtures;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// One split: its columns (name, dtype) and rows (JSON objects).
#[derive(Debug, Clone)]
pub struct FakeSplit {
    pub features: Vec<(String, String)>,
    pub rows: Vec<Value>,
}

impl FakeSplit {
    /// Renames a column in the features and every row (a dataset whose columns changed).
    pub fn rename_column(mut self, from: &str, to: &str) -> Self {
        for f in &mut self.features {
            if f.0 == from {
                f.0 = to.to_string();
            }
        }
        for r in &mut self.rows {
            if let Some(o) = r.as_object_mut()
                && let Some(v) = o.remove(from)
            {
                o.insert(to.to_string(), v);
            }
        }
        self
    }
}

/// An injected fault, applied to `/rows` requests at a given offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 500 `{"error": "Unexpected error."}` every time this offset is asked for.
    ServerErrorAt(usize),
    /// A 200 page with no rows at this offset.
    EmptyPageAt(usize),
    /// `partial: true` on every page (a split the server only partly converted).
    PartialSplit,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Logged {
    pub path: String,
    pub query: HashMap<String, String>,
    pub auth: Option<String>,
}

#[derive(Default)]
struct Inner {
    splits: HashMap<(String, String, String), FakeSplit>,
    /// dataset → (gated, sha).
    datasets: HashMap<String, (bool, Option<String>)>,
    page_cap: usize,
    faults: Vec<Fault>,
    log: Vec<Logged>,
}

/// The running fake.
pub struct FakeHf {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

/// The token the fake accepts for gated datasets.
pub const TOKEN: &str = "hf_fake_test_token";

impl FakeHf {
    /// Starts an empty fake (page cap 100, like the real server).
    pub async fn start() -> FakeHf {
        let inner = Arc::new(Mutex::new(Inner {
            page_cap: 100,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/rows", get(rows))
            .route("/api/datasets/{owner}/{name}", get(dataset_info))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeHf { url, inner, task }
    }

    /// Serves `split` as `dataset`/`config`/`split_name`; `sha` is the Hub revision
    /// (`None`: the Hub info endpoint answers 404).
    pub fn add(
        &self,
        dataset: &str,
        config: &str,
        split_name: &str,
        split: FakeSplit,
        gated: bool,
        sha: Option<&str>,
    ) {
        let mut g = self.inner.lock().unwrap();
        g.splits
            .insert((dataset.into(), config.into(), split_name.into()), split);
        g.datasets
            .insert(dataset.into(), (gated, sha.map(String::from)));
    }

    /// Upstream publishes a new revision of a served split: `edit` changes its rows (add,
    /// remove, edit) and the Hub then reports `sha`.
    pub fn publish(
        &self,
        dataset: &str,
        config: &str,
        split_name: &str,
        sha: &str,
        edit: impl FnOnce(&mut Vec<Value>),
    ) {
        let mut g = self.inner.lock().unwrap();
        let key = (
            dataset.to_string(),
            config.to_string(),
            split_name.to_string(),
        );
        edit(&mut g.splits.get_mut(&key).expect("a served split").rows);
        g.datasets.get_mut(dataset).expect("a served dataset").1 = Some(sha.to_string());
    }

    /// At most `n` rows per page (the client asks for 100).
    pub fn set_page_cap(&self, n: usize) {
        self.inner.lock().unwrap().page_cap = n;
    }

    pub fn add_fault(&self, f: Fault) {
        self.inner.lock().unwrap().faults.push(f);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.inner.lock().unwrap().log.clone()
    }

    /// The offsets of the `/rows` requests, in order.
    pub fn row_offsets(&self) -> Vec<usize> {
        self.log()
            .iter()
            .filter(|l| l.path == "/rows")
            .filter_map(|l| l.query.get("offset")?.parse().ok())
            .collect()
    }
}

impl Drop for FakeHf {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(json!({ "error": msg }))).into_response()
}

const NOT_ACCESSIBLE: &str = "The dataset does not exist, or is not accessible without \
authentication (private or gated). Please check the spelling of the dataset name or retry \
with authentication.";

fn authorized(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

async fn rows(
    State(inner): State<Arc<Mutex<Inner>>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let auth = authorized(&headers);
    let mut g = inner.lock().unwrap();
    g.log.push(Logged {
        path: "/rows".into(),
        query: q.clone(),
        auth: auth.clone(),
    });
    let (Some(dataset), Some(config), Some(split), Some(offset), Some(length)) = (
        q.get("dataset"),
        q.get("config"),
        q.get("split"),
        q.get("offset").and_then(|s| s.parse::<usize>().ok()),
        q.get("length").and_then(|s| s.parse::<usize>().ok()),
    ) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Parameters 'dataset', 'config', 'split', 'offset' and 'length' are required",
        );
    };
    if length > 100 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Parameter 'length' must not be greater than 100",
        );
    }
    let Some(&(gated, _)) = g.datasets.get(dataset.as_str()) else {
        return error(StatusCode::NOT_FOUND, NOT_ACCESSIBLE);
    };
    if gated {
        match auth.as_deref() {
            None => return error(StatusCode::UNAUTHORIZED, NOT_ACCESSIBLE),
            Some(a) if a != format!("Bearer {TOKEN}") => {
                return error(StatusCode::NOT_FOUND, NOT_ACCESSIBLE);
            }
            Some(_) => {}
        }
    }
    let key = (dataset.clone(), config.clone(), split.clone());
    let Some(s) = g.splits.get(&key) else {
        return error(StatusCode::NOT_FOUND, "Not found.");
    };
    let mut partial = false;
    let mut empty = false;
    for f in &g.faults {
        match *f {
            Fault::ServerErrorAt(o) if o == offset => {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "Unexpected error.");
            }
            Fault::EmptyPageAt(o) if o == offset => empty = true,
            Fault::PartialSplit => partial = true,
            _ => {}
        }
    }
    let n = length.min(g.page_cap);
    let end = (offset + n).min(s.rows.len());
    let page: Vec<Value> = if empty || offset >= end {
        Vec::new()
    } else {
        (offset..end)
            .map(|i| json!({"row_idx": i, "row": s.rows[i], "truncated_cells": []}))
            .collect()
    };
    let features: Vec<Value> = s
        .features
        .iter()
        .enumerate()
        .map(|(i, (name, dtype))| {
            json!({"feature_idx": i, "name": name, "type": {"dtype": dtype, "_type": "Value"}})
        })
        .collect();
    Json(json!({
        "features": features,
        "rows": page,
        "num_rows_total": s.rows.len(),
        "num_rows_per_page": 100,
        "partial": partial,
    }))
    .into_response()
}

async fn dataset_info(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{owner}/{name}");
    let mut g = inner.lock().unwrap();
    g.log.push(Logged {
        path: format!("/api/datasets/{id}"),
        query: HashMap::new(),
        auth: authorized(&headers),
    });
    match g.datasets.get(&id) {
        Some((gated, Some(sha))) => Json(json!({
            "_id": "65f0c0ffee0000000000beef",
            "id": id,
            "author": owner,
            "sha": sha,
            "lastModified": "2024-06-01T12:00:00.000Z",
            "private": false,
            "gated": if *gated { json!("manual") } else { json!(false) },
            "disabled": false,
            "downloads": 1234,
            "likes": 56,
            "tags": ["language:en"],
        }))
        .into_response(),
        _ => error(StatusCode::NOT_FOUND, "Repository not found"),
    }
}
