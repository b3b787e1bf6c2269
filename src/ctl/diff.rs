//! `backupctl diff`: what changed between two snapshots.

use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The older snapshot (id, prefix or `latest`).
    pub a: String,
    /// The newer snapshot.
    pub b: String,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("diff is not implemented yet".into()))
}
