//! Pack files: sealed blobs back to back, then the sealed header and its length.

use super::crypto::{CryptoError, Key, OVERHEAD};
use super::id::Id;
use serde::{Deserialize, Serialize};

/// What a blob holds: file content or a directory listing. They live in separate packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum BlobType {
    Data,
    Tree,
}

impl BlobType {
    pub fn as_str(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// One blob's place in a pack, as the header and the index describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedBlob {
    pub id: Id,
    pub tpe: BlobType,
    pub offset: u32,
    /// Length of the sealed blob in the pack.
    pub length: u32,
    /// Length of the plaintext, for compressed blobs only.
    pub uncompressed_length: Option<u32>,
}

impl PackedBlob {
    /// The plaintext length of the blob.
    pub fn data_length(&self) -> u32 {
        self.uncompressed_length
            .unwrap_or(self.length.saturating_sub(OVERHEAD as u32))
    }
}

/// Why a pack or blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("pack is too short ({0} bytes) to hold a header")]
    TooShort(u64),
    #[error("header length {header_len} does not fit in a pack of {size} bytes")]
    BadHeaderLength { header_len: u32, size: u64 },
    #[error("header cannot be decrypted: {0}")]
    HeaderCrypto(CryptoError),
    #[error("header entry {entry} has unknown type {tpe}")]
    BadEntryType { entry: usize, tpe: u8 },
    #[error("header is truncated at entry {0}")]
    TruncatedHeader(usize),
    #[error("blob {id} cannot be decrypted: {err}")]
    BlobCrypto { id: Id, err: CryptoError },
    #[error("blob {id} cannot be decompressed: {msg}")]
    Decompress { id: Id, msg: String },
    #[error("blob {id} has hash {actual}: the content is damaged")]
    HashMismatch { id: Id, actual: Id },
}

/// Compression level for blobs; restic's `auto` is comparable to zstd level 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Off,
    Level(i32),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Level(3)
    }
}

/// A blob ready to be put into a pack.
pub struct SealedBlob {
    pub id: Id,
    pub tpe: BlobType,
    pub sealed: Vec<u8>,
    pub uncompressed_length: Option<u32>,
}

/// Compresses (when it pays) and encrypts one blob whose id is already known.
pub fn seal_blob(key: &Key, tpe: BlobType, id: Id, plain: &[u8], comp: Compression) -> SealedBlob {
    if let Compression::Level(level) = comp {
        if let Ok(c) = zstd::bulk::compress(plain, level) {
            if c.len() < plain.len() {
                return SealedBlob {
                    id,
                    tpe,
                    sealed: key.seal(&c),
                    uncompressed_length: Some(plain.len() as u32),
                };
            }
        }
    }
    SealedBlob {
        id,
        tpe,
        sealed: key.seal(plain),
        uncompressed_length: None,
    }
}

/// Decrypts, decompresses and verifies one sealed blob against its id.
pub fn open_blob(key: &Key, blob: &PackedBlob, sealed: &[u8]) -> Result<Vec<u8>, PackError> {
    let plain = key
        .open(sealed)
        .map_err(|err| PackError::BlobCrypto { id: blob.id, err })?;
    let plain = match blob.uncompressed_length {
        Some(n) => decompress(&plain, n).map_err(|e| PackError::Decompress {
            id: blob.id,
            msg: e.to_string(),
        })?,
        None => plain,
    };
    let actual = Id::hash(&plain);
    if actual != blob.id {
        return Err(PackError::HashMismatch {
            id: blob.id,
            actual,
        });
    }
    if let Some(n) = blob.uncompressed_length {
        if plain.len() != n as usize {
            return Err(PackError::Decompress {
                id: blob.id,
                msg: format!("{} bytes instead of {}", plain.len(), n),
            });
        }
    }
    Ok(plain)
}

/// Decompresses at most `n + 1` bytes (one more shows a wrong length). Memory grows with what
/// the data really holds, not with the length a header or index claims (up to 4 GiB each).
fn decompress(compressed: &[u8], n: u32) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity((n as usize).min(1 << 23));
    zstd::stream::read::Decoder::new(compressed)?
        .take(n as u64 + 1)
        .read_to_end(&mut out)?;
    Ok(out)
}

