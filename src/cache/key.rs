//! Cache keys: the blake3 hash of a canonical JSON form (object keys sorted at every level)
//! of everything that determines a response, prefixed by the cache's format version.

use serde::Serialize;
use serde_json::Value;

use super::FORMAT_VERSION;

/// A cache key (64 hex characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Key(pub String);

impl Key {
    /// Hashes canonical JSON of `material` (keys sorted at every level).
    pub fn of(material: &Value) -> Key {
        let mut h = hasher();
        h.update(&canonical(material));
        Key(h.finalize().to_hex().to_string())
    }

    /// The key of material given as the pieces of its canonical JSON, in order (the caller
    /// answers for them being [`canonical`]'s bytes of one object: `calls::keys`).
    pub fn of_canonical(pieces: &[&[u8]]) -> Key {
        let mut h = hasher();
        for p in pieces {
            h.update(p);
        }
        Key(h.finalize().to_hex().to_string())
    }

    /// The key of the object whose fields are `fields`: equal to [`Key::of`] of that object,
    /// without building it (a node's prompt, the bulk of its material, is then copied and
    /// written once for its node key and its call key, not once for each).
    pub fn of_fields(fields: &mut [(&str, Part<'_>)]) -> Key {
        fields.sort_by(|a, b| a.0.cmp(b.0));
        let mut h = hasher();
        let mut buf = Vec::with_capacity(256);
        buf.push(b'{');
        for (i, (name, part)) in fields.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            serde_json::to_writer(&mut buf, name).expect("string serializes");
            buf.push(b':');
            match part {
                Part::Value(v) => write_canonical(v, &mut buf),
                Part::Canonical(bytes) => {
                    h.update(&buf);
                    buf.clear();
                    h.update(bytes);
                }
            }
        }
        buf.push(b'}');
        h.update(&buf);
        Key(h.finalize().to_hex().to_string())
    }
}

/// One top-level field of key material for [`Key::of_fields`]: a value, or a value's
/// canonical JSON written once beforehand ([`canonical`]) because several keys share it.
pub enum Part<'a> {
    Value(&'a Value),
    Canonical(&'a [u8]),
}

/// The canonical JSON of `v` (what [`Key::of`] hashes), to be shared by several keys.
pub fn canonical(v: &Value) -> Vec<u8> {
    let mut buf = Vec::with_capacity(256);
    write_canonical(v, &mut buf);
    buf
}

/// A hasher that has taken the key's version prefix (every key starts there).
fn hasher() -> blake3::Hasher {
    let mut h = blake3::Hasher::new();
    h.update(format!("distill-cache-v{FORMAT_VERSION}\n").as_bytes());
    h
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("string serializes");
                out.push(b':');
                write_canonical(&m[*k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        // written in place: no buffer per string (prompts are most of the material)
        other => serde_json::to_writer(&mut *out, other).expect("scalar serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_stable_across_versions() {
        // a key that changed would make every stored answer a miss: this one is pinned
        let material = json!({
            "level": "call",
            "call": {"provider": "openai-compatible", "model": "qwq", "sample": 3,
                     "params": {"temperature": 0.6, "top_k": 40, "max_tokens": 8192, "seed": null}},
            "prompt": {"chat": [{"role": "user",
                                 "content": "Solve \"x\"\n\t\\boxed{½} — ünïcode \u{1F600}"}]},
            "list": [1, -2.5, true, false, "s"]
        });
        assert_eq!(Key::of(&material).0, PINNED);
    }
    const PINNED: &str = "dcf7380d65d06c2c0842e3077b1786e1680de891d729adbea96402af1f748e3e";

    #[test]
    fn a_key_of_fields_equals_the_key_of_their_object() {
        let prompt = json!({"chat": [{"role": "user", "content": "Solve \"x\" — ü"}]});
        let call = json!({"model": "m", "params": {"t": 0.6, "k": 40}, "sample": 2});
        let whole = json!({"level": "call", "call": call, "prompt": prompt});
        let pc = canonical(&prompt);
        let level = json!("call");
        let k = Key::of_fields(&mut [
            ("prompt", Part::Canonical(&pc)),
            ("level", Part::Value(&level)),
            ("call", Part::Value(&call)),
        ]);
        assert_eq!(k, Key::of(&whole));
        assert_eq!(Key::of_fields(&mut []), Key::of(&json!({})));
    }

    #[test]
    fn key_is_canonical_and_sensitive() {
        let a = Key::of(&json!({"model": "m", "params": {"t": 0.6, "k": 40}, "sample": 0}));
        let b = Key::of(&json!({"sample": 0, "params": {"k": 40, "t": 0.6}, "model": "m"}));
        assert_eq!(a, b);
        assert_ne!(
            a,
            Key::of(&json!({"model": "m", "params": {"t": 0.7, "k": 40}, "sample": 0}))
        );
        assert_ne!(
            a,
            Key::of(&json!({"model": "m", "params": {"t": 0.6, "k": 40}, "sample": 1}))
        );
    }
}
