//! Reading the original Python tool's `results.json` into the report's model — pass@k
//! (`results[].solutions[]`: samples of round 0, `consensus_correct` as majority@k) and
//! iterated (`results[].iterations[]`: one sample, `iteration` = round) — plus the helpers both
//! formats share: lenient JSON (Python's `NaN`/`Infinity`, `"True"` strings) and attaching the
//! problem-set CSV's columns for grouping.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::load::{Attempt, Problem, RoundUsage, Run, State, VoteRecord};

pub use crate::original::parse_json;
use crate::original::text_of as text;
pub use crate::original::verdict as truthy;

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `token_usage` (or `usage`) of a record: (prompt, completion), when present.
fn tokens(r: &Value) -> Option<(u64, u64)> {
    let u = r.get("token_usage").or_else(|| r.get("usage"))?;
    let g = |k: &str| num(u.get(k)).unwrap_or(0.0) as u64;
    Some((g("prompt_tokens"), g("completion_tokens")))
}

/// An iteration's round: its `iteration` field, else its position.
fn round_of(i: usize, it: &Value) -> u32 {
    num(it.get("iteration")).map_or(i as u32, |x| x as u32)
}

fn attempt(rec: &Value) -> Attempt {
    if let Some(e) = text(rec.get("error")) {
        return Attempt::failed(Some(e));
    }
    Attempt {
        state: State::Done,
        correct: truthy(rec.get("correct")).unwrap_or(false),
        answer: text(rec.get("answer")),
        finish_reason: text(rec.get("finish_reason")),
        reasoning_chars: rec["reasoning"].as_str().map(|r| r.chars().count()),
        completion_tokens: tokens(rec).map(|t| t.1),
        error: None,
        reason: None,
    }
}

