//! The models of a converted config: which provider and endpoint the original's client used
//! for a model (Fireworks: raw completions with the model's chat template), its sampling
//! parameters (`summary_*` over the plain keys for the summarizer), and the continuation
//! limits with the defaults of each experiment class.

use serde_json::{Map, Value, json};

use super::flat::B;

/// Fireworks' per-request ceiling in the original client (`MAX_TOKENS_PER_REQUEST`).
const FIREWORKS_MAX_TOKENS: u64 = 8192;

/// The original's client for a model: its provider key, or the guess its model factory makes.
fn provider(b: &mut B<'_>, model: &str, key: &str) -> Option<String> {
    let given = b.f.str(key).map(|p| p.to_lowercase());
    let m = model.to_lowercase();
    let p = given.or_else(|| {
        if m.contains("gpt") {
            Some("openai".into())
        } else if ["qwq", "fireworks", "deepseek", "qwen"]
            .iter()
            .any(|n| m.contains(n))
        {
            Some("fireworks".into())
        } else if ["together", "meta-llama", "mistral", "mixtral"]
            .iter()
            .any(|n| m.contains(n))
        {
            Some("together".into())
        } else {
            None
        }
    });
    match p.as_deref() {
        Some("fireworks" | "openai" | "together") => p,
        Some(other) => {
            b.issue(
                key,
                format!("provider `{other}` is not one the original tool supports"),
                "use fireworks, together or openai",
            );
            None
        }
        None => {
            b.issue(
                key,
                format!(
                    "cannot tell the provider of model `{model}` (the original tool stops here too)"
                ),
                format!("add `{key}: fireworks` (or together, openai)"),
            );
            None
        }
    }
}

/// How the original reached a model: Fireworks through raw completions with the model's chat
/// template; Together and OpenAI through chat completions.
fn endpoint(b: &mut B<'_>, provider: &str, model: &str, spec: &mut Map<String, Value>) {
    if provider != "fireworks" {
        return;
    }
    let m = model.to_lowercase();
    let format = if m.contains("deepseek-r1") || m.contains("deepseek_r1") {
        Some("deepseek_r1")
    } else if m.contains("qwq") {
        Some("qwq")
    } else if m.contains("qwen") {
        Some("chatml")
    } else {
        None
    };
    match format {
        Some(f) => {
            spec.insert("endpoint".into(), json!("completions"));
            spec.insert("chat_format".into(), json!(f));
        }
        None => b.notes.push(format!(
            "`{model}`: the original sent raw completions with its Hugging Face chat template; distill has no template for it, so it uses the chat endpoint, where Fireworks applies the same template"
        )),
    }
}

/// Sampling parameters from `prefix`+name, falling back to the plain name (the summary_*
/// keys), with Fireworks' per-request cap on max_tokens.
fn params(b: &mut B<'_>, prefix: &str, provider: &str, path: &str) -> Map<String, Value> {
    let mut p = Map::new();
    let pick = |b: &mut B<'_>, name: &str| -> String {
        let k = format!("{prefix}{name}");
        if !prefix.is_empty() && b.f.has(&k) {
            k
        } else {
            name.to_string()
        }
    };
    let k = pick(b, "max_tokens");
    if let Some(mt) = b.f.uint(&k, 1) {
        let sent = if provider == "fireworks" {
            mt.min(FIREWORKS_MAX_TOKENS)
        } else {
            mt
        };
        if sent < mt {
            b.notes.push(format!(
                "`{k}: {mt}`: the original's Fireworks client asks for at most {FIREWORKS_MAX_TOKENS} tokens per request (continuations go on to max_total_tokens), so does this pipeline"
            ));
        }
        p.insert("max_tokens".into(), json!(sent));
        b.at(&format!("{path}.params.max_tokens"), &k);
    }
    for name in [
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
    ] {
        let k = pick(b, name);
        if let Some(v) = b.f.f64(&k) {
            p.insert(name.into(), json!(v));
            b.at(&format!("{path}.params.{name}"), &k);
        }
    }
    let k = pick(b, "top_k");
    if let Some(v) = b.f.int(&k) {
        p.insert("top_k".into(), json!(v));
        b.at(&format!("{path}.params.top_k"), &k);
    }
    p
}

pub(super) fn model_spec(
    b: &mut B<'_>,
    model_key: &str,
    provider_key: &str,
    prefix: &str,
    path: &str,
) -> (Map<String, Value>, String) {
    let model = b.f.str(model_key).unwrap_or_default();
    let prov = provider(b, &model, provider_key).unwrap_or_else(|| "fireworks".into());
    let mut spec = Map::new();
    spec.insert("provider".into(), json!(prov));
    spec.insert("model".into(), json!(model));
    b.at(path, model_key);
    endpoint(b, &prov, &model, &mut spec);
    let p = params(b, prefix, &prov, path);
    spec.insert("params".into(), Value::Object(p));
    (spec, prov)
}

pub(super) fn continuation(max_continuations: u64, max_total: Option<u64>) -> Value {
    match max_total {
        Some(t) => json!({"max_continuations": max_continuations, "max_total_tokens": t}),
        None => json!({"max_continuations": max_continuations}),
    }
}

pub(super) fn reasoner_model(b: &mut B<'_>, kind: &str) -> Value {
    let (mut spec, _) = model_spec(
        b,
        "reasoning_model",
        "reasoning_model_provider",
        "",
        "models.reasoner",
    );
    let enabled = b.f.bool("enable_continuation");
    let mc = b.f.uint("max_continuations", 0);
    let mt = b.f.uint("max_total_tokens", 1);
    let max_tokens = b.f.uint("max_tokens", 1).unwrap_or(0);
    // the defaults of each experiment class
    let cont = match kind {
        "continuation" => continuation(0, None),
        "pass_k" if enabled == Some(true) => continuation(mc.unwrap_or(0), mt.or(Some(max_tokens))),
        "pass_k" => continuation(0, None),
        _ if enabled == Some(false) => continuation(0, None),
        _ => continuation(mc.unwrap_or(3), Some(mt.unwrap_or(24576))),
    };
    spec.insert("continuation".into(), cont);
    b.at("models.reasoner.continuation", "max_continuations");
    Value::Object(spec)
}

/// The summary calls' continuation: summary_max_* over max_* over the original's defaults
/// for summaries (16 continuations, 131072 tokens).
pub(super) fn summary_continuation(b: &mut B<'_>) -> Value {
    if b.f.bool("enable_continuation") == Some(false) {
        return continuation(0, None);
    }
    let mc =
        b.f.uint("summary_max_continuations", 0)
            .or_else(|| b.f.uint("max_continuations", 0))
            .unwrap_or(16);
    let mt =
        b.f.uint("summary_max_total_tokens", 1)
            .or_else(|| b.f.uint("max_total_tokens", 1))
            .unwrap_or(131072);
    continuation(mc, Some(mt))
}
