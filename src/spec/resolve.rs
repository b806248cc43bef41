//! From a pipeline file to a runnable `Pipeline`, as a sequence of named steps that each
//! collect their errors (in the manner of Vector's topology checks): `tree` (the file,
//! `extends`, `--set`, CLI filters), `known_keys` (every unknown key of the typed sections,
//! at once, with the nearest valid name), `decode`, the pipeline checks of [`SPEC_CHECKS`]
//! (name, samples, nodes, prompts folder, models, the grade block, the remote cache URL), `problems` (the problem
//! set and its filters), `expand`, the node checks of `checks::NODE_CHECKS`, `templates`
//! (they compile) and `acyclic` (`order.rs`). Nothing runs until every step passed; all errors are
//! reported together, sorted by file and line.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::checks::{self, NodeFacts};
use super::load::{self, LocMap};
use super::model::{Continuation, ModelSpec, Price, SamplingParams, SimSettings};
use super::{
    Diag, GradeSpec, LoadOptions, Node, Pipeline, PipelineSpec, ProblemsSpec, WarningGroup, expand,
};
use crate::data::{self, ProblemFile, Selection};
use crate::nodes::params::{did_you_mean, field_names};

/// Resolves a path written in `pipeline_file` by the rule of [`paths`](super::paths).
pub fn resolve_path(rel: &str, pipeline_file: &Path) -> PathBuf {
    super::paths::resolve_in(rel, Some(pipeline_file))
}

pub fn resolve(path: &Path, opts: &LoadOptions) -> Result<Pipeline, Vec<Diag>> {
    let (tree, locs, preloaded, notes) = tree(path, opts)?;
    known_keys(&tree, &locs)?;
    let mut spec = decode(&tree, &locs)?;
    resolve_tokenizer_paths(&mut spec, &locs, path);
    let mut diags = Vec::new();
    for (_, check) in SPEC_CHECKS {
        check(&spec, &locs, path, &mut diags);
    }
    let problems_path =
        super::paths::resolve_key(&spec.problems.path, "problems.path", &locs, path);
    let problems = problems(&spec, &problems_path, &locs, &mut diags);
    let (mut nodes, mut expand_errors) = expand::expand_partial(&spec.nodes, &locs);
    diags.append(&mut expand_errors);
    let prompts_dir = match &spec.prompts_dir {
        Some(d) => super::paths::resolve_key(d, "prompts_dir", &locs, path),
        None => resolve_path("prompts", path),
    };
    let facts = nodes
        .iter()
        .map(|n| {
            let f = NodeFacts {
                kind: n.kind.clone(),
                base: n.base.clone(),
                graded: crate::nodes::node_graded(n, &spec),
            };
            (n.id.clone(), f)
        })
        .collect();
    let cx = checks::NodeCx {
        spec: &spec,
        locs: &locs,
        columns: problems.as_ref().map(|(set, _)| set.columns.as_slice()),
        prompts_dir: prompts_dir.clone(),
        nodes: facts,
    };
    let mut prompts = preloaded;
    for n in &mut nodes {
        checks::check_node(n, &cx, &mut prompts, &mut diags);
    }
    templates(&prompts, &prompts_dir, &mut diags);
    let order = super::order::acyclic(&nodes, &locs, &mut diags);
    if !diags.is_empty() {
        return Err(sorted(diags));
    }
    let mut by_id: HashMap<String, Node> = nodes.into_iter().map(|n| (n.id.clone(), n)).collect();
    let nodes: Vec<Node> = order
        .iter()
        .map(|id| by_id.remove(id).expect("node"))
        .collect();
    let (problem_set, problems) = problems.expect("loaded");
    let mut warnings = notes;
    // rows are read again here: an error only when the file changed since it was checked
    let reread = |e: data::LoadError| vec![Diag::at(&locs.find("problems.path"), e.to_string())];
    let (problems, shard) = shard_of(problems, opts.shard, &mut warnings).map_err(reread)?;
    let warning_groups = duplicate_warnings(&spec.problems.path, &problems)
        .map_err(reread)?
        .into_iter()
        .collect();
    warnings.extend(super::model::model_warnings(&spec, &nodes, &locs));
    Ok(Pipeline {
        file: path.to_path_buf(),
        tree,
        spec,
        nodes,
        problems_path,
        problem_set,
        problems,
        shard,
        prompts,
        warnings,
        warning_groups,
    })
}

