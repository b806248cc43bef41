//! Typed node parameters: how a kind's `Params` struct is read from a node's kind-specific
//! fields, once, at validation. Three named steps, each collecting every problem it finds:
//! `unknown_fields` (every field the kind does not declare, with the nearest valid name),
//! `field_types` (each declared field decoded on its own, so every wrong type is reported,
//! not only the first one serde meets) and `decode` (the whole struct). Also `field_names`,
//! which reads a struct's field names from its serde derive so a kind's documented fields can
//! be checked against its struct, and `nearest`, the "did you mean" used across validation.

use serde::de::{self, DeserializeOwned, Visitor};
use serde_json::{Map, Value};

/// A problem with one field: (field, message, hint).
pub type FieldError = (String, String, Option<String>);

/// The name in `candidates` nearest to `word` (a small edit distance, or a case or
/// separator difference), if any is close enough to be a likely typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let all: Vec<&'a str> = candidates.into_iter().collect();
    crate::grade::names::nearest(word, &all)
}

/// "did you mean `x`?" for `word` among `candidates`, or an empty string.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match nearest(word, candidates) {
        Some(c) => format!("did you mean `{c}`? "),
        None => String::new(),
    }
}

/// Every key of `params` not in `allowed`, each with a hint naming the nearest valid field
/// (among `allowed` and the fields every node has).
pub fn unknown_fields(
    params: &Map<String, Value>,
    allowed: &[&str],
    common: &[&str],
) -> Vec<FieldError> {
    params
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            let near = did_you_mean(k, allowed.iter().chain(common).copied());
            let list = if allowed.is_empty() {
                "no fields of its own".to_string()
            } else {
                format!("also takes: {}", allowed.join(", "))
            };
            (
                k.clone(),
                format!("unknown field `{k}`"),
                Some(format!(
                    "{near}every node takes: {}; this kind {list}",
                    common.join(", ")
                )),
            )
        })
        .collect()
}

/// Decodes each known field of `params` on its own into `P` (whose fields all have
/// defaults), so that every field of the wrong type is reported.
pub fn field_types<P: DeserializeOwned>(
    params: &Map<String, Value>,
    allowed: &[&str],
    doc: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (k, v) in params {
        if !allowed.contains(&k.as_str()) {
            continue;
        }
        let one: Map<String, Value> = [(k.clone(), v.clone())].into_iter().collect();
        if let Err(e) = serde_json::from_value::<P>(Value::Object(one)) {
            out.push((
                k.clone(),
                format!("`{k}: {v}`: {e}"),
                doc(k).map(|d| format!("`{k}`: {d}")),
            ));
        }
    }
    out
}

/// Decodes the known fields of `params` into `P`.
pub fn decode<P: DeserializeOwned>(
    params: &Map<String, Value>,
    allowed: &[&str],
) -> Result<P, String> {
    let known: Map<String, Value> = params
        .iter()
        .filter(|(k, _)| allowed.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    serde_json::from_value(Value::Object(known)).map_err(|e| e.to_string())
}

/// The field names of a struct that derives `Deserialize` (read from the derive: serde hands
/// them to `deserialize_struct`).
pub fn field_names<P: DeserializeOwned>() -> &'static [&'static str] {
    struct Names;
    #[derive(Debug)]
    struct Found(&'static [&'static str]);
    impl std::fmt::Display for Found {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fields")
        }
    }
    impl std::error::Error for Found {}
    impl de::Error for Found {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Found(&[])
        }
    }
    impl<'de> de::Deserializer<'de> for Names {
        type Error = Found;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
            Err(Found(&[]))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Found> {
            Err(Found(fields))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    match P::deserialize(Names) {
        Err(Found(f)) => f,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct P {
        k: Option<u64>,
        strategy: Option<String>,
    }

    #[test]
    fn reads_struct_field_names() {
        assert_eq!(field_names::<P>(), &["k", "strategy"]);
    }

    #[test]
    fn reports_every_unknown_field_with_the_nearest_name() {
        let m: Map<String, Value> =
            serde_json::from_str(r#"{"kk": 1, "stratgy": "x", "zzzzzz": 2, "k": 1}"#).unwrap();
        let e = unknown_fields(&m, &["k", "strategy"], &["kind", "model"]);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].2.as_deref().unwrap().starts_with("did you mean `k`?"));
        assert!(
            e[1].2
                .as_deref()
                .unwrap()
                .starts_with("did you mean `strategy`?")
        );
        assert!(!e[2].2.as_deref().unwrap().contains("did you mean"));
    }

    #[test]
    fn reports_every_wrong_type() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"k": "x", "strategy": 3}"#).unwrap();
        let e = field_types::<P>(&m, &["k", "strategy"], &|_| None);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            nearest("temprature", ["temperature", "top_p"]),
            Some("temperature")
        );
        assert_eq!(
            nearest("reasner", ["reasoner", "summarizer"]),
            Some("reasoner")
        );
        assert_eq!(nearest("xyz", ["reasoner"]), None);
    }
}
