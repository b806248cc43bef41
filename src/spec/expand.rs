//! Expansion of the `nodes:` tree into plain nodes: `repeat:` blocks become one node per
//! body entry per round (`summary` in round 3 is `summary_3`), and every reference
//! (`input`, `vars`, `when`, `after`) is resolved to node ids:
//!
//! - `name` or `name.field`: a node by id; inside a repeat body a body name means this
//!   round's node;
//! - `previous.name[.field]`: `name_{i-1}` (so round 1's `previous.attempt` is `attempt_0`);
//! - `all.name[.field]`: the ordered list `name_0 … name_i` of those that exist, without the
//!   node itself (round 3's `all.summary` is `summary_1, summary_2, summary_3`).
//!
//! Kinds, models, prompts and templates are checked later, in `resolve`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::load::LocMap;
use super::{Binding, Diag, Node, Ref, when};

/// Largest round number (and repeat count): far beyond any experiment, small enough that
/// round arithmetic never overflows.
const MAX_ROUND: u32 = 100_000;

/// Most rounds of one `repeat:` block (a graph of thousands of nodes per problem, each
/// reading every earlier round, is far past any experiment and slow to check).
pub const MAX_REPEAT: u32 = 1_000;

pub const COMMON: [&str; 8] = [
    "kind", "model", "prompt", "input", "vars", "when", "after", "round",
];

struct Raw {
    id: String,
    base: String,
    round: u32,
    body: Option<BTreeSet<String>>,
    block_when: Option<String>,
    fields: Map<String, Value>,
    path: String,
}

