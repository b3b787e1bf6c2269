//! The index and pack checks' pure judgements: the index entries per pack, the listing against
//! the index, each indexed pack against its header and its size, and the packs no index names.

use super::issues::{hint_lost, is_are, plural, Finding, HINT_REBUILD_INDEX};
use super::{IssueKind, OrphanedPack};
use crate::repo::id::Id;
use crate::repo::index::IndexFile;
use crate::repo::pack::{BlobType, PackedBlob};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Every index entry, per pack (also of blobs stored twice).
pub(super) type EntriesByPack = BTreeMap<Id, Vec<PackedBlob>>;

/// Blobs in packs that no index names, with where they are.
pub(super) type OrphanBlobs = HashMap<(Id, BlobType), (Id, PackedBlob)>;

/// Adds the entries of index file `f` to `by_pack`.
pub(super) fn add_entries(by_pack: &mut EntriesByPack, f: &IndexFile) {
    for p in &f.packs {
        by_pack.entry(p.id).or_default().extend(p.packed());
    }
}

/// Sorts each pack's entries by offset (then id) and drops the repeated ones (a pack listed by
/// two index files).
pub(super) fn sort_entries(by_pack: &mut EntriesByPack) {
    for v in by_pack.values_mut() {
        v.sort_by_key(|b| (b.offset, b.id));
        v.dedup();
    }
}

/// An index file that cannot be read.
pub(super) fn index_damaged(id: Id, why: &str) -> Finding {
    Finding::new(
        IssueKind::IndexDamaged,
        format!("index file {} cannot be read: {why}", id.short()),
        "the blobs it listed are reported as not indexed below; `backupctl repair \
         index` writes a new index from the packs (do not prune before)",
    )
}

/// The listed packs (id, size), split by whether an index names them, each in id order.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Listing {
    pub indexed: Vec<(Id, u64)>,
    /// Packs no index names.
    pub orphaned: Vec<(Id, u64)>,
}

impl Listing {
    pub fn new(listed: &BTreeMap<Id, u64>, by_pack: &EntriesByPack) -> Listing {
        let mut l = Listing::default();
        for (&id, &size) in listed {
            if by_pack.contains_key(&id) {
                l.indexed.push((id, size));
            } else {
                l.orphaned.push((id, size));
            }
        }
        l
    }
}

/// What the storage holds of a pack the index names.
pub(super) enum Listed {
    /// The listing does not have it.
    Missing,
    /// It is there, with this size and this header (or why the header cannot be read).
    Present {
        size: u64,
        header: std::result::Result<Vec<PackedBlob>, String>,
    },
}

/// The problems of pack `pid`, which the index says holds `entries`.
pub(super) fn judge_indexed_pack(pid: Id, entries: &[PackedBlob], listed: Listed) -> Vec<Finding> {
    match listed {
        Listed::Missing => vec![pack_missing(pid, entries)],
        Listed::Present {
            size,
            header: Err(why),
        } => vec![header_unreadable(pid, size, &why, entries)],
        Listed::Present {
            size,
            header: Ok(header),
        } => header_mismatch(pid, entries, &header)
            .into_iter()
            .chain(size_mismatch(pid, size, &header, entries))
            .collect(),
    }
}

fn all_blobs(entries: &[PackedBlob]) -> impl Iterator<Item = (Id, BlobType)> + '_ {
    entries.iter().map(|b| (b.id, b.tpe))
}

/// The index names pack `pid`, but the storage does not have it.
fn pack_missing(pid: Id, entries: &[PackedBlob]) -> Finding {
    let n = entries.len();
    Finding::new(
        IssueKind::PackMissing,
        format!(
            "pack {} is named by the index but does not exist: the {} in it {} lost",
            pid.short(),
            plural(n, "blob", "blobs"),
            is_are(n)
        ),
        "the pack file is gone: run `backupctl repair index`, then `backupctl repair snapshots \
         --forget` (it saves the affected snapshots again without the lost files, naming \
         them), then `backupctl prune`; back the lost files up again after `repair index` \
         (until the index stops naming the pack, a new backup would reuse the lost blobs)",
    )
    .in_pack(pid)
    .losing(all_blobs(entries))
}

