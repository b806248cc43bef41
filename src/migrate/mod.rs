//! The original tool's experiment configs (flat YAML files in `config/experiments/`, prompts
//! as named versions in `config/prompts/*.yaml`): recognizing one, mapping each of its keys to
//! a distill pipeline with the original's behaviour, reporting every unknown or unsupported
//! key at once with its line, and writing the result as a native pipeline file plus `.hbs`
//! prompts (`distill pipeline convert`). `spec` calls `convert` when a pipeline file turns
//! out to be flat, so `pipeline run|validate|plan|graph` take such a config as it is. This
//! module knows the flat format; it does not validate pipelines (`spec` does) or run them.

mod build;
pub mod flat;
mod models;
pub mod prompts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use flat::{Issue, is_flat};

/// A flat config turned into a distill pipeline.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The flat config file.
    pub source: PathBuf,
    /// The pipeline tree (what a native pipeline file would decode to).
    pub tree: Value,
    /// Tree path → line of the flat key it came from.
    pub lines: Vec<(String, usize)>,
    /// Prompt name → handlebars text.
    pub prompts: BTreeMap<String, String>,
    /// What the conversion chose where distill differs from the original.
    pub notes: Vec<String>,
    /// Keys without effect in distill (results_dir, save_intermediate, …).
    pub ignored: Vec<String>,
}

/// Every issue of a config that cannot be converted.
#[derive(Debug, Clone)]
pub struct Failed {
    pub source: PathBuf,
    pub issues: Vec<Issue>,
}

/// Reads and converts one flat config (`tree` already parsed from `text`).
pub fn convert(path: &Path, text: &str, tree: Value) -> Result<Converted, Failed> {
    let mut f = flat::Flat::parse(tree, text);
    let co = prompts::checkout(path);
    let mut prompt_texts = BTreeMap::new();
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    for kind in ["reasoning", "summarize", "improved"] {
        if let Some(name) = prompt_of(&mut f, &co, path, kind, &mut prompt_texts) {
            names.insert(kind, name);
        }
    }
    check_other_prompt_kinds(&mut f, &co);
    let data_path = match f.str("data_path") {
        Some(d) => {
            let p = Path::new(&d);
            if p.is_absolute() {
                d
            } else {
                let clean: PathBuf = p
                    .components()
                    .filter(|c| !matches!(c, std::path::Component::CurDir))
                    .collect();
                co.root.join(clean).display().to_string()
            }
        }
        None => {
            f.require("data_path", "the original tool stops with a KeyError");
            String::new()
        }
    };
    let offset = seed_suffix(path, f.values.get("experiment_name"));
    let inputs = build::Inputs {
        data_path,
        prompt_reasoning: names.get("reasoning").map(|s| s.as_str()),
        prompt_summarize: names.get("summarize").map(|s| s.as_str()),
        prompt_improved: names.get("improved").map(|s| s.as_str()),
        sample_offset: offset,
    };
    let built = build::build(&mut f, &inputs);
    if !f.issues.is_empty() {
        let mut issues = std::mem::take(&mut f.issues);
        issues.sort_by_key(|i| i.line.unwrap_or(0));
        return Err(Failed {
            source: path.to_path_buf(),
            issues,
        });
    }
    let mut notes = f.notes;
    notes.extend(built.notes);
    if offset > 0 {
        notes.push(format!(
            "seed {offset} (from the name): sample_offset {offset} keeps its draws apart from the other seeds' in the cache"
        ));
    }
    Ok(Converted {
        source: path.to_path_buf(),
        tree: built.tree,
        lines: built.lines,
        prompts: prompt_texts,
        notes,
        ignored: built.ignored,
    })
}

