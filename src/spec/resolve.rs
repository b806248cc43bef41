//! From a pipeline file to a runnable `Pipeline`: loads the tree (`load`), applies `--set`
//! and CLI filters, decodes the typed top level, loads the problem set and prompts, expands
//! the nodes (`expand`) and checks everything a run needs — kinds and their fields, models,
//! prompt files and template variables, edges and output fields, cycles — collecting every
//! error with its file and line before anything runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use petgraph::graph::DiGraph;
use serde_json::Value;

use super::load::{self, LocMap};
use super::{Binding, Diag, LoadOptions, Node, Pipeline, PipelineSpec, Ref, expand};
use crate::data;
use crate::nodes::{self, Need};
use crate::template;

/// Resolves a path written in a pipeline: as given when absolute or present relative to the
/// working directory, else relative to the pipeline file's folder or the nearest folder above
/// it where it exists (so `data/x.csv` works from `pipelines/variants/` too).
pub fn resolve_path(rel: &str, pipeline_file: &Path) -> PathBuf {
    let p = PathBuf::from(rel);
    if p.is_absolute() || p.exists() {
        return p;
    }
    let dir = pipeline_file.parent().unwrap_or(Path::new("."));
    for base in dir.ancestors() {
        let c = base.join(rel);
        if c.exists() {
            return c;
        }
    }
    p
}

pub fn resolve(path: &Path, opts: &LoadOptions) -> Result<Pipeline, Vec<Diag>> {
    let (mut tree, mut locs, preloaded, notes) = load_any(path)?;
    let mut diags = Vec::new();
    for s in &opts.sets {
        if let Err(d) = load::apply_set(&mut tree, &mut locs, s) {
            diags.push(d);
        }
    }
    apply_cli_filters(&mut tree, &mut locs, opts);
    if !diags.is_empty() {
        return Err(diags);
    }
    let spec: PipelineSpec = match serde_path_to_error::deserialize(tree.clone()) {
        Ok(s) => s,
        Err(e) => {
            let p = e.path().to_string();
            let p = if p == "." { String::new() } else { p };
            let inner = e.into_inner().to_string();
            let hint = if inner.contains("unknown field") {
                "remove or rename the field; see README: pipeline format"
            } else if inner.contains("missing field") {
                "add the field; see README: pipeline format"
            } else {
                "see README: pipeline format"
            };
            return Err(vec![
                Diag::at(&locs.find(&p), format!("`{p}`: {inner}")).hint(hint),
            ]);
        }
    };
    if spec.samples == 0 {
        diags.push(Diag::at(
            &locs.find("samples"),
            "`samples:` must be at least 1",
        ));
    }
    super::model::check_models(&spec, &locs, path, &mut diags);

    // problem set
    let problems_path = resolve_path(&spec.problems.path, path);
    let mut problem_set = None;
    let mut problems = Vec::new();
    match data::load(&problems_path) {
        Err(e) => {
            let mut d = Diag::at(&locs.find("problems.path"), e);
            let stem = problems_path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("")
                .replace('_', "-");
            let pullable = crate::datasets::registry::names()
                .into_iter()
                .find(|n| *n == stem);
            d = match pullable {
                Some(name) if !problems_path.exists() => d.hint(format!(
                    "this problem set is not shipped with distill: fetch it with `distill data pull {name}`, or point elsewhere with --set problems.path=PATH"
                )),
                _ => d.hint("set `problems.path` (relative to the working directory or the project) or pass --set problems.path=PATH"),
            };
            diags.push(d);
        }
        Ok(set) => {
            match data::select(&set, &spec.problems.filters()) {
                Ok(p) => problems = p,
                Err(es) => {
                    for e in es {
                        diags.push(Diag::at(&locs.find("problems"), e).hint("filters use 0-based inclusive index_range a-b, or ids from the CSV's id column"));
                    }
                }
            }
            problem_set = Some(set);
        }
    }

    // nodes
    let (mut nodes, mut expand_errors) = expand::expand_partial(&spec.nodes, &locs);
    diags.append(&mut expand_errors);
    let prompts_dir = resolve_path(spec.prompts_dir.as_deref().unwrap_or("prompts"), path);
    let mut prompts = preloaded;
    let columns: Vec<String> = problem_set
        .as_ref()
        .map(|s| s.columns.clone())
        .unwrap_or_default();
    let kinds: HashMap<String, &'static nodes::KindInfo> = nodes::registry()
        .iter()
        .map(|k| (k.info().name.to_string(), k.info()))
        .collect();
    // node id → (kind, graded: whether `answer` / `correct` exist on a reason/continue node)
    let node_kind: HashMap<String, (String, bool)> = nodes
        .iter()
        .map(|n| {
            let graded = spec.grade.is_some()
                && n.params.get("graded").and_then(|g| g.as_bool()) != Some(false);
            (n.id.clone(), (n.kind.clone(), graded))
        })
        .collect();
    for n in &mut nodes {
        check_node(
            n,
            &spec,
            &locs,
            &kinds,
            &node_kind,
            &columns,
            problem_set.is_some(),
            &prompts_dir,
            &mut prompts,
            &mut diags,
        );
    }
    if let Some(g) = &spec.grade
        && g.rel_tol.is_some_and(|t| !(t.is_finite() && t >= 0.0))
    {
        diags.push(Diag::at(
            &locs.find("grade.rel_tol"),
            "`rel_tol` must be a number of at least 0",
        ));
    }
    if let Some(g) = &spec.grade {
        if let Err(e) = crate::grade::check_extractor(&g.extract) {
            diags.push(Diag::at(&locs.find("grade.extract"), e));
        }
        if g.compare == crate::grade::Compare::LlmJudge {
            match &g.judge_model {
                None => diags.push(
                    Diag::at(
                        &locs.find("grade"),
                        "`compare: llm_judge` needs `judge_model:`",
                    )
                    .hint("name one of `models:`"),
                ),
                Some(m) if !spec.models.contains_key(m) => diags.push(Diag::at(
                    &locs.find("grade.judge_model"),
                    format!("unknown model `{m}`"),
                )),
                _ => {}
            }
        }
    }
    if let Err(es) = template::Templates::compile(&prompts) {
        for (name, e) in es {
            diags.push(Diag::new(
                &prompts_dir
                    .join(format!("{name}.hbs"))
                    .display()
                    .to_string(),
                None,
                format!("template does not compile: {e}"),
            ));
        }
    }
    let order = match topo_order(&nodes) {
        Ok(o) => o,
        Err(cycle) => {
            let first = cycle.split(", ").next().unwrap_or_default();
            let n = nodes
                .iter()
                .find(|n| n.id == first)
                .expect("cycle node exists");
            diags.push(Diag::at(&locs.find(&n.path), format!("the graph has a cycle through nodes {cycle}"))
                .hint("a node cannot depend, directly or through others, on itself; check input/vars/when/after and template references"));
            Vec::new()
        }
    };
    if !diags.is_empty() {
        return Err(sorted(diags));
    }
    let mut by_id: HashMap<String, Node> = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
    let nodes: Vec<Node> = order
        .iter()
        .map(|id| by_id.remove(id).expect("node"))
        .collect();
    let problem_set = problem_set.expect("loaded");
    let mut warnings = notes;
    for group in data::duplicate_questions(&problems) {
        warnings.push(format!(
            "{}: problems {} have the same question; they share cache entries (use `samples:` for independent draws)",
            spec.problems.path,
            group.join(", ")
        ));
    }
    warnings.extend(super::model::model_warnings(&spec, &nodes, &locs));
    Ok(Pipeline {
        file: path.to_path_buf(),
        tree,
        spec,
        nodes,
        problems_path,
        problem_set,
        problems,
        prompts,
        warnings,
    })
}

