//! Rewrite (restic's `rewrite`): snapshots saved again without the paths an exclusion matches (a secret backed up by mistake), or with a new host or time; the new snapshot first, then — with `forget` — the original removed.

use crate::cancel::{CancelToken, Progress};
use crate::engine::edit::{save_trees, Edited, Editor, Rule};
use crate::engine::exclude::Excluder;
use crate::error::Result;
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::snapshot::{Snapshot, SnapshotSummary};
use crate::repo::tree::Node;
use crate::repo::Repository;
use chrono::{DateTime, FixedOffset};
use std::path::Path;

/// The tag a rewritten snapshot gets unless its original is forgotten (as restic).
pub const REWRITE_TAG: &str = "rewrite";

/// What to change besides the excluded paths.
#[derive(Debug, Clone, Default)]
pub struct RewriteOptions {
    /// Remove each original once its rewritten copy is saved.
    pub forget: bool,
    pub dry_run: bool,
    pub new_host: Option<String>,
    pub new_time: Option<DateTime<FixedOffset>>,
    /// Give a snapshot without a summary one (its file and byte totals).
    pub snapshot_summary: bool,
}

impl RewriteOptions {
    fn changes_metadata(&self) -> bool {
        self.new_host.is_some() || self.new_time.is_some() || self.snapshot_summary
    }
}

/// One snapshot rewritten (or, in a dry run, to be).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rewritten {
    pub id: String,
    pub new_id: Option<String>,
    /// The paths left out (a folder once, not its contents).
    pub removed: Vec<String>,
    pub forgotten: bool,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RewriteReport {
    pub checked: usize,
    pub rewritten: Vec<Rewritten>,
    pub dry_run: bool,
}

/// Leaves out what the exclusion patterns match.
struct Excluded<'a>(&'a Excluder);

impl Rule for Excluded<'_> {
    fn leave_out(&self, path: &str, _n: &Node) -> bool {
        self.0.is_excluded(Path::new(path))
    }

    fn empties_lost_folders(&self) -> bool {
        false
    }
}

/// The snapshot `sn` becomes with tree `e`, or `None` when nothing would change.
pub fn rewritten(sid: &Id, sn: &Snapshot, e: &Edited, o: &RewriteOptions) -> Option<Snapshot> {
    let needs_summary = o.snapshot_summary && sn.summary.is_none();
    let metadata = o.new_host.as_ref().is_some_and(|h| *h != sn.hostname)
        || o.new_time.is_some_and(|t| t != sn.time)
        || needs_summary;
    if e.removed.is_empty() && !metadata {
        return None;
    }
    let mut s = sn.clone();
    s.tree = e.id;
    s.original = Some(sn.original.unwrap_or(*sid));
    if let Some(h) = &o.new_host {
        s.hostname = h.clone();
    }
    if let Some(t) = o.new_time {
        s.time = t;
    }
    if needs_summary || (!e.removed.is_empty() && s.summary.is_some()) {
        let summary = s.summary.get_or_insert_with(SnapshotSummary::default);
        summary.total_files_processed = e.files;
        summary.total_bytes_processed = e.bytes;
    }
    if !o.forget && !s.has_tag(REWRITE_TAG) {
        s.tags.push(REWRITE_TAG.to_string());
    }
    Some(s)
}

