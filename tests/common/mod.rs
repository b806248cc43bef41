//! Test support: a temporary project (the repository's prompts and small data, a pipeline
//! written by the test), running the real `distill` binary in it, and reading what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// The simulated reasoner's model block with a latency in milliseconds.
pub fn sim_model(latency_ms: u32) -> String {
    format!(
        "{{provider: sim, model: sim-reasoner, params: {{max_tokens: 4096, temperature: 0.6}}, sim: {{latency_ms: {latency_ms}}}}}"
    )
}

/// The paper's graph (attempt_0 + `rounds` × summarize → reason) over data/arithmetic.csv.
pub fn iterated(name: &str, rounds: u32, model: &str, extra: &str) -> String {
    format!(
        r#"name: {name}
problems: {{path: data/arithmetic.csv}}
models:
  reasoner: {model}
grade: {{extract: boxed, compare: exact}}
{extra}
nodes:
  attempt_0: {{kind: reason, model: reasoner, prompt: reason/default}}
  rounds:
    repeat: {rounds}
    body:
      summary: {{kind: summarize, model: reasoner, prompt: summarize/backtracking, input: previous.attempt}}
      attempt: {{kind: reason, model: reasoner, prompt: reason/with_summaries, vars: {{summaries: all.summary}}}}
"#
    )
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("prompts"), &dir.path().join("prompts"));
        copy_dir(&repo().join("data"), &dir.path().join("data"));
        std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
        Project { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
        c.current_dir(self.path());
        c.env_remove("DISTILL_CACHE").env_remove("ENABLE_API_CALLS");
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    /// Run directories of a pipeline, oldest first.
    pub fn runs(&self, pipeline: &str) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path().join("results").join(pipeline))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
    pub fn last_run(&self, pipeline: &str) -> PathBuf {
        self.runs(pipeline).pop().expect("a run directory")
    }
}

pub fn json(p: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
    )
    .unwrap()
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// results.json problems without what may differ between equal runs (DESIGN.md: cache-hit
/// flags, latencies).
pub fn comparable(run: &Path) -> Value {
    let mut v = json(&run.join("results.json"))["problems"].clone();
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("cached");
                m.remove("latency_ms");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

pub fn metrics(run: &Path) -> Value {
    json(&run.join("metrics.json"))
}

/// Every entry of a cache directory as (key, kind, value), read and verified by distill's
/// own cache (entries live in pack segments, not one file each).
pub fn cache_entries(cache: &Path) -> Vec<(String, String, Value)> {
    let c = distill::cache::Cache::open(cache).unwrap();
    c.entries()
        .into_iter()
        .map(|(k, at)| {
            let (kind, v) = c.read_entry(&k, &at).unwrap();
            (k.0, kind, v)
        })
        .collect()
}

/// Flips one byte near the end of every stored entry of a cache, in place; returns how many.
pub fn corrupt_every_entry(cache: &Path) -> usize {
    use distill::cache::Where;
    let c = distill::cache::Cache::open(cache).unwrap();
    let all = c.entries();
    for (_, at) in &all {
        let (file, at) = match at {
            Where::Loose(p) => (p.clone(), std::fs::metadata(p).unwrap().len() - 2),
            Where::Pack(f) => (
                cache.join("packs").join(format!("{}.pack", f.segment)),
                f.off + f.len as u64 - 2,
            ),
        };
        let mut b = std::fs::read(&file).unwrap();
        b[at as usize] ^= 0x55;
        std::fs::write(&file, b).unwrap();
    }
    all.len()
}

/// How many files of a cache's `packs/` end in `.ext` (`pack`: segments, `idx`: sealed).
pub fn pack_files(cache: &Path, ext: &str) -> usize {
    std::fs::read_dir(cache.join("packs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == ext)
        })
        .count()
}
