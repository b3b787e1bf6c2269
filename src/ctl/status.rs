//! `backupctl status` and `backupctl jobs`: the daemon's view of every job and repository (status also works from the state files when no daemon runs).

use super::client::{connect, daemon_error, describe_run};
use super::show;
use super::util::human_bytes;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::protocol::{JobStatus, Request, Response, StatusReport};
use crate::record::RunRecord;
use crate::state::{JobState, Loaded, StateStore};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// `backupctl status`: the daemon, every job and every repository; without a daemon, what the
/// state files say, and exit 13 (0 in the OS-timer mode, which has no daemon by design).
pub(crate) fn status(ctx: &Ctx) -> Result<i32> {
    match connect(&ctx.daemon(), Request::Status) {
        Ok(c) => match c.one()? {
            Response::Status(s) => {
                if ctx.global.json {
                    ctx.print_json(&s);
                } else {
                    print_status(&s);
                }
                Ok(exit::OK)
            }
            other => Err(daemon_error(other)),
        },
        Err(e @ Error::NoDaemon { .. }) => {
            // Without a daemon: what its state files say.
            let Ok(paths) = ctx.daemon().paths() else {
                return Err(e);
            };
            let cfg = ctx.daemon().config()?;
            let store = StateStore::at(&paths.state_dir);
            let jobs: Vec<OfflineJob> = cfg
                .jobs
                .keys()
                .map(|name| OfflineJob::of(name, store.read(name, Utc::now())))
                .collect();
            let judged = super::health::of_state_files(&cfg).unwrap_or_default();
            let health = super::health::offline_overall(&cfg, &judged, &e);
            let timer = crate::daemon::last_holder(&paths.state_dir)
                .is_some_and(|h| h.mode == crate::daemon::Mode::OsTimer);
            if ctx.global.json {
                let error = (!timer).then(|| e.to_string());
                let mode = if timer { "os-timer" } else { "no-daemon" };
                ctx.print_json(
                    &serde_json::json!({"daemon": null, "mode": mode, "error": error, "health": health, "jobs": jobs}),
                );
            } else {
                match health.notes.first() {
                    Some(mode) if timer => println!("{mode}"),
                    _ => eprintln!("error: {e}"),
                }
                println!("health: {}", health.level.as_str());
                println!("from the state files in {}:", paths.state_dir.display());
                for j in &jobs {
                    println!(
                        "  {:<16} last run: {}",
                        j.name,
                        j.last_run
                            .as_ref()
                            .map(describe_run)
                            .unwrap_or_else(|| "never".into())
                    );
                    if let Some(p) = &j.state_problem {
                        println!("  {:<16} {p}", "");
                    }
                }
            }
            // The OS-timer mode has no daemon by design: that is no error.
            Ok(if timer { exit::OK } else { exit::NO_DAEMON })
        }
        Err(e) => Err(e),
    }
}

/// A job as its state file tells it, when no daemon runs.
#[derive(Serialize)]
struct OfflineJob {
    name: String,
    last_run: Option<RunRecord>,
    last_success: Option<DateTime<Utc>>,
    consecutive_failures: u32,
    /// Why the state file is not used (it is left as it is: only the daemon repairs it).
    state_problem: Option<String>,
}

impl OfflineJob {
    /// The job as its state file (read only) tells it.
    fn of(name: &str, read: Result<Loaded>) -> OfflineJob {
        let (st, state_problem) = match read {
            Ok(Loaded::Good(st)) => (Some(st), None),
            Ok(Loaded::Missing) => (None, None),
            Ok(Loaded::Bad(bad)) => (None, Some(bad.for_reader())),
            Err(e) => (None, Some(e.to_string())),
        };
        let st: Option<JobState> = st;
        OfflineJob {
            state_problem,
            name: name.to_string(),
            last_run: st.as_ref().and_then(|s| s.history.last().cloned()),
            last_success: st.as_ref().and_then(|s| s.last_success),
            consecutive_failures: st.as_ref().map_or(0, |s| s.consecutive_failures),
        }
    }
}

