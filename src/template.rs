//! Prompt templates: one handlebars registry (HTML escaping off, because prompts contain
//! `<think>` and `<`; strict mode on, so a missing variable is an error, never an empty
//! string), the `inc` helper for 1-based labels, and a scan of the variables a template uses
//! so that `resolve` can check them against problem columns and upstream nodes at load time.

use std::collections::{BTreeMap, BTreeSet};

use handlebars::{Handlebars, handlebars_helper, no_escape};
use serde_json::Value;

handlebars_helper!(inc: |x: u64| x + 1);
handlebars_helper!(add: |x: i64, y: i64| x + y);

/// A compiled set of prompts.
pub struct Templates {
    hb: Handlebars<'static>,
}

impl Templates {
    /// Compiles every prompt; errors are `(name, message)`.
    pub fn compile(prompts: &BTreeMap<String, String>) -> Result<Self, Vec<(String, String)>> {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(no_escape);
        hb.set_strict_mode(true);
        hb.register_helper("inc", Box::new(inc));
        hb.register_helper("add", Box::new(add));
        let mut errs = Vec::new();
        for (name, text) in prompts {
            if let Err(e) = hb.register_template_string(name, text) {
                errs.push((name.clone(), e.to_string()));
            }
        }
        if errs.is_empty() {
            Ok(Templates { hb })
        } else {
            Err(errs)
        }
    }

    pub fn render(&self, name: &str, data: &Value) -> anyhow::Result<String> {
        self.hb
            .render(name, data)
            .map_err(|e| anyhow::anyhow!("rendering prompt `{name}`: {e}"))
    }
}

const HELPERS: [&str; 12] = [
    "if", "unless", "each", "with", "lookup", "else", "inc", "add", "eq", "ne", "len", "log",
];

/// The root variable names a template reads outside of `#each` / `#with` blocks (inside
/// them, only `../` and `@root.` paths are checked), with the first field after each.
pub fn root_variables(text: &str) -> BTreeSet<(String, Option<String>)> {
    let re =
        regex::Regex::new(r"\{\{\{?~?\s*([#/^!>]?)\s*([^}]*?)~?\s*\}?\}\}").expect("static regex");
    let mut out = BTreeSet::new();
    let mut depth_scoped = 0usize; // depth of each/with blocks
    let mut stack: Vec<bool> = Vec::new();
    for c in re.captures_iter(text) {
        let sigil = c.get(1).map(|m| m.as_str()).unwrap_or("");
        let body = c.get(2).map(|m| m.as_str()).unwrap_or("");
        if sigil == "!" || body.starts_with('!') {
            continue;
        }
        let mut words = body.split_whitespace();
        let first = words.next().unwrap_or("");
        match sigil {
            "/" => {
                if stack.pop() == Some(true) {
                    depth_scoped -= 1;
                }
                continue;
            }
            ">" => continue,
            _ => {}
        }
        let args: Vec<&str> = if sigil == "#" || sigil == "^" {
            let scoped = first == "each" || first == "with";
            stack.push(scoped);
            words.collect()
        } else if HELPERS.contains(&first) {
            words.collect()
        } else {
            vec![first]
        };
        for a in args {
            if a == "as" {
                break; // block parameters (`as |s|`) name this block's items, not data
            }
            let a = a.trim_matches(|c| c == '(' || c == ')');
            if a.is_empty()
                || a.contains('=')
                || a.starts_with('"')
                || a.starts_with('\'')
                || a.parse::<f64>().is_ok()
                || a == "true"
                || a == "false"
                || a == "null"
            {
                continue;
            }
            let path = if let Some(p) = a.strip_prefix("@root.") {
                p
            } else if a.starts_with("../") {
                a.trim_start_matches("../")
            } else if a.starts_with('@')
                || a.starts_with("this")
                || a == "else"
                || HELPERS.contains(&a)
                || depth_scoped > 0
            {
                continue;
            } else {
                a
            };
            let mut segs = path.split(['.', '/']);
            let root = segs.next().unwrap_or("").to_string();
            if root.is_empty() {
                continue;
            }
            out.insert((root, segs.next().map(|s| s.to_string())));
        }
        if (sigil == "#" || sigil == "^") && stack.last() == Some(&true) {
            depth_scoped += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_root_variables() {
        assert!(
            root_variables("{{#each summaries as |s i|}}{{s.text}}{{/each}}")
                .iter()
                .map(|v| v.0.as_str())
                .eq(["summaries"])
        );
        let t = "Q: {{question}}\n{{#each summaries}}Attempt {{@index}}: {{this.text}} {{text}} {{../question}}{{/each}}{{#if attempt_0.correct}}x{{/if}}{{inc 2}} {{{raw.text}}}";
        let v: Vec<_> = root_variables(t).into_iter().collect();
        assert_eq!(
            v,
            vec![
                ("attempt_0".to_string(), Some("correct".to_string())),
                ("question".to_string(), None),
                ("raw".to_string(), Some("text".to_string())),
                ("summaries".to_string(), None),
            ]
        );
    }

    #[test]
    fn strict_and_unescaped() {
        let p: BTreeMap<String, String> =
            [("a".to_string(), "<think>{{x}}</think>".to_string())].into();
        let t = Templates::compile(&p).unwrap();
        assert_eq!(
            t.render("a", &serde_json::json!({"x": "1 < 2"})).unwrap(),
            "<think>1 < 2</think>"
        );
        assert!(t.render("a", &serde_json::json!({})).is_err());
    }
}
