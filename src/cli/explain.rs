//! `distill pipeline plan FILE --explain`: for each call the plan would send, the nearest
//! record of the same node (same problem and node id) in the runs under the results root,
//! and what differs from it — prompt text (the first differing line), the model's
//! parameters, the model, the sample, the cache format — or that nothing differs (the
//! entry is then missing from this cache: another `--cache`, `cache gc`, a stopped run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::calls::PlannedMiss;
use crate::spec::Pipeline;

/// One earlier record of a node.
struct Seen {
    run: usize,
    sample: u32,
    prompt: String,
}

/// An earlier run: its folder, pipeline tree and cache format.
struct Run {
    dir: PathBuf,
    tree: Value,
    format: Option<u64>,
}

/// Node records by (problem id, node id).
type Records = BTreeMap<(String, String), Vec<Seen>>;

/// Longest text of a prompt line shown.
const SHOWN_CHARS: usize = 100;

/// The run directories under `root` (`<pipeline>/<run-id>/`), oldest first by run id.
fn run_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for p in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for r in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
            if r.path().join("config.json").is_file() {
                dirs.push(r.path());
            }
        }
    }
    dirs.sort_by_key(|d| d.file_name().map(|n| n.to_os_string()));
    dirs
}

/// Every earlier run (finished, or stopped: read through `runfile`) and its node records
/// by (problem id, node id).
fn index(root: &Path) -> (Vec<Run>, Records) {
    let mut runs = Vec::new();
    let mut seen = Records::new();
    for dir in run_dirs(root) {
        let Ok(rf) = crate::runfile::read::open(&dir) else {
            continue;
        };
        let Some(cfg) = rf.config() else { continue };
        let run = runs.len();
        let (problems, _) = rf.readable(crate::runfile::read::Texts::Full);
        for p in problems {
            for (s, sample) in p.samples.iter().enumerate() {
                for (node, rec) in sample {
                    let Some(prompt) = rec
                        .output
                        .as_ref()
                        .and_then(|o| o.get("prompt"))
                        .and_then(Value::as_str)
                    else {
                        continue;
                    };
                    seen.entry((p.id.clone(), node.clone()))
                        .or_default()
                        .push(Seen {
                            run,
                            sample: s as u32,
                            prompt: prompt.to_string(),
                        });
                }
            }
        }
        runs.push(Run {
            dir,
            format: cfg["provenance"]["cache_format_version"].as_u64(),
            tree: cfg["pipeline"].clone(),
        });
    }
    (runs, seen)
}

/// `a → b` for each differing key of two parameter maps (unset and null are the same).
fn param_diffs(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let shown = |v: Option<&Value>| match v {
        None | Some(Value::Null) => "unset".to_string(),
        Some(v) => v.to_string(),
    };
    keys.into_iter()
        .filter(|k| {
            let a = o.get(*k).filter(|v| !v.is_null());
            let b = n.get(*k).filter(|v| !v.is_null());
            a != b
        })
        .map(|k| format!("{k} {} → {}", shown(o.get(k)), shown(n.get(k))))
        .collect()
}

fn clip(s: &str) -> String {
    let mut t: String = s.chars().take(SHOWN_CHARS).collect();
    if s.chars().count() > SHOWN_CHARS {
        t.push('…');
    }
    format!("{t:?}")
}

/// The first differing line of two prompts, and how many lines differ.
fn prompt_diff(old: &str, new: &str) -> Option<String> {
    if old == new {
        return None;
    }
    let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let differing = (0..o.len().max(n.len()))
        .filter(|&i| o.get(i) != n.get(i))
        .count();
    let i = (0..o.len().max(n.len())).find(|&i| o.get(i) != n.get(i))?;
    Some(format!(
        "prompt: {differing} line(s) differ; first, line {}:\n          - {}\n          + {}",
        i + 1,
        o.get(i).map_or("(none)".into(), |l| clip(l)),
        n.get(i).map_or("(none)".into(), |l| clip(l)),
    ))
}

