//! `distill data pull` and `distill data list` against the loopback fake datasets-server
//! (tests/support_hf): pagination, every registry mapping, the seeded GPQA shuffle, the
//! SOURCES.md checksum line, each error case (no network, unknown name, changed columns,
//! partial download, gated without or with a bad token), and that written files load.
//! Nothing here touches the real internet.

mod support_hf;

use std::path::{Path, PathBuf};

use distill::datasets::{self, PullOptions, PullReport};
use support_hf::fixtures::{self, SHA};
use support_hf::{FakeHf, Fault, TOKEN};

fn opts(fake_url: &str, dir: &Path, name: &str) -> PullOptions {
    PullOptions {
        name: name.to_string(),
        out: Some(dir.join(format!("{}.csv", name.replace('-', "_")))),
        endpoint: fake_url.to_string(),
        seed: 0,
        sources_md: dir.join("SOURCES.md"),
        force: false,
        revision: None,
    }
}

async fn pull_ok(o: &PullOptions, token: Option<&str>) -> PullReport {
    datasets::pull_with_token(o, token.map(String::from))
        .await
        .unwrap_or_else(|e| panic!("pull {} failed: {e}", o.name))
}

fn load(path: &Path) -> distill::data::ProblemSet {
    distill::data::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Files in `dir` other than the expected ones (temporary leftovers).
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[tokio::test]
async fn paginates_until_num_rows_total() {
    let fake = fixtures::fake_with_all(1).await;
    fake.set_page_cap(2);
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&fake.url, dir.path(), "aime-2024");
    let rep = pull_ok(&o, None).await;
    assert_eq!(rep.rows, 5);
    assert_eq!(fake.row_offsets(), [0, 2, 4]);
    for l in fake.log().iter().filter(|l| l.path == "/rows") {
        assert_eq!(l.query["length"], "100");
        assert_eq!(l.query["dataset"], "Maxwell-Jia/AIME_2024");
    }
    let set = load(&rep.path);
    let ids: Vec<_> = set.problems.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "2024-II-4",
            "2024-II-12",
            "2024-I-2",
            "2024-I-7",
            "2024-I-15"
        ]
    );
}

#[tokio::test]
async fn gsm8k_pages_of_100_and_answers_after_hashes() {
    let fake = fixtures::fake_with_all(250).await;
    let dir = tempfile::tempdir().unwrap();
    let rep = pull_ok(&opts(&fake.url, dir.path(), "gsm8k-test"), None).await;
    assert_eq!(rep.rows, 250);
    assert_eq!(fake.row_offsets(), [0, 100, 200]);
    let set = load(&rep.path);
    assert_eq!(set.columns, ["id", "question", "solution", "answer"]);
    for (i, p) in set.problems.iter().enumerate() {
        assert_eq!(p.id, format!("gsm8k_test_{i}"));
        assert_eq!(p.answer(), fixtures::gsm8k_answer(i), "row {i}");
        assert!(p.fields()["solution"].contains("####"));
    }
    // 100 * 1000 + 7 = 100,007 on the source side.
    assert_eq!(set.problems[100].answer(), "100007");
}

#[tokio::test]
async fn aime_mappings_normalize_integers() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let rep = pull_ok(&opts(&fake.url, dir.path(), "aime-2024"), None).await;
    let set = load(&rep.path);
    let answers: Vec<_> = set
        .problems
        .iter()
        .map(|p| p.answer().to_string())
        .collect();
    assert_eq!(answers, ["33", "23", "25", "540", "721"]);
    assert!(set.problems[0].question().starts_with("Let $x,y$"));
    assert!(set.problems[0].fields()["solution"].contains("\\boxed{033}"));

    let rep = pull_ok(&opts(&fake.url, dir.path(), "aime-2025"), None).await;
    let set = load(&rep.path);
    assert_eq!(set.columns, ["id", "question", "solution", "answer", "url"]);
    let got: Vec<_> = set
        .problems
        .iter()
        .map(|p| (p.id.as_str(), p.answer()))
        .collect();
    assert_eq!(
        got,
        [
            ("aime_2025_0", "70"),
            ("aime_2025_1", "588"),
            ("aime_2025_2", "16")
        ]
    );
}

