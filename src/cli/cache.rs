//! `distill cache stats|verify|gc|export|import|push|pull`: counting, checking and cleaning
//! the cache directory, and moving runs' entries between caches as bundles (`crate::bundle`)
//! or through the remote cache (`crate::remote`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{CacheCmd, init_tracing};

pub(super) fn run(cmd: CacheCmd) -> i32 {
    init_tracing(false);
    let open = |dir: &Path| match crate::cache::Cache::open(dir) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    };
    match cmd {
        CacheCmd::Stats(a) => {
            let Some(c) = open(&a.cache) else { return 2 };
            let mut by_kind: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
            for (k, at) in c.entries() {
                let size = at.size();
                let kind = c.verify_entry(&k, &at).unwrap_or_else(|_| "corrupt".into());
                let e = by_kind.entry(kind).or_default();
                e.0 += 1;
                e.1 += size;
            }
            println!("cache {}", a.cache.display());
            for (k, (n, b)) in &by_kind {
                println!("  {k:<8} {n:>8} entries  {:>10.1} KiB", *b as f64 / 1024.0);
            }
            if by_kind.is_empty() {
                println!("  (empty)");
            }
            0
        }
        CacheCmd::Export { c: a, runs, out } => {
            let Some(c) = open(&a.cache) else { return 2 };
            export(&c, &runs, &out)
        }
        CacheCmd::Import { c: a, file } => {
            let Some(c) = open(&a.cache) else { return 2 };
            import(&c, &file)
        }
        CacheCmd::Push { c: a, r, runs } => {
            let Some(c) = open(&a.cache) else { return 2 };
            transfer(c, r.url(), &runs, true)
        }
        CacheCmd::Pull { c: a, r, runs } => {
            let Some(c) = open(&a.cache) else { return 2 };
            transfer(c, r.url(), &runs, false)
        }
        CacheCmd::Verify { c: a, delete } => {
            let Some(c) = open(&a.cache) else { return 2 };
            verify(&c, delete)
        }
        CacheCmd::Gc { c: a, results, yes } => {
            let Some(c) = open(&a.cache) else { return 2 };
            gc(&c, &results, yes)
        }
    }
}

/// `cache gc`: the entries no run under `results` refers to (its cache_keys.txt files),
/// listed, or with `yes` dropped (and the sealed pack segments merged).
fn gc(c: &crate::cache::Cache, results: &Path, yes: bool) -> i32 {
    let mut live = HashSet::new();
    let mut runs = 0;
    for f in walk(results)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == crate::runfile::KEYS))
    {
        runs += 1;
        if let Ok(t) = std::fs::read_to_string(&f) {
            live.extend(t.lines().map(|l| l.trim().to_string()));
        }
    }
    if runs == 0 {
        eprintln!(
            "error: no run under {} (no cache_keys.txt): refusing to treat every cache entry as unused; pass --results DIR",
            results.display()
        );
        return 2;
    }
    let dead: Vec<_> = c
        .entries()
        .into_iter()
        .filter(|(k, _)| !live.contains(&k.0))
        .collect();
    let bytes: u64 = dead.iter().map(|(_, at)| at.size()).sum();
    println!(
        "{runs} run(s) under {} refer to {} entries; {} entries ({:.1} KiB) are referred to by none",
        results.display(),
        live.len(),
        dead.len(),
        bytes as f64 / 1024.0
    );
    if yes {
        match c
            .drop_entries(&dead)
            .and_then(|left| c.compact().map(|_| left))
        {
            Ok(left) => {
                println!("deleted {} entries", dead.len() - left);
                if left > 0 {
                    println!(
                        "{left} entries are in segments a running distill is still writing; run gc again when it has ended"
                    );
                }
            }
            Err(e) => {
                eprintln!("error: deleting entries from {}: {e}", c.root().display());
                return 1;
            }
        }
    } else if !dead.is_empty() {
        for (k, _) in dead.iter().take(10) {
            println!("  would delete {}", k.0);
        }
        println!("run again with --yes to delete them");
    }
    0
}

