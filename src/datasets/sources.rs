//! `data/SOURCES.md`: the record of where each pulled problem set came from — one table
//! line per file (file, name, dataset, config/split, revision, rows, seed, blake3, date),
//! replaced when the file is pulled again. Lines it does not own are kept as they are.

use std::path::Path;

const HEADER: &str =
    "| file | name | dataset | config/split | revision | rows | seed | blake3 | pulled |";
const RULE: &str = "|---|---|---|---|---|---|---|---|---|";
const PREAMBLE: &str = "# Problem set sources\n\n\
Written by `distill data pull NAME`: one line per file, replaced when the file is pulled again.\n\
`blake3` is the hash of the file's bytes (the problem-file hash a run's `config.json` records);\n\
`revision` is the dataset's commit on the Hugging Face Hub when it was pulled (`unknown` if the\n\
Hub did not say; the rows come from the datasets-server's copy of that dataset's main branch);\n\
`seed` is the choice-shuffle seed where the file depends on one.\n";

/// One recorded pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The file, relative to SOURCES.md's folder when it is inside it.
    pub file: String,
    pub name: String,
    pub dataset: String,
    pub config_split: String,
    pub revision: String,
    pub rows: usize,
    pub seed: Option<u64>,
    pub blake3: String,
    pub pulled: String,
}

impl Entry {
    fn line(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.file,
            self.name,
            self.dataset,
            self.config_split,
            self.revision,
            self.rows,
            self.seed
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            self.blake3,
            self.pulled
        )
    }

    fn parse(line: &str) -> Option<Entry> {
        let t = line.trim();
        if !t.starts_with("| `") {
            return None;
        }
        let cells: Vec<&str> = t
            .trim_start_matches('|')
            .trim_end_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 9 {
            return None;
        }
        Some(Entry {
            file: cells[0].trim_matches('`').to_string(),
            name: cells[1].to_string(),
            dataset: cells[2].to_string(),
            config_split: cells[3].to_string(),
            revision: cells[4].to_string(),
            rows: cells[5].parse().ok()?,
            seed: cells[6].parse().ok(),
            blake3: cells[7].to_string(),
            pulled: cells[8].to_string(),
        })
    }
}

/// The entries of a SOURCES.md (none if it does not exist).
pub fn read(path: &Path) -> Vec<Entry> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter_map(Entry::parse).collect())
        .unwrap_or_default()
}

/// How `file` is named in the SOURCES.md at `sources_md`: relative to its folder when
/// inside it, else as given.
pub fn file_key(sources_md: &Path, file: &Path) -> String {
    let dir = match sources_md.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let rel = match file.strip_prefix(dir) {
        Ok(r) => r.to_path_buf(),
        Err(_) => match (dir.canonicalize(), file.canonicalize()) {
            (Ok(d), Ok(f)) => f.strip_prefix(&d).map(Path::to_path_buf).unwrap_or(f),
            _ => file.to_path_buf(),
        },
    };
    rel.to_string_lossy().replace('\\', "/")
}

/// Records `entry`, replacing the line of the same file, and writes SOURCES.md through a
/// temporary file and a rename.
pub fn record(path: &Path, entry: &Entry) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let text = updated(&old, entry);
    crate::atomic::write_atomically(path, text.as_bytes())
}

/// The new text of SOURCES.md.
fn updated(old: &str, entry: &Entry) -> String {
    let mut lines: Vec<String> = old.lines().map(String::from).collect();
    let new_line = entry.line();
    if let Some(i) = lines
        .iter()
        .position(|l| Entry::parse(l).is_some_and(|e| e.file == entry.file))
    {
        lines[i] = new_line;
        // A second line for the same file (hand-edited) would be stale: drop it.
        let mut k = i + 1;
        while k < lines.len() {
            if Entry::parse(&lines[k]).is_some_and(|e| e.file == entry.file) {
                lines.remove(k);
            } else {
                k += 1;
            }
        }
    } else if let Some(i) = lines
        .iter()
        .rposition(|l| Entry::parse(l).is_some() || l.trim() == RULE)
    {
        lines.insert(i + 1, new_line);
    } else {
        if lines.is_empty() {
            lines.extend(PREAMBLE.lines().map(String::from));
        }
        lines.push(String::new());
        lines.push(HEADER.to_string());
        lines.push(RULE.to_string());
        lines.push(new_line);
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(file: &str, hash: &str) -> Entry {
        Entry {
            file: file.into(),
            name: "aime-2024".into(),
            dataset: "Maxwell-Jia/AIME_2024".into(),
            config_split: "default/train".into(),
            revision: "unknown".into(),
            rows: 30,
            seed: None,
            blake3: hash.into(),
            pulled: "2025-01-01".into(),
        }
    }

    #[test]
    fn adds_then_replaces_and_keeps_other_text() {
        let t = updated("", &e("a.csv", "h1"));
        assert!(t.starts_with("# Problem set sources"));
        let t = format!("{t}\nmy notes\n");
        let t = updated(&t, &e("b.csv", "h2"));
        let t = updated(&t, &e("a.csv", "h3"));
        let entries: Vec<Entry> = t.lines().filter_map(Entry::parse).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].blake3, "h3");
        assert_eq!(entries[1].file, "b.csv");
        assert!(t.contains("my notes"));
        assert_eq!(Entry::parse(&e("x.csv", "h").line()), Some(e("x.csv", "h")));
    }

    #[test]
    fn file_keys_are_relative_to_the_folder() {
        let k = file_key(
            Path::new("data/SOURCES.md"),
            Path::new("data/aime_2024.csv"),
        );
        assert_eq!(k, "aime_2024.csv");
        let k = file_key(Path::new("data/SOURCES.md"), Path::new("/tmp/x.csv"));
        assert_eq!(k, "/tmp/x.csv");
    }
}
