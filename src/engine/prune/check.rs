//! Prune's inventory and its consistency check: what the index files and the pack listing say,
//! and whether every blob a snapshot needs has a readable copy (pure: no I/O).
//!
//! A copy is readable when its pack exists and the pack's size is the one its index entries
//! require. Prune decides nothing unless every used blob has such a copy; otherwise the check
//! names every problem it found, so that the caller can refuse with all of them at once.

use super::{BlobKey, LIST_MAX, REFUSE};
use crate::error::{Error, Result};
use crate::repo::crypto::OVERHEAD;
use crate::repo::id::Id;
use crate::repo::index::{IndexBlob, IndexFile};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The size a pack must have if the index lists all its blobs: the blobs, the sealed header
/// (one entry per blob: type, length, [uncompressed length,] id) and the 4-byte header length.
pub(super) fn expected_pack_size(blobs: &[IndexBlob]) -> u64 {
    let entries: u64 = blobs
        .iter()
        .map(|b| {
            if b.uncompressed_length.is_some() {
                1 + 4 + 4 + 32
            } else {
                1 + 4 + 32
            }
        })
        .sum();
    let data: u64 = blobs.iter().map(|b| b.length as u64).sum();
    data + entries + OVERHEAD as u64 + 4
}

/// What the repository holds, as the index files and the pack listing say.
#[derive(Debug, Default)]
pub(super) struct Inventory {
    /// Every pack an index file names, with its entries sorted by offset.
    pub(super) indexed: BTreeMap<Id, Vec<IndexBlob>>,
    /// Every pack file that exists (and has one of our names), with its size.
    pub(super) listed: HashMap<Id, u64>,
}

/// For every used blob (and only those), the packs holding a readable copy and the copy's
/// offset there, in pack order. Only [`Inventory::check_existing_packs`] makes one, and only when
/// every used blob has at least one copy: no list is empty.
#[derive(Debug)]
pub(super) struct UsedCopies(BTreeMap<BlobKey, Vec<(Id, u32)>>);

impl UsedCopies {
    /// The used blobs in order, each with its readable copies (never none).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&BlobKey, &[(Id, u32)])> {
        self.0.iter().map(|(b, c)| (b, c.as_slice()))
    }

    /// Whether a snapshot needs this blob.
    pub(super) fn is_used(&self, b: &BlobKey) -> bool {
        self.0.contains_key(b)
    }
}

/// Why prune must not go on: one line per problem, and the used blobs that have no readable
/// copy (to name the snapshots that need them).
#[derive(Debug, Default)]
pub(super) struct Damage {
    pub(super) problems: Vec<String>,
    pub(super) missing_blobs: HashSet<BlobKey>,
}

impl Damage {
    /// The error that refuses to prune the repository at `location`; `affected` names the
    /// snapshots that need the missing blobs (empty, or a line of its own).
    pub(super) fn into_error(self, location: &str, affected: &str) -> Error {
        let n = self.problems.len();
        let shown: Vec<String> = self.problems.into_iter().take(LIST_MAX).collect();
        Error::Damaged {
            what: format!("the repository at {location}"),
            detail: format!(
                "{n} problem(s) with data that snapshots need:\n    {}{}{affected}\n  {REFUSE}",
                shown.join("\n    "),
                if n > LIST_MAX {
                    format!("\n    and {} more", n - LIST_MAX)
                } else {
                    String::new()
                }
            ),
        }
    }
}

