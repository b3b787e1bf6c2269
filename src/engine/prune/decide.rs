//! Prune's decisions (pure: no I/O): which copy of each used blob stays, what becomes of each
//! pack (keep, repack, delete, orphan, missing), the totals a dry run reports, and the new index.
//!
//! The rules, in the order [`PackTable::decide_packs`] and [`PackTable::decide_repack`] apply
//! them:
//! - a pack the index names but that does not exist is dropped from the index (missing);
//! - a pack no index names is deleted (an orphan left by a crashed writer);
//! - a pack holding no kept copy of a used blob is deleted;
//! - a pack whose every entry is a kept copy is kept, unless it mixes tree and data blobs;
//! - every other pack is a candidate for repacking: tree packs, mixed packs and packs holding an
//!   extra copy of a used blob are always repacked; data packs are repacked, the largest unused
//!   share first, until the unused bytes left are within `max_unused` percent of the used bytes
//!   of the repository after pruning;
//! - a pack named to be repacked (`--repack`: `check` names damaged packs) is repacked whatever
//!   `max_unused` tolerates, even when every entry is used, unless nothing in it is used (then it
//!   is deleted); a used blob with a copy elsewhere keeps that copy rather than the named one.

use super::check::{expected_pack_size, Inventory, UsedCopies};
use super::{BlobKey, PruneReport};
use crate::error::{Error, Result};
use crate::repo::crypto::OVERHEAD;
use crate::repo::id::Id;
use crate::repo::index::{IndexBlob, IndexPack};
use crate::repo::pack::BlobType;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

/// For each used blob, the copy that stays: (pack, offset).
pub(super) type Homes = HashMap<BlobKey, (Id, u32)>;

/// What becomes of a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Keep,
    /// After [`PackTable::decide_packs`]: a candidate; [`PackTable::decide_repack`] settles it.
    Repack,
    Delete,
    Orphan,
    Missing,
}

impl Action {
    /// Whether the pack's file goes once the new index no longer names it.
    pub(super) fn frees_file(self) -> bool {
        matches!(self, Action::Delete | Action::Repack | Action::Orphan)
    }
}

#[derive(Debug)]
pub(super) struct PackState {
    /// Size of the file; `None` when the index names it but it does not exist.
    pub(super) size: Option<u64>,
    /// The index's entries, sorted by offset; `None` for a pack no index names.
    pub(super) blobs: Option<Vec<IndexBlob>>,
    pub(super) used_blobs: u64,
    pub(super) used_bytes: u64,
    pub(super) unused_blobs: u64,
    pub(super) unused_bytes: u64,
    /// Holds an extra copy of a blob whose kept copy is elsewhere (or twice in this pack).
    pub(super) duplicates: bool,
    pub(super) has_tree: bool,
    pub(super) has_data: bool,
    /// Named to be repacked whatever `max_unused` tolerates (a damaged pack).
    pub(super) named: bool,
    pub(super) action: Action,
}

impl PackState {
    fn new(size: Option<u64>, blobs: Option<Vec<IndexBlob>>, action: Action) -> PackState {
        PackState {
            size,
            blobs,
            used_blobs: 0,
            used_bytes: 0,
            unused_blobs: 0,
            unused_bytes: 0,
            duplicates: false,
            has_tree: false,
            has_data: false,
            named: false,
            action,
        }
    }

    /// Pack `pid` as the index lists it, its entries counted against the kept copies.
    fn indexed(pid: Id, size: Option<u64>, blobs: &[IndexBlob], home: &Homes) -> PackState {
        let mut st = PackState::new(size, Some(blobs.to_vec()), Action::Keep);
        for b in blobs {
            match b.tpe {
                BlobType::Tree => st.has_tree = true,
                BlobType::Data => st.has_data = true,
            }
            let key = (b.id, b.tpe);
            if home.get(&key) == Some(&(pid, b.offset)) {
                st.used_blobs += 1;
                st.used_bytes += b.length as u64;
            } else {
                st.unused_blobs += 1;
                st.unused_bytes += b.length as u64;
                if home.contains_key(&key) {
                    st.duplicates = true;
                }
            }
        }
        st.action = st.first_action();
        st
    }

