//! Token counts for calls whose server reported no `usage` (llama-cpp-python ignores
//! `stream_options.include_usage`, so a streamed answer comes without one): a model's
//! tokenizer — tiktoken's `cl100k_base` (the default, an approximation for non-OpenAI
//! models) or `o200k_base`, or a Hugging Face `tokenizer.json` — counts the texts instead, and
//! the figures are recorded as estimated. This file owns choosing and loading that tokenizer
//! (a `tokenizer:` setting of a model) and counting with it; loaded `tokenizer.json` files are
//! cached per path for the whole process, so models sharing one file load it once.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use anyhow::{Context, anyhow};

/// The names `tokenizer:` accepts for tiktoken's encodings, with the encoding each means.
pub const ENCODINGS: [(&str, &str); 4] = [
    ("cl100k", "cl100k_base"),
    ("cl100k_base", "cl100k_base"),
    ("o200k", "o200k_base"),
    ("o200k_base", "o200k_base"),
];

/// What to do about a bad `tokenizer:` setting, for error messages.
const WHAT_TO_DO: &str = "set the model's `tokenizer:` to `cl100k`, `o200k` or the path of a Hugging Face tokenizer.json (relative to the pipeline file's folder), or remove it to use cl100k";

/// A model's tokenizer for usage estimates.
#[derive(Clone)]
pub enum Tokenizer {
    /// One of tiktoken's embedded encodings, built at the first count (building one takes
    /// a tenth of a second and tens of MB: most runs never need it). `default` is true when no
    /// `tokenizer:` was set.
    Tiktoken { name: &'static str, default: bool },
    /// A Hugging Face `tokenizer.json` (truncation and padding turned off, so counts are whole).
    HuggingFace {
        path: PathBuf,
        tok: Arc<tokenizers::Tokenizer>,
    },
}

/// Loaded `tokenizer.json` files by canonical path.
static HF_CACHE: LazyLock<Mutex<HashMap<PathBuf, Arc<tokenizers::Tokenizer>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Tokenizer {
    /// `spec`: None → cl100k (the default, an approximation for non-OpenAI models);
    /// "cl100k"/"cl100k_base", "o200k"/"o200k_base" → tiktoken encodings (embedded, no file);
    /// anything else → a path to a Hugging Face `tokenizer.json`, resolved against `base_dir`
    /// if relative; an unreadable or invalid file is an Err whose message names the path and
    /// says what to do.
    pub fn load(spec: Option<&str>, base_dir: &Path) -> anyhow::Result<Tokenizer> {
        let Some(spec) = spec else {
            return Ok(Tokenizer::tiktoken("cl100k_base", true));
        };
        if let Some((_, name)) = ENCODINGS.iter().find(|(k, _)| *k == spec.trim()) {
            return Ok(Tokenizer::tiktoken(name, false));
        }
        let given = Path::new(spec);
        let path = if given.is_absolute() {
            given.to_path_buf()
        } else {
            base_dir.join(given)
        };
        let tok = load_hf(spec, &path)?;
        Ok(Tokenizer::HuggingFace { path, tok })
    }

    fn tiktoken(name: &'static str, default: bool) -> Tokenizer {
        Tokenizer::Tiktoken { name, default }
    }

    /// The number of tokens of `text` alone (no BOS/EOS or chat-template tokens added).
    pub fn count(&self, text: &str) -> u64 {
        match self {
            Tokenizer::Tiktoken { name, .. } => {
                let bpe = match *name {
                    "o200k_base" => tiktoken_rs::o200k_base_singleton(),
                    _ => tiktoken_rs::cl100k_base_singleton(),
                };
                bpe.encode_ordinary(text).len() as u64
            }
            Tokenizer::HuggingFace { tok, path } => match tok.encode_fast(text, false) {
                Ok(e) => e.len() as u64,
                Err(e) => {
                    // e.g. a WordLevel vocabulary without an unknown token: an estimate is
                    // still better than none
                    tracing::warn!(
                        "tokenizer {} cannot encode a text ({e}); counting it with cl100k_base",
                        path.display()
                    );
                    tiktoken_rs::cl100k_base_singleton()
                        .encode_ordinary(text)
                        .len() as u64
                }
            },
        }
    }

    /// The token ids of `text` alone (no special tokens added), for the token-level summary
    /// strategies.
    pub fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        match self {
            Tokenizer::Tiktoken { name, .. } => Ok(bpe(name).encode_ordinary(text)),
            Tokenizer::HuggingFace { tok, path } => tok
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| anyhow!("tokenizer {} cannot encode the trace: {e}", path.display())),
        }
    }

    /// The text of `ids`; a cut through a multi-byte character decodes lossily.
    pub fn decode(&self, ids: &[u32]) -> anyhow::Result<String> {
        match self {
            Tokenizer::Tiktoken { name, .. } => {
                let bytes = bpe(name).decode_bytes(ids).unwrap_or_default();
                Ok(match String::from_utf8(bytes) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })
            }
            Tokenizer::HuggingFace { tok, path } => tok
                .decode(ids, false)
                .map_err(|e| anyhow!("tokenizer {} cannot decode: {e}", path.display())),
        }
    }

    /// "cl100k_base", "o200k_base" or the tokenizer.json path, for records.
    pub fn name(&self) -> String {
        match self {
            Tokenizer::Tiktoken { name, .. } => name.to_string(),
            Tokenizer::HuggingFace { path, .. } => path.display().to_string(),
        }
    }

    /// true for the default (no `tokenizer:` set): figures made with it are approximate for
    /// most models.
    pub fn is_default(&self) -> bool {
        matches!(self, Tokenizer::Tiktoken { default: true, .. })
    }
}

