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

/// A run directory's config.json with `problems.selected` handed to `each` one id at a time
/// and left an empty list in the value (a report of 100,000 problems does not hold them as
/// JSON values). Errors name the file.
pub fn read_streaming(dir: &Path, each: &mut dyn FnMut(&str)) -> Result<Value, String> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (is {} a run directory?)",
            path.display(),
            dir.display()
        )
    })?;
    let mut de = serde_json::Deserializer::from_str(&text);
    let v = serde::de::DeserializeSeed::deserialize(
        Streaming {
            path: &["problems", "selected"],
            each,
        },
        &mut de,
    )
    .and_then(|v| de.end().map(|_| v))
    .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    Ok(v)
}

/// A JSON value whose entry at `path` (a list of strings) is handed to `each`.
struct Streaming<'a, 'f> {
    path: &'a [&'a str],
    each: &'f mut dyn FnMut(&str),
}

impl<'de> serde::de::DeserializeSeed<'de> for Streaming<'_, '_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Streaming<'_, '_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if !self.path.is_empty() {
            let mut v = Vec::new();
            while let Some(x) = seq.next_element::<Value>()? {
                v.push(x);
            }
            return Ok(Value::Array(v));
        }
        while let Some(id) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            (self.each)(&id);
        }
        Ok(Value::Array(Vec::new()))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = serde_json::Map::new();
        let (key, rest) = self.path.split_first().unwrap_or((&"", &[]));
        while let Some(k) = map.next_key::<String>()? {
            let v = if k == *key && !self.path.is_empty() {
                map.next_value_seed(Streaming {
                    path: rest,
                    each: &mut *self.each,
                })?
            } else {
                map.next_value::<Value>()?
            };
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
    // any other value where the path leads: kept as it is
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
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
    fn config_read_streaming_is_config_without_its_ids() {
        let d = tempfile::tempdir().unwrap();
        let cfg = json!({"run_id": "r", "problems": {"path": "p.csv", "blake3": "x",
            "selected": ["a", "b\"c", "d\u{e9}"], "more": [1, {"k": null}]},
            "load": null, "n": [1.5, -2, true]});
        std::fs::write(
            d.path().join("config.json"),
            serde_json::to_vec_pretty(&cfg).unwrap(),
        )
        .unwrap();
        let mut ids = Vec::new();
        let v = read_streaming(d.path(), &mut |id| ids.push(id.to_string())).unwrap();
        assert_eq!(ids, ["a", "b\"c", "d\u{e9}"]);
        let mut want = cfg.clone();
        want["problems"]["selected"] = json!([]);
        assert_eq!(v, want);
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "the keys' order kept"
        );
        // a config without the list, and one that is not JSON
        std::fs::write(d.path().join("config.json"), b"{\"problems\": null}").unwrap();
        let v = read_streaming(d.path(), &mut |_| panic!("no ids")).unwrap();
        assert_eq!(v, json!({"problems": null}));
        std::fs::write(d.path().join("config.json"), b"{\"problems\": ").unwrap();
        assert!(
            read_streaming(d.path(), &mut |_| ())
                .unwrap_err()
                .contains("not JSON")
        );
    }

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
