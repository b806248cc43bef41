//! Comparison rules behind `equivalent`: one function per mode, and for `math` one small named
//! function per structural rule (scalars, tuples/intervals, sets and bare lists, unions,
//! matrices, a choice letter against its option text).
//!
//! Owns: deciding equal / not equal for two already-extracted answers. Deliberately does not:
//! extract answers from model text (`extract`), clean LaTeX (`normalize`), or evaluate
//! (`expr`). Never calls two answers equal because parsing or evaluation failed: a failure
//! falls back to comparing normalized text.

use super::GradeContext;
use super::choices::{as_letter, parse_choices};
use super::eval::{self, Val};
use super::expr;
use super::normalize::{
    MAX_ANSWER_CHARS, normalize_math, normalize_numeric, split_assignment, split_top_level,
    strip_variable_assignment,
};
use num_rational::BigRational;
use num_traits::Signed;

/// Relative tolerance used when a value needed floating point (sqrt, pi, trig) and the caller gave none.
pub const FLOAT_REL_TOL: f64 = 1e-9;
/// Below this magnitude two floating-point values are taken as equal (rounding noise around 0).
const FLOAT_ABS_NOISE: f64 = 1e-12;

/// `compare: exact`: equal after trimming whitespace, nothing else.
pub fn exact(predicted: &str, truth: &str) -> bool {
    predicted.trim() == truth.trim()
}

/// `compare: numeric`: both parse as plain numbers (after light normalization), compared
/// exactly as rationals or with `rel_tol`.
pub fn numeric(predicted: &str, truth: &str, rel_tol: Option<f64>) -> bool {
    match (
        plain_number(&normalize_numeric(predicted)),
        plain_number(&normalize_numeric(truth)),
    ) {
        (Some(a), Some(b)) => values_equal(&Val::Exact(a), &Val::Exact(b), rel_tol),
        _ => false,
    }
}

/// A plain number: `-033`, `2.50`, `1e3`, `3/4`, `\frac{3}{4}`, `-\frac12`.
fn plain_number(s: &str) -> Option<BigRational> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let frac_ok = |n: &expr::Node| matches!(n, expr::Node::Num(_));
    let v = if let Some((a, b)) = body.split_once('/') {
        let (a, b) = (
            eval::parse_number_literal(a)?,
            eval::parse_number_literal(b)?,
        );
        if b == BigRational::from_integer(0.into()) {
            return None;
        }
        a / b
    } else if body.starts_with("\\frac")
        || body.starts_with("\\dfrac")
        || body.starts_with("\\tfrac")
    {
        match expr::parse(body)? {
            expr::Node::Div(a, b) if frac_ok(&a) && frac_ok(&b) => {
                match eval::eval(&expr::Node::Div(a, b)).ok()? {
                    Val::Exact(r) => r,
                    Val::Approx(_) => return None,
                }
            }
            _ => return None,
        }
    } else {
        eval::parse_number_literal(body)?
    };
    Some(if neg { -v } else { v })
}

/// Two values equal: exactly for two rationals (or within `rel_tol` when given), else within a
/// relative tolerance (`rel_tol` or `FLOAT_REL_TOL`) in f64.
pub fn values_equal(a: &Val, b: &Val, rel_tol: Option<f64>) -> bool {
    if let (Val::Exact(x), Val::Exact(y)) = (a, b) {
        return match rel_tol.and_then(BigRational::from_float) {
            None => x == y,
            Some(t) => {
                let m = if x.abs() > y.abs() { x.abs() } else { y.abs() };
                (x - y).abs() <= t * m
            }
        };
    }
    let (Some(x), Some(y)) = (a.to_f64(), b.to_f64()) else {
        return false;
    };
    let tol = rel_tol.unwrap_or(FLOAT_REL_TOL);
    let diff = (x - y).abs();
    let m = x.abs().max(y.abs());
    diff <= tol * m || (m < FLOAT_ABS_NOISE && diff < FLOAT_ABS_NOISE)
}

/// The structure of a normalized answer.
#[derive(Debug, Clone, PartialEq)]
enum Ans {
    Scalar(String),
    /// `(1,2)`, `[1,2)`: ordered, bracket kinds kept (tuple or interval).
    Seq {
        open: char,
        close: char,
        items: Vec<Ans>,
    },
    /// `\{1,2\}` or a bare list `1, 2`: order-free.
    Set(Vec<Ans>),
    /// `A \cup B`: order-free.
    Union(Vec<Ans>),
    Matrix(Vec<Vec<Ans>>),
}

