//! Regrading distill's own results.json: every finished `reason` and `continue` record of
//! every sample, then the `vote` aggregates from the regraded samples.

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
        let per_sample: Vec<Value> = p
            .get("samples")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(aggs) = p.get_mut("aggregates").and_then(Value::as_object_mut) {
            regrade_node_map(aggs, None, &prob, g, t)?;
            revote(aggs, &per_sample, &prob, g, t)?;
        }
    }
    Ok(())
}

/// Recomputes `vote` aggregates from the regraded samples they voted over (their `input`),
/// with the same majority rule and pass@k estimator as the `vote` kind.
fn revote(
    aggs: &mut Map<String, Value>,
    samples: &[Value],
    p: &ProblemCx,
    g: &Grader,
    t: &mut Tally,
) -> Result<(), String> {
    for (key, rec) in aggs.iter_mut() {
        if rec.get("kind").and_then(Value::as_str) != Some("vote")
            || rec.get("status").and_then(Value::as_str) != Some("done")
        {
            continue;
        }
        let Some(out) = rec.get_mut("output").and_then(Value::as_object_mut) else {
            continue;
        };
        let Some(input) = out.get("input").and_then(Value::as_str).map(str::to_string) else {
            t.stale_votes += 1; // written before votes recorded their input: left as it was
            continue;
        };
        let mut answers = Vec::new();
        let mut right = 0u64;
        for s in samples {
            let Some(o) = s
                .get(&input)
                .filter(|r| r["status"] == "done")
                .and_then(|r| r.get("output"))
            else {
                continue;
            };
            answers.push(o.get("answer").and_then(Value::as_str).map(str::to_string));
            right += u64::from(o.get("correct").and_then(Value::as_bool) == Some(true));
        }
        let n = answers.len() as u64;
        let mut err = None;
        let same = |a: &str, b: &str| g.same(a, b, p.question).unwrap_or(false);
        let winner = crate::nodes::vote::majority(&answers, &same);
        let correct = match &winner {
            Some((a, _)) => g.same(a, p.truth, p.question).unwrap_or_else(|e| {
                err = Some(e);
                false
            }),
            None => false,
        };
        if let Some(e) = err {
            return Err(e);
        }
        let old_answer = scalar_text(out.get("answer"));
        let old_correct = verdict(out.get("correct"));
        let ks: Vec<String> = out
            .get("pass_at")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        let mut pass = Map::new();
        for k in ks {
            if let Ok(kn) = k.parse::<u64>()
                && kn <= n
            {
                pass.insert(
                    k,
                    serde_json::json!(crate::nodes::vote::pass_at_k(n, right, kn)),
                );
            }
        }
        let new_answer = winner.as_ref().map(|(a, _)| a.clone());
        out.insert("answer".into(), answer_value(&new_answer));
        out.insert("correct".into(), Value::Bool(correct));
        out.insert(
            "votes".into(),
            serde_json::json!(winner.map(|w| w.1).unwrap_or(0)),
        );
        out.insert("n".into(), serde_json::json!(n));
        out.insert("correct_count".into(), serde_json::json!(right));
        out.insert("answers".into(), serde_json::json!(answers));
        out.insert("pass_at".into(), Value::Object(pass));
        t.record_vote(Change {
            problem: p.id.to_string(),
            sample: None,
            node: key.clone(),
            old_answer,
            new_answer,
            old_correct,
            new_correct: correct,
        });
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

/// The text a finished graded record's answer is read from: `output.text` of a `reason`
/// node, `output.new_text` of a `continue` node (its answer is read from the new text).
fn reason_text(rec: &Value) -> Option<&str> {
    let field = crate::nodes::graded_answer_field(rec.get("kind").and_then(Value::as_str)?)?;
    if rec.get("status").and_then(Value::as_str) != Some("done") {
        return None;
    }
    rec.get("output")?.get(field)?.as_str()
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
