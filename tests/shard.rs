//! Split and merge (`pipeline run --shard I/N`, `distill report` over the shard
//! directories): a 4-shard run of an iterated pipeline over a set with repeated questions,
//! against the tests' fake server, selects each problem in exactly one shard (repeats
//! together), sends exactly the unsharded run's requests, and its merged report has the
//! unsharded report's table; a shard left out is named in every header, a stopped shard is
//! said to be stopped, shards of two configs (or of one config split two ways, or one shard
//! given twice) refuse to merge, a shard holding nothing still
//! writes its run directory, bad `--shard` values are exit 2, the filters choose before the
//! shard splits, and `pipeline plan` plans one shard.

mod common;
#[path = "support/call_helpers.rs"]
mod helpers;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use helpers::*;
use serde_json::Value;
use support::fake_openai::{FakeConfig, FakeServer, Reply, prompt_text};

/// 14 problems, 10 distinct questions: rows 10–13 repeat rows 0–3.
fn write_set(p: &Project) {
    let mut csv = String::from("id,question,answer\n");
    for i in 0..14 {
        let k = i % 10;
        csv.push_str(&format!("q{i},What is item {k} worth?,{}\n", k % 3));
    }
    p.write("data/dups.csv", &csv);
}

/// Answers 0, 1 or 2 by a hash of the prompt: some right, some wrong, changing by round.
fn server_config() -> FakeConfig {
    FakeConfig::default().with_responder(|body: &Value| {
        let prompt = prompt_text(body);
        let h = prompt.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        Reply::text(format!(
            "<think>\nThinking about {} characters.\n</think>\n\nThe answer is \\boxed{{{}}}.",
            prompt.chars().count(),
            h % 3
        ))
    })
}

fn pipeline(p: &Project, name: &str, server: &FakeServer) -> String {
    let text =
        iterated(name, 2, &model(server, ""), "").replace("data/arithmetic.csv", "data/dups.csv");
    let rel = format!("pipelines/{name}.yaml");
    p.write(&rel, &text);
    rel
}

/// The prompts the server received since `from`, sorted (a multiset).
fn prompts_since(server: &FakeServer, from: usize) -> Vec<String> {
    let mut v: Vec<String> = server.requests()[from..]
        .iter()
        .map(|r| r.prompt_text())
        .collect();
    v.sort();
    v
}

