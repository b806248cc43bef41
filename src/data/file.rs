//! A problem CSV checked in one streamed pass and indexed, its rows read again when they are
//! needed. [`ProblemFile`] checks the header, every row's shape, ids (unique, not empty) and
//! questions (not empty), hashes the file's bytes, and keeps per row only where it lies in the
//! file and a check of its values (16 bytes a row); a [`Selection`] is the rows a run takes
//! (their bounds when they are consecutive, else 4 bytes each). A row becomes a [`Problem`]
//! when it is read: the scheduler reads a problem when it opens, so a run of 100,000 problems
//! holds whole rows only for its open ones. The file stays open (a file an editor replaces is
//! still read as it was loaded); a row whose values no longer match their check is an error
//! naming the file, never another problem. It does not apply the filters (`data::select`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::row::Row;
use super::{LoadError, Problem, REQUIRED_COLUMNS};

/// Where a row lies in the file, and a hash of its values (what a reread must find).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    len: u32,
    check: u32,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: File,
    names: Arc<[Box<str>]>,
    id_col: usize,
    q_col: usize,
    spans: Vec<Span>,
}

/// A checked problem CSV: its columns, the blake3 of its bytes, and the index of its rows
/// (a clone shares the index).
#[derive(Debug, Clone)]
pub struct ProblemFile {
    pub columns: Vec<String>,
    /// blake3 of the file's bytes (recorded in config.json).
    pub file_hash: String,
    inner: Arc<Inner>,
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn hash64(s: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    h.write(s.as_bytes());
    h.finish()
}

/// The check of a row's values (the same however the row is quoted).
fn check_of(rec: &csv::StringRecord) -> u32 {
    let mut h = std::hash::DefaultHasher::new();
    for f in rec.iter() {
        h.write(f.as_bytes());
        h.write_u8(0xff);
    }
    h.finish() as u32
}

/// Exact first sightings of texts, kept as 64-bit hashes (12 bytes a text): a hash seen
/// before is confirmed against the text at its first index, and a true collision is kept
/// apart by its text.
#[derive(Default)]
struct Seen {
    first: HashMap<u64, u32>,
    collided: HashMap<String, u32>,
}

impl Seen {
    /// Where `text` was first seen (None: it was not, and it is now, at `at`); `text_of`
    /// gives the text at an earlier index.
    fn first_of(
        &mut self,
        text: &str,
        at: u32,
        text_of: impl FnOnce(u32) -> Result<String, LoadError>,
    ) -> Result<Option<u32>, LoadError> {
        let h = hash64(text);
        let Some(&j) = self.first.get(&h) else {
            self.first.insert(h, at);
            return Ok(None);
        };
        if text_of(j)? == text {
            return Ok(Some(j));
        }
        if let Some(&k) = self.collided.get(text) {
            return Ok(Some(k));
        }
        self.collided.insert(text.to_string(), at);
        Ok(None)
    }
}

impl Inner {
    /// A row's id (present, unique) and question (present); `scratch` rereads earlier rows
    /// where two ids' hashes meet. Errors name the file and the line.
    fn check_row(
        &self,
        shown: &str,
        line: u64,
        rec: &csv::StringRecord,
        ids: &mut Seen,
        (earlier, erec): (&mut Vec<u8>, &mut csv::StringRecord),
    ) -> Result<(), LoadError> {
        let content = LoadError::Content;
        let id = rec.get(self.id_col).unwrap_or("").trim();
        if id.is_empty() {
            return Err(content(format!(
                "{shown}:{line}: empty id; give every row an id"
            )));
        }
        let index = u32::try_from(self.spans.len())
            .map_err(|_| content(format!("{shown}: more than {} rows", u32::MAX)))?;
        let text_of = |j: u32| -> Result<String, LoadError> {
            self.read(j as usize, earlier, erec)?;
            Ok(erec.get(self.id_col).unwrap_or("").trim().to_string())
        };
        if ids.first_of(id, index, text_of)?.is_some() {
            return Err(content(format!(
                "{shown}:{line}: duplicate id `{id}`; ids must be unique"
            )));
        }
        if rec.get(self.q_col).unwrap_or("").trim().is_empty() {
            return Err(content(format!(
                "{shown}:{line}: problem `{id}` has an empty question; fill it in or remove the row"
            )));
        }
        Ok(())
    }

