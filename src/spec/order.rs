//! The order of a pipeline's nodes: a topological order that keeps file order among
//! independent nodes, and the `acyclic` check of `resolve` that names a cycle's nodes at the
//! first one's line.

use std::collections::HashMap;

use petgraph::graph::DiGraph;

use super::load::LocMap;
use super::{Diag, Node};

/// A topological order, or an error naming the nodes of a cycle.
pub(super) fn acyclic(nodes: &[Node], locs: &LocMap, diags: &mut Vec<Diag>) -> Vec<String> {
    match topo_order(nodes) {
        Ok(o) => o,
        Err(cycle) => {
            let first = cycle.split(", ").next().unwrap_or_default();
            let loc = nodes
                .iter()
                .find(|n| n.id == first)
                .map(|n| locs.find(&n.path))
                .unwrap_or_else(|| locs.find("nodes"));
            diags.push(Diag::at(&loc, format!("the graph has a cycle through nodes {cycle}"))
                .hint("a node cannot depend, directly or through others, on itself; check input/vars/when/after and template references"));
            Vec::new()
        }
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
