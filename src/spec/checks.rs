//! The named checks of one expanded node, run by `resolve` in the order of [`NODE_CHECKS`]
//! before the graph is built. Each check looks at one thing (the kind, the kind's own fields,
//! what the kind needs, the model, the truth column, the output fields it reads, the prompt
//! and its variables), pushes every problem it finds and never stops the others; a node of
//! an unknown kind gets only the first. What a check knows about a kind it asks the kind
//! (`crate::nodes`): its fields, needs, provides and whether it is graded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::load::{Loc, LocMap};
use super::{Binding, Diag, Node, PipelineSpec, Ref};
use crate::nodes::{self, KindInfo, Need, params::did_you_mean};
use crate::template;

/// What every node check sees.
pub struct NodeCx<'a> {
    pub spec: &'a PipelineSpec,
    pub locs: &'a LocMap,
    /// The problem set's columns; `None` when it did not load (column checks are skipped).
    pub columns: Option<&'a [String]>,
    pub prompts_dir: PathBuf,
    /// Every node by id.
    pub nodes: HashMap<String, NodeFacts>,
}

/// What a check may ask about another node.
pub struct NodeFacts {
    pub kind: String,
    /// The name in the file (`attempt` for `attempt_3`).
    pub base: String,
    /// Whether its output has `answer` and `correct`.
    pub graded: bool,
}

/// Prompt name → template text, filled as prompts are read.
pub type Prompts = BTreeMap<String, String>;

type Check = fn(&mut Node, &KindInfo, &NodeCx, &mut Prompts, &mut Vec<Diag>);

/// Every check of a node whose kind is known, in order.
pub const NODE_CHECKS: &[(&str, Check)] = &[
    ("own_fields", own_fields),
    ("needs", needs),
    ("model_exists", model_exists),
    ("aggregate_without_when", aggregate_without_when),
    ("truth_column", truth_column),
    ("output_fields", output_fields),
    ("prompt_and_variables", prompt_and_variables),
];

fn at(cx: &NodeCx, n: &Node, k: &str) -> Loc {
    cx.locs.find(&format!("{}.{k}", n.path))
}

/// Runs every check of one node.
pub fn check_node(n: &mut Node, cx: &NodeCx, prompts: &mut Prompts, diags: &mut Vec<Diag>) {
    let Some(info) = nodes::info(&n.kind) else {
        let names = nodes::kind_names();
        diags.push(
            Diag::at(
                &at(cx, n, "kind"),
                format!("node `{}`: unknown kind `{}`", n.base, n.kind),
            )
            .hint(format!(
                "{}kinds: {}",
                did_you_mean(&n.kind, names.iter().copied()),
                names.join(", ")
            )),
        );
        return;
    };
    for (_, check) in NODE_CHECKS {
        check(n, info, cx, prompts, diags);
    }
}

/// The kind's own fields: unknown names (all of them, with the nearest valid one), wrong
/// types, ranges; on success the typed parameters are kept on the node.
fn own_fields(n: &mut Node, info: &KindInfo, cx: &NodeCx, _: &mut Prompts, diags: &mut Vec<Diag>) {
    let kind = nodes::kind(&n.kind).expect("known kind");
    match kind.prepare(n, cx.spec) {
        Ok(t) => n.typed = Some(t),
        Err(errs) => {
            for (field, msg, hint) in errs {
                let loc = if field.is_empty() {
                    cx.locs.find(&n.path)
                } else {
                    at(cx, n, &field)
                };
                let mut d = Diag::at(
                    &loc,
                    format!("node `{}` (kind `{}`): {msg}", n.base, info.name),
                );
                if let Some(h) = hint {
                    d = d.hint(h);
                }
                diags.push(d);
            }
        }
    }
}

