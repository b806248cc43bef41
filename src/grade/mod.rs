//! Answer extraction and answer-equivalence grading.
//!
//! Owns: the public grading API used by pipelines (`extract`, `check_extractor`, `equivalent`,
//! `parse_judge_verdict`, `JUDGE_PROMPT`) and the YAML-facing option types (`Extractor`,
//! `ExtractOptions`, `Compare`). Submodules: `extract` (pulling an answer out of model text),
//! `normalize` (LaTeX/text clean-up rules), `expr` (a tiny expression parser), `eval` (its
//! exact/approximate evaluator),
//! `equiv` (comparison rules per mode), `choices` (multiple-choice letters and options),
//! `judge` (strict LLM-judge reply parsing).
//!
//! Deliberately does not: call any model (the engine runs `llm_judge` and hands the reply to
//! `parse_judge_verdict`), read files, or guess an answer when none was found (`None` is graded
//! wrong by the caller).

mod choices;
mod equiv;
mod eval;
mod expr;
mod extract;
mod judge;
pub mod names;
mod normalize;

use serde::{Deserialize, Serialize};

pub use names::Named;

pub use judge::{JUDGE_PROMPT, parse_judge_verdict};

/// How an answer is pulled out of a model's text. In YAML: `extract: boxed`, `extract: multiple_choice`,
/// `extract: final_answer`, `extract: last_number`, or `extract: {regex: "Answer: (\\d+)"}` (first capture group, last match).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Extractor {
    /// The default.
    #[default]
    Boxed,
    MultipleChoice,
    FinalAnswer,
    LastNumber,
    /// The original tool's `default` extractor, over the whole text: the last `\boxed{}`,
    /// else the last `\(N\)`, else the last whole number.
    OriginalDefault,
    Regex(String),
}

/// The extractors' names (`regex` takes a pattern: `{regex: "…"}` in YAML, `regex:PATTERN`
/// on the command line), each with what it does.
pub const EXTRACTORS: &[(&str, &str)] = &[
    ("boxed", "the last \\boxed{…}"),
    (
        "multiple_choice",
        "the last option letter (A-J) stated, else the last boxed text (for compare: mc)",
    ),
    ("final_answer", "the text after the last \"Final answer:\""),
    ("last_number", "the last number"),
    (
        "original_default",
        "the original tool's default: the last \\boxed{…}, else the last \\(N\\), else the last whole number, over the whole text",
    ),
    ("regex", "the first group of the last match of a pattern"),
];

impl Extractor {
    pub fn names() -> Vec<&'static str> {
        EXTRACTORS.iter().map(|(n, _)| *n).collect()
    }
    /// "boxed, multiple_choice, …, {regex: …}" for hints.
    pub fn list() -> String {
        Self::names()
            .iter()
            .map(|n| {
                if *n == "regex" {
                    "{regex: \"…\"}".to_string()
                } else {
                    n.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn name(&self) -> &'static str {
        match self {
            Extractor::Boxed => "boxed",
            Extractor::MultipleChoice => "multiple_choice",
            Extractor::FinalAnswer => "final_answer",
            Extractor::LastNumber => "last_number",
            Extractor::OriginalDefault => "original_default",
            Extractor::Regex(_) => "regex",
        }
    }
    /// A pattern-less extractor by name (`mc` is accepted for `multiple_choice`).
    pub fn parse_name(name: &str) -> Result<Extractor, String> {
        let e = match name {
            "boxed" => Extractor::Boxed,
            "multiple_choice" | "mc" => Extractor::MultipleChoice,
            "final_answer" => Extractor::FinalAnswer,
            "last_number" => Extractor::LastNumber,
            "original_default" => Extractor::OriginalDefault,
            "regex" => return Err("`regex` takes a pattern: `{regex: \"Answer: (\\d+)\"}` (on the command line `regex:PATTERN`)".into()),
            _ => return Err(names::unknown("extractor", name, &Self::names())),
        };
        debug_assert_eq!(
            e.name(),
            if name == "mc" {
                "multiple_choice"
            } else {
                name
            }
        );
        Ok(e)
    }
}

impl Serialize for Extractor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Extractor::Regex(p) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("regex", p)?;
                m.end()
            }
            e => s.serialize_str(e.name()),
        }
    }
}

impl<'de> Deserialize<'de> for Extractor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Extractor::parse_name(&s).map_err(D::Error::custom),
            serde_json::Value::Object(m) if m.len() == 1 => match m.iter().next() {
                Some((k, serde_json::Value::String(p))) if k == "regex" => {
                    Ok(Extractor::Regex(p.clone()))
                }
                Some((k, _)) if k == "regex" => {
                    Err(D::Error::custom("`regex:` takes a pattern text"))
                }
                Some((k, _)) => Err(D::Error::custom(names::unknown(
                    "extractor",
                    k,
                    &Self::names(),
                ))),
                None => unreachable!("one entry"),
            },
            other => Err(D::Error::custom(format!(
                "an extractor is a name or {{regex: \"…\"}}, not {other}; extractors: {}",
                Self::list()
            ))),
        }
    }
}