/// A pipeline tree, its locations, prompts already known (name → text) and notes: from a
/// distill pipeline file, or converted from the original tool's flat config (`migrate`).
type Loaded = (Value, LocMap, BTreeMap<String, String>, Vec<String>);

fn load_any(path: &Path) -> Result<Loaded, Vec<Diag>> {
    let shown = path.display().to_string();
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok((tree, _)) = load::parse_yaml(&text, &shown)
        && crate::migrate::is_flat(&tree)
    {
        return match crate::migrate::convert(path, &text, tree) {
            Ok(c) => {
                let mut locs = LocMap::default();
                locs.root_file = shown.clone();
                for (p, line) in &c.lines {
                    locs.map_insert(
                        p,
                        load::Loc {
                            file: shown.clone(),
                            line: Some(*line),
                        },
                    );
                }
                let notes = c
                    .notes
                    .iter()
                    .map(|n| format!("{shown}: converted from the original tool's format: {n}"))
                    .collect();
                Ok((c.tree, locs, c.prompts, notes))
            }
            Err(f) => Err(f
                .issues
                .into_iter()
                .map(|i| {
                    let d = Diag::new(&shown, i.line, i.message);
                    match i.hint {
                        Some(h) => d.hint(h),
                        None => d,
                    }
                })
                .collect()),
        };
    }
    let (tree, locs) = load::load_file(path).map_err(|d| vec![d])?;
    Ok((tree, locs, BTreeMap::new(), Vec::new()))
}

fn sorted(mut d: Vec<Diag>) -> Vec<Diag> {
    d.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    d.dedup();
    d
}

