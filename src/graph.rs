//! The graph of one problem: every node instantiated for each sample (an aggregating node
//! once, fed by every sample), built with petgraph, with the facts the scheduler needs —
//! dependencies, dependents and each instance's longest remaining chain of model calls —
//! and the text and DOT renderings `distill pipeline graph` prints. The same graph serves
//! every problem of a run.

use std::fmt::Write;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::nodes;
use crate::spec::Pipeline;

/// One node for one sample (`sample: None` for an aggregating node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inst {
    pub node: usize,
    pub sample: Option<u32>,
}

pub struct InstanceGraph {
    pub g: DiGraph<Inst, ()>,
    pub deps: Vec<Vec<usize>>,
    pub dependents: Vec<Vec<usize>>,
    /// Longest chain of model calls from this instance to the end, itself included
    /// (non-model nodes weigh 1/1000 of a call so that ties still prefer longer chains).
    pub chain: Vec<u64>,
    pub uses_model: Vec<bool>,
}

impl InstanceGraph {
    pub fn len(&self) -> usize {
        self.g.node_count()
    }
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }
    pub fn inst(&self, i: usize) -> Inst {
        self.g[NodeIndex::new(i)]
    }
}

/// Whether a node of the pipeline makes model calls.
pub fn uses_model(p: &Pipeline, node: usize) -> bool {
    nodes::calls_model(&p.nodes[node])
}

pub fn build(p: &Pipeline) -> InstanceGraph {
    let samples = p.spec.samples.max(1);
    let aggregate: Vec<bool> = p
        .nodes
        .iter()
        .map(|n| nodes::kind(&n.kind).is_some_and(|k| k.info().aggregate))
        .collect();
    let mut g: DiGraph<Inst, ()> = DiGraph::new();
    // index: node -> per-sample NodeIndex (one entry for aggregates)
    let mut at: Vec<Vec<NodeIndex>> = Vec::new();
    for (i, _) in p.nodes.iter().enumerate() {
        if aggregate[i] {
            at.push(vec![g.add_node(Inst {
                node: i,
                sample: None,
            })]);
        } else {
            at.push(
                (0..samples)
                    .map(|s| {
                        g.add_node(Inst {
                            node: i,
                            sample: Some(s),
                        })
                    })
                    .collect(),
            );
        }
    }
    let pos = |id: &str| p.nodes.iter().position(|n| n.id == id);
    for (i, n) in p.nodes.iter().enumerate() {
        for d in n.deps() {
            let Some(j) = pos(&d) else { continue };
            match (aggregate[i], aggregate[j]) {
                (false, false) => {
                    for (&from, &to) in at[j].iter().zip(at[i].iter()) {
                        g.add_edge(from, to, ());
                    }
                }
                (_, true) => {
                    for &t in &at[i] {
                        g.add_edge(at[j][0], t, ());
                    }
                }
                (true, false) => {
                    for &f in &at[j] {
                        g.add_edge(f, at[i][0], ());
                    }
                }
            }
        }
    }
    let n = g.node_count();
    let deps: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                .map(|x| x.index())
                .collect()
        })
        .collect();
    let dependents: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), Direction::Outgoing)
                .map(|x| x.index())
                .collect()
        })
        .collect();
    let uses: Vec<bool> = (0..n)
        .map(|i| uses_model(p, g[NodeIndex::new(i)].node))
        .collect();
    let order = petgraph::algo::toposort(&g, None).expect("validated acyclic");
    let mut chain = vec![0u64; n];
    for ix in order.iter().rev() {
        let i = ix.index();
        let own = if uses[i] { 1000 } else { 1 };
        chain[i] = own + dependents[i].iter().map(|&d| chain[d]).max().unwrap_or(0);
    }
    InstanceGraph {
        g,
        deps,
        dependents,
        chain,
        uses_model: uses,
    }
}

/// `pipeline graph --format text`.
pub fn to_text(p: &Pipeline) -> String {
    let mut s = String::new();
    let samples = p.spec.samples.max(1);
    let _ = writeln!(
        s,
        "pipeline {} — {} nodes per problem and sample; {} problem(s) × {} sample(s)",
        p.spec.name,
        p.nodes.len(),
        p.problems.len(),
        samples
    );
    for n in &p.nodes {
        let mut what = vec![format!("round {}", n.round)];
        if let Some(m) = &n.model {
            what.push(format!("model {m}"));
        }
        if let Some(pr) = &n.prompt {
            what.push(format!("prompt {pr}"));
        }
        if let Some(st) = n.params.get("strategy").and_then(|v| v.as_str()) {
            what.push(format!("strategy {st}"));
        }
        if let Some(w) = &n.when_text {
            what.push(format!("when {w}"));
        }
        let deps = n.deps();
        let arrow = if deps.is_empty() {
            String::new()
        } else {
            format!("  <- {}", deps.join(", "))
        };
        let _ = writeln!(
            s,
            "  {:<14} {:<10} ({}){}",
            n.id,
            n.kind,
            what.join(", "),
            arrow
        );
    }
    let g = build(p);
    let calls = (0..g.len()).filter(|&i| g.uses_model[i]).count();
    let _ = writeln!(
        s,
        "{} instances and {} model-call nodes per problem; {} edges",
        g.len(),
        calls,
        g.g.edge_count()
    );
    s
}

/// `pipeline graph --format dot` (Graphviz).
pub fn to_dot(p: &Pipeline) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];",
        p.spec.name
    );
    for n in &p.nodes {
        let shape = if n.model.is_some() { "box" } else { "ellipse" };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{}\\n{} (round {})\", shape={shape}];",
            n.id, n.id, n.kind, n.round
        );
    }
    for n in &p.nodes {
        for d in n.deps() {
            let style = if n
                .when
                .as_ref()
                .is_some_and(|c| c.refs().iter().any(|r| r.node == d))
            {
                " [style=dashed]"
            } else {
                ""
            };
            let _ = writeln!(s, "  \"{d}\" -> \"{}\"{style};", n.id);
        }
    }
    s.push_str("}\n");
    s
}