fn default_true() -> bool {
    true
}

/// Where to look. Default: answer part first (text after the LAST `</think>`), then the whole text as a fallback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractOptions {
    #[serde(default = "default_true")]
    pub fallback_full_text: bool,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            fallback_full_text: true,
        }
    }
}

/// Pull the answer out of a model's text (never the prompt). `None` when there is no answer.
pub fn extract(ex: &Extractor, text: &str, opts: &ExtractOptions) -> Option<String> {
    extract::extract(ex, text, opts)
}

/// Validates an extractor (e.g. a regex compiles and has a group) -> Err(message for the user).
pub fn check_extractor(ex: &Extractor) -> Result<(), String> {
    extract::check_extractor(ex)
}

/// How an extracted answer is compared to the truth. In YAML: `compare: exact|numeric|math|mc|llm_judge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compare {
    #[default]
    Exact,
    Numeric,
    Math,
    Mc,
    LlmJudge,
}

impl Named for Compare {
    const WHAT: &'static str = "comparison";
    const ALL: &'static [(Self, &'static str, &'static str)] = &[
        (Compare::Exact, "exact", "the same text after trimming"),
        (
            Compare::Numeric,
            "numeric",
            "the same number (within rel_tol)",
        ),
        (
            Compare::Math,
            "math",
            "mathematically equivalent (LaTeX normalized, exact rationals)",
        ),
        (
            Compare::Mc,
            "mc",
            "the same multiple-choice option (letter or option text)",
        ),
        (
            Compare::LlmJudge,
            "llm_judge",
            "a judge model decides (judge_model:)",
        ),
    ];
}
crate::named_serde!(Compare);

/// What a comparison may use beyond the two answers.
#[derive(Debug, Clone, Default)]
pub struct GradeContext<'a> {
    /// The problem text; used to map a multiple-choice letter to its option text.
    pub question: Option<&'a str>,
    /// Relative tolerance for numeric comparison; `None` = exact for rationals, 1e-9 for
    /// values that needed floating point (sqrt, pi, ...).
    pub rel_tol: Option<f64>,
}