#[tokio::test]
async fn math_500_keeps_latex_answers_and_extra_columns() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let rep = pull_ok(&opts(&fake.url, dir.path(), "math-500"), None).await;
    let set = load(&rep.path);
    assert_eq!(
        set.columns,
        ["id", "question", "solution", "answer", "subject", "level"]
    );
    let p = &set.problems[0];
    assert_eq!(p.id, "test/precalculus/807.json");
    assert_eq!(p.answer(), "\\left( 3, \\frac{\\pi}{2} \\right)");
    assert_eq!(p.fields()["subject"], "Precalculus");
    assert_eq!(p.fields()["level"], "2");
    assert_eq!(set.problems[2].answer(), "9");
}

#[tokio::test]
async fn gpqa_shuffle_is_reproducible_per_seed_and_recorded() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&fake.url, dir.path(), "gpqa-diamond");
    let rep = pull_ok(&o, Some(TOKEN)).await;
    assert!(
        fake.log()
            .iter()
            .filter(|l| l.path == "/rows")
            .all(|l| l.auth.as_deref() == Some(&format!("Bearer {TOKEN}")))
    );
    let first = std::fs::read(&rep.path).unwrap();
    let set = load(&rep.path);
    assert_eq!(
        set.columns,
        [
            "id",
            "question",
            "solution",
            "answer",
            "record_id",
            "domain",
            "subdomain"
        ]
    );
    let src = fixtures::gpqa_diamond();
    for (i, p) in set.problems.iter().enumerate() {
        assert_eq!(p.id, format!("gpqa_diamond_train_{i}"));
        let row = &src.rows[i];
        let correct = row["Correct Answer"].as_str().unwrap().trim();
        let letter = p.answer();
        assert!(["A", "B", "C", "D"].contains(&letter), "{letter}");
        let q = p.question();
        assert!(q.contains("\n\nChoices:\n(A) "), "{q}");
        assert!(
            q.contains(&format!("({letter}) {correct}\n"))
                || q.ends_with(&format!("({letter}) {correct}"))
        );
        for k in 1..=3 {
            let w = row[format!("Incorrect Answer {k}")]
                .as_str()
                .unwrap()
                .trim();
            assert!(q.contains(&format!(") {w}")), "{w} missing from {q}");
        }
        assert_eq!(
            p.fields()["record_id"],
            format!("recAAAAAAAAAAAAA{}", i + 1)
        );
    }
    // Same seed: the same bytes.
    let again = pull_ok(&o, Some(TOKEN)).await;
    assert_eq!(std::fs::read(&again.path).unwrap(), first);
    assert_eq!(again.blake3, rep.blake3);
    // Another seed: another order (for at least one of the four questions); it replaces
    // the recorded file only with --force
    o.seed = 7;
    let e = datasets::pull_with_token(&o, Some(TOKEN.into()))
        .await
        .unwrap_err();
    assert!(
        e.contains("recorded with choice seed 0, asked for 7"),
        "{e}"
    );
    assert_eq!(std::fs::read(&rep.path).unwrap(), first);
    o.force = true;
    let other = pull_ok(&o, Some(TOKEN)).await;
    assert_ne!(std::fs::read(&other.path).unwrap(), first);
    let md = std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap();
    let line = md.lines().find(|l| l.contains("gpqa_diamond.csv")).unwrap();
    assert!(line.contains("| 7 |"), "{line}");
    assert!(line.contains(&other.blake3));
}