/// What differs between an earlier record and the planned call.
fn differences(p: &Pipeline, miss: &PlannedMiss, seen: &Seen, run: &Run) -> Vec<String> {
    let mut d = Vec::new();
    if let Some(t) = prompt_diff(&seen.prompt, &miss.prompt) {
        d.push(t);
    }
    let model_name = p
        .node(&miss.node_id)
        .and_then(|n| n.model.clone())
        .unwrap_or_default();
    let old_model = &run.tree["models"][&model_name];
    if let Some(spec) = p.spec.models.get(&model_name) {
        if old_model.is_null() {
            d.push(format!(
                "model `{model_name}` is not in that run's pipeline"
            ));
        } else {
            for (field, now) in [
                ("provider", Some(spec.provider.clone())),
                ("model", Some(spec.model.clone())),
                ("cache_namespace", spec.cache_namespace.clone()),
                ("endpoint", Some(spec.endpoint.as_str().to_string())),
            ] {
                let was = old_model[field].as_str().map(String::from);
                let was = match (field, was) {
                    ("endpoint", None) => Some("chat".to_string()),
                    (_, w) => w,
                };
                if was != now {
                    d.push(format!(
                        "{field}: {} → {}",
                        was.unwrap_or_else(|| "unset".into()),
                        now.unwrap_or_else(|| "unset".into())
                    ));
                }
            }
            let now = serde_json::to_value(spec.param_map()).unwrap_or_default();
            let mut was = old_model["params"].clone();
            if let (Some(w), Some(extra)) = (was.as_object_mut(), old_model["extra"].as_object()) {
                w.extend(extra.clone());
            }
            for diff in param_diffs(&was, &now) {
                d.push(format!("params: {diff}"));
            }
        }
    }
    let old_offset = run.tree["sample_offset"].as_u64().unwrap_or(0) as u32;
    let (was, now) = (seen.sample + old_offset, miss.sample + p.spec.sample_offset);
    if was != now {
        d.push(format!(
            "sample: {was} → {now} (sample index + sample_offset)"
        ));
    }
    if run.format != Some(u64::from(crate::cache::FORMAT_VERSION)) {
        d.push(format!(
            "cache format: {} → {}",
            run.format.map_or("unknown".into(), |f| f.to_string()),
            crate::cache::FORMAT_VERSION
        ));
    }
    d
}

/// The explanation of every planned miss, one block each.
pub fn explain(p: &Pipeline, misses: &[PlannedMiss], results_root: &Path) -> String {
    let (runs, seen) = index(results_root);
    let mut out = format!(
        "why {} call(s) miss the cache (nearest record of the same node in {} run(s) under {}):\n",
        misses.len(),
        runs.len(),
        results_root.display()
    );
    let mut misses: Vec<&PlannedMiss> = misses.iter().collect();
    misses.sort_by(|a, b| {
        (&a.problem_id, a.sample, &a.node_id).cmp(&(&b.problem_id, b.sample, &b.node_id))
    });
    for m in misses {
        out.push_str(&format!(
            "  {}/{} sample {}: ",
            m.problem_id, m.node_id, m.sample
        ));
        let candidates = seen
            .get(&(m.problem_id.clone(), m.node_id.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        // fewest differences, then the newest run
        let best = candidates
            .iter()
            .map(|s| (differences(p, m, s, &runs[s.run]), s))
            .min_by(|(da, sa), (db, sb)| da.len().cmp(&db.len()).then(sb.run.cmp(&sa.run)));
        match best {
            None => out.push_str("no earlier run has this node for this problem\n"),
            Some((d, s)) if d.is_empty() => out.push_str(&format!(
                "nothing differs from {} (sample {}): its entry is not in this cache (another --cache, `cache gc`, or the run stopped before it)\n",
                runs[s.run].dir.display(),
                s.sample
            )),
            Some((d, s)) => {
                out.push_str(&format!(
                    "nearest: {} (sample {})\n",
                    runs[s.run].dir.display(),
                    s.sample
                ));
                for line in d {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_of_prompts_and_params() {
        assert_eq!(prompt_diff("a\nb", "a\nb"), None);
        let d = prompt_diff("a\nb\nc", "a\nB\nc").unwrap();
        assert!(d.contains("1 line(s) differ; first, line 2"), "{d}");
        assert!(d.contains("- \"b\"") && d.contains("+ \"B\""), "{d}");
        let old = serde_json::json!({"temperature": 0.6, "top_p": 0.95});
        let new = serde_json::json!({"temperature": 0.8, "top_p": 0.95, "seed": null});
        assert_eq!(param_diffs(&old, &new), ["temperature 0.6 → 0.8"]);
    }
}
