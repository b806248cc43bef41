//! `--load_initial_reasoning FILE`: imports round-0 outputs of an earlier run — distill's
//! results.json or the original tool's (`results[].iterations[0]`, or `results[].solutions[]`
//! as samples) — into the cache as node entries under the keys this pipeline's round-0
//! `reason` nodes would use, so those nodes are cache hits. The file is checked first: every
//! record must name a problem of the selected set whose question and answer match, and carry
//! its reasoning text; any violation is an error naming the problem (the original tool
//! imported a missing reasoning as None and silently wrecked runs).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::RunCtx;
use crate::calls::split_reasoning;
use crate::nodes::Output;

/// One imported round-0 output.
struct Record {
    problem: String,
    sample: u32,
    question: Option<String>,
    answer: Option<String>,
    text: Option<String>,
    finish_reason: String,
}

fn as_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn read(path: &Path) -> Result<Vec<Record>> {
    // a run directory, a killed run's journal or a results file of either tool
    let v: Value = crate::runfile::read_doc(path).map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    if let Some(problems) = v.get("problems").and_then(|p| p.as_array()) {
        // distill's format: the round-0 reason node of every sample
        for p in problems {
            let id = as_text(p.get("id")).unwrap_or_default();
            for (s, nodes) in p
                .get("samples")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .enumerate()
            {
                // only what finished: a killed or stopped run has nodes that never ran
                let Some(rec) = nodes.as_object().and_then(|m| {
                    m.values()
                        .find(|r| r["kind"] == "reason" && r["round"] == 0 && r["status"] == "done")
                }) else {
                    continue;
                };
                out.push(Record {
                    problem: id.clone(),
                    sample: s as u32,
                    question: as_text(p.get("question")),
                    answer: as_text(p.get("answer")),
                    text: as_text(rec.pointer("/output/text")),
                    finish_reason: as_text(rec.pointer("/output/finish_reason"))
                        .unwrap_or_else(|| "stop".into()),
                });
            }
        }
        return Ok(out);
    }
    let Some(results) = v.get("results").and_then(|r| r.as_array()) else {
        bail!(
            "{}: neither distill's results.json (`problems`) nor the original tool's (`results`)",
            path.display()
        );
    };
    for r in results {
        let id = as_text(r.get("problem_id"))
            .or_else(|| as_text(r.get("id")))
            .unwrap_or_default();
        let truth = crate::original::TRUTH_KEYS
            .iter()
            .find_map(|k| as_text(r.get(*k)));
        let question = as_text(r.get("question"));
        let rows: Vec<&Value> = if let Some(its) = r.get("iterations").and_then(|i| i.as_array()) {
            its.iter()
                .filter(|i| i.get("iteration").and_then(|n| n.as_u64()) == Some(0))
                .take(1)
                .collect()
        } else if let Some(sols) = r.get("solutions").and_then(|s| s.as_array()) {
            sols.iter().collect()
        } else {
            bail!(
                "{}: problem `{id}` has neither `iterations` nor `solutions`",
                path.display()
            );
        };
        if rows.is_empty() {
            bail!("{}: problem `{id}` has no iteration 0", path.display());
        }
        for (s, row) in rows.into_iter().enumerate() {
            out.push(Record {
                problem: id.clone(),
                sample: s as u32,
                question: question.clone(),
                answer: truth.clone(),
                text: crate::original::TEXT_KEYS
                    .iter()
                    .find_map(|k| as_text(row.get(*k))),
                finish_reason: as_text(row.get("finish_reason")).unwrap_or_else(|| "stop".into()),
            });
        }
    }
    Ok(out)
}

/// Checks and imports; returns how many node entries were written.
pub fn import_initial_reasoning(ctx: &RunCtx, path: &Path) -> Result<usize> {
    let records = read(path)?;
    let p = &ctx.pipeline;
    let by_id: HashMap<&str, &crate::data::Problem> = p
        .problem_set
        .problems
        .iter()
        .map(|q| (q.id.as_str(), q))
        .collect();
    let selected: HashMap<&str, &crate::data::Problem> =
        p.problems.iter().map(|q| (q.id.as_str(), q)).collect();
    let round0: Vec<&crate::spec::Node> = p
        .nodes
        .iter()
        .filter(|n| n.kind == "reason" && n.round == 0 && n.deps().is_empty())
        .collect();
    if round0.is_empty() {
        bail!("the pipeline has no round-0 `reason` node without inputs to import into");
    }
    let mut errors = Vec::new();
    for r in &records {
        let Some(q) = by_id.get(r.problem.as_str()) else {
            errors.push(format!(
                "problem `{}` is not in {}",
                r.problem,
                p.problems_path.display()
            ));
            continue;
        };
        if let Some(qt) = &r.question
            && qt.trim() != q.question().trim()
        {
            errors.push(format!(
                "problem `{}`: its question differs from the problem set's",
                r.problem
            ));
        }
        if let Some(a) = &r.answer
            && a.trim() != q.answer().trim()
        {
            errors.push(format!(
                "problem `{}`: its answer `{a}` differs from the problem set's `{}`",
                r.problem,
                q.answer()
            ));
        }
        if r.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
            errors.push(format!(
                "problem `{}` (sample {}): no reasoning text to import",
                r.problem, r.sample
            ));
        }
    }
    if !errors.is_empty() {
        bail!(
            "{}: {} problem(s) in the file:\n  {}",
            path.display(),
            errors.len(),
            errors.join("\n  ")
        );
    }
    let mut written = 0;
    let upstream = HashMap::new();
    for r in &records {
        let Some(problem) = selected.get(r.problem.as_str()) else {
            continue;
        };
        if r.sample >= p.spec.samples {
            continue;
        }
        for node in &round0 {
            let cx = ctx.node_cx(node, problem, r.sample, &upstream);
            let prompt = crate::nodes::reason::prompt_of(&cx)?;
            let model = node.model.as_deref().expect("validated");
            let (_, key) = ctx
                .calls
                .node_key(&cx.site(), model, &prompt, &json!(null))?;
            let text = r.text.clone().unwrap_or_default();
            let (reasoning, answer_text) = split_reasoning(&text, None);
            let mut out = Output::new();
            out.insert("prompt".into(), json!(prompt.full_text()));
            out.insert("text".into(), json!(text));
            out.insert("reasoning".into(), json!(reasoning));
            out.insert("answer_text".into(), json!(answer_text));
            out.insert("finish_reason".into(), json!(r.finish_reason));
            out.insert("finish_reasons".into(), json!([r.finish_reason]));
            out.insert(
                "usage".into(),
                serde_json::to_value(crate::llm::Usage::default())?,
            );
            out.insert("round".into(), json!(0));
            out.insert(
                "model".into(),
                json!(format!("imported:{}", path.display())),
            );
            ctx.calls.store_node_entry(&key, &out)?;
            written += 1;
        }
    }
    Ok(written)
}
