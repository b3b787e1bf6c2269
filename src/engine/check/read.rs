//! Reading packs for a check: headers and whole packs a few at a time, a tree from a pack no
//! index names, and the pure judgement of what reading a pack whole found.

use super::issues::{hint_lost, plural, Finding};
use super::packs::OrphanBlobs;
use super::{IssueKind, OrphanedPack};
use crate::cancel::CancelToken;
use crate::error::Result;
use crate::error::POISONED;
use crate::repo::backend::FileType;
use crate::repo::crypto::Key;
use crate::repo::id::Id;
use crate::repo::pack::{self, BlobType, PackedBlob};
use crate::repo::tree::Tree;
use crate::repo::Repository;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many packs are read at once: two on a local disk, the backend's upload parallelism on
/// remote storage (where each read waits on the network).
pub(super) fn io_threads(repo: &Repository) -> usize {
    repo.backend().upload_parallelism().max(2)
}

/// `f` of every item, `threads` at a time (no more threads than items), in no particular order;
/// `Err` when `cancel` fired (the items not yet started are then left out).
pub(super) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    cancel: &CancelToken,
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<R>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                if cancel.is_cancelled() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                // Poisoned only if another worker panicked while pushing; the scope then
                // panics anyway.
                out.lock().expect(POISONED).push(r);
            });
        }
    });
    cancel.check()?;
    // Poisoned only if a worker panicked, and then the scope above has panicked already.
    Ok(out.into_inner().expect(POISONED))
}

/// The headers of `packs` (id, size), read `threads` at a time.
pub(super) fn read_headers(
    repo: &Repository,
    packs: &[(Id, u64)],
    threads: usize,
    cancel: &CancelToken,
) -> Result<HashMap<Id, Result<Vec<PackedBlob>>>> {
    let headers = parallel_map(packs, threads, cancel, |&(pid, size)| {
        (pid, repo.read_pack_header(&pid, size))
    })?;
    Ok(headers.into_iter().collect())
}

/// Reads a tree that no index names from the orphaned pack that holds it.
pub(super) fn load_orphan_tree(repo: &Repository, orphans: &OrphanBlobs, id: &Id) -> Option<Tree> {
    let (pack, b) = orphans.get(&(*id, BlobType::Tree))?;
    let sealed = repo
        .backend()
        .load_range(
            FileType::Pack,
            &pack.to_hex(),
            b.offset as u64,
            b.length as usize,
        )
        .ok()?;
    let plain = pack::open_blob(repo.key(), b, &sealed).ok()?;
    Tree::parse(&plain).ok()
}

/// What reading one pack whole found.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PackRead {
    pub id: Id,
    pub bytes: u64,
    /// The pack could not be read at all.
    pub read_error: Option<String>,
    pub hash_ok: bool,
    pub header_error: Option<String>,
    /// Blobs checked, and those that failed (with why).
    pub checked: usize,
    pub damaged: Vec<(PackedBlob, String)>,
}

/// Reads a pack whole and verifies it: its hash, its header, and every blob in `entries` (or, for
/// packs no index names, in its header).
pub(super) fn read_pack(repo: &Repository, id: Id, entries: Option<&[PackedBlob]>) -> PackRead {
    let mut r = PackRead {
        id,
        bytes: 0,
        read_error: None,
        hash_ok: false,
        header_error: None,
        checked: 0,
        damaged: Vec::new(),
    };
    let bytes = match repo.backend().load(FileType::Pack, &id.to_hex()) {
        Ok(b) => b,
        Err(e) => {
            r.read_error = Some(e.to_string());
            return r;
        }
    };
    r.bytes = bytes.len() as u64;
    r.hash_ok = Id::hash(&bytes) == id;
    let header = match pack::parse_header(repo.key(), bytes.len() as u64, &bytes) {
        Ok(Ok(h)) => Some(h),
        Ok(Err(_)) => {
            r.header_error = Some("its header length is inconsistent".into());
            None
        }
        Err(e) => {
            r.header_error = Some(e.to_string());
            None
        }
    };
    let entries: &[PackedBlob] = match (entries, &header) {
        (Some(e), _) => e,
        (None, Some(h)) => h,
        (None, None) => &[],
    };
    for b in entries {
        r.checked += 1;
        if let Some(why) = blob_damage(repo.key(), b, &bytes) {
            r.damaged.push((*b, why));
        }
    }
    r
}

/// Why blob `b` of the pack `bytes` cannot be read, if it cannot.
fn blob_damage(key: &Key, b: &PackedBlob, bytes: &[u8]) -> Option<String> {
    let start = b.offset as usize;
    let end = start + b.length as usize;
    if end > bytes.len() {
        return Some(format!(
            "it would end at byte {end}, beyond the end of the pack ({} bytes)",
            bytes.len()
        ));
    }
    pack::open_blob(key, b, &bytes[start..end])
        .err()
        .map(|e| e.to_string())
}

impl PackRead {
    fn is_damaged(&self) -> bool {
        self.read_error.is_some()
            || !self.hash_ok
            || self.header_error.is_some()
            || !self.damaged.is_empty()
    }

    /// What the read found, one part per problem (and how many blobs read well when none did);
    /// `indexed`: an index names the pack.
    fn findings_text(&self, indexed: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(e) = &self.read_error {
            problems.push(format!("it cannot be read: {e}"));
        } else if !self.hash_ok {
            problems.push("its content does not match its name (SHA-256)".to_string());
        }
        if let Some(h) = &self.header_error {
            problems.push(format!("its header is damaged: {h}"));
        }
        let checked = plural(self.checked, "blob", "blobs");
        if let Some((b, why)) = self.damaged.first() {
            problems.push(format!(
                "{} of its {checked} cannot be read (e.g. {} blob {}: {why})",
                self.damaged.len(),
                b.tpe.as_str(),
                b.id.short()
            ));
        } else if self.read_error.is_none() && self.checked > 0 {
            problems.push(if indexed {
                format!("all {checked} the index names in it read correctly")
            } else {
                format!("all {checked} its header lists read correctly")
            });
        }
        problems
    }

