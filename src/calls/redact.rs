//! Key redaction: the API key values of a run's models are replaced by `[redacted]` in every
//! text distill writes from a call (answers before they are used or cached, error and retry
//! messages, streamed pieces), including an 8-character or longer start of a key (a server's
//! echo may have been cut inside it). Keys shorter than 8 characters are not searched for:
//! they would match ordinary text.

/// What stands in for a key.
pub const MASK: &str = "[redacted]";
const MIN_KEY: usize = 8;

/// The key values to hide.
#[derive(Debug, Default, Clone)]
pub struct Redactor {
    keys: Vec<String>,
}

impl Redactor {
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        let mut keys: Vec<String> = keys.into_iter().filter(|k| k.len() >= MIN_KEY).collect();
        keys.sort();
        keys.dedup();
        Redactor { keys }
    }

    /// True when `s` holds a key or the start of one.
    fn hit(&self, s: &str) -> bool {
        self.keys
            .iter()
            .any(|k| k.get(..MIN_KEY).is_some_and(|p| s.contains(p)))
    }

    /// `s` with every key (and every long enough start of one) replaced.
    pub fn redact<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        if self.keys.is_empty() || !self.hit(s) {
            return std::borrow::Cow::Borrowed(s);
        }
        let mut s = s.to_string();
        for k in &self.keys {
            s = s.replace(k.as_str(), MASK);
            for n in (MIN_KEY..k.len()).rev() {
                if let Some(prefix) = k.get(..n)
                    && s.contains(prefix)
                {
                    s = s.replace(prefix, MASK);
                }
            }
        }
        std::borrow::Cow::Owned(s)
    }

    /// Redacts in place; true when something was replaced.
    pub fn redact_in_place(&self, s: &mut String) -> bool {
        if self.keys.is_empty() || !self.hit(s) {
            return false;
        }
        *s = self.redact(s).into_owned();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_keys_and_their_starts() {
        let r = Redactor::new(["sk-test-SECRET-123".to_string(), "short".to_string()]);
        assert_eq!(
            r.redact("key sk-test-SECRET-123 here"),
            "key [redacted] here"
        );
        assert_eq!(r.redact("cut sk-test-SEC"), "cut [redacted]");
        assert_eq!(r.redact("short words stay"), "short words stay");
        let mut s = "no key".to_string();
        assert!(!r.redact_in_place(&mut s));
    }
}
