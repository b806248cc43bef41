//! The LLM-judge side of grading: the default prompt text and a strict parser of the judge's reply.
//!
//! Owns: `JUDGE_PROMPT` and `parse_judge_verdict`. Deliberately does not: render templates or
//! call a model (the engine does), or ever turn an unclear reply into a pass.

use regex::Regex;
use std::sync::LazyLock;

/// The default judge prompt as a handlebars template text using {{question}}, {{truth}}, {{answer}}; must ask for the VERDICT line.
pub const JUDGE_PROMPT: &str = "You are grading the final answer to a math or science problem.\n\
\n\
PROBLEM:\n\
{{question}}\n\
\n\
REFERENCE ANSWER:\n\
{{truth}}\n\
\n\
STUDENT'S FINAL ANSWER:\n\
{{answer}}\n\
\n\
Decide whether the student's final answer is mathematically equivalent to the reference answer \
(same value, same set of solutions, same choice). Ignore formatting, units written or omitted, \
and the order of elements in a set. Do not solve the problem again and do not give credit for \
partial work: only the final answer counts. If the student's answer is missing, ambiguous, or \
gives several different answers, it is incorrect.\n\
\n\
Explain briefly, then end your reply with exactly one line, either\n\
VERDICT: CORRECT\n\
or\n\
VERDICT: INCORRECT\n";

static VERDICT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bverdict\s*[:=]\s*(incorrect|correct)\b").expect("static regex")
});

/// Strict parse of an LLM judge's reply: expects a final line/verdict `VERDICT: CORRECT` or `VERDICT: INCORRECT`
/// (case-insensitive, allow surrounding markdown like ** **); anything else or both -> Err(message). Never a pass by default.
pub fn parse_judge_verdict(reply: &str) -> Result<bool, String> {
    // Markdown decoration may sit anywhere around the verdict: `**VERDICT:** CORRECT`, `` `VERDICT: CORRECT` ``.
    let plain: String = reply
        .chars()
        .filter(|c| !matches!(c, '*' | '_' | '`' | '#'))
        .collect();
    let mut found: Vec<bool> = Vec::new();
    for cap in VERDICT.captures_iter(&plain) {
        found.push(cap[1].eq_ignore_ascii_case("correct"));
    }
    match found.as_slice() {
        [] => Err(format!(
            "judge reply has no `VERDICT: CORRECT` / `VERDICT: INCORRECT` line: {:?}",
            shorten(reply)
        )),
        [first, rest @ ..] if rest.iter().all(|v| v == first) => Ok(*first),
        _ => Err(format!(
            "judge reply gives both verdicts (CORRECT and INCORRECT): {:?}",
            shorten(reply)
        )),
    }
}

fn shorten(s: &str) -> String {
    let t: String = s
        .chars()
        .rev()
        .take(200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if t.len() < s.len() {
        format!("...{t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_markdown_verdicts() {
        assert_eq!(
            parse_judge_verdict("Same value.\nVERDICT: CORRECT"),
            Ok(true)
        );
        assert_eq!(
            parse_judge_verdict("Differs.\nVERDICT: INCORRECT\n"),
            Ok(false)
        );
        assert_eq!(parse_judge_verdict("ok\n**VERDICT: CORRECT**"), Ok(true));
        assert_eq!(
            parse_judge_verdict("ok\n**VERDICT:** INCORRECT."),
            Ok(false)
        );
        assert_eq!(parse_judge_verdict("verdict: correct"), Ok(true));
        assert_eq!(parse_judge_verdict("## Verdict: Incorrect"), Ok(false));
    }

    #[test]
    fn rejects_missing_ambiguous_or_malformed() {
        assert!(parse_judge_verdict("").is_err());
        assert!(parse_judge_verdict("The answer is correct.").is_err());
        assert!(parse_judge_verdict("VERDICT: CORRECT\nVERDICT: INCORRECT").is_err());
        assert!(parse_judge_verdict("VERDICT: CORRECT or VERDICT: INCORRECT").is_err());
        assert!(parse_judge_verdict("VERDICT: NOT CORRECT").is_err());
        assert!(parse_judge_verdict("VERDICT: CORRECTLY done").is_err());
        assert!(parse_judge_verdict("VERDICT: maybe").is_err());
    }

    #[test]
    fn prompt_has_variables_and_asks_for_verdict() {
        for v in [
            "{{question}}",
            "{{truth}}",
            "{{answer}}",
            "VERDICT: CORRECT",
            "VERDICT: INCORRECT",
        ] {
            assert!(JUDGE_PROMPT.contains(v), "{v}");
        }
    }
}
