//! Replay of real reasoning traces by the fake OpenAI server: loads
//! `shared/traces/aime_2024_deepseek_r1_completions.csv`-style files and answers a prompt
//! that contains a trace's question with that trace's completion.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::{Reply, Responder, echo_reply, prompt_text};

/// One row of a real trace file.
#[derive(Debug, Clone)]
pub struct Trace {
    pub id: String,
    pub question: String,
    pub answer: String,
    pub completion: String,
}

/// The shared folder: `$DISTILL_SHARED`, else `CARGO_MANIFEST_DIR/../shared`, if it exists.
pub fn shared_dir() -> Option<PathBuf> {
    let p = std::env::var_os("DISTILL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    p.is_dir().then_some(p)
}

/// Loads `traces/aime_2024_deepseek_r1_completions.csv`-style files
/// (id,question,solution,answer,model_completion,extracted_answer).
pub fn load_traces(path: &Path) -> anyhow::Result<Vec<Trace>> {
    let mut rdr = csv::Reader::from_path(path)
        .map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for rec in rdr.deserialize::<BTreeMap<String, String>>() {
        let r = rec.map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let get = |k: &str| r.get(k).cloned().unwrap_or_default();
        out.push(Trace {
            id: get("id"),
            question: get("question"),
            answer: get("answer"),
            completion: get("model_completion"),
        });
    }
    Ok(out)
}

/// A responder that answers a prompt containing a trace's question with its completion
/// (and falls back to [`echo_reply`]).
pub fn trace_responder(traces: Vec<Trace>) -> Responder {
    Arc::new(move |body: &Value| {
        let prompt = prompt_text(body);
        traces
            .iter()
            .find(|t| !t.question.trim().is_empty() && prompt.contains(t.question.trim()))
            .map(|t| Reply::text(t.completion.clone()))
            .unwrap_or_else(|| echo_reply(&prompt))
    })
}