const MAX_NESTING: usize = 20;
/// Above this many elements sets are compared in order (conservative: only false negatives).
const MAX_UNORDERED: usize = 64;

fn parse_answer(s: &str, depth: usize) -> Ans {
    if depth > MAX_NESTING {
        return Ans::Scalar(s.to_string());
    }
    // `x = 5` -> `5` only for a whole answer: inside a list, `a=2,b=3` keeps its names.
    if depth == 0 && split_top_level(s, ',').len() == 1 {
        let stripped = strip_variable_assignment(s);
        if stripped != s {
            return parse_answer(&stripped, 1);
        }
    }
    if let Some(rows) = matrix_rows(s) {
        return Ans::Matrix(
            rows.iter()
                .map(|r| r.iter().map(|c| parse_answer(c, depth + 1)).collect())
                .collect(),
        );
    }
    let union: Vec<&str> = split_top_level_str(s, "\\cup");
    if union.len() > 1 {
        return Ans::Union(union.iter().map(|p| parse_answer(p, depth + 1)).collect());
    }
    if let Some(inner) = s.strip_prefix("\\{").and_then(|r| r.strip_suffix("\\}"))
        && wraps_whole(s, 1)
    {
        return Ans::Set(items(inner, depth));
    }
    let parts = split_top_level(s, ',');
    if parts.len() > 1 {
        return Ans::Set(parts.iter().map(|p| parse_answer(p, depth + 1)).collect());
    }
    let (first, last) = (s.chars().next(), s.chars().last());
    if let (Some(open @ ('(' | '[' | '{')), Some(close @ (')' | ']' | '}'))) = (first, last)
        && s.len() >= 2
        && wraps_whole(s, 0)
    {
        let inner = &s[1..s.len() - 1];
        if split_top_level(inner, ',').len() > 1 {
            if open == '{' {
                return Ans::Set(items(inner, depth));
            }
            return Ans::Seq {
                open,
                close,
                items: items(inner, depth),
            };
        }
        if (open, close) == ('(', ')') || (open, close) == ('{', '}') {
            return parse_answer(inner, depth + 1);
        }
    }
    Ans::Scalar(s.to_string())
}

fn items(inner: &str, depth: usize) -> Vec<Ans> {
    split_top_level(inner, ',')
        .iter()
        .map(|p| parse_answer(p, depth + 1))
        .collect()
}

/// True when the bracket opened at char `skip` (0, or 1 after a `\`) closes at the very end.
fn wraps_whole(s: &str, skip: usize) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let mut depth: i64 = 0;
    for (k, c) in chars.iter().enumerate().skip(skip) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth <= 0 {
            return depth == 0 && k + 1 == chars.len();
        }
    }
    false
}

fn split_top_level_str<'a>(s: &'a str, sep: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut depth: i64 = 0;
    let mut start = 0;
    let mut i = 0;
    let b = s.as_bytes();
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 && b[i..].starts_with(sep.as_bytes()) {
            out.push(&s[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        i += 1;
    }
    out.push(&s[start..]);
    out
}

/// `\begin{pmatrix}1&2\\3&4\end{pmatrix}` (also bmatrix, matrix) -> rows of cells.
fn matrix_rows(s: &str) -> Option<Vec<Vec<String>>> {
    for env in ["pmatrix", "bmatrix", "matrix"] {
        let open = format!("\\begin{{{env}}}");
        let close = format!("\\end{{{env}}}");
        if let Some(body) = s
            .strip_prefix(open.as_str())
            .and_then(|r| r.strip_suffix(close.as_str()))
        {
            let rows: Vec<Vec<String>> = body
                .split("\\\\")
                .filter(|r| !r.trim().is_empty())
                .map(|r| r.split('&').map(|c| c.trim().to_string()).collect())
                .collect();
            return Some(rows);
        }
    }
    None
}

fn equal(a: &Ans, b: &Ans, ctx: &GradeContext) -> bool {
    match (a, b) {
        (Ans::Scalar(x), Ans::Scalar(y)) => scalars_equal(x, y, ctx),
        (
            Ans::Seq {
                open: o1,
                close: c1,
                items: i1,
            },
            Ans::Seq {
                open: o2,
                close: c2,
                items: i2,
            },
        ) => o1 == o2 && c1 == c2 && ordered_equal(i1, i2, ctx),
        (Ans::Set(x), Ans::Set(y)) | (Ans::Union(x), Ans::Union(y)) => unordered_equal(x, y, ctx),
        (Ans::Matrix(x), Ans::Matrix(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(r, s)| ordered_equal(r, s, ctx))
        }
        (
            Ans::Matrix(m),
            Ans::Seq {
                open: '(',
                close: ')',
                items,
            },
        )
        | (
            Ans::Seq {
                open: '(',
                close: ')',
                items,
            },
            Ans::Matrix(m),
        ) => vector_equals_tuple(m, items, ctx),
        _ => false,
    }
}

/// A column or row vector written as a matrix equals the same tuple `(a,b,c)`.
fn vector_equals_tuple(m: &[Vec<Ans>], items: &[Ans], ctx: &GradeContext) -> bool {
    let flat: Vec<Ans> = if m.iter().all(|r| r.len() == 1) {
        m.iter().map(|r| r[0].clone()).collect()
    } else if m.len() == 1 {
        m[0].clone()
    } else {
        return false;
    };
    ordered_equal(&flat, items, ctx)
}

fn ordered_equal(x: &[Ans], y: &[Ans], ctx: &GradeContext) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b, ctx))
}

