//! Applying a registry entry to fetched rows: checking that the dataset still has every
//! mapped column, turning each JSON row into an `id,question,solution,answer,…` record, and
//! normalizing answers the way each benchmark defines them (AIME integers, MATH LaTeX,
//! GSM8K's `####`, GPQA's seeded choice shuffle).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::registry::{AnswerRule, IdSource, Source};

const LETTERS: [char; 4] = ['A', 'B', 'C', 'D'];

/// Checks that every column the mapping reads is among the dataset's features; the error
/// names the missing column(s) and the ones the dataset has.
pub fn check_columns(src: &Source, features: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = src
        .columns()
        .into_iter()
        .filter(|c| !features.iter().any(|f| f == c))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} ({}, config {}, split {}) has no column {}; its columns are now: {}. The dataset \
         changed: update the `{}` entry of the mapping table in src/datasets/registry.rs",
        src.name,
        src.dataset,
        src.config,
        src.split,
        missing
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        features.join(", "),
        src.name
    ))
}

/// A JSON cell as CSV text: strings as-is, numbers and booleans printed, null empty,
/// anything else as compact JSON.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Maps one source row (its 0-based `row_idx` and its JSON object) into the CSV record
/// (in `src.csv_header()` order). `seed` is used by the multiple-choice shuffle only.
pub fn map_row(
    src: &Source,
    row_idx: usize,
    row: &serde_json::Map<String, Value>,
    seed: u64,
) -> Result<Vec<String>, String> {
    let get = |col: &str| -> Result<String, String> {
        row.get(col).map(cell_text).ok_or_else(|| {
            format!(
                "{}: row {row_idx} has no column `{col}`; update the mapping table in \
                 src/datasets/registry.rs",
                src.name
            )
        })
    };
    let id = match src.id {
        IdSource::Column { column, prefix } => format!("{prefix}{}", get(column)?.trim()),
        IdSource::RowIndex { prefix } => format!("{prefix}{row_idx}"),
    };
    let mut question = get(src.question)?.trim().to_string();
    let solution = match src.solution {
        Some(c) => get(c)?.trim().to_string(),
        None => String::new(),
    };
    let raw = get(src.answer)?;
    let bad = |why: &str| format!("{}: row {row_idx} (id `{id}`): {why}", src.name);
    let answer = match src.rule {
        AnswerRule::AimeInteger => aime_integer(&raw).map_err(|e| bad(&e))?,
        AnswerRule::Latex => latex_answer(&raw),
        AnswerRule::AfterHashes => after_hashes(&raw).map_err(|e| bad(&e))?,
        AnswerRule::ShuffledChoice { incorrect } => {
            let mut choices = vec![raw.trim().to_string()];
            for c in incorrect {
                choices.push(get(c)?.trim().to_string());
            }
            let (text, letter) = multiple_choice(&question, &choices, seed, &id);
            question = text;
            letter.to_string()
        }
    };
    if id.trim().is_empty() {
        return Err(bad("empty id"));
    }
    if question.is_empty() {
        return Err(bad("empty question"));
    }
    if answer.is_empty() {
        return Err(bad("empty answer"));
    }
    let mut rec = vec![id, question, solution, answer];
    for (_, col) in src.extra {
        rec.push(get(col)?.trim().to_string());
    }
    Ok(rec)
}

/// AIME: an integer 0–999 written without leading zeros (`033` → `33`).
pub fn aime_integer(raw: &str) -> Result<String, String> {
    let t = raw.trim().trim_matches('$').trim();
    let t = strip_boxed(t).unwrap_or(t).trim();
    match t.parse::<u32>() {
        Ok(n) if n <= 999 => Ok(n.to_string()),
        _ => Err(format!("AIME answer `{raw}` is not an integer 0–999")),
    }
}

/// MATH: the final answer as LaTeX, trimmed, without a surrounding `$…$` or `\boxed{…}`.
pub fn latex_answer(raw: &str) -> String {
    let mut t = raw.trim();
    if t.len() >= 2 && t.starts_with('$') && t.ends_with('$') {
        t = t.trim_matches('$').trim();
    }
    strip_boxed(t).unwrap_or(t).trim().to_string()
}

