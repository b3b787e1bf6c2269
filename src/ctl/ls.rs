//! `backupctl ls`: list the files of a snapshot.

use super::snapshots::FilterArgs;
use super::{snapref, util, Ctx};
use crate::engine::walk;
use crate::error::{exit, Error, Result};
use crate::repo::open::{open_repository, LockMode};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshot id (or prefix) or `latest`, optionally with `:PATH` to list only below PATH.
    pub snapshot: String,
    /// Show mode, size, owner and modification time.
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Serialize)]
struct Entry<'a> {
    path: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    size: u64,
    mode: u32,
    mtime: String,
    uid: u32,
    gid: u32,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (spec, sub) = util::split_snapshot_path(&a.snapshot);
    let (mut repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
    let snaps = snapref::load(ctx, &repo)?;
    let latest = snapref::Latest::Refuse {
        hint: snapref::BY_ID,
    };
    let (id, snap) = snapref::find(&snaps, spec, &a.filter.filter(), latest)?.clone();
    repo.load_index()?;
    let sub = sub.unwrap_or("/");
    let start = walk::find_node(&repo, &snap.tree, sub)?
        .ok_or_else(|| Error::Input(format!("snapshot {} has no path {sub:?}", id.short())))?;
    let prefix = sub.trim_end_matches('/').to_string();
    let mut out = Vec::new();
    let mut emit = |path: &str, n: &crate::repo::tree::Node| {
        if ctx.global.json {
            out.push(
                serde_json::to_value(Entry {
                    path,
                    kind: &n.kind,
                    size: n.size,
                    mode: n.mode,
                    mtime: n.mtime.to_rfc3339(),
                    uid: n.uid,
                    gid: n.gid,
                })
                .expect("an entry of strings and numbers serializes"),
            );
        } else if a.long {
            println!(
                "{:<7} {:>5} {:>5} {:>12} {} {}",
                n.kind,
                n.uid,
                n.gid,
                n.size,
                super::show::time(&n.mtime),
                path
            );
        } else {
            println!("{path}");
        }
    };
    if start.is_dir() {
        if let Some(t) = start.subtree {
            walk::walk_tree(&repo, &t, &prefix, &mut |p, n| {
                emit(p, n);
                Ok(true)
            })?;
        }
    } else {
        emit(&prefix, &start);
    }
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"snapshot": id, "nodes": out}));
    }
    Ok(exit::OK)
}
