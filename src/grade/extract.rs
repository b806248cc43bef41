//! Pulling the final answer out of a model's text.
//!
//! Owns: the answer part (text after the LAST `</think>`), the full-text fallback, and one
//! function per extractor: last `\boxed{..}`/`\fbox{..}` with any brace nesting, the final
//! multiple-choice statement, the `Final Answer:` line, a user regex, and (opt-in only) the last
//! number. Deliberately does not: normalize or compare answers (`normalize`/`equiv`), look at the
//! prompt, or guess: when nothing is found the result is `None`, and no extractor falls back
//! to another one.

use super::choices::{as_letter, bare_letter};
use super::normalize::matching_brace;
use super::{ExtractOptions, Extractor};
use regex::{Regex, RegexBuilder};
use std::sync::LazyLock;

/// Upper bound on a user regex's compiled size (guards against pathological patterns).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The text after the last `</think>`, or all of `text` when there is no tag.
pub fn answer_part(text: &str) -> &str {
    match text.rfind("</think>") {
        Some(i) => &text[i + "</think>".len()..],
        None => text,
    }
}

pub fn extract(ex: &Extractor, text: &str, opts: &ExtractOptions) -> Option<String> {
    if *ex == Extractor::OriginalDefault {
        // the original read the whole text, thinking included, with no answer-part preference
        return extract_in(ex, text);
    }
    let part = answer_part(text);
    if let Some(a) = extract_in(ex, part) {
        return Some(a);
    }
    if opts.fallback_full_text && part.len() != text.len() {
        return extract_in(ex, text);
    }
    None
}

fn extract_in(ex: &Extractor, s: &str) -> Option<String> {
    let r = match ex {
        Extractor::Boxed => last_boxed(s),
        // no letter at all: the last boxed text, which `compare: mc` maps to its option
        Extractor::MultipleChoice => last_choice(s).or_else(|| last_boxed(s)),
        Extractor::FinalAnswer => final_answer_line(s),
        Extractor::LastNumber => last_number(s),
        Extractor::OriginalDefault => original_default(s),
        Extractor::Regex(p) => last_regex_match(&compile(p).ok()?, s),
    }?;
    let r = r.trim();
    (!r.is_empty()).then(|| r.to_string())
}

fn compile(p: &str) -> Result<Regex, String> {
    if p.is_empty() {
        return Err("extract.regex is empty".into());
    }
    RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("extract.regex {p:?} is not a valid regex: {e}"))
}