/// `cache verify`: every entry read and checked; corrupt ones and stored answers that break
/// the complete-answer rule are listed (and deleted with `--delete`). Exit 1 when any.
fn verify(c: &crate::cache::Cache, delete: bool) -> i32 {
    let all = c.entries();
    let (mut bad, mut partial) = (0, 0);
    let mut doomed = Vec::new();
    for (k, at) in &all {
        let problem = match c.read_entry(k, at) {
            Err(e) => {
                bad += 1;
                format!("corrupt: {at} ({e})")
            }
            // stored before the complete-answer rule: read as a miss, fetched again
            Ok((kind, value)) => match crate::calls::complete::stored(&kind, &value) {
                Ok(()) => continue,
                Err(why) => {
                    partial += 1;
                    format!("not an answer: {at} ({kind} entry: {why})")
                }
            },
        };
        println!("{problem}");
        if delete {
            doomed.push((k.clone(), at.clone()));
        }
    }
    if let Err(e) = c.drop_entries(&doomed) {
        eprintln!("error: deleting entries: {e}");
        return 1;
    }
    println!(
        "{} entries checked, {bad} corrupt, {partial} not complete answers (misses when read){}",
        all.len(),
        if delete && bad + partial > 0 {
            " (deleted)"
        } else {
            ""
        }
    );
    if bad + partial > 0 { 1 } else { 0 }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `cache export`: exit 0; 2 when a run directory cannot be read. A run lists every key it
/// looked up, and the node key of a single-call node is never stored, so keys without an
/// entry are counted, not an error (an offline rerun after import is the check).
fn export(c: &crate::cache::Cache, runs: &[PathBuf], out: &Path) -> i32 {
    match crate::bundle::export(c, runs, out) {
        Ok(e) => {
            println!(
                "wrote {}: {} entries of {} run(s) ({} of the keys they looked up have no entry: node keys of single-call nodes are not stored, or `cache gc` removed them)",
                out.display(),
                e.entries,
                e.runs,
                e.missing.len()
            );
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// `cache import`: exit 0, 1 when some entry was refused, 2 when the file is no bundle.
fn import(c: &crate::cache::Cache, file: &Path) -> i32 {
    match crate::bundle::import(c, file) {
        Ok(i) => {
            println!(
                "imported {}: {} entries added, {} already present, {} refused",
                file.display(),
                i.added,
                i.present,
                i.rejected.len()
            );
            if let Some(d) = &i.runs_dir {
                println!("the runs' config.json and cache_keys.txt: {}", d.display());
            }
            for r in i.rejected.iter().take(10) {
                eprintln!("refused: {r}");
            }
            i32::from(!i.rejected.is_empty())
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

/// The remote of `cache push|pull`: `--cache-remote` / `DISTILL_CACHE_REMOTE`, else the one
/// the first run used (its config.json).
fn remote_of(given: Option<&str>, runs: &[PathBuf]) -> Result<String, String> {
    if let Some(u) = given {
        return Ok(u.to_string());
    }
    let cfg = crate::runfile::read_config(&runs[0])?;
    let used = cfg["provenance"]["cache_remote"]
        .as_str()
        .or_else(|| cfg["pipeline"]["cache_remote"].as_str());
    used.map(str::to_string).ok_or_else(|| {
        format!(
            "name the remote cache: --cache-remote s3://bucket/prefix or DISTILL_CACHE_REMOTE ({} used none)",
            runs[0].display()
        )
    })
}

/// `cache push|pull`: exit 0; 1 when some entry failed or was refused; 2 for bad input.
fn transfer(c: crate::cache::Cache, given: Option<&str>, runs: &[PathBuf], push: bool) -> i32 {
    use crate::remote::{Access, Remote};
    let url = match remote_of(given, runs) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut keys = Vec::new();
    for dir in runs {
        match crate::runfile::cache_keys(dir) {
            Ok(k) => keys.extend(k),
            Err(e) => {
                eprintln!("error: {e:#}");
                return 2;
            }
        }
    }
    let access = Access {
        keep_local: !push,
        upload: push,
    };
    let remote = match Remote::open(&url, access) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    if !push && let Err(e) = c.check_writable() {
        eprintln!("error: {e:#}");
        return 2;
    }
    let m = if push {
        crate::remote::push(&remote, &c, runs.len(), keys)
    } else {
        crate::remote::pull(&remote, std::sync::Arc::new(c), runs.len(), keys)
    };
    let (verb, place) = if push {
        ("pushed", "already in the bucket")
    } else {
        ("pulled", "already in the cache")
    };
    println!(
        "{verb} {} entries of {} run(s) {} {}: {} {place}, {} not found at the source (node keys of single-call nodes are not stored), {} failed{}",
        m.moved,
        m.runs,
        if push { "to" } else { "from" },
        remote.url,
        m.present,
        m.missing,
        m.failed.len(),
        if push {
            String::new()
        } else {
            format!(", {} refused (corrupt)", m.rejected.len())
        }
    );
    for f in m.failed.iter().take(10) {
        eprintln!("failed: {f}");
    }
    for r in m.rejected.iter().take(10) {
        eprintln!("refused: {r}");
    }
    i32::from(!m.failed.is_empty() || !m.rejected.is_empty())
}