/// The prompt of one original type: `prompts: {kind: VERSION}` from config/prompts/, which
/// (as in the original, which loads them after the config) wins over an inline
/// `{kind}_prompt_template`. Returns the prompt's name in the pipeline.
fn prompt_of(
    f: &mut flat::Flat,
    co: &prompts::Checkout,
    path: &Path,
    kind: &str,
    out: &mut BTreeMap<String, String>,
) -> Option<String> {
    let vars = prompts::vars_of(kind);
    let version = f
        .values
        .get("prompts")
        .and_then(|p| p.get(kind))
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_string());
    let inline_key = format!("{kind}_prompt_template");
    if let Some(v) = version {
        let line = f.line(&format!("prompts.{kind}")).or(f.line("prompts"));
        let found = co
            .prompts
            .as_ref()
            .is_some_and(|d| prompts::read_version(d, kind, &v).is_ok());
        if !found && f.has(&inline_key) {
            // a recorded run's config carries the loaded text next to the version's name
            f.notes.push(format!(
                "`prompts.{kind}: {v}` is not in a config/prompts/ folder here: the config's own `{inline_key}` is used"
            ));
            return inline_prompt(f, path, kind, &inline_key, out);
        }
        if f.has(&inline_key) {
            f.notes.push(format!(
                "`{kind}_prompt_template` is not used: `prompts.{kind}: {v}` replaces it, as in the original (which loads prompt versions after the config)"
            ));
        }
        let Some(dir) = &co.prompts else {
            f.issues.push(
                Issue::new(line, format!("`prompts.{kind}: {v}` names a prompt version, but no config/prompts/ folder is above {}", path.display()))
                    .hint("keep the config inside the original checkout's config/ folder (config/prompts/ next to config/experiments/)"),
            );
            return None;
        };
        return match prompts::read_version(dir, kind, &v) {
            Ok(t) => {
                let name = format!("original/{kind}/{v}");
                out.insert(name.clone(), prompts::to_handlebars(&t, &vars));
                Some(name)
            }
            Err(e) => {
                f.issues.push(Issue::new(line, e).hint(format!(
                    "use a version defined in config/prompts/{kind}.yaml"
                )));
                None
            }
        };
    }
    inline_prompt(f, path, kind, &inline_key, out)
}

fn inline_prompt(
    f: &mut flat::Flat,
    path: &Path,
    kind: &str,
    inline_key: &str,
    out: &mut BTreeMap<String, String>,
) -> Option<String> {
    let vars = prompts::vars_of(kind);
    let t = f.str(inline_key)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let name = format!("inline/{}/{kind}", sanitize(&stem));
    out.insert(name.clone(), prompts::to_handlebars(&t, &vars));
    Some(name)
}

