//! A problem-set row held compactly: its values in one shared text, the names of its columns
//! shared by every row of the set (a clone shares both).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

/// A row's values in one shared text, and the names of its columns (shared by the rows of a
/// set): a clone is one pointer, sharing everything.
#[derive(Debug, Clone)]
pub(super) struct Row(Arc<Data>);

#[derive(Debug)]
struct Data {
    names: Arc<[Box<str>]>,
    /// Where each value ends in `text` (value i is `text[ends[i-1]..ends[i]]`).
    ends: Box<[u32]>,
    text: Box<str>,
}

impl Row {
    pub(super) fn new<'a>(names: Arc<[Box<str>]>, values: impl Iterator<Item = &'a str>) -> Row {
        let (mut text, mut ends) = (String::new(), Vec::with_capacity(names.len()));
        for v in values {
            text.push_str(v);
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        Row(Arc::new(Data {
            names,
            ends: ends.into(),
            text: text.into(),
        }))
    }

    fn value(&self, i: usize) -> &str {
        let d = &self.0;
        let start = if i == 0 { 0 } else { d.ends[i - 1] as usize };
        d.text.get(start..d.ends[i] as usize).unwrap_or("")
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        let i = self.0.names.iter().position(|n| &**n == name)?;
        (i < self.0.ends.len()).then(|| self.value(i))
    }

    /// (name, value) in name order (a map's order).
    pub(super) fn sorted(&self) -> BTreeMap<&str, &str> {
        self.0
            .names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < self.0.ends.len())
            .map(|(i, n)| (&**n, self.value(i)))
            .collect()
    }
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.sorted().serialize(s)
    }
}
