//! Pipeline specification: the typed form of a pipeline YAML file, the diagnostics that
//! loading reports, and `load`, which turns a file (+ `--set` overrides + CLI filters) into a
//! validated, expanded `Pipeline` or every error found. Running it is `exec`'s job.

pub mod batch;
pub mod checks;
pub mod expand;
pub mod load;
pub mod model;
mod order;
pub mod paths;
mod ranges;
pub mod resolve;
pub mod when;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::data::{Filters, ProblemFile, Selection, Shard};
use crate::grade::{Compare, ExtractOptions, Extractor};
pub use model::ModelSpec;
pub use resolve::MAX_SAMPLES;

/// One problem found while loading: where, what, and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl Diag {
    pub fn new(file: &str, line: Option<usize>, message: impl Into<String>) -> Self {
        Diag {
            file: file.to_string(),
            line,
            message: message.into(),
            hint: None,
        }
    }
    pub fn at(loc: &load::Loc, message: impl Into<String>) -> Self {
        Diag::new(&loc.file, loc.line, message)
    }
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: error: {}", self.file, l, self.message)?,
            None => write!(f, "{}: error: {}", self.file, self.message)?,
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

/// The `problems:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProblemsSpec {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_question_ids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_range: Option<String>,
}

impl ProblemsSpec {
    pub fn filters(&self) -> Filters {
        Filters {
            question_ids: self.question_ids.clone(),
            exclude_question_ids: self.exclude_question_ids.clone(),
            index_range: self.index_range.clone(),
        }
    }
}

/// The pipeline-level `grade:` block, applied to every `reason` node.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradeSpec {
    #[serde(default)]
    pub extract: Extractor,
    #[serde(default)]
    pub compare: Compare,
    #[serde(default)]
    pub fallback_full_text: Option<bool>,
    #[serde(default)]
    pub rel_tol: Option<f64>,
    /// For `compare: llm_judge`: the judging model.
    #[serde(default)]
    pub judge_model: Option<String>,
}

impl GradeSpec {
    pub fn extract_options(&self) -> ExtractOptions {
        let mut o = ExtractOptions::default();
        if let Some(f) = self.fallback_full_text {
            o.fallback_full_text = f;
        }
        o
    }
}

/// The typed top level (nodes stay a raw tree; `expand` reads them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub problems: ProblemsSpec,
    #[serde(default = "one")]
    pub samples: u32,
    /// Seed for seeded strategies (random-k).
    #[serde(default)]
    pub seed: u64,
    /// Added to the sample index inside every cache key (and the seed a sample sends), so a
    /// seed sweep's runs are distinct draws: `sample_offset: 2` makes sample 0 the draw
    /// another run's sample 2 would be. 0 by default.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_offset: u32,
    pub models: BTreeMap<String, ModelSpec>,
    #[serde(default)]
    pub grade: Option<GradeSpec>,
    /// Port of `--dashboard` when the command line gives none (the original tool's key).
    #[serde(default)]
    pub dashboard_port: Option<u16>,
    /// Directory of prompt templates (default `prompts`).
    #[serde(default)]
    pub prompts_dir: Option<String>,
    /// A remote cache shared by many machines (`s3://bucket/prefix`); `--cache-remote` and
    /// `DISTILL_CACHE_REMOTE` take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_remote: Option<String>,
    pub nodes: Map<String, Value>,
    /// Free-form settings that a pipeline shares through YAML anchors; ignored by the engine.
    #[serde(default, rename = "x-shared", skip_serializing)]
    pub shared: Option<Value>,
}

fn one() -> u32 {
    1
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A reference to an upstream node's output, optionally one field of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ref {
    pub node: String,
    pub field: Option<String>,
}

/// A template variable bound to one upstream output or an ordered list of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Binding {
    One(Ref),
    List(Vec<Ref>),
}

