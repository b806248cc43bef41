//! Reading distill's results files without holding them whole: the journal (results.jsonl) of
//! a killed or live run, and results.json one problem a line (complete or cut short by a
//! crash), each node output's long texts replaced by their lengths.

use std::path::Path;

use serde_json::Value;

/// A run's journal (results.jsonl: a killed or live run) in the shape `read_streamed` gives.
pub(super) fn from_journal(l: crate::runfile::Lines) -> Value {
    let problems = l
        .problems
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|mut v| {
            slim(&mut v);
            Value::String(v.to_string())
        })
        .collect();
    serde_json::json!({
        "run_id": l.run_id,
        "pipeline": l.pipeline,
        "problem_lines": Value::Array(problems),
        "problems": [],
        "status": l.status,
    })
}

/// distill's results.json (one problem a line), complete or cut short by a crash, with each
/// node output's long texts replaced by their lengths. None when the file is not laid out so.
pub(super) fn read_streamed(file: &Path) -> Option<Value> {
    use std::io::BufRead;
    let f = std::fs::File::open(file).ok()?;
    let mut lines = std::io::BufReader::new(f).lines();
    if lines.next()?.ok()?.trim() != "{" {
        return None;
    }
    let mut problems = Vec::new();
    let mut head = serde_json::Map::new();
    let mut status = None;
    for line in lines {
        let line = line.ok()?;
        let l = line.trim().trim_end_matches(',');
        if let Some(rest) = l.strip_prefix("\"run_id\": ") {
            head.insert("run_id".into(), serde_json::from_str(rest).ok()?);
        } else if let Some(rest) = l.strip_prefix("\"pipeline\": ") {
            head.insert("pipeline".into(), serde_json::from_str(rest).ok()?);
        } else if let Some(rest) = l.strip_prefix("\"status\": ") {
            status = serde_json::from_str::<Value>(rest).ok();
        } else if l.starts_with('{')
            && let Ok(mut v) = serde_json::from_str::<Value>(l)
            && v.get("samples").is_some()
        {
            slim(&mut v);
            // kept as compact text: a parsed map of every problem would cost ~10 KB each
            problems.push(Value::String(v.to_string()));
        }
    }
    head.get("run_id")?;
    if problems.is_empty() && status.is_some() {
        // a complete file without a problem a line (e.g. pretty-printed by `distill grade`):
        // let the full parse read it
        return None;
    }
    head.insert("problem_lines".into(), Value::Array(problems));
    head.insert("problems".into(), Value::Array(Vec::new()));
    head.insert(
        "status".into(),
        status.unwrap_or_else(|| Value::String("truncated".into())),
    );
    Some(Value::Object(head))
}

/// Drops the long texts of every node output of a problem record (the report needs only the
/// reasoning's length, kept as `reasoning_chars`).
fn slim(problem: &mut Value) {
    let Some(obj) = problem.as_object_mut() else {
        return;
    };
    let mut groups: Vec<&mut Value> = Vec::new();
    for (k, v) in obj.iter_mut() {
        match (k.as_str(), v) {
            ("samples", Value::Array(a)) => groups.extend(a.iter_mut()),
            ("aggregates", v) => groups.push(v),
            _ => {}
        }
    }
    let records = groups
        .into_iter()
        .filter_map(|s| s.as_object_mut())
        .flat_map(|m| m.values_mut());
    for rec in records {
        let Some(o) = rec.get_mut("output").and_then(|o| o.as_object_mut()) else {
            continue;
        };
        if let Some(r) = o.get("reasoning").and_then(Value::as_str) {
            let n = r.chars().count();
            o.insert("reasoning_chars".into(), n.into());
        }
        for k in ["text", "reasoning", "prompt", "answer_text", "new_text"] {
            o.remove(k);
        }
    }
}
