//! Node kinds: the `Kind` trait every kind implements (what it needs, what it provides,
//! whether it is graded, its typed `Params` with their ranges, and how it runs for one
//! problem and sample), the object-safe `NodeKind` the engine holds, and the registry.
//! A node's fields are parsed once, at validation, into the kind's `Params` (kept on the
//! node) and handed to the kind when it runs. Adding a kind is one file in this folder and
//! one line in `registry()`; what else knows about kinds (validation, report, regrade) asks
//! them through the functions at the end of this file.
//! A kind reaches models only through the handle in its [`NodeCx`] (`cx.generate`): the
//! call path (cache, continuation, single-flight, limits) is `crate::calls`, and no kind
//! sees the scheduler.

pub mod continue_;
pub mod extract;
pub mod grade;
pub mod params;
pub mod reason;
pub mod score;
pub mod summarize;
pub mod tokens;
pub mod vote;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::calls::{Calls, Generated, Site};
use crate::data::Problem;
use crate::llm::Prompt;
use crate::spec::{Binding, Node, Pipeline, PipelineSpec, Ref};
use crate::template::Templates;
pub use params::FieldError;

/// A node's outputs: named fields (`text`, `reasoning`, `answer`, …).
pub use crate::calls::Output;

/// What a node produced: its outputs, and whether they came from the cache without a call.
#[derive(Debug, Clone, Default)]
pub struct Produced {
    pub output: Output,
    pub cached: bool,
}

impl From<Output> for Produced {
    fn from(output: Output) -> Self {
        Produced {
            output,
            cached: false,
        }
    }
}

/// Whether a kind uses a node field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
    Never,
}

/// Whether a kind's output carries a verdict (`answer`, `correct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Graded {
    /// Never graded.
    No,
    /// Graded by the pipeline's `grade:` block (unless the node says `graded: false`), the
    /// answer read from this output field.
    ByGradeBlock { answer_field: &'static str },
    /// Always produces a verdict of its own (a `grade` node, a vote).
    Always,
}

/// What a kind declares about itself, for validation before anything runs.
pub struct KindInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Output fields later nodes and templates may read.
    pub provides: &'static [&'static str],
    /// Kind-specific fields allowed on the node besides the common ones, each with what it
    /// takes (type, range, default): the names of the kind's `Params` struct.
    pub params: &'static [(&'static str, &'static str)],
    pub model: Need,
    pub prompt: Need,
    pub input: Need,
    /// Variables this kind adds to its prompt's context (besides problem columns, vars…).
    pub template_vars: &'static [&'static str],
    /// An aggregating kind runs once per problem over every sample's upstream outputs
    /// (e.g. a vote); other kinds run once per problem and sample.
    pub aggregate: bool,
    /// Whether (and how) its output is graded.
    pub graded: Graded,
}

impl KindInfo {
    pub fn param_names(&self) -> Vec<&'static str> {
        self.params.iter().map(|(n, _)| *n).collect()
    }
    fn param_doc(&self, name: &str) -> Option<&'static str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| *d)
    }
}

/// Everything a node sees while it runs.
pub struct NodeCx<'a> {
    pub pipeline: &'a Pipeline,
    pub templates: &'a Templates,
    /// The call path: the only way a kind reaches a model.
    pub calls: &'a Calls,
    pub node: &'a Node,
    pub problem: &'a Problem,
    pub sample: u32,
    /// Outputs of finished upstream nodes of this problem and sample, by node id.
    pub upstream: &'a HashMap<String, Arc<Output>>,
}

