//! Reading pipeline files into one JSON tree: YAML parsing (serde-saphyr), a map from each
//! key path to the file and line it came from (saphyr-parser events), `extends:` merging of
//! a base pipeline, and `--set PATH=VALUE` overrides. Typed decoding and validation happen
//! in `spec::resolve`; this file only builds the tree and remembers where things were.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use saphyr_parser::{Event, Parser};
use serde_json::{Map, Value};

use super::Diag;

/// Where a key path was written: a file and a 1-based line, or the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Loc {
    pub file: String,
    pub line: Option<usize>,
}

/// Key path (`nodes.attempt_0.prompt`) → where it was written.
#[derive(Debug, Clone, Default)]
pub struct LocMap {
    map: HashMap<String, Loc>,
    pub root_file: String,
}

impl LocMap {
    /// The location of `path`, or of its nearest written ancestor.
    pub fn find(&self, path: &str) -> Loc {
        let mut p = path;
        loop {
            if let Some(l) = self.map.get(p) {
                return l.clone();
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => {
                    return self.map.get("").cloned().unwrap_or(Loc {
                        file: self.root_file.clone(),
                        line: None,
                    });
                }
            }
        }
    }
    fn insert(&mut self, path: String, loc: Loc) {
        self.map.insert(path, loc);
    }
    /// Records that `path` came from `loc` (e.g. the command line).
    pub fn map_insert(&mut self, path: &str, loc: Loc) {
        self.map.insert(path.to_string(), loc);
    }
}

/// Parses one YAML text into a JSON tree and a location map.
pub fn parse_yaml(text: &str, file: &str) -> Result<(Value, LocMap), Diag> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let line = first_line_number(&msg);
        let first = msg.lines().next().unwrap_or("");
        if first.contains("recursion limit") || first.contains("Depth {") {
            return Diag::new(file, line, "invalid YAML: it nests deeper than 64 levels")
                .hint("a pipeline needs only a few levels of nesting; flatten that value");
        }
        Diag::new(file, line, format!("invalid YAML: {first}"))
            .hint("check indentation and quoting near that line")
    })?;
    if !value.is_object() {
        return Err(Diag::new(
            file,
            Some(1),
            "a pipeline must be a YAML mapping (key: value lines)",
        ));
    }
    let mut locs = LocMap {
        root_file: file.to_string(),
        ..Default::default()
    };
    record_lines(text, file, &mut locs);
    Ok((value, locs))
}

/// Pulls "line N" out of a parser message (best effort).
fn first_line_number(msg: &str) -> Option<usize> {
    let re = regex::Regex::new(r"line (\d+)").ok()?;
    re.captures(msg)?.get(1)?.as_str().parse().ok()
}

