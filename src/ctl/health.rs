//! `backupctl health`: one line of health per job, and an exit code for monitoring.

use super::client::{connect, daemon_error};
use super::Ctx;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::monitor::health::{self, JobHealth, Level, RepoFacts, TimerFacts};
use crate::protocol::{Request, Response, StatusReport};
use crate::state::{BadState, JobState, Loaded, StateStore};
use crate::verify::RepoStateStore;
use chrono::Utc;

/// `backupctl health`: one line per job, exit 0 healthy, 1 warning, 2 error (Nagios-style).
/// Without a daemon the state files are judged ([`offline_overall`]).
pub(crate) fn health(ctx: &Ctx) -> Result<i32> {
    let (jobs, overall) = match connect(&ctx.daemon(), Request::Status) {
        Ok(c) => match c.one()? {
            Response::Status(s) => of_status(&s),
            other => return Err(daemon_error(other)),
        },
        Err(e @ Error::NoDaemon { .. }) => {
            let cfg = ctx.daemon().config()?;
            let jobs = of_state_files(&cfg)?;
            let overall = offline_overall(&cfg, &jobs, &e);
            (jobs, overall)
        }
        Err(e) => return Err(e),
    };
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"level": overall.level, "health": overall, "jobs": jobs.iter().map(|(n, h)| serde_json::json!({"job": n, "health": h})).collect::<Vec<_>>()}));
    } else {
        print!("{}", text(&jobs, &overall));
    }
    Ok(overall.level.exit_code())
}

/// Every job's health and the overall health, as the daemon judged them.
fn of_status(s: &StatusReport) -> (Vec<(String, JobHealth)>, JobHealth) {
    let jobs: Vec<(String, JobHealth)> = s
        .jobs
        .iter()
        .map(|j| {
            (
                j.name.clone(),
                j.health.clone().unwrap_or_else(JobHealth::healthy),
            )
        })
        .collect();
    let overall = s.health.clone().unwrap_or_else(|| health::overall(&jobs));
    (jobs, overall)
}

/// The overall health when no daemon answers. In the OS-timer mode (the last backupd that held
/// the state folder was a `backupd run-due`) it is judged from the recorded runs and the
/// timer's ticks; otherwise "backupd is not running" (`down`'s first line) is an error.
pub(crate) fn offline_overall(
    cfg: &Config,
    jobs: &[(String, JobHealth)],
    down: &Error,
) -> JobHealth {
    let mut overall = health::overall(jobs);
    match crate::daemon::last_holder(&cfg.paths().state_dir) {
        Some(h) if h.mode == crate::daemon::Mode::OsTimer => {
            let tick = TimerFacts {
                last_tick: h.since,
                running: h.holding,
            };
            health::with_os_timer(overall, tick, Utc::now())
        }
        _ => {
            overall.level = Level::Error;
            let down = down.to_string();
            let line = down.lines().next().unwrap_or("backupd is not running");
            overall.reasons.insert(0, line.to_string());
            overall
        }
    }
}

/// Every job's health judged from the state files of the job and its repository.
pub(crate) fn of_state_files(cfg: &Config) -> Result<Vec<(String, JobHealth)>> {
    let paths = cfg.paths();
    let store = StateStore::at(&paths.state_dir);
    let repos = RepoStateStore::at(&paths.state_dir);
    let now = Utc::now();
    let mut jobs = Vec::new();
    for (name, job) in &cfg.jobs {
        let (st, bad) = match store.read(name, now)? {
            Loaded::Good(st) => (st, None),
            Loaded::Missing => (JobState::new(name, now), None),
            Loaded::Bad(bad) => (JobState::new(name, now), Some(bad)),
        };
        let rs = repos.peek(job.repository.get_ref());
        let failing = rs.as_ref().and_then(|r| r.failing());
        let facts = RepoFacts {
            last_check_failed: failing.as_deref(),
            repository_bytes: rs.as_ref().and_then(|r| r.size).map(|s| s.bytes),
            space: rs.as_ref().and_then(|r| r.size).and_then(|s| s.space),
        };
        let h = health::of_state(
            &st,
            &job.health,
            job.parsed_schedule.as_ref(),
            None,
            facts,
            now,
        );
        let problem = bad.as_ref().map(BadState::for_reader);
        jobs.push((
            name.clone(),
            health::with_state_problem(h, problem.as_deref()),
        ));
    }
    Ok(jobs)
}

/// The text form: one line per job (its first reason), then the overall level with the
/// number of reasons and every one of them.
fn text(jobs: &[(String, JobHealth)], overall: &JobHealth) -> String {
    let mut out = String::new();
    for (name, h) in jobs {
        out.push_str(&format!(
            "{name}: {}{}\n",
            h.level.as_str(),
            h.reasons
                .first()
                .map(|r| format!(" - {r}"))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!("overall: {}", overall.level.as_str()));
    match overall.reasons.len() {
        0 => {}
        1 => out.push_str(" (1 reason)"),
        n => out.push_str(&format!(" ({n} reasons)")),
    }
    out.push('\n');
    for r in &overall.reasons {
        out.push_str(&format!("  {r}\n"));
    }
    for n in &overall.notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(level: Level, reasons: &[&str]) -> JobHealth {
        JobHealth {
            level,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            ..JobHealth::healthy()
        }
    }

    #[test]
    fn the_reasons_counted_are_the_reasons_listed() {
        let jobs = vec![
            (
                "app".to_string(),
                with(
                    Level::Error,
                    &["the last 3 runs failed", "the repository is at 95 %"],
                ),
            ),
            (
                "db".to_string(),
                with(Level::Warning, &["the last run was partial"]),
            ),
            ("web".to_string(), JobHealth::healthy()),
        ];
        let mut overall = health::overall(&jobs);
        overall.reasons.insert(0, "backupd is not running".into());
        let text = text(&jobs, &overall);
        assert!(text.contains("\noverall: error (4 reasons)\n"), "{text}");
        let listed: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("overall:"))
            .skip(1)
            .collect();
        assert_eq!(
            listed,
            [
                "  backupd is not running",
                "  app: the last 3 runs failed",
                "  app: the repository is at 95 %",
                "  db: the last run was partial",
            ],
            "{text}"
        );
        assert!(
            text.starts_with("app: error - the last 3 runs failed\n"),
            "{text}"
        );
        assert!(text.contains("\nweb: healthy\n"), "{text}");
    }

    #[test]
    fn healthy_says_so_without_a_count() {
        let jobs = vec![("app".to_string(), JobHealth::healthy())];
        assert_eq!(
            text(&jobs, &health::overall(&jobs)),
            "app: healthy\noverall: healthy\n"
        );
    }
}