fn apply_cli_filters(tree: &mut Value, locs: &mut LocMap, opts: &LoadOptions) {
    let f = &opts.filters;
    let Some(obj) = tree.as_object_mut() else {
        return;
    };
    let Some(p) = obj.get_mut("problems").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let cli = load::Loc {
        file: "command line".into(),
        line: None,
    };
    if let Some(ids) = &f.question_ids {
        p.remove("index_range");
        p.insert("question_ids".into(), serde_json::json!(ids));
        locs.map_insert("problems.question_ids", cli.clone());
    }
    if let Some(r) = &f.index_range {
        if f.question_ids.is_none() {
            p.remove("question_ids");
        }
        p.insert("index_range".into(), Value::String(r.clone()));
        locs.map_insert("problems.index_range", cli.clone());
    }
    if let Some(ex) = &f.exclude_question_ids {
        p.insert("exclude_question_ids".into(), serde_json::json!(ex));
        locs.map_insert("problems.exclude_question_ids", cli);
    }
}

#[allow(clippy::too_many_arguments)]
fn check_node(
    n: &mut Node,
    spec: &PipelineSpec,
    locs: &LocMap,
    kinds: &HashMap<String, &'static nodes::KindInfo>,
    node_kind: &HashMap<String, (String, bool)>,
    columns: &[String],
    have_columns: bool,
    prompts_dir: &Path,
    prompts: &mut BTreeMap<String, String>,
    diags: &mut Vec<Diag>,
) {
    let at = |k: &str| locs.find(&format!("{}.{k}", n.path));
    let Some(info) = kinds.get(&n.kind) else {
        diags.push(
            Diag::at(
                &at("kind"),
                format!("node `{}`: unknown kind `{}`", n.base, n.kind),
            )
            .hint(format!("kinds: {}", nodes::kind_names().join(", "))),
        );
        return;
    };
    for k in n.params.keys() {
        if !info.params.contains(&k.as_str()) {
            let allowed = if info.params.is_empty() {
                "none".to_string()
            } else {
                info.params.join(", ")
            };
            diags.push(Diag::at(&at(k), format!("node `{}`: unknown field `{k}` for kind `{}`", n.base, n.kind))
                .hint(format!("common fields: kind, model, prompt, input, vars, when, after, round; `{}` also takes: {allowed}", n.kind)));
        }
    }
    for (what, need, present) in [
        ("model", info.model, n.model.is_some()),
        ("prompt", info.prompt, n.prompt.is_some()),
        ("input", info.input, n.input.is_some()),
    ] {
        let waived = (what == "prompt" || what == "model") && kind_needs_no_prompt(n);
        if need == Need::Required && !present && !waived {
            diags.push(Diag::at(
                &locs.find(&n.path),
                format!("node `{}` (kind `{}`) needs `{what}:`", n.base, n.kind),
            ));
        }
        if need == Need::Never && present {
            diags.push(Diag::at(
                &at(what),
                format!("node `{}`: kind `{}` takes no `{what}:`", n.base, n.kind),
            ));
        }
    }
    if let Some(m) = &n.model
        && !spec.models.contains_key(m)
    {
        diags.push(
            Diag::at(
                &at("model"),
                format!("node `{}`: unknown model `{m}`", n.base),
            )
            .hint(format!(
                "models: {}",
                spec.models.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        );
    }
    if info.aggregate && n.when.is_some() {
        diags.push(
            Diag::at(&at("when"), format!("node `{}`: kind `{}` runs once over all samples; `when:` cannot read one sample's output", n.base, n.kind))
                .hint("put the condition on the per-sample nodes instead"),
        );
    }
    if let Some(col) = n.params.get("truth_column").and_then(|c| c.as_str())
        && have_columns
        && !columns.iter().any(|c| c == col)
    {
        diags.push(
            Diag::at(
                &at("truth_column"),
                format!("node `{}`: the problem set has no column `{col}`", n.base),
            )
            .hint(format!("columns: {}", columns.join(", "))),
        );
    }
    let kind = nodes::kind(&n.kind).expect("known");
    for (field, msg) in kind.check(n, spec) {
        diags.push(Diag::at(&at(&field), format!("node `{}`: {msg}", n.base)));
    }
    // output fields of references
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
    let mut seen = HashSet::new();
    for (field, r) in refs {
        if let Some(f) = &r.field {
            if !seen.insert((r.node.clone(), f.clone())) {
                continue;
            }
            check_field(&r.node, f, node_kind, kinds, &at(&field), &n.base, diags);
        }
    }
    // prompt file and its variables
    let Some(prompt) = n.prompt.clone() else {
        return;
    };
    let file = prompts_dir.join(format!("{prompt}.hbs"));
    let text = match prompts.get(&prompt) {
        Some(t) => t.clone(),
        None => match std::fs::read_to_string(&file) {
            Ok(t) => {
                prompts.insert(prompt.clone(), t.clone());
                t
            }
            Err(_) => {
                diags.push(Diag::at(&at("prompt"), format!("node `{}`: prompt `{prompt}` not found (looked for {})", n.base, file.display()))
                    .hint("prompts are handlebars files under prompts/, named without the .hbs extension"));
                return;
            }
        },
    };
    let mut provided: HashSet<&str> = ["problem", "round", "sample"].into();
    provided.extend(columns.iter().map(|s| s.as_str()));
    provided.extend(info.template_vars.iter().copied());
    if n.input.is_some() {
        provided.insert("input");
    }
    let var_names: Vec<String> = n.vars.iter().map(|(k, _)| k.clone()).collect();
    provided.extend(var_names.iter().map(|s| s.as_str()));
    for (root, field) in template::root_variables(&text) {
        if provided.contains(root.as_str()) {
            continue;
        }
        if node_kind.contains_key(&root) && root != n.id {
            if let Some(f) = &field {
                check_field(&root, f, node_kind, kinds, &at("prompt"), &n.base, diags);
            }
            if !n.template_refs.contains(&root) {
                n.template_refs.push(root);
            }
            continue;
        }
        if !have_columns {
            continue;
        }
        let mut avail: Vec<&str> = provided.iter().copied().collect();
        avail.sort();
        diags.push(Diag::at(&at("prompt"), format!("node `{}`: prompt `{prompt}` uses `{{{{{root}}}}}`, which neither a problem column, a `vars:` entry nor a node provides", n.base))
            .hint(format!("available here: {}; add it under `vars:` (e.g. `vars: {{{root}: all.summary}}`)", avail.join(", "))));
    }
}

/// Summaries with a non-LLM strategy need neither model nor prompt.
fn kind_needs_no_prompt(n: &Node) -> bool {
    nodes::summarize::without_model(n)
}

fn check_field(
    node: &str,
    field: &str,
    node_kind: &HashMap<String, (String, bool)>,
    kinds: &HashMap<String, &'static nodes::KindInfo>,
    loc: &load::Loc,
    base: &str,
    diags: &mut Vec<Diag>,
) {
    let Some(((_, graded), k)) = node_kind
        .get(node)
        .and_then(|e| Some((e, kinds.get(&e.0)?)))
    else {
        return;
    };
    let by_grading =
        matches!(k.name, "reason" | "continue") && ["answer", "correct"].contains(&field);
    if by_grading && !graded {
        diags.push(
            Diag::at(loc, format!("node `{base}`: `{node}.{field}` does not exist: `{node}` is not graded"))
                .hint("add a pipeline `grade:` block (e.g. `grade: {extract: boxed, compare: math}`), or drop `graded: false`"),
        );
        return;
    }
    if !k.provides.contains(&field) {
        diags.push(
            Diag::at(
                loc,
                format!(
                    "node `{base}`: `{node}.{field}` — kind `{}` provides no field `{field}`",
                    k.name
                ),
            )
            .hint(format!("`{}` provides: {}", k.name, k.provides.join(", "))),
        );
    }
}

/// A topological order of the nodes (file order among independent ones), or the nodes of a cycle.
pub fn topo_order(nodes: &[Node]) -> Result<Vec<String>, String> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let idx: Vec<_> = (0..nodes.len()).map(|i| g.add_node(i)).collect();
    let pos: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        for d in n.deps() {
            if let Some(&j) = pos.get(d.as_str()) {
                g.add_edge(idx[j], idx[i], ());
            }
        }
    }
    // Kahn's algorithm with a min-heap on file position keeps the order readable;
    // petgraph's toposort finds the cycle.
    if petgraph::algo::toposort(&g, None).is_err() {
        // name every node of the first cycle, in file order
        let mut cyc: Vec<usize> = petgraph::algo::tarjan_scc(&g)
            .into_iter()
            .filter(|c| c.len() > 1 || g.contains_edge(c[0], c[0]))
            .map(|c| c.into_iter().map(|x| g[x]).collect::<Vec<_>>())
            .min_by_key(|c| c.iter().copied().min())
            .unwrap_or_default();
        cyc.sort();
        return Err(cyc
            .iter()
            .map(|&i| nodes[i].id.clone())
            .collect::<Vec<_>>()
            .join(", "));
    }
    let mut indeg: Vec<usize> = idx
        .iter()
        .map(|&i| g.neighbors_directed(i, petgraph::Incoming).count())
        .collect();
    let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..nodes.len())
        .filter(|&i| indeg[i] == 0)
        .map(std::cmp::Reverse)
        .collect();
    let mut out = Vec::new();
    while let Some(std::cmp::Reverse(i)) = ready.pop() {
        out.push(nodes[i].id.clone());
        for nb in g.neighbors_directed(idx[i], petgraph::Outgoing) {
            let j = g[nb];
            indeg[j] -= 1;
            if indeg[j] == 0 {
                ready.push(std::cmp::Reverse(j));
            }
        }
    }
    Ok(out)
}
