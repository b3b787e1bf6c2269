//! `backupctl manifest`: print a snapshot's manifest (`/.backupd/SHA256SUMS`) to stdout.

use super::snapshots::FilterArgs;
use super::{snapref, Ctx};
use crate::error::{exit, Error, Result};
use crate::repo::manifest;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshot id (or prefix) or `latest`.
    pub snapshot: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// One file of the manifest, for --json.
#[derive(Serialize)]
struct Entry<'a> {
    path: &'a str,
    sha256: String,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (repo, _lock, id, snap) = snapref::open_one(ctx, &a.snapshot, &a.filter.filter())?;
    let loaded = manifest::load(&repo, &id.short(), &snap.tree)?.ok_or(Error::NoManifest {
        snapshot: id.short(),
        path: manifest::PATH,
    })?;
    if ctx.global.json {
        let files: Vec<Entry> = loaded
            .manifest
            .files
            .iter()
            .map(|(path, h)| Entry {
                path,
                sha256: hex::encode(h),
            })
            .collect();
        ctx.print_json(
            &serde_json::json!({"snapshot": id, "path": manifest::PATH, "files": files}),
        );
    } else {
        // The manifest parsed, so it is UTF-8; print! turns a closed pipe into exit 141.
        print!("{}", String::from_utf8_lossy(&loaded.text));
    }
    Ok(exit::OK)
}
