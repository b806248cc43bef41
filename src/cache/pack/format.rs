//! The bytes of pack segments and their indexes: a record's header (written before each
//! entry, checked when a segment is scanned), the scan of a segment's records, and the
//! sorted index a sealed segment gets (`<segment>.idx`, searched in place through a map
//! of the file, with a Bloom filter in front so that a miss, the common case of a cold
//! run, reads 7 bits of it and not its rows: the pages of an index a run only misses in
//! stay out of memory).

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
const IDX_MAGIC: &[u8; 8] = b"DSTLIX2\n";
/// A record's header: `DR`, kind (0 entry, 1 removal), 0, body length (u32 LE), the key,
/// the first 8 bytes of the blake3 of the 40 bytes before them.
pub const REC: usize = 48;
/// An index row: key, offset of the body (u64 LE), its length (u32 LE), kind, 3 zeros.
const ROW: usize = 48;
/// An index's header: magic, row count (u64 LE), for each first key byte b the number of
/// rows whose key starts with a byte <= b (256 × u32 LE). The rows follow, then the Bloom
/// filter: [`bloom_words`] u64 LE words.
const IDX_HEAD: usize = 8 + 8 + 256 * 4;
/// Bits of the Bloom filter probed per key (about 1% false positives at 10 bits a key).
const PROBES: usize = 7;

/// The Bloom filter's size in 64-bit words for `rows` keys (10 bits a key).
fn bloom_words(rows: usize) -> usize {
    (rows * 10).div_ceil(64).max(1)
}