/// `--shard I/N` after the filters: the piece, and the whole selection's ids. An empty piece
/// is no error (a small set over many shards): it is said, and the run still writes its
/// directory so that a merge sees the shard.
fn shard_of(
    whole: Selection,
    shard: Option<data::Shard>,
    warnings: &mut Vec<String>,
) -> Result<(Selection, Option<super::ShardOf>), data::LoadError> {
    let Some(shard) = shard else {
        return Ok((whole, None));
    };
    let piece = shard.select(&whole)?;
    if piece.is_empty() {
        warnings.push(format!(
            "shard {shard} holds none of the {} selected problem(s) (a small set over many shards): nothing to run; its run directory is still written so that `distill report` over the shards sees it",
            whole.len()
        ));
    }
    Ok((piece, Some(super::ShardOf { shard, whole })))
}

/// A model's `tokenizer:` file, found by the path rule, becomes an absolute path (the
/// encoding names `cl100k`, `o200k` and paths found nowhere are left for the check to name).
fn resolve_tokenizer_paths(spec: &mut PipelineSpec, locs: &LocMap, file: &Path) {
    for (name, m) in spec.models.iter_mut() {
        let Some(t) = &m.tokenizer else { continue };
        let key = format!("models.{name}.tokenizer");
        let found = super::paths::resolve_key(t, &key, locs, file);
        if found.is_file()
            && let Ok(abs) = std::path::absolute(&found)
        {
            m.tokenizer = Some(abs.display().to_string());
        }
    }
}

/// The problems that share a question text, one line per group, summarized as one line.
fn duplicate_warnings(
    path: &str,
    problems: &Selection,
) -> Result<Option<WarningGroup>, data::LoadError> {
    let groups = problems.duplicate_questions()?;
    let Some(first) = groups.first() else {
        return Ok(None);
    };
    let lines = groups
        .iter()
        .map(|g| {
            format!(
                "{path}: problems {} have the same question; they share cache entries (use `samples:` for independent draws)",
                g.join(", ")
            )
        })
        .collect();
    let summary = format!(
        "{path}: {} groups of problems have the same question (first: {}); they share cache entries (use `samples:` for independent draws); --verbose lists them all",
        groups.len(),
        first.join(", ")
    );
    Ok(Some(WarningGroup { summary, lines }))
}