    /// Missing, Delete and Keep are final; Repack only makes the pack a candidate.
    fn first_action(&self) -> Action {
        if self.size.is_none() {
            Action::Missing
        } else if self.used_blobs == 0 {
            Action::Delete
        } else if self.unused_blobs == 0 && !(self.has_tree && self.has_data) {
            Action::Keep
        } else {
            Action::Repack
        }
    }

    /// Exists and is named by the index: the packs the used and unused totals count.
    fn counted(&self) -> bool {
        self.blobs.is_some() && self.size.is_some()
    }

    /// A candidate repacked whatever `max_unused` tolerates: it holds trees (a tree pack or a
    /// mixed pack) or an extra copy of a used blob, or it was named.
    fn forced(&self) -> bool {
        self.has_tree || self.duplicates || self.named
    }

    /// Marks the pack as named: a pack that would be kept becomes a candidate (a forced one).
    fn name(&mut self) {
        self.named = true;
        if self.action == Action::Keep {
            self.action = Action::Repack;
        }
    }
}

/// The unused bytes that may stay when `total_used` bytes are used and `max_unused` percent of
/// the repository after pruning may be unused: unused <= p/100 * (used + unused).
pub(super) fn unused_limit(max_unused: f64, total_used: u64) -> u64 {
    if max_unused >= 100.0 {
        u64::MAX
    } else {
        (max_unused / (100.0 - max_unused) * total_used as f64) as u64
    }
}

/// The order candidates are considered in: forced ones first, then the larger unused/used
/// ratio, then the pack id.
fn repack_order(a: (&Id, &PackState), b: (&Id, &PackState)) -> Ordering {
    let ((ia, pa), (ib, pb)) = (a, b);
    pb.forced()
        .cmp(&pa.forced())
        .then_with(|| {
            let l = pa.unused_bytes as u128 * pb.used_bytes as u128;
            let r = pb.unused_bytes as u128 * pa.used_bytes as u128;
            r.cmp(&l)
        })
        .then(ia.cmp(ib))
}

/// How to choose among the packs holding a copy of a used blob.
struct Preference<'a> {
    /// Packs holding a used blob found nowhere else: they are kept anyway.
    pinned: HashSet<Id>,
    /// Packs named to be repacked (damaged): a copy elsewhere is better.
    named: &'a HashSet<Id>,
    /// Per indexed pack: (entries of used blobs, all entries).
    share: HashMap<Id, (u128, u128)>,
}

impl<'a> Preference<'a> {
    fn new(inv: &Inventory, copies: &UsedCopies, named: &'a HashSet<Id>) -> Preference<'a> {
        let pinned = copies
            .iter()
            .filter(|(_, c)| c.len() == 1)
            .map(|(_, c)| c[0].0)
            .collect();
        let share = inv
            .indexed
            .iter()
            .map(|(pid, blobs)| {
                let used = blobs
                    .iter()
                    .filter(|x| copies.is_used(&(x.id, x.tpe)))
                    .count();
                (*pid, (used as u128, blobs.len() as u128))
            })
            .collect();
        Preference {
            pinned,
            named,
            share,
        }
    }

    /// Packs not named first, then pinned packs, then the largest used share, then the
    /// smaller id.
    fn better(&self, a: &Id, b: &Id) -> bool {
        let (na, nb) = (self.named.contains(a), self.named.contains(b));
        if na != nb {
            return nb;
        }
        let (pa, pb) = (self.pinned.contains(a), self.pinned.contains(b));
        if pa != pb {
            return pa;
        }
        // Every pack holding a copy is an indexed pack, and `share` has them all.
        let ((ua, na), (ub, nb)) = (self.share[a], self.share[b]);
        if ua * nb != ub * na {
            return ua * nb > ub * na;
        }
        a < b
    }

    /// The copy that stays, of `copies` (never empty: see [`UsedCopies`]).
    fn best(&self, copies: &[(Id, u32)]) -> (Id, u32) {
        let mut best = copies[0];
        for c in &copies[1..] {
            if self.better(&c.0, &best.0) {
                best = *c;
            }
        }
        best
    }
}

/// The new index [`PackTable::new_index`] makes.
pub(super) struct NewIndex {
    /// Every kept pack as the index listed it, then every new pack.
    pub(super) packs: Vec<IndexPack>,
    /// The ids of those packs: they are never deleted.
    pub(super) names: HashSet<Id>,
}

/// What becomes of each pack, and which copy of each used blob stays.
#[derive(Debug)]
pub(super) struct PackTable {
    pub(super) packs: BTreeMap<Id, PackState>,
    /// For each used blob, the copy that stays: (pack, offset).
    pub(super) home: Homes,
}

impl PackTable {
    /// Chooses the copy of each used blob that stays (avoiding the `named` packs, preferring
    /// packs that must be kept anyway, then packs with the largest used share), then classifies
    /// every pack; data packs that would be repacked are only candidates until
    /// [`PackTable::decide_repack`], and so are the `named` packs that hold a kept copy.
    pub(super) fn decide_packs(
        inv: &Inventory,
        copies: &UsedCopies,
        named: &HashSet<Id>,
    ) -> PackTable {
        let pref = Preference::new(inv, copies, named);
        let home: Homes = copies.iter().map(|(b, c)| (*b, pref.best(c))).collect();
        let mut packs = BTreeMap::new();
        for (pid, blobs) in &inv.indexed {
            let size = inv.listed.get(pid).copied();
            let mut st = PackState::indexed(*pid, size, blobs, &home);
            if named.contains(pid) {
                st.name();
            }
            packs.insert(*pid, st);
        }
        for (pid, size) in &inv.listed {
            if !inv.indexed.contains_key(pid) {
                packs.insert(*pid, PackState::new(Some(*size), None, Action::Orphan));
            }
        }
        PackTable { packs, home }
    }

