//! `backupctl cat`: one repository object on stdout, as restic's `cat` prints it (JSON documents
//! pretty-printed, packs and blobs raw).

use super::snapref::{self, Latest};
use super::{util, Ctx};
use crate::engine::walk;
use crate::error::{exit, Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::keyfile::KeyFile;
use crate::repo::lock::LockFile;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::pack::BlobType;
use crate::repo::snapshot::SnapshotFilter;
use crate::repo::Repository;
use serde::Serialize;

/// What `cat` prints.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    /// The repository's config (no ID).
    Config,
    /// An index file, its decrypted JSON as stored.
    Index,
    /// A snapshot (an id prefix or `latest`), pretty-printed.
    Snapshot,
    /// A key file, pretty-printed (it holds the master key only encrypted).
    Key,
    /// A lock file, pretty-printed.
    Lock,
    /// A pack file, raw (encrypted) bytes.
    Pack,
    /// A blob (data, else tree), decrypted.
    Blob,
    /// A tree blob by its id, or the tree of SNAPSHOT[:PATH], decrypted.
    Tree,
}

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// What to print.
    #[arg(value_enum)]
    pub what: What,
    /// Which one: an id (or a unique prefix of one); for snapshot and tree also `latest`, and
    /// for tree SNAPSHOT:PATH.
    pub id: Option<String>,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let spec = match (a.what, a.id.as_deref()) {
        (What::Config, None) => "",
        (What::Config, Some(_)) => {
            return Err(Error::Input(
                "`cat config` takes no ID\n  hint: run `backupctl cat config`".into(),
            ))
        }
        (w, None) => {
            return Err(Error::Input(format!(
                "`cat {}` needs an ID\n  hint: `backupctl list` lists the ids of each kind of file",
                name(w)
            )))
        }
        (_, Some(s)) => s,
    };
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    match a.what {
        What::Config => pretty(repo.config()),
        What::Index => {
            let id = file_id(&repo, FileType::Index, spec)?;
            let mut text = repo.load_unpacked_bytes(FileType::Index, &id)?;
            text.push(b'\n');
            util::write_stdout(&text);
        }
        What::Snapshot => {
            let all = snapref::load(ctx, &repo)?;
            let latest = Latest::Refuse {
                hint: snapref::BY_ID,
            };
            pretty(&snapref::find(&all, spec, &SnapshotFilter::default(), latest)?.1);
        }
        What::Key => pretty(&load_key(&repo, spec)?),
        What::Lock => {
            let id = file_id(&repo, FileType::Lock, spec)?;
            pretty(&repo.load_unpacked::<LockFile>(FileType::Lock, &id)?);
        }
        What::Pack => cat_pack(ctx, &repo, spec)?,
        What::Blob => {
            repo.load_index()?;
            util::write_stdout(&load_any_blob(&repo, spec)?);
        }
        What::Tree => {
            repo.load_index()?;
            let id = tree_of(ctx, &repo, spec)?;
            util::write_stdout(&repo.load_blob(&id, BlobType::Tree)?);
        }
    }
    Ok(exit::OK)
}

fn name(w: What) -> &'static str {
    match w {
        What::Config => "config",
        What::Index => "index",
        What::Snapshot => "snapshot",
        What::Key => "key",
        What::Lock => "lock",
        What::Pack => "pack",
        What::Blob => "blob",
        What::Tree => "tree",
    }
}

/// Pretty JSON with two-space indents, as restic's `cat` prints documents.
fn pretty<T: Serialize>(v: &T) {
    let text = serde_json::to_string_pretty(v).expect("repository documents serialize");
    println!("{text}");
}