impl NodeCx<'_> {
    pub fn pipeline(&self) -> &Pipeline {
        self.pipeline
    }

    /// Where this node's calls come from (for events, the dashboard and `sim`).
    pub fn site(&self) -> Site<'_> {
        Site {
            problem_id: &self.problem.id,
            problem: self.problem.fields(),
            node_id: &self.node.id,
            node_kind: &self.node.kind,
            round: self.node.round,
            sample: self.sample,
        }
    }

    /// Asks `model` to answer `prompt` (cached, continued, single-flight). `extra` is hashed
    /// into the node key (kind-specific settings that shape the output).
    pub async fn generate(&self, model: &str, prompt: Prompt, extra: Value) -> Result<Generated> {
        self.calls
            .generate(&self.site(), model, prompt, extra)
            .await
    }

    /// The value a reference points to (a whole output, or one field of it).
    pub fn lookup(&self, r: &Ref) -> Value {
        self.lookup_for(r, None, &crate::template::Used::everything())
    }

    /// [`NodeCx::lookup`] for a template: of a whole output, the fields it may read (`name`:
    /// the variable it is bound to; `None` for an item of a list).
    fn lookup_for(&self, r: &Ref, name: Option<&str>, used: &crate::template::Used) -> Value {
        match self.upstream.get(&r.node) {
            None => Value::Null,
            Some(o) => match &r.field {
                None => Value::Object(used.select(name, o)),
                Some(f) => o.get(f).cloned().unwrap_or(Value::Null),
            },
        }
    }

    /// The `input:` output (whole) if the node has one.
    pub fn input(&self) -> Option<Arc<Output>> {
        self.node
            .input
            .as_ref()
            .and_then(|r| self.upstream.get(&r.node).cloned())
    }

    /// One text field of the `input:` output.
    pub fn input_str(&self, field: &str) -> Option<String> {
        self.input()
            .and_then(|i| i.get(field).and_then(|v| v.as_str()).map(str::to_string))
    }

    /// Renders the node's `prompt:` template with [`NodeCx::template_data`] plus `extra`.
    pub fn render_prompt(&self, extra: Map<String, Value>) -> Result<String> {
        let name = self.node.prompt.as_deref().expect("validated");
        let used = self.templates.used(name);
        self.templates
            .render(name, self.template_data(extra, &used))
    }

    /// The data a prompt template renders with: problem columns at the top level and under
    /// `problem`, `round`, `sample`, `input`, every `vars:` binding and directly referenced
    /// upstream nodes, plus `extra` (kind-specific variables). Of a whole upstream output,
    /// only the fields the template may read (`used`).
    pub fn template_data(&self, extra: Map<String, Value>, used: &crate::template::Used) -> Value {
        let mut m = Map::new();
        for (k, v) in self.problem.fields().iter() {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        m.insert(
            "problem".into(),
            serde_json::to_value(self.problem.fields()).unwrap_or_default(),
        );
        m.insert("round".into(), self.node.round.into());
        m.insert("sample".into(), self.sample.into());
        for id in &self.node.template_refs {
            let r = Ref {
                node: id.clone(),
                field: None,
            };
            m.insert(id.clone(), self.lookup_for(&r, Some(id), used));
        }
        if let Some(r) = &self.node.input {
            m.insert("input".into(), self.lookup_for(r, Some("input"), used));
        }
        for (name, b) in &self.node.vars {
            let v = match b {
                Binding::One(r) => self.lookup_for(r, Some(name), used),
                Binding::List(rs) => {
                    Value::Array(rs.iter().map(|r| self.lookup_for(r, None, used)).collect())
                }
            };
            m.insert(name.clone(), v);
        }
        m.extend(extra);
        Value::Object(m)
    }

    pub fn param_str(&self, name: &str) -> Option<&str> {
        self.node.params.get(name).and_then(|v| v.as_str())
    }
}

/// One node kind, as its file writes it: typed parameters, their checks, and a run.
#[async_trait]
pub trait Kind: Send + Sync + 'static {
    /// The kind's own fields (every one with a default: `#[serde(default)]`).
    type Params: DeserializeOwned + Default + Send + Sync + 'static;
    fn info(&self) -> &'static KindInfo;
    /// Ranges and cross-field rules of decoded parameters; every problem found.
    fn check(&self, _p: &Self::Params, _node: &Node, _spec: &PipelineSpec) -> Vec<FieldError> {
        Vec::new()
    }
    /// Runs for one problem and sample.
    async fn run(&self, cx: &NodeCx<'_>, p: &Self::Params) -> Result<Produced>;
}

/// Parsed parameters of a node, as its kind's `Params` (kept on `Node::typed`).
pub type TypedParams = Arc<dyn Any + Send + Sync>;

/// A kind as the engine holds it (object-safe; every `Kind` is one through `entry`).
#[async_trait]
pub trait NodeKind: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    /// The field names of the kind's `Params` struct (must equal `info().params`).
    fn struct_fields(&self) -> &'static [&'static str];
    /// The named checks of a node's own fields: `unknown_fields` (all at once, with the
    /// nearest valid name), `field_types` (each wrong type), then the kind's ranges.
    fn prepare(&self, node: &Node, spec: &PipelineSpec) -> Result<TypedParams, Vec<FieldError>>;
    /// Runs for one problem and sample.
    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced>;
}

struct Entry<K>(K);

/// A kind ready for the registry.
pub fn entry<K: Kind>(k: K) -> Arc<dyn NodeKind> {
    Arc::new(Entry(k))
}

