//! Tests of the journal: records appended and flushed as they finish, results.json written
//! in CSV order as problems close, readers of a killed or live run.
use super::*;
use records::{NodeRecord, NodeStatus, ProblemRecord, ProblemStatus};

fn problem(id: &str, index: usize) -> crate::data::Problem {
    let mut fields = std::collections::BTreeMap::new();
    for (k, v) in [("id", id), ("question", "q"), ("answer", "1")] {
        fields.insert(k.to_string(), v.to_string());
    }
    crate::data::Problem::new(index, id.into(), fields)
}

fn node(id: &str) -> NodeRecord {
    NodeRecord {
        node: id.into(),
        kind: "reason".into(),
        round: 0,
        status: NodeStatus::Done,
        cached: false,
        reason: None,
        output: None,
        error: None,
        latency_ms: 1,
    }
}

fn closed(p: &crate::data::Problem) -> ProblemRecord {
    ProblemRecord {
        id: p.id.clone(),
        index: p.index,
        question: "q".into(),
        answer: "1".into(),
        status: ProblemStatus::Ok,
        samples: vec![],
        aggregates: Default::default(),
        error: None,
    }
}

#[test]
fn a_killed_journal_reads_with_its_finished_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["a0".to_string(), "a1".to_string()];
    let mut j = Journal::create(dir.path(), "r1", "p", &nodes, 1).unwrap();
    let (pa, pb) = (problem("a", 0), problem("b", 1));
    j.open(&pb).unwrap();
    j.open(&pa).unwrap();
    j.node(1, Some(0), &node("a1")).unwrap();
    j.node(1, Some(0), &node("a0")).unwrap();
    j.node(0, Some(0), &node("a0")).unwrap();
    j.close(&closed(&pb)).unwrap();
    assert_eq!(liveness(dir.path()), Liveness::Live);
    assert_eq!(open(dir.path()).unwrap().status, "running");
    // a kill: the lock goes with the process, a half line may be left
    drop(j);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(JOURNAL))
        .unwrap();
    f.write_all(b"{\"record\":\"node\",\"ind").unwrap();
    let l = open(dir.path()).unwrap();
    assert_eq!(l.status, "interrupted");
    assert_eq!(l.run_id.as_deref(), Some("r1"));
    assert_eq!(liveness(dir.path()), Liveness::Killed);
    let (v, bad) = l.readable(Texts::Full);
    assert!(bad.is_empty());
    let v: Vec<Value> = v.iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    assert_eq!(v.len(), 2);
    // CSV order; a finished node of an open problem is kept, the problem incomplete
    assert_eq!(v[0]["id"], "a");
    assert_eq!(v[0]["status"], "incomplete");
    assert_eq!(v[0]["samples"][0]["a0"]["status"], "done");
    assert_eq!(v[1]["status"], "ok");
    let order: Vec<&String> = v[1]["samples"][0].as_object().unwrap().keys().collect();
    assert_eq!(order, ["a0", "a1"], "pipeline order");

    // resumed: problem a opens again; its new lines replace the old; the end writes results.json
    let mut j = Journal::reopen(dir.path()).unwrap();
    j.open(&pa).unwrap();
    j.node(0, Some(0), &node("a0")).unwrap();
    j.node(0, Some(0), &node("a1")).unwrap();
    j.close(&closed(&pa)).unwrap();
    j.finish("complete").unwrap();
    let r: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join(RESULTS)).unwrap()).unwrap();
    assert_eq!(r["status"], "complete");
    assert_eq!(r["run_id"], "r1");
    assert_eq!(r["problems"][0]["status"], "ok");
    assert_eq!(r["problems"][0]["samples"][0].as_object().unwrap().len(), 2);
    // the records read back typed
    let line = serde_json::to_string(&r["problems"][0]).unwrap();
    let back = ProblemRecord::parse(&line).unwrap();
    assert_eq!(back.status, ProblemStatus::Ok);
    assert_eq!(back.samples[0]["a1"].status, NodeStatus::Done);
    assert_eq!(
        open(dir.path()).unwrap().file,
        dir.path().join(RESULTS),
        "an ended run reads results.json"
    );
    assert_eq!(liveness(dir.path()), Liveness::Ended("complete".into()));
}

#[test]
fn results_json_is_written_as_problems_close_in_csv_order_and_their_places_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["a0".to_string()];
    let mut j = Journal::create(dir.path(), "r1", "p", &nodes, 1).unwrap();
    let ps: Vec<_> = (0..5).map(|i| problem(&format!("p{i}"), i)).collect();
    for p in &ps[..3] {
        j.open(p).unwrap();
        j.node(p.index, Some(0), &node("a0")).unwrap();
    }
    // 1 closes before 0: nothing can be written yet
    j.close(&closed(&ps[1])).unwrap();
    assert_eq!(j.places.len(), 3);
    j.close(&closed(&ps[0])).unwrap();
    // 0 and 1 are written (2 is open: it could still close), their places dropped
    assert_eq!(j.places.len(), 1);
    assert_eq!(j.written, Some(1));
    j.close(&closed(&ps[2])).unwrap();
    // 2 is the last problem opened: kept until a later one opens
    j.open(&ps[4]).unwrap();
    j.open(&ps[3]).unwrap();
    assert!(!j.unordered, "3 comes after every problem written");
    j.node(3, Some(0), &node("a0")).unwrap();
    j.close(&closed(&ps[3])).unwrap();
    // 4 never closes (the run is stopped): written at the end, incomplete
    j.finish("interrupted").unwrap();
    let r: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join(RESULTS)).unwrap()).unwrap();
    let ids: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(r["problems"][4]["status"], "incomplete");
    assert_eq!(r["problems"][0]["samples"][0]["a0"]["status"], "done");
    assert_eq!(r["status"], "interrupted");
    assert!(!dir.path().join(RESULTS_TMP).exists());
    // the same as results.json written from the whole journal at once
    let s = journal::scan(&dir.path().join(JOURNAL)).unwrap();
    let again = dir.path().join("again.json");
    journal::write_results(&dir.path().join(JOURNAL), &s, &again, "interrupted").unwrap();
    assert_eq!(
        fs::read(&again).unwrap(),
        fs::read(dir.path().join(RESULTS)).unwrap()
    );
}

#[test]
fn a_problem_opened_before_one_written_rewrites_results_json_in_csv_order() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["a0".to_string()];
    let mut j = Journal::create(dir.path(), "r1", "p", &nodes, 1).unwrap();
    let ps: Vec<_> = (0..3).map(|i| problem(&format!("p{i}"), i)).collect();
    for i in [1, 2] {
        j.open(&ps[i]).unwrap();
    }
    j.close(&closed(&ps[1])).unwrap();
    assert_eq!(j.written, Some(1));
    j.open(&ps[0]).unwrap();
    assert!(j.unordered);
    j.close(&closed(&ps[0])).unwrap();
    j.close(&closed(&ps[2])).unwrap();
    j.finish("complete").unwrap();
    let r: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join(RESULTS)).unwrap()).unwrap();
    let ids: Vec<&str> = r["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p0", "p1", "p2"]);
}
