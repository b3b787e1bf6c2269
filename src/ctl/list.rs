//! `backupctl list`: the ids of a kind of repository file, or every blob of the index, as restic's.

use super::snapref::{self, Latest};
use super::Ctx;
use crate::engine::walk;
use crate::error::{exit, Error, Result};
use crate::repo::backend::FileType;
use crate::repo::open::{open_repository, open_unlocked, LockMode};
use crate::repo::snapshot::SnapshotFilter;
use crate::repo::Repository;
use serde::Serialize;
use std::collections::BTreeSet;

/// What `list` lists.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    /// Snapshot files.
    Snapshots,
    /// Index files.
    Index,
    /// Pack files (`data/`).
    Packs,
    /// Key files.
    Keys,
    /// Lock files (read without taking a lock, as restic).
    Locks,
    /// Every blob the index knows: `TYPE ID` (data or tree).
    Blobs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// What to list.
    #[arg(value_enum)]
    pub what: What,
    /// With `packs`: only the packs this snapshot needs (an id prefix or `latest`), as
    /// restic 0.19's `list packs SNAPSHOT`.
    pub snapshot: Option<String>,
}

/// A blob of `list blobs --json`.
#[derive(Serialize)]
struct Blob {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.snapshot.is_some() && a.what != What::Packs {
        return Err(Error::Input(
            "only `list packs` takes a snapshot\n  hint: `backupctl list packs SNAPSHOT`".into(),
        ));
    }
    let settings = ctx.repo_settings()?;
    // Listing locks must not wait for (or add) one.
    let (mut repo, _lock) = match a.what {
        What::Locks => (open_unlocked(&settings)?, None),
        _ => {
            let (r, l) = open_repository(&settings, LockMode::Shared)?;
            (r, Some(l))
        }
    };
    let lines = match a.what {
        What::Blobs => return blobs(ctx, &mut repo),
        What::Packs if a.snapshot.is_some() => {
            packs_of(ctx, &mut repo, a.snapshot.as_deref().unwrap_or_default())?
        }
        What::Snapshots => ids(&repo, FileType::Snapshot)?,
        What::Index => ids(&repo, FileType::Index)?,
        What::Packs => ids(&repo, FileType::Pack)?,
        What::Keys => ids(&repo, FileType::Key)?,
        What::Locks => ids(&repo, FileType::Lock)?,
    };
    if ctx.global.json {
        ctx.print_json(&lines);
    } else {
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(exit::OK)
}

/// The names of the files of type `t` that are ids, sorted.
fn ids(repo: &Repository, t: FileType) -> Result<Vec<String>> {
    let mut v: Vec<String> = repo.list_ids(t)?.iter().map(|i| i.to_hex()).collect();
    v.sort();
    Ok(v)
}

/// Every blob of the index, trees first then data, each sorted by id.
fn blobs(ctx: &Ctx, repo: &mut Repository) -> Result<i32> {
    repo.load_index()?;
    let mut all: Vec<(&'static str, String)> = repo
        .index()
        .iter()
        .map(|((id, t), _)| (t.as_str(), id.to_hex()))
        .collect();
    all.sort_by(|a, b| b.0.cmp(a.0).then_with(|| a.1.cmp(&b.1)));
    if ctx.global.json {
        let v: Vec<Blob> = all
            .into_iter()
            .map(|(kind, id)| Blob { kind, id })
            .collect();
        ctx.print_json(&v);
    } else {
        for (t, id) in &all {
            println!("{t} {id}");
        }
    }
    Ok(exit::OK)
}

/// The packs that hold a blob the snapshot `spec` needs (all of its tree, not a sub-path: what
/// restoring it reads), sorted.
fn packs_of(ctx: &Ctx, repo: &mut Repository, spec: &str) -> Result<Vec<String>> {
    let all = snapref::load(ctx, repo)?;
    let latest = Latest::Refuse {
        hint: snapref::BY_ID,
    };
    let tree = snapref::find(&all, spec, &SnapshotFilter::default(), latest)?
        .1
        .tree;
    repo.load_index()?;
    let blobs = walk::referenced_blobs(repo, [tree])?;
    let index = repo.index();
    let found: Vec<_> = blobs
        .iter()
        .filter_map(|(id, t)| index.get(id, *t))
        .collect();
    if found.len() < blobs.len() {
        ctx.warn(format!(
            "{} blob(s) the snapshot needs are in no pack of the index, so the list lacks their \
             packs: run `backupctl check` to see what is damaged",
            blobs.len() - found.len()
        ));
    }
    let packs: BTreeSet<String> = found.iter().map(|l| index.pack_id(l).to_hex()).collect();
    Ok(packs.into_iter().collect())
}