#[tokio::test]
async fn sources_md_records_blake3_and_revision_one_line_per_file() {
    let fake = fixtures::fake_with_all(3).await;
    let dir = tempfile::tempdir().unwrap();
    let a = pull_ok(&opts(&fake.url, dir.path(), "aime-2024"), None).await;
    let g = pull_ok(&opts(&fake.url, dir.path(), "gsm8k-test"), None).await;
    let a2 = pull_ok(&opts(&fake.url, dir.path(), "aime-2024"), None).await;
    assert_eq!(a, a2);
    assert_eq!(a.revision, SHA);
    assert_eq!(a.dataset, "Maxwell-Jia/AIME_2024");
    let md = std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap();
    for rep in [&a, &g] {
        let file = rep.path.file_name().unwrap().to_string_lossy().to_string();
        let lines: Vec<_> = md
            .lines()
            .filter(|l| l.contains(&format!("`{file}`")))
            .collect();
        assert_eq!(lines.len(), 1, "{md}");
        let hash = blake3::hash(&std::fs::read(&rep.path).unwrap())
            .to_hex()
            .to_string();
        assert_eq!(rep.blake3, hash);
        assert!(lines[0].contains(&hash), "{}", lines[0]);
        assert!(lines[0].contains(SHA) && lines[0].contains(&rep.dataset));
        // The hash the engine records in config.json is the same.
        assert_eq!(load(&rep.path).file_hash, hash);
    }
}

