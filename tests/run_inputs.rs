//! Where a run writes, checked before any call: a `--results` root that cannot hold a run
//! directory is bad input (exit 2, naming the path, nothing run), like a `--cache` that
//! cannot be written.

mod common;

use common::{Project, cache_entries, text};

#[test]
fn a_results_root_that_is_a_file_is_refused_before_any_call() {
    let p = Project::new();
    p.write(
        "pipelines/q.yaml",
        &common::iterated("q", 1, &common::sim_model(0), ""),
    );
    p.write("afile", "not a directory");
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/q.yaml",
        "--no-progress",
        "--results",
        "afile",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("afile") && t.contains("--results DIR"), "{t}");
    let entries = cache_entries(&p.path().join("cache")).len();
    assert_eq!(entries, 0, "no call was made: {t}");
    let out = p.run(&[
        "pipeline",
        "run",
        "pipelines/q.yaml",
        "--no-progress",
        "--cache",
        "afile",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("afile"), "{}", text(&out));
}

/// A repeat block's bad `when:` is one error at its own line, not one per body node.
#[test]
fn a_bad_block_when_is_one_error_at_its_line() {
    let p = Project::new();
    let yaml = common::iterated("w", 3, &common::sim_model(0), "").replace(
        "    repeat: 3\n",
        "    repeat: 3\n    when: \"not ((previous.attempt.correct\"\n",
    );
    let file = p.write("pipelines/w.yaml", &yaml);
    let line = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .position(|l| l.trim_start().starts_with("when:"))
        .unwrap()
        + 1;
    let out = p.run(&["pipeline", "validate", "pipelines/w.yaml"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("1 error(s)"), "{t}");
    assert!(
        t.contains(&format!("pipelines/w.yaml:{line}: error: bad `when:`")),
        "{t}"
    );
}
