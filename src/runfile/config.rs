//! What a run was made from, as config.json records it for `--resume`: how the pipeline was
//! loaded (the file, `--set` values, filters) and the blake3 of each part of the resolved
//! config that decides the results (the merged pipeline, the prompt texts, the problem
//! file, the selection, the cache key scheme). A resumed run reloads the same way and
//! refuses when any part no longer hashes the same.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::Key;
use crate::data::Filters;
use crate::spec::Pipeline;

/// How a run's pipeline was loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadRecord {
    /// The pipeline file, absolute.
    pub file: PathBuf,
    pub sets: Vec<String>,
    pub filters: Filters,
}

impl LoadRecord {
    pub fn new(file: &Path, sets: &[String], filters: &Filters) -> LoadRecord {
        LoadRecord {
            file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
            sets: sets.to_vec(),
            filters: filters.clone(),
        }
    }
}

/// The parts of a resolved config that decide a run's results, each hashed.
pub fn hashes(p: &Pipeline) -> Value {
    let h = |v: Value| Key::of(&v).0;
    json!({
        "pipeline": h(p.tree.clone()),
        "prompts": h(serde_json::to_value(&p.prompts).unwrap_or_default()),
        "problem_file": p.problem_set.file_hash,
        "selection": h(json!(p.problems.iter().map(|q| q.id.as_str()).collect::<Vec<_>>())),
        "key_scheme": crate::cache::FORMAT_VERSION,
    })
}

/// The parts that differ between a recorded run and a reloaded pipeline, by name.
pub fn changed(recorded: &Value, now: &Pipeline) -> Vec<&'static str> {
    let now = hashes(now);
    [
        "pipeline",
        "prompts",
        "problem_file",
        "selection",
        "key_scheme",
    ]
    .into_iter()
    .filter(|k| recorded.get(*k) != now.get(*k))
    .collect()
}
