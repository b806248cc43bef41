//! The original tool's prompts: finding the checkout a config belongs to (the folder that
//! holds `config/`, from which the original resolved `data_path` and `config/prompts/`),
//! reading a named version from `config/prompts/<type>.yaml`, and turning its `{question}`,
//! `{reasoning}` and `{summaries}` placeholders (plain `str.replace` in the original) into
//! handlebars. Nothing else in a template is special: a literal `{{` is escaped.

#[cfg(test)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The checkout of the original tool a config sits in.
pub struct Checkout {
    /// The folder that holds `config/` (the original's working directory).
    pub root: PathBuf,
    /// `config/prompts/`, the nearest one found walking up from the config file.
    pub prompts: Option<PathBuf>,
}

/// Walks up from the config file to the nearest `config/` folder (the file itself is usually
/// in `config/experiments/`, `config/experiments/gpqa/` or `…/archive/`). Paths are made
/// absolute but symlinks are kept, so a layout built from links resolves like a checkout.
pub fn checkout(config_file: &Path) -> Checkout {
    let abs = std::path::absolute(config_file).unwrap_or_else(|_| config_file.to_path_buf());
    let start = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    for dir in start.ancestors() {
        if dir.file_name().is_some_and(|n| n == "config") {
            let prompts = dir.join("prompts");
            return Checkout {
                root: dir.parent().unwrap_or(Path::new("/")).to_path_buf(),
                prompts: prompts.is_dir().then_some(prompts),
            };
        }
        let prompts = dir.join("config").join("prompts");
        if prompts.is_dir() {
            return Checkout {
                root: dir.to_path_buf(),
                prompts: Some(prompts),
            };
        }
    }
    Checkout {
        root: start,
        prompts: None,
    }
}

/// The template of `version` in `<prompts>/<kind>.yaml` (`{version: {template: …}}`), or why not.
pub fn read_version(prompts: &Path, kind: &str, version: &str) -> Result<String, String> {
    let file = prompts.join(format!("{kind}.yaml"));
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let tree: Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("{} is not valid YAML: {e}", file.display()))?;
    let Some(entry) = tree.get(version) else {
        let mut names: Vec<&str> = tree
            .as_object()
            .map(|m| m.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        names.sort();
        return Err(format!(
            "prompt version `{version}` is not in {} (versions: {}); the original tool stops here too",
            file.display(),
            names.join(", ")
        ));
    };
    entry
        .get("template")
        .and_then(|t| t.as_str())
        .map(|s| s.to_string())
        .ok_or_else(|| {
            format!(
                "prompt version `{version}` in {} has no `template:` text",
                file.display()
            )
        })
}

/// The original's `{name}` placeholders and the handlebars expression each becomes.
/// `{summaries}` is the accumulated text the original built: for each earlier summary,
/// "\n\nATTEMPT i SUMMARY:\n" and the summary (i = the attempt it summarized, from 0).
pub fn to_handlebars(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.replace("{{", "\\{{");
    for (name, expr) in vars {
        out = out.replace(&format!("{{{name}}}"), expr);
    }
    out
}

/// Handlebars for the accumulated summaries.
/// (The empty comment keeps handlebars from treating the `{{#each}}` line as standalone and
/// eating its newline.)
pub const SUMMARIES: &str =
    "{{#each summaries}}{{!}}\n\nATTEMPT {{@index}} SUMMARY:\n{{this.text}}{{/each}}";

/// Which placeholders a template of each original prompt type may use.
pub fn vars_of(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "summarize" => vec![("question", "{{question}}"), ("reasoning", "{{trace}}")],
        "improved" => vec![("question", "{{question}}"), ("summaries", SUMMARIES)],
        _ => vec![("question", "{{question}}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_handlebars_and_braces_stay() {
        let t = "Solve {question} in \\boxed{} {{x}}\n{summaries}";
        let h = to_handlebars(t, &vars_of("improved"));
        assert!(h.starts_with("Solve {{question}} in \\boxed{} \\{{x}}"));
        assert!(h.contains("ATTEMPT {{@index}} SUMMARY"));
    }

    /// What the original sent: `str.replace` of each placeholder, with the summaries
    /// accumulated as "\n\nATTEMPT i SUMMARY:\n<text>".
    fn original_render(t: &str, q: &str, summaries: &[&str]) -> String {
        let acc: String = summaries
            .iter()
            .enumerate()
            .map(|(i, s)| format!("\n\nATTEMPT {i} SUMMARY:\n{s}"))
            .collect();
        t.replace("{question}", q).replace("{summaries}", &acc)
    }

    #[test]
    fn rendering_matches_the_originals_text_exactly() {
        let t = "Solve {question} in \\boxed{}.\n\nHere are summaries:\n{summaries}\n\nBased on them, {{go}}.\n";
        let h = to_handlebars(t, &vars_of("improved"));
        let prompts = BTreeMap::from([("p".to_string(), h)]);
        let tpl = crate::template::Templates::compile(&prompts).unwrap();
        for sums in [vec![], vec!["first"], vec!["first", "second\nline"]] {
            let data = serde_json::json!({
                "question": "Q<1>",
                "summaries": sums.iter().map(|s| serde_json::json!({"text": s})).collect::<Vec<_>>(),
            });
            assert_eq!(
                tpl.render("p", data).unwrap(),
                original_render(t, "Q<1>", &sums),
                "{} summaries",
                sums.len()
            );
        }
    }

    #[test]
    fn finds_the_checkout_above_experiments() {
        let d = tempfile::tempdir().unwrap();
        let exp = d.path().join("config/experiments/gpqa");
        std::fs::create_dir_all(&exp).unwrap();
        std::fs::create_dir_all(d.path().join("config/prompts")).unwrap();
        let c = checkout(&exp.join("x.yaml"));
        assert_eq!(c.root, d.path());
        assert_eq!(c.prompts.unwrap(), d.path().join("config/prompts"));
    }
}