impl Inventory {
    /// Adds the packs of index file `fid`. A pack listed twice (an interrupted prune leaves old
    /// and new index files side by side) must be listed identically.
    pub(super) fn add_index_file(&mut self, fid: &Id, f: IndexFile) -> Result<()> {
        for p in f.packs {
            let mut blobs = p.blobs;
            blobs.sort_by_key(|a| (a.offset, a.id, a.tpe));
            match self.indexed.get(&p.id) {
                None => {
                    self.indexed.insert(p.id, blobs);
                }
                Some(prev) if *prev == blobs => {}
                Some(_) => {
                    return Err(Error::damaged(
                        format!("the index of pack {}", p.id.short()),
                        format!(
                            "index file {} lists other blobs for it than an earlier index file\n  {REFUSE}",
                            fid.short()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Adds a file of the pack listing. Names that are not our lower-case hex are not ours to
    /// touch: they are left out.
    pub(super) fn add_pack_file(&mut self, name: &str, size: u64) {
        if let Some(id) = Id::parse(name) {
            if id.to_hex() == name {
                self.listed.insert(id, size);
            }
        }
    }

    /// The packs the index names that do not exist.
    pub(super) fn missing_packs(&self) -> impl Iterator<Item = &Id> {
        self.indexed.keys().filter(|p| !self.listed.contains_key(p))
    }

    /// The packs that exist but whose size contradicts their index entries: (wanted, actual).
    fn size_mismatches(&self) -> BTreeMap<Id, (u64, u64)> {
        let mut bad_size = BTreeMap::new();
        for (pid, blobs) in &self.indexed {
            if let Some(&actual) = self.listed.get(pid) {
                let want = expected_pack_size(blobs);
                if want != actual {
                    bad_size.insert(*pid, (want, actual));
                }
            }
        }
        bad_size
    }

    /// For each blob, the packs holding a readable copy and the (first) offset there.
    fn readable_copies(
        &self,
        bad_size: &BTreeMap<Id, (u64, u64)>,
    ) -> HashMap<BlobKey, Vec<(Id, u32)>> {
        let mut copies: HashMap<BlobKey, Vec<(Id, u32)>> = HashMap::new();
        for (pid, blobs) in &self.indexed {
            if !self.listed.contains_key(pid) || bad_size.contains_key(pid) {
                continue;
            }
            for b in blobs {
                let v = copies.entry((b.id, b.tpe)).or_default();
                if v.last().map(|(p, _)| p) != Some(pid) {
                    v.push((*pid, b.offset));
                }
            }
        }
        copies
    }

    /// Where each used blob can be read from; or, when any has no readable copy or a pack
    /// holding used blobs has the wrong size, every such problem.
    pub(super) fn check_existing_packs(
        &self,
        used: &HashSet<BlobKey>,
    ) -> std::result::Result<UsedCopies, Damage> {
        let bad_size = self.size_mismatches();
        let mut copies = self.readable_copies(&bad_size);
        let mut sorted_used: Vec<&BlobKey> = used.iter().collect();
        sorted_used.sort();
        let mut found = BTreeMap::new();
        let mut damage = Damage::default();
        for b in sorted_used {
            match copies.remove(b) {
                Some(c) => {
                    found.insert(*b, c);
                }
                None => {
                    damage.missing_blobs.insert(*b);
                    damage.problems.push(self.no_copy(b, &bad_size));
                }
            }
        }
        for (pid, blobs) in &self.indexed {
            let Some((want, actual)) = bad_size.get(pid) else {
                continue;
            };
            if blobs.iter().any(|x| used.contains(&(x.id, x.tpe))) {
                damage.problems.push(format!(
                    "pack {} has {actual} bytes but its index entries need {want}, and it holds blobs in use",
                    pid.short()
                ));
            }
        }
        if damage.problems.is_empty() {
            Ok(UsedCopies(found))
        } else {
            Err(damage)
        }
    }

    /// The problem line of a used blob without a readable copy: what is wrong with each pack
    /// the index says holds it (missing, or of the wrong size), or that no index names it.
    fn no_copy(&self, b: &BlobKey, bad_size: &BTreeMap<Id, (u64, u64)>) -> String {
        let holders: Vec<String> = self
            .indexed
            .iter()
            .filter(|(_, blobs)| blobs.iter().any(|x| (x.id, x.tpe) == *b))
            .map(|(p, _)| match bad_size.get(p) {
                Some((want, actual)) => format!(
                    "pack {} has {actual} bytes but its index entries need {want}",
                    p.short()
                ),
                None => format!("pack {} is missing", p.short()),
            })
            .collect();
        if holders.is_empty() {
            format!("{} blob {} is in no index", b.1.as_str(), b.0)
        } else {
            format!("{} blob {}: {}", b.1.as_str(), b.0, holders.join("; "))
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::repo::index::IndexPack;
    use crate::repo::pack::BlobType;

    /// The id of test blob or pack `n`.
    pub(in crate::engine::prune) fn id(n: u8) -> Id {
        Id::hash(&[n])
    }

    /// Index entries for `blobs` (blob number, type, length), one after the other.
    pub(in crate::engine::prune) fn entries(blobs: &[(u8, BlobType, u32)]) -> Vec<IndexBlob> {
        let mut offset = 0;
        blobs
            .iter()
            .map(|&(n, tpe, length)| {
                let b = IndexBlob {
                    id: id(n),
                    tpe,
                    offset,
                    length,
                    uncompressed_length: None,
                };
                offset += length;
                b
            })
            .collect()
    }

    /// An inventory of packs that all exist with the size their entries need.
    pub(in crate::engine::prune) fn inventory(packs: &[(u8, Vec<IndexBlob>)]) -> Inventory {
        let mut inv = Inventory::default();
        for (n, blobs) in packs {
            inv.listed.insert(id(*n), expected_pack_size(blobs));
            inv.indexed.insert(id(*n), blobs.clone());
        }
        inv
    }

    pub(in crate::engine::prune) fn data(ns: &[u8]) -> HashSet<BlobKey> {
        ns.iter().map(|n| (id(*n), BlobType::Data)).collect()
    }

    const D: BlobType = BlobType::Data;

    #[test]
    fn every_used_blob_with_a_readable_copy_passes() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 10), (2, D, 10)])),
            (101, entries(&[(2, D, 10), (3, D, 10)])),
        ]);
        let c = inv.check_existing_packs(&data(&[1, 2])).unwrap();
        let all: Vec<_> = c.iter().collect();
        assert_eq!(all.len(), 2, "only the used blobs: {all:?}");
        assert_eq!(all[0].1.len() + all[1].1.len(), 3, "blob 2 has two copies");
        assert!(c.is_used(&(id(2), D)) && !c.is_used(&(id(3), D)));
    }

    #[test]
    fn a_used_blob_in_a_missing_pack_is_damage() {
        let mut inv = inventory(&[(100, entries(&[(1, D, 10)]))]);
        inv.listed.clear();
        let d = inv.check_existing_packs(&data(&[1])).unwrap_err();
        assert_eq!(d.problems.len(), 1);
        assert!(d.problems[0].contains(&id(1).to_hex()), "{:?}", d.problems);
        assert!(d.problems[0].contains(&format!("pack {} is missing", id(100).short())));
        assert_eq!(d.missing_blobs, data(&[1]));
        // Unused, it is no damage: the pack is merely dropped from the index.
        assert!(inv.check_existing_packs(&HashSet::new()).is_ok());
        assert_eq!(inv.missing_packs().collect::<Vec<_>>(), vec![&id(100)]);
    }

    #[test]
    fn a_used_blob_in_no_index_is_damage() {
        let inv = inventory(&[(100, entries(&[(1, D, 10)]))]);
        let d = inv.check_existing_packs(&data(&[1, 9])).unwrap_err();
        assert_eq!(
            d.problems,
            vec![format!("data blob {} is in no index", id(9))]
        );
        assert_eq!(d.missing_blobs, data(&[9]));
    }

    #[test]
    fn a_pack_of_the_wrong_size_holding_used_blobs_is_damage() {
        let mut inv = inventory(&[
            (100, entries(&[(1, D, 10)])),
            (101, entries(&[(1, D, 10), (2, D, 10)])),
        ]);
        *inv.listed.get_mut(&id(101)).unwrap() += 4;
        // Blob 1 has a good copy in pack 100, but pack 101 also holds blob 2, its only copy.
        let d = inv.check_existing_packs(&data(&[1, 2])).unwrap_err();
        assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
        assert!(d.problems[0].contains("bytes but its index entries need"));
        assert!(d.problems[1].ends_with("and it holds blobs in use"));
        assert_eq!(d.missing_blobs, data(&[2]));
        // Even when every used blob it holds has a good copy elsewhere, prune refuses.
        let d = inv.check_existing_packs(&data(&[1])).unwrap_err();
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(d.missing_blobs.is_empty());
        // Holding nothing in use, it is no damage (it will be deleted as unused).
        let c = inv.check_existing_packs(&HashSet::new()).unwrap();
        assert_eq!(c.iter().count(), 0);
    }

    #[test]
    fn the_damage_error_lists_ten_problems_and_refuses() {
        let d = Damage {
            problems: (0..12).map(|i| format!("problem {i}")).collect(),
            missing_blobs: HashSet::new(),
        };
        let e = d.into_error("/r", "");
        let msg = e.to_string();
        assert!(matches!(e, Error::Damaged { .. }));
        assert!(
            msg.contains("12 problem(s)") && msg.contains("problem 9"),
            "{msg}"
        );
        assert!(
            !msg.contains("problem 10") && msg.contains("and 2 more"),
            "{msg}"
        );
        assert!(msg.contains("deleted nothing"), "{msg}");
    }

    #[test]
    fn a_pack_listed_twice_must_be_listed_identically() {
        let file = |blobs: Vec<IndexBlob>| IndexFile {
            supersedes: None,
            packs: vec![IndexPack { id: id(100), blobs }],
        };
        let mut inv = Inventory::default();
        let mut reversed = entries(&[(1, D, 10), (2, D, 10)]);
        inv.add_index_file(&id(50), file(reversed.clone())).unwrap();
        reversed.reverse();
        inv.add_index_file(&id(51), file(reversed)).unwrap();
        assert_eq!(inv.indexed[&id(100)], entries(&[(1, D, 10), (2, D, 10)]));
        let e = inv
            .add_index_file(&id(52), file(entries(&[(1, D, 10)])))
            .unwrap_err();
        assert!(e.to_string().contains("lists other blobs"), "{e}");
    }

    #[test]
    fn only_our_pack_names_are_listed() {
        let mut inv = Inventory::default();
        let hex = id(1).to_hex();
        inv.add_pack_file(&hex, 7);
        inv.add_pack_file(&hex.to_uppercase(), 8);
        inv.add_pack_file("README", 9);
        assert_eq!(inv.listed, HashMap::from([(id(1), 7)]));
    }
}
