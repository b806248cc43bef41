//! Node kinds: the `NodeKind` trait every kind implements (what it needs, what it provides,
//! how it checks its fields and how it runs for one problem and sample), and the registry.
//! Adding a kind is one file in this folder and one line in `registry()`.
//! A kind reaches models only through the handle in its [`NodeCx`] (`cx.generate`): the
//! call path (cache, continuation, single-flight, limits) is `crate::calls`, and no kind
//! sees the scheduler.

pub mod continue_;
pub mod extract;
pub mod grade;
pub mod reason;
pub mod summarize;
pub mod tokens;
pub mod vote;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Result;
use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::calls::{Calls, Generated, Site};
use crate::data::Problem;
use crate::llm::Prompt;
use crate::spec::{Binding, Node, Pipeline, Ref};
use crate::template::Templates;

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

/// What a kind declares about itself, for validation before anything runs.
pub struct KindInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Output fields later nodes and templates may read.
    pub provides: &'static [&'static str],
    /// Kind-specific fields allowed on the node besides the common ones.
    pub params: &'static [&'static str],
    pub model: Need,
    pub prompt: Need,
    pub input: Need,
    /// Variables this kind adds to its prompt's context (besides problem columns, vars…).
    pub template_vars: &'static [&'static str],
    /// An aggregating kind runs once per problem over every sample's upstream outputs
    /// (e.g. a vote); other kinds run once per problem and sample.
    pub aggregate: bool,
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
            problem: &self.problem.fields,
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
        match self.upstream.get(&r.node) {
            None => Value::Null,
            Some(o) => match &r.field {
                None => Value::Object((**o).clone()),
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

    /// The data a prompt template renders with: problem columns at the top level and under
    /// `problem`, `round`, `sample`, `input`, every `vars:` binding and directly referenced
    /// upstream nodes, plus `extra` (kind-specific variables).
    pub fn template_data(&self, extra: Map<String, Value>) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.problem.fields {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        m.insert(
            "problem".into(),
            serde_json::to_value(&self.problem.fields).unwrap_or_default(),
        );
        m.insert("round".into(), self.node.round.into());
        m.insert("sample".into(), self.sample.into());
        for id in &self.node.template_refs {
            m.insert(
                id.clone(),
                self.lookup(&Ref {
                    node: id.clone(),
                    field: None,
                }),
            );
        }
        if let Some(r) = &self.node.input {
            m.insert("input".into(), self.lookup(r));
        }
        for (name, b) in &self.node.vars {
            let v = match b {
                Binding::One(r) => self.lookup(r),
                Binding::List(rs) => Value::Array(rs.iter().map(|r| self.lookup(r)).collect()),
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

/// One node kind.
#[async_trait]
pub trait NodeKind: Send + Sync {
    fn info(&self) -> &'static KindInfo;
    /// Checks kind-specific fields; returns (field, message) pairs.
    fn check(&self, _node: &Node, _pipeline: &crate::spec::PipelineSpec) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Runs for one problem and sample.
    async fn run(&self, cx: &NodeCx<'_>) -> Result<Produced>;
}

/// Every built-in kind.
pub fn registry() -> Vec<Arc<dyn NodeKind>> {
    vec![
        Arc::new(reason::Reason),
        Arc::new(summarize::Summarize),
        Arc::new(extract::Extract),
        Arc::new(grade::Grade),
        Arc::new(continue_::Continue),
        Arc::new(vote::Vote),
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

/// Looks a kind up by name.
pub fn kind(name: &str) -> Option<Arc<dyn NodeKind>> {
    registry().into_iter().find(|k| k.info().name == name)
}

pub fn kind_names() -> Vec<&'static str> {
    registry().iter().map(|k| k.info().name).collect()
}
