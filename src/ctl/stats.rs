//! `backupctl stats`: sizes and counts.

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to count (default: all matching the filter).
    pub snapshots: Vec<String>,
    /// restore-size (files as restored), files-by-contents (unique files), raw-data (stored blobs).
    #[arg(long, default_value = "restore-size")]
    pub mode: String,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("stats is not implemented yet".into()))
}
