//! Attaching the problem-set CSV's columns to a run's problems (by `id`), for grouping.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load::Run;

/// Finds `rel` as given, else under the folders of `bases` or any folder above them.
fn resolve(rel: &str, bases: &[&Path]) -> Option<PathBuf> {
    let p = Path::new(rel);
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    if p.is_absolute() {
        return None;
    }
    for base in bases {
        let mut dir = if base.is_dir() {
            Some(*base)
        } else {
            base.parent()
        };
        while let Some(d) = dir {
            let c = d.join(p);
            if c.is_file() {
                return Some(c);
            }
            dir = d.parent();
        }
    }
    None
}

/// Adds the problem-set CSV's columns to every problem found in it (by `id`). A CSV that
/// cannot be found or read leaves the run as it is (grouping by a column then says so).
pub fn attach(run: &mut Run, rel: &str, bases: &[&Path]) {
    let Some(path) = resolve(rel, bases) else {
        return;
    };
    let Ok(mut rdr) = csv::Reader::from_path(&path) else {
        return;
    };
    let Ok(headers) = rdr.headers().cloned() else {
        return;
    };
    let Some(id_col) = headers.iter().position(|h| h == "id" || h == "problem_id") else {
        return;
    };
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for rec in rdr.records().flatten() {
        let Some(id) = rec.get(id_col) else { continue };
        let cols = headers
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .collect();
        rows.insert(id.trim().to_string(), cols);
    }
    for p in &mut run.problems {
        if let Some(cols) = rows.get(&p.id) {
            for (k, v) in cols {
                p.columns.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
