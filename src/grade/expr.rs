//! A tiny LaTeX-ish expression parser for scalar answers (evaluation is in `eval`).
//!
//! Owns: tokenizing and parsing one scalar expression (numbers, `\frac`, `\sqrt`, `\pi`, powers,
//! products incl. implicit ones like `2\sqrt{3}`, sums, quotients, unary minus, factorial,
//! `\sin`/`\cos`/`\tan`/`\ln`/`\exp`), and printing a canonical form for expressions with free
//! variables. Deliberately does not: evaluate (`eval`), handle tuples/sets/matrices (`equiv`),
//! clean LaTeX decoration (`normalize`), or do symbolic algebra (`x+x` vs `2x` stays different).
//!
//! Guards: inputs over `MAX_TOKENS` tokens or nesting over `MAX_DEPTH` fail to parse (never
//! hang, never overflow the stack).

use super::eval::{Val, eval};

const MAX_TOKENS: usize = 2000;
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Letter(char),
    Cmd(String),
    Op(char),
}

/// Parsed scalar expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(String),
    Sym(String),
    Add(Vec<Node>),
    Mul(Vec<Node>),
    Neg(Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Root(Box<Node>, Box<Node>),
    Func(String, Box<Node>),
    Fact(Box<Node>),
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        if out.len() > MAX_TOKENS {
            return None;
        }
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let st = i;
            while i < cs.len() && cs[i].is_ascii_digit() {
                i += 1;
            }
            if i < cs.len() && cs[i] == '.' && cs.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
                while i < cs.len() && cs[i].is_ascii_digit() {
                    i += 1;
                }
            }
            // Scientific notation `1e3`, `2.5E-4`: only directly after digits.
            if i < cs.len() && (cs[i] == 'e' || cs[i] == 'E') {
                let mut j = i + 1;
                if j < cs.len() && (cs[j] == '+' || cs[j] == '-') {
                    j += 1;
                }
                if j < cs.len() && cs[j].is_ascii_digit() {
                    while j < cs.len() && cs[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            out.push(Tok::Num(cs[st..i].iter().collect()));
        } else if c == '\\' {
            let st = i + 1;
            let mut j = st;
            while j < cs.len() && cs[j].is_ascii_alphabetic() {
                j += 1;
            }
            if j == st {
                // `\{`, `\%`, `\,` ...: one symbol char.
                match cs.get(st) {
                    Some(&d) => {
                        if !matches!(d, ',' | ';' | '!' | ':' | ' ') {
                            out.push(Tok::Cmd(d.to_string()));
                        }
                        i = st + 1;
                    }
                    None => return None,
                }
            } else {
                let name: String = cs[st..j].iter().collect();
                if !matches!(
                    name.as_str(),
                    "left"
                        | "right"
                        | "displaystyle"
                        | "quad"
                        | "qquad"
                        | "bigl"
                        | "bigr"
                        | "big"
                        | "Big"
                ) {
                    out.push(Tok::Cmd(name));
                }
                i = j;
            }
        } else if c.is_alphabetic() {
            out.push(Tok::Letter(c));
            i += 1;
        } else {
            out.push(Tok::Op(c));
            i += 1;
        }
    }
    (out.len() <= MAX_TOKENS).then_some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

type PResult = Result<Node, ()>;

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn is_op(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Op(c))
    }
    fn is_cmd(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(n)) if n == name)
    }
    fn enter(&mut self) -> Result<(), ()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(())
        } else {
            Ok(())
        }
    }

    fn expr(&mut self) -> PResult {
        self.enter()?;
        let mut terms = vec![self.term()?];
        loop {
            if self.is_op('+') {
                self.pos += 1;
                terms.push(self.term()?);
            } else if self.is_op('-') {
                self.pos += 1;
                terms.push(Node::Neg(Box::new(self.term()?)));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Ok(if terms.len() == 1 {
            terms.pop().ok_or(())?
        } else {
            Node::Add(terms)
        })
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Letter(_)) => true,
            Some(Tok::Op(c)) => matches!(c, '(' | '{' | '['),
            Some(Tok::Cmd(n)) => !matches!(
                n.as_str(),
                "cdot"
                    | "times"
                    | "div"
                    | "}"
                    | "cup"
                    | "cap"
                    | "le"
                    | "leq"
                    | "ge"
                    | "geq"
                    | "ne"
                    | "neq"
                    | "pm"
                    | "mp"
                    | "to"
                    | "in"
            ),
            None => false,
        }
    }

    fn term(&mut self) -> PResult {
        let mut factors = vec![self.unary()?];
        loop {
            if self.is_op('*') || self.is_cmd("cdot") || self.is_cmd("times") {
                self.pos += 1;
                factors.push(self.unary()?);
            } else if self.is_op('/') || self.is_cmd("div") {
                self.pos += 1;
                let d = self.unary()?;
                let mut num = std::mem::take(&mut factors);
                let num = if num.len() == 1 {
                    num.pop().ok_or(())?
                } else {
                    Node::Mul(num)
                };
                factors.push(Node::Div(Box::new(num), Box::new(d)));
            } else if self.starts_atom() {
                let f = self.power()?;
                // Mixed number: `2\frac{1}{2}` = 5/2 (integer literal directly before a fraction of literals).
                if factors.len() == 1
                    && is_int_literal_or_neg(&factors[0])
                    && matches!(&f, Node::Div(a, b) if is_int_lit(a) && is_int_lit(b))
                {
                    let whole = factors.pop().ok_or(())?;
                    factors.push(match whole {
                        Node::Neg(w) => Node::Neg(Box::new(Node::Add(vec![*w, f]))),
                        w => Node::Add(vec![w, f]),
                    });
                } else {
                    factors.push(f);
                }
            } else {
                break;
            }
        }
        Ok(if factors.len() == 1 {
            factors.pop().ok_or(())?
        } else {
            Node::Mul(factors)
        })
    }

    fn unary(&mut self) -> PResult {
        self.enter()?;
        let r = if self.is_op('-') {
            self.pos += 1;
            Node::Neg(Box::new(self.unary()?))
        } else if self.is_op('+') {
            self.pos += 1;
            self.unary()?
        } else {
            self.power()?
        };
        self.depth -= 1;
        Ok(r)
    }

    fn power(&mut self) -> PResult {
        let mut base = self.postfix()?;
        while self.is_op('^') {
            self.pos += 1;
            let e = self.exponent()?;
            base = Node::Pow(Box::new(base), Box::new(e));
            while self.is_op('!') {
                self.pos += 1;
                base = Node::Fact(Box::new(base));
            }
        }
        Ok(base)
    }

    fn exponent(&mut self) -> PResult {
        self.enter()?;
        let r = match self.peek().cloned() {
            // Human intent: `2^10` is 2^{10} (whole digit run), unlike strict TeX.
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(Node::Num(n))
            }
            Some(Tok::Op('-')) => {
                self.pos += 1;
                Ok(Node::Neg(Box::new(self.exponent()?)))
            }
            _ => self.atom(),
        };
        self.depth -= 1;
        r
    }

    fn postfix(&mut self) -> PResult {
        let mut a = self.atom()?;
        while self.is_op('!') {
            self.pos += 1;
            a = Node::Fact(Box::new(a));
        }
        Ok(a)
    }

    /// A TeX macro argument: `{...}` or a single token (a digit run gives only its first digit).
    fn arg(&mut self) -> PResult {
        match self.peek().cloned() {
            Some(Tok::Op('{')) => self.atom(),
            Some(Tok::Num(n)) => {
                let mut it = n.chars();
                let first = it.next().ok_or(())?;
                if !first.is_ascii_digit() {
                    return Err(());
                }
                let rest: String = it.collect();
                if rest.is_empty() {
                    self.pos += 1;
                } else {
                    self.toks[self.pos] = Tok::Num(rest);
                }
                Ok(Node::Num(first.to_string()))
            }
            Some(Tok::Letter(c)) => {
                self.pos += 1;
                Ok(Node::Sym(c.to_string()))
            }
            Some(Tok::Cmd(_)) => self.atom(),
            _ => Err(()),
        }
    }

    fn group(&mut self, close: char) -> PResult {
        self.enter()?;
        let e = self.expr()?;
        if !self.is_op(close) {
            return Err(());
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(e)
    }

    fn atom(&mut self) -> PResult {
        self.enter()?;
        let t = self.peek().cloned().ok_or(())?;
        self.pos += 1;
        let r = match t {
            Tok::Num(n) => Node::Num(n),
            Tok::Letter(c) => {
                let mut name = c.to_string();
                if self.is_op('_') {
                    self.pos += 1;
                    let sub = self.arg()?;
                    name = format!("{name}_{{{}}}", canonical(&sub));
                }
                Node::Sym(name)
            }
            Tok::Op('(') => self.group(')')?,
            Tok::Op('[') => self.group(']')?,
            Tok::Op('{') => self.group('}')?,
            Tok::Op(_) => return Err(()),
            Tok::Cmd(name) => match name.as_str() {
                "frac" | "dfrac" | "tfrac" | "cfrac" => {
                    let a = self.arg()?;
                    let b = self.arg()?;
                    Node::Div(Box::new(a), Box::new(b))
                }
                "sqrt" => {
                    let n = if self.is_op('[') {
                        self.pos += 1;
                        self.group(']')?
                    } else {
                        Node::Num("2".into())
                    };
                    let x = self.arg()?;
                    Node::Root(Box::new(n), Box::new(x))
                }
                "sin" | "cos" | "tan" | "ln" | "exp" | "log" => {
                    let x = self.power()?;
                    Node::Func(name, Box::new(x))
                }
                "pi" => Node::Sym("\\pi".into()),
                n if n.chars().all(|c| c.is_ascii_alphabetic()) => Node::Sym(format!("\\{n}")),
                _ => return Err(()),
            },
        };
        self.depth -= 1;
        Ok(r)
    }
}

