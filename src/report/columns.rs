//! Attaching the problem-set CSV's columns to a run's problems (by `id`), for grouping: the
//! CSV is read once, each problem is given its row as it is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load::Problem;

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

/// The problem-set CSV's rows by id: each row's columns.
pub struct Rows(BTreeMap<String, BTreeMap<String, String>>);

/// Reads the problem-set CSV `rel` (found as [`resolve`] finds it). None when it cannot be
/// found or read: the problems then keep their own columns (grouping by a column says so).
pub fn load(rel: &str, bases: &[&Path]) -> Option<Rows> {
    let path = resolve(rel, bases)?;
    let mut rdr = csv::Reader::from_path(&path).ok()?;
    let headers = rdr.headers().cloned().ok()?;
    let id_col = headers
        .iter()
        .position(|h| h == "id" || h == "problem_id")?;
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
    Some(Rows(rows))
}

impl Rows {
    /// Adds its row's columns (by `id`) to a problem; the problem's own columns win.
    pub fn apply(&self, p: &mut Problem) {
        if let Some(cols) = self.0.get(&p.id) {
            for (k, v) in cols {
                p.columns.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