/// The one file of type `t` whose id starts with `spec`.
pub(crate) fn file_id(repo: &Repository, t: FileType, spec: &str) -> Result<Id> {
    let spec_l = spec.to_ascii_lowercase();
    if let Some(id) = Id::parse(&spec_l) {
        return Ok(id);
    }
    let hits: Vec<Id> = repo
        .list_ids(t)?
        .into_iter()
        .filter(|id| !spec_l.is_empty() && id.to_hex().starts_with(&spec_l))
        .collect();
    let kind = t.describe();
    match hits.as_slice() {
        [id] => Ok(*id),
        [] => Err(Error::Input(format!(
            "no {kind} file has an id starting with {spec:?}\n  hint: `backupctl list {}` lists them",
            list_name(t)
        ))),
        _ => Err(Error::Input(format!(
            "{spec:?} is the start of {} {kind} file ids\n  hint: give more digits",
            hits.len()
        ))),
    }
}

fn list_name(t: FileType) -> &'static str {
    match t {
        FileType::Pack => "packs",
        FileType::Key => "keys",
        FileType::Lock => "locks",
        FileType::Snapshot => "snapshots",
        _ => "index",
    }
}

/// A key file (stored as plain JSON).
fn load_key(repo: &Repository, spec: &str) -> Result<KeyFile> {
    let id = file_id(repo, FileType::Key, spec)?;
    let bytes = repo.backend().load(FileType::Key, &id.to_hex())?;
    KeyFile::parse(&bytes).map_err(|e| Error::damaged(format!("key file {}", id.short()), e))
}

/// A pack's bytes as stored; one whose content does not hash to its name is still printed (to
/// look at the damage), with a warning.
fn cat_pack(ctx: &Ctx, repo: &Repository, spec: &str) -> Result<()> {
    let id = file_id(repo, FileType::Pack, spec)?;
    let bytes = repo.backend().load(FileType::Pack, &id.to_hex())?;
    let got = Id::hash(&bytes);
    if got != id {
        ctx.warn(format!(
            "the content of pack {} does not match its name: its SHA-256 is {}",
            id.to_hex(),
            got.to_hex()
        ));
    }
    util::write_stdout(&bytes);
    Ok(())
}

/// The blob `spec` names (a full id): its data blob, else its tree blob.
fn load_any_blob(repo: &Repository, spec: &str) -> Result<Vec<u8>> {
    let id = full_id(spec, "blob")?;
    for t in [BlobType::Data, BlobType::Tree] {
        if repo.index().has(&id, t) {
            return repo.load_blob(&id, t);
        }
    }
    Err(Error::Input(format!(
        "no blob {} is in the index\n  hint: `backupctl list blobs` lists them",
        id.to_hex()
    )))
}

fn full_id(spec: &str, kind: &str) -> Result<Id> {
    Id::parse(&spec.to_ascii_lowercase()).ok_or_else(|| {
        Error::Input(format!(
            "{spec:?} is not a {kind} id (64 hex digits)\n  hint: `backupctl list blobs` lists them"
        ))
    })
}

/// The tree `spec` names: a tree blob's full id, else SNAPSHOT[:PATH] (a directory of it).
fn tree_of(ctx: &Ctx, repo: &Repository, spec: &str) -> Result<Id> {
    if let Some(id) = Id::parse(&spec.to_ascii_lowercase()) {
        if repo.index().has(&id, BlobType::Tree) {
            return Ok(id);
        }
    }
    let (snap, path) = util::split_snapshot_path(spec);
    let all = snapref::load(ctx, repo)?;
    let latest = Latest::Refuse {
        hint: snapref::BY_ID,
    };
    let (sid, s) = snapref::find(&all, snap, &SnapshotFilter::default(), latest)?;
    let path = path.unwrap_or("/");
    let node = walk::find_node(repo, &s.tree, path)?;
    match node.and_then(|n| if n.is_dir() { n.subtree } else { None }) {
        Some(t) => Ok(t),
        None => Err(Error::Input(format!(
            "snapshot {} has no directory {path:?}\n  hint: `backupctl ls {}` lists its paths",
            sid.short(),
            sid.short()
        ))),
    }
}
