//! Reading the journal (results.jsonl) back: one scan that notes where each problem's
//! records are (never the whole file in memory), and the assembly of a problem's record
//! from its `open`, `node` and `close` lines — for results.json at the end of a run, and
//! for readers of a killed or live run. A problem opened again (a resumed run) starts over:
//! its earlier lines are dropped. A line cut by a kill does not parse and is skipped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::Result;
use serde_json::{Value, json};

/// Where a line is: byte offset and length (newline excluded).
pub(super) type Span = (u64, usize);

#[derive(Default)]
pub(super) struct Entry {
    open: Option<Span>,
    nodes: Vec<NodeAt>,
    close: Option<Span>,
}

/// Where a node line is and, when its writer noted it, what it places: its sample and its
/// node's position in the run's node order (a line found by a scan is placed when read).
#[derive(Clone, Copy)]
struct NodeAt {
    span: Span,
    place: Option<(Option<u64>, usize)>,
}

/// Where each problem's lines are: what one pass over the journal found, or what the writer
/// noted as it wrote (so the end of a run needs no pass).
#[derive(Default)]
pub(super) struct Scan {
    pub header: Value,
    /// The header's node ids (pipeline order) and samples.
    order: Vec<String>,
    samples: usize,
    entries: BTreeMap<usize, Entry>,
    pub end: Option<String>,
}

#[derive(serde::Deserialize)]
struct Head {
    record: Option<String>,
    index: Option<usize>,
    status: Option<String>,
}

/// A line's kind, for [`Scan::note`].
pub(super) enum Rec<'a> {
    Open,
    Node { sample: Option<u32>, node: &'a str },
    Close,
}

impl Scan {
    pub(super) fn new(header: Value) -> Scan {
        let mut s = Scan::default();
        s.set_header(header);
        s
    }

