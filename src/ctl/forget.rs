//! `backupctl forget`: remove snapshots by id or by a retention policy (then optionally prune).

use super::snapref::{self, Latest};
use super::snapshots::FilterArgs;
use super::Ctx;
use crate::cancel::CancelToken;
use crate::engine::forget::{self, ForgetGroup, GroupBy, KeepPolicy, KeepWithin, Planned};
use crate::engine::prune::{self, PruneOptions, PruneReport};
use crate::error::{exit, Error, Result};
use crate::repo::backend::FileType;
use crate::repo::id::Id;
use crate::repo::open::{open_repository, LockMode};
use crate::repo::snapshot::SnapshotFilter;
use crate::repo::{Repository, Snapshots};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Snapshot ids to remove (instead of a policy).
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long)]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[arg(long)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long)]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot newer than this, relative to the newest (e.g. 2y5m7d3h).
    #[arg(long, value_parser = KeepWithin::parse)]
    pub keep_within: Option<KeepWithin>,
    /// Keep snapshots with this tag (repeatable; "a,b" needs both).
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
    /// With --prune: the tolerated unused share in percent (as `prune --max-unused`).
    #[arg(long, default_value = "5", requires = "prune")]
    pub max_unused: f64,
    #[command(flatten)]
    pub filter: FilterArgs,
}

impl Args {
    fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            tags: self.keep_tag.clone(),
        }
    }
}

#[derive(Serialize)]
struct Output<'a> {
    dry_run: bool,
    groups: &'a [ForgetGroup],
    /// Every snapshot removed (or, in a dry run, that would be).
    removed: &'a [Id],
    #[serde(skip_serializing_if = "Option::is_none")]
    prune: Option<&'a PruneReport>,
}

/// Forgets the snapshots given by id, or those the keep policy does not keep (per group), then
/// prunes with --prune. A dry run removes nothing and takes only a shared lock.
pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let policy = a.policy();
    let group_by = GroupBy::parse(&a.group_by).map_err(Error::Input)?;
    if a.snapshots.is_empty() {
        forget::check_policy(&policy)?;
    } else if !policy.is_empty() {
        return Err(Error::Input(
            "give snapshot ids or a keep policy, not both\n  hint: run forget twice".into(),
        ));
    }
    let mode = LockMode::exclusive_if(!a.dry_run);
    let (mut repo, lock) = open_repository(&ctx.repo_settings()?, mode)?;
    if !a.dry_run {
        // An append-only server refuses deletions: say so before changing anything.
        repo.backend().check_deletable()?;
    }
    let all = super::snapref::load(ctx, &repo)?;
    let (groups, remove) = select(&all, &a, &policy, &group_by)?;
    if !ctx.global.json {
        print_groups(ctx, &groups);
        if !a.snapshots.is_empty() {
            let verb = if a.dry_run {
                "would remove"
            } else {
                "removing"
            };
            for id in &remove {
                ctx.say(format!("{verb} snapshot {}", id.short()));
            }
        }
    }
    if !a.dry_run {
        remove_snapshots(&repo, &remove, &ctx.cancel)?;
    }
    ctx.say(format!(
        "{} {} snapshot(s)",
        if a.dry_run { "would remove" } else { "removed" },
        remove.len()
    ));
    let report = if a.prune {
        Some(prune_after(ctx, &mut repo, &a, &remove)?)
    } else {
        None
    };
    drop(lock);
    if ctx.global.json {
        ctx.print_json(&Output {
            dry_run: a.dry_run,
            groups: &groups,
            removed: &remove,
            prune: report.as_ref(),
        });
    }
    Ok(exit::OK)
}

/// What to remove, of the snapshots that match the filters: the ids given (each once, in the
/// order given), or what the policy does not keep in each group (with the groups, for output).
fn select(
    all: &Snapshots,
    a: &Args,
    policy: &KeepPolicy,
    group_by: &GroupBy,
) -> Result<(Vec<ForgetGroup>, Vec<Id>)> {
    let filter = a.filter.filter();
    if a.snapshots.is_empty() {
        let selected: Vec<_> = all
            .readable
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
        let groups = forget::plan(&selected, policy, group_by, chrono::Utc::now())?;
        let remove = groups
            .iter()
            .flat_map(|g| g.remove.iter().map(|p| p.id))
            .collect();
        return Ok((groups, remove));
    }
    let mut ids = Vec::new();
    for spec in &a.snapshots {
        let id = find_to_remove(all, spec, &filter)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok((Vec::new(), ids))
}

/// The snapshot `spec` names for removal: a readable one, or a damaged file named by its id
/// (removing it is the repair the warning about it suggests).
fn find_to_remove(all: &Snapshots, spec: &str, filter: &SnapshotFilter) -> Result<Id> {
    let latest = Latest::Refuse {
        hint: "name the snapshot to remove by its id",
    };
    match snapref::find(all, spec, filter, latest) {
        Ok((id, _)) => Ok(*id),
        Err(Error::SnapshotDamaged { id, .. }) if spec != "latest" => {
            Id::parse(&id).ok_or_else(|| Error::Input(format!("{id} is not a snapshot id")))
        }
        Err(Error::Input(m)) => Err(Error::Input(format!("{m}; nothing was removed"))),
        Err(e) => Err(e),
    }
}

/// Removes the snapshot files (one already gone is fine).
fn remove_snapshots(repo: &Repository, remove: &[Id], cancel: &CancelToken) -> Result<()> {
    for id in remove {
        cancel.check()?;
        match repo.backend().remove(FileType::Snapshot, &id.to_hex()) {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// --prune: a dry run prunes as if the snapshots were gone.
fn prune_after(ctx: &Ctx, repo: &mut Repository, a: &Args, remove: &[Id]) -> Result<PruneReport> {
    let opts = PruneOptions {
        max_unused: a.max_unused,
        dry_run: a.dry_run,
        assume_removed: if a.dry_run {
            remove.to_vec()
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    ctx.say(if a.dry_run {
        "prune (dry run, as if those snapshots were gone):"
    } else {
        "prune:"
    });
    let progress = ctx.progress();
    let r = prune::prune(repo, &opts, progress.as_ref(), &ctx.cancel)?;
    drop(progress);
    if !ctx.global.json {
        super::prune::print_report(ctx, &r);
    }
    Ok(r)
}

fn print_list(ctx: &Ctx, list: &[Planned], reasons: bool) {
    let w = super::show::TIME_WIDTH;
    ctx.say(format!(
        "  {:<8}  {:<w$}  {:<12}  {:<20}  {}paths",
        "ID",
        "time",
        "host",
        "tags",
        if reasons {
            format!("{:<32}  ", "reasons")
        } else {
            String::new()
        }
    ));
    for p in list {
        let s = &p.snapshot;
        ctx.say(format!(
            "  {:<8}  {:<w$}  {:<12}  {:<20}  {}{}",
            p.short_id,
            super::show::time(&s.time),
            s.hostname,
            s.tags.join(","),
            if reasons {
                format!("{:<32}  ", p.reasons.join(", "))
            } else {
                String::new()
            },
            s.paths.join(" ")
        ));
    }
}

fn print_groups(ctx: &Ctx, groups: &[ForgetGroup]) {
    for g in groups {
        ctx.say(format!("snapshots of {}:", g.key));
        ctx.say(format!("keep {} snapshot(s):", g.keep.len()));
        if !g.keep.is_empty() {
            print_list(ctx, &g.keep, true);
        }
        if !g.remove.is_empty() {
            ctx.say(format!("remove {} snapshot(s):", g.remove.len()));
            print_list(ctx, &g.remove, false);
        }
        ctx.say("");
    }
}
