//! A mutational fuzz of what users hand to `validate`, `plan` and `grade`, on stable Rust
//! (proptest generates the inputs; `cargo fuzz` would need nightly). It is `#[ignore]`d, so
//! CI never runs it; run it for a while by hand:
//!
//! ```sh
//! DISTILL_FUZZ_SECS=600 cargo test --release --test fuzz -- --ignored --nocapture
//! ```
//!
//! Each round takes one of the repository's pipelines (rewritten to the small problem set
//! and the simulator), applies a few mutations (delete, insert a token from a dictionary of
//! YAML, reference, condition and template syntax and extreme numbers, duplicate or swap
//! lines), adds random `--set` overrides and filters, and loads it in process; a pipeline
//! that loads is drawn as text and DOT and, every few rounds, planned against an empty
//! cache. Grading gets random LaTeX-ish answers for every extractor and comparison, and
//! `distill grade` gets mutated results files. A panic is a finding: its input is written
//! to `target/fuzz-findings/` and counted; the test fails if there is any. Deep recursion
//! would abort the process instead, which is a finding too.

use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use distill::grade::{Compare, ExtractOptions, Extractor, GradeContext};
use distill::spec::LoadOptions;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    ",",
    "\n",
    "\n  ",
    "  ",
    "- ",
    "null",
    "~",
    "true",
    "-1",
    "0",
    "1e309",
    "4294967296",
    "18446744073709551616",
    "NaN",
    "-.inf",
    "\"",
    "'",
    "&a",
    "*a",
    "<<: *a",
    "kind: vote",
    "kind: grade",
    "kind: score",
    "kind: continue",
    "kind: extract",
    "kind: summarize",
    "repeat: 3",
    "repeat: 0",
    "start: 4294967295",
    "when: ",
    "not ",
    "(",
    ")",
    " and ",
    " or ",
    "previous.",
    "all.",
    ".correct",
    ".text",
    "attempt_0",
    "summary",
    "input: ",
    "vars: {s: all.summary}",
    "after: [a]",
    "round: 7",
    "strategy: random_k",
    "k: 0",
    "extract: {regex: \"(\"}",
    "compare: math",
    "{{",
    "}}",
    "{{#each x}}",
    "{{/each}}",
    "{{> reason/default}}",
    "samples: 0",
    "samples: 99999",
    "prompt: ../x",
    "model: reasoner",
    "é",
    "\u{0}",
    "\t",
    "x-shared: ",
    "extends: x.yaml",
    "#",
];

const SETS: &[&str] = &[
    "samples=3",
    "samples=0",
    "name=a/b",
    "models.reasoner.params.temperature=-1",
    "nodes.rounds=null",
    "models.reasoner.sim=null",
    "models.reasoner.price=null",
    "nodes.attempt_0.when=not attempt_0.correct",
    "grade.compare=llm_judge",
    "grade=null",
    "models.reasoner.continuation.max_continuations=5",
    "nodes.rounds.repeat=2",
    "problems.index_range=0-2",
    "problems.index_range=5-1",
    "seed=-1",
    "models.reasoner.provider=openai",
    "nodes.x.kind=reason",
    "models.reasoner.params.seed=1",
];

const LATEX: &[&str] = &[
    "\\boxed{",
    "}",
    "{",
    "\\frac",
    "12",
    "3",
    "-",
    "+",
    "^",
    "(",
    ")",
    "[",
    "]",
    "\\sqrt",
    ",",
    ".",
    "\\pi",
    "x",
    "=",
    "\\left(",
    "\\right)",
    "\\infty",
    "e",
    "\\cdot",
    "%",
    "\\text{",
    "\\dfrac",
    "0.5",
    "1/2",
    "A",
    "(B)",
    "Final answer: ",
    "</think>",
    "\\{",
    "\\}",
    "\\cup",
    "\\le",
    "i",
    "!",
    "\\times",
    "1,000",
    "\\circ",
    "\\$",
    "\\mathrm{",
    "\\\\",
    " ",
    "99999999999999999999",
];

#[derive(Debug, Clone)]
enum Op {
    Delete(usize, usize),
    Insert(usize, usize),
    DupLine(usize),
    SwapLines(usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Op::Delete(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, t)| Op::Insert(a, t)),
        any::<usize>().prop_map(Op::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::SwapLines(a, b)),
    ]
}

