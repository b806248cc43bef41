//! The OpenAI Batch API as one OpenAI-compatible endpoint serves it (OpenAI, Together and
//! other compatible batch endpoints): the JSONL input lines, the file upload (`POST /files`,
//! purpose `batch`), `POST /batches`, its status, cancel, and the output and error files
//! read back into one result per `custom_id`. Each HTTP request is retried on transient
//! failures like a call. It knows nothing of cache keys, waves or the run: `calls::batch`
//! decides what goes into a batch and what its answers mean.

use std::time::Duration;

use backon::Retryable as _;
use serde_json::{Value, json};

use super::OpenAiProvider;
use super::retry::{AttemptError, RetryTiming, classify_status, classify_transport};
use super::sse;
use crate::llm::{CallError, CallRequest, CallResponse, NoObserver};
use crate::spec::model::Endpoint;

/// A batch's state as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInfo {
    pub id: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`,
    /// `cancelling`, `cancelled`.
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// The provider's reason for a failed batch.
    pub errors: Option<String>,
    pub input_file_id: Option<String>,
    /// The provider's `request_counts`, when it gives them.
    pub counts: Option<RequestCounts>,
}

/// A batch's `request_counts`: lines in all, answered and failed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

impl BatchInfo {
    /// True once the batch will not change any more (its files, if any, can be read).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
}

/// What one line of a batch brought back.
#[derive(Debug, Clone, PartialEq)]
pub enum LineResult {
    Answer(CallResponse),
    /// An error line, a non-200 response or a body that is not an answer.
    Error(String),
}

/// The Batch API of one OpenAI-compatible model endpoint.
#[derive(Clone)]
pub struct BatchApi {
    client: reqwest::Client,
    base_url: String,
    endpoint: Endpoint,
    timing: RetryTiming,
    max_retries: u32,
    response_cap: usize,
    provider: String,
}

impl OpenAiProvider {
    /// This endpoint's Batch API (same base URL and key as its calls).
    pub fn batch_api(&self) -> BatchApi {
        BatchApi {
            client: self.client.clone(),
            base_url: self.base_url.trim_end_matches('/').to_string(),
            endpoint: self.endpoint,
            timing: self.timing,
            max_retries: self.max_retries,
            response_cap: self.response_cap,
            provider: self.provider.clone(),
        }
    }

    /// The body of one batch line: the request a direct call would send, not streamed.
    pub fn batch_body(&self, req: &CallRequest) -> Result<Value, CallError> {
        let mut body = self.request_body(req)?;
        if let Some(m) = body.as_object_mut() {
            m.remove("stream");
            m.remove("stream_options");
        }
        Ok(body)
    }
}

impl BatchApi {
    /// The base URL batches are submitted to (recorded with every batch).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The `endpoint` of a batch and the `url` of its lines.
    pub fn endpoint_path(&self) -> &'static str {
        match self.endpoint {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }

    /// One JSONL line of an input file.
    pub fn line(&self, custom_id: &str, body: &Value) -> String {
        json!({"custom_id": custom_id, "method": "POST", "url": self.endpoint_path(), "body": body})
            .to_string()
    }

    /// One request with retries of transient failures; the body as text.
    async fn request(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<String> {
        let attempt = || async {
            let resp = make()
                .timeout(Duration::from_secs(600))
                .send()
                .await
                .map_err(|e| classify_transport(&e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let text = resp
                .text()
                .await
                .map_err(|e| AttemptError::retryable(format!("reading the body: {e}")))?;
            if !status.is_success() {
                return Err(classify_status(status, &headers, &text));
            }
            Ok(text)
        };
        attempt
            .retry(self.timing.builder(self.max_retries))
            .sleep(tokio::time::sleep)
            .when(|e: &AttemptError| e.retryable)
            .adjust(|e: &AttemptError, d: Option<Duration>| {
                d.map(|d| e.min_delay.map_or(d, |m| d.max(m)))
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{} batch API at {}: {what}: {}",
                    self.provider,
                    self.base_url,
                    e.message
                )
            })
    }

    async fn json(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let text = self.request(what, make).await?;
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} batch API at {}: {what}: not JSON ({e})",
                self.provider,
                self.base_url
            )
        })
    }

    /// Uploads a JSONL input file (multipart, purpose `batch`); its file id.
    pub async fn upload(&self, jsonl: &str) -> anyhow::Result<String> {
        let boundary = format!("distill-{}", blake3::hash(jsonl.as_bytes()).to_hex());
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(jsonl.as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let url = format!("{}/files", self.base_url);
        let v = self
            .json("uploading the input file", || {
                self.client
                    .post(&url)
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body.clone())
            })
            .await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("the file upload's answer has no `id`: {v}"))
    }

    /// Creates a batch over an uploaded input file (completion window 24 h).
    pub async fn create(&self, input_file_id: &str) -> anyhow::Result<BatchInfo> {
        let url = format!("{}/batches", self.base_url);
        let body = json!({"input_file_id": input_file_id, "endpoint": self.endpoint_path(),
            "completion_window": "24h"});
        let v = self
            .json("creating the batch", || self.client.post(&url).json(&body))
            .await?;
        info(&v)
    }

    /// The batch's current state.
    pub async fn get(&self, id: &str) -> anyhow::Result<BatchInfo> {
        let url = format!("{}/batches/{id}", self.base_url);
        let v = self
            .json("reading the batch's status", || self.client.get(&url))
            .await?;
        info(&v)
    }

    /// The provider's most recent batches (up to 100), newest first.
    pub async fn list(&self) -> anyhow::Result<Vec<BatchInfo>> {
        let url = format!("{}/batches?limit=100", self.base_url);
        let v = self
            .json("listing batches", || self.client.get(&url))
            .await?;
        v["data"]
            .as_array()
            .map(|a| a.iter().map(info).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Asks the provider to cancel the batch.
    pub async fn cancel(&self, id: &str) -> anyhow::Result<BatchInfo> {
        let url = format!("{}/batches/{id}/cancel", self.base_url);
        let v = self
            .json("cancelling the batch", || self.client.post(&url))
            .await?;
        info(&v)
    }

    /// Downloads an output or error file and reads it: one result per `custom_id`.
    pub async fn results(&self, file_id: &str) -> anyhow::Result<Vec<(String, LineResult)>> {
        let url = format!("{}/files/{file_id}/content", self.base_url);
        let text = self
            .request("downloading a result file", || self.client.get(&url))
            .await?;
        Ok(parse_results(&text, self.response_cap))
    }
}

fn info(v: &Value) -> anyhow::Result<BatchInfo> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let errors = v
        .pointer("/errors/data")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| e["message"].as_str().unwrap_or("?").to_string())
                .collect::<Vec<_>>()
                .join("; ")
        });
    Ok(BatchInfo {
        id: s("id").ok_or_else(|| anyhow::anyhow!("a batch without `id`: {v}"))?,
        status: s("status").unwrap_or_default(),
        output_file_id: s("output_file_id"),
        error_file_id: s("error_file_id"),
        errors,
        input_file_id: s("input_file_id"),
        counts: v.get("request_counts").and_then(|c| {
            let n = |k: &str| c.get(k).and_then(Value::as_u64);
            Some(RequestCounts {
                total: n("total")?,
                completed: n("completed").unwrap_or(0),
                failed: n("failed").unwrap_or(0),
            })
        }),
    })
}

/// Reads the lines of an output or error file. A line that is not JSON or has no
/// `custom_id` is skipped (it cannot be mapped back); its request is treated as not
/// answered.
pub fn parse_results(text: &str, cap: usize) -> Vec<(String, LineResult)> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            tracing::warn!("batch result line is not JSON: skipped");
            continue;
        };
        let Some(id) = v["custom_id"].as_str() else {
            continue;
        };
        out.push((id.to_string(), line_result(&v, cap)));
    }
    out
}

fn line_result(v: &Value, cap: usize) -> LineResult {
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        return LineResult::Error(format!(
            "{}: {}",
            e["code"].as_str().unwrap_or("error"),
            e["message"].as_str().unwrap_or("")
        ));
    }
    let status = v.pointer("/response/status_code").and_then(Value::as_u64);
    let body = v.pointer("/response/body").cloned().unwrap_or(Value::Null);
    if status != Some(200) {
        return LineResult::Error(format!(
            "HTTP {}: {}",
            status.map_or("?".into(), |s| s.to_string()),
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
        ));
    }
    // a whole body without a finish_reason is not an answer here (DESIGN.md: complete
    // answers); a direct call's parser would record it as `unreported`
    let finish = body
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    if finish.is_empty() && body.get("error").is_none_or(Value::is_null) {
        return LineResult::Error("an answer without a finish_reason (or without choices)".into());
    }
    match sse::parse_body(&body.to_string(), &NoObserver, cap) {
        Ok(a) => LineResult::Answer(CallResponse {
            text: a.text,
            reasoning: a.reasoning,
            finish_reason: a.finish_reason.unwrap_or_default(),
            usage: a.usage,
            latency_ms: 0,
            model_id: a.model,
            batch: None,
        }),
        Err(e) => LineResult::Error(e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_map_by_custom_id_and_errors_are_not_answers() {
        let text = concat!(
            r#"{"custom_id":"b","response":{"status_code":200,"body":{"model":"m","choices":[{"index":0,"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}},"error":null}"#,
            "\n",
            r#"{"custom_id":"a","response":null,"error":{"code":"batch_expired","message":"not run"}}"#,
            "\n",
            r#"{"custom_id":"c","response":{"status_code":200,"body":{"choices":[]}},"error":null}"#,
            "\nnot json\n"
        );
        let r = parse_results(text, 1 << 20);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].0, "b");
        let LineResult::Answer(a) = &r[0].1 else {
            panic!("{r:?}")
        };
        assert_eq!((a.text.as_str(), a.finish_reason.as_str()), ("hi", "stop"));
        assert_eq!(a.usage.unwrap().prompt_tokens, 3);
        assert!(matches!(&r[1].1, LineResult::Error(m) if m.starts_with("batch_expired")));
        assert!(matches!(&r[2].1, LineResult::Error(_)));
    }
}
