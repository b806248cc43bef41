//! Merging pack segments (`distill cache gc`, `cache verify --delete`): the records of
//! dropped keys left out, each run of sealed segments with no segment still being written
//! between them rewritten as one, under each one's lock, and the old ones forgotten.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::sync::Arc;

use rustix::fs::{FlockOperation, flock};

use super::format::{Raw, Rec, hex_of, scan};
use super::{Found, LOG, Lookup, Packs, Seg, Writer, lock, log_id};

impl Packs {
    /// Drops the records of `keys` and merges the sealed segments: each run of them with no
    /// segment still being written between becomes one new segment holding every other
    /// entry they decide (named after the run's newest, so it keeps the run's place in the
    /// order), then they are removed. Each one is locked for the whole rewrite, so a process
    /// still writing one keeps it: it is left, and the entries of `keys` it holds are
    /// counted in the returned number.
    pub fn drop_keys(&self, keys: &HashSet<String>) -> std::io::Result<usize> {
        self.seal();
        self.refresh();
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        let listed = fs::metadata(self.dir.join(LOG)).map(|m| log_id(&m)).ok();
        if listed.is_some() && listed != Some(v.log) {
            return Err(std::io::Error::other(
                "some segments the log lists could not be opened; nothing was rewritten",
            ));
        }
        let mut left = 0;
        let mut seen = HashSet::new();
        let mut runs: Vec<Merge> = vec![Merge::default()];
        for s in &v.segs {
            let mine = flock(&*s.file, FlockOperation::NonBlockingLockExclusive).is_ok();
            let recs = if mine { final_records(s) } else { records(s) };
            if !mine {
                left += recs
                    .iter()
                    .filter(|(k, _)| keys.contains(&hex_of(k)))
                    .count();
                seen.extend(recs.iter().map(|(k, _)| *k));
                runs.push(Merge::default());
                continue;
            }
            let run = runs.last_mut().expect("one at least");
            run.held.push((s.name.clone(), s.file.clone()));
            run.add(s, recs, keys, &mut seen);
        }
        drop(v);
        let mut done = Ok(());
        for run in runs.iter().filter(|r| !r.held.is_empty()) {
            if done.is_ok() && (run.dropped > 0 || run.held.len() > 1) {
                let name = format!("{}-m{:08x}", run.held[0].0, rand::random::<u32>());
                let old: Vec<Arc<str>> = run.held.iter().map(|(n, _)| n.clone()).collect();
                done = self.write_merged(name, run).and_then(|_| self.forget(&old));
            }
            for (_, f) in &run.held {
                let _ = flock(&**f, FlockOperation::Unlock);
            }
        }
        done.map(|_| left)
    }

    /// Writes a merge's entries as one segment named `name` (no roll midway: a later name
    /// would put them in front of segments newer than theirs).
    fn write_merged(&self, name: String, plan: &Merge) -> std::io::Result<()> {
        let mut w = lock(&self.writer);
        if let Some(other) = w.take() {
            self.publish(other.seg);
        }
        let mut wr = self.begin(Some(name))?;
        let written = Self::write_all_of(&mut wr, plan);
        // ended either way: on an error what it holds is sealed and the old segments kept
        self.publish(wr.seg);
        drop(w);
        self.index_own();
        written
    }

    fn write_all_of(wr: &mut Writer, plan: &Merge) -> std::io::Result<()> {
        for (k, at) in &plan.keep {
            let body = match at.as_ref().map(Found::read) {
                Some(Ok(b)) => Some(b),
                Some(Err(e)) => {
                    tracing::warn!("cache: dropping an unreadable entry: {e}");
                    continue;
                }
                None => None,
            };
            wr.push(k, body.as_deref()).map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Removes segments (rewritten elsewhere) and their names from the log.
    fn forget(&self, names: &[Arc<str>]) -> std::io::Result<()> {
        let gone: HashSet<&str> = names.iter().map(|n| &**n).collect();
        let log = self.dir.join(LOG);
        {
            let _listing = self.log_lock(true)?;
            let text = fs::read_to_string(&log)?;
            let kept: String = text
                .lines()
                .filter(|l| !gone.contains(l.trim()))
                .map(|l| format!("{l}\n"))
                .collect();
            let tmp = self
                .dir
                .join(format!(".{LOG}.tmp-{:x}", rand::random::<u64>()));
            let mut f = File::create(&tmp)?;
            f.write_all(kept.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &log)?;
        }
        for n in names {
            let _ = fs::remove_file(self.dir.join(format!("{n}.pack")));
            let _ = fs::remove_file(self.dir.join(format!("{n}.idx")));
        }
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.segs.retain(|s| !gone.contains(&*s.name));
        Ok(())
    }
}

/// One run of sealed segments merged into one: the segments (locked), per key the
/// deciding record (None: a removal, kept: a segment still being written may hold an older
/// answer), in newest-first order.
#[derive(Default)]
struct Merge {
    held: Vec<(Arc<str>, Arc<File>)>,
    keep: Vec<(Raw, Option<Found>)>,
    dropped: usize,
}

impl Merge {
    fn add(
        &mut self,
        s: &Seg,
        recs: Vec<(Raw, Rec)>,
        drop: &HashSet<String>,
        seen: &mut HashSet<Raw>,
    ) {
        for (k, r) in recs {
            if !seen.insert(k) {
                continue;
            }
            if drop.contains(&hex_of(&k)) {
                self.dropped += 1;
                continue;
            }
            match s.found(r) {
                Some(f) => self.keep.push((k, Some(f))),
                // a removal still hides what an older segment being written may hold
                None => self.keep.push((k, None)),
            }
        }
    }
}

/// A segment's records as the view knows them.
pub(super) fn records(s: &Seg) -> Vec<(Raw, Rec)> {
    match &s.lookup {
        Lookup::Sealed(i) => i.all(),
        Lookup::Live { map, .. } => map.iter().map(|(k, r)| (*k, *r)).collect(),
    }
}

/// A segment's records once it is locked (nothing appends to it): a live one read to its end.
fn final_records(s: &Seg) -> Vec<(Raw, Rec)> {
    match &s.lookup {
        Lookup::Sealed(i) => i.all(),
        Lookup::Live { map, scanned } => {
            let mut map = map.clone();
            let size = s.file.metadata().map(|m| m.len()).unwrap_or(*scanned);
            scan(&s.file, *scanned, size, &mut map);
            map.into_iter().collect()
        }
    }
}
