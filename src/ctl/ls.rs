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
    /// Only these folders (restic's `ls SNAPSHOT DIR...`): each one and its entries, or all
    /// below it with --recursive.
    pub dirs: Vec<String>,
    /// With folders given: everything below them, not only their entries.
    #[arg(long)]
    pub recursive: bool,
    /// Show mode, owner, size and modification time, in restic's columns.
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// One `node` line of `ls --json`, as restic 0.19 prints it.
#[derive(Serialize)]
struct Entry<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    path: &'a str,
    uid: u32,
    gid: u32,
    /// A file's size (restic prints none for other types).
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    mode: u32,
    permissions: String,
    mtime: String,
    atime: String,
    ctime: String,
    inode: u64,
    message_type: &'static str,
    struct_type: &'static str,
}

impl<'a> Entry<'a> {
    fn of(path: &'a str, n: &'a crate::repo::tree::Node) -> Entry<'a> {
        use crate::repo::gotime::format;
        Entry {
            name: n.name.as_str(),
            kind: &n.kind,
            path,
            uid: n.uid,
            gid: n.gid,
            size: n.is_file().then_some(n.size),
            mode: n.mode,
            permissions: crate::repo::tree::gomode::to_string(n.mode),
            mtime: format(&n.mtime),
            atime: format(&n.atime),
            ctime: format(&n.ctime),
            inode: n.inode,
            message_type: "node",
            struct_type: "node",
        }
    }
}

/// The first line of `ls --json`: the snapshot as restic 0.19 prints it (its stored fields in
/// their order, then `id`, `short_id` and the message type).
fn snapshot_line(id: &crate::repo::id::Id, snap: &crate::repo::snapshot::Snapshot) -> String {
    let stored = serde_json::to_string(snap).expect("a snapshot serializes");
    let extra = serde_json::json!({"id": id.to_hex(), "short_id": id.short()});
    format!(
        "{},\"id\":{},\"short_id\":{},\"message_type\":\"snapshot\",\"struct_type\":\"snapshot\"}}",
        stored.strip_suffix('}').unwrap_or(&stored),
        extra["id"],
        extra["short_id"]
    )
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
    if ctx.global.json {
        println!("{}", snapshot_line(&id, &snap));
    }
    let emit = |path: &str, n: &crate::repo::tree::Node| {
        if ctx.global.json {
            let line = serde_json::to_string(&Entry::of(path, n));
            println!(
                "{}",
                line.expect("an entry of strings and numbers serializes")
            );
        } else if a.long {
            println!("{}", long_line(path, n));
        } else {
            println!("{path}");
        }
    };
    let dirs: Vec<String> = a.dirs.iter().map(|d| normal(d)).collect();
    if start.is_dir() {
        if let Some(t) = start.subtree {
            walk::walk_tree(&repo, &t, &prefix, &mut |p, n| {
                let (show, descend) = shown(p, &dirs, a.recursive);
                if show {
                    emit(p, n);
                }
                Ok(descend)
            })?;
        }
    } else {
        emit(&prefix, &start);
    }
    Ok(exit::OK)
}

/// A folder argument as a tree path: absolute, without a trailing `/`.
fn normal(d: &str) -> String {
    format!("/{}", d.trim_matches('/'))
}

/// Whether `path` is listed, and whether to walk below it, for the folders `dirs` (none: all),
/// as restic's `ls SNAPSHOT DIR...`: each folder and its entries, everything below it with
/// `recursive`, and the folders on the way to one walked through unlisted.
pub(crate) fn shown(path: &str, dirs: &[String], recursive: bool) -> (bool, bool) {
    if dirs.is_empty() {
        return (true, true);
    }
    let below = |d: &str| d == "/" || path.starts_with(&format!("{d}/"));
    let parent = path
        .rsplit_once('/')
        .map(|(p, _)| if p.is_empty() { "/" } else { p });
    let show = dirs
        .iter()
        .any(|d| path == d || parent == Some(d.as_str()) || (recursive && below(d)));
    let descend = dirs
        .iter()
        .any(|d| path == d || d.starts_with(&format!("{path}/")) || (recursive && below(d)));
    (show, descend)
}

/// One entry in restic's `ls -l` columns: Go's mode string, uid, gid, size, time, path (and
/// ` -> target` for a symlink). The time carries its UTC offset, as every time backupctl shows
/// (restic's has none).
fn long_line(path: &str, n: &crate::repo::tree::Node) -> String {
    let target = match n.kind.as_str() {
        crate::repo::tree::kind::SYMLINK => format!(" -> {}", n.linktarget),
        _ => String::new(),
    };
    format!(
        "{} {:5} {:5} {:6} {} {path}{target}",
        crate::repo::tree::gomode::to_string(n.mode),
        n.uid,
        n.gid,
        n.size,
        super::show::time(&n.mtime),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_list_themselves_and_their_entries_or_all_below_them() {
        let d = vec!["/a/b".to_string()];
        assert_eq!(shown("/a", &d, false), (false, true), "on the way");
        assert_eq!(shown("/a/b", &d, false), (true, true));
        assert_eq!(shown("/a/b/c", &d, false), (true, false), "an entry");
        assert_eq!(shown("/a/b/c/d", &d, false), (false, false));
        assert_eq!(shown("/a/b/c/d", &d, true), (true, true));
        assert_eq!(
            shown("/a/bc", &d, true),
            (false, false),
            "not a prefix by name"
        );
        assert_eq!(
            shown("/x", &[], false),
            (true, true),
            "no folders: everything"
        );
        assert_eq!(shown("/x", &["/".to_string()], false), (true, false));
    }
}
