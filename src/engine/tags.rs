//! Changing a snapshot's tags (`backupctl tag`): the new tag list, the rewritten snapshot file
//! (new one first, old one removed after), and the `job:` tags a change would drop.

use crate::error::{Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::snapshot::{Snapshot, JOB_TAG_PREFIX};
use crate::repo::Repository;

/// What `tag` does to each snapshot's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// Replace the whole list (an empty list clears it).
    Set(Vec<String>),
    /// Add the tags it lacks (at the end, in the order given), then remove every occurrence of
    /// the others.
    Modify {
        add: Vec<String>,
        remove: Vec<String>,
    },
}

/// Why a tag change cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagChangeError {
    #[error("nothing to do: give --add, --remove or --set")]
    Nothing,
    #[error("--set replaces every tag, so it cannot be combined with --add or --remove")]
    SetWithModify,
}

/// Splits each `tag[,tag...]` argument (as restic takes them) into tags; empty pieces are dropped.
pub fn flatten(lists: &[String]) -> Vec<String> {
    lists
        .iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

impl TagChange {
    /// The change the `--set`, `--add` and `--remove` arguments ask for. `--set ""` (given, but
    /// with no tag) clears the tags.
    pub fn from_args(
        set: &[String],
        add: &[String],
        remove: &[String],
    ) -> std::result::Result<TagChange, TagChangeError> {
        let (add, remove) = (flatten(add), flatten(remove));
        match (set.is_empty(), add.is_empty() && remove.is_empty()) {
            (true, true) => Err(TagChangeError::Nothing),
            (false, false) => Err(TagChangeError::SetWithModify),
            (false, true) => Ok(TagChange::Set(dedup(flatten(set)))),
            (true, false) => Ok(TagChange::Modify { add, remove }),
        }
    }

    /// The tags `old` becomes.
    pub fn apply(&self, old: &[String]) -> Vec<String> {
        match self {
            TagChange::Set(tags) => tags.clone(),
            TagChange::Modify { add, remove } => {
                let mut tags = old.to_vec();
                for t in add {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                tags.retain(|t| !remove.contains(t));
                tags
            }
        }
    }
}

/// Each tag once, first occurrence kept.
fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// The snapshot `snap` (stored as `id`) with its tags changed, or `None` when the change leaves
/// its tags as they are (nothing is rewritten then). `original` keeps pointing at the first
/// snapshot of the chain: set to `id` only when it had none, as restic does.
pub fn retag(id: &Id, snap: &Snapshot, change: &TagChange) -> Option<Snapshot> {
    let tags = change.apply(&snap.tags);
    if tags == snap.tags {
        return None;
    }
    let mut new = snap.clone();
    new.tags = tags;
    new.original.get_or_insert(*id);
    Some(new)
}

/// Writes `new`'s tags and `original` into `doc`, the stored JSON of the snapshot it was made
/// from, and leaves every other field as stored: fields this version does not know (a newer
/// restic's) survive the rewrite. No tags: the field is left out, as restic leaves it out.
pub fn apply_to_document(
    doc: &mut serde_json::Value,
    new: &Snapshot,
) -> std::result::Result<(), String> {
    let obj = doc
        .as_object_mut()
        .ok_or("the snapshot file does not hold a JSON object")?;
    if new.tags.is_empty() {
        obj.remove("tags");
    } else {
        obj.insert("tags".into(), serde_json::json!(new.tags));
    }
    if let Some(o) = new.original {
        obj.insert("original".into(), serde_json::json!(o));
    }
    Ok(())
}

/// Replaces the snapshot file `old` with one holding `new`'s tags and `original` (the old
/// document, every other field kept): the new file is written first, then the old one removed,
/// so a crash or a failure between the two leaves both snapshots, never neither. Returns the new
/// snapshot's id. The caller holds the exclusive lock.
pub fn rewrite(repo: &Repository, old: &Id, new: &Snapshot) -> Result<Id> {
    let mut doc: serde_json::Value = repo.load_unpacked(FileType::Snapshot, old)?;
    apply_to_document(&mut doc, new)
        .map_err(|e| Error::damaged(format!("snapshot file {}", old.short()), e))?;
    let id = repo.save_unpacked(FileType::Snapshot, &doc)?;
    match repo.backend().remove(FileType::Snapshot, &old.to_hex()) {
        Ok(()) => Ok(id),
        Err(e) if e.is_not_found() => Ok(id),
        Err(e) => Err(e.into()),
    }
}

/// The `job:NAME` tags of `old` that `new` no longer has: the job's retention (`forget --job`)
/// and its parent lookup stop seeing that snapshot.
pub fn dropped_job_tags(old: &[String], new: &[String]) -> Vec<String> {
    old.iter()
        .filter(|t| t.starts_with(JOB_TAG_PREFIX) && !new.contains(t))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|t| t.to_string()).collect()
    }

    fn snap(tags: &[&str]) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "time": DateTime::from_timestamp(1, 0).unwrap().fixed_offset(),
            "tree": Id::hash(b"t"),
            "paths": ["/x"],
            "tags": tags,
        }))
        .unwrap()
    }

    #[test]
    fn arguments_are_comma_lists_and_set_excludes_add_and_remove() {
        assert_eq!(flatten(&s(&["a,b", "c", ""])), s(&["a", "b", "c"]));
        assert_eq!(
            TagChange::from_args(&[], &[], &[]),
            Err(TagChangeError::Nothing)
        );
        assert_eq!(
            TagChange::from_args(&s(&["a"]), &s(&["b"]), &[]),
            Err(TagChangeError::SetWithModify)
        );
        assert_eq!(
            TagChange::from_args(&[], &s(&["", ","]), &[]),
            Err(TagChangeError::Nothing),
            "an --add of no tag is nothing to do"
        );
        assert_eq!(
            TagChange::from_args(&s(&[""]), &[], &[]),
            Ok(TagChange::Set(vec![]))
        );
        assert_eq!(
            TagChange::from_args(&s(&["a,a,b"]), &[], &[]),
            Ok(TagChange::Set(s(&["a", "b"])))
        );
    }

    #[test]
    fn add_keeps_order_and_remove_drops_every_occurrence() {
        let c = TagChange::Modify {
            add: s(&["new", "a"]),
            remove: s(&["b"]),
        };
        assert_eq!(c.apply(&s(&["a", "b", "c", "b"])), s(&["a", "c", "new"]));
    }

    #[test]
    fn retag_sets_original_once_and_skips_no_ops() {
        let id = Id::hash(b"first");
        let old = snap(&["a"]);
        let add_a = TagChange::Modify {
            add: s(&["a"]),
            remove: vec![],
        };
        assert!(retag(&id, &old, &add_a).is_none());
        let add_b = TagChange::Modify {
            add: s(&["b"]),
            remove: vec![],
        };
        let new = retag(&id, &old, &add_b).unwrap();
        assert_eq!(new.tags, s(&["a", "b"]));
        assert_eq!(new.original, Some(id));
        assert_eq!(new.tree, old.tree);
        // A second change keeps pointing at the first snapshot.
        let again = retag(&Id::hash(b"second"), &new, &TagChange::Set(vec![])).unwrap();
        assert_eq!(again.original, Some(id));
        assert!(again.tags.is_empty());
    }

    #[test]
    fn the_stored_document_keeps_fields_this_version_does_not_know() {
        let id = Id::hash(b"first");
        let mut doc = serde_json::to_value(snap(&["a"])).unwrap();
        doc["from_a_newer_restic"] = serde_json::json!({"x": 1});
        let new = retag(&id, &snap(&["a"]), &TagChange::Set(s(&["b"]))).unwrap();
        apply_to_document(&mut doc, &new).unwrap();
        assert_eq!(doc["tags"], serde_json::json!(["b"]));
        assert_eq!(doc["original"], serde_json::json!(id));
        assert_eq!(doc["from_a_newer_restic"]["x"], 1);
        let cleared = retag(&id, &new, &TagChange::Set(vec![])).unwrap();
        apply_to_document(&mut doc, &cleared).unwrap();
        assert!(doc.get("tags").is_none());
        assert!(apply_to_document(&mut serde_json::json!([]), &cleared).is_err());
    }

    /// A local repository whose deletions fail (as a storage that refuses them mid-command).
    struct NoRemove(crate::repo::backend::LocalBackend);

    impl crate::repo::backend::Backend for NoRemove {
        fn location(&self) -> String {
            self.0.location()
        }
        fn create(&self) -> BResult<()> {
            self.0.create()
        }
        fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
            self.0.save(t, name, data)
        }
        fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
            self.0.load(t, name)
        }
        fn load_range(&self, t: FileType, n: &str, o: u64, l: usize) -> BResult<Vec<u8>> {
            self.0.load_range(t, n, o, l)
        }
        fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
            self.0.list(t)
        }
        fn remove(&self, _: FileType, name: &str) -> BResult<()> {
            Err(crate::repo::backend::BackendError {
                op: "remove",
                path: name.into(),
                source: std::io::Error::other("refused"),
            })
        }
        fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
            self.0.exists(t, name)
        }
    }

    use crate::repo::backend::BResult;

    #[test]
    fn rewrite_writes_the_new_snapshot_before_removing_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let local = crate::repo::backend::LocalBackend::new(dir.path().join("r"));
        let be: std::sync::Arc<dyn crate::repo::backend::Backend> =
            std::sync::Arc::new(NoRemove(local));
        let repo = Repository::init_with_kdf(be, b"pw", 1024, 8, 1).unwrap();
        let old = snap(&["a"]);
        let old_id = repo.save_unpacked(FileType::Snapshot, &old).unwrap();
        let new = retag(&old_id, &old, &TagChange::Set(s(&["b"]))).unwrap();
        assert!(rewrite(&repo, &old_id, &new).is_err(), "the removal failed");
        // Both are there: the old one, and the new one that names it as its original.
        let all = repo.list_snapshots().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|(id, _)| *id == old_id));
        let (_, written) = all.iter().find(|(id, _)| *id != old_id).unwrap();
        assert_eq!(written.tags, s(&["b"]));
        assert_eq!(written.original, Some(old_id));
        assert_eq!(written.tree, old.tree);
    }

    #[test]
    fn dropped_job_tags_names_only_job_tags_that_go() {
        let old = s(&["job:nightly", "x"]);
        assert_eq!(
            dropped_job_tags(&old, &s(&["job:weekly"])),
            s(&["job:nightly"])
        );
        assert!(dropped_job_tags(&old, &s(&["job:nightly"])).is_empty());
    }
}