/// The merged tree: the file and its bases, every `--set` (all their errors), the filters.
fn tree(path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diag>> {
    let (mut tree, mut locs, preloaded, notes) = load_any(path)?;
    let mut diags = Vec::new();
    for s in &opts.sets {
        if let Err(d) = load::apply_set(&mut tree, &mut locs, s) {
            diags.push(d);
        }
    }
    apply_cli_filters(&mut tree, &mut locs, opts);
    if diags.is_empty() {
        Ok((tree, locs, preloaded, notes))
    } else {
        Err(diags)
    }
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

/// Every key of the typed sections that their struct does not have, all at once.
fn known_keys(tree: &Value, locs: &LocMap) -> Result<(), Vec<Diag>> {
    let mut diags = Vec::new();
    let mut check = |path: &str, v: Option<&Value>, fields: &[&str]| {
        let Some(m) = v.and_then(|v| v.as_object()) else {
            return;
        };
        for k in m.keys().filter(|k| !fields.contains(&k.as_str())) {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            let shown = if path.is_empty() {
                "the pipeline"
            } else {
                path
            };
            diags.push(
                Diag::at(&locs.find(&p), format!("unknown field `{k}` in {shown}")).hint(format!(
                    "{}fields here: {}; see README: pipeline format",
                    did_you_mean(k, fields.iter().copied()),
                    fields.join(", ")
                )),
            );
        }
    };
    check("", Some(tree), names::<PipelineSpec>());
    check("problems", tree.get("problems"), names::<ProblemsSpec>());
    check("grade", tree.get("grade"), names::<GradeSpec>());
    if let Some(models) = tree.get("models").and_then(|m| m.as_object()) {
        for (name, m) in models {
            let p = format!("models.{name}");
            check(&p, Some(m), names::<ModelSpec>());
            check(
                &format!("{p}.params"),
                m.get("params"),
                names::<SamplingParams>(),
            );
            check(
                &format!("{p}.continuation"),
                m.get("continuation"),
                names::<Continuation>(),
            );
            check(&format!("{p}.price"), m.get("price"), names::<Price>());
            check(&format!("{p}.sim"), m.get("sim"), names::<SimSettings>());
        }
    }
    if diags.is_empty() { Ok(()) } else { Err(diags) }
}

fn names<T: DeserializeOwned>() -> &'static [&'static str] {
    field_names::<T>()
}

/// The typed top level (the first type error; unknown keys were reported before).
fn decode(tree: &Value, locs: &LocMap) -> Result<PipelineSpec, Vec<Diag>> {
    serde_path_to_error::deserialize(tree.clone()).map_err(|e| {
        let p = e.path().to_string();
        let p = if p == "." { String::new() } else { p };
        let inner = e.into_inner().to_string();
        let hint = if inner.contains("missing field") {
            "add the field; see README: pipeline format"
        } else {
            "see README: pipeline format"
        };
        vec![Diag::at(&locs.find(&p), format!("`{p}`: {inner}")).hint(hint)]
    })
}

type SpecCheck = fn(&PipelineSpec, &LocMap, &Path, &mut Vec<Diag>);

/// The checks of the pipeline's own settings, in order.
pub const SPEC_CHECKS: &[(&str, SpecCheck)] = &[
    ("name", check_name),
    ("samples", check_samples),
    ("nodes_not_empty", check_nodes_not_empty),
    ("prompts_dir_exists", check_prompts_dir),
    ("models", super::model::check_models),
    ("grade_block", check_grade_block),
    ("cache_remote", check_cache_remote),
];

/// `cache_remote:` is an `s3://bucket/prefix` URL (checked here, connected at run time).
fn check_cache_remote(spec: &PipelineSpec, locs: &LocMap, _: &Path, diags: &mut Vec<Diag>) {
    let Some(url) = &spec.cache_remote else {
        return;
    };
    if let Err(e) = crate::remote::RemoteUrl::parse(url) {
        diags.push(Diag::at(&locs.find("cache_remote"), format!("`cache_remote:` {e}")).hint(
            "give the bucket and a prefix, e.g. `cache_remote: s3://my-lab-cache/distill`, or remove the line (the cache directory alone is used)",
        ));
    }
}

/// Most samples per problem.
pub const MAX_SAMPLES: u32 = 10_000;

/// `name` becomes a folder under `--results`: one safe path component.
fn check_name(spec: &PipelineSpec, locs: &LocMap, _: &Path, diags: &mut Vec<Diag>) {
    if let Err(e) = safe_component(&spec.name) {
        diags.push(
            Diag::at(&locs.find("name"), format!("`name: {:?}` {e}", spec.name))
                .hint("the name is the folder of its runs under --results: use letters, digits, `-`, `_` or `.`, e.g. `name: iterated-aime`"),
        );
    }
}

/// Why `s` cannot be one path component, if it cannot.
pub fn safe_component(s: &str) -> Result<(), &'static str> {
    if s.trim().is_empty() {
        return Err("is empty");
    }
    if s.len() > 200 {
        return Err("is longer than 200 bytes");
    }
    if s.contains(['/', '\\']) {
        return Err("contains a path separator");
    }
    if s == "." || s == ".." {
        return Err("is a relative path, not a name");
    }
    if s.chars().any(|c| c.is_control()) {
        return Err("contains a control character");
    }
    if s != s.trim() {
        return Err("starts or ends with a space");
    }
    Ok(())
}

fn check_samples(spec: &PipelineSpec, locs: &LocMap, _: &Path, diags: &mut Vec<Diag>) {
    if !(1..=MAX_SAMPLES).contains(&spec.samples) {
        diags.push(
            Diag::at(
                &locs.find("samples"),
                format!(
                    "`samples: {}` is out of range: it must be a whole number from 1 to {MAX_SAMPLES}",
                    spec.samples
                ),
            )
            .hint("`samples:` is the number of independent draws of the whole graph per problem"),
        );
    }
    if spec.sample_offset > MAX_SAMPLE_OFFSET {
        diags.push(
            Diag::at(
                &locs.find("sample_offset"),
                format!(
                    "`sample_offset: {}` is out of range: it must be a whole number from 0 to {MAX_SAMPLE_OFFSET}",
                    spec.sample_offset
                ),
            )
            .hint("`sample_offset:` shifts the sample index in cache keys (a seed sweep: 1, 2, 3 …)"),
        );
    }
}

/// The largest `sample_offset:` (a seed sweep's index, not a count of calls).
const MAX_SAMPLE_OFFSET: u32 = 1_000_000;

fn check_nodes_not_empty(spec: &PipelineSpec, locs: &LocMap, _: &Path, diags: &mut Vec<Diag>) {
    if spec.nodes.is_empty() {
        diags.push(
            Diag::at(&locs.find("nodes"), "`nodes:` is empty: nothing would run").hint(
                "add a node, e.g. `attempt_0: {kind: reason, model: NAME, prompt: reason/default}`",
            ),
        );
    }
}

