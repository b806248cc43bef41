//! Text-level clean-up of answers before they are compared: one small named function per rule.
//!
//! Owns: removing LaTeX decoration that does not change the value (math delimiters, `\boxed`,
//! spacing commands, `\left`/`\right`, `\text{..}`-style wrappers, trailing units, degrees,
//! percent and dollar signs, thousands separators, trailing periods, whitespace, `x =` prefixes)
//! and the light normalization used by `compare: numeric`. Deliberately does not: parse
//! structure (tuples/sets: `equiv`) or evaluate anything (`expr`); and it never turns a
//! comma inside a tuple into a thousands separator (`(1,2)` stays a pair).

use regex::Regex;
use std::sync::LazyLock;

/// Longest answer we normalize; longer strings are compared as trimmed text only.
pub const MAX_ANSWER_CHARS: usize = 5000;

fn re(s: &str) -> Regex {
    Regex::new(s).expect("static regex")
}

/// Full normalization for `compare: math`.
pub fn normalize_math(s: &str) -> String {
    let mut s = s.trim().to_string();
    if s.chars().count() > MAX_ANSWER_CHARS {
        return s;
    }
    for _ in 0..3 {
        let before = s.clone();
        s = strip_math_delimiters(&s);
        s = unicode_math_symbols(&s);
        s = unwrap_boxed(&s);
        s = remove_spacing_commands(&s);
        s = unify_frac_commands(&s);
        s = strip_degrees(&s);
        s = strip_percent(&s);
        s = strip_dollar_signs(&s);
        s = strip_trailing_text_units(&s);
        s = unwrap_text_commands(&s);
        s = strip_plain_units(&s);
        s = strip_trailing_punctuation(s.trim());
        s = remove_thousands_separators(&s);
        s = remove_whitespace(&s);
        if s == before {
            break;
        }
    }
    s
}

/// `$5$`, `$$5$$`, `\(5\)`, `\[5\]` -> `5`.
pub fn strip_math_delimiters(s: &str) -> String {
    let mut t = s.trim();
    loop {
        let before = t;
        for (open, close) in [("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")] {
            if t.len() >= open.len() + close.len() && t.starts_with(open) && t.ends_with(close) {
                t = t[open.len()..t.len() - close.len()].trim();
            }
        }
        if t == before {
            return t.to_string();
        }
    }
}

/// `−3` -> `-3`, `π` -> `\pi`, `×` -> `\times`, `·` -> `\cdot`, `∞` -> `\infty`, `√` -> `\sqrt`.
pub fn unicode_math_symbols(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    s.replace(['−', '–'], "-")
        .replace('π', "\\pi ")
        .replace('×', "\\times ")
        .replace(['·', '⋅'], "\\cdot ")
        .replace('∞', "\\infty ")
        .replace('√', "\\sqrt")
}

/// The index just past the `}` matching the `{` at byte `open` (escaped `\{` `\}` ignored).
pub fn matching_brace(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    if b.get(open) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A whole answer written as `\boxed{X}` / `\fbox{X}` -> `X` (truths are sometimes stored boxed).
pub fn unwrap_boxed(s: &str) -> String {
    let t = s.trim();
    for cmd in ["\\boxed", "\\fbox"] {
        if let Some(rest) = t.strip_prefix(cmd) {
            let off = t.len() - rest.len();
            if let Some(end) = matching_brace(t, off)
                && end == t.len()
            {
                return t[off + 1..end - 1].trim().to_string();
            }
        }
    }
    t.to_string()
}

static SPACING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\\(?:left|right)\.|\\(?:displaystyle|left|right|bigl|bigr|Bigl|Bigr|big|Big|qquad|quad)(?:[^A-Za-z]|$)|\\[,;:! ]",
    )
});

