//! `backupctl restore`: restore a snapshot or a path in it into a directory.

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id (or prefix) or `latest`, optionally with `:PATH` to restore only that path.
    pub snapshot: String,
    /// Directory to restore into (created if missing).
    #[arg(short, long)]
    pub target: std::path::PathBuf,
    /// Restore only paths matching this pattern (repeatable).
    #[arg(short, long)]
    pub include: Vec<String>,
    /// Do not restore paths matching this pattern (repeatable).
    #[arg(short, long)]
    pub exclude: Vec<String>,
    /// Show what would be restored, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// When to replace an existing file: always, if-changed, if-newer, never.
    #[arg(long, default_value = "always")]
    pub overwrite: String,
    /// Delete files in the target that are not in the snapshot.
    #[arg(long)]
    pub delete: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("restore is not implemented yet".into()))
}
