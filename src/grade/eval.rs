//! Evaluation of parsed scalar expressions: exact big-rational arithmetic while every step is
//! rational, `f64` once an irrational step (non-perfect root, pi, trig) occurs.
//!
//! Owns: `Val`, `eval`, exact number-literal parsing. Deliberately does not: parse text
//! (`expr`) or decide equality (`equiv`). Guards: number literals over `MAX_DIGITS`, exact
//! results over `MAX_BITS`, factorials over 1000 and non-finite floats make evaluation fail
//! (never hang, never panic); a failed evaluation is never taken as equality by the caller.

use super::expr::Node;
use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

const MAX_DIGITS: usize = 2000;
const MAX_BITS: u64 = 20_000;

/// A value: exact when every step was rational, approximate otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Exact(BigRational),
    Approx(f64),
}

impl Val {
    pub fn to_f64(&self) -> Option<f64> {
        let f = match self {
            Val::Exact(r) => r.to_f64()?,
            Val::Approx(f) => *f,
        };
        f.is_finite().then_some(f)
    }
}

/// Parse a number literal (`033`, `0.50`, `1e3`, `.5`) exactly.
pub fn parse_number_literal(s: &str) -> Option<BigRational> {
    if s.is_empty() || s.len() > MAX_DIGITS {
        return None;
    }
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().ok()?),
        None => (s, 0),
    };
    if exp.unsigned_abs() > 4000 {
        return None;
    }
    let (ip, fp) = match mant.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mant, ""),
    };
    if (ip.is_empty() && fp.is_empty())
        || !ip.chars().all(|c| c.is_ascii_digit())
        || !fp.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let digits: BigInt = format!("{ip}{fp}").parse().ok()?;
    let scale = exp - fp.len() as i64;
    let ten = BigInt::from(10);
    let p = num_traits::pow(ten, scale.unsigned_abs() as usize);
    Some(if scale >= 0 {
        BigRational::from_integer(digits * p)
    } else {
        BigRational::new(digits, p)
    })
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits().max(r.denom().bits())
}

fn approx(f: f64) -> Result<Val, ()> {
    if f.is_finite() {
        Ok(Val::Approx(f))
    } else {
        Err(())
    }
}

fn f(v: &Val) -> Result<f64, ()> {
    v.to_f64().ok_or(())
}

fn checked(r: BigRational) -> Result<Val, ()> {
    if bits(&r) > MAX_BITS {
        Err(())
    } else {
        Ok(Val::Exact(r))
    }
}

/// Evaluate an expression without free variables.
pub fn eval(n: &Node) -> Result<Val, ()> {
    match n {
        Node::Num(s) => parse_number_literal(s).map(Val::Exact).ok_or(()),
        Node::Sym(s) if s == "\\pi" => Ok(Val::Approx(std::f64::consts::PI)),
        Node::Sym(_) => Err(()),
        Node::Neg(a) => match eval(a)? {
            Val::Exact(r) => Ok(Val::Exact(-r)),
            Val::Approx(x) => approx(-x),
        },
        Node::Add(v) => {
            let mut acc = Val::Exact(BigRational::zero());
            for t in v {
                acc = match (acc, eval(t)?) {
                    (Val::Exact(a), Val::Exact(b)) => checked(a + b)?,
                    (a, b) => approx(f(&a)? + f(&b)?)?,
                };
            }
            Ok(acc)
        }
        Node::Mul(v) => {
            let mut acc = Val::Exact(BigRational::one());
            for t in v {
                acc = match (acc, eval(t)?) {
                    (Val::Exact(a), Val::Exact(b)) => checked(a * b)?,
                    (a, b) => approx(f(&a)? * f(&b)?)?,
                };
            }
            Ok(acc)
        }
        Node::Div(a, b) => match (eval(a)?, eval(b)?) {
            (_, Val::Exact(d)) if d.is_zero() => Err(()),
            (Val::Exact(x), Val::Exact(d)) => checked(x / d),
            (x, d) => {
                let d = f(&d)?;
                if d == 0.0 {
                    Err(())
                } else {
                    approx(f(&x)? / d)
                }
            }
        },
        Node::Pow(a, b) => pow(eval(a)?, eval(b)?),
        Node::Root(k, x) => root(eval(k)?, eval(x)?),
        Node::Fact(a) => match eval(a)? {
            Val::Exact(r)
                if r.is_integer() && !r.is_negative() && r.numer() <= &BigInt::from(1000) =>
            {
                let n = r.to_integer().to_u64().ok_or(())?;
                let mut acc = BigInt::one();
                for i in 2..=n {
                    acc *= i;
                }
                checked(BigRational::from_integer(acc))
            }
            _ => Err(()),
        },
        Node::Func(name, a) => {
            let x = f(&eval(a)?)?;
            let y = match name.as_str() {
                "sin" => x.sin(),
                "cos" => x.cos(),
                "tan" => x.tan(),
                "ln" if x > 0.0 => x.ln(),
                "exp" => x.exp(),
                _ => return Err(()),
            };
            approx(y)
        }
    }
}