/// Expands and resolves; all errors at once.
pub fn expand(nodes: &Map<String, Value>, locs: &LocMap) -> Result<Vec<Node>, Vec<Diag>> {
    let (out, diags) = expand_partial(nodes, locs);
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Expands what it can: the nodes that resolved, and the errors of the others.
pub fn expand_partial(nodes: &Map<String, Value>, locs: &LocMap) -> (Vec<Node>, Vec<Diag>) {
    let mut diags = Vec::new();
    let mut raws: Vec<Raw> = Vec::new();
    for (name, v) in nodes {
        let path = format!("nodes.{name}");
        if !valid_id(name) {
            diags.push(Diag::at(
                &locs.find(&path),
                format!("node name `{name}` may only use letters, digits, `_` and `-`"),
            ));
            continue;
        }
        let Some(obj) = v.as_object() else {
            diags.push(Diag::at(
                &locs.find(&path),
                format!("node `{name}` must be a mapping with at least `kind:`"),
            ));
            continue;
        };
        if obj.contains_key("repeat") {
            expand_block(name, obj, &path, locs, &mut raws, &mut diags);
        } else {
            let round = match obj.get("round") {
                None => 0,
                Some(r) => match r.as_u64().filter(|&r| r <= MAX_ROUND as u64) {
                    Some(r) => r as u32,
                    None => {
                        diags.push(Diag::at(
                            &locs.find(&format!("{path}.round")),
                            format!("`round:` must be a whole number, at most {MAX_ROUND}"),
                        ));
                        0
                    }
                },
            };
            raws.push(Raw {
                id: name.clone(),
                base: name.clone(),
                round,
                body: None,
                block_when: None,
                fields: obj.clone(),
                path,
            });
        }
    }
    let mut ids = BTreeSet::new();
    for r in &raws {
        if !ids.insert(r.id.clone()) {
            diags.push(
                Diag::at(
                    &locs.find(&r.path),
                    format!(
                        "node `{}` is defined twice (a repeat block expands to the same name)",
                        r.id
                    ),
                )
                .hint("rename the node or the repeat body entry"),
            );
        }
    }
    let out: Vec<Node> = raws
        .iter()
        .filter_map(|r| resolve_raw(r, &ids, locs, &mut diags))
        .collect();
    (out, diags)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn expand_block(
    name: &str,
    obj: &Map<String, Value>,
    path: &str,
    locs: &LocMap,
    raws: &mut Vec<Raw>,
    diags: &mut Vec<Diag>,
) {
    for k in obj.keys() {
        if !["repeat", "body", "start", "when"].contains(&k.as_str()) {
            diags.push(
                Diag::at(
                    &locs.find(&format!("{path}.{k}")),
                    format!("unknown field `{k}` in repeat block `{name}`"),
                )
                .hint("a repeat block has `repeat`, `body`, and optionally `start` and `when`"),
            );
        }
    }
    let n = obj
        .get("repeat")
        .and_then(|v| v.as_u64())
        .filter(|&n| n <= u64::from(MAX_REPEAT));
    let Some(n) = n else {
        diags.push(
            Diag::at(
                &locs.find(&format!("{path}.repeat")),
                format!("`repeat:` must be a whole number of rounds from 0 to {MAX_REPEAT}"),
            )
            .hint("e.g. `repeat: 4` (the paper's rounds)"),
        );
        return;
    };
    let start = match obj.get("start") {
        None => 1,
        Some(v) => {
            match v.as_u64().filter(|&s| s + n <= MAX_ROUND as u64) {
                Some(s) => s as u32,
                None => {
                    diags.push(Diag::at(
                    &locs.find(&format!("{path}.start")),
                    format!("`start:` must be a whole number, with start + repeat at most {MAX_ROUND}"),
                ));
                    return;
                }
            }
        }
    };
    let block_when = match obj.get("when") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            diags.push(Diag::at(
                &locs.find(&format!("{path}.when")),
                "`when:` must be a condition text",
            ));
            None
        }
    };
    let Some(body) = obj.get("body").and_then(|b| b.as_object()) else {
        diags.push(Diag::at(
            &locs.find(path),
            format!("repeat block `{name}` needs a `body:` mapping of nodes"),
        ));
        return;
    };
    let names: BTreeSet<String> = body.keys().cloned().collect();
    for i in 0..n as u32 {
        let round = start + i;
        for (bname, bv) in body {
            let bpath = format!("{path}.body.{bname}");
            if !valid_id(bname) {
                if i == 0 {
                    diags.push(Diag::at(
                        &locs.find(&bpath),
                        format!("node name `{bname}` may only use letters, digits, `_` and `-`"),
                    ));
                }
                continue;
            }
            let Some(fields) = bv.as_object() else {
                if i == 0 {
                    diags.push(Diag::at(
                        &locs.find(&bpath),
                        format!("body node `{bname}` must be a mapping with at least `kind:`"),
                    ));
                }
                continue;
            };
            raws.push(Raw {
                id: format!("{bname}_{round}"),
                base: bname.clone(),
                round,
                body: Some(names.clone()),
                block_when: block_when.clone(),
                fields: fields.clone(),
                path: bpath,
            });
        }
    }
}

/// Resolves one reference text to one or more outputs.
fn resolve_ref(text: &str, raw: &Raw, ids: &BTreeSet<String>) -> Result<Binding, String> {
    let (scope, rest) = match text.split_once('.') {
        Some(("previous", r)) => ("previous", r),
        Some(("all", r)) => ("all", r),
        _ => ("", text),
    };
    let (name, field) = match rest.split_once('.') {
        Some((n, f)) => (n, Some(f.to_string())),
        None => (rest, None),
    };
    let in_body = raw.body.as_ref().is_some_and(|b| b.contains(name));
    match scope {
        "previous" => {
            if raw.body.is_none() {
                return Err(format!(
                    "`{text}`: `previous.` only works inside a repeat body"
                ));
            }
            let id = format!("{name}_{}", raw.round.saturating_sub(1));
            if !in_body {
                let body: Vec<&str> = raw.body.iter().flatten().map(String::as_str).collect();
                return Err(format!(
                    "`{text}`: there is no node `{name}` in this repeat body{}",
                    near(name, body)
                ));
            }
            if raw.round == 0 || !ids.contains(&id) {
                return Err(format!(
                    "`{text}` in round {} needs a node `{id}`, which does not exist",
                    raw.round
                ));
            }
            Ok(Binding::One(Ref { node: id, field }))
        }
        "all" => {
            let upto = if raw.body.is_some() {
                raw.round
            } else {
                u32::MAX
            };
            let refs: Vec<Ref> = (0..=upto.min(10_000))
                .map(|j| format!("{name}_{j}"))
                .filter(|id| ids.contains(id) && *id != raw.id)
                .map(|node| Ref {
                    node,
                    field: field.clone(),
                })
                .collect();
            if refs.is_empty() {
                let bases: BTreeSet<&str> = ids
                    .iter()
                    .map(|i| i.rsplit_once('_').map_or(i.as_str(), |(b, _)| b))
                    .collect();
                return Err(format!(
                    "`{text}` matches no node (it looks for `{name}_0`, `{name}_1`, …){}",
                    near(name, bases)
                ));
            }
            Ok(Binding::List(refs))
        }
        _ => {
            let id = if in_body {
                format!("{name}_{}", raw.round)
            } else {
                name.to_string()
            };
            if !ids.contains(&id) {
                let mut names: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
                names.extend(raw.body.iter().flatten().map(String::as_str));
                return Err(format!(
                    "`{text}`: there is no node `{id}`{}",
                    near(name, names)
                ));
            }
            if id == raw.id {
                return Err(format!("`{text}`: a node cannot use its own output"));
            }
            Ok(Binding::One(Ref { node: id, field }))
        }
    }
}

