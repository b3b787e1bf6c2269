//! `backupctl status|jobs|run|cancel|reload|history|logs`: the daemon's commands, sent over its control socket (status, history and logs also work from the files when no daemon runs).

use super::util::human_bytes;
use super::Ctx;
use crate::config::Config;
use crate::error::{exit, Error, Result};
use crate::logfiles::{self, LogFilter};
use crate::paths::DaemonPaths;
use crate::protocol::{Envelope, JobStatus, Request, Response, StatusReport};
use crate::record::RunRecord;
use crate::state::StateStore;
use chrono::{DateTime, Local, Utc};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

/// Where the daemon is: its configuration file, or its socket directly.
#[derive(clap::Args, Debug, Clone)]
pub struct Where {
    /// The daemon's configuration file (its `[daemon]` table names the socket, state and logs).
    #[arg(long, short = 'c', env = "BACKUPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// The daemon's control socket (overrides the configuration's).
    #[arg(long, env = "BACKUPD_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl Where {
    fn config(&self) -> Result<Config> {
        let p = self
            .config
            .clone()
            .unwrap_or_else(crate::paths::default_config);
        Config::load(&p)
    }

    fn socket(&self) -> PathBuf {
        if let Some(s) = &self.socket {
            return s.clone();
        }
        match self.config() {
            Ok(c) => c.paths().socket,
            // A configuration the daemon would reject (being edited, say) still names its
            // socket: read just the [daemon] table, so `status` can show the daemon's view.
            Err(_) => self
                .lenient_socket()
                .unwrap_or_else(crate::paths::default_socket),
        }
    }

    fn lenient_socket(&self) -> Option<PathBuf> {
        let p = self
            .config
            .clone()
            .unwrap_or_else(crate::paths::default_config);
        let v: toml::Table = std::fs::read_to_string(p).ok()?.parse().ok()?;
        let d = v.get("daemon")?.as_table()?;
        if let Some(s) = d.get("socket").and_then(|s| s.as_str()) {
            return Some(PathBuf::from(s));
        }
        let state = d.get("state_dir").and_then(|s| s.as_str())?;
        Some(PathBuf::from(state).join("backupd.sock"))
    }

    /// Paths from the configuration (for working without the daemon).
    fn paths(&self) -> Result<DaemonPaths> {
        Ok(self.config()?.paths())
    }
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub at: Where,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The job to run now.
    pub job: String,
    /// Follow the run to its end and exit with its outcome (0 success, 3 partial, 5 source failed, ...).
    #[arg(long, short = 'w')]
    pub wait: bool,
    #[command(flatten)]
    pub at: Where,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job.
    pub job: String,
    #[command(flatten)]
    pub at: Where,
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The job.
    pub job: String,
    /// How many runs (newest last).
    #[arg(long, short = 'n', default_value = "20")]
    pub limit: usize,
    #[command(flatten)]
    pub at: Where,
}

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Keep printing new lines as the daemon writes them (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only lines of this run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// How many lines to show first.
    #[arg(long, short = 'n', default_value = "50")]
    pub lines: usize,
    /// The log folder (default: the configuration's).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
    #[command(flatten)]
    pub at: Where,
}

/// The daemon's control channel: a Unix socket, or on Windows a named pipe (opened as a file).
#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Stream = std::fs::File;

/// Opens the control channel: the socket `sock`; on Windows the pipe it stands for
/// (`paths::pipe_name`), waiting a little while all its instances are busy.
fn open_stream(sock: &std::path::Path) -> std::io::Result<Stream> {
    #[cfg(unix)]
    {
        Stream::connect(sock)
    }
    #[cfg(windows)]
    {
        let name = crate::paths::pipe_name(sock);
        let mut tries = 0;
        loop {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&name)
            {
                Ok(f) => return Ok(f),
                // ERROR_PIPE_BUSY: every instance is serving a client; the daemon makes another.
                Err(e) if e.raw_os_error() == Some(231) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A connection to the daemon carrying one request.
struct Conn {
    lines: std::io::Lines<BufReader<Stream>>,
}

fn connect(at: &Where, req: Request) -> Result<Conn> {
    let sock = at.socket();
    #[cfg(unix)]
    let shown = sock.display().to_string();
    #[cfg(windows)]
    let shown = crate::paths::pipe_name(&sock);
    let no = |detail: String| Error::NoDaemon {
        socket: shown.clone(),
        detail,
    };
    let mut s = open_stream(&sock).map_err(|e| no(e.to_string()))?;
    let mut line = serde_json::to_string(&Envelope::new(req)).expect("request serializes");
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| no(e.to_string()))?;
    Ok(Conn {
        lines: BufReader::new(s).lines(),
    })
}

impl Conn {
    /// The next response; None at the end of the stream.
    fn next(&mut self) -> Result<Option<Response>> {
        match self.lines.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::Io {
                what: "read backupd's answer".into(),
                source: e,
            }),
            Some(Ok(l)) => serde_json::from_str(&l).map(Some).map_err(|e| {
                Error::Input(format!(
                    "backupd's answer could not be read ({e}): {l}\n  hint: backupctl and backupd are probably of different versions; use the ones that came together"
                ))
            }),
        }
    }

    fn one(mut self) -> Result<Response> {
        self.next()?.ok_or_else(|| {
            Error::Input(
                "backupd closed the connection without an answer\n  hint: see `backupctl logs`"
                    .into(),
            )
        })
    }
}

