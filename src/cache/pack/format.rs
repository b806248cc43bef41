//! The bytes of pack segments and their indexes: a record's header (written before each
//! entry, checked when a segment is scanned), the scan of a segment's records, and the
//! sorted index a sealed segment gets (`<segment>.idx`, searched in place through a map
//! of the file).

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A key's raw 32 bytes (the blake3 hash the key's 64 hex characters spell).
pub type Raw = [u8; 32];

/// First bytes of a segment file.
pub const SEG_MAGIC: &[u8; 8] = b"DSTLPK1\n";
/// First bytes of an index file.
const IDX_MAGIC: &[u8; 8] = b"DSTLIX1\n";
/// A record's header: `DR`, kind (0 entry, 1 removal), 0, body length (u32 LE), the key,
/// the first 8 bytes of the blake3 of the 40 bytes before them.
pub const REC: usize = 48;
/// An index row: key, offset of the body (u64 LE), its length (u32 LE), kind, 3 zeros.
const ROW: usize = 48;
/// An index's header: magic, row count (u64 LE), for each first key byte b the number of
/// rows whose key starts with a byte <= b (256 × u32 LE).
const IDX_HEAD: usize = 8 + 8 + 256 * 4;
/// Largest body a record may announce.
pub const MAX_BODY: u32 = (1 << 31) - 1;

/// Where a record's body is in its segment; `removed`: the record forgets the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec {
    pub off: u64,
    pub len: u32,
    pub removed: bool,
}

/// The raw bytes of a key's hex, if it is 64 hex characters.
pub fn raw_of(hex: &str) -> Option<Raw> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex_of(raw: &Raw) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record's header for a body of `len` bytes.
pub fn header(key: &Raw, len: u32, removed: bool) -> [u8; REC] {
    let mut h = [0u8; REC];
    h[0..2].copy_from_slice(b"DR");
    h[2] = removed as u8;
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8..40].copy_from_slice(key);
    let sum = blake3::hash(&h[..40]);
    h[40..48].copy_from_slice(&sum.as_bytes()[..8]);
    h
}

