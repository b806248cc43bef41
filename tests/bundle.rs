//! Cache bundles (`distill cache export|import`): a run against the tests' fake server is
//! exported, imported into an empty cache elsewhere, and with the server stopped an offline
//! run and `distill report` give the same table with no request; a bundle whose entry was
//! tampered with is refused entry by entry; a file that is no bundle is exit 2.

mod common;
#[path = "support/call_helpers.rs"]
mod helpers;
mod support;

use std::io::Read;

use common::*;
use helpers::*;
use support::fake_openai::{FakeConfig, FakeServer};

fn table(rep: &serde_json::Value) -> Vec<(f64, u64)> {
    rep["runs"][0]["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let a = &r["per_round_accuracy"];
            (a["successes"].as_f64().unwrap(), a["n"].as_u64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exported_run_reproduces_offline_from_an_imported_bundle() {
    let p = Project::new();
    let server = FakeServer::start(FakeConfig::default()).await;
    p.write(
        "pipelines/b.yaml",
        &iterated("b", 2, &model(&server, ""), ""),
    );
    let t = assert_exit(&run_pipeline(&p, "pipelines/b.yaml", "cache", &[]).await, 0);
    let sent = server.request_count();
    assert!(sent > 0, "{t}");
    let first = p.last_run("b");
    let out = run(
        &p,
        &[
            "cache",
            "export",
            first.to_str().unwrap(),
            "--out",
            "paper.tar.zst",
        ],
    )
    .await;
    let t = assert_exit(&out, 0);
    assert!(t.contains("paper.tar.zst"), "{t}");
    drop(server); // the server is gone: only the bundle can answer now
    let out = run(
        &p,
        &[
            "cache",
            "import",
            "paper.tar.zst",
            "--cache",
            "elsewhere/cache",
        ],
    )
    .await;
    let t = assert_exit(&out, 0);
    assert!(t.contains("0 refused"), "{t}");
    assert!(
        p.path()
            .join("elsewhere/cache/bundles/paper/0-")
            .parent()
            .unwrap()
            .is_dir(),
        "the runs' configs are kept: {t}"
    );
    let t = assert_exit(
        &run_pipeline(&p, "pipelines/b.yaml", "elsewhere/cache", &["--offline"]).await,
        0,
    );
    let second = p.last_run("b");
    assert_ne!(first, second);
    assert_eq!(json(&second.join("metrics.json"))["calls"], 0, "{t}");
    assert_eq!(comparable(&first), comparable(&second));
    for r in [&first, &second] {
        assert_exit(&run(&p, &["report", r.to_str().unwrap()]).await, 0);
    }
    assert_eq!(
        table(&json(&first.join("report.json"))),
        table(&json(&second.join("report.json")))
    );
    // importing again adds nothing
    let t = assert_exit(
        &run(
            &p,
            &[
                "cache",
                "import",
                "paper.tar.zst",
                "--cache",
                "elsewhere/cache",
            ],
        )
        .await,
        0,
    );
    assert!(t.contains("0 entries added"), "{t}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_entry_is_refused_and_a_non_bundle_is_bad_input() {
    let p = Project::new();
    p.write("pipelines/q.yaml", &iterated("q", 1, &sim_model(0), ""));
    assert_exit(&run_pipeline(&p, "pipelines/q.yaml", "cache", &[]).await, 0);
    let r = p.last_run("q");
    assert_exit(
        &run(
            &p,
            &["cache", "export", r.to_str().unwrap(), "--out", "b.tar.zst"],
        )
        .await,
        0,
    );
    // rewrite the bundle with one entry's last byte flipped
    let raw = zstd::decode_all(std::fs::File::open(p.path().join("b.tar.zst")).unwrap()).unwrap();
    let mut a = tar::Archive::new(&raw[..]);
    let mut out = tar::Builder::new(Vec::new());
    let mut flipped = None;
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        if flipped.is_none() && path.starts_with("objects/") {
            *bytes.last_mut().unwrap() ^= 0xff;
            flipped = Some(path.clone());
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, &path, &bytes[..]).unwrap();
    }
    let tar_bytes = out.into_inner().unwrap();
    std::fs::write(
        p.path().join("bad.tar.zst"),
        zstd::encode_all(&tar_bytes[..], 3).unwrap(),
    )
    .unwrap();
    let out = run(&p, &["cache", "import", "bad.tar.zst", "--cache", "c2"]).await;
    let t = assert_exit(&out, 1);
    let flipped = flipped.unwrap();
    assert!(t.contains("1 refused") && t.contains(&flipped), "{t}");
    let key = flipped.trim_start_matches("objects/").replace('/', "");
    assert!(
        !cache_entries(&p.path().join("c2"))
            .iter()
            .any(|(k, _, _)| *k == key),
        "the tampered entry was not added"
    );
    // not a bundle at all
    p.write("notes.txt", "hello");
    let out = run(&p, &["cache", "import", "notes.txt", "--cache", "c3"]).await;
    let t = assert_exit(&out, 2);
    assert!(t.contains("notes.txt"), "{t}");
    // a run directory without cache_keys.txt
    let out = run(&p, &["cache", "export", "data", "--out", "x.tar.zst"]).await;
    let t = assert_exit(&out, 2);
    assert!(t.contains("cache_keys.txt"), "{t}");
}