const ENTRY_PLAIN: usize = 1 + 4 + 32;
const ENTRY_COMPRESSED: usize = 1 + 4 + 4 + 32;

/// Builds one pack in memory.
#[derive(Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    blobs: Vec<PackedBlob>,
}

impl PackWriter {
    pub fn new() -> PackWriter {
        PackWriter::default()
    }

    pub fn with_capacity(n: usize) -> PackWriter {
        PackWriter {
            buf: Vec::with_capacity(n),
            blobs: Vec::new(),
        }
    }

    pub fn add(&mut self, b: &SealedBlob) {
        self.blobs.push(PackedBlob {
            id: b.id,
            tpe: b.tpe,
            offset: self.buf.len() as u32,
            length: b.sealed.len() as u32,
            uncompressed_length: b.uncompressed_length,
        });
        self.buf.extend_from_slice(&b.sealed);
    }

    /// Seals `payload` (the blob's plaintext, or its zstd compression when
    /// `uncompressed_length` is set) straight into the pack; returns the sealed length.
    pub fn add_sealing(
        &mut self,
        key: &Key,
        id: Id,
        tpe: BlobType,
        payload: &[u8],
        uncompressed_length: Option<u32>,
    ) -> u32 {
        let offset = self.buf.len() as u32;
        let length = key.seal_into(payload, &mut self.buf) as u32;
        self.blobs.push(PackedBlob {
            id,
            tpe,
            offset,
            length,
            uncompressed_length,
        });
        length
    }

