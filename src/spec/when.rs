//! The `when:` condition language of a node: parsing and evaluation.
//!
//! Grammar (hand-written: it is six rules, and the maintained expression crates either are
//! AGPL or evaluate far more than a condition needs):
//! ```text
//! expr  := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" expr ")" | ref [("==" | "!=") literal]
//! literal := true | false | null | number | "text" | 'text'
//! ```
//! A `ref` is `node.field` (in a repeat body also `previous.node.field`); alone it tests
//! truthiness (false, null, 0 and "" are false). References resolve through a callback so
//! that repeat expansion can map `previous.attempt` to `attempt_3`. Parentheses and `not`
//! nest at most [`MAX_DEPTH`] deep (the parser recurses), and a condition is at most
//! [`MAX_LEN`] characters.

use serde_json::Value;

use super::Ref;

#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    Truthy(Ref),
    Eq(Ref, Value, bool),
}

impl Cond {
    pub fn refs(&self) -> Vec<&Ref> {
        match self {
            Cond::Or(v) | Cond::And(v) => v.iter().flat_map(|c| c.refs()).collect(),
            Cond::Not(c) => c.refs(),
            Cond::Truthy(r) | Cond::Eq(r, _, _) => vec![r],
        }
    }

    /// Evaluates with `get(ref)` giving the referenced value (None when absent).
    pub fn eval(&self, get: &dyn Fn(&Ref) -> Option<Value>) -> bool {
        match self {
            Cond::Or(v) => v.iter().any(|c| c.eval(get)),
            Cond::And(v) => v.iter().all(|c| c.eval(get)),
            Cond::Not(c) => !c.eval(get),
            Cond::Truthy(r) => truthy(get(r).as_ref()),
            Cond::Eq(r, lit, eq) => {
                let v = get(r).unwrap_or(Value::Null);
                let same = match (&v, lit) {
                    (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                    (Value::String(a), Value::Number(b)) => {
                        a.trim().parse::<f64>().ok() == b.as_f64()
                    }
                    _ => &v == lit,
                };
                same == *eq
            }
        }
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        _ => true,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Lit(Value),
    Op(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push(Tok::Op(if c == '(' { "(" } else { ")" }));
            i += 1;
        } else if (c == '=' || c == '!') && cs.get(i + 1) == Some(&'=') {
            out.push(Tok::Op(if c == '=' { "==" } else { "!=" }));
            i += 2;
        } else if c == '"' || c == '\'' {
            let end = cs[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or("unterminated string")?;
            out.push(Tok::Lit(Value::String(
                cs[i + 1..i + 1 + end].iter().collect(),
            )));
            i += end + 2;
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let start = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || "_.-".contains(cs[i])) {
                i += 1;
            }
            let w: String = cs[start..i].iter().collect();
            out.push(match w.as_str() {
                "true" => Tok::Lit(Value::Bool(true)),
                "false" => Tok::Lit(Value::Bool(false)),
                "null" => Tok::Lit(Value::Null),
                _ => match w.parse::<f64>() {
                    Ok(f) => Tok::Lit(serde_json::json!(f)),
                    Err(_) => Tok::Word(w),
                },
            });
        } else {
            return Err(format!("unexpected `{c}`"));
        }
    }
    Ok(out)
}

/// Deepest nesting of `(` and `not` in a condition.
pub const MAX_DEPTH: usize = 64;
/// Longest condition, in characters.
pub const MAX_LEN: usize = 10_000;

struct P<'a> {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    resolve: &'a dyn Fn(&str) -> Result<Ref, String>,
}

impl P<'_> {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x == w)
    }
    fn expr(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::Or(v)
        })
    }
    fn and(&mut self) -> Result<Cond, String> {
        let mut v = vec![self.unary()?];
        while self.peek_word("and") {
            self.pos += 1;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Cond::And(v)
        })
    }
    fn unary(&mut self) -> Result<Cond, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "parentheses and `not` nest deeper than {MAX_DEPTH}; simplify the condition"
            ));
        }
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }
    fn unary_inner(&mut self) -> Result<Cond, String> {
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Word(w)) if w == "not" => {
                self.pos += 1;
                Ok(Cond::Not(Box::new(self.unary()?)))
            }
            Some(Tok::Op("(")) => {
                self.pos += 1;
                let e = self.expr()?;
                if self.toks.get(self.pos) != Some(&Tok::Op(")")) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                self.pos += 1;
                let r = (self.resolve)(&w)?;
                if r.field.is_none() {
                    return Err(format!(
                        "`{w}` names a node; say which output, e.g. `{w}.correct`"
                    ));
                }
                match self.toks.get(self.pos) {
                    Some(Tok::Op(op @ ("==" | "!="))) => {
                        let eq = *op == "==";
                        self.pos += 1;
                        match self.toks.get(self.pos).cloned() {
                            Some(Tok::Lit(v)) => {
                                self.pos += 1;
                                Ok(Cond::Eq(r, v, eq))
                            }
                            _ => Err("expected a literal (true, false, null, a number or a quoted text) after the comparison".into()),
                        }
                    }
                    _ => Ok(Cond::Truthy(r)),
                }
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("unexpected end of condition".into()),
        }
    }
}

/// Parses a condition; `resolve` maps each reference text to a node output.
pub fn parse(text: &str, resolve: &dyn Fn(&str) -> Result<Ref, String>) -> Result<Cond, String> {
    if text.chars().count() > MAX_LEN {
        return Err(format!("a condition is at most {MAX_LEN} characters"));
    }
    let toks = lex(text)?;
    let mut p = P {
        toks,
        pos: 0,
        depth: 0,
        resolve,
    };
    let c = p.expr()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected text after position {}", p.pos));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}a.correct{}", "(".repeat(4000), ")".repeat(4000));
        assert!(parse(&deep, &r).unwrap_err().contains("nest deeper"));
        let nots = format!("{}a.correct", "not ".repeat(2000));
        assert!(parse(&nots, &r).unwrap_err().contains("nest deeper"));
        let ok = format!("{}a.correct{}", "(".repeat(20), ")".repeat(20));
        assert!(parse(&ok, &r).is_ok());
    }

    fn r(s: &str) -> Result<Ref, String> {
        let (n, f) = s.split_once('.').ok_or("no field")?;
        Ok(Ref {
            node: n.into(),
            field: Some(f.into()),
        })
    }

    #[test]
    fn parses_and_evaluates() {
        let c = parse(
            "not a.correct and (b.answer == 5 or b.answer == 'x')",
            &|s| r(s),
        )
        .unwrap();
        let get = |rf: &Ref| -> Option<Value> {
            match (rf.node.as_str(), rf.field.as_deref()) {
                ("a", Some("correct")) => Some(Value::Bool(false)),
                ("b", Some("answer")) => Some(Value::String("5".into())),
                _ => None,
            }
        };
        assert!(c.eval(&get));
        let c2 = parse("a.correct != false", &|s| r(s)).unwrap();
        assert!(!c2.eval(&get));
    }

    #[test]
    fn rejects_bad_conditions() {
        for bad in [
            "",
            "not",
            "a.correct ==",
            "(a.correct",
            "a.correct == b.x",
            "a.correct $",
        ] {
            assert!(parse(bad, &|s| r(s)).is_err(), "{bad}");
        }
    }
}
