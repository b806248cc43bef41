//! Regrading distill's own results.json: every graded `reason` record of every sample.

use super::*;

// ---------------------------------------------------------------------------------------------
// distill's results.json

pub(super) fn is_distill(doc: &Value) -> bool {
    let Some(obj) = doc.as_object() else {
        return false;
    };
    let Some(problems) = obj.get("problems").and_then(Value::as_array) else {
        return false;
    };
    let looks_like_run = obj.contains_key("run_id") || obj.contains_key("pipeline");
    looks_like_run
        || problems
            .iter()
            .any(|p| p.get("samples").is_some_and(Value::is_array))
}

pub(super) fn regrade_distill(doc: &mut Value, g: &Grader, t: &mut Tally) -> Result<(), String> {
    let problems = doc
        .get_mut("problems")
        .and_then(Value::as_array_mut)
        .expect("checked by is_distill");
    for (pi, p) in problems.iter_mut().enumerate() {
        let Some(p) = p.as_object_mut() else { continue };
        let id = scalar_text(p.get("id")).unwrap_or_else(|| format!("#{pi}"));
        let question = p
            .get("question")
            .and_then(Value::as_str)
            .map(str::to_string);
        let Some(truth) = scalar_text(p.get("answer")) else {
            t.no_truth += usize::from(has_reason_records(p));
            continue;
        };
        let prob = ProblemCx {
            id: &id,
            truth: &truth,
            question: question.as_deref(),
        };
        if let Some(samples) = p.get_mut("samples").and_then(Value::as_array_mut) {
            for (si, s) in samples.iter_mut().enumerate() {
                if let Some(nodes) = s.as_object_mut() {
                    let sample = u32::try_from(si).ok();
                    regrade_node_map(nodes, sample, &prob, g, t)?;
                }
            }
        }
        if let Some(aggs) = p.get_mut("aggregates").and_then(Value::as_object_mut) {
            regrade_node_map(aggs, None, &prob, g, t)?;
        }
    }
    Ok(())
}

fn has_reason_records(p: &Map<String, Value>) -> bool {
    let in_map = |m: &Value| {
        m.as_object()
            .is_some_and(|m| m.values().any(|r| reason_text(r).is_some()))
    };
    p.get("samples")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(in_map))
        || p.get("aggregates").is_some_and(in_map)
}

/// `output.text` of a finished `reason` record.
fn reason_text(rec: &Value) -> Option<&str> {
    if rec.get("kind").and_then(Value::as_str) != Some("reason")
        || rec.get("status").and_then(Value::as_str) != Some("done")
    {
        return None;
    }
    rec.get("output")?.get("text")?.as_str()
}

fn regrade_node_map(
    nodes: &mut Map<String, Value>,
    sample: Option<u32>,
    p: &ProblemCx,
    g: &Grader,
    t: &mut Tally,
) -> Result<(), String> {
    for (key, rec) in nodes.iter_mut() {
        let Some(text) = reason_text(rec) else {
            continue;
        };
        let (new_answer, new_correct) = g.grade(Some(text), None, p.truth, p.question)?;
        let node = rec
            .get("node")
            .and_then(Value::as_str)
            .unwrap_or(key.as_str())
            .to_string();
        let out = rec
            .get_mut("output")
            .and_then(Value::as_object_mut)
            .expect("checked by reason_text");
        let old_answer = scalar_text(out.get("answer"));
        let old_correct = verdict(out.get("correct"));
        out.insert("answer".into(), answer_value(&new_answer));
        out.insert("correct".into(), Value::Bool(new_correct));
        t.record(Change {
            problem: p.id.to_string(),
            sample,
            node,
            old_answer,
            new_answer,
            old_correct,
            new_correct,
        });
    }
    Ok(())
}