/// `model:`, `prompt:` and `input:` as the kind needs them.
fn needs(n: &mut Node, info: &KindInfo, cx: &NodeCx, _: &mut Prompts, diags: &mut Vec<Diag>) {
    for (what, need, present) in [
        ("model", info.model, n.model.is_some()),
        ("prompt", info.prompt, n.prompt.is_some()),
        ("input", info.input, n.input.is_some()),
    ] {
        let waived = (what == "prompt" || what == "model") && nodes::summarize::without_model(n);
        if need == Need::Required && !present && !waived {
            diags.push(
                Diag::at(
                    &cx.locs.find(&n.path),
                    format!("node `{}` (kind `{}`) needs `{what}:`", n.base, n.kind),
                )
                .hint(match what {
                    "model" => format!(
                        "add `model:` naming one of `models:` ({})",
                        model_list(cx.spec)
                    ),
                    "prompt" => "add `prompt:` naming a file under prompts/ without .hbs, e.g. `prompt: reason/default`".into(),
                    _ => "add `input:` naming an upstream node, e.g. `input: attempt_0`".into(),
                }),
            );
        }
        if need == Need::Never && present {
            diags.push(
                Diag::at(
                    &at(cx, n, what),
                    format!("node `{}`: kind `{}` takes no `{what}:`", n.base, n.kind),
                )
                .hint(format!("remove `{what}:`")),
            );
        }
    }
}

