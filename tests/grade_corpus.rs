//! Runs the hand-written grading corpus `tests/data/grade_corpus.tsv` and reports every failing
//! case by line (it does not stop at the first). Columns: mode, input, truth, expect (T/F),
//! extracted (expected extraction, `NONE`, or `-`), question (`-` or text), note. A newline
//! inside a field is written `⏎`.

use distill::grade::{
    Compare, ExtractOptions, Extractor, GradeContext, check_extractor, equivalent, extract,
};

fn field(s: &str) -> String {
    s.replace('⏎', "\n")
}

fn compare_mode(s: &str) -> Result<(Compare, Option<f64>), String> {
    let (name, tol) = match s.split_once('@') {
        Some((n, t)) => (
            n,
            Some(
                t.parse::<f64>()
                    .map_err(|e| format!("bad tolerance {t:?}: {e}"))?,
            ),
        ),
        None => (s, None),
    };
    let cmp = match name {
        "exact" => Compare::Exact,
        "numeric" => Compare::Numeric,
        "math" => Compare::Math,
        "mc" => Compare::Mc,
        other => return Err(format!("unknown compare mode {other:?}")),
    };
    Ok((cmp, tol))
}

fn extractor(s: &str) -> Result<Extractor, String> {
    Ok(match s {
        "boxed" => Extractor::Boxed,
        "multiple_choice" => Extractor::MultipleChoice,
        "final_answer" => Extractor::FinalAnswer,
        "last_number" => Extractor::LastNumber,
        other => match other.strip_prefix("regex:") {
            Some(p) => Extractor::Regex(p.to_string()),
            None => return Err(format!("unknown extractor {other:?}")),
        },
    })
}

/// Checks one corpus row; Err describes the failure.
fn run_case(cols: &[&str]) -> Result<(), String> {
    let [mode, input, truth, expect, extracted, question, _note] = cols else {
        return Err(format!(
            "expected 7 tab-separated columns, got {}",
            cols.len()
        ));
    };
    let (input, truth, question) = (field(input), field(truth), field(question));
    let expect = match *expect {
        "T" => true,
        "F" => false,
        other => return Err(format!("expect must be T or F, got {other:?}")),
    };
    let (ex, cmp) = match mode.rsplit_once('>') {
        Some((e, c)) => (Some(extractor(e)?), c),
        None => (None, *mode),
    };
    let (cmp, rel_tol) = compare_mode(cmp)?;
    let ctx = GradeContext {
        question: (question != "-").then_some(question.as_str()),
        rel_tol,
    };
    let answer = match &ex {
        Some(e) => {
            check_extractor(e)?;
            let got = extract(e, &input, &ExtractOptions::default());
            let want = match *extracted {
                "-" => None,
                "NONE" => Some(None),
                s => Some(Some(field(s))),
            };
            if let Some(want) = want
                && want != got
            {
                return Err(format!("extracted {got:?}, expected {want:?}"));
            }
            got
        }
        None => Some(input.clone()),
    };
    let verdict = match &answer {
        Some(a) => equivalent(cmp, a, &truth, &ctx)?,
        None => false,
    };
    if verdict != expect {
        return Err(format!(
            "graded {verdict}, expected {expect} (answer {answer:?} vs truth {truth:?})"
        ));
    }
    Ok(())
}

#[test]
fn grade_corpus_all_cases() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/grade_corpus.tsv");
    let text = std::fs::read_to_string(path).expect("read corpus");
    let mut total = 0;
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        total += 1;
        let cols: Vec<&str> = line.split('\t').collect();
        if let Err(e) = run_case(&cols) {
            failures.push(format!("grade_corpus.tsv:{}: {e}\n    {line}", i + 1));
        }
    }
    println!(
        "grade corpus: {total} cases, {} passed, {} failed",
        total - failures.len(),
        failures.len()
    );
    assert!(total >= 200, "corpus has only {total} cases");
    assert!(
        failures.is_empty(),
        "{} of {total} corpus cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