fn selected(run: &Path) -> Vec<String> {
    json(&run.join("config.json"))["problems"]["selected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// A run's report.json entry without what names the run (label, path, run id, the shards
/// it merged).
fn table_of(report_json: &Path) -> Value {
    let mut r = json(report_json)["runs"][0].clone();
    for k in ["label", "path", "run_id", "shards"] {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

fn strs(v: &[PathBuf]) -> Vec<&str> {
    v.iter().map(|d| d.to_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn four_shards_equal_one_unsharded_run() {
    let p = Project::new();
    write_set(&p);
    let server = FakeServer::start(server_config()).await;
    let file = pipeline(&p, "s", &server);

    // the unsharded run, its own cache
    assert_exit(&run_pipeline(&p, &file, "whole-cache", &[]).await, 0);
    let whole = p.last_run("s");
    let whole_prompts = prompts_since(&server, 0);
    let whole_requests = whole_prompts.len();
    assert!(whole_requests > 0);

    // four shards, one shared cache (as on a cluster with a shared remote cache)
    let mut shard_dirs = Vec::new();
    let mut per_shard = Vec::new();
    let from = server.requests().len();
    for i in 0..4 {
        let before = server.requests().len();
        let shard = format!("{i}/4");
        let t = assert_exit(
            &run_pipeline(&p, &file, "shard-cache", &["--shard", &shard]).await,
            0,
        );
        assert!(t.contains(&format!("shard {i}/4: ")), "{t}");
        shard_dirs.push(p.last_run("s"));
        per_shard.push(server.requests().len() - before);
    }
    assert_eq!(
        prompts_since(&server, from),
        whole_prompts,
        "the shards sent exactly the unsharded run's requests (per shard: {per_shard:?})"
    );

    // each problem in exactly one shard; repeated questions together
    let mut union = BTreeSet::new();
    let mut shard_of: BTreeMap<String, usize> = BTreeMap::new();
    for (i, d) in shard_dirs.iter().enumerate() {
        let cfg = json(&d.join("config.json"));
        assert_eq!(cfg["shard"]["index"], i as u64);
        assert_eq!(cfg["shard"]["count"], 4);
        assert_eq!(cfg["shard"]["problems_total"], 14);
        assert_eq!(
            cfg["shard"]["of"],
            json(&shard_dirs[0].join("config.json"))["shard"]["of"]
        );
        for id in selected(d) {
            assert!(union.insert(id.clone()), "{id} is in two shards");
            shard_of.insert(id, i);
        }
    }
    let whole_sel: BTreeSet<String> = selected(&whole).into_iter().collect();
    assert_eq!(union, whole_sel);
    for k in 0..4 {
        assert_eq!(
            shard_of[&format!("q{k}")],
            shard_of[&format!("q{}", k + 10)],
            "q{k} and q{} share a question",
            k + 10
        );
    }
    assert!(
        json(&whole.join("config.json")).get("shard").is_none(),
        "an unsharded run records no shard"
    );

    // the merged report: one column, the unsharded table
    let t = assert_exit(
        &run(
            &p,
            &["report", whole.to_str().unwrap(), "--out", "rep-whole"],
        )
        .await,
        0,
    );
    assert!(
        !t.contains("shards missing") && !t.contains("— STOPPED"),
        "{t}"
    );
    let mut args = vec!["report"];
    args.extend(strs(&shard_dirs));
    args.extend(["--out", "rep-shards"]);
    let t = assert_exit(&run(&p, &args).await, 0);
    assert!(t.contains("s 4/4 shards"), "{t}");
    assert!(
        t.starts_with("# distill report\n"),
        "no note in the title: {t}"
    );
    assert!(!t.contains(" missing: the table covers"), "{t}");
    let merged = json(&p.path().join("rep-shards/report.json"));
    assert_eq!(merged["runs"].as_array().unwrap().len(), 1, "one column");
    assert_eq!(
        table_of(&p.path().join("rep-shards/report.json")),
        table_of(&p.path().join("rep-whole/report.json")),
        "the merged table is the unsharded run's"
    );
    let rounds = merged["runs"][0]["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3);
    assert_eq!(rounds[0]["per_round_accuracy"]["n"], 14);

    // one shard alone is its own report, saying what it is a piece of
    let t = assert_exit(
        &run(
            &p,
            &[
                "report",
                shard_dirs[0].to_str().unwrap(),
                "--out",
                "rep-one",
            ],
        )
        .await,
        0,
    );
    assert!(
        t.contains("this run is shard 0/4 of a sharded run") && !t.contains("missing: the table"),
        "{t}"
    );

    // one shard left out: named in every header
    let mut args = vec!["report"];
    args.extend(strs(&shard_dirs[..2]));
    args.extend(strs(&shard_dirs[3..]));
    args.extend(["--out", "rep-three"]);
    let t = assert_exit(&run(&p, &args).await, 0);
    let covered = 14 - selected(&shard_dirs[2]).len();
    let note =
        format!("shard 2/4 missing: the table covers 3 of 4 shards ({covered} of 14 problems)");
    let md = std::fs::read_to_string(p.path().join("rep-three/report.md")).unwrap();
    assert!(
        md.lines().next().unwrap().contains(&note),
        "the title: {md}"
    );
    assert!(
        md.contains(&format!("## run s 3/4 shards\n\n**{note}")),
        "{md}"
    );
    assert!(t.contains(&note), "{t}");
    let three = json(&p.path().join("rep-three/report.json"));
    assert_eq!(
        three["runs"][0]["shards"]["missing"],
        serde_json::json!([2])
    );
    assert_eq!(three["runs"][0]["shards"]["present"]["3"], "complete");
    let csv = std::fs::read_to_string(p.path().join("rep-three/report.csv")).unwrap();
    assert!(
        csv.lines().skip(1).all(|l| l.contains(&note)),
        "every CSV row: {csv}"
    );

    // a shard stopped before the end (killed: no end record, no results.json) says so
    let stopped = &shard_dirs[1];
    std::fs::remove_file(stopped.join("results.json")).unwrap();
    let journal = std::fs::read_to_string(stopped.join("results.jsonl")).unwrap();
    let kept: Vec<&str> = journal
        .lines()
        .filter(|l| !l.contains("\"record\":\"end\""))
        .collect();
    std::fs::write(stopped.join("results.jsonl"), kept.join("\n") + "\n").unwrap();
    let mut args = vec!["report"];
    args.extend(strs(&shard_dirs));
    args.extend(["--out", "rep-stopped"]);
    let t = assert_exit(&run(&p, &args).await, 0);
    assert!(t.contains("STOPPED EARLY (shard 1/4 interrupted)"), "{t}");
    // resumed, it stays shard 1/4: no request (all cached), and the merge is whole again
    let load = &json(&stopped.join("config.json"))["load"]["shard"];
    assert_eq!(
        (load["index"].as_u64(), load["count"].as_u64()),
        (Some(1), Some(4))
    );
    let before = server.requests().len();
    let mut args = vec!["pipeline", "run", "--no-progress", "--cache", "shard-cache"];
    args.extend(["--resume", stopped.to_str().unwrap()]);
    let t = assert_exit(&run(&p, &args).await, 0);
    assert!(t.contains("shard 1/4: "), "{t}");
    assert_eq!(
        server.requests().len(),
        before,
        "the resumed shard's calls are cached"
    );
    let mut args = vec!["report"];
    args.extend(strs(&shard_dirs));
    args.extend(["--out", "rep-resumed"]);
    assert_exit(&run(&p, &args).await, 0);
    assert_eq!(
        table_of(&p.path().join("rep-resumed/report.json")),
        table_of(&p.path().join("rep-whole/report.json")),
    );

    // `distill runs`: each shard's line, then the merged one
    let out = run(&p, &["runs"]).await;
    let t = assert_exit(&out, 0);
    assert!(t.contains("(shards merged)"), "{t}");
    assert!(t.lines().any(|l| l.contains(" 2/4 ")), "{t}");
    eprintln!("requests: unsharded {whole_requests}, shards {per_shard:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_of_two_configs_refuse_to_merge() {
    let p = Project::new();
    write_set(&p);
    let server = FakeServer::start(server_config()).await;
    let file = pipeline(&p, "c", &server);
    assert_exit(
        &run_pipeline(&p, &file, "cache", &["--shard", "0/2"]).await,
        0,
    );
    let a = p.last_run("c");
    assert_exit(
        &run_pipeline(
            &p,
            &file,
            "cache",
            &[
                "--shard",
                "1/2",
                "--set",
                "models.reasoner.params.temperature=0.9",
            ],
        )
        .await,
        0,
    );
    let b = p.last_run("c");
    let out = run(&p, &["report", a.to_str().unwrap(), b.to_str().unwrap()]).await;
    let t = assert_exit(&out, 2);
    assert!(
        t.contains("cannot merge the shards of `c`")
            && t.contains("different configs")
            && t.contains("their pipeline differ"),
        "{t}"
    );
    assert!(
        !p.path().join("report/report.md").exists(),
        "nothing written"
    );
    // one shard twice is refused too
    let out = run(&p, &["report", a.to_str().unwrap(), a.to_str().unwrap()]).await;
    let t = assert_exit(&out, 2);
    assert!(t.contains("shard 0/2 of `c` is given twice"), "{t}");
    // one config split two ways (0/2 beside 1/3) is refused
    assert_exit(
        &run_pipeline(&p, &file, "cache", &["--shard", "1/3"]).await,
        0,
    );
    let c = p.last_run("c");
    let out = run(&p, &["report", a.to_str().unwrap(), c.to_str().unwrap()]).await;
    let t = assert_exit(&out, 2);
    assert!(t.contains("were split two ways"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_shard_still_writes_its_run_directory() {
    let p = Project::new();
    p.write("pipelines/e.yaml", &iterated("e", 1, &sim_model(0), ""));
    // one problem over 8 shards: 7 shards hold nothing
    let mut dirs = Vec::new();
    let mut empty = 0;
    for i in 0..8 {
        let out = p.run(&[
            "pipeline",
            "run",
            "pipelines/e.yaml",
            "--no-progress",
            "--question-ids",
            "add-1",
            "--shard",
            &format!("{i}/8"),
        ]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        let d = p.last_run("e");
        if selected(&d).is_empty() {
            empty += 1;
            assert!(t.contains("holds none of the 1 selected problem(s)"), "{t}");
            assert!(d.join("results.json").is_file(), "{t}");
        }
        dirs.push(d);
    }
    assert_eq!(empty, 7);
    let mut args = vec!["report"];
    args.extend(strs(&dirs));
    let out = p.run(&args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(t.contains("e 8/8 shards"), "{t}");
    assert!(
        t.starts_with("# distill report\n"),
        "no note in the title: {t}"
    );
    let rep = json(&p.path().join("report/report.json"));
    assert_eq!(rep["runs"].as_array().unwrap().len(), 1);
    assert_eq!(rep["runs"][0]["problems"], 1);
}

#[test]
fn bad_shard_values_are_exit_2() {
    let p = Project::new();
    p.write("pipelines/e.yaml", &iterated("e", 1, &sim_model(0), ""));
    for (bad, says) in [
        ("4/4", "0 to 3"),
        ("0/0", "from 1 to 10000"),
        ("1/10001", "from 1 to 10000"),
        ("x/4", "is not a shard"),
        ("3", "is not a shard"),
        ("-1/4", "is not a shard"),
    ] {
        for cmd in ["run", "plan"] {
            let flag = format!("--shard={bad}");
            let out = p.run(&["pipeline", cmd, "pipelines/e.yaml", &flag]);
            let t = text(&out);
            assert_eq!(out.status.code(), Some(2), "{cmd} --shard {bad}: {t}");
            assert!(t.contains(says), "{cmd} --shard {bad}: {t}");
        }
    }
    assert!(!p.path().join("results").exists(), "nothing ran");
    // a resumed shard stays the shard it was
    let out = p.run(&[
        "pipeline",
        "run",
        "--resume",
        "results/e/x",
        "--shard",
        "0/2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--shard"), "{}", text(&out));
}

#[test]
fn plan_plans_one_shard() {
    let p = Project::new();
    p.write("pipelines/e.yaml", &iterated("e", 1, &sim_model(0), ""));
    let whole = p.run(&["pipeline", "plan", "pipelines/e.yaml"]);
    assert_eq!(whole.status.code(), Some(0), "{}", text(&whole));
    let mut sum = 0;
    for i in 0..2 {
        let out = p.run(&[
            "pipeline",
            "plan",
            "pipelines/e.yaml",
            "--shard",
            &format!("{i}/2"),
        ]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(0), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with(&format!("shard {i}/2: ")))
            .unwrap_or_else(|| panic!("{t}"));
        let n: usize = line
            .trim_start_matches(&format!("shard {i}/2: "))
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(line.ends_with("of the 8 selected problem(s)"), "{t}");
        sum += n;
    }
    assert_eq!(sum, 8);
}

#[test]
fn filters_apply_before_the_shard() {
    let p = Project::new();
    p.write("pipelines/f.yaml", &iterated("f", 1, &sim_model(0), ""));
    let run_shard = |i: u32, more: &[&str]| -> Vec<String> {
        let shard = format!("{i}/2");
        let mut args = vec![
            "pipeline",
            "run",
            "pipelines/f.yaml",
            "--no-progress",
            "--shard",
        ];
        args.push(&shard);
        args.extend_from_slice(more);
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("shard {i}/2: ")),
            "{}",
            text(&out)
        );
        selected(&p.last_run("f"))
    };
    let rows: Vec<String> = ["add-1", "mul-1", "sub-1", "div-1", "word-1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut union = Vec::new();
    for i in 0..2 {
        let all = run_shard(i, &[]);
        let filtered = run_shard(
            i,
            &["--index-range", "0-4", "--exclude-question-ids", "mul-1"],
        );
        // the filters choose, then the shard splits what they chose: a problem's shard is
        // its question's, whatever the filters
        let expected: Vec<String> = all
            .iter()
            .filter(|id| rows.contains(id) && *id != "mul-1")
            .cloned()
            .collect();
        assert_eq!(filtered, expected, "shard {i}/2");
        union.extend(filtered);
    }
    union.sort();
    assert_eq!(union, ["add-1", "div-1", "sub-1", "word-1"]);
}