fn model_list(spec: &PipelineSpec) -> String {
    spec.models.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn model_exists(n: &mut Node, _: &KindInfo, cx: &NodeCx, _: &mut Prompts, diags: &mut Vec<Diag>) {
    if let Some(m) = &n.model
        && !cx.spec.models.contains_key(m)
    {
        diags.push(
            Diag::at(
                &at(cx, n, "model"),
                format!("node `{}`: unknown model `{m}`", n.base),
            )
            .hint(format!(
                "{}models: {}",
                did_you_mean(m, cx.spec.models.keys().map(String::as_str)),
                model_list(cx.spec)
            )),
        );
    }
}

fn aggregate_without_when(
    n: &mut Node,
    info: &KindInfo,
    cx: &NodeCx,
    _: &mut Prompts,
    diags: &mut Vec<Diag>,
) {
    if info.aggregate && n.when.is_some() {
        diags.push(
            Diag::at(&at(cx, n, "when"), format!("node `{}`: kind `{}` runs once over all samples; `when:` cannot read one sample's output", n.base, n.kind))
                .hint("put the condition on the per-sample nodes instead"),
        );
    }
}

fn truth_column(n: &mut Node, _: &KindInfo, cx: &NodeCx, _: &mut Prompts, diags: &mut Vec<Diag>) {
    if let Some(col) = n.params.get("truth_column").and_then(|c| c.as_str())
        && let Some(columns) = cx.columns
        && !columns.iter().any(|c| c == col)
    {
        diags.push(
            Diag::at(
                &at(cx, n, "truth_column"),
                format!("node `{}`: the problem set has no column `{col}`", n.base),
            )
            .hint(format!(
                "{}columns: {}",
                did_you_mean(col, columns.iter().map(String::as_str)),
                columns.join(", ")
            )),
        );
    }
}

/// Every `node.field` the node reads (input, vars, when) exists on that node's kind.
fn output_fields(n: &mut Node, _: &KindInfo, cx: &NodeCx, _: &mut Prompts, diags: &mut Vec<Diag>) {
    let mut refs: Vec<(String, &Ref)> = Vec::new();
    if let Some(r) = &n.input {
        refs.push(("input".into(), r));
    }
    for (k, b) in &n.vars {
        match b {
            Binding::One(r) => refs.push((format!("vars.{k}"), r)),
            Binding::List(rs) => refs.extend(rs.iter().map(|r| (format!("vars.{k}"), r))),
        }
    }
    if let Some(c) = &n.when {
        refs.extend(c.refs().into_iter().map(|r| ("when".to_string(), r)));
    }
    // messages name nodes as written (`summary`, not `summary_3`), so that a misspelled
    // field read by every round is one error, not one per round
    let mut seen = HashSet::new();
    for (field, r) in refs {
        if let Some(f) = &r.field
            && seen.insert((field.clone(), r.node.clone(), f.clone()))
        {
            check_field(&r.node, f, cx, &at(cx, n, &field), &n.base, diags);
        }
    }
}

/// `node.field` exists: the kind provides it (and, for a verdict, the node is graded).
fn check_field(node: &str, field: &str, cx: &NodeCx, loc: &Loc, base: &str, diags: &mut Vec<Diag>) {
    let Some(facts) = cx.nodes.get(node) else {
        return;
    };
    let Some(k) = nodes::info(&facts.kind) else {
        return;
    };
    let graded = facts.graded;
    let by_grading = matches!(k.graded, nodes::Graded::ByGradeBlock { .. })
        && ["answer", "correct"].contains(&field);
    if by_grading && !graded {
        diags.push(
            Diag::at(loc, format!("node `{base}` reads `{field}` of a `{}` node that is not graded", k.name))
                .hint("add a pipeline `grade:` block (e.g. `grade: {extract: boxed, compare: math}`), or drop `graded: false`"),
        );
        return;
    }
    if !k.provides.contains(&field) {
        diags.push(
            Diag::at(
                loc,
                format!(
                    "node `{base}` reads `{field}`, which kind `{}` does not provide",
                    k.name
                ),
            )
            .hint(format!(
                "{}`{}` provides: {}",
                did_you_mean(field, k.provides.iter().copied()),
                k.name,
                k.provides.join(", ")
            )),
        );
    }
}

/// The prompt file exists, its partials exist, and every variable it reads is provided:
/// a problem column (also as `problem.COLUMN`), a `vars:` entry, the kind's own variables or
/// an upstream node (which adds the edge). Errors name the pipeline's line and the
/// template's.
fn prompt_and_variables(
    n: &mut Node,
    info: &KindInfo,
    cx: &NodeCx,
    prompts: &mut Prompts,
    diags: &mut Vec<Diag>,
) {
    let Some(prompt) = n.prompt.clone() else {
        return;
    };
    if read_prompt(&prompt, cx, prompts).is_none() {
        diags.push(
            Diag::at(
                &at(cx, n, "prompt"),
                format!(
                    "node `{}`: prompt `{prompt}` not found (looked for {})",
                    n.base,
                    prompt_file(cx, &prompt).display()
                ),
            )
            .hint("prompts are handlebars files under prompts/, named without the .hbs extension"),
        );
        return;
    }
    let mut scans = Vec::new();
    let mut stack = Vec::new();
    if let Err(e) = walk_partials(&prompt, cx, prompts, &mut stack, &mut scans) {
        diags.push(
            Diag::at(
                &at(cx, n, "prompt"),
                format!("node `{}`: prompt `{prompt}`: {}", n.base, e.0),
            )
            .hint(e.1),
        );
        return;
    }
    let mut provided: HashSet<&str> = ["problem", "round", "sample"].into();
    let columns = cx.columns.unwrap_or_default();
    provided.extend(columns.iter().map(|s| s.as_str()));
    provided.extend(info.template_vars.iter().copied());
    if n.input.is_some() {
        provided.insert("input");
    }
    let var_names: Vec<String> = n.vars.iter().map(|(k, _)| k.clone()).collect();
    provided.extend(var_names.iter().map(|s| s.as_str()));
    let here = at(cx, n, "prompt");
    let vars = scans
        .iter()
        .flat_map(|(file, scan)| scan.vars.iter().map(move |v| (file, v)));
    for (file, v) in vars {
        let (root, field) = (&v.root, &v.field);
        let tloc = format!("{file}:{}", v.line);
        if root == "problem" {
            if let (Some(f), Some(_)) = (field, cx.columns)
                && !columns.iter().any(|c| c == f)
            {
                diags.push(
                    Diag::at(&here, format!("node `{}`: prompt `{prompt}` ({tloc}) uses `{{{{problem.{f}}}}}`, but the problem set has no column `{f}`", n.base))
                        .hint(format!("{}columns: {}", did_you_mean(f, columns.iter().map(String::as_str)), columns.join(", "))),
                );
            }
            continue;
        }
        if provided.contains(root.as_str()) {
            continue;
        }
        if cx.nodes.contains_key(root) && *root != n.id {
            if let Some(f) = field {
                let loc = Loc {
                    file: here.file.clone(),
                    line: here.line,
                };
                check_field(root, f, cx, &loc, &format!("{} ({tloc})", n.base), diags);
            }
            if !n.template_refs.contains(root) {
                n.template_refs.push(root.clone());
            }
            continue;
        }
        if cx.columns.is_none() {
            continue;
        }
        let mut avail: Vec<&str> = provided.iter().copied().collect();
        avail.sort();
        diags.push(Diag::at(&here, format!("node `{}`: prompt `{prompt}` ({tloc}) uses `{{{{{root}}}}}`, which neither a problem column, a `vars:` entry nor a node provides", n.base))
            .hint(format!("{}available here: {}; add it under `vars:` (e.g. `vars: {{{root}: all.summary}}`)", did_you_mean(root, avail.iter().copied()), avail.join(", "))));
    }
}

/// Deepest chain of partials (`{{> a}}` in a prompt, `{{> b}}` in `a`, …).
pub const MAX_PARTIAL_DEPTH: usize = 8;

/// Scans prompt `name` and, depth first, every partial it includes: (file shown, scan)
/// per template, or (message, hint) for a missing partial, a loop or too deep a chain.
fn walk_partials(
    name: &str,
    cx: &NodeCx,
    prompts: &mut Prompts,
    stack: &mut Vec<String>,
    out: &mut Vec<(String, template::Scan)>,
) -> Result<(), (String, String)> {
    let file = prompt_file(cx, name).display().to_string();
    let text = read_prompt(name, cx, prompts).ok_or_else(|| {
        (
            format!(
                "the partial `{{{{> {name}}}}}` (in {}) does not exist (looked for {file})",
                stack
                    .last()
                    .map(|s| prompt_file(cx, s).display().to_string())
                    .unwrap_or_default()
            ),
            "a partial is another prompt file under prompts/, named without .hbs".to_string(),
        )
    })?;
    let scan = template::scan(&text).map_err(|(line, e)| {
        (
            format!("{file}:{line}: {e}"),
            "split the template into partials or flatten its blocks".to_string(),
        )
    })?;
    stack.push(name.to_string());
    if stack.len() > MAX_PARTIAL_DEPTH {
        return Err((
            format!(
                "partials nest deeper than {MAX_PARTIAL_DEPTH}: {}",
                stack.join(" > ")
            ),
            "include fewer levels of partials".into(),
        ));
    }
    let partials = scan.partials.clone();
    out.push((file.clone(), scan));
    for (p, line) in partials {
        if stack.contains(&p) {
            return Err((
                format!(
                    "{file}:{line}: `{{{{> {p}}}}}` includes itself ({} > {p})",
                    stack.join(" > ")
                ),
                "a partial cannot include a template that includes it".into(),
            ));
        }
        walk_partials(&p, cx, prompts, stack, out).map_err(|(m, h)| {
            if m.starts_with("the partial") {
                (format!("{file}:{line}: {m}"), h)
            } else {
                (m, h)
            }
        })?;
    }
    stack.pop();
    Ok(())
}

fn prompt_file(cx: &NodeCx, name: &str) -> PathBuf {
    cx.prompts_dir.join(format!("{name}.hbs"))
}

/// The text of prompt `name` (read once), or None when there is no such file. A name that
/// would leave the prompts folder is no prompt.
fn read_prompt(name: &str, cx: &NodeCx, prompts: &mut Prompts) -> Option<String> {
    if let Some(t) = prompts.get(name) {
        return Some(t.clone());
    }
    let p = std::path::Path::new(name);
    if p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    let t = crate::data::read_text_capped(&prompt_file(cx, name), crate::data::MAX_PROMPT_BYTES)
        .ok()?;
    prompts.insert(name.to_string(), t.clone());
    Some(t)
}