/// Prompt types the original loads but never uses (e.g. `analysis`) must still exist.
fn check_other_prompt_kinds(f: &mut flat::Flat, co: &prompts::Checkout) {
    let Some(map) = f.values.get("prompts").and_then(|p| p.as_object()).cloned() else {
        if f.has("prompts") {
            let line = f.line("prompts");
            f.issues.push(Issue::new(
                line,
                "`prompts:` must be a mapping such as {reasoning: aime}",
            ));
        }
        return;
    };
    for (kind, v) in map {
        if ["reasoning", "summarize", "improved"].contains(&kind.as_str()) {
            continue;
        }
        let line = f.line(&format!("prompts.{kind}"));
        let (Some(dir), Some(v)) = (&co.prompts, v.as_str()) else {
            continue;
        };
        if let Err(e) = prompts::read_version(dir, &kind, v) {
            f.issues.push(Issue::new(line, e));
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The N of a `_seed_N` / `_seedN` suffix of the file name, else of `experiment_name`.
pub fn seed_suffix(path: &Path, name: Option<&Value>) -> u32 {
    let re = regex::Regex::new(r"_seed_?(\d+)$").expect("static regex");
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let from = |s: &str| {
        re.captures(s)
            .and_then(|c| c[1].parse::<u32>().ok())
            .filter(|n| *n <= 1_000_000)
    };
    from(&stem)
        .or_else(|| name.and_then(|n| n.as_str()).and_then(from))
        .unwrap_or(0)
}

/// Groups of converted configs that would share every cache key: the same tree apart from
/// name, description and dashboard port, and the same prompt texts.
pub fn identical_keys(all: &[Converted]) -> Vec<Vec<PathBuf>> {
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for c in all {
        let mut t = c.tree.clone();
        if let Some(m) = t.as_object_mut() {
            for k in ["name", "description", "dashboard_port"] {
                m.remove(k);
            }
        }
        // prompt names differ between inline and versioned prompts; their texts decide keys
        let texts: Vec<&String> = c.prompts.values().collect();
        let fp = crate::cache::Key::of(&serde_json::json!({"tree": t, "prompts": texts})).0;
        groups.entry(fp).or_default().push(c.source.clone());
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

/// The output stem of each config: its file stem, prefixed with its folder's name when two
/// configs share a stem (config/experiments/gpqa/x.yaml and …/archive/x.yaml).
pub fn output_stems(sources: &[PathBuf]) -> Vec<String> {
    let stem = |p: &Path| {
        sanitize(
            &p.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "converted".into()),
        )
    };
    let stems: Vec<String> = sources.iter().map(|p| stem(p)).collect();
    sources
        .iter()
        .zip(&stems)
        .map(|(p, s)| {
            if stems.iter().filter(|o| *o == s).count() > 1 {
                let dir = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|d| sanitize(&d.to_string_lossy()))
                    .unwrap_or_default();
                format!("{dir}_{s}")
            } else {
                s.clone()
            }
        })
        .collect()
}

/// Writes `c` as `<out>/<stem>.yaml` and its prompts under `<out>/prompts/`. The problem
/// path is written relative to `out` when it can be. Returns the pipeline file.
pub fn write(c: &Converted, out: &Path, stem: &str) -> anyhow::Result<PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut tree = c.tree.clone();
    if let Some(p) = tree.pointer_mut("/problems/path")
        && let Some(s) = p.as_str()
    {
        *p = Value::String(relative_to(Path::new(s), out));
    }
    for (name, text) in &c.prompts {
        let file = out.join("prompts").join(format!("{name}.hbs"));
        if let Some(d) = file.parent() {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        crate::atomic::write_atomically(&file, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
    }
    let file = out.join(format!("{stem}.yaml"));
    let mut text = format!(
        "# Converted by `distill pipeline convert` from the original tool's config\n# {}\n",
        c.source.display()
    );
    for n in c.notes.iter().chain(&c.ignored) {
        text.push_str(&format!("# note: {n}\n"));
    }
    text.push_str(&serde_saphyr::to_string(&tree).context("serializing the pipeline")?);
    crate::atomic::write_atomically(&file, text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", file.display()))?;
    Ok(file)
}

/// `target` relative to `base` (both made absolute), or `target` as it is.
fn relative_to(target: &Path, base: &Path) -> String {
    let (Ok(t), Ok(b)) = (std::path::absolute(target), std::path::absolute(base)) else {
        return target.display().to_string();
    };
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c);
    }
    rel.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_suffixes() {
        assert_eq!(seed_suffix(Path::new("a/x_seed_2.yaml"), None), 2);
        assert_eq!(seed_suffix(Path::new("x_4iter_seed3.yaml"), None), 3);
        assert_eq!(seed_suffix(Path::new("x.yaml"), None), 0);
        let n = serde_json::json!("exp_seed_0_fresh");
        assert_eq!(seed_suffix(Path::new("x.yaml"), Some(&n)), 0);
    }

    fn convert_text(dir: &Path, text: &str) -> Result<Converted, Failed> {
        let file = dir.join("config/experiments/x.yaml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::create_dir_all(dir.join("config/prompts")).unwrap();
        std::fs::write(
            dir.join("config/prompts/reasoning.yaml"),
            "aime:\n  template: \"From file: {question}\"\n",
        )
        .unwrap();
        std::fs::write(&file, text).unwrap();
        let tree: Value = serde_saphyr::from_str(text).unwrap();
        convert(&file, text, tree)
    }

    const PASS: &str = "experiment_name: p\ndata_path: ./data/x.csv\nexperiment_type: pass_k\npass_k_iterations: 4\nreasoning_model: accounts/fireworks/models/qwq-32b\nmax_tokens: 100\ntemperature: 0.6\ntop_p: 0.95\ntop_k: 40\npresence_penalty: 0\nfrequency_penalty: 0\n";

    #[test]
    fn an_inline_prompt_is_used_unless_a_version_replaces_it() {
        let d = tempfile::tempdir().unwrap();
        let text =
            format!("{PASS}reasoning_prompt_template: \"Solve {{question}} in \\\\boxed{{}}\"\n");
        let c = convert_text(d.path(), &text).unwrap();
        assert_eq!(
            c.prompts["inline/x/reasoning"],
            "Solve {{question}} in \\boxed{}"
        );
        assert_eq!(c.tree["nodes"]["attempt_0"]["prompt"], "inline/x/reasoning");
        assert_eq!(c.tree["samples"], 4);
        assert_eq!(c.tree["nodes"]["vote"]["k"], serde_json::json!([1, 4]));
        assert_eq!(
            c.tree["problems"]["path"],
            d.path().join("data/x.csv").display().to_string()
        );
        // QwQ on Fireworks: raw completions with its chat format; pass@k without
        // enable_continuation makes one call per sample
        assert_eq!(c.tree["models"]["reasoner"]["chat_format"], "qwq");
        assert_eq!(
            c.tree["models"]["reasoner"]["continuation"]["max_continuations"],
            0
        );

        let both = format!("{text}prompts:\n  reasoning: aime\n");
        let c = convert_text(d.path(), &both).unwrap();
        assert_eq!(
            c.tree["nodes"]["attempt_0"]["prompt"],
            "original/reasoning/aime"
        );
        assert_eq!(
            c.prompts["original/reasoning/aime"],
            "From file: {{question}}"
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("`reasoning_prompt_template` is not used"))
        );
    }

    #[test]
    fn a_recorded_config_without_a_checkout_uses_its_own_templates() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("results/run/results.json");
        let tree = serde_json::json!({
            "experiment_name": "r", "data_path": "./data/x.csv", "reasoning_model": "accounts/fireworks/models/qwq-32b",
            "max_tokens": 10, "temperature": 0.6, "top_p": 0.9, "top_k": 4, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "experiment_type": "pass_k", "pass_k_iterations": 2,
            "prompts": {"reasoning": "aime"}, "reasoning_prompt_template": "Loaded: {question}",
        });
        let c = convert(&file, "", tree).unwrap();
        assert_eq!(
            c.prompts["inline/results/reasoning"],
            "Loaded: {{question}}"
        );
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("is not in a config/prompts/ folder"))
        );
    }

    #[test]
    fn summarize_defaults_follow_the_original() {
        let d = tempfile::tempdir().unwrap();
        let text = PASS.replace("experiment_type: pass_k", "experiment_type: summarize")
            + "reasoning_prompt_template: \"{question}\"\nimproved_prompt_template: \"{question} {summaries}\"\nsummarize_prompt_template: \"{reasoning}\"\nsummary_max_tokens: 50\n";
        let c = convert_text(d.path(), &text).unwrap();
        let t = &c.tree;
        // max_iterations 1, stop once correct, self summarizer keeping its post-think text
        assert_eq!(t["nodes"]["rounds"]["repeat"], 1);
        assert_eq!(t["nodes"]["rounds"]["when"], "not previous.attempt.correct");
        let s = &t["nodes"]["rounds"]["body"]["summary"];
        assert_eq!(s["keep_after_think"], true);
        assert_eq!(s["fallback_full_text"], false);
        assert_eq!(
            t["models"]["summarizer"]["model"],
            "accounts/fireworks/models/qwq-32b"
        );
        assert_eq!(t["models"]["summarizer"]["params"]["max_tokens"], 50);
        assert_eq!(t["models"]["summarizer"]["params"]["temperature"], 0.6);
        assert_eq!(
            t["models"]["summarizer"]["continuation"]["max_continuations"],
            16
        );
        assert_eq!(
            t["models"]["reasoner"]["continuation"]["max_total_tokens"],
            24576
        );
        assert_eq!(t["grade"]["extract"], "original_default");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_to(Path::new("/a/b/data/x.csv"), Path::new("/a/out")),
            "../b/data/x.csv"
        );
    }
}