fn is_int_lit(n: &Node) -> bool {
    matches!(n, Node::Num(s) if s.chars().all(|c| c.is_ascii_digit()))
}

fn is_int_literal_or_neg(n: &Node) -> bool {
    match n {
        Node::Neg(x) => is_int_lit(x),
        x => is_int_lit(x),
    }
}

/// Parse a whole scalar expression; `None` when it is not one (or is too large/deep).
pub fn parse(s: &str) -> Option<Node> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let n = p.expr().ok()?;
    (p.pos == p.toks.len()).then_some(n)
}

/// True when the expression contains a symbol other than the known constant `\pi`.
pub fn has_free_vars(n: &Node) -> bool {
    match n {
        Node::Num(_) => false,
        Node::Sym(s) => s != "\\pi",
        Node::Add(v) | Node::Mul(v) => v.iter().any(has_free_vars),
        Node::Neg(a) | Node::Fact(a) => has_free_vars(a),
        Node::Func(f, a) => f == "log" || has_free_vars(a),
        Node::Div(a, b) | Node::Pow(a, b) | Node::Root(a, b) => {
            has_free_vars(a) || has_free_vars(b)
        }
    }
}

/// Canonical text of an expression: constant sub-expressions folded when exact, sums and products
/// sorted (commutativity), so `\frac{x}{2}` and `x/2`, or `1+x` and `x+1`, print the same.
pub fn canonical(n: &Node) -> String {
    if !has_free_vars(n)
        && let Ok(Val::Exact(r)) = eval(n)
    {
        return r.to_string();
    }
    match n {
        Node::Num(s) => s.clone(),
        Node::Sym(s) => s.clone(),
        Node::Add(v) => {
            let mut parts: Vec<String> = v.iter().map(canonical).collect();
            parts.sort();
            format!("({})", parts.join("+"))
        }
        Node::Mul(v) => {
            let mut parts: Vec<String> = v.iter().map(canonical).collect();
            parts.sort();
            format!("({})", parts.join("*"))
        }
        Node::Neg(a) => format!("(-{})", canonical(a)),
        Node::Div(a, b) => format!("({}/{})", canonical(a), canonical(b)),
        Node::Pow(a, b) => format!("({}^{})", canonical(a), canonical(b)),
        Node::Root(k, x) => format!("root({},{})", canonical(k), canonical(x)),
        Node::Func(name, a) => format!("{name}({})", canonical(a)),
        Node::Fact(a) => format!("({})!", canonical(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_for_free_variables() {
        let c = |s: &str| canonical(&parse(s).unwrap());
        assert_eq!(c("\\frac{x}{2}"), c("x/2"));
        assert_eq!(c("x+1"), c("1+x"));
        assert_eq!(c("2x"), c("x\\cdot2"));
        assert_ne!(c("x+1"), c("x-1"));
        assert!(has_free_vars(&parse("a_1+1").unwrap()));
        assert!(!has_free_vars(&parse("\\pi/2").unwrap()));
    }
}
