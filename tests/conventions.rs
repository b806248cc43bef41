//! Command-line conventions, seen from the binary: shell completions that the shell parses,
//! kebab-case flags with the underscore spellings still accepted, and repeated warnings
//! summarized in one line (all of them with --verbose).

use std::path::Path;
use std::process::{Command, Output};

fn distill(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .current_dir(cwd)
        .args(args)
        .env_remove("DISTILL_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run distill")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bash_completions_parse_and_name_the_kebab_flags() {
    let dir = tempfile::tempdir().unwrap();
    let o = distill(dir.path(), &["completions", "bash"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let script = String::from_utf8(o.stdout).unwrap();
    assert!(script.contains("--question-ids"), "no --question-ids");
    assert!(script.contains("completions"), "no completions subcommand");
    assert!(
        !script.contains("--question_ids"),
        "the underscore aliases are hidden from completion"
    );
    let file = dir.path().join("distill.bash");
    std::fs::write(&file, &script).unwrap();
    match Command::new("bash").arg("-n").arg(&file).output() {
        Ok(b) => assert!(
            b.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&b.stderr)
        ),
        Err(e) => eprintln!("skipped bash -n: no bash ({e})"),
    }
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_one_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let o = distill(dir.path(), &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let s = String::from_utf8(o.stdout).unwrap();
        assert!(s.contains("question-ids"), "{shell}: no question-ids");
    }
    let o = distill(dir.path(), &["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
}

#[test]
fn the_man_page_is_roff_naming_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let o = distill(dir.path(), &["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = String::from_utf8(o.stdout).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH distill"),
        "{page}"
    );
    for want in ["pipeline", "completions", "data"] {
        assert!(page.contains(want), "man page lacks {want}");
    }
}

#[test]
fn help_shows_kebab_case() {
    let dir = tempfile::tempdir().unwrap();
    let o = distill(dir.path(), &["pipeline", "run", "--help"]);
    let help = String::from_utf8(o.stdout).unwrap();
    for flag in [
        "--question-ids",
        "--exclude-question-ids",
        "--index-range",
        "--max-cost",
        "--load-run",
        "--dashboard-port",
        "--results-format",
    ] {
        assert!(help.contains(flag), "help lacks {flag}");
    }
    assert!(
        !help.contains("_ids"),
        "an underscore spelling shows in help"
    );
}

/// A temporary project whose problem set has `groups` pairs of problems with the same question.
fn project_with_duplicates(groups: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut csv = String::from("id,question,answer\n");
    for g in 0..groups {
        csv.push_str(&format!("p{g}a,What is {g} + 1?,{}\n", g + 1));
        csv.push_str(&format!("p{g}b,What is {g} + 1?,{}\n", g + 1));
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/dup.csv"), csv).unwrap();
    std::fs::create_dir_all(dir.path().join("prompts/reason")).unwrap();
    std::fs::copy(
        repo.join("prompts/reason/default.hbs"),
        dir.path().join("prompts/reason/default.hbs"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "name: dup\nproblems: {path: data/dup.csv}\nmodels:\n  m: {provider: sim, model: s, params: {max_tokens: 100}}\nnodes:\n  a: {kind: reason, model: m, prompt: reason/default}\n",
    )
    .unwrap();
    dir
}

#[test]
fn repeated_warnings_are_one_line_unless_verbose() {
    let dir = project_with_duplicates(15);
    let o = distill(dir.path(), &["pipeline", "validate", "p.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("same question"))
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("15 groups"), "{err}");
    assert!(lines[0].contains("--verbose"), "{err}");

    let o = distill(dir.path(), &["pipeline", "validate", "p.yaml", "--verbose"]);
    let err = stderr(&o);
    let n = err.lines().filter(|l| l.contains("same question")).count();
    assert_eq!(n, 15, "{err}");

    // a few are shown as they are
    let dir = project_with_duplicates(2);
    let o = distill(dir.path(), &["pipeline", "validate", "p.yaml"]);
    let err = stderr(&o);
    let n = err.lines().filter(|l| l.contains("same question")).count();
    assert_eq!(n, 2, "{err}");
}

#[test]
fn underscore_flags_still_work() {
    let dir = project_with_duplicates(2);
    for flag in ["--question_ids", "--question-ids"] {
        let o = distill(dir.path(), &["pipeline", "validate", "p.yaml", flag, "p0a"]);
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("1 problem(s)"), "{flag}: {out}");
    }
}
