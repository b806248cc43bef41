//! `--results_format original`: a run's records written again in the original tool's
//! results.json schema (`results.original.json` in the run directory), so analysis
//! notebooks written for that tool keep working. An iterated pipeline (one sample) gives
//! `results[].iterations[]` with the tool's per-problem copies (`initial_*`, `improved_*`,
//! `final_*`, `summary`); a pipeline of several samples at round 0 gives pass@k
//! `results[].solutions[]` with `num_correct`, `pass_at_k` and the `consensus_*` fields. A
//! problem with no answer is an error entry (`{"problem_id", "error", "status": "error"}`),
//! as the tool wrote them. The original adapter (`original.rs`) reads the file back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::records::{NodeRecord, NodeStatus, ProblemRecord};
use super::{RunFile, Texts};

/// The file written beside results.json.
pub const FILE: &str = "results.original.json";

fn out(n: &NodeRecord, key: &str) -> Value {
    n.output
        .as_deref()
        .and_then(|o| o.get(key))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A sample's graded attempts by round, and its summaries by the round they go into.
fn by_round(
    nodes: &indexmap::IndexMap<String, NodeRecord>,
) -> (BTreeMap<u32, &NodeRecord>, BTreeMap<u32, &NodeRecord>) {
    let (mut attempts, mut summaries) = (BTreeMap::new(), BTreeMap::new());
    let graded = crate::nodes::block_graded_kinds();
    for n in nodes.values().filter(|n| n.status == NodeStatus::Done) {
        if graded.contains(&n.kind.as_str()) && out(n, "correct").is_boolean() {
            attempts.insert(n.round, n);
        } else if n.kind == "summarize" {
            summaries.insert(n.round, n);
        }
    }
    (attempts, summaries)
}

fn error_entry(p: &ProblemRecord) -> Value {
    json!({"problem_id": p.id, "error": p.error.clone().unwrap_or_else(|| "no answer".into()),
           "status": "error"})
}

fn head(p: &ProblemRecord) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("problem_id".into(), json!(p.id));
    m.insert("question".into(), json!(p.question));
    m.insert("correct_answer".into(), json!(p.answer));
    m
}

fn iterated(p: &ProblemRecord) -> Value {
    let Some(nodes) = p.samples.first() else {
        return error_entry(p);
    };
    let (attempts, summaries) = by_round(nodes);
    if attempts.is_empty() {
        return error_entry(p);
    }
    let mut its = Vec::new();
    for (&round, n) in &attempts {
        let s = summaries.get(&(round + 1));
        its.push(json!({
            "iteration": round,
            "reasoning": out(n, "text"),
            "answer": out(n, "answer"),
            "correct": out(n, "correct"),
            "finish_reason": out(n, "finish_reason"),
            "summary": s.map_or(Value::Null, |s| out(s, "text")),
            "summary_finish_reason": s.map_or(Value::Null, |s| out(s, "finish_reason")),
            "final_answer": out(n, "answer"),
            "final_correct": out(n, "correct"),
        }));
    }
    let mut m = head(p);
    let copy = |m: &mut Map<String, Value>, prefix: &str, it: &Value| {
        for k in ["reasoning", "answer", "correct", "finish_reason"] {
            m.insert(format!("{prefix}_{k}"), it[k].clone());
        }
    };
    copy(&mut m, "initial", &its[0]);
    m.insert("summary".into(), its[0]["summary"].clone());
    if let Some(it) = its.get(1) {
        copy(&mut m, "improved", it);
    }
    let last = its.last().cloned().unwrap_or_default();
    m.insert("final_answer".into(), last["answer"].clone());
    m.insert("final_correct".into(), last["correct"].clone());
    m.insert("iterations".into(), Value::Array(its));
    Value::Object(m)
}

fn pass_at_k(p: &ProblemRecord) -> Value {
    let mut sols = Vec::new();
    let (mut prompt, mut completion) = (0u64, 0u64);
    for (i, nodes) in p.samples.iter().enumerate() {
        let (attempts, _) = by_round(nodes);
        let Some(n) = attempts.values().next() else {
            continue;
        };
        let u = out(n, "usage");
        prompt += u["prompt_tokens"].as_u64().unwrap_or(0);
        completion += u["completion_tokens"].as_u64().unwrap_or(0);
        sols.push(json!({
            "solution_id": i + 1,
            "reasoning": out(n, "text"),
            "answer": out(n, "answer"),
            "correct": out(n, "correct"),
            "finish_reason": out(n, "finish_reason"),
        }));
    }
    if sols.is_empty() {
        return error_entry(p);
    }
    let num_correct = sols.iter().filter(|s| s["correct"] == true).count();
    // the consensus: the run's vote node when it has one, else the most frequent answer
    // (ties to the first seen, as the tool did)
    let vote = p.aggregates.values().find(|n| n.kind == "vote");
    let mut counts: Vec<(Value, usize, Value)> = Vec::new();
    for s in &sols {
        match counts.iter_mut().find(|c| c.0 == s["answer"]) {
            Some(c) => c.1 += 1,
            None => counts.push((s["answer"].clone(), 1, s["correct"].clone())),
        }
    }
    let top = counts
        .iter()
        .fold(None::<&(Value, usize, Value)>, |best, c| match best {
            Some(b) if b.1 >= c.1 => Some(b),
            _ => Some(c),
        })
        .cloned()
        .unwrap_or_default();
    let mut m = head(p);
    m.insert("solutions".into(), Value::Array(sols));
    m.insert(
        "token_usage".into(),
        json!({"prompt_tokens": prompt, "completion_tokens": completion,
               "total_tokens": prompt + completion}),
    );
    m.insert("num_correct".into(), json!(num_correct));
    m.insert("pass_at_k".into(), json!(num_correct > 0));
    m.insert(
        "consensus_answer".into(),
        vote.map(|v| out(v, "answer"))
            .filter(|a| !a.is_null())
            .unwrap_or(top.0),
    );
    m.insert(
        "consensus_correct".into(),
        vote.map(|v| out(v, "correct"))
            .filter(|c| !c.is_null())
            .unwrap_or(top.2),
    );
    m.insert("consensus_count".into(), json!(top.1));
    Value::Object(m)
}

/// Writes `results.original.json` into the run directory `dir`; `experiment_name` and
/// `config` become the file's own keys. Returns its path.
pub fn write(dir: &Path, experiment_name: &str, config: Value) -> Result<PathBuf, String> {
    let rf: RunFile = super::open(dir)?;
    let (problems, _) = rf.readable(Texts::Full);
    let pass_k = problems.iter().any(|p| p.samples.len() > 1);
    let results: Vec<Value> = problems
        .iter()
        .map(|p| if pass_k { pass_at_k(p) } else { iterated(p) })
        .collect();
    let doc = json!({"experiment_name": experiment_name, "config": config, "results": results});
    let path = dir.join(FILE);
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    crate::atomic::write_atomically(&path, text.as_bytes())?;
    Ok(path)
}
