//! `backupctl run-job`: run a configured job once in the foreground (no daemon), record it in the job's history as the daemon would, and report it.
//!
//! A job with several repositories then runs each destination job (`JOB@REPO`) in turn, as
//! the daemon does after a run that saved a snapshot; each is recorded in its own history.

use super::util::human_bytes;
use super::Ctx;
use crate::error::Result;
use crate::job::{new_run_id, run_job};
use crate::record::Outcome;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The job's name (a `[jobs.NAME]` table of the configuration file).
    pub job: String,
    /// The run's id (given to hooks as BACKUPD_RUN_ID); a new one by default.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Why it runs (recorded in the report).
    #[arg(long, default_value = "manual")]
    pub reason: String,
}

/// Exit codes: 0 success, 3 partial snapshot, 5 a source or hook failed, otherwise the error's
/// code (10 no repository, 11 locked, 12 wrong password, 130 interrupted, 1 other failures).
/// With destinations: the backup's code when it failed, else the first failed destination's.
pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    let cfg = ctx.config()?;
    cfg.job(&a.job)?;
    let run_id = a.run_id.unwrap_or_else(|| new_run_id(&a.job));
    let rep = run_one(ctx, cfg, &a.job, &run_id, &a.reason);
    let mut code = rep.exit_code;
    let mut dests = Vec::new();
    if rep.snapshot_id.is_some() && !ctx.cancel.is_cancelled() {
        for dest in cfg.destinations_of(&a.job) {
            let why = format!("after run {run_id} of job {}", a.job);
            let d = run_one(ctx, cfg, dest, &new_run_id(dest), &why);
            if code == 0 {
                code = d.exit_code;
            }
            dests.push(d);
        }
    }
    if ctx.global.json {
        // One object: the backup's report, with its destinations' reports in `destinations`.
        let mut v = serde_json::to_value(&rep).expect("a report serializes");
        if !cfg.destinations_of(&a.job).is_empty() {
            v["destinations"] = serde_json::to_value(&dests).expect("reports serialize");
        }
        ctx.print_json(&v);
    }
    Ok(code)
}

/// Runs one job (a backup, or a destination job's copies), records and reports it.
fn run_one(
    ctx: &Ctx,
    cfg: &crate::config::Config,
    job: &str,
    run_id: &str,
    reason: &str,
) -> crate::job::JobReport {
    let progress = ctx.progress();
    let rep = run_job(cfg, job, run_id, reason, progress.as_ref(), &ctx.cancel);
    drop(progress);
    let cancelled = ctx.cancel.is_cancelled();
    if let crate::daemon::Recorded::No(why) =
        crate::daemon::record_foreground_run(cfg, &rep, cancelled)
    {
        ctx.warn(why);
    }
    if !ctx.global.json {
        say_copies(ctx, &rep);
        if let Some(s) = &rep.summary {
            ctx.say(format!(
                "Files:  {:>6} new, {:>6} changed, {:>6} unmodified",
                s.files_new, s.files_changed, s.files_unmodified
            ));
            ctx.say(format!(
                "Added to the repository: {} ({} stored)",
                human_bytes(s.data_added),
                human_bytes(s.data_added_packed)
            ));
        }
        for s in &rep.sources {
            if s.waits > 0 {
                ctx.say(format!(
                    "{} {}: waited {:.1}s ({} time(s) busy)",
                    s.kind,
                    s.path.display(),
                    s.waited_seconds,
                    s.waits
                ));
            }
        }
        if let (Some(id), None) = (&rep.snapshot_id, &rep.copied) {
            ctx.say(format!("snapshot {} saved", &id[..8]));
        }
        if let Some(p) = rep.retention.as_ref().and_then(|r| r.postponed.as_ref()) {
            ctx.say(format!(
                "retention postponed: {}",
                p.lines().next().unwrap_or("")
            ));
        } else if let Some(r) = &rep.retention {
            ctx.say(format!(
                "retention: kept {} snapshot(s), forgot {}{}",
                r.kept,
                r.removed.len(),
                r.prune
                    .as_ref()
                    .map(|p| format!(
                        "; prune deleted {} pack(s), repacked {}",
                        p.packs_deleted, p.packs_repacked
                    ))
                    .unwrap_or_default()
            ));
        }
        ctx.say(format!(
            "job {} run {}: {} in {:.1}s",
            rep.job,
            rep.run_id,
            rep.outcome.as_str(),
            rep.duration_seconds
        ));
    }
    if let Some(e) = &rep.error {
        eprintln!("error: {e}");
    }
    debug_assert!(rep.outcome != Outcome::Success || rep.exit_code == 0);
    rep
}

/// A destination job's copies, in words.
fn say_copies(ctx: &Ctx, rep: &crate::job::JobReport) {
    let Some(c) = &rep.copied else {
        return;
    };
    for (s, t) in &c.copied {
        ctx.say(format!(
            "snapshot {} copied to {} as {}",
            &s[..8],
            rep.repository,
            &t[..8]
        ));
    }
    ctx.say(format!(
        "copied {} snapshot(s) from {} ({}); {} already there",
        c.copied.len(),
        c.from,
        human_bytes(c.bytes_copied),
        c.skipped
    ));
}