/// `\!`, `\,`, `\;`, `\:`, `\ `, `\quad`, `\displaystyle`, `\left`, `\right` (and `\left.`) removed.
pub fn remove_spacing_commands(s: &str) -> String {
    // The pattern may consume the char after a word command; put it back.
    SPACING
        .replace_all(s, |c: &regex::Captures| {
            let m = &c[0];
            match m.chars().last() {
                Some(ch)
                    if m.len() > 2
                        && !ch.is_ascii_alphabetic()
                        && !m.ends_with("\\left.")
                        && !m.ends_with("\\right.") =>
                {
                    ch.to_string()
                }
                _ => String::new(),
            }
        })
        .into_owned()
}

static FRAC: LazyLock<Regex> = LazyLock::new(|| re(r"\\[dtc]frac([^A-Za-z]|$)"));

/// `\dfrac`, `\tfrac`, `\cfrac` -> `\frac`.
pub fn unify_frac_commands(s: &str) -> String {
    FRAC.replace_all(s, "\\frac$1").into_owned()
}

static DEGREES: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°|\\degree\b|\s*\\text\{\s*degrees?\s*\}|\s+degrees?\s*$",
    )
});

/// `336^\circ`, `336^{\circ}`, `336°`, `336 degrees` -> `336`.
pub fn strip_degrees(s: &str) -> String {
    DEGREES.replace_all(s, "").into_owned()
}

static PERCENT: LazyLock<Regex> =
    LazyLock::new(|| re(r"\\%|%|\s*\\text\{\s*percent\s*\}|\s+percent\s*$"));

/// `50\%`, `50%`, `50 percent` -> `50` (the number is kept, not divided by 100).
pub fn strip_percent(s: &str) -> String {
    PERCENT.replace_all(s, "").into_owned()
}

/// `\$18`, `$18` -> `18`.
pub fn strip_dollar_signs(s: &str) -> String {
    s.replace("\\$", "").replace('$', "")
}

static TEXT_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?s)(.*[0-9}a-zA-Z)])\s*\\(?:text|mbox|mathrm|textrm|textnormal|rm)\s*\{\s*([A-Za-z][A-Za-z .]*)\}(?:\s*\^\s*\{?\s*[23]\s*\}?)?\s*$",
    )
});

/// `5\text{ cm}`, `10 \text{ meters}`, `4\mathrm{m}^2` -> the value; never when nothing precedes
/// (`\text{(B)}`, `\text{odd}` are answers), nor for `\mathrm{i}`/`\mathrm{e}`.
pub fn strip_trailing_text_units(s: &str) -> String {
    if let Some(c) = TEXT_UNIT.captures(s) {
        let unit = c[2].trim();
        if unit != "i" && unit != "e" && !unit.is_empty() {
            return c[1].to_string();
        }
    }
    s.to_string()
}

/// `\text{..}`, `\textbf{..}`, `\mathrm{..}`, `\mathbf{..}`, ... -> their content.
pub fn unwrap_text_commands(s: &str) -> String {
    const CMDS: [&str; 12] = [
        "\\textbf",
        "\\textit",
        "\\textrm",
        "\\textnormal",
        "\\text",
        "\\mathrm",
        "\\mathbf",
        "\\mathit",
        "\\boldsymbol",
        "\\mbox",
        "\\operatorname",
        "\\mathsf",
    ];
    let mut out = s.to_string();
    for _ in 0..50 {
        let mut changed = false;
        for cmd in CMDS {
            if let Some(pos) = out.find(cmd) {
                let after = pos + cmd.len();
                let rest = &out[after..];
                let ws = rest.len() - rest.trim_start().len();
                if let Some(end) = matching_brace(&out, after + ws) {
                    let inner = out[after + ws + 1..end - 1].to_string();
                    out = format!("{}{}{}", &out[..pos], inner, &out[end..]);
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            break;
        }
    }
    out
}

static PLAIN_UNIT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?s)(.*[0-9}])\s+(?:eV|units?|square units|sq units|cm|mm|km|m|meters?|metres?|inches|inch|in|feet|foot|ft|miles?|mi|yards?|kg|g|grams?|seconds?|sec|s|minutes?|min|hours?|hrs?|days?|weeks?|years?|dollars?|cents?|mph|km/h|degrees?|ways|people|students|points)(?:\s*\^\s*\{?\s*[23]\s*\}?)?\.?\s*$",
    )
});