    fn set_header(&mut self, header: Value) {
        self.samples = header["samples"].as_u64().unwrap_or(1).max(1) as usize;
        self.order = (header["nodes"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        self.header = header;
    }

    /// Notes a line the writer appended for problem `index` at `span`.
    pub(super) fn note(&mut self, rec: Rec, index: usize, span: Span) {
        match rec {
            Rec::Open => {
                self.end = None;
                self.entries.insert(
                    index,
                    Entry {
                        open: Some(span),
                        ..Default::default()
                    },
                );
            }
            Rec::Node { sample, node } => {
                let pos = self.order.iter().position(|n| n == node);
                let place = pos.map(|p| (sample.map(u64::from), p));
                let at = NodeAt { span, place };
                self.entries.entry(index).or_default().nodes.push(at);
            }
            Rec::Close => self.entries.entry(index).or_default().close = Some(span),
        }
    }
}

pub(super) fn scan(path: &Path) -> Result<Scan> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut s = Scan::default();
    let (mut at, mut line) = (0u64, String::new());
    loop {
        line.clear();
        let n = r.read_line(&mut line)? as u64;
        if n == 0 {
            break;
        }
        let span = (at, line.trim_end().len());
        at += n;
        // node lines are nearly all of it: placed by their prefix, never parsed whole
        if let Some(i) = node_index(line.as_bytes()) {
            let at = NodeAt { span, place: None };
            s.entries.entry(i).or_default().nodes.push(at);
            continue;
        }
        let Ok(h) = serde_json::from_str::<Head>(&line) else {
            continue;
        };
        match (h.record.as_deref(), h.index) {
            (Some("run"), _) => s.set_header(serde_json::from_str(&line).unwrap_or_default()),
            (Some("end"), _) => s.end = h.status,
            (Some("open"), Some(i)) => {
                // a resumed run goes on after an earlier end
                s.end = None;
                s.entries.insert(
                    i,
                    Entry {
                        open: Some(span),
                        ..Default::default()
                    },
                );
            }
            (Some("node"), Some(i)) => {
                let at = NodeAt { span, place: None };
                s.entries.entry(i).or_default().nodes.push(at);
            }
            (Some("close"), Some(i)) => s.entries.entry(i).or_default().close = Some(span),
            _ => {}
        }
    }
    Ok(s)
}

/// The problem index of a node line (`{"record":"node","index":N,…`), read from its prefix.
fn node_index(line: &[u8]) -> Option<usize> {
    const PREFIX: &[u8] = b"{\"record\":\"node\",\"index\":";
    let rest = line.strip_prefix(PREFIX)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    // a complete line ends with `}`: a line cut by a kill is skipped
    if digits == 0 || !line.trim_ascii_end().ends_with(b"}") {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

fn read_at(f: &File, (start, len): Span) -> Result<Value> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    f.read_exact_at(&mut buf, start)?;
    Ok(serde_json::from_slice(&buf)?)
}

/// The fields of a node line that place it; the rest (outputs) is copied as it is.
struct NodeHead {
    sample: Option<u64>,
    node: String,
}

/// Reads the sample and node id from a node line's start, without scanning its outputs.
fn node_head(line: &[u8]) -> Option<NodeHead> {
    #[derive(serde::Deserialize)]
    struct Prefix {
        sample: Option<u64>,
    }
    let rec = node_record(line)?;
    let at = line.len() - rec.len();
    let mut prefix = line[..at].to_vec();
    prefix.push(b'}');
    let p: Prefix = serde_json::from_slice(&prefix).ok()?;
    let node = serde_json::Deserializer::from_slice(&rec[8..])
        .into_iter::<String>()
        .next()?
        .ok()?;
    Some(NodeHead {
        sample: p.sample,
        node,
    })
}

/// A node line's record without its `record`, `index` and `sample` fields, as raw JSON: the
/// line is `{"record":"node","index":…,"sample":…,"node":…}` and the record starts at its
/// first `,"node":` (nothing before it is a string that could hold one).
fn node_record(line: &[u8]) -> Option<&[u8]> {
    let at = line.windows(8).position(|w| w == b",\"node\":")?;
    Some(&line[at..])
}

/// One problem's record as one JSON line written to `out`, in the shape of the scheduler's
/// `ProblemRecord`: nodes in pipeline order per sample; `incomplete` when it never closed
/// (the run was killed meanwhile). Node records are copied as raw text (read into `buf`),
/// never parsed whole. False (nothing written) for a problem without its `open` line.
fn assemble(
    s: &Scan,
    e: &Entry,
    f: &File,
    buf: &mut Vec<u8>,
    out: &mut impl Write,
) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    let Some(open) = e.open else {
        return Ok(false);
    };
    let open = read_at(f, open)?;
    let close = e.close.map(|c| read_at(f, c)).transpose()?;
    // every node line into one buffer, one read each
    buf.clear();
    buf.resize(e.nodes.iter().map(|n| n.span.1).sum(), 0);
    // per sample (the last slot: aggregates), position → (node id when not in the order,
    // where its record is in `buf`); a node recorded twice: the last line wins
    type Placed = BTreeMap<usize, (Option<String>, std::ops::Range<usize>)>;
    let mut placed: Vec<Placed> = vec![BTreeMap::new(); s.samples + 1];
    let mut at = 0;
    for n in &e.nodes {
        let line = &mut buf[at..at + n.span.1];
        f.read_exact_at(line, n.span.0)?;
        let (start, end) = (at, at + n.span.1);
        at = end;
        let line = &buf[start..end];
        let Some(rec) = node_record(line) else {
            continue;
        };
        let (sample, pos, id) = match n.place {
            Some((sample, pos)) => (sample, pos, None),
            None => {
                let Some(h) = node_head(line) else { continue };
                let pos = s.order.iter().position(|o| *o == h.node);
                (h.sample, pos.unwrap_or(usize::MAX), Some(h.node))
            }
        };
        let slot = match sample {
            Some(x) if (x as usize) < s.samples => x as usize,
            _ => s.samples,
        };
        placed[slot].insert(pos, (id, end - rec.len()..end));
    }
    let object = |out: &mut dyn Write, m: &Placed| -> Result<()> {
        out.write_all(b"{")?;
        for (k, (pos, (id, rec))) in m.iter().enumerate() {
            if k > 0 {
                out.write_all(b",")?;
            }
            let id = id.as_deref().or(s.order.get(*pos).map(String::as_str));
            serde_json::to_writer(&mut *out, id.unwrap_or_default())?;
            // the record starts at its `,"node":`: `{"node":…`
            out.write_all(b":{")?;
            out.write_all(&buf[rec.start + 1..rec.end])?;
        }
        out.write_all(b"}")?;
        Ok(())
    };
    let status = close
        .as_ref()
        .and_then(|c| c["status"].as_str())
        .unwrap_or("incomplete");
    let head = json!({"id": open["id"], "index": open["index"], "question": open["question"],
                      "answer": open["answer"], "status": status});
    let head = head.to_string();
    out.write_all(&head.as_bytes()[..head.len() - 1])?;
    out.write_all(b",\"samples\":[")?;
    for (k, m) in placed[..s.samples].iter().enumerate() {
        if k > 0 {
            out.write_all(b",")?;
        }
        object(out, m)?;
    }
    out.write_all(b"]")?;
    if !placed[s.samples].is_empty() {
        out.write_all(b",\"aggregates\":")?;
        object(out, &placed[s.samples])?;
    }
    if let Some(err) = close.as_ref().map(|c| &c["error"]).filter(|e| !e.is_null()) {
        write!(out, ",\"error\":{err}")?;
    }
    out.write_all(b"}")?;
    Ok(true)
}

/// Every problem's record, in CSV order, as one JSON line each.
pub(super) fn problems(path: &Path, s: &Scan) -> Result<Vec<String>> {
    let f = File::open(path)?;
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    for e in s.entries.values() {
        let mut line = Vec::new();
        if assemble(s, e, &f, &mut buf, &mut line)? {
            out.push(String::from_utf8(line)?);
        }
    }
    Ok(out)
}

/// results.json in the making (a temporary file, renamed by the caller once it ends): its
/// head, then problem records one a line as they are pushed, then its status.
pub(super) struct Results {
    w: std::io::BufWriter<File>,
    first: bool,
    /// The node lines of the problem being written.
    buf: Vec<u8>,
}

impl Results {
    pub(super) fn create(out: &Path, header: &Value) -> Result<Results> {
        let mut w = std::io::BufWriter::new(File::create(out)?);
        write!(
            w,
            "{{\n\"run_id\": {},\n\"pipeline\": {},\n\"problems\": [",
            header["run_id"], header["pipeline"]
        )?;
        Ok(Results {
            w,
            first: true,
            buf: Vec::new(),
        })
    }