/// One node of the expanded graph (per problem and sample).
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Unique name after expansion (`attempt_2`).
    pub id: String,
    /// Name in the file (`attempt` in a repeat body).
    pub base: String,
    /// Round: 0 outside repeat blocks unless set; i for the i-th repetition.
    pub round: u32,
    pub kind: String,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub input: Option<Ref>,
    pub vars: Vec<(String, Binding)>,
    #[serde(skip)]
    pub when: Option<when::Cond>,
    pub when_text: Option<String>,
    pub after: Vec<String>,
    /// Kind-specific fields (strategy, k, extract, compare, …), as written.
    pub params: Map<String, Value>,
    /// The same, parsed by validation into the kind's typed `Params`.
    #[serde(skip)]
    pub typed: Option<crate::nodes::TypedParams>,
    /// Upstream nodes referenced directly in the prompt template.
    pub template_refs: Vec<String>,
    /// Key path in the YAML tree, for error locations.
    #[serde(skip)]
    pub path: String,
}

impl Node {
    /// Every upstream node id this node needs, without repeats, in first-mention order.
    pub fn deps(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut push = |n: &str| {
            if seen.insert(n.to_string()) {
                out.push(n.to_string());
            }
        };
        if let Some(r) = &self.input {
            push(&r.node);
        }
        for (_, b) in &self.vars {
            match b {
                Binding::One(r) => push(&r.node),
                Binding::List(rs) => rs.iter().for_each(|r| push(&r.node)),
            }
        }
        if let Some(c) = &self.when {
            c.refs().iter().for_each(|r| push(&r.node));
        }
        self.after.iter().for_each(|a| push(a));
        self.template_refs.iter().for_each(|a| push(a));
        out
    }
}

/// A loaded, expanded and validated pipeline, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    /// The merged tree after `extends` and `--set` (recorded in config.json).
    pub tree: Value,
    pub spec: PipelineSpec,
    /// Expanded nodes in a topological order.
    pub nodes: Vec<Node>,
    pub problems_path: PathBuf,
    /// The problem CSV, checked and indexed by row (rows are read as problems open).
    pub problem_set: ProblemFile,
    /// The selected rows.
    pub problems: Selection,
    /// `--shard I/N`: `problems` is this piece of the filters' selection.
    pub shard: Option<ShardOf>,
    /// Prompt name → template text.
    pub prompts: BTreeMap<String, String>,
    pub warnings: Vec<String>,
    /// Warnings of one kind that can repeat many times (printed as one summary line unless
    /// `--verbose`); recorded in full with the others.
    pub warning_groups: Vec<WarningGroup>,
}

/// The piece of the filters' selection a sharded run runs, and the whole selection (whose
/// ids its config is hashed with, so that every shard of one run agrees).
#[derive(Debug, Clone)]
pub struct ShardOf {
    pub shard: Shard,
    pub whole: Selection,
}

/// Many warnings of one kind (e.g. each group of problems with the same question): the
/// summary line to print, and every line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarningGroup {
    pub summary: String,
    pub lines: Vec<String>,
}

impl WarningGroup {
    /// Up to this many lines are printed as they are; more are summarized.
    pub const SHOWN: usize = 3;
    /// What to print: every line when `verbose` or when there are few, else the summary.
    pub fn printed(&self, verbose: bool) -> Vec<&str> {
        if verbose || self.lines.len() <= Self::SHOWN {
            self.lines.iter().map(String::as_str).collect()
        } else {
            vec![self.summary.as_str()]
        }
    }
}

impl Pipeline {
    /// Every warning line, the repeated ones in full (what results.json records).
    pub fn recorded_warnings(&self) -> Vec<String> {
        let mut all = self.warnings.clone();
        for g in &self.warning_groups {
            all.extend(g.lines.iter().cloned());
        }
        all
    }
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
    /// The first `grade` mode in force (pipeline block), for reports.
    pub fn grade(&self) -> Option<&GradeSpec> {
        self.spec.grade.as_ref()
    }
}

/// Options from the command line that shape loading.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub sets: Vec<String>,
    pub filters: Filters,
    /// `--shard I/N`: after the filters, only this piece of their selection.
    pub shard: Option<Shard>,
}

/// Loads, expands and validates a pipeline; every error found is returned at once.
pub fn load(path: &std::path::Path, opts: &LoadOptions) -> Result<Pipeline, Vec<Diag>> {
    resolve::resolve(path, opts)
}
