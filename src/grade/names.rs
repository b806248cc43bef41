//! Named choices (a comparison, an extractor, a summary strategy): one table per choice
//! of (value, name, what it does), from which the YAML spelling (serde), the command line's
//! parsing, help texts, error messages and "did you mean" hints are all made. A choice is
//! written in one place: its table.

/// A choice with a fixed set of names.
pub trait Named: Copy + PartialEq + 'static {
    /// What one of these is called in messages ("comparison").
    const WHAT: &'static str;
    /// Every value with its name and a one-line description.
    const ALL: &'static [(Self, &'static str, &'static str)];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _, _)| *v == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("?")
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n, _)| *n).collect()
    }

    /// "exact, numeric, math" — for help texts and hints.
    fn list() -> String {
        Self::names().join(", ")
    }

    /// The value of `name`, or a message naming the nearest valid name and all of them.
    fn parse_name(name: &str) -> Result<Self, String> {
        if let Some((v, _, _)) = Self::ALL.iter().find(|(_, n, _)| *n == name) {
            return Ok(*v);
        }
        Err(unknown(Self::WHAT, name, &Self::names()))
    }
}

/// "unknown comparison `mth`: did you mean `math`? (comparisons: exact, numeric, math)".
pub fn unknown(what: &str, name: &str, names: &[&str]) -> String {
    let near = nearest(name, names)
        .map(|n| format!(" did you mean `{n}`?"))
        .unwrap_or_default();
    let plural = match what.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{what}s"),
    };
    format!(
        "unknown {what} `{name}`:{near} ({plural}: {})",
        names.join(", ")
    )
}

/// The name among `names` nearest to `word`, when close enough to be a typo.
pub fn nearest<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase().replace('-', "_");
    names
        .iter()
        .map(|n| (strsim::levenshtein(&w, &n.to_ascii_lowercase()), *n))
        .filter(|(d, n)| *d <= (n.len().max(w.len()) / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Implements `Serialize` and `Deserialize` of a unit-only `Named` enum as its name.
#[macro_export]
macro_rules! named_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::grade::names::Named::name(*self))
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t as $crate::grade::names::Named>::parse_name(&s)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