    fn changed(&self, row: usize, why: &str) -> LoadError {
        LoadError::Content(format!(
            "{}: row {row} (0-based) no longer reads as it did when the run loaded it ({why}): the file was changed during the run; put it back or start the run again",
            self.path.display()
        ))
    }

    /// Reads row `i` into `rec` (`buf`: the bytes, reused).
    fn read(
        &self,
        i: usize,
        buf: &mut Vec<u8>,
        rec: &mut csv::StringRecord,
    ) -> Result<(), LoadError> {
        let s = *self
            .spans
            .get(i)
            .ok_or_else(|| self.changed(i, "no such row"))?;
        buf.resize(s.len as usize, 0);
        self.file
            .read_exact_at(buf, s.start)
            .map_err(|e| self.changed(i, &e.to_string()))?;
        let read = ROW_READER.with(|r| {
            let mut r = r.borrow_mut();
            let cursor = r.get_mut();
            cursor.get_mut().clear();
            cursor.get_mut().extend_from_slice(buf);
            r.seek_raw(std::io::SeekFrom::Start(0), csv::Position::new())?;
            r.read_record(rec)
        });
        match read {
            Ok(true) if check_of(rec) == s.check => Ok(()),
            Ok(_) => Err(self.changed(i, "its values differ")),
            Err(e) => Err(self.changed(i, &e.to_string())),
        }
    }

    fn problem(&self, i: usize, rec: &csv::StringRecord) -> Problem {
        Problem {
            index: i,
            id: rec.get(self.id_col).unwrap_or("").trim().to_string(),
            row: Row::new(self.names.clone(), rec.iter()),
            map: Default::default(),
        }
    }
}

thread_local! {
    // one CSV parser per thread for single rows: building one (its state machine) per row
    // read was a measurable part of a warm run
    static ROW_READER: std::cell::RefCell<csv::Reader<std::io::Cursor<Vec<u8>>>> = {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::Cursor::new(Vec::new()));
        // no header row to read: every record is a row
        r.set_byte_headers(csv::ByteRecord::new());
        std::cell::RefCell::new(r)
    };
}

/// The rows of a file being read, one at a time with a reused buffer.
struct Rows<'a> {
    inner: &'a Inner,
    buf: Vec<u8>,
    rec: csv::StringRecord,
}

impl<'a> Rows<'a> {
    fn new(inner: &'a Inner) -> Self {
        Rows {
            inner,
            buf: Vec::new(),
            rec: csv::StringRecord::new(),
        }
    }
    fn problem(&mut self, i: usize) -> Result<Problem, LoadError> {
        self.inner.read(i, &mut self.buf, &mut self.rec)?;
        Ok(self.inner.problem(i, &self.rec))
    }
    /// Row `i`'s value in column `col`.
    fn value(&mut self, i: usize, col: usize) -> Result<String, LoadError> {
        self.inner.read(i, &mut self.buf, &mut self.rec)?;
        Ok(self.rec.get(col).unwrap_or("").trim().to_string())
    }
}

/// The header's columns, checked: named, unique, the required ones present.
fn columns(shown: &str, headers: &csv::StringRecord) -> Result<Vec<String>, LoadError> {
    let content = LoadError::Content;
    let columns: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    let mut seen_cols = HashSet::new();
    for c in &columns {
        if c.is_empty() {
            return Err(content(format!(
                "{shown}:1: the header has an empty column name; name every column"
            )));
        }
        if !seen_cols.insert(c.as_str()) {
            return Err(content(format!(
                "{shown}:1: column `{c}` appears twice in the header; rename or remove one (a row would keep only one of the values)"
            )));
        }
    }
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|c| !columns.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Err(content(format!(
            "{shown}:1: missing column(s) {}; a problem set needs the header `id,question,answer` (`solution` and extra columns are optional and kept)",
            missing.join(", ")
        )));
    }
    Ok(columns)
}