fn resolve_raw(
    raw: &Raw,
    ids: &BTreeSet<String>,
    locs: &LocMap,
    diags: &mut Vec<Diag>,
) -> Option<Node> {
    let f = &raw.fields;
    let at = |k: &str| locs.find(&format!("{}.{k}", raw.path));
    let before = diags.len();
    let text_field = |k: &str, diags: &mut Vec<Diag>| -> Option<String> {
        match f.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                diags.push(Diag::at(&at(k), format!("`{k}:` must be a text")));
                None
            }
        }
    };
    let kind = text_field("kind", diags).unwrap_or_default();
    if kind.is_empty() && f.get("kind").is_none() {
        diags.push(
            Diag::at(
                &locs.find(&raw.path),
                format!("node `{}` has no `kind:`", raw.base),
            )
            .hint("kinds: reason, summarize, extract, grade"),
        );
    }
    let model = text_field("model", diags);
    let prompt = text_field("prompt", diags);
    let mut input = None;
    if let Some(t) = text_field("input", diags) {
        match resolve_ref(&t, raw, ids) {
            Ok(Binding::One(r)) => input = Some(r),
            Ok(Binding::List(_)) => diags.push(Diag::at(
                &at("input"),
                format!("`input: {t}` names several nodes; use `vars:` for lists"),
            )),
            Err(e) => diags.push(Diag::at(&at("input"), e).hint("see README: references")),
        }
    }
    let mut vars = Vec::new();
    match f.get("vars") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v.as_str().map(|t| resolve_ref(t, raw, ids)) {
                    Some(Ok(b)) => vars.push((k.clone(), b)),
                    Some(Err(e)) => diags.push(
                        Diag::at(&at(&format!("vars.{k}")), e).hint("see README: references"),
                    ),
                    None => diags.push(Diag::at(
                        &at(&format!("vars.{k}")),
                        format!("`vars.{k}` must be a reference text such as `all.summary`"),
                    )),
                }
            }
        }
        Some(_) => diags.push(Diag::at(
            &at("vars"),
            "`vars:` must map names to references",
        )),
    }
    let mut after = Vec::new();
    match f.get("after") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for v in a {
                match v.as_str().map(|t| resolve_ref(t, raw, ids)) {
                    Some(Ok(Binding::One(r))) => after.push(r.node),
                    Some(Ok(Binding::List(rs))) => after.extend(rs.into_iter().map(|r| r.node)),
                    Some(Err(e)) => diags.push(Diag::at(&at("after"), e)),
                    None => diags.push(Diag::at(
                        &at("after"),
                        "`after:` must be a list of node names",
                    )),
                }
            }
        }
        Some(_) => diags.push(Diag::at(
            &at("after"),
            "`after:` must be a list of node names",
        )),
    }
    let own_when = text_field("when", diags);
    let when_text = match (&raw.block_when, &own_when) {
        (Some(a), Some(b)) => Some(format!("({a}) and ({b})")),
        (Some(a), None) => Some(a.clone()),
        (None, b) => b.clone(),
    };
    let mut when = None;
    if let Some(t) = &when_text {
        let resolve = |s: &str| match resolve_ref(s, raw, ids)? {
            Binding::One(r) => Ok(r),
            Binding::List(_) => Err(format!("`{s}` names several nodes")),
        };
        match when::parse(t, &resolve) {
            Ok(c) => when = Some(c),
            Err(e) => {
                // a repeat block's own `when:` is reported once, at its line (not at each
                // body node of each round)
                let loc = match (&own_when, raw.path.rsplit_once(".body.")) {
                    (Some(_), _) => at("when"),
                    (None, Some((block, _))) => locs.find(&format!("{block}.when")),
                    (None, None) => locs.find(&raw.path),
                };
                diags.push(
                    Diag::at(&loc, format!("bad `when:` condition `{}`: {e}", shorten(t)))
                        .hint("e.g. `when: not previous.attempt.correct`; see README: conditions"),
                );
            }
        }
    }
    let params: Map<String, Value> = f
        .iter()
        .filter(|(k, _)| !COMMON.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if diags.len() > before {
        return None;
    }
    Some(Node {
        id: raw.id.clone(),
        base: raw.base.clone(),
        round: raw.round,
        kind,
        model,
        prompt,
        input,
        vars,
        when,
        when_text,
        after,
        params,
        typed: None,
        template_refs: Vec::new(),
        path: raw.path.clone(),
    })
}