/// `10 meters`, `5 cm^2`, `18 dollars` -> the value (a short list of common unit words after a number).
pub fn strip_plain_units(s: &str) -> String {
    match PLAIN_UNIT.captures(s) {
        Some(c) => c[1].to_string(),
        None => s.to_string(),
    }
}

static THOUSANDS_WHOLE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$"));
static THOUSANDS_BRACED: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\{,\}(\d)"));

/// `1{,}000` -> `1000` anywhere; `1,000` / `12,345.5` -> digits only when the WHOLE answer is one
/// grouped number (so `(1,2)`, `1,2` and `\{1,000\}`-style lists are left alone).
pub fn remove_thousands_separators(s: &str) -> String {
    let mut t = s.to_string();
    for _ in 0..2 {
        t = THOUSANDS_BRACED.replace_all(&t, "$1$2").into_owned();
    }
    let trimmed = t.trim();
    if THOUSANDS_WHOLE.is_match(trimmed) {
        return trimmed.replace(',', "");
    }
    t
}

/// All whitespace removed (`- 3` = `-3`, `1 000` = `1000`).
pub fn remove_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// A trailing `.` (sentence end) removed; `5.` -> `5`, but not `\ldots`-style content.
pub fn strip_trailing_punctuation(s: &str) -> String {
    let mut t = s;
    while let Some(r) = t.strip_suffix('.') {
        if r.ends_with('.') || r.is_empty() {
            break;
        }
        t = r;
    }
    t.to_string()
}

static ASSIGN_LHS: LazyLock<Regex> =
    LazyLock::new(|| re(r"^[A-Za-z\\][A-Za-z0-9\\_{}()',+\-*^]*$"));

/// `x=5` -> `5`, `m+n=33` -> `33`, `AB=2\sqrt{3}=\sqrt{12}` -> `\sqrt{12}`, `x\in[1,2]` -> `[1,2]`:
/// only when the left side starts with a letter (so `2x=6` is left alone) and nothing is
/// compared with `<`, `\le`, etc.
pub fn strip_variable_assignment(s: &str) -> String {
    match split_assignment(s) {
        Some((_, value)) => value.to_string(),
        None => s.to_string(),
    }
}

/// `x=5` -> (`x`, `5`); `x\in[1,2]` -> (`x`, `[1,2]`); `None` when `s` is not such an assignment.
pub fn split_assignment(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix(|c: char| c.is_ascii_alphabetic())
        && let Some(r) = rest.strip_prefix("\\in")
        && !r.starts_with(|c: char| c.is_ascii_alphabetic())
    {
        return Some((&s[..1], r));
    }
    let parts = split_top_level(s, '=');
    if parts.len() < 2 {
        return None;
    }
    let last = parts[parts.len() - 1];
    if last.is_empty() || parts[0].contains(['<', '>']) || !ASSIGN_LHS.is_match(parts[0]) {
        return None;
    }
    Some((parts[0], last))
}