    /// Settles the repack candidates: forced ones are repacked; the others, the largest unused
    /// share first, while the unused bytes left are at or above the limit `max_unused` sets.
    pub(super) fn decide_repack(&mut self, max_unused: f64) {
        let counted = || self.packs.values().filter(|p| p.counted());
        let total_used: u64 = counted().map(|p| p.used_bytes).sum();
        let total_unused: u64 = counted().map(|p| p.unused_bytes).sum();
        let mut removed_unused: u64 = counted()
            .filter(|p| p.action == Action::Delete)
            .map(|p| p.unused_bytes)
            .sum();
        let limit = unused_limit(max_unused, total_used);
        let mut candidates: Vec<(&Id, &mut PackState)> = self
            .packs
            .iter_mut()
            .filter(|(_, p)| p.action == Action::Repack)
            .collect();
        candidates.sort_by(|(ia, pa), (ib, pb)| repack_order((ia, pa), (ib, pb)));
        for (_, p) in candidates {
            let left = total_unused - removed_unused;
            if p.forced() || left >= limit {
                p.action = Action::Repack;
                removed_unused += p.unused_bytes;
            } else {
                p.action = Action::Keep;
            }
        }
    }

    /// The packs with action `a`, in id order.
    pub(super) fn with_action(&self, a: Action) -> impl Iterator<Item = (&Id, &PackState)> {
        self.packs.iter().filter(move |(_, p)| p.action == a)
    }

