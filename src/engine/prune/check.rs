//! Prune's inventory and its consistency check: what the index files and the pack listing say,
//! and whether every blob a snapshot needs has a readable copy (pure: no I/O).
//!
//! A copy is readable when its pack exists and the pack's size is the one its index entries
//! require. Prune decides nothing unless every used blob has such a copy; otherwise the check
//! names every problem it found, so that the caller can refuse with all of them at once.

use super::decide::expected_pack_size;
use super::{BlobKey, LIST_MAX, REFUSE};
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::index::{IndexBlob, IndexFile};
use std::collections::{BTreeMap, HashMap, HashSet};

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