/// Rewrites `snaps` of `repo` (its index loaded; the caller holds the lock `forget` needs):
/// new trees (packs, then their index), then each new snapshot, then — with `forget` — the
/// original's file removed. A dry run writes nothing.
pub fn rewrite(
    repo: &mut Repository,
    snaps: &[(Id, Snapshot)],
    excluder: &Excluder,
    o: &RewriteOptions,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<RewriteReport> {
    let mut editor = Editor::new(repo, Excluded(excluder));
    let mut todo = Vec::new();
    progress.phase("rewrite", Some(snaps.len() as u64));
    for (sid, sn) in snaps {
        cancel.check()?;
        let e = editor.edit_root(sn.tree)?;
        if let Some(new) = rewritten(sid, sn, &e, o) {
            todo.push((*sid, new, e.removed));
        }
        progress.inc(1);
    }
    let trees = editor.into_new_trees();
    if !o.dry_run && !todo.is_empty() {
        save_trees(repo, &trees)?;
    }
    let mut report = RewriteReport {
        checked: snaps.len(),
        dry_run: o.dry_run,
        ..Default::default()
    };
    for (sid, new, removed) in todo {
        let mut r = Rewritten {
            id: sid.to_hex(),
            new_id: None,
            removed,
            forgotten: false,
        };
        if !o.dry_run {
            cancel.check()?;
            r.new_id = Some(repo.save_unpacked(FileType::Snapshot, &new)?.to_hex());
            if o.forget {
                repo.backend().remove(FileType::Snapshot, &sid.to_hex())?;
                r.forgotten = true;
            }
        }
        report.rewritten.push(r);
    }
    Ok(report)
}

/// Whether the options ask for anything at all.
pub fn has_work(excluder: &Excluder, o: &RewriteOptions) -> bool {
    !excluder.patterns.is_empty() || o.changes_metadata()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            time: DateTime::from_timestamp(100, 0).unwrap().fixed_offset(),
            parent: None,
            tree: Id::hash(b"tree"),
            paths: vec!["/data".into()],
            hostname: "a".into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: vec!["job:app".into()],
            original: None,
            program_version: String::new(),
            summary: None,
        }
    }

    fn edited(removed: &[&str]) -> Edited {
        Edited {
            id: Id::hash(b"new"),
            removed: removed.iter().map(|r| r.to_string()).collect(),
            files: 3,
            bytes: 30,
        }
    }

    #[test]
    fn nothing_excluded_and_no_new_metadata_leaves_the_snapshot_alone() {
        let sid = Id::hash(b"s");
        assert!(rewritten(&sid, &snap(), &edited(&[]), &RewriteOptions::default()).is_none());
        let same_host = RewriteOptions {
            new_host: Some("a".into()),
            ..Default::default()
        };
        assert!(rewritten(&sid, &snap(), &edited(&[]), &same_host).is_none());
    }

    #[test]
    fn a_rewritten_snapshot_keeps_its_tags_names_its_original_and_is_tagged_rewrite() {
        let sid = Id::hash(b"s");
        let mut old = snap();
        old.summary = Some(SnapshotSummary {
            total_files_processed: 4,
            total_bytes_processed: 40,
            files_new: 4,
            ..Default::default()
        });
        let new = rewritten(
            &sid,
            &old,
            &edited(&["/data/secret"]),
            &RewriteOptions::default(),
        )
        .unwrap();
        assert_eq!(new.tree, Id::hash(b"new"));
        assert_eq!(new.original, Some(sid));
        assert_eq!(new.tags, vec!["job:app", REWRITE_TAG]);
        let s = new.summary.unwrap();
        assert_eq!((s.total_files_processed, s.total_bytes_processed), (3, 30));
        assert_eq!(s.files_new, 4, "what the backup did stays as it was");
        let again = rewritten(
            &Id::hash(b"t"),
            &new_with(sid),
            &edited(&["/x"]),
            &RewriteOptions::default(),
        )
        .unwrap();
        assert_eq!(again.original, Some(sid), "the first original is kept");
    }

    fn new_with(original: Id) -> Snapshot {
        let mut s = snap();
        s.original = Some(original);
        s.tags.push(REWRITE_TAG.into());
        s
    }

    #[test]
    fn forget_adds_no_tag_and_new_metadata_alone_rewrites() {
        let sid = Id::hash(b"s");
        let o = RewriteOptions {
            forget: true,
            new_host: Some("b".into()),
            snapshot_summary: true,
            ..Default::default()
        };
        let new = rewritten(&sid, &snap(), &edited(&[]), &o).unwrap();
        assert_eq!(new.hostname, "b");
        assert_eq!(new.tags, vec!["job:app"]);
        let s = new.summary.unwrap();
        assert_eq!((s.total_files_processed, s.files_new), (3, 0));
    }
}
