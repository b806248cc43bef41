//! Multiple-choice helpers: reading a choice letter out of a short answer, and the option list
//! `(A) … (B) …` out of a question.
//!
//! Owns: `as_letter` (A–J only, upper case) and `parse_choices`. Deliberately does not: search long
//! model text for the final choice (that is `extract`'s multiple-choice extractor) or compare
//! option texts (that is `equiv`).

use super::normalize::{
    remove_spacing_commands, strip_math_delimiters, unwrap_boxed, unwrap_text_commands,
};
use regex::Regex;
use std::sync::LazyLock;

static LETTER_ONLY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?i:(?:the\s+)?(?:correct\s+)?(?:final\s+)?(?:answer|option|choice)(?:\s+is)?\s*:?\s*)?\(?([A-J])\)?[.:]?$")
        .expect("static regex")
});
static LETTER_WITH_TEXT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(?:\(([A-J])\)|([A-J])[).:])\s+\S").expect("static regex"));

fn clean(s: &str) -> String {
    let mut t = s.trim().to_string();
    for _ in 0..3 {
        t = strip_math_delimiters(&t);
        t = unwrap_boxed(&t);
        t = unwrap_text_commands(&remove_spacing_commands(&t));
        t = t.replace("**", "").trim().to_string();
    }
    t
}

/// Only a letter (with optional parentheses, bold, box, `Answer:` prefix): `(B)`, `**B**`, `Answer: B`.
pub fn bare_letter(s: &str) -> Option<char> {
    if s.len() > 2000 {
        return None;
    }
    LETTER_ONLY.captures(&clean(s))?[1].chars().next()
}

/// `B`, `(B)`, `\boxed{B}`, `\text{(B)}`, `**B**`, `B.`, `Option B`, `(B) 10 eV` -> `B`.
pub fn as_letter(s: &str) -> Option<char> {
    if s.len() > 2000 {
        return None;
    }
    let t = clean(s);
    if let Some(c) = LETTER_ONLY.captures(&t) {
        return c[1].chars().next();
    }
    let c = LETTER_WITH_TEXT.captures(&t)?;
    c.get(1).or(c.get(2))?.as_str().chars().next()
}

static LINE_OPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^[ \t]*(?:\(([A-J])\)|([A-J])[).:])[ \t]*(\S.*?)[ \t]*\r?$")
        .expect("static regex")
});
static INLINE_MARK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\(([A-J])\)").expect("static regex"));

/// The options listed in a question, as (letter, text) in order A, B, C, …; empty when the question
/// does not list at least two consecutive options starting at A.
pub fn parse_choices(question: &str) -> Vec<(char, String)> {
    let from_lines: Vec<(char, String)> = LINE_OPTION
        .captures_iter(question)
        .filter_map(|c| {
            let l = c.get(1).or(c.get(2))?.as_str().chars().next()?;
            Some((l, c[3].to_string()))
        })
        .collect();
    let lines = consecutive_from_a(from_lines);
    if lines.len() >= 2 {
        return lines;
    }
    // Inline: `... (A) 1 (B) 2 (C) 3`.
    let marks: Vec<(char, usize, usize)> = INLINE_MARK
        .captures_iter(question)
        .filter_map(|c| {
            let m = c.get(0)?;
            Some((c[1].chars().next()?, m.start(), m.end()))
        })
        .collect();
    // Use the last run that starts at (A).
    let Some(start) = marks.iter().rposition(|m| m.0 == 'A') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, &(l, _, end)) in marks[start..].iter().enumerate() {
        if l as u32 != 'A' as u32 + k as u32 {
            break;
        }
        let stop = marks
            .get(start + k + 1)
            .map(|m| m.1)
            .unwrap_or(question.len());
        let text = question[end..stop].lines().next().unwrap_or("").trim();
        let text = text.trim_end_matches([',', ';']).trim();
        let text = text.strip_suffix(" or").unwrap_or(text).trim();
        out.push((l, text.to_string()));
    }
    if out.len() >= 2 { out } else { Vec::new() }
}

fn consecutive_from_a(v: Vec<(char, String)>) -> Vec<(char, String)> {
    // Keep the last run A, B, C, … (questions may quote lettered lists earlier).
    let Some(start) = v.iter().rposition(|(l, _)| *l == 'A') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, (l, t)) in v.into_iter().skip(start).enumerate() {
        if l as u32 != 'A' as u32 + k as u32 {
            break;
        }
        out.push((l, t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        for s in [
            "B",
            "(B)",
            "\\boxed{B}",
            "\\text{(B)}",
            "**B**",
            "B.",
            "Option B",
            "(B) 10 eV",
            "$\\textbf{B}$",
            "B) 4",
        ] {
            assert_eq!(as_letter(s), Some('B'), "{s}");
        }
        for s in ["b", "K", "BC", "Because", "", "12", "(1,2)"] {
            assert_eq!(as_letter(s), None, "{s}");
        }
    }

    #[test]
    fn choices_on_lines_and_inline() {
        let q = "Which?\n\nChoices:\n(A) 10^-4 eV\n(B) 10^-11 eV\n(C) 10^-9 eV\n(D) 10^-8 eV";
        let c = parse_choices(q);
        assert_eq!(c.len(), 4);
        assert_eq!(c[1], ('B', "10^-11 eV".to_string()));
        let c = parse_choices("What is 1+1? (A) 1 (B) 2 (C) 3");
        assert_eq!(
            c,
            vec![('A', "1".into()), ('B', "2".into()), ('C', "3".into())]
        );
        let c = parse_choices("Pick:\nA. $\\frac{1}{2}$\nB. $2$\n");
        assert_eq!(c[0], ('A', "$\\frac{1}{2}$".to_string()));
        assert!(parse_choices("Compute 2+2.").is_empty());
        assert!(parse_choices("Part (A) only").is_empty());
    }
}