fn check_prompts_dir(spec: &PipelineSpec, locs: &LocMap, file: &Path, diags: &mut Vec<Diag>) {
    let Some(d) = &spec.prompts_dir else { return };
    let dir = super::paths::resolve_key(d, "prompts_dir", locs, file);
    if !dir.is_dir() {
        diags.push(
            Diag::at(
                &locs.find("prompts_dir"),
                format!("`prompts_dir: {d}`: no such folder ({})", dir.display()),
            )
            .hint(super::paths::RULE),
        );
    }
}

fn check_grade_block(spec: &PipelineSpec, locs: &LocMap, _: &Path, diags: &mut Vec<Diag>) {
    let Some(g) = &spec.grade else { return };
    if let Some(e) = crate::nodes::grade::check_rel_tol(g.rel_tol) {
        diags.push(Diag::at(&locs.find("grade.rel_tol"), e).hint("e.g. `rel_tol: 1e-6`"));
    }
    if let Err(e) = crate::grade::check_extractor(&g.extract) {
        diags.push(Diag::at(&locs.find("grade.extract"), e));
    }
    let models = || spec.models.keys().map(String::as_str);
    let list = || models().collect::<Vec<_>>().join(", ");
    match (&g.judge_model, g.compare == crate::grade::Compare::LlmJudge) {
        (None, true) => diags.push(
            Diag::at(
                &locs.find("grade"),
                "`compare: llm_judge` needs `judge_model:`",
            )
            .hint(format!("name one of `models:`: {}", list())),
        ),
        (Some(m), _) if !spec.models.contains_key(m) => diags.push(
            Diag::at(
                &locs.find("grade.judge_model"),
                format!("unknown model `{m}`"),
            )
            .hint(format!("{}models: {}", did_you_mean(m, models()), list())),
        ),
        (Some(_), false) => diags.push(
            Diag::at(
                &locs.find("grade.judge_model"),
                "`judge_model:` is only used by `compare: llm_judge`",
            )
            .hint("remove it, or set `compare: llm_judge`"),
        ),
        _ => {}
    }
}

/// The problem set, read for the filters, and the selected problems.
fn problems(
    spec: &PipelineSpec,
    path: &Path,
    locs: &LocMap,
    diags: &mut Vec<Diag>,
) -> Option<(ProblemFile, Selection)> {
    let filters = spec.problems.filters();
    let set = match ProblemFile::open(path) {
        Ok(set) => set,
        Err(data::LoadError::Content(e)) => {
            // the CSV names its own file and line; `problems.path` is not the problem
            diags.push(Diag::at(&locs.find("problems.path"), e).hint(
                "fix the problem file at that line: a CSV with the header id,question,solution,answer and one problem per row",
            ));
            return None;
        }
        Err(data::LoadError::Unreadable(e)) => {
            diags.push(Diag::at(&locs.find("problems.path"), e).hint(missing_set_hint(path)));
            return None;
        }
    };
    match data::select(&set, &filters) {
        Ok(p) => Some((set, p)),
        Err(es) => {
            for e in es {
                diags.push(Diag::at(&locs.find("problems"), e).hint("filters use 0-based inclusive index_range a-b, or ids from the CSV's id column"));
            }
            None
        }
    }
}

fn missing_set_hint(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("")
        .replace('_', "-");
    match crate::datasets::registry::names().into_iter().find(|n| *n == stem) {
        Some(name) if !path.exists() => format!(
            "this problem set is not shipped with distill: fetch it with `distill data pull {name}`, or point elsewhere with --set problems.path=PATH"
        ),
        _ => "set `problems.path` (relative to the working directory or the project) or pass --set problems.path=PATH".into(),
    }
}

/// Every prompt read compiles (templates that failed their scan are reported already and
/// are not handed to the compiler).
fn templates(prompts: &BTreeMap<String, String>, dir: &Path, diags: &mut Vec<Diag>) {
    let ok: BTreeMap<String, String> = prompts
        .iter()
        .filter(|(_, t)| crate::template::scan(t).is_ok())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Err(es) = crate::template::Templates::compile(&ok) {
        for (name, line, e) in es {
            diags.push(
                Diag::new(
                    &dir.join(format!("{name}.hbs")).display().to_string(),
                    line,
                    format!("template `{name}` does not compile: {e}"),
                )
                .hint("check that every {{#block}} has its {{/block}} and every {{ has its }}"),
            );
        }
    }
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
