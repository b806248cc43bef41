//! Merging the run directories of a sharded run (`pipeline run --shard I/N`) into one run of
//! the report's model, so that every output (report.md, CSV, JSON, plots, `distill runs`)
//! shows one column for it, as one unsharded run would: the shards' problems in problem-set
//! order, their rounds, statuses and warnings. Shards merge when they are of one pipeline
//! (name) and one shard count; they must then come from one config (the `of` hash of their
//! config.json's `shard`), else the merge is refused, naming what differs. A shard not given
//! is named in the merged run's coverage (every header says "shard 2/4 missing"); a shard
//! still running or interrupted makes the merged run's status say so. A shard reported alone
//! (`distill report DIR`, the end of its run) is its own run, with a note saying so. What a merged table
//! then computes is `metrics`' job; reading one run is `records`'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::load::{Attempt, Coverage, Problem, RoundUsage, Run, State};

/// The runs with the shards of each sharded run merged into one (at the place of its first
/// shard); other runs are kept as they are. Errors: shards of one pipeline and count from
/// different configs, or one shard given twice.
pub fn merge(runs: Vec<Run>) -> Result<Vec<Run>, String> {
    // (pipeline, count) → the positions of its shards
    let mut groups: Vec<((String, u32), Vec<usize>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Some(s) = &r.shard else { continue };
        let key = (r.pipeline.clone(), s.count);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    if groups.is_empty() {
        return Ok(runs);
    }
    for (_, members) in &groups {
        check_group(&runs, members)?;
    }
    split_two_ways(&runs, &groups)?;
    let mut slots: Vec<Option<Run>> = runs.into_iter().map(Some).collect();
    let mut merged: BTreeMap<usize, Run> = BTreeMap::new();
    for (_, members) in &groups {
        let shards: Vec<Run> = members
            .iter()
            .map(|&i| slots[i].take().expect("one group"))
            .collect();
        merged.insert(members[0], merge_group(shards));
    }
    let mut out = Vec::new();
    for (i, slot) in slots.into_iter().enumerate() {
        if let Some(m) = merged.remove(&i) {
            out.push(m);
        } else if let Some(r) = slot {
            out.push(r);
        }
    }
    Ok(out)
}

/// A shard reported alone (its own report, at the end of its run): as itself, with a note
/// saying what it is a piece of (`problems`: how many it has).
pub fn alone(run: &mut Run, problems: usize) {
    if let Some(s) = &run.shard {
        run.warnings.push(format!(
            "this run is shard {}/{} of a sharded run ({} problem(s) of the {} of all shards): report the {} shard directories together to merge them into one column",
            s.index,
            s.count,
            problems,
            s.problems_total,
            s.count
        ));
    }
}

/// One config, each shard once.
fn check_group(runs: &[Run], members: &[usize]) -> Result<(), String> {
    let first = &runs[members[0]];
    let fs = first.shard.as_ref().expect("a shard");
    let mut seen: BTreeMap<u32, &Run> = BTreeMap::new();
    for &i in members {
        let r = &runs[i];
        let s = r.shard.as_ref().expect("a shard");
        if s.of != fs.of {
            return Err(format!(
                "cannot merge the shards of `{}`: {} (shard {}/{}) and {} (shard {}/{}) were made from different configs ({} differ); a merged table would mix two experiments. Give the shards of one run only, or name the other configuration differently (--set name=…) to report it as its own column",
                r.pipeline,
                dir_of(first).display(),
                fs.index,
                fs.count,
                dir_of(r).display(),
                s.index,
                s.count,
                differing_parts(first, r)
            ));
        }
        if let Some(other) = seen.insert(s.index, r) {
            return Err(format!(
                "shard {}/{} of `{}` is given twice: {} and {}; give one run directory per shard (a stopped shard resumes in place with --resume)",
                s.index,
                s.count,
                r.pipeline,
                dir_of(other).display(),
                dir_of(r).display()
            ));
        }
    }
    Ok(())
}

/// One config split into different shard counts (`0/4` beside `1/2`): no count of shards
/// covers the selection, so the merge is refused.
fn split_two_ways(runs: &[Run], groups: &[((String, u32), Vec<usize>)]) -> Result<(), String> {
    for (i, (ka, a)) in groups.iter().enumerate() {
        for (kb, b) in &groups[i + 1..] {
            let (ra, rb) = (&runs[a[0]], &runs[b[0]]);
            let of = |r: &Run| r.shard.as_ref().map(|s| s.of.clone());
            if ka.0 == kb.0 && of(ra) == of(rb) {
                return Err(format!(
                    "the shards of `{}` were split two ways: {} is one of {} shards, {} one of {}; give the shards of one split (one --shard I/N count)",
                    ka.0,
                    dir_of(ra).display(),
                    ka.1,
                    dir_of(rb).display(),
                    kb.1
                ));
            }
        }
    }
    Ok(())
}

/// The run directory of a run (its records' folder).
fn dir_of(r: &Run) -> &Path {
    r.path.parent().unwrap_or(Path::new("."))
}

/// The parts of two shards' recorded config hashes that differ (the selection is each
/// shard's own and is left out), as `pipeline, prompts`.
fn differing_parts(a: &Run, b: &Run) -> String {
    let (Ok(ca), Ok(cb)) = (
        crate::runfile::read_config(dir_of(a)),
        crate::runfile::read_config(dir_of(b)),
    ) else {
        return "their configs".into();
    };
    let parts: Vec<&str> = ["pipeline", "prompts", "problem_file", "key_scheme"]
        .into_iter()
        .filter(|k| ca["config_hash"].get(*k) != cb["config_hash"].get(*k))
        .collect();
    if parts.is_empty() {
        // same file, same pipeline: the filters selected different problems
        "their selections".into()
    } else {
        format!("their {}", parts.join(", "))
    }
}

/// The worst of the shards' statuses: a live shard makes the merge `running`, a stopped one
/// `interrupted`.
fn merged_status(shards: &[Run]) -> String {
    for s in ["running", "interrupted", "truncated"] {
        if shards.iter().any(|r| r.status == s) {
            return s.into();
        }
    }
    shards
        .iter()
        .map(|r| r.status.clone())
        .find(|s| s != "complete")
        .unwrap_or_else(|| "complete".into())
}

fn merge_group(shards: Vec<Run>) -> Run {
    let rec = shards[0].shard.clone().expect("a shard");
    let present: BTreeMap<u32, String> = shards
        .iter()
        .filter_map(|r| Some((r.shard.as_ref()?.index, r.status.clone())))
        .collect();
    let coverage = Coverage {
        count: rec.count,
        missing: (0..rec.count)
            .filter(|i| !present.contains_key(i))
            .collect(),
        present,
        problems_total: rec.problems_total,
    };
    let mut rounds: Vec<u32> = shards.iter().flat_map(|r| r.rounds.clone()).collect();
    rounds.sort_unstable();
    rounds.dedup();
    let samples = shards.iter().map(|r| r.samples).max().unwrap_or(1);
    let mut problems = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for r in &shards {
        let unrecorded = if r.status == "running" {
            "pending"
        } else {
            "interrupted"
        };
        for p in &r.problems {
            problems.push(remap(p, &r.rounds, &rounds, samples, unrecorded));
        }
        let s = r.shard.as_ref().expect("a shard");
        for w in &r.warnings {
            let all = shards.iter().all(|o| o.warnings.contains(w));
            let w = if all {
                w.clone()
            } else {
                format!("shard {}/{}: {w}", s.index, s.count)
            };
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    // problem-set order, as one unsharded run lists them (selected problems without a
    // record after those with one, as there)
    problems.sort_by_key(|p| p.index.unwrap_or(usize::MAX));
    let first = &shards[0];
    let mut ids: Vec<&str> = shards.iter().map(|r| r.run_id.as_str()).collect();
    ids.sort_unstable();
    let run_id = if ids.len() <= 4 {
        ids.join(", ")
    } else {
        format!("{}, … {} ({} runs)", ids[0], ids[ids.len() - 1], ids.len())
    };
    Run {
        label: format!(
            "{} {}/{} shards",
            first.pipeline,
            coverage.present.len(),
            coverage.count
        ),
        path: common_dir(&shards),
        format: first.format.clone(),
        pipeline: first.pipeline.clone(),
        run_id,
        status: merged_status(&shards),
        simulated: shards.iter().any(|r| r.simulated),
        rounds,
        samples,
        problems,
        warnings,
        shard: None,
        coverage: Some(coverage),
    }
}

/// A shard's problem over the merged rounds and samples: a round the shard has no record of
/// holds what `records` would give a missing round (carried in a finished problem, not run
/// otherwise).
fn remap(p: &Problem, own: &[u32], all: &[u32], samples: usize, unrecorded: &str) -> Problem {
    if own == all && p.samples.len() == samples {
        return p.clone();
    }
    let mut q = p.clone();
    q.samples = (0..samples)
        .map(|si| {
            let mut out: Vec<Attempt> = Vec::with_capacity(all.len());
            for r in all {
                let a = own
                    .iter()
                    .position(|x| x == r)
                    .and_then(|i| p.samples.get(si)?.get(i).cloned())
                    .unwrap_or_else(|| {
                        if p.status == "ok" {
                            Attempt::carry(out.last(), State::Missing)
                        } else {
                            Attempt::not_run(unrecorded, Some("no record of this round".into()))
                        }
                    });
                out.push(a);
            }
            out
        })
        .collect();
    q.usage = all
        .iter()
        .map(|r| {
            own.iter()
                .position(|x| x == r)
                .and_then(|i| p.usage.get(i).cloned())
                .unwrap_or(RoundUsage {
                    cost_usd: Some(0.0),
                    ..Default::default()
                })
        })
        .collect();
    q
}

/// The deepest folder that holds every shard's run directory (e.g. `results/<pipeline>`).
fn common_dir(shards: &[Run]) -> PathBuf {
    let dirs: Vec<&Path> = shards.iter().map(dir_of).collect();
    let mut common: PathBuf = dirs[0].to_path_buf();
    while !dirs.iter().all(|d| d.starts_with(&common)) {
        if !common.pop() {
            return PathBuf::from(".");
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_shard_is_named() {
        let c = Coverage {
            count: 4,
            present: [(0, "complete".into()), (1, "interrupted".into())].into(),
            missing: vec![2, 3],
            problems_total: 10,
        };
        assert_eq!(
            c.missing_note(5).unwrap(),
            "shards 2/4, 3/4 missing: the table covers 2 of 4 shards (5 of 10 problems)"
        );
        assert_eq!(c.unfinished(), ["shard 1/4 interrupted"]);
    }
}