/// Reads a record header: (key, body length, removed), or None when it is not one (a torn
/// or not yet complete write, or damage: the scan stops there).
fn parse_header(h: &[u8]) -> Option<(Raw, u32, bool)> {
    if h.len() < REC || &h[0..2] != b"DR" || h[2] > 1 || h[3] != 0 {
        return None;
    }
    if blake3::hash(&h[..40]).as_bytes()[..8] != h[40..48] {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if len > MAX_BODY {
        return None;
    }
    Some((h[8..40].try_into().expect("32 bytes"), len, h[2] == 1))
}

/// Reads the records of `file` from offset `from` up to `size` into `map` (a later record
/// of a key replaces an earlier one); returns the offset after the last whole record.
pub fn scan(file: &File, from: u64, size: u64, map: &mut HashMap<Raw, Rec>) -> u64 {
    let mut at = from.max(SEG_MAGIC.len() as u64);
    let mut buf = vec![0u8; 1 << 20];
    while at + REC as u64 <= size {
        let want = ((size - at) as usize).min(buf.len());
        let Ok(n) = read_full(file, &mut buf[..want], at) else {
            break;
        };
        let mut p = 0usize;
        while p + REC <= n {
            let Some((key, len, removed)) = parse_header(&buf[p..p + REC]) else {
                return at + p as u64;
            };
            let end = at + (p + REC) as u64 + len as u64;
            if end > size {
                return at + p as u64;
            }
            let off = at + (p + REC) as u64;
            map.insert(key, Rec { off, len, removed });
            p += REC + len as usize;
        }
        if p == 0 {
            // one record larger than the buffer: its header is whole and its body within size
            let Some((_, len, _)) = parse_header(&buf[..REC]) else {
                return at;
            };
            buf.resize(REC + len as usize, 0);
            continue;
        }
        at += p as u64;
    }
    at
}

fn read_full(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Writes the index of a segment's records to `path` (a temporary file renamed into place).
pub fn write_index(path: &Path, map: &HashMap<Raw, Rec>) -> std::io::Result<()> {
    let mut rows: Vec<(&Raw, &Rec)> = map.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut buf = Vec::with_capacity(IDX_HEAD + rows.len() * ROW);
    buf.extend_from_slice(IDX_MAGIC);
    buf.extend_from_slice(&(rows.len() as u64).to_le_bytes());
    let mut ends = [0u32; 256];
    for (k, _) in &rows {
        ends[k[0] as usize] += 1;
    }
    let mut total = 0u32;
    for e in ends.iter_mut() {
        total += *e;
        *e = total;
    }
    for e in ends {
        buf.extend_from_slice(&e.to_le_bytes());
    }
    for (k, r) in rows {
        buf.extend_from_slice(k);
        buf.extend_from_slice(&r.off.to_le_bytes());
        buf.extend_from_slice(&r.len.to_le_bytes());
        buf.extend_from_slice(&[r.removed as u8, 0, 0, 0]);
    }
    let tmp = path.with_extension(format!("idx.tmp-{:x}", rand::random::<u64>()));
    let written = File::create(&tmp).and_then(|mut f| f.write_all(&buf));
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// A sealed segment's index, searched in place.
pub struct Index {
    map: memmap2::Mmap,
    rows: usize,
}

impl Index {
    /// Maps an index file; None when it is not a whole index (it is then rebuilt by a scan).
    pub fn open(path: &Path, seg_size: u64) -> Option<Index> {
        let f = File::open(path).ok()?;
        // SAFETY: index files are written once to a temporary name and renamed into place,
        // never changed afterwards; a removed one stays readable while mapped
        let map = unsafe { memmap2::Mmap::map(&f) }.ok()?;
        if map.len() < IDX_HEAD || &map[..8] != IDX_MAGIC {
            return None;
        }
        let rows = u64::from_le_bytes(map[8..16].try_into().ok()?) as usize;
        if map.len() != IDX_HEAD + rows.checked_mul(ROW)? {
            return None;
        }
        let idx = Index { map, rows };
        if idx.end(255) as usize != rows {
            return None;
        }
        // every row must lie inside the segment (a damaged index is a miss, never a panic)
        if (0..rows).any(|i| {
            let r = idx.rec(i);
            r.off + r.len as u64 > seg_size
        }) {
            return None;
        }
        Some(idx)
    }

    fn end(&self, b: usize) -> u32 {
        let at = 16 + 4 * b;
        u32::from_le_bytes(self.map[at..at + 4].try_into().expect("4 bytes"))
    }

    fn key(&self, i: usize) -> &[u8] {
        let at = IDX_HEAD + i * ROW;
        &self.map[at..at + 32]
    }

    fn rec(&self, i: usize) -> Rec {
        let at = IDX_HEAD + i * ROW + 32;
        let m = &self.map;
        Rec {
            off: u64::from_le_bytes(m[at..at + 8].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(m[at + 8..at + 12].try_into().expect("4 bytes")),
            removed: m[at + 12] == 1,
        }
    }

    pub fn get(&self, key: &Raw) -> Option<Rec> {
        let b = key[0] as usize;
        let (mut lo, mut hi) = (
            if b == 0 { 0 } else { self.end(b - 1) as usize },
            self.end(b) as usize,
        );
        hi = hi.min(self.rows);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key.as_slice()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.rec(mid)),
            }
        }
        None
    }

    /// Every row: (key, record).
    pub fn all(&self) -> impl Iterator<Item = (Raw, Rec)> + '_ {
        (0..self.rows).map(|i| (self.key(i).try_into().expect("32 bytes"), self.rec(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_scan_back_and_a_torn_tail_stops_the_scan() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.pack");
        let mut f = File::create(&p).unwrap();
        f.write_all(SEG_MAGIC).unwrap();
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        f.write_all(&header(&k1, 3, false)).unwrap();
        f.write_all(b"abc").unwrap();
        f.write_all(&header(&k2, 2, false)).unwrap();
        f.write_all(b"de").unwrap();
        f.write_all(&header(&k1, 0, true)).unwrap();
        let whole = f.metadata().unwrap().len();
        f.write_all(&header(&k2, 100, false)[..30]).unwrap();
        let f = File::open(&p).unwrap();
        let size = f.metadata().unwrap().len();
        let mut map = HashMap::new();
        assert_eq!(scan(&f, 0, size, &mut map), whole);
        assert!(map[&k1].removed, "the later record wins");
        assert_eq!(map[&k2].len, 2);
        let ip = dir.path().join("s.idx");
        write_index(&ip, &map).unwrap();
        let idx = Index::open(&ip, size).unwrap();
        assert_eq!(idx.get(&k2), Some(map[&k2]));
        assert_eq!(idx.get(&[3u8; 32]), None);
        assert_eq!(idx.all().count(), 2);
        // an index pointing past its segment is not used
        assert!(Index::open(&ip, 10).is_none());
        assert_eq!(raw_of(&hex_of(&k2)), Some(k2));
    }
}
