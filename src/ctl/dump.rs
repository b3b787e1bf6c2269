//! `backupctl dump SNAPSHOT PATH`: a file's content, or a folder as a tar or zip archive, on stdout or into a file (`--target`, written atomically) — restic's `dump`.

use super::snapshots::FilterArgs;
use super::{snapref, Ctx};
use crate::engine::dump::{write_archive, write_file, ArchiveFormat, DumpError};
use crate::engine::walk;
use crate::error::{exit, Error, Result};
use crate::repo::tree::Node;
use crate::repo::Repository;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshot id (or prefix) or `latest`.
    pub snapshot: String,
    /// The file or folder in the snapshot (`/` for all of it).
    pub path: String,
    /// The archive a folder is written as, tar or zip (a file is written as it is).
    #[arg(long, short = 'a', value_enum, default_value = "tar")]
    pub archive: Archive,
    /// Write into this file (atomically: complete or not at all) instead of stdout.
    #[arg(long, short = 't')]
    pub target: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum Archive {
    Tar,
    Zip,
}

impl Archive {
    fn format(self) -> ArchiveFormat {
        match self {
            Archive::Tar => ArchiveFormat::Tar,
            Archive::Zip => ArchiveFormat::Zip,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Archive::Tar => "tar",
            Archive::Zip => "zip",
        }
    }
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let (repo, _lock, id, snap) = snapref::open_one(ctx, &a.snapshot, &a.filter.filter())?;
    let node = walk::find_node(&repo, &snap.tree, &a.path)?.ok_or_else(|| {
        Error::Input(format!(
            "snapshot {} has no path {:?}\n  hint: `backupctl ls {}` lists its paths",
            id.short(),
            a.path,
            id.short()
        ))
    })?;
    let path = a.path.clone();
    match &a.target {
        None => {
            let mut out = std::io::stdout().lock();
            dump(&repo, &node, &path, a.archive, &mut out)
                .map_err(|e| failed(e, "standard output"))?;
        }
        Some(t) => {
            let mut inner = None;
            let r = crate::fsutil::atomic_write_with(t, |f| {
                dump(&repo, &node, &path, a.archive, f).map_err(|e| {
                    inner = Some(e);
                    std::io::Error::other("dump failed")
                })
            });
            if let Err(e) = r {
                let e = inner.unwrap_or(DumpError::Write(e));
                return Err(failed(e, &t.display().to_string()));
            }
            // With --target, stdout is free for a report (the dump itself is the file).
            if ctx.global.json {
                let kind = if node.is_dir() {
                    a.archive.name()
                } else {
                    "file"
                };
                ctx.print_json(&serde_json::json!({
                    "message_type": "dump",
                    "snapshot_id": id.to_hex(),
                    "path": path,
                    "target": t,
                    "format": kind,
                }));
            }
        }
    }
    Ok(exit::OK)
}

/// The node's content (a file) or its tree as tar (a folder); a symlink or special file has
/// no content to dump.
fn dump(
    repo: &Repository,
    n: &Node,
    path: &str,
    archive: Archive,
    out: &mut dyn Write,
) -> std::result::Result<(), DumpError> {
    if n.is_dir() {
        write_archive(repo, n, path, archive.format(), out)?;
        return Ok(());
    }
    if n.kind != crate::repo::tree::kind::FILE {
        return Err(DumpError::Read(Error::Input(format!(
            "{path} is a {} in the snapshot, not a file or folder: it has no content to dump",
            n.kind
        ))));
    }
    write_file(repo, path, n, out)?;
    Ok(())
}

/// The error of a failed dump: the repository's, or the output's. A closed stdout (`| head`)
/// ends quietly with exit 141, as every command's output does (`bin/backupctl.rs`).
fn failed(e: DumpError, to: &str) -> Error {
    match e {
        DumpError::Read(e) => e,
        DumpError::Write(w) if w.kind() == std::io::ErrorKind::BrokenPipe && to == "standard output" => {
            panic!("failed printing to stdout: {w}")
        }
        DumpError::Write(w) => Error::Input(format!(
            "cannot write the dump to {to}: {w}\n  hint: check the file or device it goes to (a full disk?)"
        )),
    }
}