/// "; did you mean `x`?" for a misspelled node name, or nothing.
fn near<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.into_iter().collect();
    crate::grade::names::nearest(name, &all)
        .map(|n| format!("; did you mean `{n}`?"))
        .unwrap_or_default()
}

/// A condition as quoted in a message: at most 80 characters.
fn shorten(t: &str) -> String {
    if t.chars().count() <= 80 {
        t.to_string()
    } else {
        format!("{}…", t.chars().take(80).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paper() -> Map<String, Value> {
        let v: Value = serde_saphyr::from_str(
            r#"
attempt_0: {kind: reason, model: m, prompt: p}
rounds:
  repeat: 4
  when: "not previous.attempt.correct"
  body:
    summary: {kind: summarize, model: m, prompt: s, input: previous.attempt}
    attempt: {kind: reason, model: m, prompt: p, vars: {summaries: all.summary, last: summary}}
"#,
        )
        .unwrap();
        v.as_object().unwrap().clone()
    }

    #[test]
    fn expands_repeat_into_rounds() {
        let nodes = expand(&paper(), &LocMap::default()).unwrap();
        let ids: Vec<_> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "attempt_0",
                "summary_1",
                "attempt_1",
                "summary_2",
                "attempt_2",
                "summary_3",
                "attempt_3",
                "summary_4",
                "attempt_4"
            ]
        );
        let a3 = nodes.iter().find(|n| n.id == "attempt_3").unwrap();
        assert_eq!(a3.round, 3);
        let Binding::List(all) = &a3.vars[0].1 else {
            panic!()
        };
        assert_eq!(
            all.iter().map(|r| r.node.as_str()).collect::<Vec<_>>(),
            ["summary_1", "summary_2", "summary_3"]
        );
        assert_eq!(
            a3.vars[1].1,
            Binding::One(Ref {
                node: "summary_3".into(),
                field: None
            })
        );
        let s1 = nodes.iter().find(|n| n.id == "summary_1").unwrap();
        assert_eq!(s1.input.as_ref().unwrap().node, "attempt_0");
        assert_eq!(s1.deps(), ["attempt_0"]);
        assert_eq!(
            a3.deps(),
            ["summary_1", "summary_2", "summary_3", "attempt_2"]
        );
    }

    #[test]
    fn reports_unknown_references() {
        let mut m = paper();
        m.insert("x".into(), serde_json::json!({"kind": "grade", "input": "nope.answer", "vars": {"a": "previous.attempt"}}));
        let errs = expand(&m, &LocMap::default()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].message.contains("no node `nope`"));
        assert!(errs[1].message.contains("only works inside a repeat body"));
    }
}
