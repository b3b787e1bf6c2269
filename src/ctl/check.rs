//! `backupctl check`: verify the repository's structure and, with --read-data, all data.

use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Read every pack and re-hash every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only a subset of packs: `N%` (random), or `n/m` (the n-th of m groups).
    #[arg(long)]
    pub read_data_subset: Option<String>,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("check is not implemented yet".into()))
}