fn mutate(seed: &str, ops: &[Op]) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for o in ops {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
        match *o {
            Op::Delete(a, n) => {
                let i = at(a, s.len());
                let j = (i + n).min(s.len());
                s.drain(i..j);
            }
            Op::Insert(a, t) => {
                let i = at(a, s.len());
                let tok: Vec<char> = TOKENS[t % TOKENS.len()].chars().collect();
                s.splice(i..i, tok);
            }
            Op::DupLine(a) | Op::SwapLines(a, _) => {
                let text: String = s.iter().collect();
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let i = a % lines.len();
                match *o {
                    Op::DupLine(_) => lines.insert(i, lines[i]),
                    Op::SwapLines(_, b) => {
                        let j = b % lines.len();
                        lines.swap(i, j);
                    }
                    _ => {}
                }
                s = (lines.join("\n") + "\n").chars().collect();
            }
        }
    }
    s.into_iter().collect()
}

/// The repository's pipelines, pointed at the small problem set and the simulator.
fn seeds(repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["pipelines", "pipelines/variants"] {
        let Ok(rd) = std::fs::read_dir(repo.join(dir)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
        {
            let text = std::fs::read_to_string(&f).unwrap();
            let text = text
                .replace("data/aime_2024.csv", "data/arithmetic.csv")
                .replace("provider: fireworks", "provider: sim")
                .replace("provider: openai-compatible", "provider: sim");
            let rel = f.strip_prefix(repo).unwrap().display().to_string();
            out.push((rel, text));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[derive(Default)]
struct Figures {
    validate: u64,
    valid: u64,
    plan: u64,
    grade: u64,
    regrade: u64,
    panics: u64,
}

struct Fuzz {
    project: PathBuf,
    seeds: Vec<(String, String)>,
    results: String,
    findings: PathBuf,
    figures: Figures,
    rt: tokio::runtime::Runtime,
}

impl Fuzz {
    fn finding(&mut self, what: &str, input: &str) {
        self.figures.panics += 1;
        std::fs::create_dir_all(&self.findings).unwrap();
        let f = self
            .findings
            .join(format!("{what}-{}.txt", self.figures.panics));
        std::fs::write(&f, input).unwrap();
        let _ = writeln!(
            std::io::stderr(),
            "PANIC in {what}: input saved to {}",
            f.display()
        );
    }

    fn pipeline(&mut self, seed: usize, ops: &[Op], sets: &[usize], range: Option<(u8, u8)>) {
        let (rel, text) = &self.seeds[seed % self.seeds.len()];
        let text = mutate(text, ops);
        let path = self.project.join(rel).with_file_name(".fuzz.yaml");
        std::fs::write(&path, &text).unwrap();
        let mut opts = LoadOptions {
            sets: sets
                .iter()
                .map(|i| SETS[i % SETS.len()].to_string())
                .collect(),
            ..Default::default()
        };
        if let Some((a, b)) = range {
            opts.filters.index_range = Some(format!("{a}-{b}"));
        }
        self.figures.validate += 1;
        let plan_now = self.figures.validate.is_multiple_of(8);
        let cache = self.project.join("cache");
        let results = self.project.join("results");
        let rt = &self.rt;
        let r = catch_unwind(AssertUnwindSafe(|| {
            let Ok(p) = distill::spec::load(&path, &opts) else {
                return (false, false);
            };
            let _ = distill::graph::to_text(&p);
            let _ = distill::graph::to_dot(&p);
            if !plan_now || p.problems.len() * p.nodes.len() * p.spec.samples as usize > 2000 {
                return (true, false);
            }
            let ro = distill::exec::RunOptions {
                concurrency: 4,
                offline: true,
                cache_dir: cache.clone(),
                results_root: results.clone(),
                verbose: false,
                command_line: Vec::new(),
                progress: false,
                max_cost: None,
                load_initial_reasoning: None,
                load_run: None,
                original_results: false,
                dashboard: None,
                load: None,
                resume: None,
                cache_remote: None,
                batch: false,
                cancel_batches: false,
            };
            let _ = rt.block_on(distill::cli::plan::run(p, &ro));
            (true, true)
        }));
        match r {
            Ok((valid, planned)) => {
                self.figures.valid += u64::from(valid);
                self.figures.plan += u64::from(planned);
            }
            Err(_) => {
                let input = format!(
                    "# sets: {:?} filters: {:?}\n{text}",
                    opts.sets, opts.filters
                );
                self.finding("validate", &input)
            }
        }
    }

    fn grade(&mut self, a: &[usize], b: &[usize]) {
        let pick = |v: &[usize]| v.iter().map(|i| LATEX[i % LATEX.len()]).collect::<String>();
        let (x, y) = (pick(a), pick(b));
        self.figures.grade += 1;
        let r = catch_unwind(|| {
            for ex in [
                Extractor::Boxed,
                Extractor::MultipleChoice,
                Extractor::FinalAnswer,
                Extractor::LastNumber,
            ] {
                let _ = distill::grade::extract(&ex, &x, &ExtractOptions::default());
            }
            let ctx = GradeContext {
                question: Some("(A) 1 (B) 2 (C) 3 (D) 4"),
                rel_tol: None,
            };
            for c in [Compare::Exact, Compare::Numeric, Compare::Math, Compare::Mc] {
                let _ = distill::grade::equivalent(c, &x, &y, &ctx);
            }
        });
        if r.is_err() {
            self.finding("grade", &format!("{x}\n---\n{y}"));
        }
    }

    fn regrade(&mut self, ops: &[Op]) {
        let text = mutate(&self.results, ops);
        let f = self.project.join("fuzz-results.json");
        std::fs::write(&f, &text).unwrap();
        self.figures.regrade += 1;
        let opts = distill::regrade::RegradeOptions {
            extract: Extractor::Boxed,
            compare: Compare::Math,
            fallback_full_text: true,
            rel_tol: None,
            out: Some(self.project.join("fuzz-regraded.json")),
        };
        if catch_unwind(|| distill::regrade::regrade_file(&f, &opts)).is_err() {
            self.finding("regrade", &text);
        }
    }
}

#[derive(Debug, Clone)]
enum Input {
    Pipeline(usize, Vec<Op>, Vec<usize>, Option<(u8, u8)>),
    Grade(Vec<usize>, Vec<usize>),
    Regrade(Vec<Op>),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (any::<usize>(), prop::collection::vec(op(), 0..8), prop::collection::vec(any::<usize>(), 0..3),
              prop::option::of((0u8..12, 0u8..12)))
            .prop_map(|(s, o, sets, r)| Input::Pipeline(s, o, sets, r)),
        3 => (prop::collection::vec(any::<usize>(), 0..40), prop::collection::vec(any::<usize>(), 0..20))
            .prop_map(|(a, b)| Input::Grade(a, b)),
        1 => prop::collection::vec(op(), 1..6).prop_map(Input::Regrade),
    ]
}

/// A finished run's results.json to mutate (one quickstart run on the simulator).
fn results_file(project: &Path) -> String {
    let bin = env!("CARGO_BIN_EXE_distill");
    let out = std::process::Command::new(bin)
        .current_dir(project)
        .args([
            "pipeline",
            "run",
            "pipelines/quickstart.yaml",
            "--no-progress",
            "--index_range",
            "0-2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = project.join("results/quickstart");
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::read_to_string(run.join("results.json")).unwrap()
}

#[test]
#[ignore = "a fuzz run: DISTILL_FUZZ_SECS=600 cargo test --release --test fuzz -- --ignored"]
fn fuzz_validate_plan_and_grade() {
    let secs: u64 = std::env::var("DISTILL_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().to_path_buf();
    copy_dir(&repo.join("prompts"), &project.join("prompts"));
    copy_dir(&repo.join("data"), &project.join("data"));
    let seeds = seeds(&repo);
    for (rel, text) in &seeds {
        let p = project.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let results = results_file(&project);
    // relative paths in the pipelines resolve against the project
    std::env::set_current_dir(&project).unwrap();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let worker = std::thread::Builder::new()
        .stack_size(8 << 20) // the binary's main thread, where validation runs
        .spawn(move || {
            let mut fuzz = Fuzz {
                project: project.clone(),
                seeds,
                results,
                findings: repo.join("target/fuzz-findings"),
                figures: Figures::default(),
                rt: tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .unwrap(),
            };
            let mut runner = TestRunner::new(Config {
                failure_persistence: None,
                ..Config::default()
            });
            let strategy = input();
            let deadline = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < deadline {
                let inp = strategy.new_tree(&mut runner).unwrap().current();
                match inp {
                    Input::Pipeline(s, o, sets, r) => fuzz.pipeline(s, &o, &sets, r),
                    Input::Grade(a, b) => fuzz.grade(&a, &b),
                    Input::Regrade(o) => fuzz.regrade(&o),
                }
            }
            fuzz.figures
        })
        .unwrap();
    let f = worker.join().unwrap();
    std::panic::set_hook(quiet);
    let _ = writeln!(
        std::io::stderr(),
        "fuzz: {secs} s: {} pipelines loaded ({} valid, {} planned), {} grading inputs, {} results files regraded; {} panic(s)",
        f.validate,
        f.valid,
        f.plan,
        f.grade,
        f.regrade,
        f.panics
    );
    drop(dir);
    assert_eq!(f.panics, 0, "panics found; inputs in target/fuzz-findings/");
}