#[tokio::test]
async fn revision_is_unknown_when_the_hub_does_not_say() {
    let fake = FakeHf::start().await;
    fake.add(
        "Maxwell-Jia/AIME_2024",
        "default",
        "train",
        fixtures::aime_2024(),
        false,
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let rep = pull_ok(&opts(&fake.url, dir.path(), "aime-2024"), None).await;
    assert_eq!(rep.revision, "unknown");
    let md = std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap();
    assert!(md.contains("| unknown |"), "{md}");
}

#[tokio::test]
async fn no_network_is_a_clear_error() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&format!("http://127.0.0.1:{port}"), dir.path(), "aime-2024");
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(
        e.contains("cannot reach the Hugging Face datasets-server"),
        "{e}"
    );
    assert!(e.to_lowercase().contains("refused"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn unknown_name_lists_the_known_ones_without_a_request() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let e = datasets::pull_with_token(&opts(&fake.url, dir.path(), "aime-2023"), None)
        .await
        .unwrap_err();
    for n in [
        "aime-2024",
        "aime-2025",
        "math-500",
        "gpqa-diamond",
        "gsm8k-test",
    ] {
        assert!(e.contains(n), "{e}");
    }
    assert!(fake.log().is_empty());
}

#[tokio::test]
async fn changed_columns_name_the_missing_one() {
    let fake = FakeHf::start().await;
    fake.add(
        "Maxwell-Jia/AIME_2024",
        "default",
        "train",
        fixtures::aime_2024().rename_column("Problem", "problem_text"),
        false,
        Some(SHA),
    );
    let dir = tempfile::tempdir().unwrap();
    let e = datasets::pull_with_token(&opts(&fake.url, dir.path(), "aime-2024"), None)
        .await
        .unwrap_err();
    assert!(e.contains("no column `Problem`"), "{e}");
    assert!(
        e.contains("problem_text") && e.contains("registry.rs"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn partial_download_leaves_no_file_and_keeps_the_old_one() {
    let fake = fixtures::fake_with_all(250).await;
    fake.add_fault(Fault::ServerErrorAt(100));
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&fake.url, dir.path(), "gsm8k-test");
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(
        e.contains("partial download") && e.contains("row 100 of 250"),
        "{e}"
    );
    assert!(e.contains("500"), "{e}");
    // Retried, then gave up.
    assert_eq!(fake.row_offsets(), [0, 100, 100, 100]);
    assert!(!o.out.as_ref().unwrap().exists());
    assert!(!dir.path().join("SOURCES.md").exists());
    assert!(leftovers(dir.path()).is_empty());

    // An existing file is left as it was.
    let out = o.out.clone().unwrap();
    std::fs::write(&out, "id,question,solution,answer\nx,q,s,1\n").unwrap();
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("partial download"), "{e}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "id,question,solution,answer\nx,q,s,1\n"
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn empty_page_or_partial_split_is_an_error() {
    let fake = fixtures::fake_with_all(150).await;
    fake.add_fault(Fault::EmptyPageAt(100));
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&fake.url, dir.path(), "gsm8k-test");
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("stopped at row 100 of 150"), "{e}");
    assert!(!o.out.as_ref().unwrap().exists());

    let fake = fixtures::fake_with_all(1).await;
    fake.add_fault(Fault::PartialSplit);
    let o = opts(&fake.url, dir.path(), "aime-2024");
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("partial copy"), "{e}");
    assert!(!o.out.as_ref().unwrap().exists());
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn gated_without_token_says_hf_token() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&fake.url, dir.path(), "gpqa-diamond");
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("HF_TOKEN") && e.contains("gated"), "{e}");
    assert!(
        e.contains("https://huggingface.co/datasets/Idavidrein/gpqa"),
        "{e}"
    );
    assert!(fake.log().is_empty(), "no request without a token");

    let e = datasets::pull_with_token(&o, Some("hf_wrong".into()))
        .await
        .unwrap_err();
    assert!(
        e.contains("refused access") && e.contains("HF_TOKEN was sent"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn pull_reads_the_token_itself_for_open_datasets() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let rep = datasets::pull(&opts(&fake.url, dir.path(), "math-500"))
        .await
        .unwrap();
    assert_eq!(rep.rows, 3);
}

#[tokio::test]
async fn list_shows_what_can_be_pulled_and_what_is_present() {
    let fake = fixtures::fake_with_all(2).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pull_ok(&opts(&fake.url, d, "aime-2024"), None).await;
    pull_ok(&opts(&fake.url, d, "gsm8k-test"), None).await;
    // Hand-edit one file; add an unrelated problem set.
    let g = d.join("gsm8k_test.csv");
    let mut t = std::fs::read_to_string(&g).unwrap();
    t.push_str("extra,q,s,1\n");
    std::fs::write(&g, t).unwrap();
    std::fs::write(d.join("mine.csv"), "id,question,solution,answer\na,q,s,1\n").unwrap();

    let out = datasets::list(d);
    let block = |name: &str| -> String {
        let start = out.find(&format!("\n  {name} ")).unwrap();
        out[start..].lines().take(4).collect::<Vec<_>>().join("\n")
    };
    assert!(
        block("aime-2024").contains("aime_2024.csv: present, 5 rows, revision 0123456789ab"),
        "{out}"
    );
    assert!(block("gsm8k-test").contains("CHANGED"), "{out}");
    assert!(
        block("math-500").contains("not pulled (distill data pull math-500)"),
        "{out}"
    );
    assert!(block("gpqa-diamond").contains("gated"), "{out}");
    assert!(out.contains("mine.csv: 1 row\n"), "{out}");
}

#[test]
fn defaults() {
    assert_eq!(
        datasets::default_out("aime-2024"),
        PathBuf::from("data/aime_2024.csv")
    );
    let o = PullOptions::new("gsm8k-test");
    assert_eq!(o.seed, 0);
    assert_eq!(o.sources_md, PathBuf::from("data/SOURCES.md"));
    assert!(o.out.is_none());
}

/// The next revision the fake's AIME 2024 moves to.
const SHA2: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// AIME 2024 upstream changes: one row removed, one edited, one added.
fn upstream_changes(fake: &FakeHf) {
    fake.publish("Maxwell-Jia/AIME_2024", "default", "train", SHA2, |rows| {
        rows.retain(|r| r["ID"] != "2024-I-2");
        rows[0]["Answer"] = serde_json::json!(34);
        rows.push(serde_json::json!({"ID": "2024-I-9", "Problem": "New problem?", "Solution": "\\boxed{9}", "Answer": 9}));
    });
}

#[tokio::test]
async fn a_changed_upstream_is_refused_with_what_changed_unless_forced() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&fake.url, dir.path(), "aime-2024");
    let first = pull_ok(&o, None).await;
    let before = std::fs::read(&first.path).unwrap();
    let md_before = std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap();
    // the same upstream again: fine, unchanged
    assert_eq!(pull_ok(&o, None).await, first);

    upstream_changes(&fake);
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    for want in [
        "differ from",
        &format!("recorded at revision {SHA}, upstream now at {SHA2}"),
        "1 row(s) added: 2024-I-9",
        "1 row(s) removed: 2024-I-2",
        "1 row(s) edited: 2024-II-4 (answer)",
        "--force",
        "--revision",
    ] {
        assert!(e.contains(want), "lacks `{want}`: {e}");
    }
    assert_eq!(
        std::fs::read(&first.path).unwrap(),
        before,
        "the file was changed"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap(),
        md_before
    );
    assert!(leftovers(dir.path()).is_empty());

    // pinned to the recorded revision: upstream moved on, so it refuses too
    o.revision = Some(datasets::RECORDED.into());
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(
        e.contains(&format!("pinned to revision {SHA}")) && e.contains(&format!("now at {SHA2}")),
        "{e}"
    );
    assert_eq!(std::fs::read(&first.path).unwrap(), before);

    // --force replaces it and records the new revision
    o.revision = None;
    o.force = true;
    let rep = pull_ok(&o, None).await;
    assert_eq!(rep.revision, SHA2);
    assert_eq!(rep.rows, 5);
    let ids: Vec<String> = load(&rep.path)
        .problems
        .iter()
        .map(|p| p.id.clone())
        .collect();
    assert!(ids.contains(&"2024-I-9".to_string()) && !ids.contains(&"2024-I-2".to_string()));
    let md = std::fs::read_to_string(dir.path().join("SOURCES.md")).unwrap();
    assert!(md.contains(SHA2) && md.contains(&rep.blake3), "{md}");

    // now pinned to the recorded (new) revision: it matches, the pull goes ahead
    o.force = false;
    o.revision = Some(datasets::RECORDED.into());
    assert_eq!(pull_ok(&o, None).await, rep);
    // an explicit sha prefix works too; another sha does not
    o.revision = Some(SHA2[..12].to_string());
    assert_eq!(pull_ok(&o, None).await.revision, SHA2);
    o.revision = Some("deadbeef".into());
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("pinned to revision deadbeef"), "{e}");
}