fn pow(b: Val, e: Val) -> Result<Val, ()> {
    if let (Val::Exact(br), Val::Exact(er)) = (&b, &e) {
        if er.is_integer() {
            let k = er.to_integer();
            let kabs = k.abs().to_u64().ok_or(())?;
            if br.is_zero() {
                return if k.is_negative() {
                    Err(())
                } else if kabs == 0 {
                    Ok(Val::Exact(BigRational::one()))
                } else {
                    Ok(Val::Exact(BigRational::zero()))
                };
            }
            if bits(br).saturating_mul(kabs) <= MAX_BITS {
                let k = usize::try_from(kabs).map_err(|_| ())?;
                let p = num_traits::pow(br.clone(), k);
                return checked(if er.is_negative() { p.recip() } else { p });
            }
        } else if er.denom() <= &BigInt::from(64) && er.numer().abs() <= BigInt::from(4096) {
            // Rational exponent p/q: exact when the q-th root is exact.
            let q = Val::Exact(BigRational::from_integer(er.denom().clone()));
            let r = root(q, b.clone())?;
            if let Val::Exact(_) = r {
                return pow(r, Val::Exact(BigRational::from_integer(er.numer().clone())));
            }
        }
    }
    let (x, y) = (f(&b)?, f(&e)?);
    if x < 0.0 && y.fract() != 0.0 {
        return Err(());
    }
    approx(x.powf(y))
}

fn int_root(n: &BigInt, k: u32) -> Option<BigInt> {
    let r = n.nth_root(k);
    (num_traits::pow(r.clone(), k as usize) == *n).then_some(r)
}

fn root(k: Val, x: Val) -> Result<Val, ()> {
    let kk = match &k {
        Val::Exact(r) if r.is_integer() && r.is_positive() => {
            r.to_integer().to_u32().filter(|&v| v <= 64)
        }
        _ => None,
    };
    if let (Some(kk), Val::Exact(xr)) = (kk, &x) {
        let neg = xr.is_negative();
        if neg && kk % 2 == 0 {
            return Err(());
        }
        let a = xr.abs();
        if let (Some(n), Some(d)) = (int_root(a.numer(), kk), int_root(a.denom(), kk)) {
            let r = BigRational::new(n, d);
            return Ok(Val::Exact(if neg { -r } else { r }));
        }
        let fx = f(&x)?;
        let v = fx.abs().powf(1.0 / kk as f64);
        return approx(if neg { -v } else { v });
    }
    let (kf, xf) = (f(&k)?, f(&x)?);
    if xf < 0.0 || kf == 0.0 {
        return Err(());
    }
    approx(xf.powf(1.0 / kf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::expr::parse;

    fn ev(s: &str) -> Val {
        eval(&parse(s).unwrap_or_else(|| panic!("parse {s}")))
            .unwrap_or_else(|_| panic!("eval {s}"))
    }
    fn exact(s: &str) -> BigRational {
        match ev(s) {
            Val::Exact(r) => r,
            v => panic!("{s} not exact: {v:?}"),
        }
    }
    fn q(n: i64, d: i64) -> BigRational {
        BigRational::new(n.into(), d.into())
    }

    #[test]
    fn exact_numbers_and_fractions() {
        assert_eq!(exact("033"), q(33, 1));
        assert_eq!(exact("0.50"), q(1, 2));
        assert_eq!(exact("\\frac12"), q(1, 2));
        assert_eq!(exact("\\frac{1}2"), q(1, 2));
        assert_eq!(exact("\\frac123"), q(3, 2));
        assert_eq!(exact("1e3"), q(1000, 1));
        assert_eq!(exact("2.5E-1"), q(1, 4));
        assert_eq!(exact("1\\times10^{3}"), q(1000, 1));
        assert_eq!(exact("2^10"), q(1024, 1));
        assert_eq!(exact("2^{-2}"), q(1, 4));
        assert_eq!(exact("-3"), q(-3, 1));
        assert_eq!(exact("1/2+1/3"), q(5, 6));
        assert_eq!(exact("6/2/3"), q(1, 1));
        assert_eq!(exact("2\\frac{1}{2}"), q(5, 2));
        assert_eq!(exact("-2\\frac{1}{2}"), q(-5, 2));
        assert_eq!(exact("\\sqrt{16}"), q(4, 1));
        assert_eq!(exact("\\sqrt[3]{-8}"), q(-2, 1));
        assert_eq!(exact("8^{2/3}"), q(4, 1));
        assert_eq!(exact("5!"), q(120, 1));
        assert_eq!(exact("(1+2)(3)"), q(9, 1));
    }

    #[test]
    fn approximate_values() {
        let v = ev("2\\sqrt{2}").to_f64().unwrap();
        assert!((v - 8f64.sqrt()).abs() < 1e-12);
        let v = ev("3\\pi").to_f64().unwrap();
        assert!((v - 3.0 * std::f64::consts::PI).abs() < 1e-12);
        let v = ev("\\frac{\\sqrt3}{2}").to_f64().unwrap();
        assert!((v - 0.75f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn failures_are_errors_not_panics() {
        for s in [
            "1/0",
            "\\sqrt{-4}",
            "10^{999999999}",
            "x+1",
            "(-8)^{1/2}",
            "0^{-1}",
            "1e99999",
        ] {
            let r = parse(s).map(|n| eval(&n));
            assert!(!matches!(r, Some(Ok(_))), "{s} -> {r:?}");
        }
        for s in ["", "(", "1+", "\\frac{1}", "{{{", "1)", "\\"] {
            assert!(parse(s).is_none(), "{s}");
        }
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse(&deep).is_none());
    }
}