/// The filter's bit positions of a key: its bytes are a hash already, taken 4 at a time.
fn probes(key: &Raw, bits: usize) -> impl Iterator<Item = usize> + '_ {
    (0..PROBES).map(move |i| {
        u32::from_le_bytes(key[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize % bits
    })
}
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
/// Headers are read in chunks of 64 KiB; a body that reaches past a chunk is skipped over,
/// never read.
pub fn scan(file: &File, from: u64, size: u64, map: &mut HashMap<Raw, Rec>) -> u64 {
    let mut at = from.max(SEG_MAGIC.len() as u64);
    let mut buf = vec![0u8; 1 << 16];
    while at + REC as u64 <= size {
        let want = ((size - at) as usize).min(buf.len());
        let n = match read_full(file, &mut buf[..want], at) {
            Ok(n) if n >= REC => n,
            // the file is shorter than it was (cut by another process) or unreadable
            _ => return at,
        };
        let mut p = 0usize;
        while p + REC <= n {
            let Some((key, len, removed)) = parse_header(&buf[p..p + REC]) else {
                return at + p as u64;
            };
            let off = at + (p + REC) as u64;
            let end = off + len as u64;
            if end > size {
                return at + p as u64;
            }
            map.insert(key, Rec { off, len, removed });
            p += REC + len as usize;
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
/// The rows are streamed through a small buffer: a segment's index is 0.7 MB, and building
/// it whole beside the segment's map was the peak of a long run's heap.
pub fn write_index(path: &Path, map: &HashMap<Raw, Rec>) -> std::io::Result<()> {
    let mut rows: Vec<(&Raw, &Rec)> = map.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut ends = [0u32; 256];
    for (k, _) in &rows {
        ends[k[0] as usize] += 1;
    }
    let mut total = 0u32;
    for e in ends.iter_mut() {
        total += *e;
        *e = total;
    }
    let mut bloom = vec![0u64; bloom_words(rows.len())];
    let bits = bloom.len() * 64;
    let tmp = path.with_extension(format!("idx.tmp-{:x}", rand::random::<u64>()));
    let written = File::create(&tmp).and_then(|f| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, f);
        w.write_all(IDX_MAGIC)?;
        w.write_all(&(rows.len() as u64).to_le_bytes())?;
        for e in ends {
            w.write_all(&e.to_le_bytes())?;
        }
        for (k, r) in &rows {
            let mut row = [0u8; ROW];
            row[..32].copy_from_slice(*k);
            row[32..40].copy_from_slice(&r.off.to_le_bytes());
            row[40..44].copy_from_slice(&r.len.to_le_bytes());
            row[44] = r.removed as u8;
            w.write_all(&row)?;
            for b in probes(k, bits) {
                bloom[b / 64] |= 1 << (b % 64);
            }
        }
        for word in &bloom {
            w.write_all(&word.to_le_bytes())?;
        }
        w.into_inner().map_err(|e| e.into_error()).map(drop)
    });
    if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// A sealed segment's index: its fanout and Bloom filter in memory (1 KiB and 10 bits a
/// row), its rows read from the file when the filter admits a key. Not mapped: a mapped
/// file's pages count as the process's memory once touched, and the kernel maps large
/// folios of a freshly written file whole.
pub struct Index {
    file: File,
    rows: usize,
    ends: Box<[u32; 256]>,
    bloom: Vec<u64>,
    /// The segment's size: a row pointing past it is damage, never read.
    seg_size: u64,
}

impl Index {
    /// Opens an index file; None when it is not a whole index (it is then rebuilt by a scan).
    /// Rows are checked when read.
    pub fn open(path: &Path, seg_size: u64) -> Option<Index> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut head = vec![0u8; IDX_HEAD];
        file.read_exact_at(&mut head, 0).ok()?;
        if &head[..8] != IDX_MAGIC {
            return None;
        }
        let rows = u64::from_le_bytes(head[8..16].try_into().ok()?) as usize;
        if rows as u64 > len / ROW as u64 {
            return None;
        }
        let words = bloom_words(rows);
        let bloom_at = rows.checked_mul(ROW)?.checked_add(IDX_HEAD)?;
        if len != (bloom_at as u64).checked_add(8 * words as u64)? {
            return None;
        }
        let mut ends = Box::new([0u32; 256]);
        for (b, e) in ends.iter_mut().enumerate() {
            let at = 16 + 4 * b;
            *e = u32::from_le_bytes(head[at..at + 4].try_into().ok()?);
        }
        if ends[255] as usize != rows || ends.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let mut raw = vec![0u8; 8 * words];
        file.read_exact_at(&mut raw, bloom_at as u64).ok()?;
        let bloom = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Some(Index {
            file,
            rows,
            ends,
            bloom,
            seg_size,
        })
    }

    /// Row `i` of `rows` (bytes read from row `first`) as (key, record inside the segment).
    fn row(&self, bytes: &[u8], i: usize) -> (Raw, Option<Rec>) {
        let r = &bytes[i * ROW..(i + 1) * ROW];
        let rec = Rec {
            off: u64::from_le_bytes(r[32..40].try_into().expect("8 bytes")),
            len: u32::from_le_bytes(r[40..44].try_into().expect("4 bytes")),
            removed: r[44] == 1,
        };
        let inside = rec
            .off
            .checked_add(rec.len as u64)
            .is_some_and(|end| end <= self.seg_size);
        (r[..32].try_into().expect("32 bytes"), inside.then_some(rec))
    }

    /// Rows `lo..hi`, read from the file.
    fn read_rows(&self, lo: usize, hi: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; (hi - lo) * ROW];
        self.file
            .read_exact_at(&mut buf, (IDX_HEAD + lo * ROW) as u64)
            .ok()?;
        Some(buf)
    }

    /// Whether the Bloom filter admits `key` (false: certainly not in this index).
    fn may_hold(&self, key: &Raw) -> bool {
        probes(key, self.bloom.len() * 64).all(|b| self.bloom[b / 64] & (1 << (b % 64)) != 0)
    }

    pub fn get(&self, key: &Raw) -> Option<Rec> {
        if !self.may_hold(key) {
            return None;
        }
        let b = key[0] as usize;
        let lo = if b == 0 { 0 } else { self.ends[b - 1] as usize };
        let hi = (self.ends[b] as usize).min(self.rows);
        if lo >= hi {
            return None;
        }
        // the rows of keys sharing the first byte: one read (a merged index of millions of
        // entries reads ~200 KB here; a run's segment ~3 KB)
        let bytes = self.read_rows(lo, hi)?;
        let n = hi - lo;
        let (mut l, mut h) = (0, n);
        while l < h {
            let mid = (l + h) / 2;
            let (k, rec) = self.row(&bytes, mid);
            match k.cmp(key) {
                std::cmp::Ordering::Less => l = mid + 1,
                std::cmp::Ordering::Greater => h = mid,
                std::cmp::Ordering::Equal => return rec,
            }
        }
        None
    }

    /// Every row that lies inside the segment: (key, record).
    pub fn all(&self) -> Vec<(Raw, Rec)> {
        let mut out = Vec::with_capacity(self.rows);
        let chunk = 4096;
        for lo in (0..self.rows).step_by(chunk) {
            let hi = (lo + chunk).min(self.rows);
            let Some(bytes) = self.read_rows(lo, hi) else {
                break;
            };
            out.extend((0..hi - lo).filter_map(|i| {
                let (k, r) = self.row(&bytes, i);
                Some((k, r?))
            }));
        }
        out
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
        assert_eq!(idx.all().len(), 2);
        // rows pointing past their segment are not read
        let short = Index::open(&ip, 10).unwrap();
        assert_eq!(short.get(&k2), None);
        assert!(short.all().is_empty());
        // the filter lets through what the index holds, and keeps out nearly all else
        let many: HashMap<Raw, Rec> = (0..2000u32)
            .map(|i| {
                let key = *blake3::hash(&i.to_le_bytes()).as_bytes();
                (
                    key,
                    Rec {
                        off: 8,
                        len: 0,
                        removed: false,
                    },
                )
            })
            .collect();
        write_index(&ip, &many).unwrap();
        let idx = Index::open(&ip, 8).unwrap();
        assert!(many.keys().all(|k| idx.get(k).is_some()));
        let admitted = (5000..15000u32)
            .filter(|i| idx.may_hold(blake3::hash(&i.to_le_bytes()).as_bytes()))
            .count();
        assert!(admitted < 300, "{admitted} of 10000 absent keys admitted");
        assert_eq!(raw_of(&hex_of(&k2)), Some(k2));
    }
}