/// Split at `sep` where bracket depth (any of `([{` vs `)]}`) is zero.
pub fn split_top_level(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth: i64 = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Light normalization for `compare: numeric`: delimiters, `$`, `\%`, thousands separators,
/// whitespace, a trailing period. Leading zeros and `.0` are handled by the number parser.
pub fn normalize_numeric(s: &str) -> String {
    let t = s.trim();
    if t.chars().count() > MAX_ANSWER_CHARS {
        return t.to_string();
    }
    let t = strip_math_delimiters(t);
    let t = remove_spacing_commands(&t);
    let t = strip_percent(&t);
    let t = strip_dollar_signs(&t);
    let t = strip_trailing_punctuation(t.trim());
    let t = remove_thousands_separators(&t);
    remove_whitespace(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_one_by_one() {
        assert_eq!(strip_math_delimiters("$18$"), "18");
        assert_eq!(unicode_math_symbols("−3π"), "-3\\pi ");
        assert_eq!(strip_math_delimiters("\\( x \\)"), "x");
        assert_eq!(unwrap_boxed("\\boxed{\\frac{1}{2}}"), "\\frac{1}{2}");
        assert_eq!(
            unwrap_boxed("\\boxed{1}+\\boxed{2}"),
            "\\boxed{1}+\\boxed{2}"
        );
        assert_eq!(
            remove_spacing_commands("\\left( 1,\\!2 \\right)"),
            "( 1,2 )"
        );
        assert_eq!(remove_spacing_commands("\\left.x\\right|"), "x|");
        assert_eq!(
            remove_spacing_commands("\\displaystyle\\frac12"),
            "\\frac12"
        );
        assert_eq!(
            unify_frac_commands("\\dfrac{1}{2}+\\tfrac12"),
            "\\frac{1}{2}+\\frac12"
        );
        assert_eq!(strip_degrees("336^\\circ"), "336");
        assert_eq!(strip_degrees("336^{\\circ}"), "336");
        assert_eq!(strip_degrees("336 degrees"), "336");
        assert_eq!(strip_percent("50\\%"), "50");
        assert_eq!(strip_dollar_signs("\\$18"), "18");
        assert_eq!(strip_trailing_text_units("5\\text{ cm}"), "5");
        assert_eq!(strip_trailing_text_units("10 \\text{ meters}"), "10");
        assert_eq!(strip_trailing_text_units("4\\mathrm{m}^2"), "4");
        assert_eq!(strip_trailing_text_units("\\text{(B)}"), "\\text{(B)}");
        assert_eq!(strip_trailing_text_units("3\\mathrm{i}"), "3\\mathrm{i}");
        assert_eq!(unwrap_text_commands("\\text{(B)}"), "(B)");
        assert_eq!(unwrap_text_commands("\\mathbf{x}+\\textbf{ y}"), "x+ y");
        assert_eq!(strip_plain_units("10 meters"), "10");
        assert_eq!(strip_plain_units("x m"), "x m");
        assert_eq!(remove_thousands_separators("1,000"), "1000");
        assert_eq!(remove_thousands_separators("1{,}000{,}000"), "1000000");
        assert_eq!(remove_thousands_separators("(1,2)"), "(1,2)");
        assert_eq!(remove_thousands_separators("1,2"), "1,2");
        assert_eq!(remove_thousands_separators("(1,000,2)"), "(1,000,2)");
        assert_eq!(strip_trailing_punctuation("5."), "5");
        assert_eq!(strip_variable_assignment("x=5"), "5");
        assert_eq!(strip_variable_assignment("m+n=33"), "33");
        assert_eq!(strip_variable_assignment("2x=6"), "2x=6");
        assert_eq!(strip_variable_assignment("x\\in[1,2]"), "[1,2]");
        assert_eq!(strip_variable_assignment("x\\le5"), "x\\le5");
        assert_eq!(split_top_level("(1,2),3", ','), vec!["(1,2)", "3"]);
    }

    #[test]
    fn whole_pipeline() {
        assert_eq!(normalize_math(" $\\dfrac{1}{2}$ "), "\\frac{1}{2}");
        assert_eq!(normalize_math("\\boxed{\\text{(B)}}"), "(B)");
        assert_eq!(normalize_math("1{,}000"), "1000");
        assert_eq!(normalize_math("- 3"), "-3");
        assert_eq!(normalize_math("5\\text{ cm}^2."), "5");
        assert_eq!(normalize_numeric("$1,000.$"), "1000");
        assert_eq!(normalize_numeric("\\$18"), "18");
    }
}
