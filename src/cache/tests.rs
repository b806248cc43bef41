//! The cache's entries: round trips, corruption, non-files in an entry's place, first wins.

use super::*;
use serde_json::{Value, json};

#[test]
fn a_directory_in_an_entrys_place_is_a_miss_and_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let k = Key::of(&json!({"x": 4}));
    let c = Cache::open(dir.path()).unwrap();
    fs::create_dir_all(c.entry_path(&k).join("inner")).unwrap();
    // the directory, as a name in objects/, makes the cache read loose entries
    let c = Cache::open(dir.path()).unwrap();
    assert!(c.get::<Value>(&k, "call").is_none());
    assert_eq!(c.counters.corrupt.load(Ordering::Relaxed), 1);
    assert!(!c.entry_path(&k).exists(), "moved aside");
    assert_eq!(
        fs::read_dir(dir.path().join("quarantine")).unwrap().count(),
        1
    );
    // and the entry fetched again can be written, by either writer
    fs::create_dir_all(c.entry_path(&k)).unwrap();
    c.put(&k, "call", &json!({"ok": true})).unwrap();
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["ok"], true);
    let k2 = Key::of(&json!({"x": 5}));
    fs::create_dir_all(c.entry_path(&k2)).unwrap();
    let v = c.put_first(&k2, "call", json!({"n": 1}), |_| true).unwrap();
    assert_eq!(v["n"], 1);
    assert_eq!(c.get::<Value>(&k2, "call").unwrap()["n"], 1);
}

#[test]
fn the_first_usable_answer_stays() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    let k = Key::of(&json!({"x": 3}));
    let ok = |v: &Value| v["ok"] == true;
    assert_eq!(
        c.put_first(&k, "call", json!({"ok": true, "n": 1}), ok)
            .unwrap()["n"],
        1
    );
    // a second answer to the same call does not replace the first
    assert_eq!(
        c.put_first(&k, "call", json!({"ok": true, "n": 2}), ok)
            .unwrap()["n"],
        1
    );
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["n"], 1);
    // an unusable stored entry is replaced
    c.put(&k, "call", &json!({"ok": false})).unwrap();
    assert_eq!(
        c.put_first(&k, "call", json!({"ok": true, "n": 3}), ok)
            .unwrap()["n"],
        3
    );
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["n"], 3);
    // (its folder under objects/ exists only if something was written there)
    let leftovers = std::fs::read_dir(c.entry_path(&k).parent().unwrap())
        .into_iter()
        .flatten()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn roundtrip_and_corruption_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    let k = Key::of(&json!({"x": 1}));
    assert!(c.get::<Value>(&k, "call").is_none());
    c.put(&k, "call", &json!({"text": "hello"})).unwrap();
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["text"], "hello");
    assert!(c.get::<Value>(&k, "node").is_none(), "kind is checked");
    let Some(Where::Pack(f)) = c.find(&k) else {
        panic!("written to a pack")
    };
    let p = dir.path().join("packs").join(format!("{}.pack", f.segment));
    let mut bytes = fs::read(&p).unwrap();
    bytes[(f.off + f.len as u64 - 3) as usize] ^= 0xff;
    fs::write(&p, bytes).unwrap();
    assert!(c.get::<Value>(&k, "call").is_none());
    assert!(c.counters.corrupt.load(Ordering::Relaxed) >= 1);
    // fetched again and written: the newer record is read
    c.put(&k, "call", &json!(1)).unwrap();
    assert_eq!(c.get::<Value>(&k, "call").unwrap(), json!(1));
    // stored under another key: also a miss
    let k2 = Key::of(&json!({"x": 2}));
    let raw2 = pack::raw_of(&k2.0).unwrap();
    c.packs
        .append(&raw2, Some(&c.bytes_of(&k).unwrap()))
        .unwrap();
    assert!(c.get::<Value>(&k2, "call").is_none());
    // and a loose entry (an earlier version's layout) is read, and checked the same way
    let k3 = Key::of(&json!({"x": 3}));
    let loose = c.entry_path(&k3);
    fs::create_dir_all(loose.parent().unwrap()).unwrap();
    fs::write(&loose, encode(&k3, "call", &json!("old")).unwrap()).unwrap();
    let c = Cache::open(dir.path()).unwrap();
    assert_eq!(c.get::<Value>(&k3, "call").unwrap(), json!("old"));
    fs::write(&loose, encode(&k, "call", &json!("old")).unwrap()).unwrap();
    assert!(c.get::<Value>(&k3, "call").is_none());
    assert_eq!(c.get::<Value>(&k, "call").unwrap(), json!(1), "packs first");
}
