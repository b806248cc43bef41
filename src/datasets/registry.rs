//! The table of pullable problem sets: for each `distill data pull NAME`, the Hugging Face
//! dataset, config and split it comes from, which source column feeds each CSV column, and
//! how its answers are normalized. This table is the single place to fix when a dataset on
//! the Hub renames or moves a column; the code that applies it is in `normalize.rs`.

/// Where a problem's `id` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    /// A source column, prefixed (e.g. `ID` → `2024-II-4`).
    Column {
        column: &'static str,
        prefix: &'static str,
    },
    /// The row's 0-based position in the split, prefixed (e.g. `gsm8k_test_17`).
    RowIndex { prefix: &'static str },
}

/// How the `answer` (and, for multiple choice, the `question`) is produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerRule {
    /// An AIME answer: an integer 0–999, written without leading zeros.
    AimeInteger,
    /// A LaTeX final answer (MATH): trimmed, with a surrounding `$…$` or `\boxed{…}` removed.
    Latex,
    /// GSM8K: the text after the last `####`, trimmed, with thousands separators removed.
    AfterHashes,
    /// Multiple choice: the answer column holds the correct choice's text, `incorrect` the
    /// others; the four are shuffled (seeded), appended to the question as `(A)`–`(D)`, and
    /// the answer is the correct choice's letter.
    ShuffledChoice { incorrect: [&'static str; 3] },
}

/// One pullable problem set.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The name given to `distill data pull`.
    pub name: &'static str,
    pub about: &'static str,
    /// The Hugging Face dataset id, config and split.
    pub dataset: &'static str,
    pub config: &'static str,
    pub split: &'static str,
    /// Needs `HF_TOKEN` (the dataset's terms must be accepted on the Hub).
    pub gated: bool,
    pub id: IdSource,
    pub question: &'static str,
    /// `None`: the dataset has no worked solution; the CSV's `solution` is left empty.
    pub solution: Option<&'static str>,
    /// The source column the answer rule reads.
    pub answer: &'static str,
    pub rule: AnswerRule,
    /// Extra CSV columns kept from the source: (CSV column, source column).
    pub extra: &'static [(&'static str, &'static str)],
}

/// Every problem set `distill data pull` knows.
pub const SOURCES: &[Source] = &[
    Source {
        name: "aime-2024",
        about: "AIME 2024 I and II, 30 problems",
        dataset: "Maxwell-Jia/AIME_2024",
        config: "default",
        split: "train",
        gated: false,
        id: IdSource::Column {
            column: "ID",
            prefix: "",
        },
        question: "Problem",
        solution: Some("Solution"),
        answer: "Answer",
        rule: AnswerRule::AimeInteger,
        extra: &[],
    },
    Source {
        name: "aime-2025",
        about: "AIME 2025 I and II, 30 problems",
        dataset: "yentinglin/aime_2025",
        config: "default",
        split: "train",
        gated: false,
        id: IdSource::Column {
            column: "id",
            prefix: "aime_2025_",
        },
        question: "problem",
        solution: Some("solution"),
        answer: "answer",
        rule: AnswerRule::AimeInteger,
        extra: &[("url", "url")],
    },
    Source {
        name: "math-500",
        about: "MATH-500, the 500-problem subset of MATH test (Lightman et al.)",
        dataset: "HuggingFaceH4/MATH-500",
        config: "default",
        split: "test",
        gated: false,
        id: IdSource::Column {
            column: "unique_id",
            prefix: "",
        },
        question: "problem",
        solution: Some("solution"),
        answer: "answer",
        rule: AnswerRule::Latex,
        extra: &[("subject", "subject"), ("level", "level")],
    },
    Source {
        name: "gpqa-diamond",
        about: "GPQA Diamond, 198 graduate-level multiple-choice questions",
        dataset: "Idavidrein/gpqa",
        config: "gpqa_diamond",
        split: "train",
        gated: true,
        id: IdSource::RowIndex {
            prefix: "gpqa_diamond_train_",
        },
        question: "Question",
        solution: Some("Explanation"),
        answer: "Correct Answer",
        rule: AnswerRule::ShuffledChoice {
            incorrect: [
                "Incorrect Answer 1",
                "Incorrect Answer 2",
                "Incorrect Answer 3",
            ],
        },
        extra: &[
            ("record_id", "Record ID"),
            ("domain", "High-level domain"),
            ("subdomain", "Subdomain"),
        ],
    },
    Source {
        name: "gsm8k-test",
        about: "GSM8K test split, 1,319 grade-school word problems",
        dataset: "openai/gsm8k",
        config: "main",
        split: "test",
        gated: false,
        id: IdSource::RowIndex {
            prefix: "gsm8k_test_",
        },
        question: "question",
        solution: Some("answer"),
        answer: "answer",
        rule: AnswerRule::AfterHashes,
        extra: &[],
    },
];

/// The entry for `name`, or an error that lists the known names.
pub fn find(name: &str) -> Result<&'static Source, String> {
    SOURCES.iter().find(|s| s.name == name).ok_or_else(|| {
        format!(
            "unknown problem set `{name}`; known: {} (see `distill data list`)",
            names().join(", ")
        )
    })
}

/// The known names, in table order.
pub fn names() -> Vec<&'static str> {
    SOURCES.iter().map(|s| s.name).collect()
}

impl Source {
    /// Every source column the mapping reads, in a stable order (checked against the
    /// dataset's features before any row is mapped).
    pub fn columns(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if let IdSource::Column { column, .. } = self.id {
            v.push(column);
        }
        v.push(self.question);
        v.extend(self.solution);
        v.push(self.answer);
        if let AnswerRule::ShuffledChoice { incorrect } = self.rule {
            v.extend(incorrect);
        }
        v.extend(self.extra.iter().map(|(_, src)| *src));
        let mut seen = std::collections::HashSet::new();
        v.retain(|c| seen.insert(*c));
        v
    }

    /// The CSV header: `id,question,solution,answer` then the extra columns.
    pub fn csv_header(&self) -> Vec<&'static str> {
        let mut h = vec!["id", "question", "solution", "answer"];
        h.extend(self.extra.iter().map(|(csv, _)| *csv));
        h
    }

    /// Whether the written file depends on the shuffle seed.
    pub fn uses_seed(&self) -> bool {
        matches!(self.rule, AnswerRule::ShuffledChoice { .. })
    }

    /// The dataset's page on the Hub.
    pub fn hub_url(&self) -> String {
        format!("https://huggingface.co/datasets/{}", self.dataset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_headers_have_no_clash() {
        let mut seen = std::collections::HashSet::new();
        for s in SOURCES {
            assert!(seen.insert(s.name), "{}", s.name);
            let h = s.csv_header();
            let uniq: std::collections::HashSet<_> = h.iter().collect();
            assert_eq!(uniq.len(), h.len(), "{}", s.name);
        }
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let e = find("aime-2023").unwrap_err();
        assert!(e.contains("aime-2024") && e.contains("gsm8k-test"), "{e}");
    }
}
