//! From the original tool's flat keys to a distill pipeline tree: the models (reasoner, and a
//! summarizer with the `summary_*` settings), the grade block, and the node graph of each
//! experiment type — `summarize` (attempt 0, then `max_iterations` rounds of summary →
//! attempt), `pass_k` (k samples and a vote) and `continuation` ("Wait" rounds). Each choice
//! follows what the original's src/experiments/ do with the key (its defaults included);
//! where distill cannot do the same, the key is reported, and where it does something close
//! but not identical, a note says so.

use serde_json::{Map, Value, json};

use super::flat::{B, Flat};
use super::models::{continuation, model_spec, reasoner_model, summary_continuation};

/// What the tree-building needs besides the flat keys.
pub struct Inputs<'a> {
    /// The problem set, resolved against the checkout.
    pub data_path: String,
    /// Prompt names (as written into the tree) of the reasoning, summarize and improved
    /// templates, when the config has them.
    pub prompt_reasoning: Option<&'a str>,
    pub prompt_summarize: Option<&'a str>,
    pub prompt_improved: Option<&'a str>,
    /// The `_seed_N` suffix of the config's name.
    pub sample_offset: u32,
}

/// The tree, the flat line of each tree path, and the notes.
pub struct Built {
    pub tree: Value,
    pub lines: Vec<(String, usize)>,
    pub notes: Vec<String>,
    /// Keys without effect here (shown by `convert`, not on every run).
    pub ignored: Vec<String>,
}

pub fn build(f: &mut Flat, inp: &Inputs<'_>) -> Built {
    let mut b = B {
        f,
        lines: Vec::new(),
        notes: Vec::new(),
    };
    let kind = experiment_kind(&mut b);
    require_keys(&mut b, kind);
    let name =
        b.f.str("experiment_name")
            .unwrap_or_else(|| default_name(kind).into());
    let mut tree = Map::new();
    tree.insert("name".into(), json!(safe_name(&name)));
    b.at("name", "experiment_name");
    tree.insert(
        "description".into(),
        json!(format!(
            "converted from the original tool's config `{name}`"
        )),
    );
    tree.insert("problems".into(), json!({"path": inp.data_path}));
    b.at("problems", "data_path");
    if inp.sample_offset > 0 {
        tree.insert("sample_offset".into(), json!(inp.sample_offset));
    }
    match b.f.uint("dashboard_port", 1) {
        Some(p) if p <= 65535 => {
            tree.insert("dashboard_port".into(), json!(p));
            b.at("dashboard_port", "dashboard_port");
        }
        Some(p) => b.issue(
            "dashboard_port",
            format!("`dashboard_port: {p}` is out of range: a port is from 1 to 65535"),
            "e.g. dashboard_port: 8080",
        ),
        None => {}
    }
    let ignored: Vec<String> = super::flat::IGNORED_KEYS
        .iter()
        .filter(|(k, _)| b.f.has(k))
        .map(|(k, why)| format!("`{k}` has no effect here: {why}"))
        .collect();

    let mut models = Map::new();
    let reasoner = reasoner_model(&mut b, kind);
    models.insert("reasoner".into(), reasoner);
    let extractor = extractor(&mut b);
    let nodes = match kind {
        "pass_k" => pass_k_nodes(&mut b, &mut tree, inp),
        "continuation" => continuation_nodes(&mut b, inp),
        _ => summarize_nodes(&mut b, &mut models, inp),
    };
    tree.insert("models".into(), Value::Object(models));
    // the original compared the extracted string exactly; for choice letters `mc` is the
    // same comparison and also credits a boxed option text (`\boxed{11}` where (B) is 11)
    let compare = if extractor == "multiple_choice" {
        "mc"
    } else {
        "exact"
    };
    tree.insert(
        "grade".into(),
        json!({"extract": extractor, "compare": compare}),
    );
    b.at("grade", "answer_extractor");
    tree.insert("nodes".into(), Value::Object(nodes));
    Built {
        tree: Value::Object(tree),
        lines: b.lines,
        notes: b.notes,
        ignored,
    }
}

