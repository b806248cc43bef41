//! Cache bundles: the cache entries of exactly some runs, in one file that travels (a
//! paper's readers reproduce its tables for $0). `distill cache export RUN_DIR… --out
//! FILE` writes a tar archive compressed with zstd holding `bundle.json` (what is inside),
//! each run's `config.json` and `cache_keys.txt` under `runs/<n>-<run id>/`, and every entry
//! those runs used, as stored, under `objects/ab/cdef…`. `distill cache import FILE` checks
//! every entry (header, checksum, the key it claims) before adding it; entries already in
//! the cache are kept; the runs' files go to `<cache>/bundles/<file stem>/` for provenance.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::cache::{Cache, Key};

/// What an export wrote.
#[derive(Debug, Default)]
pub struct Exported {
    pub runs: usize,
    pub entries: usize,
    /// Keys a run used that the cache no longer holds.
    pub missing: Vec<String>,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Imported {
    pub added: usize,
    pub present: usize,
    /// Entries refused, with why (`objects/ab/cd…: checksum mismatch`).
    pub rejected: Vec<String>,
    pub runs_dir: Option<PathBuf>,
}

fn append(t: &mut tar::Builder<impl std::io::Write>, path: &str, bytes: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, path, bytes)
        .with_context(|| format!("adding {path} to the bundle"))
}

/// Writes the bundle of `runs` (run directories) from `cache` to `out`.
pub fn export(cache: &Cache, runs: &[PathBuf], out: &Path) -> Result<Exported> {
    let mut keys = BTreeSet::new();
    let mut listed = Vec::new();
    for (i, dir) in runs.iter().enumerate() {
        let used = crate::runfile::cache_keys(dir)?;
        let cfg = crate::runfile::read_config(dir).map_err(anyhow::Error::msg)?;
        let id = cfg["run_id"].as_str().unwrap_or("run").to_string();
        listed.push((format!("runs/{i}-{id}"), dir.clone(), used.len()));
        keys.extend(used);
    }
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let zw = zstd::Encoder::new(file, 3)?.auto_finish();
    let mut t = tar::Builder::new(zw);
    let mut done = Exported {
        runs: runs.len(),
        ..Default::default()
    };
    let manifest = json!({
        "format": 1,
        "distill_version": env!("CARGO_PKG_VERSION"),
        "cache_format_version": crate::cache::FORMAT_VERSION,
        "entries": keys.len(),
        "runs": listed.iter().map(|(p, d, n)| json!({"path": p, "from": d.display().to_string(), "keys": n})).collect::<Vec<_>>(),
    });
    append(
        &mut t,
        "bundle.json",
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    for (prefix, dir, _) in &listed {
        for f in ["config.json", crate::runfile::KEYS] {
            let bytes = std::fs::read(dir.join(f))
                .with_context(|| format!("reading {}", dir.join(f).display()))?;
            append(&mut t, &format!("{prefix}/{f}"), &bytes)?;
        }
    }
    for k in &keys {
        let key = Key(k.clone());
        match cache.bytes_of(&key) {
            Some(bytes) => {
                append(&mut t, &format!("objects/{}/{}", &k[..2], &k[2..]), &bytes)?;
                done.entries += 1;
            }
            None => done.missing.push(k.clone()),
        }
    }
    t.into_inner()?;
    Ok(done)
}

/// The key an archive path names (`objects/ab/cdef…`).
fn key_of(path: &str) -> Option<Key> {
    let rest = path.strip_prefix("objects/")?;
    let (a, b) = rest.split_once('/')?;
    (a.len() == 2 && !b.contains('/')).then(|| Key(format!("{a}{b}")))
}

/// Adds a bundle's entries to `cache`, each checked first.
pub fn import(cache: &Cache, bundle: &Path) -> Result<Imported> {
    let file = File::open(bundle).with_context(|| format!("opening {}", bundle.display()))?;
    let zr = zstd::Decoder::new(file)
        .with_context(|| format!("{} is not a zstd-compressed bundle", bundle.display()))?;
    let mut t = tar::Archive::new(zr);
    let stem = bundle
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .split('.')
                .next()
                .unwrap_or("bundle")
                .to_string()
        })
        .unwrap_or_else(|| "bundle".into());
    let runs_dir = cache.root().join("bundles").join(stem);
    let mut done = Imported::default();
    let mut saw_manifest = false;
    let entries = t.entries().with_context(|| {
        format!(
            "{} is not a distill bundle (not a tar archive)",
            bundle.display()
        )
    })?;
    for e in entries {
        let mut e = e.with_context(|| format!("reading {}", bundle.display()))?;
        let path = e.path()?.to_string_lossy().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes)
            .with_context(|| format!("reading {path} in {}", bundle.display()))?;
        if path == "bundle.json" {
            saw_manifest = true;
        } else if let Some(key) = key_of(&path) {
            match cache.install(&key, &bytes) {
                Ok(true) => done.added += 1,
                Ok(false) => done.present += 1,
                Err(why) => done.rejected.push(format!("{path}: {why}")),
            }
        } else if let Some(rest) = path.strip_prefix("runs/")
            && !rest.split('/').any(|c| c == ".." || c.is_empty())
        {
            let to = runs_dir.join(rest);
            std::fs::create_dir_all(to.parent().expect("has parent"))?;
            std::fs::write(&to, &bytes).with_context(|| format!("writing {}", to.display()))?;
            done.runs_dir = Some(runs_dir.clone());
        } else {
            done.rejected
                .push(format!("{path}: not part of a distill bundle"));
        }
    }
    if !saw_manifest {
        bail!(
            "{} is not a distill bundle (no bundle.json): make one with `distill cache export RUN_DIR… --out FILE`",
            bundle.display()
        );
    }
    Ok(done)
}