/// A daemon error response as the library's error.
fn daemon_error(resp: Response) -> Error {
    match resp {
        Response::Error { message, .. } => Error::Input(message),
        other => Error::Input(format!("unexpected answer from backupd: {other:?}")),
    }
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    match connect(&a.at, Request::Status) {
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
            let Ok(paths) = a.at.paths() else {
                return Err(e);
            };
            let cfg = a.at.config()?;
            let store = StateStore::at(&paths.state_dir);
            let mut jobs = Vec::new();
            for name in cfg.jobs.keys() {
                let st = store.load(name).ok().flatten();
                jobs.push(serde_json::json!({
                    "name": name,
                    "last_run": st.as_ref().and_then(|s| s.history.last().cloned()),
                    "last_success": st.as_ref().and_then(|s| s.last_success),
                    "consecutive_failures": st.as_ref().map(|s| s.consecutive_failures).unwrap_or(0),
                }));
            }
            if ctx.global.json {
                ctx.print_json(
                    &serde_json::json!({"daemon": null, "error": e.to_string(), "jobs": jobs}),
                );
            } else {
                eprintln!("error: {e}");
                println!("from the state files in {}:", paths.state_dir.display());
                for j in &jobs {
                    let last: Option<RunRecord> =
                        serde_json::from_value(j["last_run"].clone()).ok();
                    println!(
                        "  {:<16} last run: {}",
                        j["name"].as_str().unwrap_or(""),
                        last.as_ref()
                            .map(describe_run)
                            .unwrap_or_else(|| "never".into())
                    );
                }
            }
            Ok(exit::NO_DAEMON)
        }
        Err(e) => Err(e),
    }
}

/// `backupctl health`: one line per job, exit 0 healthy, 1 warning, 2 error (Nagios-style).
/// Without a daemon the state files are judged, and "backupd is not running" is an error.
pub fn health(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    use crate::monitor::health::{JobHealth, Level};
    let (jobs, overall): (Vec<(String, JobHealth)>, JobHealth) =
        match connect(&a.at, Request::Status) {
            Ok(c) => match c.one()? {
                Response::Status(s) => {
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
                    let overall = s
                        .health
                        .clone()
                        .unwrap_or_else(|| crate::monitor::health::overall(&jobs));
                    (jobs, overall)
                }
                other => return Err(daemon_error(other)),
            },
            Err(e @ Error::NoDaemon { .. }) => {
                let cfg = a.at.config()?;
                let paths = cfg.paths();
                let store = StateStore::at(&paths.state_dir);
                let repos = crate::verify::RepoStateStore::at(&paths.state_dir);
                let now = Utc::now();
                let mut jobs = Vec::new();
                for (name, job) in &cfg.jobs {
                    let sched = cfg.schedule_of(job)?;
                    let st = store
                        .load(name)?
                        .unwrap_or_else(|| crate::state::JobState::new(name, now));
                    let rs = repos.peek(job.repository.get_ref());
                    let failing = rs.as_ref().and_then(|r| r.failing());
                    let facts = crate::monitor::health::RepoFacts {
                        last_check_failed: failing.as_deref(),
                        repository_bytes: rs.as_ref().and_then(|r| r.size).map(|s| s.bytes),
                        space: rs.as_ref().and_then(|r| r.size).and_then(|s| s.space),
                    };
                    jobs.push((
                        name.clone(),
                        crate::monitor::health::of_state(
                            &st,
                            &job.health,
                            sched.as_ref(),
                            None,
                            facts,
                            now,
                        ),
                    ));
                }
                let mut overall = crate::monitor::health::overall(&jobs);
                overall.level = Level::Error;
                let down = e.to_string();
                overall.reasons.insert(
                    0,
                    down.lines()
                        .next()
                        .unwrap_or("backupd is not running")
                        .to_string(),
                );
                (jobs, overall)
            }
            Err(e) => return Err(e),
        };
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({"level": overall.level, "health": overall, "jobs": jobs.iter().map(|(n, h)| serde_json::json!({"job": n, "health": h})).collect::<Vec<_>>()}));
    } else {
        for (name, h) in &jobs {
            println!(
                "{name}: {}{}",
                h.level.as_str(),
                h.reasons
                    .first()
                    .map(|r| format!(" - {r}"))
                    .unwrap_or_default()
            );
        }
        println!(
            "overall: {}{}",
            overall.level.as_str(),
            if overall.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({} reason(s))", overall.reasons.len())
            }
        );
        if overall.level != Level::Healthy {
            if let Some(r) = overall.reasons.first() {
                println!("  {r}");
            }
        }
    }
    Ok(overall.level.exit_code())
}

