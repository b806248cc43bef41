//! Prompt templates: one handlebars registry (HTML escaping off, because prompts contain
//! `<think>` and `<`; strict mode on, so a missing variable is an error, never an empty
//! string), the `inc` helper for 1-based labels, and a scan of the variables and partials a
//! template uses, with their lines, so that validation can check them against problem
//! columns, upstream nodes and prompt files at load time. The scan also bounds nesting
//! (blocks and subexpressions, [`MAX_NESTING`]) before handlebars' recursive parser sees a
//! template.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use handlebars::{Handlebars, handlebars_helper, no_escape};
use serde_json::Value;

mod fields;
pub use fields::Used;

handlebars_helper!(inc: |x: u64| x + 1);
handlebars_helper!(add: |x: i64, y: i64| x + y);

/// A compiled set of prompts.
pub struct Templates {
    hb: Handlebars<'static>,
    /// What each template may read of whole upstream outputs.
    used: std::collections::HashMap<String, Used>,
}

impl Templates {
    /// Compiles every prompt; errors are `(name, line, message)`.
    pub fn compile(
        prompts: &BTreeMap<String, String>,
    ) -> Result<Self, Vec<(String, Option<usize>, String)>> {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(no_escape);
        hb.set_strict_mode(true);
        hb.register_helper("inc", Box::new(inc));
        hb.register_helper("add", Box::new(add));
        let mut errs = Vec::new();
        let mut used = std::collections::HashMap::new();
        for (name, text) in prompts {
            if let Err(e) = hb.register_template_string(name, text) {
                let reason = e.reason().to_string();
                errs.push((name.clone(), e.pos().map(|(l, _)| l), reason));
            }
            used.insert(name.clone(), Used::of(text));
        }
        if errs.is_empty() {
            Ok(Templates { hb, used })
        } else {
            Err(errs)
        }
    }

    /// What template `name` may read of whole outputs (everything, for an unknown name).
    pub fn used(&self, name: &str) -> std::borrow::Cow<'_, Used> {
        match self.used.get(name) {
            Some(u) => std::borrow::Cow::Borrowed(u),
            None => std::borrow::Cow::Owned(Used::everything()),
        }
    }

    /// Renders `name` on `data`, which is handed over whole: handlebars would otherwise copy
    /// it (every upstream output and its texts) once more for each prompt.
    pub fn render(&self, name: &str, data: Value) -> anyhow::Result<String> {
        self.hb
            .render_with_context(name, &handlebars::Context::from(data))
            .map_err(|e| anyhow::anyhow!("rendering prompt `{name}`: {e}"))
    }
}

/// Deepest nesting of blocks (`{{#if}}…{{/if}}`) or subexpressions (`(f (g x))`) a
/// template may have.
pub const MAX_NESTING: usize = 32;

/// One variable a template reads: its root name, the first field after it, its line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Var {
    pub root: String,
    pub field: Option<String>,
    pub line: usize,
}

/// What a template uses.
#[derive(Debug, Default)]
pub struct Scan {
    /// Root variables read outside `#each` / `#with` blocks (first occurrence of each).
    pub vars: Vec<Var>,
    /// Partials included (`{{> name}}`), with their lines.
    pub partials: Vec<(String, usize)>,
}

