//! A bounded, deterministic fuzz of the repository parsers (#20 item 3): damaged and random
//! tree, index, snapshot, key, config and pack-header bytes must give an error, never a panic,
//! an abort or an allocation bomb.

use super::crypto::Key;
use super::id::Id;
use super::index::{IndexFile, IndexPack};
use super::keyfile::KeyFile;
use super::pack::{self, BlobType, PackWriter, PackedBlob};
use super::snapshot::Snapshot;
use super::tree::{kind, Node, Tree};
use super::{config::RepoConfig, decode_unpacked, encode_unpacked};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Rounds per input kind: enough to hit every mutation many times, small enough for a debug run.
const ROUNDS: usize = 3000;

/// One mutation of `b`: bit flips, a truncation, random bytes, a huge little-endian u32 or a huge
/// decimal number written over a stretch.
fn mutate(rng: &mut StdRng, b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    let at = |rng: &mut StdRng, len: usize| rng.gen_range(0..len.max(1));
    match rng.gen_range(0..6) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = at(rng, v.len());
                if let Some(x) = v.get_mut(i) {
                    *x ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => v.truncate(at(rng, v.len())),
        2 => {
            let i = at(rng, v.len()).min(v.len());
            let junk: Vec<u8> = (0..rng.gen_range(1..64)).map(|_| rng.gen()).collect();
            v.splice(i..i, junk);
        }
        3 => {
            let i = at(rng, v.len()).min(v.len().saturating_sub(4));
            let huge = [u32::MAX, u32::MAX - 3, 1 << 31, 0][rng.gen_range(0..4)];
            for (k, x) in huge.to_le_bytes().iter().enumerate() {
                if let Some(y) = v.get_mut(i + k) {
                    *y = *x;
                }
            }
        }
        4 => {
            let i = at(rng, v.len()).min(v.len());
            v.splice(i..i, b"99999999999999999999".iter().copied());
        }
        _ => v = (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect(),
    }
    v
}

fn sample_tree() -> Vec<u8> {
    let mut f = Node::new("f", kind::FILE);
    f.content = Some(vec![Id::hash(b"a"), Id::hash(b"b")]);
    f.size = 10;
    let mut d = Node::new("d", kind::DIR);
    d.subtree = Some(Id::hash(b"sub"));
    Tree { nodes: vec![d, f] }.serialize()
}

fn sample_index() -> Vec<u8> {
    let blobs = [PackedBlob {
        id: Id::hash(b"a"),
        tpe: BlobType::Data,
        offset: 0,
        length: 100,
        uncompressed_length: Some(200),
    }];
    let f = IndexFile {
        packs: vec![IndexPack::from_packed(Id::hash(b"p"), &blobs)],
        ..Default::default()
    };
    serde_json::to_vec(&f).expect("an index serializes")
}

const SNAPSHOT: &str = r#"{"time":"2015-01-02T18:10:50.895208559+01:00","tree":"2da81727b6585232894cfbb8f8bdab8d1eccd3d8f7c92bc934d62e62e618ffdf","paths":["/tmp/testdata"],"hostname":"kasimir","tags":["NL"],"summary":{"files_new":1}}"#;

/// Every mutation of each JSON document parses or fails; the unpacked-file decoder too.
#[test]
fn mutated_json_documents_never_panic() {
    let mut rng = StdRng::seed_from_u64(20);
    let key = Key::generate();
    let kf = KeyFile::create(&key, b"pw", 1024, 8, 1).expect("a cheap key");
    let kf = serde_json::to_vec(&kf).expect("a key file serializes");
    let config = serde_json::to_vec(&RepoConfig::new()).expect("a config serializes");
    let docs = [
        sample_tree(),
        sample_index(),
        SNAPSHOT.as_bytes().to_vec(),
        kf,
        config,
    ];
    for doc in &docs {
        for _ in 0..ROUNDS {
            let m = mutate(&mut rng, doc);
            let _ = Tree::parse(&m);
            let _ = serde_json::from_slice::<IndexFile>(&m);
            let _ = serde_json::from_slice::<Snapshot>(&m);
            let _ = serde_json::from_slice::<RepoConfig>(&m);
            if let Ok(k) = KeyFile::parse(&m) {
                // Only parameters within the bounds reach scrypt; keep the test quick.
                if k.n <= 1024 && k.r <= 8 && k.p <= 1 {
                    let _ = k.open(b"pw");
                }
            }
            let _ = decode_unpacked(mutate(&mut rng, &encode_unpacked(doc)));
        }
    }
}

/// A pack of two blobs; its bytes and the key.
fn sample_pack() -> (Vec<u8>, Key) {
    let key = Key::generate();
    let mut w = PackWriter::new();
    let plain = b"hello hello hello hello";
    let comp = zstd::bulk::compress(plain, 3).expect("zstd compresses memory");
    w.add_sealing(
        &key,
        Id::hash(plain),
        BlobType::Data,
        &comp,
        Some(plain.len() as u32),
    );
    w.add_sealing(&key, Id::hash(b"tree"), BlobType::Tree, b"tree", None);
    let (bytes, _, _) = w.finish(&key);
    (bytes, key)
}

/// Mutated packs (sealed bytes, and decrypted headers sealed again, so that the parser sees
/// huge counts and lengths behind a valid MAC) give blobs or errors, and opening a blob whose
/// entry claims a huge length fails without allocating it.
#[test]
fn mutated_pack_headers_and_blobs_never_panic() {
    let mut rng = StdRng::seed_from_u64(21);
    let (pack_bytes, key) = sample_pack();
    let Ok(Ok(blobs)) = pack::parse_header(&key, pack_bytes.len() as u64, &pack_bytes) else {
        panic!("the sample pack parses");
    };
    let hl = u32::from_le_bytes(pack_bytes[pack_bytes.len() - 4..].try_into().unwrap()) as usize;
    let sealed_header = &pack_bytes[pack_bytes.len() - 4 - hl..pack_bytes.len() - 4];
    let header = key.open(sealed_header).expect("the header opens");
    let body = &pack_bytes[..pack_bytes.len() - 4 - hl];
    for _ in 0..ROUNDS {
        let m = mutate(&mut rng, &pack_bytes);
        let _ = pack::parse_header(&key, m.len() as u64, &m);
        let _ = pack::parse_header(&key, rng.gen(), &m);
        // A valid MAC over a mutated header.
        let h = key.seal(&mutate(&mut rng, &header));
        let mut p = body.to_vec();
        p.extend_from_slice(&h);
        p.extend_from_slice(&(h.len() as u32).to_le_bytes());
        if let Ok(Ok(found)) = pack::parse_header(&key, p.len() as u64, &p) {
            for b in found {
                let start = (b.offset as usize).min(p.len());
                let end = start.saturating_add(b.length as usize).min(p.len());
                let _ = pack::open_blob(&key, &b, &p[start..end]);
            }
        }
    }
    for b in &blobs {
        let sealed = &pack_bytes[b.offset as usize..(b.offset + b.length) as usize];
        let mut huge = *b;
        huge.uncompressed_length = Some(u32::MAX);
        assert!(pack::open_blob(&key, &huge, sealed).is_err());
    }
}
