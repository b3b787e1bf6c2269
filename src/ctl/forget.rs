//! `backupctl forget`: remove snapshots by id or by a retention policy.

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::error::{Error, Result};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot ids to remove (instead of a policy).
    pub snapshots: Vec<String>,
    #[arg(long)]
    pub keep_last: Option<u32>,
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    #[arg(long)]
    pub keep_daily: Option<u32>,
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than this, relative to the newest (e.g. 2y5m7d3h).
    #[arg(long)]
    pub keep_within: Option<String>,
    /// Keep snapshots with this tag (repeatable).
    #[arg(long)]
    pub keep_tag: Vec<String>,
    /// Group snapshots by these fields: host, paths, tags, job (comma-separated; "" for one group).
    #[arg(long, default_value = "host,paths")]
    pub group_by: String,
    /// Show what would be kept and removed, and why; remove nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

pub fn run(_ctx: &Ctx, _a: Args) -> Result<i32> {
    Err(Error::Input("forget is not implemented yet".into()))
}
