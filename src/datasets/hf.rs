//! The HTTP side of `distill data pull`: the Hugging Face datasets-server `/rows` endpoint,
//! paged by `offset`/`length` until `num_rows_total`, and the Hub's dataset info for the
//! revision (commit sha). Retries transient failures a few times; every error is a message
//! that says what failed and what to do.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::registry::Source;

/// The public datasets-server.
pub const DEFAULT_ENDPOINT: &str = "https://datasets-server.huggingface.co";
/// The public Hub (for the revision).
pub const DEFAULT_HUB: &str = "https://huggingface.co";
/// The datasets-server's largest page.
pub const PAGE: usize = 100;
const ATTEMPTS: u32 = 3;
const BACKOFF_MS: u64 = 150;

/// All rows of one split, in order, with the feature (column) names.
#[derive(Debug, Clone)]
pub struct Split {
    pub features: Vec<String>,
    /// `(row_idx, row)`.
    pub rows: Vec<(usize, serde_json::Map<String, Value>)>,
}

#[derive(Deserialize)]
struct RowsPage {
    features: Vec<Feature>,
    rows: Vec<RowEntry>,
    num_rows_total: usize,
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct Feature {
    name: String,
}

#[derive(Deserialize)]
struct RowEntry {
    row_idx: usize,
    row: serde_json::Map<String, Value>,
    #[serde(default)]
    truncated_cells: Vec<String>,
}

/// A client for one pull.
pub struct Client {
    http: reqwest::Client,
    endpoint: String,
    hub: String,
    token: Option<String>,
}

/// Why a request failed, before it is phrased for the user.
enum Failure {
    /// No connection (refused, DNS, TLS, timeout) — after retries.
    Transport(String),
    /// An HTTP error status with the server's `error` text, if any.
    Status(StatusCode, String),
    /// A 200 whose body is not the expected JSON.
    Shape(String),
}

impl Client {
    /// `endpoint`: the datasets-server base URL. The Hub (for the revision) is
    /// `DISTILL_HF_HUB_ENDPOINT` if set, else huggingface.co for the public datasets-server,
    /// else the same base URL (a mirror or a test fake serving both).
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Self, String> {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!(
                "datasets-server endpoint `{endpoint}` is not an http(s) URL (DISTILL_HF_ENDPOINT)"
            ));
        }
        let hub = match std::env::var("DISTILL_HF_HUB_ENDPOINT") {
            Ok(h) if !h.trim().is_empty() => h.trim().trim_end_matches('/').to_string(),
            _ if endpoint == DEFAULT_ENDPOINT => DEFAULT_HUB.to_string(),
            _ => endpoint.clone(),
        };
        let http = crate::tls::client_builder()
            .user_agent(concat!("distill/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Client {
            http,
            endpoint,
            hub,
            token,
        })
    }

    /// GET with retries on transport errors, 429 and 5xx; returns the JSON body.
    async fn get_json(&self, url: &str, query: &[(&str, String)]) -> Result<Value, Failure> {
        let mut last = Failure::Transport("no attempt".into());
        let mut asked: Option<Duration> = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // exponential backoff, and never less than a rate limit's Retry-After
                let backoff = Duration::from_millis(BACKOFF_MS << (attempt - 1));
                tokio::time::sleep(backoff.max(asked.take().unwrap_or_default())).await;
            }
            let mut req = self.http.get(with_query(url, query)?);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = Failure::Transport(crate::llm::openai::retry::full_error(&e));
                    continue;
                }
            };
            let status = resp.status();
            asked = crate::llm::openai::retry::server_delay(
                resp.headers(),
                std::time::SystemTime::now(),
            );
            let body = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    last = Failure::Transport(crate::llm::openai::retry::full_error(&e));
                    continue;
                }
            };
            if !status.is_success() {
                let msg = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(300).collect());
                last = Failure::Status(status, msg);
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    continue;
                }
                return Err(last);
            }
            return serde_json::from_slice(&body).map_err(|e| Failure::Shape(e.to_string()));
        }
        Err(last)
    }

    /// Every row of the entry's split, page by page. `check` sees the features of the first
    /// page before any row is kept (the column check).
    pub async fn fetch_rows(
        &self,
        src: &Source,
        check: impl Fn(&[String]) -> Result<(), String>,
    ) -> Result<Split, String> {
        let url = format!("{}/rows", self.endpoint);
        let mut rows: Vec<(usize, serde_json::Map<String, Value>)> = Vec::new();
        let mut features: Vec<String> = Vec::new();
        let mut total: Option<usize> = None;
        loop {
            let offset = rows.len();
            if total.is_some_and(|t| offset >= t) {
                break;
            }
            let query = [
                ("dataset", src.dataset.to_string()),
                ("config", src.config.to_string()),
                ("split", src.split.to_string()),
                ("offset", offset.to_string()),
                ("length", PAGE.to_string()),
            ];
            let page = match self.get_json(&url, &query).await {
                Ok(v) => serde_json::from_value::<RowsPage>(v).map_err(|e| {
                    format!(
                        "{}: the datasets-server's /rows answer for {} has an unexpected shape \
                         ({e}); the API may have changed",
                        src.name, src.dataset
                    )
                })?,
                Err(f) => return Err(self.describe(src, f, offset, total)),
            };
            if page.partial {
                return Err(format!(
                    "{}: the datasets-server only has a partial copy of {} ({}/{}); refusing \
                     to write an incomplete problem set",
                    src.name, src.dataset, src.config, src.split
                ));
            }
            match total {
                None => {
                    features = page.features.into_iter().map(|f| f.name).collect();
                    check(&features)?;
                    if page.num_rows_total == 0 {
                        return Err(format!(
                            "{}: {} ({}/{}) has no rows",
                            src.name, src.dataset, src.config, src.split
                        ));
                    }
                    total = Some(page.num_rows_total);
                }
                Some(t) if t != page.num_rows_total => {
                    return Err(partial(
                        src,
                        offset,
                        t,
                        &format!(
                            "the split changed size during the download ({t} → {} rows)",
                            page.num_rows_total
                        ),
                    ));
                }
                Some(_) => {}
            }
            let t = total.unwrap_or(0);
            if page.rows.is_empty() {
                return Err(partial(src, offset, t, "the server sent an empty page"));
            }
            for (k, r) in page.rows.into_iter().enumerate() {
                if r.row_idx != offset + k {
                    return Err(partial(
                        src,
                        offset + k,
                        t,
                        &format!("expected row {} but got row {}", offset + k, r.row_idx),
                    ));
                }
                if !r.truncated_cells.is_empty() {
                    return Err(partial(
                        src,
                        offset + k,
                        t,
                        &format!("the server truncated cells {:?}", r.truncated_cells),
                    ));
                }
                rows.push((r.row_idx, r.row));
            }
            if rows.len() > t {
                return Err(partial(
                    src,
                    rows.len(),
                    t,
                    "the server sent more rows than it announced",
                ));
            }
        }
        Ok(Split { features, rows })
    }

    /// The dataset's current commit on the Hub (`sha` of `/api/datasets/ID`), or `None`
    /// when the Hub does not say (the pull still succeeds and records `unknown`).
    pub async fn revision(&self, src: &Source) -> Option<String> {
        let url = format!("{}/api/datasets/{}", self.hub, src.dataset);
        let v = self.get_json(&url, &[]).await.ok()?;
        v.get("sha")
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(String::from)
    }

    /// Phrases a failed `/rows` request.
    fn describe(&self, src: &Source, f: Failure, offset: usize, total: Option<usize>) -> String {
        match (f, total) {
            (Failure::Transport(e), None) => format!(
                "cannot reach the Hugging Face datasets-server at {} ({e}); check the network \
                 connection (or DISTILL_HF_ENDPOINT)",
                self.endpoint
            ),
            (Failure::Transport(e), Some(t)) => partial(src, offset, t, &e),
            (Failure::Shape(e), _) => format!(
                "{}: the datasets-server's /rows answer for {} is not JSON ({e})",
                src.name, src.dataset
            ),
            (Failure::Status(s, msg), None)
                if matches!(s.as_u16(), 401 | 403 | 404) && (src.gated || s.as_u16() != 404) =>
            {
                let why = if self.token.is_some() {
                    "HF_TOKEN was sent but access was refused: check that the token is valid \
                     and that its account accepted the dataset's terms"
                } else {
                    "the dataset needs a Hugging Face token: set HF_TOKEN in the environment \
                     or in .env"
                };
                format!(
                    "{}: {} refused access (HTTP {s}: {msg}); {why} at {}",
                    src.name,
                    src.dataset,
                    src.hub_url()
                )
            }
            (Failure::Status(s, msg), None) if s.as_u16() == 404 => format!(
                "{}: the datasets-server does not have {} config `{}` split `{}` (HTTP 404: \
                 {msg}); the dataset may have moved: update src/datasets/registry.rs",
                src.name, src.dataset, src.config, src.split
            ),
            (Failure::Status(s, msg), None) => format!(
                "{}: the datasets-server failed for {} (HTTP {s}: {msg})",
                src.name, src.dataset
            ),
            (Failure::Status(s, msg), Some(t)) => {
                partial(src, offset, t, &format!("HTTP {s}: {msg}"))
            }
        }
    }
}

fn partial(src: &Source, offset: usize, total: usize, why: &str) -> String {
    format!(
        "{}: partial download of {}: stopped at row {offset} of {total} ({why}); nothing was \
         written, run the pull again",
        src.name, src.dataset
    )
}

/// `url?k=v&…`, percent-encoded.
fn with_query(url: &str, query: &[(&str, String)]) -> Result<reqwest::Url, Failure> {
    let mut u =
        reqwest::Url::parse(url).map_err(|e| Failure::Transport(format!("bad URL {url}: {e}")))?;
    if !query.is_empty() {
        u.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    Ok(u)
}
