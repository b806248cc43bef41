//! Regrading the original tool's results.json (pass@k `solutions`, iterated `iterations`),
//! including the summary fields it derived from the verdicts.

use super::*;

// ---------------------------------------------------------------------------------------------
// The original tool's results.json (pass@k `solutions`, iterated `iterations`)

pub(super) fn original_results(doc: &mut Value) -> Option<&mut Vec<Value>> {
    let results = if doc.is_array() {
        doc.as_array_mut()?
    } else {
        doc.get_mut("results")?.as_array_mut()?
    };
    let recognized = results.iter().any(|r| {
        r.get("solutions").is_some_and(Value::is_array)
            || r.get("iterations").is_some_and(Value::is_array)
    });
    recognized.then_some(results)
}

pub(super) fn regrade_original(
    results: &mut [Value],
    g: &Grader,
    t: &mut Tally,
) -> Result<(), String> {
    for (ri, r) in results.iter_mut().enumerate() {
        let Some(r) = r.as_object_mut() else { continue };
        let id = scalar_text(r.get("problem_id"))
            .or_else(|| scalar_text(r.get("id")))
            .unwrap_or_else(|| format!("#{ri}"));
        let question = ["question", "problem"]
            .iter()
            .find_map(|k| r.get(*k).and_then(Value::as_str))
            .map(str::to_string);
        let truth = TRUTH_KEYS.iter().find_map(|k| scalar_text(r.get(*k)));
        let has_records = ["solutions", "iterations"].iter().any(|k| {
            r.get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(is_original_record))
        });
        let Some(truth) = truth else {
            t.no_truth += usize::from(has_records);
            continue;
        };
        let prob = ProblemCx {
            id: &id,
            truth: &truth,
            question: question.as_deref(),
        };
        if let Some(sols) = r.get_mut("solutions").and_then(Value::as_array_mut) {
            let new = regrade_records(sols, "solution", "solution_id", &prob, g, t)?;
            update_passk_summary(r, &new, &prob, g)?;
        }
        if let Some(iters) = r.get_mut("iterations").and_then(Value::as_array_mut) {
            let new = regrade_records(iters, "iteration", "iteration", &prob, g, t)?;
            update_iteration_copies(r, &new);
        }
    }
    Ok(())
}

/// A solution/iteration that carries an answer, a verdict or model text (error entries don't).
fn is_original_record(rec: &Value) -> bool {
    rec.as_object().is_some_and(|o| {
        o.contains_key("answer")
            || o.contains_key("correct")
            || TEXT_KEYS.iter().any(|k| o.contains_key(*k))
    })
}

/// Regrades each record in place; returns (index in `records`, new answer, new verdict) per graded record.
fn regrade_records(
    records: &mut [Value],
    label: &str,
    id_key: &str,
    p: &ProblemCx,
    g: &Grader,
    t: &mut Tally,
) -> Result<Vec<(usize, Option<String>, bool)>, String> {
    let mut out = Vec::new();
    for (i, rec) in records.iter_mut().enumerate() {
        if !is_original_record(rec) {
            continue;
        }
        let Some(o) = rec.as_object_mut() else {
            continue;
        };
        let text = TEXT_KEYS.iter().find_map(|k| {
            o.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
        });
        let old_answer = scalar_text(o.get("answer"));
        let old_correct = verdict(o.get("correct"));
        let (new_answer, new_correct) =
            g.grade(text, old_answer.as_deref(), p.truth, p.question)?;
        let n = scalar_text(o.get(id_key)).unwrap_or_else(|| i.to_string());
        o.insert("answer".into(), answer_value(&new_answer));
        o.insert("correct".into(), Value::Bool(new_correct));
        out.push((i, new_answer.clone(), new_correct));
        t.record(Change {
            problem: p.id.to_string(),
            sample: None,
            node: format!("{label} {n}"),
            old_answer,
            new_answer,
            old_correct,
            new_correct,
        });
    }
    Ok(out)
}

/// pass@k per-problem fields derived from the solutions' verdicts, updated when present.
/// The consensus is the largest group of equivalent answers (under the chosen comparison),
/// ties going to the group seen first, as the original's `max` over insertion order did.
fn update_passk_summary(
    r: &mut Map<String, Value>,
    new: &[(usize, Option<String>, bool)],
    p: &ProblemCx,
    g: &Grader,
) -> Result<(), String> {
    let num_correct = new.iter().filter(|(_, _, ok)| *ok).count();
    if r.contains_key("num_correct") {
        r.insert("num_correct".into(), Value::from(num_correct));
    }
    if r.contains_key("pass_at_k") {
        r.insert("pass_at_k".into(), Value::Bool(num_correct > 0));
    }
    if !r.contains_key("consensus_answer") {
        return Ok(());
    }
    let mut groups: Vec<(String, usize)> = Vec::new();
    for a in new.iter().filter_map(|(_, a, _)| a.as_deref()) {
        let a = a.trim();
        let mut hit = None;
        for (gi, (rep, _)) in groups.iter().enumerate() {
            if rep == a || g.same(a, rep, p.question)? {
                hit = Some(gi);
                break;
            }
        }
        match hit {
            Some(gi) => groups[gi].1 += 1,
            None => groups.push((a.to_string(), 1)),
        }
    }
    let best = groups
        .iter()
        .fold(None::<&(String, usize)>, |b, x| match b {
            Some(b) if b.1 >= x.1 => Some(b),
            _ => Some(x),
        });
    let (answer, count, correct) = match best {
        Some((a, n)) => (
            Value::String(a.clone()),
            Value::from(*n),
            g.same(a, p.truth, p.question)?,
        ),
        None => (Value::Null, Value::Null, false),
    };
    r.insert("consensus_answer".into(), answer);
    if r.contains_key("consensus_count") {
        r.insert("consensus_count".into(), count);
    }
    if r.contains_key("consensus_correct") {
        r.insert("consensus_correct".into(), Value::Bool(correct));
    }
    Ok(())
}

/// The iterated format's per-problem copies: `initial_*` = iteration 0, `improved_*`/`final_*` =
/// the last iteration. Updated only when present.
fn update_iteration_copies(r: &mut Map<String, Value>, new: &[(usize, Option<String>, bool)]) {
    let first = new.iter().find(|(i, _, _)| *i == 0);
    let last = new.iter().max_by_key(|(i, _, _)| *i);
    for (prefix, rec) in [("initial", first), ("improved", last), ("final", last)] {
        let Some((_, answer, ok)) = rec else { continue };
        let (ak, ck) = (format!("{prefix}_answer"), format!("{prefix}_correct"));
        if r.contains_key(&ak) {
            r.insert(ak, answer_value(answer));
        }
        if r.contains_key(&ck) {
            r.insert(ck, Value::Bool(*ok));
        }
    }
}