/// Walks the YAML events once, recording the line of every mapping key and sequence item.
/// (serde-saphyr decodes values but does not expose spans for arbitrary paths; this map is
/// what lets validation errors name a line long after decoding.)
fn record_lines(text: &str, file: &str, locs: &mut LocMap) {
    enum Frame {
        Map { path: String, key: Option<String> },
        Seq { path: String, idx: usize },
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_string()
        } else {
            format!("{a}.{b}")
        }
    };
    // Returns the path of a value that starts now (and advances the parent frame).
    fn value_path(stack: &mut [Frame], join: &dyn Fn(&str, &str) -> String) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, idx }) => {
                let p = join(path, &idx.to_string());
                *idx += 1;
                Some(p)
            }
        }
    }
    while let Some(Ok((ev, span))) = parser.next_event() {
        let line = span.start.line();
        match ev {
            Event::Scalar(s, ..) => {
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key {
                    if let Some(Frame::Map { path, key }) = stack.last_mut() {
                        let p = join(path, &s);
                        locs.insert(
                            p,
                            Loc {
                                file: file.to_string(),
                                line: Some(line),
                            },
                        );
                        *key = Some(s.to_string());
                    }
                } else if let Some(p) = value_path(&mut stack, &join) {
                    locs.map.entry(p).or_insert(Loc {
                        file: file.to_string(),
                        line: Some(line),
                    });
                }
            }
            Event::Alias(_) => {
                value_path(&mut stack, &join);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let Some(p) = value_path(&mut stack, &join) else {
                    break;
                };
                locs.map.entry(p.clone()).or_insert(Loc {
                    file: file.to_string(),
                    line: Some(line),
                });
                stack.push(if is_map {
                    Frame::Map { path: p, key: None }
                } else {
                    Frame::Seq { path: p, idx: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
}

/// Reads a pipeline file and, recursively, the base it `extends:` (relative to the file).
pub fn load_file(path: &Path) -> Result<(Value, LocMap), Diag> {
    load_chain(path, &mut Vec::new())
}

fn load_chain(path: &Path, seen: &mut Vec<PathBuf>) -> Result<(Value, LocMap), Diag> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diag::new(&shown, None, format!("cannot read pipeline file: {e}"))
            .hint("check the path; pipelines live in pipelines/")
    })?;
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if seen.contains(&canon) {
        return Err(
            Diag::new(&shown, None, "`extends:` forms a loop").hint(format!(
                "chain: {}",
                seen.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            )),
        );
    }
    seen.push(canon);
    let (mut value, mut locs) = parse_yaml(&text, &shown)?;
    let base = value.as_object_mut().and_then(|m| m.remove("extends"));
    match base {
        None => Ok((value, locs)),
        Some(Value::String(rel)) => {
            let base_path = super::paths::resolve_in(&rel, Some(path));
            if !base_path.exists() {
                return Err(Diag::new(
                    &shown,
                    locs.find("extends").line,
                    format!("`extends: {rel}`: no such file {}", base_path.display()),
                )
                .hint(super::paths::RULE));
            }
            let (mut merged, base_locs) = load_chain(&base_path, seen)?;
            merge(&mut merged, value);
            // the child's locations win over the base's
            let mut all = base_locs;
            all.root_file = locs.root_file.clone();
            for (k, v) in locs.map.drain() {
                all.insert(k, v);
            }
            Ok((merged, all))
        }
        Some(_) => Err(Diag::new(
            &shown,
            locs.find("extends").line,
            "`extends:` must be a path to a base pipeline",
        )),
    }
}

/// Deep merge: maps merge key by key; anything else in `over` replaces; `null` deletes.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(slot) = b.get_mut(&k) {
                    merge(slot, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Whether segment `i` of a `--set` path names an entry of a user-named map (a model, a
/// node, a node of a repeat body), which a `--set` may change but not create.
fn names_an_entry(segs: &[&str], i: usize) -> bool {
    matches!((segs.first(), i), (Some(&"models" | &"nodes"), 1))
        || (segs.first() == Some(&"nodes") && segs.get(2) == Some(&"body") && i == 3)
}

/// Applies one `PATH=VALUE` override. VALUE is read as YAML (`0.8`, `true`, `[a, b]`, text);
/// `null` removes the field. Any field of the schema may be set, present in the file or not,
/// but a path may not create a model or a node (a typo would otherwise add an unused one).
pub fn apply_set(root: &mut Value, locs: &mut LocMap, assignment: &str) -> Result<(), Diag> {
    let cli = format!("--set {assignment}");
    let Some((path, raw)) = assignment.split_once('=') else {
        return Err(Diag::new(
            &cli,
            None,
            format!("--set `{assignment}` is not PATH=VALUE"),
        )
        .hint("e.g. --set models.reasoner.params.temperature=0.8"));
    };
    let path = path.trim();
    if path.is_empty() || path.split('.').any(|s| s.is_empty()) {
        return Err(Diag::new(
            &cli,
            None,
            format!("--set `{assignment}`: empty path segment"),
        )
        .hint("a path is dot-separated field names, e.g. models.reasoner.params.temperature"));
    }
    let value: Value = if raw.trim().is_empty() {
        Value::String(String::new())
    } else {
        serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
    };
    let mut cur = root;
    let segs: Vec<&str> = path.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let map: &mut Map<String, Value> = match cur {
            Value::Object(m) => m,
            other => {
                return Err(Diag::new(
                    &cli,
                    None,
                    format!(
                        "--set {path}: `{}` is {}, not a mapping",
                        segs[..i].join("."),
                        kind_name(other)
                    ),
                )
                .hint(format!(
                    "set `{}` itself, or a field of a mapping",
                    segs[..i].join(".")
                )));
            }
        };
        if names_an_entry(&segs, i) && !map.contains_key(*seg) {
            let existing: Vec<&str> = map.keys().map(String::as_str).collect();
            let what = if segs[0] == "models" { "model" } else { "node" };
            let near = crate::grade::names::nearest(seg, &existing)
                .map(|n| {
                    format!(
                        "did you mean `{}`? ",
                        segs[..i]
                            .iter()
                            .chain([&n])
                            .copied()
                            .collect::<Vec<_>>()
                            .join(".")
                    )
                })
                .unwrap_or_default();
            return Err(Diag::new(
                &cli,
                None,
                format!("--set {path}: there is no {what} `{seg}` in `{}`; a --set may change a {what} but not create one", segs[..i].join(".")),
            )
            .hint(format!("{near}{what}s: {}; add a new {what} in the pipeline file", existing.join(", "))));
        }
        if last {
            if value.is_null() {
                map.remove(*seg);
            } else {
                map.insert(seg.to_string(), value);
            }
            locs.insert(
                path.to_string(),
                Loc {
                    file: cli.clone(),
                    line: None,
                },
            );
            return Ok(());
        }
        if value.is_null() && !map.contains_key(*seg) {
            return Ok(()); // removing what is not there
        }
        if !map.contains_key(*seg) {
            // a field the file does not have: errors about it point at this --set
            locs.insert(
                segs[..=i].join("."),
                Loc {
                    file: cli.clone(),
                    line: None,
                },
            );
        }
        cur = map
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lines_of_nested_keys() {
        let text = "name: x\nnodes:\n  a:\n    kind: reason\n    vars: {s: b}\n  b: {kind: grade}\nlist:\n  - 1\n  - 2\n";
        let (_, locs) = parse_yaml(text, "p.yaml").unwrap();
        assert_eq!(locs.find("name").line, Some(1));
        assert_eq!(locs.find("nodes.a.kind").line, Some(4));
        assert_eq!(locs.find("nodes.a.vars.s").line, Some(5));
        assert_eq!(locs.find("nodes.b.kind").line, Some(6));
        assert_eq!(locs.find("list.1").line, Some(9));
        assert_eq!(locs.find("nodes.a.missing").line, Some(3));
    }

    #[test]
    fn merge_overrides_and_deletes() {
        let mut a: Value = serde_json::json!({"x": {"y": 1, "z": 2}, "k": [1]});
        merge(
            &mut a,
            serde_json::json!({"x": {"y": 5, "z": null}, "k": [2, 3]}),
        );
        assert_eq!(a, serde_json::json!({"x": {"y": 5}, "k": [2, 3]}));
    }

    #[test]
    fn set_parses_yaml_values() {
        let mut v = serde_json::json!({"models": {"r": {"params": {}}}});
        let mut l = LocMap::default();
        apply_set(&mut v, &mut l, "models.r.params.temperature=0.8").unwrap();
        apply_set(&mut v, &mut l, "problems.question_ids=[a, b]").unwrap();
        assert_eq!(v["models"]["r"]["params"]["temperature"], 0.8);
        assert_eq!(v["problems"]["question_ids"], serde_json::json!(["a", "b"]));
        assert!(apply_set(&mut v, &mut l, "models.r.params.temperature.x=1").is_err());
    }

    #[test]
    fn set_may_not_create_models_or_nodes_and_null_removes() {
        let mut v = serde_json::json!({"models": {"reasoner": {"price": {"input_per_m": 1}}},
            "nodes": {"a": {"kind": "reason"}, "rounds": {"repeat": 2, "body": {"summary": {}}}}});
        let mut l = LocMap::default();
        let e = apply_set(&mut v, &mut l, "models.reasner.model=x").unwrap_err();
        assert!(e.message.contains("no model `reasner`"), "{e}");
        assert!(
            e.hint
                .as_deref()
                .unwrap()
                .contains("did you mean `models.reasoner`?"),
            "{e}"
        );
        assert_eq!(e.file, "--set models.reasner.model=x");
        assert!(apply_set(&mut v, &mut l, "nodes.b.kind=reason").is_err());
        assert!(apply_set(&mut v, &mut l, "nodes.rounds.body.sumary.k=3").is_err());
        apply_set(&mut v, &mut l, "nodes.rounds.body.summary.k=3").unwrap();
        apply_set(&mut v, &mut l, "models.reasoner.params.seed=1").unwrap();
        assert_eq!(v["models"]["reasoner"]["params"]["seed"], 1);
        apply_set(&mut v, &mut l, "models.reasoner.price=null").unwrap();
        apply_set(&mut v, &mut l, "nodes.rounds=null").unwrap();
        apply_set(&mut v, &mut l, "models.reasoner.sim.latency_ms=null").unwrap();
        assert!(v["models"]["reasoner"].get("price").is_none());
        assert!(v["models"]["reasoner"].get("sim").is_none());
        assert!(v["nodes"].get("rounds").is_none());
    }
}
