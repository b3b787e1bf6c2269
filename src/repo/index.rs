//! Index files (`index/<id>`) and the in-memory master index that maps blob ids to packs.

use super::id::Id;
use super::pack::{BlobType, PackedBlob};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The JSON document of one index file.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct IndexFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<Vec<Id>>,
    pub packs: Vec<IndexPack>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: Id,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct IndexBlob {
    pub id: Id,
    #[serde(rename = "type")]
    pub tpe: BlobType,
    pub offset: u32,
    pub length: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_length: Option<u32>,
}

impl IndexPack {
    pub fn from_packed(id: Id, blobs: &[PackedBlob]) -> IndexPack {
        IndexPack {
            id,
            blobs: blobs
                .iter()
                .map(|b| IndexBlob {
                    id: b.id,
                    tpe: b.tpe,
                    offset: b.offset,
                    length: b.length,
                    uncompressed_length: b.uncompressed_length,
                })
                .collect(),
        }
    }

    pub fn packed(&self) -> impl Iterator<Item = PackedBlob> + '_ {
        self.blobs.iter().map(|b| PackedBlob {
            id: b.id,
            tpe: b.tpe,
            offset: b.offset,
            length: b.length,
            uncompressed_length: b.uncompressed_length,
        })
    }
}

/// Where one blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of the pack id in `MasterIndex::packs`.
    pub pack: u32,
    pub blob: PackedBlob,
}

/// All index files merged: blob id (and type) to location, plus every pack's size in bytes as the
/// index implies it.
#[derive(Default, Debug)]
pub struct MasterIndex {
    packs: Vec<Id>,
    pack_pos: HashMap<Id, u32>,
    blobs: HashMap<(Id, BlobType), BlobLocation>,
    /// The index files merged in so far.
    pub files: Vec<Id>,
}

impl MasterIndex {
    pub fn new() -> MasterIndex {
        MasterIndex::default()
    }

    fn pack_index(&mut self, id: Id) -> u32 {
        if let Some(&p) = self.pack_pos.get(&id) {
            return p;
        }
        let p = self.packs.len() as u32;
        self.packs.push(id);
        self.pack_pos.insert(id, p);
        p
    }

    /// Adds a pack's blobs. A blob already known keeps its first location.
    pub fn add_pack(&mut self, pack: Id, blobs: impl IntoIterator<Item = PackedBlob>) {
        let p = self.pack_index(pack);
        for b in blobs {
            self.blobs
                .entry((b.id, b.tpe))
                .or_insert(BlobLocation { pack: p, blob: b });
        }
    }

    pub fn merge_file(&mut self, file_id: Id, f: &IndexFile) {
        for p in &f.packs {
            self.add_pack(p.id, p.packed());
        }
        self.files.push(file_id);
    }

    pub fn get(&self, id: &Id, tpe: BlobType) -> Option<&BlobLocation> {
        self.blobs.get(&(*id, tpe))
    }

    pub fn has(&self, id: &Id, tpe: BlobType) -> bool {
        self.blobs.contains_key(&(*id, tpe))
    }

    pub fn pack_id(&self, loc: &BlobLocation) -> Id {
        self.packs[loc.pack as usize]
    }

    pub fn pack_ids(&self) -> &[Id] {
        &self.packs
    }

    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    pub fn blob_count(&self) -> usize {
        self.blobs.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(Id, BlobType), &BlobLocation)> {
        self.blobs.iter()
    }

    /// Every pack with the blobs the index places in it, sorted by offset. Blobs stored twice
    /// (in two packs) appear only under the pack the index chose.
    pub fn blobs_by_pack(&self) -> HashMap<Id, Vec<PackedBlob>> {
        let mut m: HashMap<Id, Vec<PackedBlob>> = HashMap::new();
        for loc in self.blobs.values() {
            m.entry(self.packs[loc.pack as usize])
                .or_default()
                .push(loc.blob);
        }
        for v in m.values_mut() {
            v.sort_by_key(|b| b.offset);
        }
        m
    }
}

/// Splits packs into index files of a bounded size (restic keeps each below 8 MiB).
pub fn split_into_files(packs: Vec<IndexPack>, max_blobs_per_file: usize) -> Vec<IndexFile> {
    let mut out = Vec::new();
    let mut cur = IndexFile::default();
    let mut n = 0;
    for p in packs {
        n += p.blobs.len();
        cur.packs.push(p);
        if n >= max_blobs_per_file {
            out.push(std::mem::take(&mut cur));
            n = 0;
        }
    }
    if !cur.packs.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_restic() {
        let f = IndexFile {
            supersedes: None,
            packs: vec![IndexPack {
                id: Id::hash(b"p"),
                blobs: vec![
                    IndexBlob {
                        id: Id::hash(b"a"),
                        tpe: BlobType::Data,
                        offset: 0,
                        length: 38,
                        uncompressed_length: None,
                    },
                    IndexBlob {
                        id: Id::hash(b"b"),
                        tpe: BlobType::Tree,
                        offset: 38,
                        length: 112,
                        uncompressed_length: Some(511),
                    },
                ],
            }],
        };
        let j = serde_json::to_value(&f).unwrap();
        assert!(j.get("supersedes").is_none());
        assert_eq!(j["packs"][0]["blobs"][0]["type"], "data");
        assert!(j["packs"][0]["blobs"][0]
            .get("uncompressed_length")
            .is_none());
        assert_eq!(j["packs"][0]["blobs"][1]["uncompressed_length"], 511);
        let mut mi = MasterIndex::new();
        mi.merge_file(Id::hash(b"i"), &f);
        let loc = mi.get(&Id::hash(b"b"), BlobType::Tree).unwrap();
        assert_eq!(mi.pack_id(loc), Id::hash(b"p"));
        assert_eq!(loc.blob.offset, 38);
        assert!(!mi.has(&Id::hash(b"b"), BlobType::Data));
    }
}
