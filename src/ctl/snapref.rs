//! Which snapshot a command names, past damaged snapshot files: the warning that names each
//! damaged file, `latest` (which a damaged file makes unknowable, and which is never a safety
//! snapshot unless `--tag pre-restore` asks for one) and `--newest-valid`.

use super::Ctx;
use crate::engine::restore::{is_safety_snapshot, SAFETY_TAG};
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::snapshot::{self, FindError, Snapshot, SnapshotFilter};
use crate::repo::{DamagedSnapshot, Repository, Snapshots};

/// The repository's snapshots; each damaged snapshot file is named in a warning on stderr.
pub(crate) fn load(ctx: &Ctx, repo: &Repository) -> Result<Snapshots> {
    let all = repo.load_snapshots()?;
    warn_damaged(ctx, &all.damaged);
    Ok(all)
}

/// One warning per damaged snapshot file: what is wrong, and the command that removes it.
pub(crate) fn warn_damaged(ctx: &Ctx, damaged: &[DamagedSnapshot]) {
    for d in damaged {
        ctx.warn(format!("skipped: {}", d.error()));
    }
}

/// How `latest` treats damaged snapshot files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Latest {
    /// A damaged file might be the newest: `latest` refuses, and the hint names this way on.
    Refuse { hint: &'static str },
    /// `latest` is the newest readable snapshot (restore --newest-valid).
    NewestValid,
}

/// The hint of `latest` where the command has no --newest-valid.
pub(crate) const BY_ID: &str =
    "name a snapshot by its id instead (`backupctl snapshots` lists the readable ones)";

/// The repository (shared lock held, index loaded) and the snapshot `spec` names among those
/// `filter` matches (`latest` refused when a damaged file makes it unknowable).
pub(crate) fn open_one(
    ctx: &Ctx,
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<(Repository, crate::repo::lock::RepoLock, Id, Snapshot)> {
    let (mut repo, lock) = crate::repo::open::open_repository(
        &ctx.repo_settings()?,
        crate::repo::open::LockMode::Shared,
    )?;
    let snaps = load(ctx, &repo)?;
    let (id, snap) = find(&snaps, spec, filter, Latest::Refuse { hint: BY_ID })?.clone();
    repo.load_index()?;
    Ok((repo, lock, id, snap))
}

/// The snapshots `specs` name (each once, in their order), or with none every readable one
/// `filter` matches. An unknown or damaged one fails the whole selection, before anything is
/// done to any.
pub(crate) fn select<'a>(
    all: &'a Snapshots,
    specs: &[String],
    filter: &SnapshotFilter,
) -> Result<Vec<&'a (Id, Snapshot)>> {
    if specs.is_empty() {
        return Ok(all
            .readable
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .collect());
    }
    let latest = Latest::Refuse { hint: BY_ID };
    let mut out: Vec<&(Id, Snapshot)> = Vec::new();
    for spec in specs {
        let found = find(all, spec, filter, latest)?;
        if !out.iter().any(|(id, _)| id == &found.0) {
            out.push(found);
        }
    }
    Ok(out)
}

/// Resolves `spec` (`latest` or an id prefix) among the readable snapshots. A prefix that names
/// a damaged file is that file's error; `latest` with a damaged file is decided by `latest`.
pub(crate) fn find<'a>(
    all: &'a Snapshots,
    spec: &str,
    filter: &SnapshotFilter,
    latest: Latest,
) -> Result<&'a (Id, Snapshot)> {
    if spec == "latest" {
        if let (Some(d), Latest::Refuse { hint }) = (all.damaged.first(), latest) {
            return Err(Error::SnapshotDamaged {
                id: d.id.to_hex(),
                detail: format!(
                    "{}\n  `latest` cannot tell whether it was the newest snapshot: {hint}",
                    d.detail
                ),
            });
        }
    }
    let not_listed =
        |e: FindError| Error::Input(format!("{e}\n  hint: `backupctl snapshots` lists them"));
    if spec == "latest" {
        return newest(&all.readable, filter)
            .ok_or_else(|| not_listed(FindError::NotFound(spec.into())));
    }
    let spec_l = spec.to_ascii_lowercase();
    let damaged: Vec<&DamagedSnapshot> = all
        .damaged
        .iter()
        .filter(|d| d.id.to_hex().starts_with(&spec_l))
        .collect();
    match snapshot::find(&all.readable, spec, filter) {
        Ok(found) if damaged.is_empty() || found.0.to_hex() == spec_l => Ok(found),
        Ok(_) => Err(not_listed(FindError::Ambiguous(
            spec.into(),
            damaged.len() + 1,
        ))),
        Err(FindError::NotFound(_)) if damaged.len() == 1 => Err(damaged[0].error()),
        Err(FindError::NotFound(s)) if damaged.len() > 1 => {
            Err(not_listed(FindError::Ambiguous(s, damaged.len())))
        }
        Err(e) => Err(not_listed(e)),
    }
}