/// Multiset equality: every element matched to a distinct equal element (greedy; equivalence is transitive).
fn unordered_equal(x: &[Ans], y: &[Ans], ctx: &GradeContext) -> bool {
    if x.len() != y.len() {
        return false;
    }
    if x.len() > MAX_UNORDERED {
        // Quadratic matching would be slow; large lists must then be in the same order.
        return ordered_equal(x, y, ctx);
    }
    let mut used = vec![false; y.len()];
    x.iter().all(
        |a| match (0..y.len()).find(|&j| !used[j] && equal(a, &y[j], ctx)) {
            Some(j) => {
                used[j] = true;
                true
            }
            None => false,
        },
    )
}

/// Scalars: equal text; else both parse and, without free variables, evaluate to equal values;
/// else (free variables or evaluation failure) equal canonical forms.
fn scalars_equal(x: &str, y: &str, ctx: &GradeContext) -> bool {
    if x == y {
        return true;
    }
    let (Some(px), Some(py)) = (expr::parse(x), expr::parse(y)) else {
        return false;
    };
    if !expr::has_free_vars(&px)
        && !expr::has_free_vars(&py)
        && let (Ok(vx), Ok(vy)) = (eval::eval(&px), eval::eval(&py))
    {
        return values_equal(&vx, &vy, ctx.rel_tol);
    }
    expr::canonical(&px) == expr::canonical(&py)
}

/// `compare: math`.
pub fn math(predicted: &str, truth: &str, ctx: &GradeContext) -> bool {
    let (p, t) = (predicted.trim(), truth.trim());
    if p.is_empty() || t.is_empty() {
        return false;
    }
    if p == t {
        return true;
    }
    if ctx.rel_tol.is_none() && plain_integer(p) && plain_integer(t) {
        // two different integers written plainly: no normalization changes either
        return false;
    }
    if p.chars().count() > MAX_ANSWER_CHARS || t.chars().count() > MAX_ANSWER_CHARS {
        return false;
    }
    if math_structural(p, t, ctx) {
        return true;
    }
    letter_vs_option_text(p, t, ctx)
}

/// Digits only, without a leading zero (`0` itself allowed): one integer, one spelling.
fn plain_integer(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || b[0] != b'0')
}

fn math_structural(p: &str, t: &str, ctx: &GradeContext) -> bool {
    let (np, nt) = (normalize_math(p), normalize_math(t));
    if np.is_empty() || nt.is_empty() || different_names(&np, &nt) {
        return false;
    }
    equal(&parse_answer(&np, 0), &parse_answer(&nt, 0), ctx)
}

/// `x=5` vs `y=5`: both answers name what they assign, and the names differ.
fn different_names(p: &str, t: &str) -> bool {
    let whole = |s: &str| split_top_level(s, ',').len() == 1;
    match (split_assignment(p), split_assignment(t)) {
        (Some((a, _)), Some((b, _))) => whole(p) && whole(t) && a != b,
        _ => false,
    }
}