/// Scans a template; `Err((line, message))` when it nests deeper than [`MAX_NESTING`].
pub fn scan(text: &str) -> Result<Scan, (usize, String)> {
    let line_of = |pos: usize| text[..pos].bytes().filter(|&b| b == b'\n').count() + 1;
    let mut blocks = 0usize;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i + 1 < bytes.len() {
        if bytes[i] == b'{' && bytes[i + 1] == b'{' {
            let rest = &text[i + 2..];
            let body = rest.trim_start_matches(['{', '~', ' ']);
            if body.starts_with('#') || body.starts_with('^') && !body.starts_with("^}") {
                blocks += 1;
            } else if body.starts_with('/') {
                blocks = blocks.saturating_sub(1);
            }
            let end = rest.find("}}").unwrap_or(rest.len());
            let mut parens = 0usize;
            for c in rest[..end].chars() {
                match c {
                    '(' => parens += 1,
                    ')' => parens = parens.saturating_sub(1),
                    _ => {}
                }
                if parens > MAX_NESTING {
                    return Err((
                        line_of(i),
                        format!("subexpressions nest deeper than {MAX_NESTING}"),
                    ));
                }
            }
            if blocks > MAX_NESTING {
                return Err((line_of(i), format!("blocks nest deeper than {MAX_NESTING}")));
            }
            i += 2 + end;
        } else {
            i += 1;
        }
    }
    let mut out = Scan::default();
    let mut seen = BTreeSet::new();
    for (root, field, pos) in variables(text) {
        if seen.insert((root.clone(), field.clone())) {
            out.vars.push(Var {
                root,
                field,
                line: line_of(pos),
            });
        }
    }
    static PARTIAL: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\{\{~?\s*>\s*([^\s}~]+)").expect("static regex"));
    for c in PARTIAL.captures_iter(text) {
        let m = c.get(1).expect("group");
        let name = m
            .as_str()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        if !out.partials.iter().any(|(n, _)| *n == name) {
            out.partials.push((name, line_of(m.start())));
        }
    }
    Ok(out)
}

const HELPERS: [&str; 12] = [
    "if", "unless", "each", "with", "lookup", "else", "inc", "add", "eq", "ne", "len", "log",
];

/// The root variable names a template reads outside of `#each` / `#with` blocks (inside
/// them, only `../` and `@root.` paths are checked), with the first field after each.
pub fn root_variables(text: &str) -> BTreeSet<(String, Option<String>)> {
    variables(text)
        .into_iter()
        .map(|(r, f, _)| (r, f))
        .collect()
}

/// Root variables with the byte position of their mustache.
fn variables(text: &str) -> Vec<(String, Option<String>, usize)> {
    static MUSTACHE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\{\{\{?~?\s*([#/^!>]?)\s*([^}]*?)~?\s*\}?\}\}").expect("static regex")
    });
    let re = &*MUSTACHE;
    let mut out = Vec::new();
    let mut depth_scoped = 0usize; // depth of each/with blocks
    let mut stack: Vec<bool> = Vec::new();
    for c in re.captures_iter(text) {
        let pos = c.get(0).map(|m| m.start()).unwrap_or(0);
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
            out.push((root, segs.next().map(|s| s.to_string()), pos));
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
    fn scan_names_lines_partials_and_bounds_nesting() {
        let s = scan("a\n{{question}}\n{{> common/head}}\n{{problem.level}}").unwrap();
        assert_eq!(
            s.vars[0],
            Var {
                root: "question".into(),
                field: None,
                line: 2
            }
        );
        assert_eq!(s.vars[1].line, 4);
        assert_eq!(s.partials, vec![("common/head".to_string(), 3)]);
        let deep = "{{#if a}}".repeat(40) + &"{{/if}}".repeat(40);
        assert!(scan(&deep).unwrap_err().1.contains("nest deeper"));
        let ok = "{{#if a}}".repeat(10) + &"{{/if}}".repeat(10);
        assert!(scan(&ok).is_ok());
        let parens = format!("{{{{inc {}1{}}}}}", "(".repeat(50), ")".repeat(50));
        assert!(scan(&parens).is_err());
    }

    #[test]
    fn strict_and_unescaped() {
        let p: BTreeMap<String, String> =
            [("a".to_string(), "<think>{{x}}</think>".to_string())].into();
        let t = Templates::compile(&p).unwrap();
        assert_eq!(
            t.render("a", serde_json::json!({"x": "1 < 2"})).unwrap(),
            "<think>1 < 2</think>"
        );
        assert!(t.render("a", serde_json::json!({})).is_err());
    }
}