#[tokio::test]
async fn a_locally_edited_file_or_one_without_a_record_is_not_overwritten() {
    let fake = fixtures::fake_with_all(1).await;
    let dir = tempfile::tempdir().unwrap();
    let o = opts(&fake.url, dir.path(), "aime-2024");
    let out = o.out.clone().unwrap();
    // a hand-made file of the same name, no SOURCES.md line
    std::fs::write(&out, "id,question,solution,answer\nmine,q,s,1\n").unwrap();
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("has no line for it"), "{e}");
    assert!(
        e.contains("5 row(s) added") && e.contains("1 row(s) removed: mine"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "id,question,solution,answer\nmine,q,s,1\n"
    );
    // pulled, then edited locally
    std::fs::remove_file(&out).unwrap();
    let rep = pull_ok(&o, None).await;
    let text = std::fs::read_to_string(&rep.path)
        .unwrap()
        .replace("540", "541");
    std::fs::write(&rep.path, &text).unwrap();
    let e = datasets::pull_with_token(&o, None).await.unwrap_err();
    assert!(e.contains("edited since it was pulled"), "{e}");
    assert!(e.contains("2024-I-7 (answer"), "{e}");
    // no recorded revision to pin to for a file without a line
    let mut o2 = opts(&fake.url, dir.path(), "aime-2025");
    o2.revision = Some(datasets::RECORDED.into());
    let e = datasets::pull_with_token(&o2, None).await.unwrap_err();
    assert!(e.contains("no revision is recorded"), "{e}");
}

#[test]
fn the_binary_refuses_with_exit_2_and_takes_force() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let fake = rt.block_on(fixtures::fake_with_all(1));
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_distill"))
            .current_dir(dir.path())
            .args(["data", "pull", "aime-2024"])
            .args(args)
            .env("DISTILL_HF_ENDPOINT", &fake.url)
            .env_remove("HF_TOKEN")
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    upstream_changes(&fake);
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("1 row(s) removed: 2024-I-2"), "{err}");
    let o = run(&["--revision"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pinned to revision"));
    let o = run(&["--force"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("replaced (--force)"), "{err}");
    drop(rt);
}
