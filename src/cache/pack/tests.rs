//! Pack segments across processes (two `Packs` on one directory stand for two processes:
//! each holds its own descriptor and lock).

use super::*;

fn k(i: u8) -> Raw {
    [i; 32]
}

/// How many files of `packs/` end in `.ext`.
fn files_with(root: &Path, ext: &str) -> usize {
    fs::read_dir(root.join("packs"))
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

/// A look that may be stale sees another process's records within [`RECENT`]; a fresh
/// look sees them at once.
#[test]
fn a_look_that_may_be_stale_catches_up_within_recent() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    let b = Packs::open(dir.path());
    assert!(b.get(&k(1), true).is_none());
    a.append(&k(1), Some(b"one")).unwrap();
    // b looked just now: a stale look may miss it, a fresh one finds it
    let stale = b.get(&k(1), false).is_some();
    assert_eq!(b.get(&k(1), true).unwrap().read().unwrap(), b"one");
    a.append(&k(2), Some(b"two")).unwrap();
    std::thread::sleep(RECENT * 2);
    assert_eq!(b.get(&k(2), false).unwrap().read().unwrap(), b"two");
    // (whether the first stale look missed depends on the clock; either is allowed)
    let _ = stale;
}

#[test]
fn an_entry_written_is_found_by_its_writer_and_by_another_process_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    let b = Packs::open(dir.path());
    assert!(b.get(&k(1), true).is_none());
    a.append(&k(1), Some(b"one")).unwrap();
    assert_eq!(a.get(&k(1), true).unwrap().read().unwrap(), b"one");
    // b learns of a's new segment from the log and of its record from its size
    assert_eq!(b.get(&k(1), true).unwrap().read().unwrap(), b"one");
    a.append(&k(2), Some(b"two")).unwrap();
    assert_eq!(b.get(&k(2), true).unwrap().read().unwrap(), b"two");
    // a removal hides the entry (from another process once it opens the cache)
    a.append(&k(1), None).unwrap();
    assert!(a.get(&k(1), true).is_none());
    assert!(Packs::open(dir.path()).get(&k(1), true).is_none());
    a.seal();
    assert!(
        a.get(&k(1), true).is_none(),
        "sealed: the index keeps the removal"
    );
    assert_eq!(a.get(&k(2), true).unwrap().read().unwrap(), b"two");
    // a third process reads the sealed index
    let c = Packs::open(dir.path());
    assert_eq!(c.get(&k(2), true).unwrap().read().unwrap(), b"two");
    assert!(c.get(&k(1), true).is_none());
    assert_eq!(files_with(dir.path(), "idx"), 1);
}

#[test]
fn the_newest_segment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"old")).unwrap();
    a.seal();
    a.append(&k(1), Some(b"new")).unwrap();
    a.seal();
    let c = Packs::open(dir.path());
    assert_eq!(c.get(&k(1), true).unwrap().read().unwrap(), b"new");
    assert_eq!(c.entries().len(), 1);
}

#[test]
fn a_segment_left_by_a_dead_process_is_indexed_without_its_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"kept")).unwrap();
    // the process dies mid-write: half a record at the end, no index, the lock gone
    let w = lock(&a.writer).take().unwrap();
    let name = w.seg.name.clone();
    (&*w.seg.file)
        .write_all(&header(&k(2), 100, false)[..20])
        .unwrap();
    drop(w);
    std::mem::forget(a);
    let path = dir.path().join("packs").join(format!("{name}.pack"));
    let torn = fs::metadata(&path).unwrap().len();
    let b = Packs::open(dir.path());
    assert_eq!(b.get(&k(1), true).unwrap().read().unwrap(), b"kept");
    assert!(b.get(&k(2), true).is_none());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        torn,
        "a torn tail is left, never read"
    );
    assert!(
        dir.path()
            .join("packs")
            .join(format!("{name}.idx"))
            .is_file()
    );
}

#[test]
fn a_live_segment_is_not_indexed_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"x")).unwrap();
    let b = Packs::open(dir.path());
    assert!(b.get(&k(1), true).is_some());
    let idx = files_with(dir.path(), "idx");
    assert_eq!(idx, 0, "its writer is alive");
}

