//! distill works from any directory: every path in a pipeline resolves against the file that
//! wrote it (its folder, then the folders above, then the working directory), a path on the
//! command line against the working directory. Run from a tempdir outside the repository on
//! the repository's own quickstart, and from inside a project's `pipelines/`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Project, repo, text};

fn distill(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(cwd)
        .args(args)
        .env_remove("DISTILL_CACHE")
        .env_remove("ENABLE_API_CALLS")
        .env_remove("DISTILL_LOG")
        .output()
        .expect("run distill")
}

#[test]
fn the_quickstart_validates_and_runs_from_outside_the_repository() {
    let away = tempfile::tempdir().unwrap();
    let file = repo().join("pipelines/quickstart.yaml");
    let file = file.to_str().unwrap();
    let o = distill(away.path(), &["pipeline", "validate", file]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("valid"),
        "{}",
        text(&o)
    );

    let o = distill(
        away.path(),
        &[
            "pipeline",
            "run",
            file,
            "--no-progress",
            "--index-range",
            "0-1",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // results and cache are command-line paths: the working directory's
    assert!(away.path().join("results/quickstart").is_dir());
    assert!(away.path().join("cache").is_dir());
    let runs: Vec<_> = std::fs::read_dir(away.path().join("results/quickstart"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1);
    let r = common::json(&runs[0].path().join("results.json"));
    assert_eq!(r["problems"].as_array().map(Vec::len), Some(2), "{r}");

    // plan and graph too, with a relative path from a sibling folder
    let o = distill(
        away.path(),
        &["pipeline", "plan", file, "--index-range", "0-0"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn from_inside_pipelines_and_from_a_nested_folder() {
    let p = Project::new();
    std::fs::copy(
        repo().join("pipelines/quickstart.yaml"),
        p.path().join("pipelines/quickstart.yaml"),
    )
    .unwrap();
    let inside = p.path().join("pipelines");
    let o = distill(&inside, &["pipeline", "validate", "quickstart.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = distill(
        &inside,
        &[
            "pipeline",
            "run",
            "quickstart.yaml",
            "--no-progress",
            "--index-range",
            "0-0",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(inside.join("results/quickstart").is_dir());

    // a nested folder finds data/ and prompts/ two levels up
    std::fs::create_dir_all(p.path().join("pipelines/variants/deep")).unwrap();
    std::fs::copy(
        repo().join("pipelines/quickstart.yaml"),
        p.path().join("pipelines/variants/deep/q.yaml"),
    )
    .unwrap();
    let o = distill(&inside, &["pipeline", "validate", "variants/deep/q.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn the_nearest_folder_wins_and_a_base_resolves_its_own_paths() {
    let p = Project::new();
    // the file's own folder has a data/arithmetic.csv of one row: it wins over the root's
    p.write(
        "pipelines/exp/data/arithmetic.csv",
        "id,question,answer\nonly,What is 1 + 1?,2\n",
    );
    let body = "name: near\nproblems: {path: data/arithmetic.csv}\nmodels:\n  m: {provider: sim, model: s, params: {max_tokens: 100}}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n";
    p.write("pipelines/exp/near.yaml", body);
    let o = distill(
        p.path(),
        &["pipeline", "validate", "pipelines/exp/near.yaml"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("1 problem(s)"),
        "{}",
        text(&o)
    );

    // a base in another folder: its `problems.path` is found from the base's folder
    p.write(
        "bases/data/tiny.csv",
        "id,question,answer\nt1,What is 2 + 2?,4\nt2,What is 3 + 3?,6\n",
    );
    p.write(
        "bases/base.yaml",
        "name: based\nproblems: {path: data/tiny.csv}\nmodels:\n  m: {provider: sim, model: s, params: {max_tokens: 100}}\n",
    );
    p.write(
        "pipelines/child.yaml",
        "extends: ../bases/base.yaml\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n",
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let child = p.path().join("pipelines/child.yaml");
    let o = distill(
        elsewhere.path(),
        &["pipeline", "validate", child.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 problem(s)"),
        "{}",
        text(&o)
    );

    // --set is the command line's: against the working directory
    let o = distill(
        p.path(),
        &[
            "pipeline",
            "validate",
            "pipelines/exp/near.yaml",
            "--set",
            "problems.path=bases/data/tiny.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 problem(s)"),
        "{}",
        text(&o)
    );
    let o = distill(
        elsewhere.path(),
        &[
            "pipeline",
            "validate",
            p.path().join("pipelines/exp/near.yaml").to_str().unwrap(),
            "--set",
            "problems.path=bases/data/tiny.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