    /// The issue this read makes, if any. `entries`: what the index says the pack holds (`None`
    /// for a pack no index names, `orphan` then). A damaged orphaned pack is noted on `orphan`
    /// and is an issue only when snapshots need blobs from it (else prune removes it).
    pub fn judge(
        &self,
        entries: Option<&[PackedBlob]>,
        orphan: Option<&mut OrphanedPack>,
    ) -> Option<Finding> {
        if !self.is_damaged() {
            return None;
        }
        let msg = format!(
            "pack {} is damaged: {}",
            self.id.short(),
            self.findings_text(entries.is_some()).join("; ")
        );
        if let Some(o) = orphan {
            o.damaged = Some(msg.clone());
            if o.needed_blobs == 0 {
                return None;
            }
        }
        let mut bad: Vec<(Id, BlobType)> =
            self.damaged.iter().map(|(b, _)| (b.id, b.tpe)).collect();
        if self.read_error.is_some() {
            if let Some(e) = entries {
                bad.extend(e.iter().map(|b| (b.id, b.tpe)));
            }
        }
        Some(
            Finding::new(IssueKind::PackDamaged, msg, hint_lost(self.id))
                .in_pack(self.id)
                .losing(bad),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(name: &str) -> PackedBlob {
        PackedBlob {
            id: Id::hash(name.as_bytes()),
            tpe: BlobType::Data,
            offset: 0,
            length: 50,
            uncompressed_length: None,
        }
    }

    fn clean(checked: usize) -> PackRead {
        PackRead {
            id: Id::hash(b"pack"),
            bytes: 1000,
            read_error: None,
            hash_ok: true,
            header_error: None,
            checked,
            damaged: Vec::new(),
        }
    }

    fn orphan(needed_blobs: usize) -> OrphanedPack {
        OrphanedPack {
            id: Id::hash(b"pack"),
            size: 1000,
            blobs: Some(2),
            needed_blobs,
            damaged: None,
        }
    }

    #[test]
    fn a_clean_read_is_no_issue() {
        let entries = [blob("a")];
        assert_eq!(clean(1).judge(Some(&entries), None), None);
        let mut o = orphan(1);
        assert_eq!(clean(2).judge(None, Some(&mut o)), None);
        assert_eq!(o.damaged, None);
    }

    #[test]
    fn a_hash_mismatch_is_damage_even_when_every_blob_reads() {
        let r = PackRead {
            hash_ok: false,
            ..clean(2)
        };
        let entries = [blob("a"), blob("b")];
        let f = r.judge(Some(&entries), None).unwrap();
        assert_eq!((f.kind, f.pack), (IssueKind::PackDamaged, Some(r.id)));
        assert_eq!(
            f.message,
            format!(
                "pack {} is damaged: its content does not match its name (SHA-256); all 2 \
                 blobs the index names in it read correctly",
                r.id.short()
            )
        );
        assert!(f.blobs.is_empty(), "the blobs themselves are intact");
    }

    #[test]
    fn damaged_blobs_are_named() {
        let a = blob("a");
        let r = PackRead {
            hash_ok: false,
            damaged: vec![(a, "ciphertext verification failed".into())],
            ..clean(2)
        };
        let f = r.judge(Some(&[a, blob("b")]), None).unwrap();
        assert_eq!(f.blobs, vec![(a.id, a.tpe)]);
        assert!(f.message.ends_with(&format!(
            "1 of its 2 blobs cannot be read (e.g. data blob {}: ciphertext verification failed)",
            a.id.short()
        )));
    }

    #[test]
    fn an_unreadable_pack_loses_every_blob_the_index_places_in_it() {
        let r = PackRead {
            read_error: Some("connection reset".into()),
            checked: 0,
            ..clean(0)
        };
        let entries = [blob("a"), blob("b")];
        let f = r.judge(Some(&entries), None).unwrap();
        assert_eq!(f.blobs.len(), 2);
        assert!(f
            .message
            .ends_with("is damaged: it cannot be read: connection reset"));
    }

    #[test]
    fn a_damaged_orphan_is_an_issue_only_when_snapshots_need_it() {
        let r = PackRead {
            header_error: Some("bad MAC".into()),
            ..clean(0)
        };
        let mut unneeded = orphan(0);
        assert_eq!(r.judge(None, Some(&mut unneeded)), None);
        let why = unneeded.damaged.expect("noted on the orphan");
        assert!(why.ends_with("its header is damaged: bad MAC"), "{why}");
        let mut needed = orphan(3);
        let f = r.judge(None, Some(&mut needed)).unwrap();
        assert_eq!(Some(f.message), needed.damaged);
    }

    #[test]
    fn a_blob_beyond_the_end_of_the_pack_is_damaged() {
        let key = Key::generate();
        let b = PackedBlob {
            offset: 10,
            length: 50,
            ..blob("a")
        };
        assert_eq!(
            blob_damage(&key, &b, &[0u8; 40]).as_deref(),
            Some("it would end at byte 60, beyond the end of the pack (40 bytes)")
        );
        assert!(
            blob_damage(&key, &b, &[0u8; 60]).is_some(),
            "garbage does not decrypt"
        );
    }
}
