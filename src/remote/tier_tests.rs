//! The cache's second-tier hooks with a tier in memory: read after a local miss, verified
//! as a local entry is, kept locally (or not, for a plan), told of writes and removals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::cache::{Cache, Key, Tier};

#[derive(Default)]
struct Mem {
    entries: Mutex<HashMap<String, Vec<u8>>>,
    written: Mutex<Vec<String>>,
    removed: Mutex<Vec<String>>,
    rejected: AtomicU64,
    fetched: AtomicU64,
    keep: bool,
}

impl Tier for Mem {
    fn fetch(&self, key: &Key) -> Option<Vec<u8>> {
        self.fetched.fetch_add(1, Ordering::Relaxed);
        self.entries.lock().unwrap().get(&key.0).cloned()
    }
    fn keep_local(&self) -> bool {
        self.keep
    }
    fn rejected(&self, _: &Key, _: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }
    fn written(&self, key: &Key, bytes: Vec<u8>) {
        assert!(!bytes.is_empty());
        self.written.lock().unwrap().push(key.0.clone());
    }
    fn removed(&self, key: &Key) {
        self.removed.lock().unwrap().push(key.0.clone());
    }
}

/// An entry's stored bytes, written by another cache directory.
fn stored(key: &Key, value: Value) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let c = Cache::open(dir.path()).unwrap();
    c.put(key, "call", &value).unwrap();
    c.bytes_of(key).unwrap()
}

#[test]
fn a_local_miss_reads_the_tier_and_keeps_what_it_verified() {
    let k = Key::of(&json!({"q": 1}));
    let mem = Arc::new(Mem {
        keep: true,
        ..Default::default()
    });
    mem.entries
        .lock()
        .unwrap()
        .insert(k.0.clone(), stored(&k, json!({"text": "42"})));
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path()).unwrap();
    c.set_tier(mem.clone());
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["text"], "42");
    assert!(c.find(&k).is_some(), "kept locally");
    assert_eq!(c.counters.hits.load(Ordering::Relaxed), 1);
    // the next read is local
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["text"], "42");
    assert_eq!(mem.fetched.load(Ordering::Relaxed), 1);
    // an entry read from the tier is not sent back to it
    assert!(mem.written.lock().unwrap().is_empty());
    // the kind is checked too
    let k2 = Key::of(&json!({"q": 2}));
    mem.entries
        .lock()
        .unwrap()
        .insert(k2.0.clone(), stored(&k2, json!(1)));
    assert!(c.get::<Value>(&k2, "node").is_none());
    assert_eq!(mem.rejected.load(Ordering::Relaxed), 1);
}

#[test]
fn a_corrupt_or_misplaced_tier_entry_is_a_miss() {
    let k = Key::of(&json!({"q": 3}));
    let other = Key::of(&json!({"q": 4}));
    let mut flipped = stored(&k, json!({"text": "7"}));
    let n = flipped.len();
    flipped[n - 2] ^= 0xff;
    let mem = Arc::new(Mem {
        keep: true,
        ..Default::default()
    });
    mem.entries.lock().unwrap().insert(k.0.clone(), flipped);
    // another key's entry under this key
    mem.entries
        .lock()
        .unwrap()
        .insert(other.0.clone(), stored(&k, json!({"text": "8"})));
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path()).unwrap();
    c.set_tier(mem.clone());
    assert!(c.get::<Value>(&k, "call").is_none());
    assert!(c.get::<Value>(&other, "call").is_none());
    assert_eq!(mem.rejected.load(Ordering::Relaxed), 2);
    assert!(c.find(&k).is_none() && c.find(&other).is_none());
    assert_eq!(c.counters.misses.load(Ordering::Relaxed), 2);
}

#[test]
fn a_plan_uses_the_tier_without_keeping_and_writes_are_told() {
    let k = Key::of(&json!({"q": 5}));
    let mem = Arc::new(Mem::default());
    mem.entries
        .lock()
        .unwrap()
        .insert(k.0.clone(), stored(&k, json!({"text": "9"})));
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cache::open(dir.path()).unwrap();
    c.set_tier(mem.clone());
    assert_eq!(c.get::<Value>(&k, "call").unwrap()["text"], "9");
    assert!(c.find(&k).is_none(), "not kept");
    let k2 = Key::of(&json!({"q": 6}));
    c.put(&k2, "call", &json!(1)).unwrap();
    let k3 = Key::of(&json!({"q": 7}));
    c.put_first(&k3, "call", json!(2), |_| true).unwrap();
    // a second answer to k3 is not written, so not told
    c.put_first(&k3, "call", json!(3), |_| true).unwrap();
    assert_eq!(
        *mem.written.lock().unwrap(),
        vec![k2.0.clone(), k3.0.clone()]
    );
    c.remove(&k2);
    assert_eq!(*mem.removed.lock().unwrap(), vec![k2.0]);
}