    /// The entries of pack `pid` that are the copies that stay (what repacking copies).
    pub(super) fn homed_blobs<'a>(
        &'a self,
        pid: &'a Id,
        st: &'a PackState,
    ) -> impl Iterator<Item = &'a IndexBlob> {
        st.blobs
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter(move |b| self.home.get(&(b.id, b.tpe)) == Some(&(*pid, b.offset)))
    }

    /// The packs whose files go once the new index (naming `keep`) is durable.
    pub(super) fn packs_to_delete<'a>(
        &'a self,
        keep: &'a HashSet<Id>,
    ) -> impl Iterator<Item = (&'a Id, &'a PackState)> {
        self.packs
            .iter()
            .filter(move |(pid, p)| p.action.frees_file() && !keep.contains(pid))
    }

    /// The report's pack and blob totals, and the estimates of the new packs (of at most
    /// `pack_size` bytes of blobs each) and of the bytes freed.
    pub(super) fn tally(&self, pack_size: usize, report: &mut PruneReport) {
        for (id, p) in &self.packs {
            self.count(id, p, report);
        }
        report.packs_deleted = report.deleted.len();
        report.packs_repacked = report.repacked.len();
        report.packs_orphaned = report.orphaned.len();
        report.index_packs_missing = report.missing.len();
        let (packs_written, new_size) = self.estimate_new_packs(pack_size);
        report.packs_written += packs_written;
        let freed_files: u64 = self
            .packs
            .values()
            .filter(|p| p.action.frees_file())
            .filter_map(|p| p.size)
            .sum();
        report.bytes_freed = freed_files.saturating_sub(new_size);
    }

    /// Adds pack `id` to the report's lists and totals.
    fn count(&self, id: &Id, p: &PackState, report: &mut PruneReport) {
        match p.action {
            Action::Keep => report.packs_kept += 1,
            Action::Delete => report.deleted.push(*id),
            Action::Repack => report.repacked.push(*id),
            Action::Orphan => report.orphaned.push(*id),
            Action::Missing => report.missing.push(*id),
        }
        if p.counted() {
            report.blobs_used += p.used_blobs;
            report.bytes_used += p.used_bytes;
            report.blobs_unused += p.unused_blobs;
            report.bytes_unused += p.unused_bytes;
            report.blobs_duplicate += p
                .blobs
                .iter()
                .flatten()
                .filter(|b| {
                    self.home
                        .get(&(b.id, b.tpe))
                        .map(|h| *h != (*id, b.offset))
                        .unwrap_or(false)
                })
                .count() as u64;
        }
        match p.action {
            Action::Delete => report.blobs_removed += p.unused_blobs,
            Action::Repack => {
                report.blobs_removed += p.unused_blobs;
                report.bytes_repacked += p.used_bytes;
            }
            Action::Keep => report.bytes_unused_after += p.unused_bytes,
            _ => {}
        }
    }

    /// How many packs repacking writes and their total size: one per `pack_size` of each blob
    /// type, with their headers.
    fn estimate_new_packs(&self, pack_size: usize) -> (usize, u64) {
        let mut new_bytes: HashMap<BlobType, (u64, u64)> = HashMap::new();
        for (pid, p) in self.with_action(Action::Repack) {
            for b in self.homed_blobs(pid, p) {
                let e = new_bytes.entry(b.tpe).or_default();
                e.0 += b.length as u64;
                e.1 += expected_pack_size(std::slice::from_ref(b)) - OVERHEAD as u64 - 4;
            }
        }
        let (mut packs, mut size) = (0usize, 0u64);
        for (bytes, with_entries) in new_bytes.values() {
            let n = bytes.div_ceil(pack_size as u64).max(1);
            packs += n as usize;
            size += with_entries + n * (OVERHEAD as u64 + 4);
        }
        (packs, size)
    }

    /// The new index: every kept pack as the index listed it, and every pack of `new_packs`.
    /// Refuses when it would not contain a used blob: never leave a snapshot behind.
    pub(super) fn new_index(&self, new_packs: Vec<IndexPack>) -> Result<NewIndex> {
        let mut names: HashSet<Id> = HashSet::new();
        let mut packs: Vec<IndexPack> = Vec::new();
        for (pid, st) in self.with_action(Action::Keep) {
            names.insert(*pid);
            packs.push(IndexPack {
                id: *pid,
                // Only `PackState::indexed` gives a pack `Keep`, and it sets the entries.
                blobs: st.blobs.clone().expect("kept packs are indexed"),
            });
        }
        for p in new_packs {
            if names.insert(p.id) {
                packs.push(p);
            }
        }
        let covered: HashSet<BlobKey> = packs
            .iter()
            .flat_map(|p| p.blobs.iter().map(|b| (b.id, b.tpe)))
            .collect();
        if let Some(b) = self.home.keys().find(|b| !covered.contains(b)) {
            return Err(Error::Input(format!(
                "internal error: the new index would not contain {} blob {}; prune stopped before \
                 deleting anything (new packs stay as unreferenced files)\n  hint: please report this bug",
                b.1.as_str(),
                b.0
            )));
        }
        Ok(NewIndex { packs, names })
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::tests::{data, entries, id, inventory};
    use super::*;

    const D: BlobType = BlobType::Data;
    const T: BlobType = BlobType::Tree;

    /// The settled table of `inv` when the blobs numbered `used` are used.
    fn decide(inv: &Inventory, used: &HashSet<BlobKey>, max_unused: f64) -> PackTable {
        decide_naming(inv, used, max_unused, &[])
    }

    /// [`decide`], with the packs numbered `named` named to be repacked.
    fn decide_naming(
        inv: &Inventory,
        used: &HashSet<BlobKey>,
        max_unused: f64,
        named: &[u8],
    ) -> PackTable {
        let copies = inv.check_existing_packs(used).unwrap();
        let named: HashSet<Id> = named.iter().map(|n| id(*n)).collect();
        let mut t = PackTable::decide_packs(inv, &copies, &named);
        t.decide_repack(max_unused);
        t
    }

    #[test]
    fn a_named_pack_is_repacked_whatever_max_unused_tolerates() {
        let inv = inventory(&[
            // 1,000 used, 10 unused (a damaged blob no snapshot needs any more): 1%.
            (100, entries(&[(1, D, 1000), (2, D, 10)])),
            // Fully used.
            (101, entries(&[(3, D, 1000)])),
            // Nothing used.
            (102, entries(&[(4, D, 1000)])),
        ]);
        let used = data(&[1, 3]);
        assert_eq!(action(&decide(&inv, &used, 5.0), 100), Action::Keep);
        let t = decide_naming(&inv, &used, 100.0, &[100, 101, 102]);
        assert_eq!(action(&t, 100), Action::Repack);
        assert_eq!(action(&t, 101), Action::Repack, "even when fully used");
        assert_eq!(action(&t, 102), Action::Delete);
        // Repacking copies the used blobs only: the unused (damaged) one goes.
        let copied: Vec<Id> = t
            .homed_blobs(&id(100), &t.packs[&id(100)])
            .map(|b| b.id)
            .collect();
        assert_eq!(copied, vec![id(1)]);
    }

    #[test]
    fn a_copy_outside_a_named_pack_is_the_one_that_stays() {
        let inv = inventory(&[
            // Blob 1 is in both; pack 100 would be preferred (its larger used share).
            (100, entries(&[(1, D, 10)])),
            (101, entries(&[(1, D, 10), (2, D, 10)])),
        ]);
        let used = data(&[1]);
        assert_eq!(decide(&inv, &used, 5.0).home[&(id(1), D)].0, id(100));
        let t = decide_naming(&inv, &used, 5.0, &[100]);
        assert_eq!(t.home[&(id(1), D)].0, id(101));
        assert_eq!(action(&t, 100), Action::Delete);
    }

    fn action(t: &PackTable, pack: u8) -> Action {
        t.packs[&id(pack)].action
    }

    #[test]
    fn a_fully_used_pack_is_kept() {
        let inv = inventory(&[(100, entries(&[(1, D, 10), (2, D, 10)]))]);
        let t = decide(&inv, &data(&[1, 2]), 0.0);
        assert_eq!(action(&t, 100), Action::Keep);
        assert_eq!(t.packs[&id(100)].used_blobs, 2);
    }

    #[test]
    fn a_fully_unused_pack_is_deleted() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 10)])),
            (101, entries(&[(2, D, 10), (3, D, 10)])),
        ]);
        let t = decide(&inv, &data(&[1]), 100.0);
        assert_eq!(action(&t, 101), Action::Delete);
        assert_eq!(t.packs_to_delete(&HashSet::new()).count(), 1);
    }

    #[test]
    fn a_partly_used_pack_over_the_unused_limit_is_repacked() {
        // 10 bytes used, 10 unused: 50% unused.
        let inv = inventory(&[(100, entries(&[(1, D, 10), (2, D, 10)]))]);
        assert_eq!(action(&decide(&inv, &data(&[1]), 0.0), 100), Action::Repack);
        assert_eq!(
            action(&decide(&inv, &data(&[1]), 49.0), 100),
            Action::Repack
        );
        // Exactly at the limit (50% allows 10 unused bytes) it is still repacked.
        assert_eq!(
            action(&decide(&inv, &data(&[1]), 50.0), 100),
            Action::Repack
        );
        // Within the limit it is kept.
        assert_eq!(action(&decide(&inv, &data(&[1]), 60.0), 100), Action::Keep);
        assert_eq!(action(&decide(&inv, &data(&[1]), 100.0), 100), Action::Keep);
    }

    #[test]
    fn repacking_stops_once_the_unused_bytes_are_within_the_limit() {
        let inv = inventory(&[
            // 100 used, 900 unused: the most wasteful, considered first.
            (100, entries(&[(1, D, 100), (2, D, 900)])),
            // 100 used, 100 unused.
            (101, entries(&[(3, D, 100), (4, D, 100)])),
            (102, entries(&[(5, D, 10_000)])),
        ]);
        // 10,200 bytes used: 5% allows 536 unused bytes. 1,000 are; repacking pack 100 leaves
        // 100, so pack 101 is kept.
        let t = decide(&inv, &data(&[1, 3, 5]), 5.0);
        assert_eq!(unused_limit(5.0, 10_200), 536);
        assert_eq!(action(&t, 100), Action::Repack);
        assert_eq!(action(&t, 101), Action::Keep);
        assert_eq!(action(&t, 102), Action::Keep);
        // With no tolerance both go.
        let t = decide(&inv, &data(&[1, 3, 5]), 0.0);
        assert_eq!(action(&t, 101), Action::Repack);
    }

    #[test]
    fn the_unused_limit() {
        assert_eq!(unused_limit(0.0, 1000), 0);
        assert_eq!(unused_limit(50.0, 1000), 1000);
        assert_eq!(unused_limit(20.0, 1000), 250);
        assert_eq!(unused_limit(100.0, 0), u64::MAX);
    }

    #[test]
    fn tree_packs_and_mixed_packs_are_repacked_whatever_the_limit() {
        let inv = inventory(&[
            (100, entries(&[(1, T, 10), (2, T, 10)])),
            (101, entries(&[(3, D, 10), (4, D, 10)])),
            // Fully used, but mixed.
            (102, entries(&[(5, D, 10), (6, T, 10)])),
        ]);
        let mut used = data(&[3, 5]);
        used.insert((id(1), T));
        used.insert((id(6), T));
        let t = decide(&inv, &used, 100.0);
        assert_eq!(action(&t, 100), Action::Repack, "a partly used tree pack");
        assert_eq!(action(&t, 101), Action::Keep, "a partly used data pack");
        assert_eq!(action(&t, 102), Action::Repack, "a mixed pack");
    }

    #[test]
    fn one_copy_of_each_used_blob_stays() {
        let inv = inventory(&[
            // Both hold a used blob found nowhere else (2, 3): they are kept anyway.
            (100, entries(&[(1, D, 10), (2, D, 10)])),
            (101, entries(&[(3, D, 10), (1, D, 10), (4, D, 10)])),
            // Another copy of 1 next to an unused blob.
            (102, entries(&[(1, D, 10), (5, D, 10)])),
        ]);
        let t = decide(&inv, &data(&[1, 2, 3]), 100.0);
        // Of the two pinned packs, 100 has the larger used share.
        assert_eq!(t.home[&(id(1), D)], (id(100), 0));
        assert_eq!(action(&t, 100), Action::Keep);
        // Pack 101 holds an extra copy of 1: repacked whatever the limit.
        assert!(t.packs[&id(101)].duplicates);
        assert_eq!(action(&t, 101), Action::Repack);
        // Pack 102 holds only a duplicate and an unused blob: deleted.
        assert_eq!(action(&t, 102), Action::Delete);
        let mut r = PruneReport::default();
        t.tally(1 << 20, &mut r);
        assert_eq!(r.blobs_duplicate, 2);
        assert_eq!(r.blobs_used, 3);
    }

    #[test]
    fn the_copy_in_the_pack_with_the_largest_used_share_stays() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 10), (7, D, 10), (8, D, 10)])),
            (101, entries(&[(1, D, 10), (9, D, 10)])),
        ]);
        let t = decide(&inv, &data(&[1]), 0.0);
        assert_eq!(t.home[&(id(1), D)], (id(101), 0));
        assert_eq!(action(&t, 100), Action::Delete);
        assert_eq!(action(&t, 101), Action::Repack);
    }

    #[test]
    fn a_blob_twice_in_one_pack_keeps_the_first_copy() {
        let inv = inventory(&[(100, entries(&[(1, D, 10), (1, D, 10)]))]);
        let t = decide(&inv, &data(&[1]), 100.0);
        assert_eq!(t.home[&(id(1), D)], (id(100), 0));
        assert!(t.packs[&id(100)].duplicates);
        assert_eq!(action(&t, 100), Action::Repack);
    }

    #[test]
    fn missing_and_orphaned_packs() {
        let mut inv = inventory(&[(100, entries(&[(1, D, 10)])), (101, entries(&[(2, D, 10)]))]);
        inv.listed.remove(&id(101));
        inv.listed.insert(id(102), 500);
        let t = decide(&inv, &data(&[1]), 0.0);
        assert_eq!(action(&t, 101), Action::Missing);
        assert_eq!(action(&t, 102), Action::Orphan);
        let mut r = PruneReport::default();
        t.tally(1 << 20, &mut r);
        assert_eq!(
            (r.missing.clone(), r.orphaned.clone()),
            (vec![id(101)], vec![id(102)])
        );
        // The missing pack's blobs are not counted; the orphan's file is freed.
        assert_eq!((r.blobs_used, r.blobs_unused), (1, 0));
        assert_eq!(r.bytes_freed, 500);
        let none = HashSet::new();
        let deleted: Vec<&Id> = t.packs_to_delete(&none).map(|(p, _)| p).collect();
        assert_eq!(deleted, vec![&id(102)]);
    }

    #[test]
    fn the_totals_follow_the_actions() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 100), (2, D, 900)])),
            (101, entries(&[(3, D, 100), (4, D, 100)])),
            (102, entries(&[(5, D, 10_000)])),
            (103, entries(&[(6, D, 50)])),
        ]);
        let t = decide(&inv, &data(&[1, 3, 5]), 5.0);
        let mut r = PruneReport::default();
        t.tally(1 << 20, &mut r);
        assert_eq!((r.packs_kept, r.packs_repacked, r.packs_deleted), (2, 1, 1));
        assert_eq!((r.blobs_used, r.bytes_used), (3, 10_200));
        assert_eq!((r.blobs_unused, r.bytes_unused), (3, 1_050));
        assert_eq!(
            r.blobs_removed, 2,
            "blob 2 (repacked away) and blob 6 (deleted)"
        );
        assert_eq!(r.bytes_repacked, 100);
        assert_eq!(r.bytes_unused_after, 100);
        assert_eq!(r.packs_written, 1);
        // Freed: the files of packs 100 and 103, less the new pack holding blob 1.
        let size = |n| expected_pack_size(&inv.indexed[&id(n)]);
        let new_pack = expected_pack_size(&entries(&[(1, D, 100)]));
        assert_eq!(r.bytes_freed, size(100) + size(103) - new_pack);
    }

    #[test]
    fn new_packs_are_estimated_per_blob_type_and_pack_size() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 600), (2, D, 600), (3, D, 10)])),
            (101, entries(&[(4, T, 10), (5, T, 10)])),
        ]);
        let mut used = data(&[1, 2]);
        used.insert((id(4), T));
        let t = decide(&inv, &used, 0.0);
        let mut r = PruneReport::default();
        t.tally(1000, &mut r);
        assert_eq!(
            r.packs_written, 3,
            "two data packs of 1,200 bytes, one tree pack"
        );
    }

    #[test]
    fn the_new_index_names_kept_and_new_packs_and_covers_every_used_blob() {
        let inv = inventory(&[
            (100, entries(&[(1, D, 10)])),
            (101, entries(&[(2, D, 10), (3, D, 10)])),
        ]);
        let t = decide(&inv, &data(&[1, 2]), 0.0);
        assert_eq!(action(&t, 101), Action::Repack);
        // Without the new pack holding blob 2, the new index would leave it out: refused.
        let e = t.new_index(Vec::new()).err().expect("refused");
        assert!(e.to_string().contains("would not contain"), "{e}");
        let new = IndexPack {
            id: id(200),
            blobs: entries(&[(2, D, 10)]),
        };
        let n = t.new_index(vec![new]).unwrap();
        assert_eq!(n.names, HashSet::from([id(100), id(200)]));
        assert_eq!(n.packs.len(), 2);
        let deleted: Vec<&Id> = t.packs_to_delete(&n.names).map(|(p, _)| p).collect();
        assert_eq!(deleted, vec![&id(101)]);
    }
}