/// Whether `s` is a candidate for `latest` under `filter`: it matches, and it is not a safety
/// snapshot (an undo point of a restore, not a backup) unless the filter asks for their tag.
pub(crate) fn latest_candidate(filter: &SnapshotFilter, s: &Snapshot) -> bool {
    let wants_safety = filter
        .tags
        .iter()
        .any(|t| t.split(',').any(|t| t == SAFETY_TAG));
    filter.matches(s) && (wants_safety || !is_safety_snapshot(s))
}

/// The newest of `all` that is a `latest` candidate.
fn newest<'a>(all: &'a [(Id, Snapshot)], filter: &SnapshotFilter) -> Option<&'a (Id, Snapshot)> {
    all.iter()
        .filter(|(_, s)| latest_candidate(filter, s))
        .max_by_key(|(_, s)| s.time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn snap(secs: i64) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "time": DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
            "tree": Id::hash(b"t"),
            "paths": ["/x"],
        }))
        .unwrap()
    }

    fn repo_of(readable: &[(&[u8], i64)], damaged: &[&[u8]]) -> Snapshots {
        Snapshots {
            readable: readable
                .iter()
                .map(|(n, t)| (Id::hash(n), snap(*t)))
                .collect(),
            damaged: damaged
                .iter()
                .map(|n| DamagedSnapshot {
                    id: Id::hash(n),
                    detail: "bad MAC".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn latest_refuses_past_a_damaged_file_unless_newest_valid() {
        let all = repo_of(&[(b"a", 1), (b"b", 2)], &[b"c"]);
        let f = SnapshotFilter::default();
        let e = find(&all, "latest", &f, Latest::Refuse { hint: BY_ID }).unwrap_err();
        assert!(matches!(e, Error::SnapshotDamaged { .. }), "{e}");
        assert!(e.to_string().contains(&Id::hash(b"c").to_hex()), "{e}");
        let found = find(&all, "latest", &f, Latest::NewestValid).unwrap();
        assert_eq!(found.0, Id::hash(b"b"));
        // Without damage, latest is the newest.
        let clean = repo_of(&[(b"a", 1), (b"b", 2)], &[]);
        let found = find(&clean, "latest", &f, Latest::Refuse { hint: BY_ID }).unwrap();
        assert_eq!(found.0, Id::hash(b"b"));
    }

    #[test]
    fn an_id_finds_readable_ones_and_names_a_damaged_one() {
        let all = repo_of(&[(b"a", 1)], &[b"c"]);
        let f = SnapshotFilter::default();
        let l = Latest::NewestValid;
        let a = Id::hash(b"a").to_hex();
        assert_eq!(find(&all, &a, &f, l).unwrap().0, Id::hash(b"a"));
        let c = Id::hash(b"c").to_hex();
        let e = find(&all, &c[..8], &f, l).unwrap_err();
        assert!(
            matches!(e, Error::SnapshotDamaged { ref id, .. } if *id == c),
            "{e}"
        );
        // The empty prefix matches both: ambiguous, not the readable one.
        assert!(matches!(find(&all, "", &f, l), Err(Error::Input(_))));
    }

    #[test]
    fn latest_is_never_a_safety_snapshot_unless_the_filter_asks_for_one() {
        let mut all = repo_of(&[(b"backup", 1), (b"undo", 2)], &[]);
        all.readable[1].1.tags = vec![SAFETY_TAG.to_string()];
        let l = Latest::Refuse { hint: BY_ID };
        let f = SnapshotFilter::default();
        assert_eq!(find(&all, "latest", &f, l).unwrap().0, Id::hash(b"backup"));
        let asks = SnapshotFilter {
            tags: vec![SAFETY_TAG.to_string()],
            ..SnapshotFilter::default()
        };
        assert_eq!(find(&all, "latest", &asks, l).unwrap().0, Id::hash(b"undo"));
        // By its id it is found as any snapshot.
        let undo = Id::hash(b"undo").to_hex();
        assert_eq!(find(&all, &undo, &f, l).unwrap().0, Id::hash(b"undo"));
    }
}