pub fn check_extractor(ex: &Extractor) -> Result<(), String> {
    match ex {
        Extractor::Regex(p) => {
            let r = compile(p)?;
            if r.is_match("") {
                return Err(format!(
                    "extract.regex {p:?} matches the empty string, so it would extract empty answers; \
                     require at least one character, e.g. (\\d+) instead of (\\d*)"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Start offsets of every `\boxed` / `\fbox` command (not `\boxedfoo`).
fn boxed_starts(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for cmd in ["\\boxed", "\\fbox"] {
        for (i, _) in s.match_indices(cmd) {
            let end = i + cmd.len();
            if !s[end..].starts_with(|c: char| c.is_ascii_alphabetic()) {
                out.push((i, end));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The argument after a `\boxed` ending at byte `end`: `{...}` (balanced) or one token (`\boxed 5`).
fn boxed_argument(s: &str, end: usize) -> Option<String> {
    let rest = &s[end..];
    let ws = rest.len() - rest.trim_start().len();
    let at = end + ws;
    let rest = &s[at..];
    if rest.starts_with('{') {
        let close = matching_brace(s, at)?;
        return Some(s[at + 1..close - 1].trim().to_string());
    }
    if ws == 0 && !rest.starts_with('\\') {
        return None;
    }
    let tok: String = if let Some(cmd) = rest.strip_prefix('\\') {
        let name: String = cmd
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        format!("\\{name}")
    } else {
        rest.chars()
            .take_while(|c| !c.is_whitespace() && !matches!(c, '$' | '\\' | '}'))
            .collect()
    };
    let tok = tok.trim_end_matches(['.', ',', ';']);
    (!tok.is_empty() && tok != "\\").then(|| tok.to_string())
}

/// Last complete, non-empty `\boxed{..}` (an unclosed one at a truncation point is skipped).
pub fn last_boxed(s: &str) -> Option<String> {
    boxed_starts(s)
        .into_iter()
        .rev()
        .find_map(|(_, end)| boxed_argument(s, end).filter(|a| !a.trim().is_empty()))
}

static CHOICE_STATEMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i:\banswer\b|\b(?:correct|right|best|final)\s+(?:option|choice)\b|\b(?:i\s+)?(?:choose|select|pick)\b)(?:\s*\*\*)?(?:\s+(?i:is|would\s+be|should\s+be|must\s+be|will\s+be))?(?:\s+(?i:option|choice))?\s*\*{0,2}\s*[:：]?(?:\s*(?:\*\*|\$|\\textbf\{|\\text\{|\\boxed\{|\\\(|\\mathrm\{))*\s*(\(?)([A-J])(\)?)",
    )
    .expect("static regex")
});

/// True when a letter found in prose is really a choice (`answer is A.`), not a word (`answer is I think`).
fn letter_is_choice(s: &str, letter: char, parenthesized: bool, after: usize) -> bool {
    let rest = &s[after..];
    if rest.starts_with(|c: char| c.is_alphanumeric()) {
        return false;
    }
    if parenthesized || !matches!(letter, 'A' | 'I') {
        return true;
    }
    let next_word: String = rest
        .trim_start_matches([' ', '\t'])
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect();
    if next_word.is_empty() || !next_word.starts_with(|c: char| c.is_lowercase()) {
        return true;
    }
    letter == 'A'
        && [
            "because", "since", "as", "which", "and", "with", "here", "for",
        ]
        .contains(&next_word.as_str())
}

/// The final multiple-choice statement: the latest of `answer is (B)`, `**Answer:** B`,
/// `\boxed{B}` / `\boxed{\text{(B)}}`, or a lone letter on the last line.
pub fn last_choice(s: &str) -> Option<String> {
    let mut best: Option<(usize, char)> = None;
    let mut consider = |pos: usize, l: char| {
        if best.is_none_or(|(p, _)| pos >= p) {
            best = Some((pos, l));
        }
    };
    for (start, end) in boxed_starts(s) {
        if let Some(l) = boxed_argument(s, end).and_then(|a| as_letter(&a)) {
            consider(start, l);
        }
    }
    for c in CHOICE_STATEMENT.captures_iter(s) {
        let (Some(m), Some(l)) = (c.get(0), c.get(2).and_then(|m| m.as_str().chars().next()))
        else {
            continue;
        };
        let paren = !c[1].is_empty() && c.get(3).is_some_and(|m| !m.as_str().is_empty());
        if letter_is_choice(s, l, paren, m.end()) {
            consider(m.start(), l);
        }
    }
    for c in FINAL_COLON
        .captures_iter(s)
        .chain(CORRECT_LOWER.captures_iter(s))
    {
        if let (Some(m), Some(l)) = (c.get(0), c[1].chars().next()) {
            consider(m.start(), l.to_ascii_uppercase());
        }
    }
    let trimmed = s.trim_end();
    if let Some(last) = trimmed.lines().last() {
        let pos = trimmed.len() - last.len();
        if let Some(l) = bare_letter(last) {
            consider(pos, l);
        } else if restates_option(last)
            && let Some(l) = as_letter(last)
        {
            // a last line that restates an option: `(B) 11`
            consider(pos, l);
        }
    }
    best.map(|(_, l)| l.to_string())
}

/// `(B) 11`, `**(C) 10^-4 eV**`: a parenthesized letter and a short option text (at most four
/// words), not a sentence that starts by mentioning an option.
fn restates_option(line: &str) -> bool {
    let t = line.trim().trim_matches('*').trim();
    let Some(rest) = t.strip_prefix('(').and_then(|r| r.get(2..)) else {
        return false;
    };
    t.as_bytes().get(2) == Some(&b')') && rest.split_whitespace().count() <= 4 && rest.len() <= 40
}

/// `Final: **(B)**`, `Final: B` (a `Final:` label, not `Final Answer`, which the statement
/// pattern covers).
static FINAL_COLON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:\bfinal)\s*[:：]\s*\**\s*\(?([A-J])\)?\**(?:[\s.!]|$)").expect("static regex")
});
/// `the correct answer is b` with a lower-case letter ending the sentence (a lone lower-case
/// letter after a plain `answer is` may be a variable, so only `correct answer|option|choice`).
static CORRECT_LOWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)\bcorrect\s+(?:answer|option|choice)\s+is\s*[:：]?\s*\(?([a-j])\)?[ \t]*[.!]?[ \t]*$")
        .expect("static regex")
});

static FINAL_ANSWER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)final\s+answer(?:\s+is)?\s*\**\s*[:：]?\s*\**").expect("static regex")
});

/// The rest of the last `Final Answer:` line (or the next non-empty line when it is only a
/// heading like `**Final Answer**`); the boxed content when it holds a `\boxed`.
pub fn final_answer_line(s: &str) -> Option<String> {
    let m = FINAL_ANSWER.find_iter(s).last()?;
    let after = &s[m.end()..];
    let mut lines = after.lines();
    let first = lines.next().unwrap_or("").trim();
    let line = if first.trim_matches(['*', ':', ' ']).is_empty() {
        lines.find(|l| !l.trim().is_empty()).unwrap_or("").trim()
    } else {
        first
    };
    if line.contains("\\boxed") || line.contains("\\fbox") {
        return last_boxed(line);
    }
    Some(clean_answer_line(line))
}

/// `$42$. I hope it is correct.` -> `42`; `**17**.` -> `17`; `\(x\)` -> `x`.
fn clean_answer_line(line: &str) -> String {
    let mut t = line.trim().trim_matches('*').trim();
    if let Some(r) = t.strip_prefix('$') {
        let r = r.trim_start_matches('$');
        if let Some(end) = r.find('$') {
            return r[..end].trim().to_string();
        }
        t = r;
    }
    if let Some(r) = t.strip_prefix("\\(")
        && let Some(end) = r.find("\\)")
    {
        return r[..end].trim().to_string();
    }
    let t = t.trim_end_matches(['.', '$', '*', ' ']);
    t.trim_start_matches('$').trim().to_string()
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?").expect("static regex")
});

/// The last number in the text (opt-in only; `1,000` kept whole; a `-` glued to a preceding
/// word or digit is a hyphen, not a sign).
static PAREN_INT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\\(\s*(\d+)\s*\\\)").expect("static regex"));
static WHOLE_INT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\d+\b").expect("static regex"));

/// The original tool's `default`: the last `\boxed{..}`, else the last `\(N\)` with N a
/// whole number, else the last whole number in the text.
pub fn original_default(s: &str) -> Option<String> {
    if let Some(b) = last_boxed(s) {
        return Some(b);
    }
    if let Some(c) = PAREN_INT.captures_iter(s).last() {
        return Some(c[1].to_string());
    }
    WHOLE_INT
        .find_iter(s)
        .last()
        .map(|m| m.as_str().to_string())
}

pub fn last_number(s: &str) -> Option<String> {
    let m = NUMBER.find_iter(s).last()?;
    let t = m.as_str();
    if let Some(unsigned) = t.strip_prefix('-') {
        let prev = s[..m.start()].chars().last();
        if prev.is_some_and(|c| c.is_alphanumeric() || c == ')') {
            return Some(unsigned.to_string());
        }
    }
    Some(t.to_string())
}

/// First participating capture group of the last match, or the whole match when there is no group.
pub fn last_regex_match(re: &Regex, s: &str) -> Option<String> {
    let c = re.captures_iter(s).last()?;
    if re.captures_len() == 1 {
        return Some(c.get(0)?.as_str().to_string());
    }
    (1..c.len())
        .find_map(|i| c.get(i))
        .map(|m| m.as_str().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(e: &Extractor, s: &str) -> Option<String> {
        extract(e, s, &ExtractOptions::default())
    }

    #[test]
    fn boxed_nesting_and_forms() {
        assert_eq!(
            last_boxed("x \\boxed{\\frac{1}{\\sqrt{2}}} y").as_deref(),
            Some("\\frac{1}{\\sqrt{2}}")
        );
        assert_eq!(
            last_boxed("\\boxed{1} then \\boxed{2}").as_deref(),
            Some("2")
        );
        assert_eq!(last_boxed("$\\boxed 5$.").as_deref(), Some("5"));
        assert_eq!(last_boxed("\\fbox{7}").as_deref(), Some("7"));
        assert_eq!(
            last_boxed("\\boxed{\\{1,2\\}}").as_deref(),
            Some("\\{1,2\\}")
        );
        assert_eq!(
            last_boxed("\\boxed{3} and \\boxed{\\frac{1}{").as_deref(),
            Some("3")
        );
        assert_eq!(last_boxed("\\boxed{}"), None);
        assert_eq!(last_boxed("\\boxedx{3}"), None);
        assert_eq!(last_boxed("no answer"), None);
    }

    #[test]
    fn answer_part_first_then_fallback() {
        let t = "<think>maybe \\boxed{1}</think>So \\boxed{2}.";
        assert_eq!(ex(&Extractor::Boxed, t).as_deref(), Some("2"));
        let t = "<think>maybe \\boxed{1}</think>So it is two.";
        assert_eq!(ex(&Extractor::Boxed, t).as_deref(), Some("1"));
        let no = ExtractOptions {
            fallback_full_text: false,
        };
        assert_eq!(extract(&Extractor::Boxed, t, &no), None);
    }

    #[test]
    fn multiple_choice_final_statement_wins() {
        let mc = Extractor::MultipleChoice;
        assert_eq!(
            ex(&mc, "Option (A) fails. The answer is (B).").as_deref(),
            Some("B")
        );
        assert_eq!(ex(&mc, "**Answer:** C").as_deref(), Some("C"));
        assert_eq!(ex(&mc, "The correct answer is (C)").as_deref(), Some("C"));
        assert_eq!(ex(&mc, "so \\boxed{\\text{(D)}}").as_deref(), Some("D"));
        assert_eq!(
            ex(&mc, "I considered (A) and (B).\n\nB").as_deref(),
            Some("B")
        );
        assert_eq!(ex(&mc, "The answer is I think wrong"), None);
        assert_eq!(
            ex(&mc, "The answer is A because it fits.").as_deref(),
            Some("A")
        );
        assert_eq!(ex(&mc, "The answer is A.").as_deref(), Some("A"));
        assert_eq!(ex(&mc, "The answer is J").as_deref(), Some("J"));
        assert_eq!(ex(&mc, "nothing here"), None);
    }

    #[test]
    fn final_answer_lines() {
        let fa = Extractor::FinalAnswer;
        assert_eq!(ex(&fa, "Final Answer: 42.").as_deref(), Some("42"));
        assert_eq!(
            ex(
                &fa,
                "Final Answer: The final answer is $42$. I hope it is correct."
            )
            .as_deref(),
            Some("42")
        );
        assert_eq!(
            ex(&fa, "**Final Answer**\n\\boxed{2927}").as_deref(),
            Some("2927")
        );
        assert_eq!(
            ex(&fa, "Final answer: $\\frac{1}{2}$").as_deref(),
            Some("\\frac{1}{2}")
        );
        assert_eq!(ex(&fa, "no"), None);
    }

    #[test]
    fn original_default_prefers_boxed_then_paren_then_last_integer() {
        let o = ExtractOptions::default();
        let d = Extractor::OriginalDefault;
        assert_eq!(ex(&d, "so 12 \\boxed{7} then 9").as_deref(), Some("7"));
        assert_eq!(ex(&d, "is \\( 42 \\) not 5").as_deref(), Some("42"));
        assert_eq!(
            ex(&d, "tried 3, then 1,000 and x2 or 17.").as_deref(),
            Some("17")
        );
        assert_eq!(ex(&d, "no digits"), None);
        // the whole text counts, thinking included: a boxed answer inside it beats a later number
        assert_eq!(
            extract(&d, "\\boxed{5}</think> I said 6", &o).as_deref(),
            Some("5")
        );
    }

    #[test]
    fn regex_and_last_number() {
        let r = Extractor::Regex("Answer: (\\d+)".into());
        assert_eq!(ex(&r, "Answer: 1\nAnswer: 22").as_deref(), Some("22"));
        let r = Extractor::Regex("\\d+".into());
        assert_eq!(ex(&r, "a 1 b 22").as_deref(), Some("22"));
        let r = Extractor::Regex("x=(\\d+)|y=(\\d+)".into());
        assert_eq!(ex(&r, "x=1 y=2").as_deref(), Some("2"));
        assert_eq!(
            ex(&Extractor::LastNumber, "is 1,000 or 5-3").as_deref(),
            Some("3")
        );
        assert_eq!(
            ex(&Extractor::LastNumber, "it is -2.5.").as_deref(),
            Some("-2.5")
        );
        assert_eq!(ex(&Extractor::LastNumber, "none"), None);
    }

    #[test]
    fn check_extractor_messages() {
        assert!(check_extractor(&Extractor::Boxed).is_ok());
        assert!(check_extractor(&Extractor::Regex("Answer: (\\d+)".into())).is_ok());
        assert!(check_extractor(&Extractor::Regex("(".into())).is_err());
        assert!(check_extractor(&Extractor::Regex("".into())).is_err());
        assert!(check_extractor(&Extractor::Regex("(\\d*)".into())).is_err());
    }
}