    /// Adds an already sealed blob as read from another pack (for repacking).
    pub fn add_raw(
        &mut self,
        id: Id,
        tpe: BlobType,
        sealed: &[u8],
        uncompressed_length: Option<u32>,
    ) {
        self.blobs.push(PackedBlob {
            id,
            tpe,
            offset: self.buf.len() as u32,
            length: sealed.len() as u32,
            uncompressed_length,
        });
        self.buf.extend_from_slice(sealed);
    }

    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn count(&self) -> usize {
        self.blobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Appends the sealed header and its length; returns the pack's bytes, id and blobs.
    pub fn finish(mut self, key: &Key) -> (Vec<u8>, Id, Vec<PackedBlob>) {
        let mut header = Vec::with_capacity(self.blobs.len() * ENTRY_COMPRESSED);
        for b in &self.blobs {
            let base = match b.tpe {
                BlobType::Data => 0u8,
                BlobType::Tree => 1u8,
            };
            match b.uncompressed_length {
                None => {
                    header.push(base);
                    header.extend_from_slice(&b.length.to_le_bytes());
                }
                Some(n) => {
                    header.push(base | 2);
                    header.extend_from_slice(&b.length.to_le_bytes());
                    header.extend_from_slice(&n.to_le_bytes());
                }
            }
            header.extend_from_slice(&b.id.0);
        }
        let sealed = key.seal(&header);
        self.buf.extend_from_slice(&sealed);
        self.buf
            .extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        let id = Id::hash(&self.buf);
        (self.buf, id, self.blobs)
    }
}

/// The size of a pack whose header lists `blobs`: their lengths, one header entry each (37
/// bytes, 41 with an uncompressed length), the header's encryption overhead and its length field.
pub fn size_from_header(blobs: &[PackedBlob]) -> u64 {
    let mut n = (OVERHEAD + 4) as u64;
    for b in blobs {
        n += b.length as u64;
        n += if b.uncompressed_length.is_some() {
            41
        } else {
            37
        };
    }
    n
}

/// How many bytes from the end of a pack to read to be likely to get the whole header at once.
pub fn header_read_hint(pack_size: u64) -> u64 {
    pack_size.min(4 + OVERHEAD as u64 + 64 * ENTRY_COMPRESSED as u64)
}

/// Parses the header, given the pack's total size and its last `tail.len()` bytes (which must
/// include the whole sealed header and the length field). Returns Err(needed) via
/// `HeaderNeeds` when the tail is too short.
pub fn parse_header(
    key: &Key,
    pack_size: u64,
    tail: &[u8],
) -> Result<Result<Vec<PackedBlob>, u64>, PackError> {
    if pack_size < 4 + OVERHEAD as u64 || tail.len() < 4 {
        return Err(PackError::TooShort(pack_size));
    }
    let hl = u32::from_le_bytes(
        tail[tail.len() - 4..]
            .try_into()
            .expect("a slice of the width read"),
    );
    if hl as u64 + 4 > pack_size || (hl as usize) < OVERHEAD {
        return Err(PackError::BadHeaderLength {
            header_len: hl,
            size: pack_size,
        });
    }
    let need = hl as u64 + 4;
    if (tail.len() as u64) < need {
        return Ok(Err(need));
    }
    let sealed = &tail[tail.len() - need as usize..tail.len() - 4];
    let header = key.open(sealed).map_err(PackError::HeaderCrypto)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut offset: u64 = 0;
    let mut i = 0;
    while pos < header.len() {
        let t = header[pos];
        let (tpe, compressed) = match t {
            0 => (BlobType::Data, false),
            1 => (BlobType::Tree, false),
            2 => (BlobType::Data, true),
            3 => (BlobType::Tree, true),
            _ => return Err(PackError::BadEntryType { entry: i, tpe: t }),
        };
        let size = if compressed {
            ENTRY_COMPRESSED
        } else {
            ENTRY_PLAIN
        };
        if pos + size > header.len() {
            return Err(PackError::TruncatedHeader(i));
        }
        let e = &header[pos..pos + size];
        let length = u32::from_le_bytes(e[1..5].try_into().expect("a slice of the width read"));
        let (ul, idpos) = if compressed {
            (
                Some(u32::from_le_bytes(
                    e[5..9].try_into().expect("a slice of the width read"),
                )),
                9,
            )
        } else {
            (None, 5)
        };
        let mut id = [0u8; 32];
        id.copy_from_slice(&e[idpos..idpos + 32]);
        out.push(PackedBlob {
            id: Id(id),
            tpe,
            offset: offset as u32,
            length,
            uncompressed_length: ul,
        });
        offset += length as u64;
        pos += size;
        i += 1;
    }
    if offset + need > pack_size {
        return Err(PackError::BadHeaderLength {
            header_len: hl,
            size: pack_size,
        });
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip() {
        let key = Key::generate();
        let mut w = PackWriter::new();
        let blobs: Vec<Vec<u8>> = vec![
            vec![1u8; 5000],
            b"tiny".to_vec(),
            (0..3000u32).map(|i| (i * 31) as u8).collect(),
        ];
        for (i, b) in blobs.iter().enumerate() {
            let comp = if i == 1 {
                Compression::Off
            } else {
                Compression::default()
            };
            w.add(&seal_blob(&key, BlobType::Data, Id::hash(b), b, comp));
        }
        let (bytes, id, entries) = w.finish(&key);
        assert_eq!(Id::hash(&bytes), id);
        assert!(
            entries[0].uncompressed_length.is_some(),
            "repetitive data compresses"
        );
        assert!(entries[1].uncompressed_length.is_none());
        let parsed = parse_header(&key, bytes.len() as u64, &bytes)
            .unwrap()
            .unwrap();
        assert_eq!(parsed, entries);
        for (e, b) in parsed.iter().zip(&blobs) {
            let s = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&open_blob(&key, e, s).unwrap(), b);
        }
        // A short tail asks for more.
        let need = parse_header(&key, bytes.len() as u64, &bytes[bytes.len() - 10..]).unwrap();
        assert!(need.is_err());
    }

    #[test]
    fn damaged_blob_is_detected() {
        let key = Key::generate();
        let data = b"some content".to_vec();
        let sb = seal_blob(
            &key,
            BlobType::Data,
            Id::hash(&data),
            &data,
            Compression::Off,
        );
        let pb = PackedBlob {
            id: sb.id,
            tpe: BlobType::Data,
            offset: 0,
            length: sb.sealed.len() as u32,
            uncompressed_length: None,
        };
        let mut bad = sb.sealed.clone();
        bad[18] ^= 0x40;
        assert!(matches!(
            open_blob(&key, &pb, &bad),
            Err(PackError::BlobCrypto { .. })
        ));
        let wrong = PackedBlob {
            id: Id::hash(b"other"),
            ..pb
        };
        assert!(matches!(
            open_blob(&key, &wrong, &sb.sealed),
            Err(PackError::HashMismatch { .. })
        ));
    }
}
