//! restic's content-defined chunker: a Rabin fingerprint over a 64-byte window, with the
//! repository's own polynomial, cutting 512 KiB to 8 MiB chunks (1 MiB on average).
//!
//! The cut points are restic's to the byte (those of `github.com/restic/chunker` with its
//! defaults), so a file that restic stored and a file that backupd stores share their blobs.
//! What makes them the same:
//!
//! - The fingerprint of the last 64 bytes is kept by two tables built from the polynomial `P`
//!   of degree `k`: `out[b]`, the fingerprint of `b` followed by 63 zero bytes (XOR-ing it takes
//!   `b` out of the window), and `reduce[t]`, `(t·x^k mod P) | t·x^k` for the 8 bits `t` that
//!   rise above degree `k` when a byte is shifted in (one XOR cancels them and reduces).
//! - At each chunk's start the state is reset: the window is zeroed, the digest is zero and the
//!   byte `1` is shifted in. The first `MIN_SIZE - 64` bytes of a chunk are not fingerprinted
//!   at all; the next 63 only fill the window; from the byte that makes the chunk `MIN_SIZE`
//!   long the chunk ends after the first byte whose digest has its low 20 bits zero, or at
//!   `MAX_SIZE` bytes. Each chunk depends only on its own bytes.
//! - At the end of the stream what is left is the last chunk (none when nothing is left).
//!
//! All of it is pure: [`Chunker::next_split`] takes slices as they come (a stream read in any
//! pieces cuts the same), [`first_cut`] and [`cuts`] work on a buffer.

/// The smallest chunk (except the last of a stream).
pub const MIN_SIZE: usize = 512 * 1024;
/// The largest chunk.
pub const MAX_SIZE: usize = 8 * 1024 * 1024;
/// The bytes the fingerprint covers.
const WINDOW: usize = 64;
/// A chunk ends where the digest has these bits zero: 20 bits, 1 MiB on average.
const SPLIT_MASK: u64 = (1 << 20) - 1;

/// A polynomial over GF(2), bit `i` the coefficient of `x^i` (restic's `Pol`).
pub type Pol = u64;

/// A polynomial the chunker cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolynomialError {
    #[error("the chunker polynomial {0:?} is not a hexadecimal number")]
    NotHex(String),
    #[error("the chunker polynomial {0:#x} has degree {1}; restic's chunker needs 8 to 53")]
    Degree(Pol, i32),
}

/// Degree of `p`; -1 for zero.
fn degree(p: Pol) -> i32 {
    63 - p.leading_zeros() as i32
}

/// `x mod m` over GF(2); `m` is not zero.
fn reduce(mut x: Pol, m: Pol) -> Pol {
    let dm = degree(m);
    while degree(x) >= dm {
        x ^= m << (degree(x) - dm);
    }
    x
}

/// The tables of one polynomial; build them once per repository and share them.
#[derive(Clone)]
pub struct Tables {
    out: [u64; 256],
    reduce: [u64; 256],
    /// `deg(P) - 8`: the digest shifted right by it is the index into `reduce`.
    shift: u32,
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tables {{ degree: {} }}", self.shift + 8)
    }
}

impl Tables {
    /// The tables of `pol`, of degree 8 to 53 (restic's repositories hold one of degree 53).
    pub fn new(pol: Pol) -> Result<Tables, PolynomialError> {
        let k = degree(pol);
        if !(8..=53).contains(&k) {
            return Err(PolynomialError::Degree(pol, k));
        }
        let mut out = [0u64; 256];
        let mut red = [0u64; 256];
        for b in 0..256u64 {
            let mut h = reduce(b, pol);
            for _ in 1..WINDOW {
                h = reduce(h << 8, pol);
            }
            out[b as usize] = h;
            red[b as usize] = reduce(b << k, pol) | (b << k);
        }
        Ok(Tables {
            out,
            reduce: red,
            shift: (k - 8) as u32,
        })
    }

    /// The tables of a repository config's `chunker_polynomial` (hexadecimal, as restic writes
    /// it, with or without `0x`).
    pub fn from_hex(hex: &str) -> Result<Tables, PolynomialError> {
        let digits = hex.strip_prefix("0x").unwrap_or(hex);
        let pol =
            Pol::from_str_radix(digits, 16).map_err(|_| PolynomialError::NotHex(hex.into()))?;
        Tables::new(pol)
    }
}

/// The state within one chunk: where a stream's next cut falls, fed slice by slice.
#[derive(Clone)]
pub struct Chunker<'t> {
    tables: &'t Tables,
    window: [u8; WINDOW],
    wpos: usize,
    digest: u64,
    /// Bytes of the current chunk seen so far.
    len: usize,
}

