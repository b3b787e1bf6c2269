//! `backupctl backup`: back up paths into a new snapshot.

use super::Ctx;
use crate::error::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Files and folders to back up.
    pub paths: Vec<PathBuf>,
    /// Add a tag to the snapshot (repeatable).
    #[arg(long)]
    pub tag: Vec<String>,
    /// Host name to record (default: this host's).
    #[arg(long)]
    pub host: Option<String>,
    /// Record the snapshot as made by this backupd job.
    #[arg(long)]
    pub job: Option<String>,
    /// Exclude paths matching this glob pattern (repeatable).
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Read exclude patterns from a file, one per line (repeatable).
    #[arg(long)]
    pub exclude_file: Vec<PathBuf>,
    /// Skip folders that contain a valid CACHEDIR.TAG.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Do not cross file-system boundaries.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Use this snapshot as the parent (default: the latest with the same host and paths).
    #[arg(long)]
    pub parent: Option<String>,
    /// Read every file again, even those unchanged since the parent.
    #[arg(long)]
    pub force: bool,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("backup is not implemented yet".into()))
}
