//! Where an OpenAI-compatible provider lives and how it authenticates: default base URLs and
//! API-key variables per named provider, and key lookup in the environment and in a `.env`
//! file of the current directory (read, never written into the process environment; a
//! variable already set wins).

use crate::spec::model::ModelSpec;

/// Base URL and key variable of a named provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderDefaults {
    pub base_url: Option<&'static str>,
    pub key_env: Option<&'static str>,
}

/// The defaults of a provider name, or `None` if it is not an OpenAI-compatible one.
pub fn defaults(provider: &str) -> Option<ProviderDefaults> {
    let p = crate::llm::provider(provider).filter(|p| p.openai_compatible)?;
    Some(ProviderDefaults {
        base_url: p.base_url,
        key_env: p.key_env,
    })
}

/// Names of the OpenAI-compatible providers.
pub fn openai_compatible() -> Vec<&'static str> {
    crate::llm::PROVIDERS
        .iter()
        .filter(|p| p.openai_compatible)
        .map(|p| p.name)
        .collect()
}

/// Where to send and with which key.
pub struct Resolved {
    /// The first replica's base URL.
    pub base_url: String,
    /// Every replica's base URL (`base_urls:`), the first being `base_url`.
    pub base_urls: Vec<String>,
    pub key: Option<String>,
    pub key_env: Option<String>,
}

/// Resolves base URL and key of a spec; the error says what is missing and how to set it
/// (it never contains a key).
pub fn resolve(spec: &ModelSpec) -> Result<Resolved, String> {
    resolve_for(spec, true)
}

/// Like `resolve`; with `need_key` false (a plan, an offline run: nothing is sent) a missing
/// key is no error.
pub fn resolve_for(spec: &ModelSpec, need_key: bool) -> Result<Resolved, String> {
    let d = defaults(&spec.provider).ok_or_else(|| {
        format!(
            "provider `{}` is not an OpenAI-compatible provider (known: {})",
            spec.provider,
            openai_compatible().join(", ")
        )
    })?;
    let given: Vec<String> = match (&spec.base_url, &spec.base_urls) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "model `{}`: give `base_url:` (one server) or `base_urls:` (replicas), not both",
                spec.model
            ));
        }
        (_, Some(list)) => list.clone(),
        (Some(u), None) => vec![u.clone()],
        (None, None) => Vec::new(),
    };
    let mut base_urls: Vec<String> = given
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .collect();
    if base_urls.is_empty() {
        base_urls.extend(d.base_url.map(str::to_string));
    }
    if base_urls.is_empty() {
        return Err(format!(
            "model `{}`: provider `{}` needs `base_url:` (e.g. http://localhost:8000/v1)",
            spec.model, spec.provider
        ));
    }
    if let Some(bad) = base_urls
        .iter()
        .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(format!(
            "model `{}`: base_url `{bad}` must start with http:// or https://",
            spec.model
        ));
    }
    let base_url = base_urls[0].clone();
    let key_env = spec
        .api_key_env
        .clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| d.key_env.map(str::to_string));
    let key = match &key_env {
        None => None,
        Some(var) => match lookup_var(var) {
            Some(k) => Some(k),
            None if !need_key => None,
            None => {
                return Err(format!(
                    "model `{}` (provider {}): no API key: the environment variable {var} is not \
                     set. Set it (`export {var}=...`) or add a line `{var}=...` to a .env file \
                     in the directory you run from",
                    spec.model, spec.provider
                ));
            }
        },
    };
    Ok(Resolved {
        base_url,
        base_urls,
        key,
        key_env,
    })
}

/// A variable from the environment, else from `./.env`; empty values count as unset.
pub fn lookup_var(name: &str) -> Option<String> {
    if let Ok(v) = std::env::var(name)
        && !v.trim().is_empty()
    {
        return Some(v.trim().to_string());
    }
    let iter = dotenvy::from_path_iter(".env").ok()?;
    iter.filter_map(Result::ok)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The value of a spec's API key, when one is set (for redaction only: never printed).
pub fn key_value(spec: &ModelSpec) -> Option<String> {
    let d = defaults(&spec.provider)?;
    let var = spec
        .api_key_env
        .clone()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| d.key_env.map(str::to_string))?;
    lookup_var(&var)
}