#[async_trait]
impl<K: Kind> NodeKind for Entry<K> {
    fn info(&self) -> &'static KindInfo {
        self.0.info()
    }
    fn struct_fields(&self) -> &'static [&'static str] {
        params::field_names::<K::Params>()
    }
    fn prepare(&self, node: &Node, spec: &PipelineSpec) -> Result<TypedParams, Vec<FieldError>> {
        let info = self.0.info();
        let names = info.param_names();
        let mut errs = params::unknown_fields(&node.params, &names, &crate::spec::expand::COMMON);
        errs.extend(params::field_types::<K::Params>(
            &node.params,
            &names,
            &|f| info.param_doc(f),
        ));
        if !errs.is_empty() {
            return Err(errs);
        }
        let p: K::Params =
            params::decode(&node.params, &names).map_err(|e| vec![(String::new(), e, None)])?;
        let errs = self.0.check(&p, node, spec);
        if errs.is_empty() {
            Ok(Arc::new(p))
        } else {
            Err(errs)
        }
    }
    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced> {
        let parsed;
        let p = match cx
            .node
            .typed
            .as_ref()
            .and_then(|t| t.downcast_ref::<K::Params>())
        {
            Some(p) => p,
            None => {
                let names = self.0.info().param_names();
                parsed = params::decode::<K::Params>(&cx.node.params, &names)
                    .map_err(|e| anyhow::anyhow!("node `{}`: {e}", cx.node.id))?;
                &parsed
            }
        };
        self.0.run(cx, p).await
    }
}

/// Every built-in kind: one line per kind.
pub fn registry() -> Vec<Arc<dyn NodeKind>> {
    vec![
        entry(reason::Reason),
        entry(summarize::Summarize),
        entry(extract::Extract),
        entry(grade::Grade),
        entry(continue_::Continue),
        entry(vote::Vote),
        entry(score::Score),
    ]
}

/// Whether a node makes model calls (a summarize node with a token strategy does not).
pub fn calls_model(node: &crate::spec::Node) -> bool {
    let Some(k) = kind(&node.kind) else {
        return false;
    };
    if k.info().model == Need::Never || node.model.is_none() {
        return false;
    }
    !summarize::without_model(node)
}

static KINDS: std::sync::LazyLock<Vec<Arc<dyn NodeKind>>> = std::sync::LazyLock::new(registry);

/// Looks a kind up by name.
pub fn kind(name: &str) -> Option<Arc<dyn NodeKind>> {
    KINDS.iter().find(|k| k.info().name == name).cloned()
}

pub fn kind_names() -> Vec<&'static str> {
    registry().iter().map(|k| k.info().name).collect()
}

/// The info of a kind by name.
pub fn info(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().map(|k| k.info()).find(|i| i.name == name)
}

/// Whether nodes of this kind carry a verdict (`correct`) when the pipeline grades (for the
/// report and regrading, which read records, not specs).
pub fn graded(kind_name: &str) -> bool {
    info(kind_name).is_some_and(|i| i.graded != Graded::No)
}

/// The kinds the pipeline's `grade:` block grades.
pub fn block_graded_kinds() -> Vec<&'static str> {
    registry()
        .iter()
        .map(|k| k.info())
        .filter(|i| matches!(i.graded, Graded::ByGradeBlock { .. }))
        .map(|i| i.name)
        .collect()
}

/// The output field a block-graded kind's answer is read from (`text` of a reason node,
/// `new_text` of a continue node); None for other kinds.
pub fn graded_answer_field(kind_name: &str) -> Option<&'static str> {
    match info(kind_name)?.graded {
        Graded::ByGradeBlock { answer_field } => Some(answer_field),
        _ => None,
    }
}

/// The per-sample kinds that give their own verdict (a `grade` node), which the report
/// counts when no node is graded by the `grade:` block.
pub fn own_verdict_kinds() -> Vec<&'static str> {
    registry()
        .iter()
        .map(|k| k.info())
        .filter(|i| i.graded == Graded::Always && !i.aggregate)
        .map(|i| i.name)
        .collect()
}

/// Whether this node's output will have `answer` and `correct`.
pub fn node_graded(node: &Node, spec: &PipelineSpec) -> bool {
    match info(&node.kind).map(|i| i.graded) {
        Some(Graded::Always) => true,
        Some(Graded::ByGradeBlock { .. }) => {
            spec.grade.is_some()
                && node.params.get("graded").and_then(|g| g.as_bool()) != Some(false)
        }
        _ => false,
    }
}

#[cfg(test)]
mod registry_tests {
    #[test]
    fn every_kind_documents_exactly_its_struct_fields() {
        for k in super::registry() {
            let mut doc = k.info().param_names();
            let mut typed = k.struct_fields().to_vec();
            doc.sort();
            typed.sort();
            assert_eq!(doc, typed, "kind `{}`", k.info().name);
        }
    }
}