#[test]
fn dropping_keys_rewrites_sealed_segments_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    for i in 1..=4 {
        a.append(&k(i), Some(&[i; 10])).unwrap();
        a.seal();
    }
    let drop: HashSet<String> = [hex_of(&k(2)), hex_of(&k(3))].into_iter().collect();
    assert_eq!(a.drop_keys(&drop).unwrap(), 0);
    let c = Packs::open(dir.path());
    let mut left: Vec<_> = c.entries().into_iter().map(|(h, _)| h).collect();
    left.sort();
    assert_eq!(left, vec![hex_of(&k(1)), hex_of(&k(4))]);
    let packs = files_with(dir.path(), "pack");
    assert_eq!(packs, 1, "four segments rewritten into one");
    assert_eq!(c.get(&k(4), true).unwrap().read().unwrap(), vec![4u8; 10]);
    // a process that had the old segments open still reads, then follows the new log
    assert_eq!(a.get(&k(1), true).unwrap().read().unwrap(), vec![1u8; 10]);
}

#[test]
fn merging_keeps_every_entry_and_a_single_segment_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"a")).unwrap();
    a.seal();
    let count = || files_with(dir.path(), "pack");
    let before: Vec<_> = fs::read_dir(dir.path().join("packs")).unwrap().collect();
    a.drop_keys(&HashSet::new()).unwrap();
    assert_eq!(count(), 1);
    assert_eq!(
        fs::read_dir(dir.path().join("packs")).unwrap().count(),
        before.len(),
        "untouched"
    );
    a.append(&k(2), Some(b"b")).unwrap();
    a.seal();
    a.append(&k(1), None).unwrap();
    a.seal();
    assert_eq!(count(), 3);
    a.drop_keys(&HashSet::new()).unwrap();
    assert_eq!(count(), 1);
    let c = Packs::open(dir.path());
    assert!(c.get(&k(1), true).is_none(), "removed stays removed");
    assert_eq!(c.get(&k(2), true).unwrap().read().unwrap(), b"b");
}

#[test]
fn a_segment_sealed_while_another_process_opens_it_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"first")).unwrap();
    let name = lock(&a.own).clone().unwrap();
    let path = dir.path().join("packs").join(format!("{name}.pack"));
    // b scans what is there, then (before it tests the lock) a writes more and seals
    let f = File::open(&path).unwrap();
    let early = f.metadata().unwrap().len();
    let mut map = HashMap::new();
    scan(&f, 0, early, &mut map);
    a.append(&k(2), Some(b"second")).unwrap();
    a.seal();
    // b opening it now: the index is whole and the file is not cut
    let b = Packs::open(dir.path());
    assert_eq!(b.get(&k(2), true).unwrap().read().unwrap(), b"second");
    assert!(fs::metadata(&path).unwrap().len() > early);
    assert_eq!(a.get(&k(2), true).unwrap().read().unwrap(), b"second");
}

#[test]
fn a_scan_of_a_file_shorter_than_it_was_ends() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.pack");
    let mut f = File::create(&p).unwrap();
    f.write_all(SEG_MAGIC).unwrap();
    f.write_all(&header(&k(1), 100_000, false)).unwrap();
    f.write_all(&vec![7u8; 100_000]).unwrap();
    f.write_all(&header(&k(2), 3, false)).unwrap();
    f.write_all(b"abc").unwrap();
    let full = f.metadata().unwrap().len();
    let f = File::open(&p).unwrap();
    let mut map = HashMap::new();
    // a body larger than a read chunk is skipped over
    assert_eq!(scan(&f, 0, full, &mut map), full);
    assert_eq!(map.len(), 2);
    // told a larger size than the file has (cut meanwhile): ends where the data ends
    let mut map = HashMap::new();
    let at = scan(&f, 0, full + 500, &mut map);
    assert!(at <= full, "{at}");
}