fn bpe(name: &str) -> &'static tiktoken_rs::CoreBPE {
    match name {
        "o200k_base" => tiktoken_rs::o200k_base_singleton(),
        _ => tiktoken_rs::cl100k_base_singleton(),
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokenizer({})", self.name())
    }
}

/// Loads `path` (as written: `spec`) once per process.
fn load_hf(spec: &str, path: &Path) -> anyhow::Result<Arc<tokenizers::Tokenizer>> {
    let shown = path.display();
    if path.is_dir() {
        return Err(anyhow!(
            "tokenizer `{spec}`: {shown} is a folder, not a tokenizer.json; point at the tokenizer.json inside it"
        ));
    }
    let key = match path.canonicalize() {
        Ok(k) => k,
        Err(e) => {
            let looks_like_a_name = !spec.contains(['/', '\\']) && !spec.ends_with(".json");
            return Err(if looks_like_a_name {
                anyhow!(
                    "unknown tokenizer `{spec}` (no encoding of that name, and no file {shown}: {e}); {WHAT_TO_DO}"
                )
            } else {
                anyhow!("cannot read tokenizer file {shown}: {e}; {WHAT_TO_DO}")
            });
        }
    };
    // held while loading, so that concurrent loads of one file read it once
    let mut cache = HF_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = cache.get(&key) {
        return Ok(t.clone());
    }
    let bytes = std::fs::read(&key)
        .with_context(|| format!("cannot read tokenizer file {shown}; {WHAT_TO_DO}"))?;
    let mut tok = tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| {
        anyhow!(
            "{shown} is not a valid Hugging Face tokenizer.json ({e}); use the model's tokenizer.json as published with it, or {WHAT_TO_DO}"
        )
    })?;
    // a file made for training may cap or pad every encoding: counts must be whole
    tok.with_truncation(None)
        .map_err(|e| anyhow!("{shown}: cannot turn off truncation: {e}"))?;
    tok.with_padding(None);
    let tok = Arc::new(tok);
    cache.insert(key, tok.clone());
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WordLevel tokenizer over a few words, split on whitespace, with [UNK].
    const WORD_LEVEL: &str = r#"{
      "version": "1.0",
      "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
      "padding": null,
      "added_tokens": [
        {"id": 0, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
      ],
      "normalizer": null,
      "pre_tokenizer": {"type": "Whitespace"},
      "post_processor": null,
      "decoder": null,
      "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "the": 3, ",": 4}, "unk_token": "[UNK]"}
    }"#;

    #[test]
    fn default_is_cl100k() {
        let t = Tokenizer::load(None, Path::new(".")).unwrap();
        assert_eq!(t.name(), "cl100k_base");
        assert!(t.is_default());
        assert_eq!(t.count("hello world"), 2);
        assert_eq!(t.count(""), 0);
        let named = Tokenizer::load(Some("cl100k"), Path::new(".")).unwrap();
        assert_eq!(named.name(), "cl100k_base");
        assert!(!named.is_default());
        assert_eq!(named.count("hello world"), 2);
    }

    #[test]
    fn o200k_loads() {
        for spec in ["o200k", "o200k_base"] {
            let t = Tokenizer::load(Some(spec), Path::new(".")).unwrap();
            assert_eq!(t.name(), "o200k_base");
            assert!(!t.is_default());
            assert_eq!(t.count("hello world"), 2);
        }
    }

    #[test]
    fn hugging_face_file_loads_relative_to_base_dir_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tok")).unwrap();
        std::fs::write(dir.path().join("tok/tokenizer.json"), WORD_LEVEL).unwrap();
        let t = Tokenizer::load(Some("tok/tokenizer.json"), dir.path()).unwrap();
        assert_eq!(
            t.name(),
            dir.path().join("tok/tokenizer.json").display().to_string()
        );
        assert!(!t.is_default());
        // 5 tokens (truncation to 2 in the file is turned off); unknown words count as [UNK]
        assert_eq!(t.count("hello world, the world"), 5);
        assert_eq!(t.count("hello  strange\nworld"), 3);
        assert_eq!(t.count(""), 0);
        // a second load (another spelling of the same file) shares the loaded tokenizer
        let abs = dir.path().join("tok/../tok/tokenizer.json");
        let u = Tokenizer::load(Some(abs.to_str().unwrap()), Path::new("/nowhere")).unwrap();
        match (&t, &u) {
            (Tokenizer::HuggingFace { tok: a, .. }, Tokenizer::HuggingFace { tok: b, .. }) => {
                assert!(Arc::ptr_eq(a, b))
            }
            _ => panic!("not Hugging Face tokenizers"),
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::load(Some("models/tokenizer.json"), dir.path()).unwrap_err();
        let msg = format!("{err:#}");
        let path = dir.path().join("models/tokenizer.json");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("cannot read tokenizer file"), "{msg}");
        assert!(msg.contains("`cl100k`"), "{msg}");
        // a bare word that is no encoding says so
        let msg = format!(
            "{:#}",
            Tokenizer::load(Some("o200"), dir.path()).unwrap_err()
        );
        assert!(msg.contains("unknown tokenizer `o200`"), "{msg}");
        // a folder is not a tokenizer.json
        let msg = format!("{:#}", Tokenizer::load(Some("."), dir.path()).unwrap_err());
        assert!(msg.contains("is a folder"), "{msg}");
    }

    #[test]
    fn garbage_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        for garbage in ["not json at all", r#"{"model": {"type": "Nope"}}"#] {
            std::fs::write(&path, garbage).unwrap();
            let msg = format!(
                "{:#}",
                Tokenizer::load(Some("tokenizer.json"), dir.path()).unwrap_err()
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(
                msg.contains("is not a valid Hugging Face tokenizer.json"),
                "{msg}"
            );
        }
    }
}