    /// Appends one problem's record (assembled from the journal `f` at `e`'s places).
    pub(super) fn push(&mut self, s: &Scan, e: &Entry, f: &File) -> Result<()> {
        if e.open.is_none() {
            return Ok(());
        }
        self.w.write_all(if self.first { b"\n" } else { b",\n" })?;
        self.first = false;
        assemble(s, e, f, &mut self.buf, &mut self.w)?;
        Ok(())
    }

    pub(super) fn end(mut self, status: &str) -> Result<()> {
        write!(self.w, "\n],\n\"status\": {}\n}}\n", json!(status))?;
        self.w.flush()?;
        Ok(())
    }
}

impl Scan {
    /// Takes out, in CSV order, the closed problems below `bound` that no open problem
    /// precedes (they can go to results.json now: problems open in CSV order, so nothing
    /// before them is still to come).
    pub(super) fn take_closed_below(&mut self, bound: usize) -> Vec<(usize, Entry)> {
        let mut out = Vec::new();
        while let Some(e) = self.entries.first_entry() {
            if *e.key() >= bound || e.get().close.is_none() {
                break;
            }
            out.push(e.remove_entry());
        }
        out
    }

    /// Takes out every problem left, in CSV order.
    pub(super) fn take_all(&mut self) -> Vec<(usize, Entry)> {
        std::mem::take(&mut self.entries).into_iter().collect()
    }

    /// Problems noted and not yet taken out.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// results.json from the journal, written problem by problem, at the places `s` notes.
pub(super) fn write_results(journal: &Path, s: &Scan, out: &Path, status: &str) -> Result<()> {
    let f = File::open(journal)?;
    let mut r = Results::create(out, &s.header)?;
    for e in s.entries.values() {
        r.push(s, e, &f)?;
    }
    r.end(status)
}