pub fn jobs(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    let s = match connect(&a.at, Request::Status)?.one()? {
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
                j.schedule.as_deref().unwrap_or("(manual)"),
                j.timezone.as_deref().unwrap_or("-"),
                j.state,
                j.next_run
                    .as_ref()
                    .map(|n| local(n.at))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(exit::OK)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let mut c = connect(
        &a.at,
        Request::Run {
            job: a.job.clone(),
            wait: a.wait,
        },
    )?;
    let run_id = match c.next()? {
        Some(Response::Accepted { run_id, .. }) => run_id,
        Some(other) => return Err(daemon_error(other)),
        None => {
            return Err(Error::Input(
                "backupd closed the connection without an answer".into(),
            ))
        }
    };
    if !a.wait {
        if ctx.global.json {
            ctx.print_json(&serde_json::json!({"job": a.job, "run_id": run_id, "started": true}));
        } else {
            ctx.say(format!(
                "started job {} (run {run_id}); follow it with `backupctl logs -f --job {}`",
                a.job, a.job
            ));
        }
        return Ok(exit::OK);
    }
    ctx.say(format!("job {} running (run {run_id})", a.job));
    loop {
        match c.next()? {
            Some(Response::Event { message, .. }) => {
                if !ctx.global.json && !ctx.global.quiet {
                    eprintln!("  {message}");
                }
            }
            Some(Response::Finished(rec)) => {
                if ctx.global.json {
                    ctx.print_json(&rec);
                } else {
                    println!("{}", describe_run(&rec));
                    if let Some(e) = &rec.error {
                        eprintln!("error: {e}");
                    }
                }
                return Ok(rec.exit_code);
            }
            Some(other) => return Err(daemon_error(other)),
            None => {
                return Err(Error::Input(format!(
                    "backupd closed the connection before run {run_id} ended\n  hint: see `backupctl history {}` and `backupctl logs --run-id {run_id}`",
                    a.job
                )))
            }
        }
    }
}

pub fn cancel(ctx: &Ctx, a: JobArgs) -> Result<i32> {
    match connect(&a.at, Request::Cancel { job: a.job.clone() })?.one()? {
        Response::Cancelled { job, run_id } => {
            if ctx.global.json {
                ctx.print_json(
                    &serde_json::json!({"job": job, "run_id": run_id, "cancelled": true}),
                );
            } else {
                ctx.say(format!(
                    "asked run {run_id} of job {job} to stop at its next safe point"
                ));
            }
            Ok(exit::OK)
        }
        other => Err(daemon_error(other)),
    }
}

pub fn reload(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    match connect(&a.at, Request::Reload)?.one()? {
        Response::Reloaded { jobs } => {
            if ctx.global.json {
                ctx.print_json(&serde_json::json!({"reloaded": true, "jobs": jobs}));
            } else {
                ctx.say(format!(
                    "configuration reloaded: {} job(s): {}",
                    jobs.len(),
                    jobs.join(", ")
                ));
            }
            Ok(exit::OK)
        }
        other => Err(daemon_error(other)),
    }
}

pub fn history(ctx: &Ctx, a: HistoryArgs) -> Result<i32> {
    let runs = match connect(
        &a.at,
        Request::History {
            job: a.job.clone(),
            limit: a.limit,
        },
    ) {
        Ok(c) => match c.one()? {
            Response::History { runs, .. } => runs,
            other => return Err(daemon_error(other)),
        },
        Err(e @ Error::NoDaemon { .. }) => {
            let Ok(paths) = a.at.paths() else {
                return Err(e);
            };
            let st = StateStore::at(&paths.state_dir)
                .load(&a.job)?
                .ok_or_else(|| {
                    Error::Input(format!(
                        "job {:?} has no history in {} (backupd is not running)",
                        a.job,
                        paths.state_dir.display()
                    ))
                })?;
            let skip = st.history.len().saturating_sub(a.limit);
            st.history.into_iter().skip(skip).collect()
        }
        Err(e) => return Err(e),
    };
    if ctx.global.json {
        ctx.print_json(&runs);
    } else {
        for r in &runs {
            println!("{}", describe_run(r));
            if let Some(e) = &r.error {
                println!("    {}", e.lines().next().unwrap_or(""));
            }
        }
        if runs.is_empty() {
            println!("job {} has not run yet", a.job);
        }
    }
    Ok(exit::OK)
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<i32> {
    let dir = match &a.log_dir {
        Some(d) => d.clone(),
        None => {
            a.at.paths()
                .map(|p| p.log_dir)
                .unwrap_or_else(|_| crate::paths::default_log_dir())
        }
    };
    let filter = LogFilter {
        job: a.job.clone(),
        run_id: a.run_id.clone(),
    };
    for l in logfiles::tail(&dir, a.lines, &filter)? {
        println!("{l}");
    }
    if a.follow {
        let cancel = ctx.cancel.clone();
        logfiles::follow(&dir, &filter, &mut |l| println!("{l}"), &|| {
            cancel.is_cancelled()
        })?;
    }
    Ok(exit::OK)
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// One line for a run: `2026-12-01 02:30:04  success  12.3 s  snapshot 1a2b3c4d  scheduled ...`.
fn describe_run(r: &RunRecord) -> String {
    let mut s = format!(
        "{}  {:<11} {:>7.1} s  {}",
        local(r.start),
        r.outcome,
        r.duration_seconds,
        r.reason
    );
    if let Some(id) = &r.snapshot_id {
        s.push_str(&format!("  snapshot {}", &id[..8.min(id.len())]));
    }
    if let Some(b) = r.data_added {
        s.push_str(&format!("  added {}", human_bytes(b)));
    }
    if r.warnings > 0 {
        s.push_str(&format!("  {} warning(s)", r.warnings));
    }
    s
}

fn print_status(s: &StatusReport) {
    let d = &s.daemon;
    println!(
        "backupd {} (PID {}), up since {}; config {}",
        d.version,
        d.pid,
        local(d.started),
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
            crate::ctl::util::human_bytes(b),
            r.packs.unwrap_or(0),
            r.snapshots.unwrap_or(0),
            r.measured.map(local).unwrap_or_else(|| "-".into())
        );
    }
    if let (Some(free), Some(total)) = (r.free_bytes, r.capacity_bytes) {
        println!(
            "  storage       {} free of {} ({} %)",
            crate::ctl::util::human_bytes(free),
            crate::ctl::util::human_bytes(total),
            (u128::from(free) * 100 / u128::from(total.max(1))) as u64
        );
    }
    if let Some(c) = r.coverage {
        println!(
            "  coverage      {:.0} % of the packs re-read in the cycle since {}{}",
            c * 100.0,
            r.cycle_start.map(local).unwrap_or_else(|| "-".into()),
            r.last_complete_cycle
                .map(|t| format!("; last complete cycle ended {}", local(t)))
                .unwrap_or_default()
        );
    }
    for d in &r.drills {
        let last = match (d.last_ok, d.last_end) {
            (Some(true), Some(t)) => format!("passed {}", local(t)),
            (Some(false), Some(t)) => format!("FAILED {}", local(t)),
            _ => "never run".to_string(),
        };
        println!(
            "  {:<13} {}  [{}]{}{}",
            d.kind,
            d.schedule,
            if d.running { "running" } else { "idle" },
            format_args!(" last: {last}"),
            d.next
                .map(|t| format!("; next {}", local(t)))
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

fn print_job(j: &JobStatus) {
    println!(
        "\njob {}  [{}]  {} {}",
        j.name,
        j.state,
        j.schedule.as_deref().unwrap_or("(manual only)"),
        j.timezone
            .as_deref()
            .map(|t| format!("({t})"))
            .unwrap_or_default()
    );
    println!("  repository    {}", j.repository);
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
            r.started.map(local).unwrap_or_else(|| "-".into())
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
        j.last_success.map(local).unwrap_or_else(|| "never".into())
    );
    if j.consecutive_failures > 0 {
        println!("  failures      {} in a row", j.consecutive_failures);
    }
    if let Some(n) = &j.next_run {
        println!("  next run      {}: {}", local(n.at), n.reason);
    }
    for d in j.notifications.iter().filter(|d| !d.ok) {
        println!(
            "  notification  {} {} NOT DELIVERED ({}, {} attempt(s)): {}",
            local(d.time),
            d.event,
            d.channel,
            d.attempts,
            d.error.as_deref().unwrap_or("?")
        );
    }
}
