//! What a run was made from, as config.json records it for `--resume`: how the pipeline was
//! loaded (the file, `--set` values, filters) and the blake3 of each part of the resolved
//! config that decides the results (the merged pipeline, the prompt texts, the problem
//! file, the selection, the cache key scheme). A resumed run reloads the same way and
//! refuses when any part no longer hashes the same. A run of one shard (`--shard I/N`) also
//! records [`ShardRecord`]: which piece it is and the hash of the config it is a piece of
//! (the same for every shard of one run: what `distill report` merges by).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::Key;
use crate::data::{Filters, Selection, Shard};
use crate::spec::Pipeline;

/// How a run's pipeline was loaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadRecord {
    /// The pipeline file, absolute.
    pub file: PathBuf,
    pub sets: Vec<String>,
    pub filters: Filters,
    /// `--shard I/N` (absent: the whole selection; older runs have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

impl LoadRecord {
    pub fn new(
        file: &Path,
        sets: &[String],
        filters: &Filters,
        shard: Option<Shard>,
    ) -> LoadRecord {
        LoadRecord {
            file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
            sets: sets.to_vec(),
            filters: filters.clone(),
            shard,
        }
    }
}

/// config.json's `shard` (absent for a run of the whole selection and in older runs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShardRecord {
    /// 0-based.
    pub index: u32,
    pub count: u32,
    /// blake3 of the config hashes of the whole selection (the unsharded run's): equal for
    /// every shard of one run, different when any part that decides results differs.
    pub of: String,
    /// Problems in the whole selection (all shards together).
    pub problems_total: usize,
}

impl ShardRecord {
    /// A sharded pipeline's record; None for a whole run.
    pub fn of_pipeline(p: &Pipeline) -> Option<ShardRecord> {
        let s = p.shard.as_ref()?;
        Some(ShardRecord {
            index: s.shard.index,
            count: s.shard.count,
            of: Key::of(&hashes_with(p, &s.whole)).0,
            problems_total: s.whole.len(),
        })
    }

    /// A run's record from its config.json: None when the run was not sharded (or an older
    /// distill wrote it); an unreadable record is treated as none.
    pub fn read(config: &Value) -> Option<ShardRecord> {
        serde_json::from_value(config.get("shard")?.clone()).ok()
    }

    /// `2/4`.
    pub fn shard(&self) -> Shard {
        Shard {
            index: self.index,
            count: self.count,
        }
    }
}

/// The parts of a resolved config that decide a run's results, each hashed.
pub fn hashes(p: &Pipeline) -> Value {
    hashes_with(p, &p.problems)
}

/// The same, with this selection.
fn hashes_with(p: &Pipeline, selection: &Selection) -> Value {
    let h = |v: Value| Key::of(&v).0;
    json!({
        "pipeline": h(p.tree.clone()),
        "prompts": h(serde_json::to_value(&p.prompts).unwrap_or_default()),
        "problem_file": p.problem_set.file_hash,
        "selection": selection_hash(selection),
        "key_scheme": crate::cache::FORMAT_VERSION,
    })
}

/// `Key::of` the JSON list of the selection's ids, hashed as the ids are read (a list of
/// 100,000 ids is never held). A row that no longer reads hashes as no selection at all, so
/// the config differs from any recorded one.
fn selection_hash(selection: &Selection) -> String {
    let mut h = blake3::Hasher::new();
    h.update(format!("distill-cache-v{}\n[", crate::cache::FORMAT_VERSION).as_bytes());
    let mut buf = Vec::new();
    for (i, p) in selection.iter().enumerate() {
        let Ok(p) = p else {
            return String::new();
        };
        buf.clear();
        if i > 0 {
            buf.push(b',');
        }
        serde_json::to_writer(&mut buf, &p.id).expect("a string serializes");
        h.update(&buf);
    }
    h.update(b"]");
    h.finalize().to_hex().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_hash_is_the_key_of_its_id_list() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.csv");
        std::fs::write(
            &f,
            "id,question,answer\na,q1,1\n\"b\"\"x\",q2,2\nc\u{e9},q3,3\n",
        )
        .unwrap();
        let file = crate::data::ProblemFile::open(&f).unwrap();
        let all = crate::data::select(&file, &Filters::default()).unwrap();
        let ids: Vec<String> = all.iter().map(|p| p.unwrap().id).collect();
        assert_eq!(ids, ["a", "b\"x", "c\u{e9}"]);
        assert_eq!(selection_hash(&all), Key::of(&json!(ids)).0);
        let none = Selection::of(&file, Vec::new());
        assert_eq!(selection_hash(&none), Key::of(&json!([])).0);
    }
}