/// The header of pack `pid` (`size` bytes) cannot be read, for reason `why`.
fn header_unreadable(pid: Id, size: u64, why: &str, entries: &[PackedBlob]) -> Finding {
    Finding::new(
        IssueKind::PackHeaderDamaged,
        format!(
            "pack {} ({size} bytes): its header cannot be read: {}; the {} in it may be lost",
            pid.short(),
            why,
            plural(entries.len(), "blob", "blobs")
        ),
        format!(
            "run `backupctl check --read-data` to see which blobs are intact; {}",
            hint_lost(pid)
        ),
    )
    .in_pack(pid)
    .losing(all_blobs(entries))
}

/// The header of pack `pid` and its index entries disagree, if they do.
fn header_mismatch(pid: Id, entries: &[PackedBlob], header: &[PackedBlob]) -> Option<Finding> {
    let diff = HeaderDiff::new(entries, header);
    if diff.is_empty() {
        return None;
    }
    let f = Finding::new(
        IssueKind::PackIndexMismatch,
        format!(
            "pack {}: header and index disagree: {}",
            pid.short(),
            diff.describe()
        ),
        HINT_REBUILD_INDEX,
    );
    Some(f.in_pack(pid).losing(diff.bad_blobs()))
}

/// Pack `pid` has `size` bytes, which is not what its header implies, if it is not.
fn size_mismatch(
    pid: Id,
    size: u64,
    header: &[PackedBlob],
    entries: &[PackedBlob],
) -> Option<Finding> {
    let want = crate::repo::pack::size_from_header(header);
    if want == size {
        return None;
    }
    let f = Finding::new(
        IssueKind::PackSizeMismatch,
        format!(
            "pack {} has {size} bytes, but its header implies {want}: the file was \
             truncated or extended, and the {} in it may be damaged",
            pid.short(),
            plural(entries.len(), "blob", "blobs")
        ),
        format!(
            "run `backupctl check --read-data` to see which blobs are damaged; {}",
            hint_lost(pid)
        ),
    );
    Some(f.in_pack(pid).losing(all_blobs(entries)))
}

/// How a pack's header and its index entries disagree.
#[derive(Debug, Default, PartialEq)]
pub(super) struct HeaderDiff {
    /// Entries of the index the header lacks.
    pub absent: Vec<PackedBlob>,
    /// Entries of the index (first) the header places elsewhere (second).
    pub differ: Vec<(PackedBlob, PackedBlob)>,
    /// Blobs of the header the index lacks.
    pub extra: Vec<PackedBlob>,
}

impl HeaderDiff {
    pub fn new(entries: &[PackedBlob], header: &[PackedBlob]) -> HeaderDiff {
        let in_header: HashMap<(Id, BlobType), &PackedBlob> =
            header.iter().map(|b| ((b.id, b.tpe), b)).collect();
        let in_index: HashSet<(Id, BlobType)> = entries.iter().map(|b| (b.id, b.tpe)).collect();
        let mut d = HeaderDiff::default();
        for e in entries {
            match in_header.get(&(e.id, e.tpe)) {
                None => d.absent.push(*e),
                Some(h) if **h != *e => d.differ.push((*e, **h)),
                Some(_) => {}
            }
        }
        d.extra = header
            .iter()
            .filter(|b| !in_index.contains(&(b.id, b.tpe)))
            .copied()
            .collect();
        d
    }

    pub fn is_empty(&self) -> bool {
        self.absent.is_empty() && self.differ.is_empty() && self.extra.is_empty()
    }

    /// The disagreements, each counted with an example.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = self.absent.first() {
            parts.push(format!(
                "{} the index places in it {} not in its header (e.g. {} blob {})",
                plural(self.absent.len(), "blob", "blobs"),
                is_are(self.absent.len()),
                a.tpe.as_str(),
                a.id.short()
            ));
        }
        if let Some((e, h)) = self.differ.first() {
            parts.push(format!(
                "{} at other offsets or lengths than the index says (e.g. {} blob {}: \
                 index offset {} length {}, header offset {} length {})",
                plural(self.differ.len(), "blob is", "blobs are"),
                e.tpe.as_str(),
                e.id.short(),
                e.offset,
                e.length,
                h.offset,
                h.length
            ));
        }
        if let Some(x) = self.extra.first() {
            parts.push(format!(
                "{} in its header {} not in the index (e.g. {} blob {})",
                plural(self.extra.len(), "blob", "blobs"),
                is_are(self.extra.len()),
                x.tpe.as_str(),
                x.id.short()
            ));
        }
        parts.join("; ")
    }

    /// The blobs the index cannot be trusted about: those the header lacks or places elsewhere
    /// (a blob only the header lists is in no index, and the tree walk reports it if used).
    pub fn bad_blobs(&self) -> Vec<(Id, BlobType)> {
        self.absent
            .iter()
            .map(|b| (b.id, b.tpe))
            .chain(self.differ.iter().map(|(b, _)| (b.id, b.tpe)))
            .collect()
    }
}