impl<'t> Chunker<'t> {
    /// A chunker at the start of a stream.
    pub fn new(tables: &'t Tables) -> Chunker<'t> {
        let mut c = Chunker {
            tables,
            window: [0; WINDOW],
            wpos: 0,
            digest: 0,
            len: 0,
        };
        c.reset();
        c
    }

    /// The state at a chunk's start: empty window, then the byte 1 shifted in (as restic).
    fn reset(&mut self) {
        self.window = [0; WINDOW];
        self.wpos = 0;
        self.digest = 0;
        self.len = 0;
        self.digest = self.roll(self.digest, 1);
    }

    /// Slides `b` into the window and returns the new digest from `digest`.
    #[inline(always)]
    fn roll(&mut self, digest: u64, b: u8) -> u64 {
        let t = self.tables;
        let old = self.window[self.wpos];
        self.window[self.wpos] = b;
        self.wpos = (self.wpos + 1) % WINDOW;
        let d = digest ^ t.out[old as usize];
        // The digest stays below x^k, so the index is the 8 bits above degree k - 8.
        let top = (d >> t.shift) as u8;
        ((d << 8) | b as u64) ^ t.reduce[top as usize]
    }

    /// Bytes seen of the chunk not yet cut.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Feeds `buf`, the stream's next bytes: `Some(n)` when the current chunk ends after
    /// `buf[..n]` (the chunker is then at the next chunk's start and `buf[n..]` is not yet
    /// seen), `None` when all of `buf` belongs to it.
    pub fn next_split(&mut self, buf: &[u8]) -> Option<usize> {
        // Not fingerprinted: the chunk's first MIN_SIZE - WINDOW bytes.
        let mut i = (MIN_SIZE - WINDOW).saturating_sub(self.len).min(buf.len());
        self.len += i;
        // Fingerprinted, but no cut can fall before MIN_SIZE bytes.
        let fill = (MIN_SIZE - 1).saturating_sub(self.len).min(buf.len() - i);
        let mut digest = self.digest;
        for &b in &buf[i..i + fill] {
            digest = self.roll(digest, b);
        }
        i += fill;
        self.len += fill;
        // A cut after the first digest with the split bits zero, or at MAX_SIZE.
        let room = (MAX_SIZE - self.len).min(buf.len() - i);
        for (j, &b) in buf[i..i + room].iter().enumerate() {
            digest = self.roll(digest, b);
            if digest & SPLIT_MASK == 0 {
                self.reset();
                return Some(i + j + 1);
            }
        }
        self.len += room;
        if self.len == MAX_SIZE {
            self.reset();
            return Some(i + room);
        }
        self.digest = digest;
        None
    }
}

/// The length of the first chunk of `data`, which holds at least [`MAX_SIZE`] bytes or is the
/// rest of its stream (then the chunk may be all of it).
pub fn first_cut(tables: &Tables, data: &[u8]) -> usize {
    Chunker::new(tables).next_split(data).unwrap_or(data.len())
}

/// The lengths of the chunks of `data`, a whole stream (none when it is empty).
pub fn cuts(tables: &Tables, data: &[u8]) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = first_cut(tables, rest);
        lens.push(n);
        rest = &rest[n..];
    }
    lens
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// restic's test polynomial.
    const TEST_POL: Pol = 0x3DA3358B4DC173;

    fn tables() -> Tables {
        Tables::new(TEST_POL).unwrap()
    }

    /// A deterministic pseudo-random stream (SplitMix64, little-endian words).
    fn stream(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed;
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// The fingerprint of `data` computed bit by bit: `data` as a polynomial mod `pol`.
    fn slow_fingerprint(data: &[u8], pol: Pol) -> Pol {
        data.iter()
            .fold(0, |h, &b| reduce((h << 8) | b as u64, pol))
    }

    #[test]
    fn out_table_removes_the_oldest_byte() {
        let t = tables();
        for b in [0u8, 1, 0x80, 0xff] {
            let mut w = vec![b];
            w.resize(WINDOW, 0);
            assert_eq!(t.out[b as usize], slow_fingerprint(&w, TEST_POL));
        }
    }

    #[test]
    fn rolling_digest_is_the_fingerprint_of_the_window() {
        let t = tables();
        let data = stream(7, 300);
        let mut c = Chunker::new(&t);
        let mut d = c.digest;
        for (i, &b) in data.iter().enumerate() {
            d = c.roll(d, b);
            if i >= WINDOW {
                assert_eq!(d, slow_fingerprint(&data[i + 1 - WINDOW..=i], TEST_POL));
            }
        }
    }

    #[test]
    fn zeros_cut_at_min_size() {
        // restic's own vector: 4 × MinSize zero bytes are 4 chunks of MinSize, each with this
        // SHA-256.
        let data = vec![0u8; 4 * MIN_SIZE];
        let lens = cuts(&tables(), &data);
        assert_eq!(lens, vec![MIN_SIZE; 4]);
        assert_eq!(
            hex::encode(Sha256::digest(&data[..MIN_SIZE])),
            "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"
        );
    }

    /// What restic 0.19.1 stored backing up `stream(23, 24 MiB)` as one file into a repository
    /// it made (`restic init`), whose `chunker_polynomial` is [`RESTIC_POL`]: the file's chunks'
    /// lengths and the start of their ids (the SHA-256 of each chunk), from its tree and blobs.
    const RESTIC_POL: &str = "3631be21a76919";
    const RESTIC_LENGTHS: &[usize] = &[
        527875, 818924, 1328501, 3532636, 2133603, 5818542, 957480, 4808741, 1433936, 887418,
        610734, 1911598, 395836,
    ];
    const RESTIC_IDS: &[&str] = &[
        "1e15a82293335250",
        "932e3a56ce9f95b9",
        "1f518f78b966633f",
        "9d63ae1b46d58790",
        "5584918ac7685f42",
        "b13749a5cc9a697a",
        "0a4c214e9f1e26ad",
        "b8c9844c70c3fc57",
        "7b33e783be87ee9d",
        "d206ddbbac300d2b",
        "8a33ef63dd821d66",
        "c23ab449637edb5a",
        "d6fd1fa2cb6b053c",
    ];

    #[test]
    fn restic_cut_points() {
        let data = stream(23, 24 * 1024 * 1024);
        let lens = cuts(&Tables::from_hex(RESTIC_POL).unwrap(), &data);
        assert_eq!(lens, RESTIC_LENGTHS);
        let mut start = 0;
        for (n, id) in lens.iter().zip(RESTIC_IDS) {
            assert!(hex::encode(Sha256::digest(&data[start..start + n])).starts_with(id));
            start += n;
        }
    }

    #[test]
    fn feeding_in_pieces_cuts_the_same() {
        let t = tables();
        let data = stream(5, 12 * 1024 * 1024 + 333);
        let whole = cuts(&t, &data);
        for piece in [1usize << 16, 4093, MAX_SIZE + 1] {
            let mut c = Chunker::new(&t);
            let (mut lens, mut start) = (Vec::new(), 0usize);
            let mut pos = 0usize;
            while pos < data.len() {
                let end = (pos + piece).min(data.len());
                match c.next_split(&data[pos..end]) {
                    Some(n) => {
                        lens.push(pos + n - start);
                        pos += n;
                        start = pos;
                    }
                    None => pos = end,
                }
            }
            if start < data.len() {
                lens.push(data.len() - start);
            }
            assert_eq!(lens, whole, "pieces of {piece}");
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let t = tables();
        let data = stream(11, 30 * 1024 * 1024);
        let lens = cuts(&t, &data);
        let (last, body) = lens.split_last().unwrap();
        assert!(body.iter().all(|&n| (MIN_SIZE..=MAX_SIZE).contains(&n)));
        assert!(*last <= MAX_SIZE);
        // Bytes that never match the split mask end chunks at MAX_SIZE.
        let ones = vec![0xffu8; 2 * MAX_SIZE + 5];
        let lens = cuts(&t, &ones);
        let first = lens[0];
        assert!(first == MAX_SIZE || (MIN_SIZE..MAX_SIZE).contains(&first));
    }

    #[test]
    fn short_and_empty_streams() {
        let t = tables();
        assert!(cuts(&t, &[]).is_empty());
        assert_eq!(cuts(&t, &[7; 100]), vec![100]);
        assert_eq!(first_cut(&t, &stream(1, MIN_SIZE)), MIN_SIZE);
    }

    #[test]
    fn polynomial_errors() {
        assert!(Tables::from_hex("3da3358b4dc173").is_ok());
        assert!(Tables::from_hex("0x3DA3358B4DC173").is_ok());
        assert_eq!(
            Tables::from_hex("zz").unwrap_err(),
            PolynomialError::NotHex("zz".into())
        );
        assert!(matches!(
            Tables::new(1 << 60),
            Err(PolynomialError::Degree(_, 60))
        ));
        assert!(matches!(
            Tables::new(0),
            Err(PolynomialError::Degree(0, -1))
        ));
    }
}
