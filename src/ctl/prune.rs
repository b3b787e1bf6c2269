//! `backupctl prune`: delete unreferenced data and repack partly used packs.

use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show what would be repacked and deleted; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Tolerate this share of unused data in packs before repacking them (percent).
    #[arg(long, default_value = "5")]
    pub max_unused: f64,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("prune is not implemented yet".into()))
}