pub fn load_original(doc: &Value) -> Result<Run, String> {
    let results: Vec<&Value> = doc["results"].as_array().into_iter().flatten().collect();
    let iterated = results.iter().any(|r| r["iterations"].is_array());
    let mut warnings = Vec::new();
    let rounds: Vec<u32> = if iterated {
        let set: BTreeSet<u32> = results
            .iter()
            .flat_map(|r| {
                r["iterations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, it)| round_of(i, it))
            })
            .collect();
        set.into_iter().collect()
    } else {
        vec![0]
    };
    let samples = if iterated {
        1
    } else {
        results
            .iter()
            .map(|r| r["solutions"].as_array().map_or(0, Vec::len))
            .max()
            .unwrap_or(1)
            .max(1)
    };
    let mut per_iteration_tokens = false;
    let mut problems = Vec::new();
    for (pi, r) in results.iter().enumerate() {
        let id = text(r.get("problem_id"))
            .or_else(|| text(r.get("id")))
            .unwrap_or_else(|| format!("#{pi}"));
        let mut columns = BTreeMap::new();
        columns.insert("id".to_string(), id.clone());
        if let Some(q) = text(r.get("question")) {
            columns.insert("question".into(), q);
        }
        if let Some(a) = text(r.get("correct_answer")).or_else(|| text(r.get("answer"))) {
            columns.insert("answer".into(), a);
        }
        let error = text(r.get("error"));
        let mut usage = vec![RoundUsage::default(); rounds.len()];
        let mut votes = Vec::new();
        let sample_attempts: Vec<Vec<Attempt>> = if iterated {
            let its: Vec<&Value> = r["iterations"].as_array().into_iter().flatten().collect();
            let mut by_round: BTreeMap<u32, &Value> = BTreeMap::new();
            for (i, it) in its.iter().enumerate() {
                by_round.insert(round_of(i, it), it);
            }
            let mut atts: Vec<Attempt> = Vec::new();
            for (ri, round) in rounds.iter().enumerate() {
                let a = match by_round.get(round) {
                    Some(it) => {
                        if let Some((p, c)) = tokens(it) {
                            per_iteration_tokens = true;
                            usage[ri].prompt_tokens += p;
                            usage[ri].completion_tokens += c;
                        }
                        attempt(it)
                    }
                    None if error.is_some() => Attempt::failed(error.clone()),
                    None => Attempt::carry(atts.last(), State::Missing),
                };
                atts.push(a);
            }
            vec![atts]
        } else {
            let sols: Vec<&Value> = r["solutions"].as_array().into_iter().flatten().collect();
            if let Some((p, c)) = tokens(r) {
                usage[0].prompt_tokens = p;
                usage[0].completion_tokens = c;
            }
            if let Some(c) = truthy(r.get("consensus_correct")) {
                votes.push(VoteRecord {
                    source: "original tool's consensus_correct".into(),
                    status: "done".into(),
                    round: 0,
                    n: sols.len() as u64,
                    correct: Some(c),
                    pass_at: BTreeMap::new(),
                });
            }
            (0..samples)
                .map(|i| {
                    vec![match sols.get(i) {
                        Some(sol) => attempt(sol),
                        None => Attempt::failed(Some(
                            error.clone().unwrap_or_else(|| "solution missing".into()),
                        )),
                    }]
                })
                .collect()
        };
        // the original tool writes 0.0 when it had no price: only a positive cost is known
        let cost = r
            .get("cost_info")
            .and_then(|c| num(c.get("total_cost")))
            .filter(|c| *c > 0.0);
        for (i, u) in usage.iter_mut().enumerate() {
            u.cost_usd = if !iterated && i == 0 { cost } else { None };
        }
        let failed = error.is_some()
            || sample_attempts
                .iter()
                .flatten()
                .any(|a| a.state == State::Failed);
        problems.push(Problem {
            id,
            status: if failed { "failed" } else { "ok" }.into(),
            error,
            columns,
            samples: sample_attempts,
            usage,
            votes,
        });
    }
    if iterated && !per_iteration_tokens {
        warnings.push(
            "the original iterated format has no per-iteration token counts: tokens are shown as 0"
                .into(),
        );
    }
    let cfg = &doc["config"];
    let name = text(doc.get("experiment_name"))
        .or_else(|| text(cfg.get("experiment_name")))
        .unwrap_or_default();
    let mut run = Run {
        label: name.clone(),
        path: PathBuf::new(),
        format: if iterated {
            "original (iterated)"
        } else {
            "original (pass@k)"
        }
        .into(),
        pipeline: name,
        run_id: String::new(),
        status: "complete".into(),
        simulated: false,
        rounds,
        samples,
        problems,
        warnings,
    };
    if let Some(path) = cfg["data_path"].as_str() {
        attach_columns(&mut run, path, &[]);
    }
    Ok(run)
}

/// Finds `rel` as given, else under the folders of `bases` or any folder above them.
fn resolve(rel: &str, bases: &[&Path]) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    if p.is_absolute() {
        return None;
    }
    for base in bases {
        let mut dir = if base.is_dir() {
            Some(*base)
        } else {
            base.parent()
        };
        while let Some(d) = dir {
            let c = d.join(p);
            if c.is_file() {
                return Some(c);
            }
            dir = d.parent();
        }
    }
    None
}

/// Adds the problem-set CSV's columns to every problem found in it (by `id`). A CSV that
/// cannot be found or read leaves the run as it is (grouping by a column then says so).
pub fn attach_columns(run: &mut Run, rel: &str, bases: &[&Path]) {
    let Some(path) = resolve(rel, bases) else {
        return;
    };
    let Ok(mut rdr) = csv::Reader::from_path(&path) else {
        return;
    };
    let Ok(headers) = rdr.headers().cloned() else {
        return;
    };
    let Some(id_col) = headers.iter().position(|h| h == "id" || h == "problem_id") else {
        return;
    };
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for rec in rdr.records().flatten() {
        let Some(id) = rec.get(id_col) else { continue };
        let cols = headers
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect();
        rows.insert(id.trim().to_string(), cols);
    }
    for p in &mut run.problems {
        if let Some(cols) = rows.get(&p.id) {
            for (k, v) in cols {
                p.columns.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