#[test]
fn an_entry_answered_again_after_a_removal_is_seen_by_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    let b = Packs::open(dir.path());
    a.append(&k(1), Some(b"bad")).unwrap();
    assert!(b.get(&k(1), true).is_some());
    a.append(&k(1), None).unwrap();
    a.append(&k(3), None).unwrap();
    assert!(b.get(&k(3), true).is_none(), "b has now read the removals");
    a.append(&k(1), Some(b"good")).unwrap();
    // b's stored view says removed; the removal is not trusted without a look
    a.append(&k(3), Some(b"three")).unwrap();
    assert_eq!(b.get(&k(3), true).unwrap().read().unwrap(), b"three");
    assert_eq!(b.get(&k(1), true).unwrap().read().unwrap(), b"good");
}

#[test]
fn a_merge_is_not_fooled_by_a_segment_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"a1")).unwrap();
    a.seal();
    a.append(&k(2), Some(b"a2")).unwrap();
    a.seal();
    // another process writes, and keeps its segment open during the merge
    let b = Packs::open(dir.path());
    b.append(&k(3), Some(b"b3")).unwrap();
    let drop: HashSet<String> = [hex_of(&k(3)), hex_of(&k(1))].into_iter().collect();
    assert_eq!(a.drop_keys(&drop).unwrap(), 1, "k3 is in a live segment");
    b.append(&k(4), Some(b"b4")).unwrap();
    b.seal();
    let c = Packs::open(dir.path());
    assert!(c.get(&k(1), true).is_none());
    assert_eq!(c.get(&k(2), true).unwrap().read().unwrap(), b"a2");
    assert_eq!(c.get(&k(3), true).unwrap().read().unwrap(), b"b3");
    assert_eq!(c.get(&k(4), true).unwrap().read().unwrap(), b"b4");
}

#[test]
fn another_process_s_sealed_segment_is_read_through_its_index_once_it_begins_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    let b = Packs::open(dir.path());
    a.append(&k(1), Some(b"one")).unwrap();
    assert!(b.get(&k(1), true).is_some());
    a.seal();
    a.append(&k(2), Some(b"two")).unwrap();
    assert_eq!(b.get(&k(2), true).unwrap().read().unwrap(), b"two");
    let v = b.view.read().unwrap();
    let sealed = v
        .segs
        .iter()
        .filter(|s| matches!(s.lookup, Lookup::Sealed(_)))
        .count();
    assert_eq!(sealed, 1, "the first segment is read through its index");
    drop(v);
    assert_eq!(b.get(&k(1), true).unwrap().read().unwrap(), b"one");
}

#[test]
fn a_merge_does_not_lift_an_older_segment_over_one_still_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"old")).unwrap();
    a.seal();
    let b = Packs::open(dir.path());
    b.append(&k(9), Some(b"b")).unwrap();
    a.append(&k(2), Some(b"two")).unwrap();
    a.seal();
    a.drop_keys(&HashSet::new()).unwrap();
    // b finds its answer to k1 unusable and removes it: that must win over the old one
    b.append(&k(1), None).unwrap();
    b.seal();
    let c = Packs::open(dir.path());
    assert!(
        c.get(&k(1), true).is_none(),
        "the removal in the newer segment wins"
    );
    assert_eq!(c.get(&k(2), true).unwrap().read().unwrap(), b"two");
}

#[test]
fn a_removal_here_gives_way_to_a_newer_answer_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), None).unwrap();
    let b = Packs::open(dir.path());
    b.append(&k(1), Some(b"again")).unwrap();
    assert_eq!(a.get(&k(1), true).unwrap().read().unwrap(), b"again");
}

#[test]
fn a_log_line_that_is_no_segment_name_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"x")).unwrap();
    a.seal();
    fs::write(dir.path().join("outside.pack"), SEG_MAGIC).unwrap();
    let mut log = OpenOptions::new()
        .append(true)
        .open(dir.path().join("packs").join(LOG))
        .unwrap();
    log.write_all(b"../outside\nmissing-1\n").unwrap();
    let c = Packs::open(dir.path());
    assert_eq!(c.get(&k(1), true).unwrap().read().unwrap(), b"x");
    assert!(c.get(&k(2), true).is_none());
    assert!(!dir.path().join("outside.idx").exists());
    let v = c.view.read().unwrap();
    assert_eq!(v.gone.len(), 2, "neither is looked for again");
}