/// `backupctl jobs`: the daemon's jobs, their schedules and next runs.
pub(crate) fn jobs(ctx: &Ctx) -> Result<i32> {
    let s = match connect(&ctx.daemon(), Request::Status)?.one()? {
        Response::Status(s) => s,
        other => return Err(daemon_error(other)),
    };
    if ctx.global.json {
        ctx.print_json(&s.jobs);
    } else {
        println!(
            "{:<16} {:<20} {:<16} {:<14} next run",
            "job", "schedule", "timezone", "state"
        );
        for j in &s.jobs {
            println!(
                "{:<16} {:<20} {:<16} {:<14} {}",
                j.name,
                schedule_of(j, "(manual)"),
                j.timezone.as_deref().unwrap_or("-"),
                j.state,
                j.next_run
                    .as_ref()
                    .map(|n| show::time(&n.at))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(exit::OK)
}

fn print_status(s: &StatusReport) {
    let d = &s.daemon;
    println!(
        "backupd {} (PID {}), up since {}; config {}",
        d.version,
        d.pid,
        show::time(&d.started),
        d.config_file.display()
    );
    if let Some(h) = &s.health {
        println!("health: {}", h.level.as_str());
    }
    if let Some(e) = &d.config_error {
        println!("  CONFIGURATION ERROR (the previous configuration stays in force): {e}");
    }
    for j in &s.jobs {
        print_job(j);
    }
    for r in &s.repositories {
        print_repo(r);
    }
}

fn print_repo(r: &crate::protocol::RepoStatus) {
    println!("\nrepository {}  {}", r.name, r.location);
    if let Some(b) = r.size_bytes {
        println!(
            "  size          {} ({} packs, {} snapshots; measured {})",
            human_bytes(b),
            r.packs.unwrap_or(0),
            r.snapshots.unwrap_or(0),
            r.measured
                .map(|t| show::time(&t))
                .unwrap_or_else(|| "-".into())
        );
    }
    if let (Some(free), Some(total)) = (r.free_bytes, r.capacity_bytes) {
        println!(
            "  storage       {} free of {} ({} %)",
            human_bytes(free),
            human_bytes(total),
            (u128::from(free) * 100 / u128::from(total.max(1))) as u64
        );
    }
    if let Some(c) = r.coverage {
        println!(
            "  coverage      {:.0} % of the packs verified in the read-data cycle since {}{}",
            c * 100.0,
            r.cycle_start
                .map(|t| show::time(&t))
                .unwrap_or_else(|| "-".into()),
            r.last_complete_cycle
                .map(|t| format!("; last complete cycle ended {}", show::time(&t)))
                .unwrap_or_default()
        );
    }
    for d in &r.drills {
        let last = match (d.last_ok, d.last_end) {
            (Some(true), Some(t)) => format!("passed {}", show::time(&t)),
            (Some(false), Some(t)) => format!("FAILED {}", show::time(&t)),
            _ => "never run".to_string(),
        };
        println!(
            "  {:<13} {}  [{}]{}{}",
            d.kind,
            d.schedule,
            if d.running { "running" } else { "idle" },
            format_args!(" last: {last}"),
            d.next
                .map(|t| format!("; next {}", show::time(&t)))
                .unwrap_or_default()
        );
        if let Some(s) = &d.last_summary {
            println!("                {s}");
        }
        if let (Some(false), Some(e)) = (d.last_ok, &d.last_error) {
            println!("                error: {}", e.lines().next().unwrap_or(""));
        }
    }
}

/// A job's schedule in words: its cron expression, "(after JOB)" for a destination job
/// (`JOB@REPO`), else `manual`.
fn schedule_of(j: &JobStatus, manual: &str) -> String {
    match (
        &j.schedule,
        j.name.split_once(crate::config::destinations::SEPARATOR),
    ) {
        (Some(s), _) => s.clone(),
        (None, Some((job, _))) => format!("(after {job})"),
        (None, None) => manual.to_string(),
    }
}

fn print_job(j: &JobStatus) {
    println!(
        "\njob {}  [{}]  {} {}",
        j.name,
        j.state,
        schedule_of(j, "(manual only)"),
        j.timezone
            .as_deref()
            .map(|t| format!("({t})"))
            .unwrap_or_default()
    );
    println!("  repository    {}", j.repository);
    if let Some(p) = &j.state_problem {
        println!("  state file    {p}");
    }
    if let Some(h) = &j.health {
        println!("  health        {}", h.level.as_str());
        for r in &h.reasons {
            println!("                {r}");
        }
    }
    if let Some(st) = &j.stats {
        if let Some(rate) = st.success_rate {
            println!(
                "  success rate  {:.0} % of the last {} run(s){}",
                rate * 100.0,
                st.runs,
                st.mean_duration_seconds
                    .map(|d| format!(", {d:.1} s on average"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(r) = &j.running {
        let mut line = format!(
            "  running       {} since {}",
            r.run_id,
            r.started
                .map(|t| show::time(&t))
                .unwrap_or_else(|| "-".into())
        );
        if let Some(q) = &r.queued {
            line = format!("  queued        {} ({q})", r.run_id);
        }
        println!("{line}: {}", r.reason);
        if let Some(p) = &r.phase {
            let total = r.total.map(|t| format!(" of {t}")).unwrap_or_default();
            println!("  progress      {p}: {}{total}", r.done);
        }
        if let Some(n) = &r.note {
            println!("  last note     {n}");
        }
    }
    match &j.last_run {
        Some(r) => {
            println!("  last run      {}", describe_run(r));
            if let Some(e) = &r.error {
                println!("  last error    {}", e.lines().next().unwrap_or(""));
            }
        }
        None => println!("  last run      never"),
    }
    println!(
        "  last success  {}",
        j.last_success
            .map(|t| show::time(&t))
            .unwrap_or_else(|| "never".into())
    );
    if j.consecutive_failures > 0 {
        println!("  failures      {} in a row", j.consecutive_failures);
    }
    if let Some(n) = &j.next_run {
        println!("  next run      {}: {}", show::time(&n.at), n.reason);
    }
    for d in j.notifications.iter().filter(|d| !d.ok) {
        println!(
            "  notification  {} {} NOT DELIVERED ({}, {} attempt(s)): {}",
            show::time(&d.time),
            d.event,
            d.channel,
            d.attempts,
            d.error.as_deref().unwrap_or("?")
        );
    }
}
