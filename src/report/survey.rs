//! What one pass over a run's records finds before a report reads its problems (which nodes
//! are graded rounds, the most samples, the ks of vote records, the ids with a record): from
//! a run file's heads, or from the records of a live run as they finish (`live`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use crate::runfile::RunFile;
use crate::runfile::records::{NodeStatus, ProblemRecord};

/// Per node id its kind, round, whether some instance finished and whether some had a
/// verdict; the most samples of a problem; the ks of its vote records; and the ids it has a
/// record of.
#[derive(Default)]
pub(super) struct Survey {
    nodes: BTreeMap<String, (String, u32, bool, bool)>,
    pub samples: usize,
    pub vote_ks: BTreeSet<u64>,
    pub ids: Ids,
}

/// The ids a survey has a record of.
pub(super) enum Ids {
    /// Hashed (a run file's records may repeat an id or miss a selected one).
    Hashed(HashSet<u64>),
    /// Counted only: a live run's records are its selection's problems, each once (ids are
    /// unique in a problem set and a selection lists a row once), so the count against the
    /// selection's says whether every one has a record, at no memory a problem.
    Counted(usize),
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Hashed(HashSet::new())
    }
}

impl Ids {
    /// How many (distinct) ids.
    pub(super) fn len(&self) -> usize {
        match self {
            Ids::Hashed(h) => h.len(),
            Ids::Counted(n) => *n,
        }
    }
}

pub(super) fn id_hash(id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(id)
}

/// The survey of a run file: its heads only (this pass needs no text of any record).
pub(super) fn survey(rf: &RunFile) -> Survey {
    let mut s = Survey::default();
    for p in rf.heads().flatten() {
        let nodes = p.samples.iter().flat_map(|s| s.values());
        let nodes = nodes.map(|n| (&n.node, &n.kind, n.round, n.status, n.graded()));
        s.add(&p.id, p.samples.len(), nodes);
        s.votes(p.aggregates.values().filter(|n| n.kind == "vote"));
    }
    s
}

impl Survey {
    /// The survey of a live run's records ([`Ids::Counted`]).
    pub(super) fn counting() -> Survey {
        Survey {
            ids: Ids::Counted(0),
            ..Default::default()
        }
    }

    /// Adds a whole record (a live run's, as it finishes).
    pub(super) fn add_record(&mut self, p: &ProblemRecord) {
        let nodes = p.samples.iter().flat_map(|s| s.values());
        let nodes = nodes.map(|n| {
            let graded = n
                .output
                .as_ref()
                .and_then(|o| o.get("correct"))
                .is_some_and(Value::is_boolean);
            (&n.node, &n.kind, n.round, n.status, graded)
        });
        self.add(&p.id, p.samples.len(), nodes);
        self.votes(p.aggregates.values().filter(|n| n.kind == "vote"));
    }

    fn add<'a>(
        &mut self,
        id: &str,
        samples: usize,
        nodes: impl Iterator<Item = (&'a String, &'a String, u32, NodeStatus, bool)>,
    ) {
        match &mut self.ids {
            Ids::Hashed(h) => {
                h.insert(id_hash(id));
            }
            Ids::Counted(n) => *n += 1,
        }
        self.samples = self.samples.max(samples);
        for (node, kind, round, status, graded) in nodes {
            let done = status == NodeStatus::Done;
            if let Some(e) = self.nodes.get_mut(node) {
                e.2 |= done;
                e.3 |= graded;
            } else {
                self.nodes
                    .insert(node.clone(), (kind.clone(), round, done, graded));
            }
        }
    }

    fn votes<'a>(&mut self, votes: impl Iterator<Item = &'a crate::runfile::records::NodeRecord>) {
        for n in votes {
            self.vote_ks
                .extend(super::records::pass_at(n.output.as_deref()).into_keys());
        }
    }
}

/// Node id → round of the graded nodes of `kinds`, from the records and, for rounds no
/// record reached yet (a run stopped before a round began), from config.json.
pub(super) fn graded_nodes(
    sv: &Survey,
    cfg: Option<&Value>,
    kinds: &[&str],
) -> BTreeMap<String, u32> {
    let mut seen: BTreeMap<String, (u32, bool, bool)> = sv
        .nodes
        .iter()
        .filter(|(_, (kind, ..))| kinds.contains(&kind.as_str()))
        .map(|(id, (_, round, done, graded))| (id.clone(), (*round, *done, *graded)))
        .collect();
    let config_says = |id: &str| -> Option<bool> {
        let nodes = cfg?.get("expanded_nodes")?.as_array()?;
        let n = nodes.iter().find(|n| n["id"] == id)?;
        let grade_block = cfg?
            .get("pipeline")?
            .get("grade")
            .is_some_and(|g| !g.is_null());
        let own_verdict = n["kind"]
            .as_str()
            .is_some_and(|k| crate::nodes::own_verdict_kinds().contains(&k));
        Some(own_verdict || (grade_block && n["params"].get("graded") != Some(&Value::Bool(false))))
    };
    let expanded = cfg
        .and_then(|c| c.get("expanded_nodes"))
        .and_then(Value::as_array);
    for n in expanded.into_iter().flatten() {
        if let (Some(id), Some(kind)) = (n["id"].as_str(), n["kind"].as_str())
            && kinds.contains(&kind)
        {
            let round = n["round"].as_u64().unwrap_or(0) as u32;
            seen.entry(id.to_string()).or_insert((round, false, false));
        }
    }
    let any_graded = seen.values().any(|v| v.2);
    seen.into_iter()
        .filter(|(id, (_, any_done, here))| {
            *here || (!any_done && any_graded && config_says(id).unwrap_or(true))
        })
        .map(|(id, (round, _, _))| (id, round))
        .collect()
}