impl ProblemFile {
    /// Reads and checks a problem CSV. Errors name the file and the line.
    pub fn open(path: &Path) -> Result<ProblemFile, LoadError> {
        let shown = path.display().to_string();
        let file = File::open(path)
            .map_err(|e| LoadError::Unreadable(format!("cannot read {shown}: {e}")))?;
        let mut hashing = Hashing {
            inner: std::io::BufReader::with_capacity(1 << 16, &file),
            hasher: blake3::Hasher::new(),
        };
        let content = LoadError::Content;
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(&mut hashing);
        let headers = rdr
            .headers()
            .map_err(|e| content(format!("{shown}:1: bad CSV header: {e}")))?
            .clone();
        let columns = columns(&shown, &headers)?;
        let at = |name: &str| columns.iter().position(|c| c == name).expect("checked");
        let mut inner = Inner {
            path: path.to_path_buf(),
            file: file
                .try_clone()
                .map_err(|e| LoadError::Unreadable(format!("cannot read {shown}: {e}")))?,
            names: columns.iter().map(|c| c.as_str().into()).collect(),
            id_col: at("id"),
            q_col: at("question"),
            spans: Vec::new(),
        };
        let mut ids = Seen::default();
        let mut rec = csv::StringRecord::new();
        let mut earlier = Vec::new();
        let mut erec = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    return Err(content(format!(
                        "{shown}:{line}: bad CSV row: {e}; every row needs {} fields, quoted when it holds a comma, quote or newline",
                        columns.len()
                    )));
                }
            }
            let pos = rec.position().cloned().unwrap_or_else(csv::Position::new);
            let line = pos.line();
            inner.check_row(&shown, line, &rec, &mut ids, (&mut earlier, &mut erec))?;
            let len = u32::try_from(rdr.position().byte() - pos.byte())
                .map_err(|_| content(format!("{shown}:{line}: a row of more than 4 GB")))?;
            inner.spans.push(Span {
                start: pos.byte(),
                len,
                check: check_of(&rec),
            });
        }
        drop(rdr);
        // the hash covers the whole file, also what the CSV reader did not need to read
        std::io::copy(&mut hashing, &mut std::io::sink())
            .map_err(|e| LoadError::Unreadable(format!("cannot read {shown}: {e}")))?;
        if inner.spans.is_empty() {
            return Err(content(format!(
                "{shown}: no rows; add at least one problem under the header"
            )));
        }
        inner.spans.shrink_to_fit();
        Ok(ProblemFile {
            columns,
            file_hash: hashing.hasher.finalize().to_hex().to_string(),
            inner: Arc::new(inner),
        })
    }

    /// Rows in the file.
    pub fn len(&self) -> usize {
        self.inner.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.spans.is_empty()
    }

    /// Row `i` (0-based) as a problem.
    pub fn problem(&self, i: usize) -> Result<Problem, LoadError> {
        Rows::new(&self.inner).problem(i)
    }

    /// The rows of these ids (ids the file does not have are left out), in one pass.
    pub fn find(&self, ids: &[&str]) -> Result<HashMap<String, usize>, LoadError> {
        let want: HashSet<&str> = ids.iter().copied().collect();
        let mut rows = Rows::new(&self.inner);
        let mut out = HashMap::new();
        for i in 0..self.len() {
            if out.len() == want.len() {
                break;
            }
            let id = rows.value(i, self.inner.id_col)?;
            if want.contains(id.as_str()) {
                out.insert(id, i);
            }
        }
        Ok(out)
    }
}

