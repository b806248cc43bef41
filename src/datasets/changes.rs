//! What a pull would change in a problem file already there: rows added, removed and
//! edited (matched by the `id` column, else by position) and a changed header, so `distill
//! data pull` can refuse to overwrite recorded data silently and say what differs.

use std::collections::BTreeMap;

/// The differences between the local file and the pulled content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The header, when it changed: (old, new).
    pub header: Option<(Vec<String>, Vec<String>)>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Row id and the columns whose value changed.
    pub edited: Vec<(String, Vec<String>)>,
    /// The local file could not be read as CSV (its error).
    pub unreadable: Option<String>,
}

/// Ids listed in a message before "and N more".
const SHOWN: usize = 8;

type Table = (
    Vec<String>,
    BTreeMap<String, BTreeMap<String, String>>,
    Vec<String>,
);

/// Header, rows by key, keys in order.
fn table(bytes: &[u8]) -> Result<Table, String> {
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(String::from)
        .collect();
    let id_col = header.iter().position(|h| h == "id");
    let mut rows = BTreeMap::new();
    let mut order = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| e.to_string())?;
        let key = match id_col.and_then(|c| rec.get(c)) {
            Some(id) => id.to_string(),
            None => format!("row {i}"),
        };
        let fields = header
            .iter()
            .zip(rec.iter())
            .map(|(h, v)| (h.clone(), v.to_string()))
            .collect();
        order.push(key.clone());
        rows.insert(key, fields);
    }
    Ok((header, rows, order))
}

/// Compares the local file's bytes with the new content.
pub fn diff(old: &[u8], new: &[u8]) -> Changes {
    let mut c = Changes::default();
    let (nh, nrows, norder) = match table(new) {
        Ok(t) => t,
        Err(e) => {
            c.unreadable = Some(format!("the new content: {e}"));
            return c;
        }
    };
    let (oh, orows, oorder) = match table(old) {
        Ok(t) => t,
        Err(e) => {
            c.unreadable = Some(e);
            return c;
        }
    };
    if oh != nh {
        c.header = Some((oh, nh));
    }
    c.added = norder
        .iter()
        .filter(|k| !orows.contains_key(*k))
        .cloned()
        .collect();
    c.removed = oorder
        .iter()
        .filter(|k| !nrows.contains_key(*k))
        .cloned()
        .collect();
    for k in &norder {
        let (Some(o), Some(n)) = (orows.get(k), nrows.get(k)) else {
            continue;
        };
        let mut cols: Vec<String> = n
            .iter()
            .filter(|(h, v)| o.get(*h) != Some(*v))
            .map(|(h, _)| h.clone())
            .collect();
        cols.extend(o.keys().filter(|h| !n.contains_key(*h)).cloned());
        if !cols.is_empty() {
            c.edited.push((k.clone(), cols));
        }
    }
    c
}

impl Changes {
    /// Nothing to say (also true when only the bytes' layout changed, e.g. quoting).
    pub fn is_empty(&self) -> bool {
        self.header.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.edited.is_empty()
            && self.unreadable.is_none()
    }

    /// One line per kind of change, e.g. `2 rows added: a, b`.
    pub fn describe(&self) -> Vec<String> {
        let list = |ids: &[String]| {
            let mut s = ids
                .iter()
                .take(SHOWN)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if ids.len() > SHOWN {
                s.push_str(&format!(" and {} more", ids.len() - SHOWN));
            }
            s
        };
        let mut out = Vec::new();
        if let Some(e) = &self.unreadable {
            out.push(format!("the local file does not read as CSV ({e})"));
        }
        if let Some((o, n)) = &self.header {
            out.push(format!(
                "columns changed: {} → {}",
                o.join(","),
                n.join(",")
            ));
        }
        if !self.added.is_empty() {
            out.push(format!(
                "{} row(s) added: {}",
                self.added.len(),
                list(&self.added)
            ));
        }
        if !self.removed.is_empty() {
            out.push(format!(
                "{} row(s) removed: {}",
                self.removed.len(),
                list(&self.removed)
            ));
        }
        if !self.edited.is_empty() {
            let shown: Vec<String> = self
                .edited
                .iter()
                .take(SHOWN)
                .map(|(id, cols)| format!("{id} ({})", cols.join(", ")))
                .collect();
            let more = if self.edited.len() > SHOWN {
                format!(" and {} more", self.edited.len() - SHOWN)
            } else {
                String::new()
            };
            out.push(format!(
                "{} row(s) edited: {}{more}",
                self.edited.len(),
                shown.join("; ")
            ));
        }
        if out.is_empty() {
            out.push("the same rows, written differently (quoting or line endings)".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_removed_and_edited_rows_by_id() {
        let old = b"id,question,answer\na,q1,1\nb,q2,2\nc,q3,3\n";
        let new = b"id,question,answer\na,q1,1\nc,q3,33\nd,q4,4\n";
        let c = diff(old, new);
        assert_eq!(c.added, ["d"]);
        assert_eq!(c.removed, ["b"]);
        assert_eq!(c.edited, [("c".to_string(), vec!["answer".to_string()])]);
        assert!(c.header.is_none());
        let d = c.describe().join("\n");
        assert!(d.contains("1 row(s) added: d"), "{d}");
        assert!(d.contains("1 row(s) edited: c (answer)"), "{d}");
        assert!(diff(old, old).is_empty());
    }

    #[test]
    fn a_new_column_and_many_ids() {
        let old = b"id,question\na,q\n";
        let mut new = String::from("id,question,answer\na,q,1\n");
        for i in 0..20 {
            new.push_str(&format!("n{i},q,1\n"));
        }
        let c = diff(old, new.as_bytes());
        assert!(c.header.is_some());
        let d = c.describe().join("\n");
        assert!(
            d.contains("20 row(s) added") && d.contains("and 12 more"),
            "{d}"
        );
        assert_eq!(c.edited.len(), 1, "{c:?}");
    }
}
