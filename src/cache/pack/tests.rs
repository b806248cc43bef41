//! Pack segments across processes (two `Packs` on one directory stand for two processes:
//! each holds its own descriptor and lock).

use super::*;

fn k(i: u8) -> Raw {
    [i; 32]
}

#[test]
fn an_entry_written_is_found_by_its_writer_and_by_another_process_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    let b = Packs::open(dir.path());
    assert!(b.get(&k(1)).is_none());
    a.append(&k(1), Some(b"one")).unwrap();
    assert_eq!(a.get(&k(1)).unwrap().read().unwrap(), b"one");
    // b learns of a's new segment from the log and of its record from its size
    assert_eq!(b.get(&k(1)).unwrap().read().unwrap(), b"one");
    a.append(&k(2), Some(b"two")).unwrap();
    assert_eq!(b.get(&k(2)).unwrap().read().unwrap(), b"two");
    // a removal hides the entry (from another process once it opens the cache)
    a.append(&k(1), None).unwrap();
    assert!(a.get(&k(1)).is_none());
    assert!(Packs::open(dir.path()).get(&k(1)).is_none());
    a.seal();
    assert!(
        a.get(&k(1)).is_none(),
        "sealed: the index keeps the removal"
    );
    assert_eq!(a.get(&k(2)).unwrap().read().unwrap(), b"two");
    // a third process reads the sealed index
    let c = Packs::open(dir.path());
    assert_eq!(c.get(&k(2)).unwrap().read().unwrap(), b"two");
    assert!(c.get(&k(1)).is_none());
    let idx: Vec<_> = fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .collect();
    assert_eq!(idx.len(), 1);
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
    assert_eq!(c.get(&k(1)).unwrap().read().unwrap(), b"new");
    assert_eq!(c.entries().len(), 1);
}

#[test]
fn a_segment_left_by_a_dead_process_is_indexed_and_its_torn_record_cut() {
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
    assert_eq!(b.get(&k(1)).unwrap().read().unwrap(), b"kept");
    assert!(b.get(&k(2)).is_none());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        torn - 20,
        "torn tail cut"
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
    assert!(b.get(&k(1)).is_some());
    let idx = fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "idx")
        })
        .count();
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
    let packs = fs::read_dir(dir.path().join("packs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pack")
        })
        .count();
    assert_eq!(packs, 1, "four segments rewritten into one");
    assert_eq!(c.get(&k(4)).unwrap().read().unwrap(), vec![4u8; 10]);
    // a process that had the old segments open still reads, then follows the new log
    assert_eq!(a.get(&k(1)).unwrap().read().unwrap(), vec![1u8; 10]);
}

#[test]
fn merging_keeps_every_entry_and_a_single_segment_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let a = Packs::open(dir.path());
    a.append(&k(1), Some(b"a")).unwrap();
    a.seal();
    let count = || {
        fs::read_dir(dir.path().join("packs"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "pack")
            })
            .count()
    };
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
    assert!(c.get(&k(1)).is_none(), "removed stays removed");
    assert_eq!(c.get(&k(2)).unwrap().read().unwrap(), b"b");
}