/// true when `predicted` is equivalent to `truth` under `cmp`. For LlmJudge this returns Err (the engine
/// calls a model for that mode; see parse_judge_verdict).
pub fn equivalent(
    cmp: Compare,
    predicted: &str,
    truth: &str,
    ctx: &GradeContext,
) -> Result<bool, String> {
    if let Some(t) = ctx.rel_tol
        && (!t.is_finite() || t < 0.0)
    {
        return Err(format!("rel_tol must be a finite number >= 0, got {t}"));
    }
    match cmp {
        Compare::Exact => Ok(equiv::exact(predicted, truth)),
        Compare::Numeric => Ok(equiv::numeric(predicted, truth, ctx.rel_tol)),
        Compare::Math => Ok(equiv::math(predicted, truth, ctx)),
        Compare::Mc => Ok(equiv::multiple_choice(predicted, truth, ctx)),
        Compare::LlmJudge => Err(
            "compare: llm_judge is graded by a model call (render JUDGE_PROMPT, then parse_judge_verdict); \
             `equivalent` cannot decide it"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extractor_serde_matches_yaml_shapes() {
        let e: Extractor = serde_json::from_str("\"boxed\"").unwrap();
        assert_eq!(e, Extractor::Boxed);
        let e: Extractor = serde_json::from_str("\"multiple_choice\"").unwrap();
        assert_eq!(e, Extractor::MultipleChoice);
        let e: Extractor = serde_json::from_str("\"final_answer\"").unwrap();
        assert_eq!(e, Extractor::FinalAnswer);
        let e: Extractor = serde_json::from_str("\"last_number\"").unwrap();
        assert_eq!(e, Extractor::LastNumber);
        let e: Extractor = serde_json::from_str(r#"{"regex": "Answer: (\\d+)"}"#).unwrap();
        assert_eq!(e, Extractor::Regex("Answer: (\\d+)".into()));
        assert_eq!(Extractor::default(), Extractor::Boxed);
        assert!(serde_json::from_str::<Extractor>("\"boxd\"").is_err());
    }

    #[test]
    fn options_and_compare_serde() {
        let o: ExtractOptions = serde_json::from_str("{}").unwrap();
        assert!(o.fallback_full_text);
        assert_eq!(o, ExtractOptions::default());
        let o: ExtractOptions = serde_json::from_str(r#"{"fallback_full_text": false}"#).unwrap();
        assert!(!o.fallback_full_text);
        for (s, c) in [
            ("exact", Compare::Exact),
            ("numeric", Compare::Numeric),
            ("math", Compare::Math),
            ("mc", Compare::Mc),
            ("llm_judge", Compare::LlmJudge),
        ] {
            assert_eq!(
                serde_json::from_str::<Compare>(&format!("\"{s}\"")).unwrap(),
                c
            );
        }
        assert_eq!(Compare::default(), Compare::Exact);
    }

    #[test]
    fn llm_judge_mode_is_an_error_not_a_verdict() {
        assert!(equivalent(Compare::LlmJudge, "1", "1", &GradeContext::default()).is_err());
    }

    #[test]
    fn bad_tolerance_is_an_error() {
        let ctx = GradeContext {
            question: None,
            rel_tol: Some(f64::NAN),
        };
        assert!(equivalent(Compare::Math, "1", "1", &ctx).is_err());
    }

    /// Deterministic garbage generator (no proptest): fragments that stress every parser path.
    fn garbage_inputs() -> Vec<String> {
        const FRAGS: [&str; 48] = [
            "\\boxed{",
            "}",
            "{",
            "\\frac",
            "\\sqrt",
            "^",
            "10^{999999999}",
            "(",
            ")",
            "[",
            "]",
            ",",
            "\\{",
            "\\}",
            "1",
            "0",
            "7",
            ".",
            "e",
            "-",
            "/",
            "</think>",
            "x",
            "=",
            "\\text{",
            "\\begin{pmatrix}",
            "&",
            "\\\\",
            "\\end{pmatrix}",
            "π",
            "é",
            "😀",
            "−",
            "\\left(",
            "\\cup",
            "!",
            "%",
            "$",
            "\\",
            "9999999999999999999999",
            "2^{2^{2^{2^{10}}}}",
            "\\fbox",
            " ",
            "\n",
            "Answer: (B)",
            "Final Answer:",
            "1e-99999",
            "\\sqrt[",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut out = Vec::new();
        for _ in 0..400 {
            let n = (next() % 12) as usize;
            let s: String = (0..n)
                .map(|_| FRAGS[(next() % FRAGS.len() as u64) as usize])
                .collect();
            out.push(s);
        }
        out.extend([
            "(".repeat(20_000),
            "}".repeat(20_000),
            "\\boxed{".repeat(5_000),
            format!("{}1{}", "\\sqrt{".repeat(3_000), "}".repeat(3_000)),
            "9!!!!".into(),
            "2^{2^{2^{2^{2^{2^{10}}}}}}".into(),
            (0..3_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(","),
            "1,".repeat(3_000),
            "\\frac{1}{".repeat(2_000),
            "x^".repeat(2_000),
            "9".repeat(100_000),
            "\u{0}\u{feff}\u{202e}".into(),
        ]);
        out
    }

    #[test]
    fn never_panics_or_hangs_on_garbage() {
        let start = std::time::Instant::now();
        let inputs = garbage_inputs();
        let extractors = [
            Extractor::Boxed,
            Extractor::MultipleChoice,
            Extractor::FinalAnswer,
            Extractor::LastNumber,
            Extractor::OriginalDefault,
            Extractor::Regex("Answer: (\\d+)".into()),
        ];
        let q = "Pick (A) 1 (B) 2";
        for (i, a) in inputs.iter().enumerate() {
            for ex in &extractors {
                let _ = extract(ex, a, &ExtractOptions::default());
                let _ = check_extractor(&Extractor::Regex(a.clone()));
                let _ = ex;
            }
            let b = &inputs[(i * 7 + 3) % inputs.len()];
            for cmp in [
                Compare::Exact,
                Compare::Numeric,
                Compare::Math,
                Compare::Mc,
                Compare::LlmJudge,
            ] {
                for ctx in [
                    GradeContext::default(),
                    GradeContext {
                        question: Some(q),
                        rel_tol: Some(1e-3),
                    },
                ] {
                    let _ = equivalent(cmp, a, b, &ctx);
                    let _ = equivalent(cmp, a, a, &ctx);
                    let _ = equivalent(cmp, a, "1", &ctx);
                }
            }
            let _ = parse_judge_verdict(a);
        }
        // Debug build, shared 2-core machine: generous bound that still catches a blow-up.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn garbage_is_never_equal_to_a_different_value() {
        let ctx = GradeContext::default();
        assert!(!equivalent(Compare::Math, "10^{999999999}", "10^{999999998}", &ctx).unwrap());
        assert!(!equivalent(Compare::Math, "2^{2^{2^{2^{2^{10}}}}}", "1", &ctx).unwrap());
        assert!(!equivalent(Compare::Math, "{{{", "1", &ctx).unwrap());
    }
}
