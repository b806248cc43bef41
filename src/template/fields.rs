//! Which fields of an upstream output a template can read, so the data a prompt renders
//! with holds only those (an output carries its prompt, text and reasoning: copying them all
//! for every prompt was a measurable part of a run).
//!
//! The analysis is conservative: [`Used::of`] gives up (every field kept) on anything whose
//! result could depend on fields it does not name — partials, inline partials, `@key`,
//! `lookup`, `len`, `log`, a bare `this` or `.`, or an `#each` over something other than a
//! plain variable. Otherwise every identifier written anywhere in a mustache is a field that
//! may be read; a whole output bound to a variable keeps exactly those of its fields, and one
//! that `#each` iterates is kept whole (iterating an object visits all of its fields).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// What a template may read of whole outputs.
#[derive(Debug, Clone, Default)]
pub struct Used {
    /// Every identifier in the template's mustaches (`None`: keep every field).
    words: Option<BTreeSet<String>>,
    /// Variables `#each` iterates.
    iterated: BTreeSet<String>,
}

const GIVE_UP_WORDS: [&str; 4] = ["lookup", "len", "log", "this"];

impl Used {
    /// The analysis of one template's text.
    pub fn of(text: &str) -> Used {
        let mut words = BTreeSet::new();
        let mut iterated = BTreeSet::new();
        let mut block_params = BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let body = after[..end].trim_matches(|c: char| c == '{' || c == '~' || c == '}');
            rest = &after[end + 2..];
            let body = body.trim();
            if body.starts_with('!') {
                continue;
            }
            if body.starts_with('>') || body.starts_with("#>") || body.starts_with("#*") {
                return Used::everything();
            }
            if body.contains("@key") {
                return Used::everything();
            }
            let mut tokens = body
                .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                .filter(|t| !t.is_empty());
            if let Some(first) = tokens.clone().next()
                && first == "#each"
            {
                let target = tokens.nth(1).unwrap_or("");
                let target = target
                    .trim_start_matches("@root.")
                    .trim_start_matches("../");
                let plain =
                    !target.is_empty() && target.chars().all(|c| c.is_alphanumeric() || c == '_');
                if !plain || block_params.contains(target) {
                    return Used::everything();
                }
                iterated.insert(target.to_string());
            }
            let mut in_params = false;
            for t in body.split(|c: char| c.is_whitespace() || c == '(' || c == ')') {
                if t == "." || t == "this" || t == "./" {
                    return Used::everything();
                }
                if t.starts_with('|') {
                    in_params = true;
                }
                for w in t.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')) {
                    if w.is_empty() {
                        continue;
                    }
                    if GIVE_UP_WORDS.contains(&w) && t.trim_start_matches('#') == w {
                        return Used::everything();
                    }
                    if in_params {
                        block_params.insert(w.to_string());
                    }
                    words.insert(w.to_string());
                }
                if t.ends_with('|') && t.len() > 1 || t == "|" && in_params {
                    in_params = false;
                }
            }
        }
        Used {
            words: Some(words),
            iterated,
        }
    }

    /// Keeps every field of every output.
    pub fn everything() -> Used {
        Used::default()
    }

    /// The fields of `output` a template may read when it is bound to variable `name`
    /// (`None` for a list item: lists are iterated, their items read by field name).
    pub fn select(&self, name: Option<&str>, output: &Map<String, Value>) -> Map<String, Value> {
        let Some(words) = &self.words else {
            return output.clone();
        };
        if name.is_some_and(|n| self.iterated.contains(n)) {
            return output.clone();
        }
        let mut kept: Map<String, Value> = output
            .iter()
            .filter(|(k, _)| words.contains(k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // an output is never emptied: `{{#if input}}` tests that it has fields
        if kept.is_empty()
            && let Some((k, v)) = output.iter().next()
        {
            kept.insert(k.clone(), v.clone());
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn out() -> Map<String, Value> {
        json!({"text": "T", "prompt": "a long prompt", "reasoning": "R", "round": 1})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn keeps_the_fields_named_and_gives_up_where_it_cannot_tell() {
        let u = Used::of("{{#each summaries}}Attempt {{@index}}: {{this.text}}{{/each}}");
        let kept = u.select(None, &out());
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["text"]);
        let u = Used::of("{{#if input}}{{input.reasoning}}{{/if}} {{question}}");
        assert_eq!(
            u.select(Some("input"), &out()).keys().collect::<Vec<_>>(),
            ["reasoning"]
        );
        // never emptied
        assert_eq!(Used::of("{{question}}").select(Some("x"), &out()).len(), 1);
        for t in [
            "{{> common/head}}",
            "{{#each input}}{{@key}}{{/each}}",
            "{{lookup input field}}",
            "{{len input}}",
            "{{#each summaries}}{{this}}{{/each}}",
            "{{#each summaries}}{{.}}{{/each}}",
            "{{#each input.items}}{{x}}{{/each}}",
            "{{#each summaries as |s|}}{{#each s}}{{@index}}{{/each}}{{/each}}",
            "{{#*inline \"p\"}}{{text}}{{/inline}}",
        ] {
            assert_eq!(Used::of(t).select(Some("input"), &out()).len(), 4, "{t}");
        }
        // an output that `#each` iterates is kept whole
        let u = Used::of("{{#each input}}{{@index}}{{/each}}");
        assert_eq!(u.select(Some("input"), &out()).len(), 4);
        assert_eq!(u.select(Some("other"), &out()).len(), 1);
    }

    /// Every prompt file of the repository renders the same on trimmed data as on whole
    /// outputs (the trimming must never change a prompt, hence a cache key).
    #[test]
    fn the_repositorys_prompts_render_the_same_on_trimmed_data() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let mut prompts = std::collections::BTreeMap::new();
        for dir in std::fs::read_dir(&root).unwrap() {
            for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                let path = f.unwrap().path();
                let name = path.strip_prefix(&root).unwrap().with_extension("");
                prompts.insert(
                    name.to_string_lossy().into_owned(),
                    std::fs::read_to_string(&path).unwrap(),
                );
            }
        }
        assert!(prompts.len() >= 5, "{prompts:?}");
        let t = crate::template::Templates::compile(&prompts).unwrap();
        let whole = Value::Object(out());
        for name in prompts.keys() {
            let used = t.used(name);
            let data = |o: &dyn Fn(Option<&str>) -> Value| {
                json!({
                    "question": "Q", "round": 2, "sample": 0, "trace": "TR",
                    "chunk_index": 0, "chunk_count": 1, "input": o(Some("input")),
                    "summaries": [o(None), o(None)], "previous": o(Some("previous")),
                })
            };
            let full = t.render(name, data(&|_| whole.clone()));
            let trimmed = t.render(name, data(&|n| Value::Object(used.select(n, &out()))));
            assert_eq!(
                full.as_ref().map_err(|e| e.to_string()),
                trimmed.as_ref().map_err(|e| e.to_string()),
                "{name}"
            );
            if name == "reason/with_summaries" {
                assert!(
                    full.unwrap().contains("Attempt 0:\nT\n"),
                    "the summaries' texts render"
                );
            }
        }
    }
}