/// When the question lists options and exactly one side is a letter, compare the other side with
/// that letter's option text.
fn letter_vs_option_text(p: &str, t: &str, ctx: &GradeContext) -> bool {
    let Some(q) = ctx.question else {
        return false;
    };
    let (lp, lt) = (as_letter(p), as_letter(t));
    let (letter, text) = match (lp, lt) {
        (Some(l), None) => (l, t),
        (None, Some(l)) => (l, p),
        _ => return false,
    };
    let choices = parse_choices(q);
    let Some((_, option)) = choices.iter().find(|(l, _)| *l == letter) else {
        return false;
    };
    // The text must match this option and no other one (duplicated option texts are ambiguous).
    let matches: Vec<char> = choices
        .iter()
        .filter(|(_, o)| math_structural(text, o, ctx) || o.trim() == text.trim())
        .map(|(l, _)| *l)
        .collect();
    !option.trim().is_empty() && matches == vec![letter]
}

/// `compare: mc`: letters compared; a letter against option text when the question lists
/// options; two non-letters compared as math answers.
pub fn multiple_choice(predicted: &str, truth: &str, ctx: &GradeContext) -> bool {
    if predicted.trim().is_empty() || truth.trim().is_empty() {
        return false;
    }
    match (as_letter(predicted), as_letter(truth)) {
        (Some(a), Some(b)) => a == b,
        (None, None) => math(predicted, truth, ctx),
        _ => letter_vs_option_text(predicted, truth, ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        math(p, t, &GradeContext::default())
    }

    #[test]
    fn structures() {
        assert!(m("(1,2)", "(1, 2)"));
        assert!(!m("(1,2)", "[1,2)"));
        assert!(!m("[1,2]", "(1,2)"));
        assert!(!m("12", "(1,2)"));
        assert!(m("\\{1,2\\}", "\\{2,1\\}"));
        assert!(m("1, 2", "2,1"));
        assert!(!m("1, 2", "1,2,2"));
        assert!(m("(1,2)\\cup(3,4)", "(3,4)\\cup(1,2)"));
        assert!(m(
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"
        ));
        assert!(!m(
            "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
            "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}"
        ));
        assert!(m("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)"));
        assert!(m("(-\\infty,3]", "(-\\infty, 3]"));
        assert!(!m("(-\\infty,3]", "(-\\infty, 3)"));
        assert!(m("\\{(1,2),(3,4)\\}", "\\{(3,4),(1,2)\\}"));
    }

    /// The shortcut for two plain integers says what the whole comparison says.
    #[test]
    fn plain_integers_compare_as_the_structural_path_does() {
        let ctx = GradeContext::default();
        let cases = [
            "0",
            "7",
            "12",
            "1000",
            "1001",
            "99999999999999999999",
            "007",
            "10",
        ];
        for p in cases {
            for t in cases {
                let full = p == t || math_structural(p, t, &ctx);
                assert_eq!(m(p, t), full, "{p} vs {t}");
            }
        }
        assert!(m("007", "7"), "a leading zero takes the whole path");
        let tol = GradeContext {
            rel_tol: Some(0.01),
            ..Default::default()
        };
        assert!(
            math("1000", "1001", &tol),
            "a tolerance takes the whole path"
        );
    }

    proptest::proptest! {
        #[test]
        fn plain_integer_pairs_agree_with_the_structural_path(a in 0u64..100_000, b in 0u64..100_000) {
            let (p, t) = (a.to_string(), b.to_string());
            let ctx = GradeContext::default();
            proptest::prop_assert_eq!(m(&p, &t), p == t || math_structural(&p, &t, &ctx));
        }
    }

    #[test]
    fn wraps_whole_cases() {
        assert!(wraps_whole("(1,2)", 0));
        assert!(!wraps_whole("(1)(2)", 0));
        assert!(wraps_whole("\\{1,2\\}", 1));
        assert!(!wraps_whole("\\{1\\}\\cup\\{2\\}", 1));
    }

    #[test]
    fn numeric_mode() {
        assert!(numeric("033", "33", None));
        assert!(numeric("$1,000$", "1000", None));
        assert!(numeric("2.50", "5/2", None));
        assert!(numeric("1e3", "1000.0", None));
        assert!(numeric("50\\%", "50", None));
        assert!(!numeric("1/3", "0.333", None));
        assert!(numeric("1/3", "0.333", Some(1e-2)));
        assert!(!numeric("\\sqrt{2}", "1.414", None));
        assert!(!numeric("x", "x", None));
    }
}
