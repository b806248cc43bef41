//! Answer extraction and grading (placeholder until the grading module lands): the last
//! `\boxed{}` and exact comparison after trimming.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Extractor {
    #[default]
    Boxed,
    MultipleChoice,
    FinalAnswer,
    LastNumber,
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractOptions {
    #[serde(default = "yes")]
    pub fallback_full_text: bool,
}
fn yes() -> bool {
    true
}
impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions { fallback_full_text: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    #[default]
    Exact,
    Numeric,
    Math,
    Mc,
    LlmJudge,
}

#[derive(Debug, Clone, Default)]
pub struct GradeContext<'a> {
    pub question: Option<&'a str>,
    pub rel_tol: Option<f64>,
}

pub fn extract(_ex: &Extractor, text: &str, opts: &ExtractOptions) -> Option<String> {
    let after = text.rsplit("</think>").next().unwrap_or(text);
    boxed(after).or_else(|| if opts.fallback_full_text { boxed(text) } else { None })
}

fn boxed(s: &str) -> Option<String> {
    let i = s.rfind("\\boxed{")? + 7;
    let mut depth = 1;
    for (j, c) in s[i..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(s[i..i + j].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

pub fn check_extractor(_ex: &Extractor) -> Result<(), String> {
    Ok(())
}

pub fn equivalent(_cmp: Compare, predicted: &str, truth: &str, _ctx: &GradeContext) -> Result<bool, String> {
    Ok(predicted.trim() == truth.trim())
}

pub fn parse_judge_verdict(_reply: &str) -> Result<bool, String> {
    Err("not yet".into())
}