/// The keys every experiment class of the original reads with `config[...]`.
fn require_keys(b: &mut B<'_>, kind: &str) {
    b.f.require(
        "reasoning_model",
        "the original tool stops with a KeyError without it",
    );
    for k in [
        "max_tokens",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ] {
        b.f.require(k, "the original tool requires it");
    }
    if kind != "continuation" {
        b.f.require("top_k", "the original tool requires it");
    }
}

/// The experiment class the original picks (an unknown type runs as `summarize`).
fn experiment_kind(b: &mut B<'_>) -> &'static str {
    let kind = b.f.str("experiment_type");
    match kind.as_deref() {
        None | Some("summarize") => "summarize",
        Some("pass_k") => "pass_k",
        Some("continuation") => "continuation",
        Some(other) => {
            b.notes.push(format!(
                "experiment_type `{other}` is not one the original knows; like the original, it runs as `summarize`"
            ));
            "summarize"
        }
    }
}

fn default_name(kind: &str) -> &'static str {
    match kind {
        "pass_k" => "pass_k",
        "continuation" => "continuation",
        _ => "summarization",
    }
}

/// One safe path component (results/<name>/).
fn safe_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let n = n.trim_start_matches('.').to_string();
    if n.is_empty() { "converted".into() } else { n }
}

fn extractor(b: &mut B<'_>) -> &'static str {
    match b.f.str("answer_extractor").as_deref() {
        Some("math") => "boxed",
        Some("gpqa_mc") => "multiple_choice",
        None | Some("default") => "original_default",
        Some(other) => {
            b.notes.push(format!(
                "answer_extractor `{other}` is not one the original knows; like the original, the default extractor is used"
            ));
            "original_default"
        }
    }
}

fn rounds(b: &mut B<'_>, body: Map<String, Value>) -> Option<Value> {
    let n = b.f.uint("max_iterations", 0).unwrap_or(1);
    if n == 0 {
        return None;
    }
    let mut r = Map::new();
    r.insert("repeat".into(), json!(n));
    b.at("nodes.rounds", "max_iterations");
    if b.f.bool("continue_after_correct") != Some(true) {
        r.insert("when".into(), json!("not previous.attempt.correct"));
        b.at("nodes.rounds.when", "continue_after_correct");
    }
    r.insert("body".into(), Value::Object(body));
    Some(Value::Object(r))
}

fn need_prompt(b: &mut B<'_>, p: Option<&str>, kind: &str) -> String {
    match p {
        Some(p) => p.to_string(),
        // a version that could not be read is reported where it is named
        None if b
            .f
            .values
            .get("prompts")
            .and_then(|p| p.get(kind))
            .is_some() =>
        {
            format!("missing/{kind}")
        }
        None => {
            b.issue(
                "prompts",
                format!("no `{kind}` prompt: set `prompts: {{{kind}: VERSION}}` or `{kind}_prompt_template:`"),
                "the original tool stops with \"…_prompt_template must be specified\"",
            );
            format!("missing/{kind}")
        }
    }
}

fn summarize_nodes(
    b: &mut B<'_>,
    models: &mut Map<String, Value>,
    inp: &Inputs<'_>,
) -> Map<String, Value> {
    let mut nodes = Map::new();
    let reasoning = need_prompt(b, inp.prompt_reasoning, "reasoning");
    nodes.insert(
        "attempt_0".into(),
        json!({"kind": "reason", "model": "reasoner", "prompt": reasoning}),
    );
    b.at("nodes.attempt_0.prompt", "prompts.reasoning");
    if b.f.bool("enable_summarization") == Some(false) || b.f.uint("max_iterations", 0) == Some(0) {
        return nodes;
    }
    let self_sum = match b.f.str("summarizer_type").as_deref() {
        None | Some("self") => true,
        Some(_) => false,
    };
    let post_think = b.f.bool("extract_post_think_summary").unwrap_or(self_sum);
    let mut summary = Map::new();
    summary.insert("kind".into(), json!("summarize"));
    summary.insert("input".into(), json!("previous.attempt"));
    summary.insert("field".into(), json!("reasoning"));
    summary.insert(
        "fallback_full_text".into(),
        json!(b.f.bool("allow_fallback").unwrap_or(false)),
    );
    b.at("nodes.rounds.body.summary", "summary_method");
    if let Some((name, cont)) = strategy(b, post_think, &mut summary) {
        let prompt = need_prompt(b, inp.prompt_summarize, "summarize");
        summary.insert("model".into(), json!(name));
        summary.insert("prompt".into(), json!(prompt));
        b.at("nodes.rounds.body.summary.prompt", "prompts.summarize");
        models.insert(name.into(), summarizer(b, name, cont, self_sum));
    }
    let improved = need_prompt(b, inp.prompt_improved, "improved");
    let mut body = Map::new();
    body.insert("summary".into(), Value::Object(summary));
    body.insert(
        "attempt".into(),
        json!({"kind": "reason", "model": "reasoner", "prompt": improved, "vars": {"summaries": "all.summary"}}),
    );
    b.at("nodes.rounds.body.attempt.prompt", "prompts.improved");
    if let Some(r) = rounds(b, body) {
        nodes.insert("rounds".into(), r);
    }
    nodes
}

/// The summary model: the reasoning model itself (`self`) or `summarizer_model`, with the
/// summary_* settings.
fn summarizer(b: &mut B<'_>, name: &str, cont: Value, self_sum: bool) -> Value {
    let (model_key, provider_key) = if self_sum {
        ("reasoning_model", "reasoning_model_provider")
    } else {
        b.f.require(
            "summarizer_model",
            "summarizer_type is not `self`; the original tool stops without it",
        );
        ("summarizer_model", "summarizer_model_provider")
    };
    let path = format!("models.{name}");
    let (mut spec, _) = model_spec(b, model_key, provider_key, "summary_", &path);
    spec.insert("continuation".into(), cont);
    Value::Object(spec)
}

/// A whole number a summary method needs (reported, as the original asserts, when missing).
fn needed(b: &mut B<'_>, method: &str, key: &str, min: u64) -> u64 {
    match b.f.uint(key, min) {
        Some(k) => k,
        None => {
            b.issue(
                "summary_method",
                format!("summary_method `{method}` needs `{key}:`"),
                "the original tool stops with an assertion error",
            );
            min.max(1)
        }
    }
}

/// The summary node's strategy fields from `summary_method`; for the methods that call a
/// model, that model's name and continuation.
fn strategy(
    b: &mut B<'_>,
    post_think: bool,
    summary: &mut Map<String, Value>,
) -> Option<(&'static str, Value)> {
    let method =
        b.f.str("summary_method")
            .unwrap_or_else(|| "single_llm_prompt".into());
    match method.as_str() {
        "single_llm_prompt" => {
            summary.insert("strategy".into(), json!("llm"));
            summary.insert("keep_after_think".into(), json!(post_think));
            Some(("summarizer", summary_continuation(b)))
        }
        "multiple_llm_prompts" => {
            summary.insert("strategy".into(), json!("chunked"));
            summary.insert("keep_after_think".into(), json!(post_think));
            let size = needed(b, &method, "multiple_prompt_chunk_words", 1);
            let overlap = needed(b, &method, "multiple_prompt_overlap_words", 0);
            if overlap >= size {
                b.issue(
                    "multiple_prompt_overlap_words",
                    format!("overlap {overlap} is not below the chunk size {size}: the original loops forever"),
                    "make the overlap smaller than multiple_prompt_chunk_words",
                );
            }
            summary.insert("chunk_words".into(), json!(size));
            summary.insert("overlap_words".into(), json!(overlap));
            summary.insert("chunk_separator".into(), json!("\n"));
            // the original's chunk calls pass no continuation settings: its client's defaults
            Some(("chunk_summarizer", continuation(3, Some(24576))))
        }
        "first_k" | "last_k" | "random_k" | "post_think" => {
            token_strategy(b, &method, summary);
            None
        }
        "answer_only" => {
            summary.insert("strategy".into(), json!("answer_only"));
            None
        }
        other => {
            b.issue(
                "summary_method",
                format!("summary_method `{other}` is not one the original tool implements: it stops with \"Failed to generate summary\" at the first summary"),
                "use single_llm_prompt, multiple_llm_prompts, first_k, last_k, random_k, post_think or answer_only",
            );
            None
        }
    }
}

fn token_strategy(b: &mut B<'_>, method: &str, summary: &mut Map<String, Value>) {
    let key = match method {
        "first_k" => "first_k_tokens",
        "random_k" => "random_k_tokens",
        _ => "last_k_tokens",
    };
    let k = needed(b, method, key, 1);
    summary.insert("strategy".into(), json!(method));
    summary.insert("k".into(), json!(k));
    if method != "random_k" {
        summary.insert("ellipsis".into(), json!(true));
    }
    b.notes.push(format!(
        "summary_method `{method}`: the original counted {k} tokens with the Hugging Face tokenizer of `summarizer_model`; distill counts with the tokenizer of the model that wrote the trace, `models.reasoner.tokenizer` — cl100k_base until you set it to that model's tokenizer.json (e.g. --set models.reasoner.tokenizer=PATH)"
    ));
    if method == "random_k" {
        b.notes.push("random_k: the original drew the tokens with Python's unseeded `random`; distill seeds the draw by (seed, problem, round, sample), so reruns pick the same tokens".into());
    }
}

fn pass_k_nodes(
    b: &mut B<'_>,
    tree: &mut Map<String, Value>,
    inp: &Inputs<'_>,
) -> Map<String, Value> {
    let k = match b.f.uint("pass_k_iterations", 1) {
        Some(k) => k,
        None => {
            b.issue(
                "experiment_type",
                "experiment_type `pass_k` needs `pass_k_iterations:`",
                "the original tool stops with an assertion error",
            );
            1
        }
    };
    tree.insert("samples".into(), json!(k));
    b.at("samples", "pass_k_iterations");
    let reasoning = need_prompt(b, inp.prompt_reasoning, "reasoning");
    let ks: Vec<u64> = if k > 1 { vec![1, k] } else { vec![1] };
    let mut nodes = Map::new();
    nodes.insert(
        "attempt_0".into(),
        json!({"kind": "reason", "model": "reasoner", "prompt": reasoning}),
    );
    b.at("nodes.attempt_0.prompt", "prompts.reasoning");
    nodes.insert(
        "vote".into(),
        json!({"kind": "vote", "input": "attempt_0", "k": ks}),
    );
    nodes
}

fn continuation_nodes(b: &mut B<'_>, inp: &Inputs<'_>) -> Map<String, Value> {
    let reasoning = need_prompt(b, inp.prompt_reasoning, "reasoning");
    if let Some(tag) = b.f.str("think_end_tag")
        && tag != "</think>"
    {
        b.issue(
            "think_end_tag",
            format!("think_end_tag `{tag}`: distill cuts at `</think>` only"),
            "remove the key",
        );
    }
    let suffix =
        b.f.str("continuation_suffix")
            .unwrap_or_else(|| "Wait".into());
    let append = b.f.bool("append_wait_if_tag_missing").unwrap_or(false);
    let mut nodes = Map::new();
    nodes.insert(
        "attempt_0".into(),
        json!({"kind": "reason", "model": "reasoner", "prompt": reasoning}),
    );
    b.at("nodes.attempt_0.prompt", "prompts.reasoning");
    let mut body = Map::new();
    body.insert(
        "attempt".into(),
        json!({"kind": "continue", "model": "reasoner", "prompt": reasoning,
               "input": "previous.attempt", "suffix": suffix,
               "append_if_tag_missing": append}),
    );
    b.at(
        "nodes.rounds.body.attempt.append_if_tag_missing",
        "append_wait_if_tag_missing",
    );
    if let Some(r) = rounds(b, body) {
        let mut nodes2 = nodes;
        nodes2.insert("rounds".into(), r);
        return nodes2;
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_safe_component() {
        assert_eq!(safe_name("a b/c"), "a_b_c");
        assert_eq!(safe_name("../x"), "_x");
        assert_eq!(safe_name(""), "converted");
    }
}