/// The rows a run takes, in the file's order (a clone shares the file).
#[derive(Debug, Clone)]
pub struct Selection {
    file: ProblemFile,
    rows: Picked,
}

/// Selected row numbers: a run of consecutive rows (the whole file, an `index_range`) as its
/// bounds, any other choice as a list (4 bytes a row).
#[derive(Debug, Clone)]
enum Picked {
    Run { first: u32, len: u32 },
    List(Vec<u32>),
}

impl Picked {
    fn of(rows: Vec<u32>) -> Picked {
        match rows.first() {
            Some(&first) if rows.windows(2).all(|w| w[0].checked_add(1) == Some(w[1])) => {
                Picked::Run {
                    first,
                    len: rows.len() as u32,
                }
            }
            None => Picked::Run { first: 0, len: 0 },
            Some(_) => Picked::List(rows),
        }
    }

    fn len(&self) -> usize {
        match self {
            Picked::Run { len, .. } => *len as usize,
            Picked::List(v) => v.len(),
        }
    }

    /// The `k`-th selected row.
    fn at(&self, k: usize) -> Option<u32> {
        match self {
            Picked::Run { first, len } => (k < *len as usize).then(|| first + k as u32),
            Picked::List(v) => v.get(k).copied(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (run, list) = match self {
            Picked::Run { first, len } => (*first..first + len, &[][..]),
            Picked::List(v) => (0..0, &v[..]),
        };
        run.chain(list.iter().copied())
    }
}

impl Selection {
    /// These rows of `file` (0-based, in order, each < `file.len()`).
    pub fn of(file: &ProblemFile, rows: Vec<u32>) -> Selection {
        Selection {
            file: file.clone(),
            rows: Picked::of(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() == 0
    }

    /// The `k`-th selected problem, read from the file.
    pub fn get(&self, k: usize) -> Result<Problem, LoadError> {
        let i = self.rows.at(k).unwrap_or(u32::MAX);
        self.file.problem(i as usize)
    }

    /// Every selected problem in order, each read when the iterator reaches it.
    pub fn iter(&self) -> impl Iterator<Item = Result<Problem, LoadError>> + '_ {
        let mut rows = Rows::new(&self.file.inner);
        self.rows.iter().map(move |i| rows.problem(i as usize))
    }

    /// The selected problems for which `keep` holds (the order kept).
    pub fn filtered(&self, mut keep: impl FnMut(&Problem) -> bool) -> Result<Selection, LoadError> {
        let mut rows = Rows::new(&self.file.inner);
        let mut out = Vec::new();
        for i in self.rows.iter() {
            if keep(&rows.problem(i as usize)?) {
                out.push(i);
            }
        }
        Ok(Selection::of(&self.file, out))
    }

    /// Groups of ids whose question text is identical (they would share cache entries),
    /// ordered by the question; each group in the selection's order.
    pub fn duplicate_questions(&self) -> Result<Vec<Vec<String>>, LoadError> {
        let inner = &self.file.inner;
        let (mut rows, mut earlier) = (Rows::new(inner), Rows::new(inner));
        let mut seen = Seen::default();
        let mut groups: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let row = |k: u32| self.rows.at(k as usize).unwrap_or(u32::MAX) as usize;
        for (k, i) in self.rows.iter().enumerate() {
            let q = rows.value(i as usize, inner.q_col)?;
            let first = seen.first_of(&q, k as u32, |j| earlier.value(row(j), inner.q_col))?;
            if let Some(j) = first {
                groups.entry(j).or_insert_with(|| vec![j]).push(k as u32);
            }
        }
        let mut by_q: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (first, ks) in groups {
            let q = rows.value(row(first), inner.q_col)?;
            let mut ids = Vec::with_capacity(ks.len());
            for k in ks {
                ids.push(rows.value(row(k), inner.id_col)?);
            }
            by_q.insert(q, ids);
        }
        Ok(by_q.into_values().collect())
    }
}

#[cfg(test)]
mod tests;