/// `\boxed{X}` spanning the whole text → `X`.
fn strip_boxed(t: &str) -> Option<&str> {
    let inner = t.strip_prefix("\\boxed{")?.strip_suffix('}')?;
    // The braces must balance inside, or the final `}` closes something else.
    let mut depth = 0i32;
    for ch in inner.chars() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            _ => {}
        }
    }
    (depth == 0).then_some(inner)
}

/// GSM8K: the text after the last `####`, trimmed, commas removed (`1,234` → `1234`).
pub fn after_hashes(raw: &str) -> Result<String, String> {
    let (_, tail) = raw
        .rsplit_once("####")
        .ok_or_else(|| "the answer has no `####` line".to_string())?;
    let a: String = tail.trim().chars().filter(|c| *c != ',').collect();
    if a.is_empty() {
        return Err("nothing after `####`".to_string());
    }
    Ok(a)
}

/// The RNG for one question: ChaCha8 keyed by blake3 of the seed and the problem id, so
/// the order depends on nothing else (not on row order, page size or library versions).
fn choice_rng(seed: u64, id: &str) -> ChaCha8Rng {
    let key = blake3::hash(format!("distill-choices:{seed}:{id}").as_bytes());
    ChaCha8Rng::from_seed(*key.as_bytes())
}

/// Shuffles `choices` (the correct one first) with the seeded RNG (a Fisher–Yates shuffle
/// written out here so its output cannot change with a `rand` upgrade), appends them to the
/// question as `(A) …` lines and returns the question text and the correct letter.
pub fn multiple_choice(question: &str, choices: &[String], seed: u64, id: &str) -> (String, char) {
    let mut rng = choice_rng(seed, id);
    let mut order: Vec<usize> = (0..choices.len()).collect();
    for i in (1..order.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut text = format!("{}\n\nChoices:", question.trim());
    let mut letter = 'A';
    for (k, &i) in order.iter().enumerate() {
        text.push_str(&format!("\n({}) {}", LETTERS[k], choices[i]));
        if i == 0 {
            letter = LETTERS[k];
        }
    }
    (text, letter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aime_answers() {
        assert_eq!(aime_integer("033").unwrap(), "33");
        assert_eq!(aime_integer(" 204 ").unwrap(), "204");
        assert_eq!(aime_integer("\\boxed{7}").unwrap(), "7");
        assert!(aime_integer("1000").is_err());
        assert!(aime_integer("x").is_err());
    }

    #[test]
    fn latex_answers() {
        assert_eq!(latex_answer(" \\frac{1}{2} "), "\\frac{1}{2}");
        assert_eq!(latex_answer("$3\\sqrt{2}$"), "3\\sqrt{2}");
        assert_eq!(latex_answer("\\boxed{\\{1,2\\}}"), "\\{1,2\\}");
        assert_eq!(
            latex_answer("\\boxed{a}+\\boxed{b}"),
            "\\boxed{a}+\\boxed{b}"
        );
    }

    #[test]
    fn gsm8k_answers() {
        assert_eq!(after_hashes("3+4 = 7\n#### 1,234").unwrap(), "1234");
        assert_eq!(after_hashes("#### -5").unwrap(), "-5");
        assert!(after_hashes("no marker").is_err());
    }

    #[test]
    fn shuffle_is_a_permutation_and_seeded() {
        let c: Vec<String> = ["right", "w1", "w2", "w3"].map(String::from).to_vec();
        let (q, l) = multiple_choice("Q?", &c, 0, "x");
        assert_eq!(multiple_choice("Q?", &c, 0, "x"), (q.clone(), l));
        let idx = LETTERS.iter().position(|x| *x == l).unwrap();
        assert!(q.contains(&format!("({}) right", LETTERS[idx])));
        for w in ["w1", "w2", "w3"] {
            assert!(q.contains(w));
        }
        let differs = (0..20).any(|s| multiple_choice("Q?", &c, s, "x").0 != q);
        assert!(differs);
    }
}