/// The packs no index names, given as (id, size, header when it can be read) in id order, and
/// the blobs their headers list (a blob in several of them is placed in the first).
pub(super) fn orphaned_packs(
    packs: Vec<(Id, u64, Option<Vec<PackedBlob>>)>,
) -> (Vec<OrphanedPack>, OrphanBlobs) {
    let mut orphans = Vec::with_capacity(packs.len());
    let mut blobs: OrphanBlobs = HashMap::new();
    for (id, size, header) in packs {
        if let Some(h) = &header {
            for b in h {
                blobs.entry((b.id, b.tpe)).or_insert((id, *b));
            }
        }
        orphans.push(OrphanedPack {
            id,
            size,
            blobs: header.as_ref().map(|h| h.len()),
            needed_blobs: 0,
            damaged: None,
        });
    }
    (orphans, blobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::IndexPack;

    fn id(s: &str) -> Id {
        Id::hash(s.as_bytes())
    }

    fn blob(name: &str, offset: u32, length: u32) -> PackedBlob {
        PackedBlob {
            id: id(name),
            tpe: BlobType::Data,
            offset,
            length,
            uncompressed_length: None,
        }
    }

    fn ok(header: &[PackedBlob]) -> Listed {
        Listed::Present {
            size: crate::repo::pack::size_from_header(header),
            header: Ok(header.to_vec()),
        }
    }

    #[test]
    fn header_size_matches_written_packs() {
        use crate::repo::crypto::Key;
        use crate::repo::pack::{seal_blob, Compression, PackWriter};
        let key = Key::generate();
        let mut w = PackWriter::new();
        let a = vec![7u8; 5000];
        let b: Vec<u8> = (0..999u32).map(|i| (i * 7919 % 251) as u8).collect();
        w.add(&seal_blob(
            &key,
            BlobType::Data,
            Id::hash(&a),
            &a,
            Compression::default(),
        ));
        w.add(&seal_blob(
            &key,
            BlobType::Tree,
            Id::hash(&b),
            &b,
            Compression::Off,
        ));
        let (bytes, _, blobs) = w.finish(&key);
        assert!(blobs[0].uncompressed_length.is_some() && blobs[1].uncompressed_length.is_none());
        assert_eq!(
            crate::repo::pack::size_from_header(&blobs),
            bytes.len() as u64
        );
    }

    #[test]
    fn entries_of_a_pack_in_two_index_files_count_once_in_offset_order() {
        let (a, b) = (blob("a", 0, 50), blob("b", 50, 60));
        let pid = id("p");
        let file = |blobs: &[PackedBlob]| IndexFile {
            supersedes: None,
            packs: vec![IndexPack::from_packed(pid, blobs)],
        };
        let mut by_pack = EntriesByPack::new();
        add_entries(&mut by_pack, &file(&[b, a]));
        add_entries(&mut by_pack, &file(&[a]));
        sort_entries(&mut by_pack);
        assert_eq!(by_pack[&pid], vec![a, b]);
    }

    #[test]
    fn listed_packs_are_split_into_indexed_and_orphaned() {
        let (p, q, r) = (id("p"), id("q"), id("r"));
        let listed: BTreeMap<Id, u64> = [(p, 10), (q, 20)].into_iter().collect();
        let by_pack: EntriesByPack = [(p, vec![blob("a", 0, 50)]), (r, vec![])]
            .into_iter()
            .collect();
        let l = Listing::new(&listed, &by_pack);
        assert_eq!(l.indexed, vec![(p, 10)]);
        assert_eq!(l.orphaned, vec![(q, 20)], "listed, in no index");
        // r: indexed but not listed, in neither list; judge_indexed_pack reports it missing.
    }

    #[test]
    fn a_pack_in_the_index_but_not_listed_is_missing_with_all_its_blobs() {
        let pid = id("p");
        let entries = [blob("a", 0, 50), blob("b", 50, 60)];
        let f = judge_indexed_pack(pid, &entries, Listed::Missing);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, IssueKind::PackMissing);
        assert_eq!(f[0].pack, Some(pid));
        assert_eq!(
            f[0].blobs,
            vec![(id("a"), BlobType::Data), (id("b"), BlobType::Data)]
        );
        assert!(
            f[0].message.contains("the 2 blobs in it are lost"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn an_unreadable_header_puts_every_blob_at_risk() {
        let pid = id("p");
        let entries = [blob("a", 0, 50)];
        let listed = Listed::Present {
            size: 99,
            header: Err("bad MAC".into()),
        };
        let f = judge_indexed_pack(pid, &entries, listed);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, IssueKind::PackHeaderDamaged);
        assert_eq!(f[0].blobs, vec![(id("a"), BlobType::Data)]);
        assert!(f[0].message.contains("(99 bytes)") && f[0].message.contains("bad MAC"));
        assert!(f[0].hint.ends_with(&hint_lost(id("p"))));
        assert!(f[0]
            .hint
            .contains(&format!("`backupctl repair packs {}`", id("p"))));
    }

    #[test]
    fn a_pack_agreeing_with_its_header_and_size_is_fine() {
        let entries = [blob("a", 0, 50), blob("b", 50, 60)];
        assert!(judge_indexed_pack(id("p"), &entries, ok(&entries)).is_empty());
    }

    #[test]
    fn header_disagreements_are_counted_and_the_doubtful_blobs_linked() {
        let (a, b, c) = (blob("a", 0, 50), blob("b", 50, 60), blob("c", 110, 70));
        let moved = PackedBlob { offset: 51, ..b };
        // The index: a, b (at 51), c; the header: b, d.
        let d = blob("d", 110, 70);
        let diff = HeaderDiff::new(&[a, moved, c], &[b, d]);
        assert_eq!(diff.absent, vec![a, c]);
        assert_eq!(diff.differ, vec![(moved, b)]);
        assert_eq!(diff.extra, vec![d]);
        let text = diff.describe();
        assert!(text.starts_with("2 blobs the index places in it are not in its header"));
        assert!(text.contains("1 blob is at other offsets or lengths than the index says"));
        assert!(text.contains("index offset 51 length 60, header offset 50 length 60"));
        assert!(text.ends_with(&format!(
            "1 blob in its header is not in the index (e.g. data blob {})",
            d.id.short()
        )));
        let f = judge_indexed_pack(id("p"), &[a, moved, c], ok(&[b, d]));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].kind, IssueKind::PackIndexMismatch);
        assert_eq!(f[0].hint, HINT_REBUILD_INDEX);
        assert_eq!(
            f[0].blobs,
            vec![(a.id, a.tpe), (c.id, c.tpe), (b.id, b.tpe)],
            "absent then misplaced; the extra blob is in no index"
        );
        assert!(
            HeaderDiff::new(&[a, b], &[b, a]).is_empty(),
            "order does not matter"
        );
    }

    #[test]
    fn a_pack_of_another_size_than_its_header_implies_is_reported() {
        let entries = [blob("a", 0, 50)];
        let listed = Listed::Present {
            size: crate::repo::pack::size_from_header(&entries) + 1,
            header: Ok(entries.to_vec()),
        };
        let f = judge_indexed_pack(id("p"), &entries, listed);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, IssueKind::PackSizeMismatch);
        assert_eq!(f[0].blobs, vec![(id("a"), BlobType::Data)]);
    }

    #[test]
    fn orphaned_packs_count_their_blobs_and_the_first_pack_holds_a_shared_blob() {
        let (p, q) = (id("p"), id("q"));
        let a = blob("a", 0, 50);
        let (orphans, blobs) = orphaned_packs(vec![
            (p, 100, Some(vec![a])),
            (q, 200, Some(vec![PackedBlob { offset: 9, ..a }])),
            (id("r"), 300, None),
        ]);
        assert_eq!(orphans.len(), 3);
        assert_eq!(
            (orphans[0].id, orphans[0].size, orphans[0].blobs),
            (p, 100, Some(1))
        );
        assert_eq!(orphans[2].blobs, None, "an unreadable header");
        assert!(orphans
            .iter()
            .all(|o| o.needed_blobs == 0 && o.damaged.is_none()));
        assert_eq!(blobs.len(), 1);
        assert_eq!(blobs[&(a.id, a.tpe)], (p, a));
    }
}
