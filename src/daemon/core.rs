//! The daemon's event loop: owns every job's state (repairing a damaged state file, refusing a newer backupd's), asks `schedule::decide` what is due, starts runs, records their ends (as `outcome` decides them), and answers the control socket's requests.
//!
//! One task owns all mutable state, so there are no locks around it: requests arrive as
//! [`Command`]s on a channel, run ends as [`RunDone`]s, and the loop sleeps on the wall clock
//! (`clock::WallSleeper`) until the earliest due time — no polling. Every change of a job's
//! state is written to disk before anything acts on it.

use super::clock::{WakeCause, WallSleeper};
use super::outcome::{self, Verdict};
use super::runner::{self, Limits, RunDone, RunProgress, RunSpec};
use crate::cancel::CancelToken;
use crate::config::notify::Event;
use crate::config::Config;
use crate::error::exit;
use crate::monitor::notifications::Notification;
use crate::paths::DaemonPaths;
use crate::protocol::{
    DaemonInfo, DeliveryInfo, ErrorKind, JobStatus, NextRun, Response, RunningInfo, StatusReport,
};
use crate::record::{Outcome, RunRecord};
use crate::schedule::{self, Decision, JobTiming, PendingRetry, RunReason, Schedule, Slot, Wake};
use crate::state::{JobState, Loaded, RunClaim, StateStore};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// How many of the newest runs the statistics in `status` cover.
const STATS_RUNS: usize = 20;

/// A request from the control socket (or a signal) to the event loop.
pub enum Command {
    Status(oneshot::Sender<StatusReport>),
    /// Start a manual run (retried after a failure with `retry`); the reply is Accepted (with
    /// an event stream) or an error.
    Run {
        job: String,
        retry: bool,
        reply: oneshot::Sender<Result<(Response, broadcast::Receiver<Response>), Response>>,
    },
    Cancel {
        job: String,
        reply: oneshot::Sender<Response>,
    },
    /// Read the configuration again (`None`: from a signal or the file watcher).
    Reload(Option<oneshot::Sender<Response>>),
    History {
        job: String,
        limit: usize,
        reply: oneshot::Sender<Response>,
    },
}

/// A run in progress.
struct Active {
    run_id: String,
    claim: RunClaim,
    cancel: CancelToken,
    /// Cancelled because the daemon is stopping (the run is resumed at the next start).
    stopping: bool,
    /// Cancelled by `backupctl cancel`.
    cancelled_by_user: bool,
    info: Arc<Mutex<RunningInfo>>,
    events: broadcast::Sender<Response>,
}

impl Active {
    /// The run of `claim`, starting now: not cancelled, with an empty progress record and its
    /// event stream (the receiver goes to a `run --wait` client).
    fn new(claim: RunClaim) -> (Active, broadcast::Receiver<Response>) {
        let (events, rx) = broadcast::channel(256);
        let info = Arc::new(Mutex::new(RunningInfo {
            run_id: claim.run_id.clone(),
            reason: claim.reason.describe(),
            ..Default::default()
        }));
        let active = Active {
            run_id: claim.run_id.clone(),
            claim,
            cancel: CancelToken::new(),
            stopping: false,
            cancelled_by_user: false,
            info,
            events,
        };
        (active, rx)
    }
}

struct Entry {
    state: JobState,
    schedule: Option<Schedule>,
    /// Why the loop is deciding for this job (Startup until its first decision after start).
    wake: Wake,
    active: Option<Active>,
    /// When nothing is due: the next wake-up and what it is for.
    next: Option<(DateTime<Utc>, String)>,
    /// The job left the configuration while running; dropped when the run ends.
    removed: bool,
    /// What was wrong with the job's state file at start-up and what was done (for `status`).
    state_problem: Option<String>,
    /// The state file is a newer backupd's: the job does not run and its file is not written.
    refused: bool,
    /// The newest notification deliveries, newest last.
    deliveries: Vec<DeliveryInfo>,
    /// A destination job whose job saved another snapshot while it was copying: it runs again
    /// when its run ends, for this reason.
    copy_again: Option<RunReason>,
}

/// Deliveries of one notification, reported back by its blocking thread.
pub struct Delivered {
    job: String,
    event: Event,
    deliveries: Vec<crate::monitor::notifications::Delivery>,
}

/// How many deliveries `status` shows per job.
const DELIVERIES_KEPT: usize = 10;

pub struct Daemon {
    config_path: PathBuf,
    config: Arc<Config>,
    config_error: Option<String>,
    paths: DaemonPaths,
    store: StateStore,
    jobs: BTreeMap<String, Entry>,
    limits: Limits,
    started: DateTime<Utc>,
    done_tx: mpsc::UnboundedSender<RunDone>,
    done_rx: mpsc::UnboundedReceiver<RunDone>,
    sent_tx: mpsc::UnboundedSender<Delivered>,
    sent_rx: mpsc::UnboundedReceiver<Delivered>,
    /// Every repository's verification drills and size.
    drills: super::drills::Drills,
    /// The newest metrics text, for the HTTP endpoint.
    metrics_text: super::metrics_http::MetricsText,
    /// `backupd run-due`: one pass, no start-up delay (every tick is a start).
    once: bool,
}

/// What one `backupd run-due` did.
#[derive(Debug, Default)]
pub struct RunDueOutcome {
    pub ran: usize,
    pub failed: usize,
    /// A stop signal came: the runs in progress were stopped and are resumed at the next tick.
    pub stopped: bool,
}

impl Daemon {
    /// Loads every job's state; runs the daemon stopped in the middle of are recorded as
    /// interrupted and queued for a retry.
    pub fn new(config_path: PathBuf, config: Config, paths: DaemonPaths) -> crate::Result<Daemon> {
        let store = StateStore::open(&paths.state_dir)?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (sent_tx, sent_rx) = mpsc::unbounded_channel();
        let mut d = Daemon {
            drills: super::drills::Drills::new(&paths.state_dir, &config),
            metrics_text: Default::default(),
            sent_tx,
            sent_rx,
            config_path,
            limits: Limits::new(config.daemon.max_parallel),
            config: Arc::new(config),
            config_error: None,
            paths,
            store,
            jobs: BTreeMap::new(),
            started: Utc::now(),
            done_tx,
            done_rx,
            once: false,
        };
        d.sync_jobs(Wake::Startup);
        Ok(d)
    }

    /// Makes `jobs` match the configuration: new jobs get their state (from disk, or fresh),
    /// jobs whose schedule changed are rebased, removed ones are dropped (after their run).
    fn sync_jobs(&mut self, wake: Wake) {
        let now = Utc::now();
        let cfg = self.config.clone();
        for (name, job) in &cfg.jobs {
            let sched = job.parsed_schedule.clone();
            match self.jobs.get_mut(name) {
                Some(e) => {
                    e.removed = false;
                    let (expr, tz) = schedule_key(sched.as_ref());
                    if e.state.schedule != expr || e.state.timezone != tz {
                        tracing::info!(job = %name, "the schedule changed from {:?} ({:?}) to {:?} ({:?}): slots are counted from now on", e.state.schedule, e.state.timezone, expr, tz);
                        rebase(&mut e.state, expr, tz, now);
                        self.save(name);
                    }
                    if let Some(e) = self.jobs.get_mut(name) {
                        e.schedule = sched;
                    }
                }
                None => self.add_job(name, sched, wake, now),
            }
        }
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|k| !cfg.jobs.contains_key(*k))
            .cloned()
            .collect();
        for name in gone {
            let e = self.jobs.get_mut(&name).expect("listed");
            if e.active.is_some() {
                e.removed = true;
            } else {
                tracing::info!(job = %name, "job removed from the configuration (its state file stays)");
                self.jobs.remove(&name);
            }
        }
    }

    /// A job the loop does not know yet: its state from disk (or fresh), rebased when its
    /// schedule changed while backupd was stopped, its lost run (if any) settled.
    fn add_job(&mut self, name: &str, sched: Option<Schedule>, wake: Wake, now: DateTime<Utc>) {
        let (mut state, state_problem, refused) = self.load_state(name, now);
        let (expr, tz) = schedule_key(sched.as_ref());
        if state.schedule != expr || state.timezone != tz {
            if state.schedule.is_some() {
                tracing::info!(job = %name, "the schedule changed from {:?} ({:?}) to {:?} ({:?}) while backupd was stopped: slots are counted from now on", state.schedule, state.timezone, expr, tz);
            }
            rebase(&mut state, expr, tz, now);
        }
        if let Some(claim) = state.running.clone() {
            // A run that was in progress when the daemon stopped (killed, crashed, power loss).
            let settled = outcome::settle_lost(&state, &claim, &self.policy_of(name), now);
            let error = settled.record.error.as_deref().unwrap_or_default();
            tracing::warn!(job = %state.job, run_id = %claim.run_id, "{error}; it runs again now");
            state = settled.state;
        }
        self.jobs.insert(
            name.to_string(),
            Entry {
                state,
                schedule: sched,
                wake,
                active: None,
                next: None,
                removed: false,
                deliveries: Vec::new(),
                copy_again: None,
                state_problem,
                refused,
            },
        );
        self.save(name);
    }

    /// The job's state from its file, with what was wrong with the file and whether the job is
    /// refused: a damaged or implausible file is moved aside and the job starts afresh; a
    /// newer backupd's file is left alone and the job does not run. Either is logged.
    fn load_state(&self, name: &str, now: DateTime<Utc>) -> (JobState, Option<String>, bool) {
        let fresh = JobState::new(name, now);
        let bad = match self.store.read(name, now) {
            Ok(Loaded::Good(s)) => return (s, None, false),
            Ok(Loaded::Missing) => return (fresh, None, false),
            Err(e) => {
                let msg = format!("{e}; the job starts with a fresh state");
                tracing::error!(job = %name, "{msg}");
                return (fresh, Some(msg), false);
            }
            Ok(Loaded::Bad(bad)) => bad,
        };
        let file = bad.path.display();
        if !bad.problem.is_damage() {
            let msg = format!(
                "the state file {file} is refused: {}; job {name:?} does not run and the file is left as it is\n  hint: {}",
                bad.problem,
                bad.hint()
            );
            tracing::error!(job = %name, "{msg}");
            return (fresh, Some(msg), true);
        }
        let msg = match self.store.move_aside(&bad, now) {
            Ok(aside) => format!(
                "the state file {file} is damaged: {}; it was moved to {} and the job starts with a fresh state (no catch-up for slots missed before now)",
                bad.problem,
                aside.display()
            ),
            Err(e) => format!(
                "the state file {file} is damaged: {}; it could not be moved aside ({e}) and is replaced by a fresh state",
                bad.problem
            ),
        };
        tracing::warn!(job = %name, "{msg}");
        (fresh, Some(msg), false)
    }

    fn save(&self, name: &str) {
        if let Some(e) = self.jobs.get(name).filter(|e| !e.refused) {
            if let Err(err) = self.store.save(&e.state) {
                tracing::error!(job = %name, "{err}");
            }
        }
    }

    /// The event loop; returns when `shutdown` fires, after the running jobs stopped (or the
    /// shutdown timeout passed).
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: broadcast::Receiver<()>,
    ) -> Result<(), String> {
        let mut sleeper = WallSleeper::new()
            .map_err(|e| format!("cannot set up the wall-clock timer: {e}; backupd stops"))?;
        tracing::info!(
            jobs = self.jobs.len(),
            "backupd {} started (state {}, socket {})",
            env!("CARGO_PKG_VERSION"),
            self.paths.state_dir.display(),
            self.paths.socket.display()
        );
        self.drills.measure_all(&self.config);
        if let Some(addr) = self.config.daemon.metrics_addr {
            // A port in use is logged and the daemon goes on without it.
            match super::metrics_http::serve(addr, self.metrics_text.clone()).await {
                Ok(a) => tracing::info!("metrics served at http://{a}/metrics"),
                Err(e) => tracing::error!("cannot serve the metrics on {addr}: {e}; backupd goes on without the endpoint\n  hint: choose a free port in [daemon] metrics_listen and restart backupd"),
            }
        }
        self.write_metrics();
        loop {
            let wake_at = self.plan();
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                Some(done) = self.done_rx.recv() => self.finish(done),
                Some(sent) = self.sent_rx.recv() => self.delivered(sent),
                Some(drill) = self.drills.rx.recv() => self.drill_done(drill),
                Some(cmd) = commands.recv() => self.handle(cmd),
                cause = sleeper.sleep_until(wake_at) => match cause {
                    WakeCause::Due => {}
                    WakeCause::ClockChanged { by_seconds } => {
                        tracing::warn!("the wall clock jumped by {by_seconds} s: checking every job for missed slots");
                        self.set_wake(Wake::ClockJump { by_seconds });
                    }
                    WakeCause::Resumed { slept_seconds } => {
                        tracing::info!("the system woke from sleep ({slept_seconds} s): checking every job for missed slots");
                        self.set_wake(Wake::Resume);
                    }
                },
            }
        }
        self.stop().await;
        Ok(())
    }

    /// `backupd run-due` (the OS-timer mode): the event loop's own planning, runs and records
    /// (same decisions, state files, catch-up rules and history), for what is due now and
    /// what falls due while those runs go on; then it waits for the notifications and returns.
    pub async fn run_due(mut self, mut shutdown: broadcast::Receiver<()>) -> RunDueOutcome {
        self.once = true;
        self.set_wake(Wake::Tick);
        let mut out = RunDueOutcome::default();
        loop {
            self.plan();
            if self.jobs.values().all(|e| e.active.is_none()) && !self.drills.any_active() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.recv() => {
                    out.stopped = true;
                    self.stop().await;
                    break;
                }
                Some(done) = self.done_rx.recv() => {
                    out.ran += 1;
                    if done.report.outcome == Outcome::Failed || done.report.error.is_some() {
                        out.failed += 1;
                    }
                    self.finish(done);
                }
                Some(sent) = self.sent_rx.recv() => self.delivered(sent),
                // Verification drills that are due run in the same pass.
                Some(drill) = self.drills.rx.recv() => self.drill_done(drill),
            }
        }
        // The channel closes when the last notification thread is done with its sender.
        drop(std::mem::replace(
            &mut self.sent_tx,
            mpsc::unbounded_channel().0,
        ));
        while let Some(sent) = self.sent_rx.recv().await {
            self.delivered(sent);
        }
        out
    }

    fn set_wake(&mut self, w: Wake) {
        for e in self.jobs.values_mut() {
            e.wake = w;
        }
    }

    /// Starts or skips what is due; returns the earliest next wake-up.
    fn plan(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let names: Vec<String> = self.jobs.keys().cloned().collect();
        let mut overdue_at = Vec::new();
        for name in &names {
            self.plan_job(name, now);
            if let Some(t) = self.check_overdue(name, now) {
                overdue_at.push(t);
            }
        }
        let drills_at = self.drills.plan(now, &self.config, &self.limits);
        self.jobs
            .values()
            .filter(|e| e.active.is_none())
            .filter_map(|e| e.next.as_ref().map(|n| n.0))
            .chain(overdue_at)
            .chain(drills_at)
            .min()
            .unwrap_or(now + chrono::Duration::days(366))
    }

    /// Acts on the job's decisions until one is not a skip: a sleep (the next wake-up), a run
    /// started, or a catch-up held back until the start-up delay has passed.
    fn plan_job(&mut self, name: &str, now: DateTime<Utc>) {
        let cfg = self.config.clone();
        let Some(job) = cfg.jobs.get(name) else {
            return;
        };
        let startup_until = startup_until(self.started, job.startup_delay, self.once);
        // Skips consume slots one decision at a time; a bounded loop guards against a bug.
        for _ in 0..1000 {
            let e = self.jobs.get_mut(name).expect("planned job exists");
            if e.refused {
                e.next = None;
                return;
            }
            if e.active.is_some() || e.removed {
                return;
            }
            let Some(decision) = decision_of(e, job, name, now) else {
                e.next = None;
                return;
            };
            match decision {
                Decision::Sleep { at, slot } => {
                    e.next = Some((at, sleep_reason(e.state.retry.as_ref(), slot)));
                    // Nothing was missed: the next wake-up is the timer's.
                    e.wake = Wake::Timer;
                    return;
                }
                Decision::Skip {
                    slot,
                    missed,
                    reason,
                } => {
                    tracing::warn!(job = %name, missed, "skipped {}: {reason}", slot.zoned_label());
                    e.state.last_slot = Some(slot);
                    e.state.retry = None;
                    e.wake = Wake::Timer;
                    let rec = skipped_record(name, &slot, missed, &reason, now);
                    e.state.push_history(rec, self.config.daemon.history_keep);
                    self.save(name);
                    self.write_metrics();
                }
                Decision::Run { slot, reason } => {
                    let is_catch_up =
                        matches!(reason, RunReason::CatchUp { .. } | RunReason::Retry { .. });
                    if is_catch_up && now < startup_until {
                        e.next = Some((
                            startup_until,
                            format!("{} (after the start-up delay)", reason.describe()),
                        ));
                        return;
                    }
                    self.start(name, slot, reason);
                    return;
                }
            }
        }
        tracing::error!(job = %name, "the scheduler skipped 1000 slots in one go; this is a bug, please report it");
    }

    /// Claims the slot on disk, then starts the run.
    fn start(
        &mut self,
        name: &str,
        slot: Option<Slot>,
        reason: RunReason,
    ) -> Option<(Response, broadcast::Receiver<Response>)> {
        let cfg = self.config.clone();
        let job = cfg.jobs.get(name)?;
        let run_id = crate::job::new_run_id(name);
        let e = self.jobs.get_mut(name)?;
        let claim = RunClaim {
            run_id: run_id.clone(),
            reason: reason.clone(),
            slot,
            started: Utc::now(),
        };
        claim_run(&mut e.state, &claim);
        e.wake = Wake::Timer;
        e.next = None;
        let (active, rx) = Active::new(claim);
        let spec = RunSpec {
            config: cfg.clone(),
            job: name.to_string(),
            run_id: run_id.clone(),
            reason: reason.describe(),
            repo_key: cfg.repository_of(job).path.expose().to_string(),
            cancel: active.cancel.clone(),
            progress: Arc::new(RunProgress {
                job: name.to_string(),
                run_id: run_id.clone(),
                info: active.info.clone(),
                events: active.events.clone(),
            }),
        };
        e.active = Some(active);
        self.save(name);
        tracing::info!(job = %name, run_id = %run_id, "starting run: {}", reason.describe());
        runner::spawn(spec, self.limits.clone(), self.done_tx.clone());
        let mut n = Notification::new(
            Event::Start,
            name,
            format!("{} started ({})", outcome::what(name), reason.describe()),
        );
        n.run_id = Some(run_id.clone());
        n.reason = Some(reason.describe());
        self.notify(name, n, false);
        Some((
            Response::Accepted {
                job: name.to_string(),
                run_id,
            },
            rx,
        ))
    }

    /// Records a run's end: [`outcome::settle`] decides the new state, the history record and
    /// the notifications; this only acts on them (log, state file, notifications, metrics).
    fn finish(&mut self, done: RunDone) {
        let now = Utc::now();
        let policy = self.policy_of(&done.job);
        let Some(e) = self.jobs.get_mut(&done.job) else {
            return;
        };
        let Some(active) = e.active.take() else {
            return;
        };
        if active.run_id != done.run_id {
            tracing::error!(job = %done.job, "a run ended that is not the job's current run ({} vs {})", done.run_id, active.run_id);
        }
        let run = outcome::FinishedRun {
            job: &done.job,
            run_id: &done.run_id,
            claim: &active.claim,
            report: &done.report,
            stopped: outcome::Stopped::of(active.cancelled_by_user, active.stopping),
        };
        let settled = outcome::settle(&e.state, &run, &policy, now);
        e.state = settled.state;
        // On disk before anyone hears of it: a client told "finished" (or a notification)
        // never sees a history that a crash right after would lose.
        self.save(&done.job);
        log_end(&done, &settled.record, &settled.verdict, &policy);
        let rec = settled.record;
        let _ = active
            .events
            .send(Response::Finished(Box::new(rec.clone())));
        for notice in settled.notices {
            let mut n = Notification::new(notice.event, &done.job, notice.message);
            n.run_id = Some(rec.run_id.clone());
            n.reason = Some(rec.reason.clone());
            n.outcome = Some(rec.outcome.to_string());
            n.snapshot_id = rec.snapshot_id.clone();
            n.error = rec.error.clone();
            self.notify(&done.job, n, true);
        }
        let Some(e) = self.jobs.get_mut(&done.job) else {
            return;
        };
        let removed = e.removed;
        if let Some(j) = self.config.jobs.get(&done.job) {
            // The run changed the repository: its size and coverage are measured again (the
            // metrics are written when the measurement comes back).
            let repo = j.repository.get_ref().clone();
            self.drills.measure(&repo, &self.config);
        }
        self.write_metrics();
        if removed {
            self.jobs.remove(&done.job);
            return;
        }
        self.start_destinations(&done.job, &rec);
        if let Some(reason) = self
            .jobs
            .get_mut(&done.job)
            .and_then(|e| e.copy_again.take())
        {
            self.start(&done.job, None, reason);
        }
    }

    /// After a run of `job` that saved a snapshot: each of its destination jobs copies it now,
    /// or, when it is copying already, once more after that. A destination never waits for
    /// another (each has its own repository).
    fn start_destinations(&mut self, job: &str, rec: &RunRecord) {
        if rec.snapshot_id.is_none() {
            return;
        }
        let cfg = self.config.clone();
        for dest in cfg.destinations_of(job) {
            let reason = RunReason::AfterBackup {
                job: job.to_string(),
                run_id: rec.run_id.clone(),
            };
            match self.jobs.get_mut(dest) {
                Some(e) if e.refused || e.removed => {}
                Some(e) if e.active.is_some() => e.copy_again = Some(reason),
                Some(_) => {
                    self.start(dest, None, reason);
                }
                None => {}
            }
        }
    }

    /// The job's retry policy and the history's length (the defaults for a job that left the
    /// configuration).
    fn policy_of(&self, job: &str) -> outcome::Policy {
        outcome::Policy {
            retries: self
                .config
                .jobs
                .get(job)
                .map(|j| j.retries.policy())
                .unwrap_or_default(),
            history_keep: self.config.daemon.history_keep,
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Run { job, retry, reply } => {
                let _ = reply.send(self.run_now(&job, retry));
            }
            Command::Cancel { job, reply } => {
                let _ = reply.send(self.cancel(&job));
            }
            Command::Reload(reply) => {
                let r = self.reload();
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
            Command::History { job, limit, reply } => {
                let _ = reply.send(self.history(&job, limit));
            }
        }
    }

    /// `backupctl run`: starts a manual run unless the job is unknown or already running.
    fn run_now(
        &mut self,
        job: &str,
        retry: bool,
    ) -> Result<(Response, broadcast::Receiver<Response>), Response> {
        match self.jobs.get(job) {
            None => Err(self.no_such_job(job)),
            Some(e) if e.removed => Err(self.no_such_job(job)),
            Some(Entry {
                refused: true,
                state_problem,
                ..
            }) => Err(Response::Error {
                kind: ErrorKind::Other,
                message: state_problem.clone().unwrap_or_default(),
            }),
            Some(Entry {
                active: Some(a), ..
            }) => Err(Response::Error {
                kind: ErrorKind::Busy,
                message: format!(
                    "job {job:?} is already running (run {}, {})\n  hint: wait for it with `backupctl status`, or stop it with `backupctl cancel {job}`",
                    a.run_id,
                    a.claim.reason.describe()
                ),
            }),
            Some(_) => self
                .start(job, None, RunReason::Manual { retry })
                .ok_or_else(|| self.no_such_job(job)),
        }
    }

    /// `backupctl cancel`: the run stops at its next safe point.
    fn cancel(&mut self, job: &str) -> Response {
        let known = self.jobs.contains_key(job);
        match self.jobs.get_mut(job).and_then(|e| e.active.as_mut()) {
            Some(a) => {
                a.cancelled_by_user = true;
                a.cancel.cancel();
                tracing::warn!(job = %job, run_id = %a.run_id, "cancel requested: the run stops at its next safe point");
                Response::Cancelled {
                    job: job.to_string(),
                    run_id: a.run_id.clone(),
                }
            }
            None if known => Response::Error {
                kind: ErrorKind::NotRunning,
                message: format!("job {job:?} is not running; nothing to cancel"),
            },
            None => self.no_such_job(job),
        }
    }

    /// `backupctl history`: the newest `limit` runs, oldest first.
    fn history(&self, job: &str, limit: usize) -> Response {
        match self.jobs.get(job) {
            Some(e) => {
                let h = &e.state.history;
                let skip = h.len().saturating_sub(limit);
                Response::History {
                    job: job.to_string(),
                    runs: h.iter().skip(skip).cloned().collect(),
                }
            }
            None => self.no_such_job(job),
        }
    }

    fn no_such_job(&self, job: &str) -> Response {
        let known: Vec<&str> = self.jobs.keys().map(|s| s.as_str()).collect();
        Response::Error {
            kind: ErrorKind::NoSuchJob,
            message: format!(
                "there is no job {job:?} in {} (jobs: {})",
                self.config_path.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        }
    }

    fn reload(&mut self) -> Response {
        match Config::load(&self.config_path) {
            Err(e) => {
                let msg = format!(
                    "the configuration was not reloaded; the previous one stays in force: {e}"
                );
                tracing::error!("{msg}");
                self.config_error = Some(e.to_string());
                Response::Error {
                    kind: ErrorKind::Config,
                    message: msg,
                }
            }
            Ok(cfg) => {
                if cfg.daemon.state_dir != self.config.daemon.state_dir
                    || cfg.daemon.socket != self.config.daemon.socket
                    || cfg.daemon.log_dir != self.config.daemon.log_dir
                {
                    tracing::warn!(
                        "state_dir, log_dir and socket changes take effect when backupd restarts"
                    );
                }
                if cfg.daemon.max_parallel != self.config.daemon.max_parallel {
                    self.limits = Limits::new(cfg.daemon.max_parallel);
                }
                self.config = Arc::new(cfg);
                self.config_error = None;
                self.sync_jobs(Wake::Timer);
                self.drills.sync(&self.config, Utc::now());
                let jobs: Vec<String> = self.jobs.keys().cloned().collect();
                tracing::info!(
                    "configuration reloaded from {}: jobs {}",
                    self.config_path.display(),
                    jobs.join(", ")
                );
                Response::Reloaded { jobs }
            }
        }
    }

    /// The answer to `backupctl status`: the daemon, every job, overall health, repositories.
    fn status(&self) -> StatusReport {
        let now = Utc::now();
        let jobs: Vec<JobStatus> = self
            .jobs
            .iter()
            .map(|(name, e)| self.job_status(name, e, now))
            .collect();
        let all: Vec<(String, crate::monitor::health::JobHealth)> = jobs
            .iter()
            .filter_map(|j| j.health.clone().map(|h| (j.name.clone(), h)))
            .collect();
        StatusReport {
            daemon: DaemonInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                protocol: crate::protocol::PROTOCOL_VERSION,
                pid: std::process::id(),
                started: self.started,
                config_file: self.config_path.clone(),
                config_error: self.config_error.clone(),
                state_dir: self.paths.state_dir.clone(),
                log_dir: Some(self.paths.log_dir.clone()),
                socket: self.paths.socket.clone(),
            },
            jobs,
            health: Some(crate::monitor::health::overall(&all)),
            repositories: self.drills.status(&self.config),
        }
    }

    /// One job's part of `status`.
    fn job_status(&self, name: &str, e: &Entry, now: DateTime<Utc>) -> JobStatus {
        let running = e
            .active
            .as_ref()
            .map(|a| a.info.lock().expect("run info").clone());
        let (schedule, timezone) = schedule_key(e.schedule.as_ref());
        JobStatus {
            name: name.to_string(),
            repository: self
                .config
                .jobs
                .get(name)
                .map(|j| self.config.repository_of(j).path.shown())
                .unwrap_or_default(),
            schedule,
            timezone,
            state: if e.refused {
                "refused".to_string()
            } else {
                run_state(running.as_ref(), e.state.retry.is_some()).to_string()
            },
            running,
            last_run: e.state.history.last().cloned(),
            last_success: e.state.last_success,
            last_snapshot: e.state.last_snapshot.clone(),
            consecutive_failures: e.state.consecutive_failures,
            next_run: e
                .next
                .as_ref()
                .filter(|_| e.active.is_none())
                .map(|(at, reason)| NextRun {
                    at: *at,
                    reason: reason.clone(),
                }),
            health: Some(self.health_of(name, e, now)),
            notifications: e.deliveries.clone(),
            state_problem: e.state_problem.clone(),
            stats: Some(crate::monitor::health::run_stats(
                &e.state.history,
                STATS_RUNS,
            )),
        }
    }

    /// Sends an `overdue` notification once per overdue episode (also right after a start that
    /// finds the job was down too long); returns when it should look again.
    fn check_overdue(&mut self, name: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let e = self.jobs.get(name)?;
        let sched = e.schedule.as_ref()?;
        let job = self.config.jobs.get(name)?;
        let h = self.health_of(name, e, now);
        match h.overdue_since {
            Some(since) if e.state.overdue_notified != Some(since) => {
                let why = h
                    .reasons
                    .iter()
                    .find(|r| r.contains("slot"))
                    .cloned()
                    .unwrap_or_else(|| format!("{} slot(s) missed", h.missed_slots));
                let last = match e.state.last_success {
                    Some(t) => format!(
                        "the last success was {} ({} h ago)",
                        t.format("%Y-%m-%d %H:%M UTC"),
                        (now - t).num_hours()
                    ),
                    None => "it never succeeded".to_string(),
                };
                let n = Notification::new(
                    Event::Overdue,
                    name,
                    format!("job {name} is overdue: {why}; {last}"),
                );
                tracing::warn!(job = %name, "job {name} is overdue: {why}; {last}");
                if let Some(e) = self.jobs.get_mut(name) {
                    e.state.overdue_notified = Some(since);
                }
                self.save(name);
                self.notify(name, n, false);
                None
            }
            Some(_) => None,
            None => {
                // Not overdue: the first slot after the last success, plus the grace.
                let from = e
                    .state
                    .last_success
                    .unwrap_or(e.state.baseline)
                    .max(e.state.baseline);
                let slot = sched.next_after(from)?;
                let grace = chrono::Duration::from_std(job.health.grace_for(sched, now)).ok()?;
                let at = slot.at + grace + chrono::Duration::seconds(1);
                (at > now).then_some(at)
            }
        }
    }

    /// Sends a notification on a blocking thread (a slow or dead endpoint never delays a run);
    /// the deliveries come back to the loop. With `tail`, the run's log lines go with it.
    fn notify(&self, name: &str, mut n: Notification, tail: bool) {
        let Some(cfg) = self
            .config
            .jobs
            .get(name)
            .and_then(|j| self.config.notify_of(j))
        else {
            return;
        };
        if !cfg.wants(n.event) {
            return;
        }
        let cfg = cfg.clone();
        let log_dir = self.paths.log_dir.clone();
        let tx = self.sent_tx.clone();
        tokio::task::spawn_blocking(move || {
            if let (true, Some(run_id)) = (tail, n.run_id.clone()) {
                let filter = crate::logfiles::LogFilter {
                    job: None,
                    run_id: Some(run_id),
                };
                n.log_tail = crate::logfiles::tail(
                    &log_dir,
                    crate::monitor::notifications::LOG_TAIL_LINES,
                    &filter,
                )
                .unwrap_or_default();
            }
            let deliveries = crate::monitor::notifications::send(&cfg, &n);
            let _ = tx.send(Delivered {
                job: n.job.clone(),
                event: n.event,
                deliveries,
            });
        });
    }

    fn delivered(&mut self, d: Delivered) {
        let Some(e) = self.jobs.get_mut(&d.job) else {
            return;
        };
        for x in d.deliveries {
            if x.ok {
                tracing::info!(job = %d.job, "notification {} sent: {} ({} attempt(s))", d.event, x.channel, x.attempts);
            } else {
                tracing::warn!(job = %d.job, "notification {} could not be delivered: {} after {} attempt(s): {}", d.event, x.channel, x.attempts, x.error.as_deref().unwrap_or("?"));
            }
            e.deliveries.push(DeliveryInfo {
                time: Utc::now(),
                event: d.event.to_string(),
                channel: x.channel,
                ok: x.ok,
                attempts: x.attempts,
                error: x.error,
            });
        }
        let excess = e.deliveries.len().saturating_sub(DELIVERIES_KEPT);
        e.deliveries.drain(..excess);
    }

    /// A job's health now.
    fn health_of(
        &self,
        name: &str,
        e: &Entry,
        now: DateTime<Utc>,
    ) -> crate::monitor::health::JobHealth {
        let default = crate::config::health::HealthConfig::default();
        let cfg = self.config.jobs.get(name).map_or(&default, |j| &j.health);
        let running = e.active.as_ref().map(|a| a.claim.started);
        let (failing, bytes, space) = match self.config.jobs.get(name) {
            Some(j) => self.drills.facts(j.repository.get_ref()),
            None => (None, None, None),
        };
        let repo = crate::monitor::health::RepoFacts {
            last_check_failed: failing.as_deref(),
            repository_bytes: bytes,
            space,
        };
        let h = crate::monitor::health::of_state(
            &e.state,
            cfg,
            e.schedule.as_ref(),
            running,
            repo,
            now,
        );
        // A refused job does not run until its state file is dealt with.
        let refused = e.state_problem.as_deref().filter(|_| e.refused);
        crate::monitor::health::with_state_problem(h, refused)
    }

    /// A drill or a measurement ended: a failed drill (or the first pass after one) is
    /// notified to every job on the repository, as a failure (or recovery) of that job.
    fn drill_done(&mut self, d: super::drills::DrillDone) {
        if let Some(t) = self.drills.finished(d, &self.config) {
            let jobs: Vec<String> = self
                .config
                .jobs
                .iter()
                .filter(|(_, j)| j.repository.get_ref() == &t.repo)
                .map(|(n, _)| n.clone())
                .collect();
            for job in jobs {
                let ev = if t.failed {
                    Event::Failure
                } else {
                    Event::Recovered
                };
                let mut n = Notification::new(ev, &job, t.message.clone());
                n.reason = Some(format!("verification drill: {}", t.kind.as_str()));
                let outcome = if t.failed {
                    Outcome::Failed
                } else {
                    Outcome::Success
                };
                n.outcome = Some(outcome.to_string());
                if t.failed {
                    n.error = Some(t.message.clone());
                }
                self.notify(&job, n, false);
            }
        }
        self.write_metrics();
    }

    /// Rewrites the metrics file, when one is configured (on a blocking thread: it fsyncs).
    fn write_metrics(&self) {
        let path = self.config.daemon.metrics_file.clone();
        if path.is_none() && self.config.daemon.metrics_addr.is_none() {
            return;
        }
        let now = Utc::now();
        let jobs = self
            .jobs
            .iter()
            .map(|(name, e)| self.job_metrics(name, e, now))
            .collect();
        let m = crate::monitor::metrics::Metrics {
            jobs,
            repositories: self.drills.metrics(&self.config),
            daemon_start: self.started,
            generated: now,
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        *self.metrics_text.lock().expect("metrics text") = crate::monitor::metrics::render(&m);
        let Some(path) = path else { return };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::monitor::metrics::write_textfile(&path, &m) {
                tracing::error!("{e}");
            }
        });
    }

    /// One job's part of the metrics.
    fn job_metrics(
        &self,
        name: &str,
        e: &Entry,
        now: DateTime<Utc>,
    ) -> crate::monitor::metrics::JobMetrics {
        let last = e
            .state
            .history
            .iter()
            .rev()
            .find(|r| r.outcome != Outcome::Skipped);
        let health = self.health_of(name, e, now);
        crate::monitor::metrics::JobMetrics {
            job: name.to_string(),
            repository: self
                .config
                .jobs
                .get(name)
                .map(|j| self.config.repository_of(j).path.shown())
                .unwrap_or_default(),
            last_success: e.state.last_success,
            last_run_end: last.map(|r| r.end),
            last_duration_seconds: last.map(|r| r.duration_seconds),
            last_outcome: last.map(|r| r.outcome.clone()),
            last_data_added: last.and_then(|r| r.data_added),
            last_bytes_processed: last.and_then(|r| r.bytes_processed),
            last_files_new: last.and_then(|r| r.files_new),
            consecutive_failures: e.state.consecutive_failures,
            health: health.level,
            running: e.active.is_some(),
            missed_slots: health.missed_slots,
        }
    }

    /// Cancels every run at its next safe point and waits for them (at most the shutdown
    /// timeout); their ends are recorded, so they run again at the next start.
    async fn stop(&mut self) {
        let running: Vec<String> = self
            .jobs
            .iter_mut()
            .filter_map(|(name, e)| {
                e.active.as_mut().map(|a| {
                    a.stopping = true;
                    a.cancel.cancel();
                    name.clone()
                })
            })
            .collect();
        let drilling = self.drills.cancel_all();
        if running.is_empty() && !drilling {
            tracing::info!("backupd stopped (no run was in progress)");
            return;
        }
        let timeout = self.config.daemon.shutdown_timeout;
        tracing::info!(
            "stopping: asked {} to stop at a safe point (waiting up to {:?})",
            running.join(", "),
            timeout
        );
        let deadline = tokio::time::Instant::now() + timeout;
        while self.jobs.values().any(|e| e.active.is_some()) || self.drills.any_active() {
            let next = async {
                tokio::select! {
                    Some(done) = self.done_rx.recv() => Some(Ok(done)),
                    Some(drill) = self.drills.rx.recv() => Some(Err(drill)),
                    else => None,
                }
            };
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(Ok(done))) => self.finish(done),
                Ok(Some(Err(drill))) => {
                    let _ = self.drills.finished(drill, &self.config);
                }
                Ok(None) => break,
                Err(_) => {
                    let left: Vec<&str> = self
                        .jobs
                        .iter()
                        .filter(|(_, e)| e.active.is_some())
                        .map(|(n, _)| n.as_str())
                        .collect();
                    tracing::error!("still running after the shutdown timeout ({timeout:?}): {}; backupd exits anyway, and they run again at the next start (the repository stays consistent: nothing half-written is visible)", left.join(", "));
                    break;
                }
            }
        }
        tracing::info!("backupd stopped");
    }
}

/// Writes the run's claim into the job's state: the slot it serves is taken, and a regular
/// slot supersedes a pending retry (a retry consumes it); a manual run leaves it pending.
fn claim_run(state: &mut JobState, claim: &RunClaim) {
    if claim.slot.is_some() {
        state.last_slot = claim.slot;
    }
    if !matches!(claim.reason, RunReason::Manual { .. }) {
        state.retry = None;
    }
    state.running = Some(claim.clone());
}

/// A job's state word in `status`: its run (when it has one) is queued or running; else a
/// retry is pending or it is idle.
fn run_state(running: Option<&RunningInfo>, retry_pending: bool) -> &'static str {
    match (running, retry_pending) {
        (Some(r), _) if r.queued.is_some() => "queued",
        (Some(_), _) => "running",
        (None, true) => "retry-pending",
        (None, false) => "idle",
    }
}

/// The schedule's expression and zone, as the state file keeps them.
fn schedule_key(sched: Option<&Schedule>) -> (Option<String>, Option<String>) {
    (
        sched.map(|s| s.expr().to_string()),
        sched.map(|s| s.tz_name().to_string()),
    )
}

/// A new schedule (or zone): slots are counted from `now` on.
fn rebase(state: &mut JobState, expr: Option<String>, tz: Option<String>, now: DateTime<Utc>) {
    state.schedule = expr;
    state.timezone = tz;
    state.baseline = now;
}

/// Until when catch-ups and retries wait after the start (`run-due`: not at all).
fn startup_until(started: DateTime<Utc>, delay: std::time::Duration, once: bool) -> DateTime<Utc> {
    match once {
        true => started,
        false => started + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero()),
    }
}

/// What the job does now: the scheduler's decision, or for a job without a schedule its
/// pending retry (None: nothing is pending).
fn decision_of(
    e: &Entry,
    job: &crate::config::JobConfig,
    name: &str,
    now: DateTime<Utc>,
) -> Option<Decision> {
    let Some(sched) = &e.schedule else {
        return unscheduled_decision(e.state.retry.as_ref(), now);
    };
    let timing = JobTiming {
        schedule: sched,
        catch_up: &job.catch_up,
        jitter: job.jitter,
        job: name,
    };
    let st = schedule::ScheduleState {
        last_slot: e.state.last_slot,
        baseline: e.state.baseline,
        retry: e.state.retry.clone(),
    };
    Some(schedule::decide(&timing, &st, now, &e.wake))
}

/// A job without a schedule runs only its pending retry, when it is due.
fn unscheduled_decision(retry: Option<&PendingRetry>, now: DateTime<Utc>) -> Option<Decision> {
    retry.map(|r| match r.due <= now {
        true => Decision::Run {
            slot: None,
            reason: retry_reason(r),
        },
        false => Decision::Sleep {
            at: r.due,
            slot: None,
        },
    })
}

/// What the next wake-up is for: the pending retry when it comes first, else the slot.
fn sleep_reason(retry: Option<&PendingRetry>, slot: Option<Slot>) -> String {
    match (retry, slot) {
        (Some(r), _) if slot.is_none_or(|s| r.due <= s.at) => retry_reason(r).describe(),
        (_, Some(s)) => RunReason::Scheduled { slot: s }.describe(),
        _ => "scheduled".to_string(),
    }
}

/// Logs a run's end the way its verdict went, in the run's span like its other lines (the
/// text log writes an event's own fields after the last line of its message, so a multi-line
/// error would have them only on its last line, where `logs --run-id` cannot see the first).
fn log_end(done: &RunDone, rec: &RunRecord, verdict: &Verdict, policy: &outcome::Policy) {
    let span = tracing::info_span!("run", job = %done.job, run_id = %done.run_id);
    let _in_run = span.enter();
    match end_line(&done.job, rec, verdict, policy.retries.attempts) {
        (tracing::Level::INFO, line) => tracing::info!("{line}"),
        (tracing::Level::WARN, line) => tracing::warn!("{line}"),
        (_, line) => tracing::error!("{line}"),
    }
}

/// The log line of a run's end and its level: the outcome named as the history records it
/// (`rec.outcome`: a run stopped by SIGTERM is `interrupted` here as there), then why it ran,
/// the error and what follows.
fn end_line(
    job: &str,
    rec: &RunRecord,
    verdict: &Verdict,
    attempts: u32,
) -> (tracing::Level, String) {
    let (outcome, reason) = (&rec.outcome, &rec.reason);
    let err = rec.error.as_deref().unwrap_or("failed");
    match verdict {
        Verdict::Succeeded => {
            let snapshot = rec
                .snapshot_id
                .as_deref()
                .map(|s| format!(", snapshot {}", &s[..8.min(s.len())]))
                .unwrap_or_default();
            let secs = rec.duration_seconds;
            (
                tracing::Level::INFO,
                format!("run {outcome}: {reason} in {secs:.1} s{snapshot}"),
            )
        }
        Verdict::CancelledByUser => (
            tracing::Level::WARN,
            format!("run {outcome} ({reason}) after `backupctl cancel`; no retry"),
        ),
        Verdict::NotRetried => (
            tracing::Level::ERROR,
            format!("job {job}: run {outcome} ({reason}): {err}\n  a manual run is not retried: fix the cause and run it again (`backupctl run {job} --wait`)"),
        ),
        Verdict::Resumes => (
            tracing::Level::WARN,
            format!("run {outcome} ({reason}) because backupd is stopping; it runs again at the next start"),
        ),
        Verdict::Retry(r) => (
            tracing::Level::ERROR,
            format!(
                "job {job}: run {outcome} ({reason}): {err}\n  retry {} of {} at {}",
                r.number,
                r.of,
                r.due.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        ),
        Verdict::GaveUp => (
            tracing::Level::ERROR,
            format!("job {job}: run {outcome} ({reason}): {err}\n  no retries left ({attempts} configured); the next regular slot runs as scheduled"),
        ),
    }
}

fn retry_reason(r: &PendingRetry) -> RunReason {
    RunReason::Retry {
        number: r.number,
        of: r.of,
        slot: r.slot,
        last_error: r.last_error.clone(),
    }
}

fn skipped_record(
    job: &str,
    slot: &Slot,
    missed: usize,
    reason: &str,
    now: DateTime<Utc>,
) -> RunRecord {
    RunRecord {
        slot: Some(slot.label()),
        missed,
        ..RunRecord::new(
            &format!("{job}-skipped-{}", slot.wall.format("%Y%m%dT%H%M%S")),
            job,
            reason.to_string(),
            now,
            Outcome::Skipped,
            exit::OK,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    #[test]
    fn a_runs_end_is_logged_with_the_outcome_its_record_has() {
        let rec = |outcome: Outcome| RunRecord {
            error: Some("interrupted: stopped at a safe point".into()),
            ..RunRecord::new("r1", "slow", "manual".into(), t(2, 30), outcome, 130)
        };
        let resumes = end_line("slow", &rec(Outcome::Interrupted), &Verdict::Resumes, 3);
        assert_eq!(resumes.0, tracing::Level::WARN);
        assert!(
            resumes
                .1
                .starts_with("run interrupted (manual) because backupd is stopping"),
            "{}",
            resumes.1
        );
        let cancelled = end_line(
            "slow",
            &rec(Outcome::Cancelled),
            &Verdict::CancelledByUser,
            3,
        );
        assert!(
            cancelled.1.starts_with("run cancelled (manual)"),
            "{}",
            cancelled.1
        );
        let gave_up = end_line("slow", &rec(Outcome::Failed), &Verdict::GaveUp, 0);
        assert_eq!(gave_up.0, tracing::Level::ERROR);
        assert!(
            gave_up
                .1
                .starts_with("job slow: run failed (manual): interrupted"),
            "{}",
            gave_up.1
        );
        // Whatever the verdict, the word is the record's.
        for (outcome, verdict) in [
            (Outcome::Failed, Verdict::Resumes),
            (Outcome::Interrupted, Verdict::GaveUp),
            (Outcome::Partial, Verdict::Succeeded),
        ] {
            let line = end_line("slow", &rec(outcome.clone()), &verdict, 1).1;
            assert!(
                line.contains(&format!("run {outcome} ("))
                    || line.contains(&format!("run {outcome}: ")),
                "{line}"
            );
        }
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
    }

    fn slot(h: u32, m: u32) -> Slot {
        Slot {
            wall: NaiveDate::from_ymd_opt(2026, 3, 1)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap(),
            at: t(h, m),
            zone: None,
        }
    }

    fn retry(due: DateTime<Utc>, slot: Option<Slot>) -> PendingRetry {
        PendingRetry {
            number: 1,
            of: 2,
            due,
            slot,
            last_error: "boom".into(),
        }
    }

    fn claim(reason: RunReason, slot: Option<Slot>) -> RunClaim {
        RunClaim {
            run_id: "app-1".into(),
            reason,
            slot,
            started: t(2, 30),
        }
    }

    #[test]
    fn a_scheduled_run_takes_its_slot_and_supersedes_the_pending_retry() {
        let mut st = JobState::new("app", t(0, 0));
        st.retry = Some(retry(t(3, 0), Some(slot(1, 30))));
        let c = claim(
            RunReason::Scheduled { slot: slot(2, 30) },
            Some(slot(2, 30)),
        );
        claim_run(&mut st, &c);
        assert_eq!(st.last_slot, Some(slot(2, 30)));
        assert!(st.retry.is_none());
        assert_eq!(st.running.map(|r| r.run_id), Some("app-1".to_string()));
    }

    #[test]
    fn a_retry_consumes_the_pending_retry() {
        let mut st = JobState::new("app", t(0, 0));
        let r = retry(t(2, 0), Some(slot(1, 30)));
        st.retry = Some(r.clone());
        claim_run(&mut st, &claim(retry_reason(&r), r.slot));
        assert!(st.retry.is_none());
    }

    #[test]
    fn a_manual_run_keeps_the_last_slot_and_the_pending_retry() {
        let mut st = JobState::new("app", t(0, 0));
        st.last_slot = Some(slot(1, 30));
        st.retry = Some(retry(t(3, 0), Some(slot(1, 30))));
        claim_run(&mut st, &claim(RunReason::Manual { retry: false }, None));
        assert_eq!(st.last_slot, Some(slot(1, 30)));
        assert!(st.retry.is_some());
        assert!(st.running.is_some());
    }

    #[test]
    fn run_state_words() {
        let queued = RunningInfo {
            queued: Some("waiting for a free run slot".into()),
            ..Default::default()
        };
        let running = RunningInfo::default();
        assert_eq!(run_state(Some(&queued), true), "queued");
        assert_eq!(run_state(Some(&running), true), "running");
        assert_eq!(run_state(None, true), "retry-pending");
        assert_eq!(run_state(None, false), "idle");
    }

    #[test]
    fn the_next_wake_up_names_the_retry_when_it_comes_first() {
        let r = retry(t(2, 0), Some(slot(1, 30)));
        assert_eq!(
            sleep_reason(Some(&r), Some(slot(2, 30))),
            "retry 1 of 2 for 2026-03-01 01:30"
        );
        // At the same instant as the slot, the retry is named.
        let r = retry(t(2, 30), None);
        assert_eq!(sleep_reason(Some(&r), Some(slot(2, 30))), "retry 1 of 2");
        assert_eq!(sleep_reason(Some(&r), None), "retry 1 of 2");
    }

    #[test]
    fn the_next_wake_up_names_the_slot_when_it_comes_first() {
        let r = retry(t(3, 0), None);
        assert_eq!(
            sleep_reason(Some(&r), Some(slot(2, 30))),
            "scheduled 2026-03-01 02:30"
        );
        assert_eq!(
            sleep_reason(None, Some(slot(2, 30))),
            "scheduled 2026-03-01 02:30"
        );
        assert_eq!(sleep_reason(None, None), "scheduled");
    }

    #[test]
    fn a_job_without_a_schedule_runs_only_its_due_retry() {
        assert_eq!(unscheduled_decision(None, t(2, 0)), None);
        let r = retry(t(2, 0), None);
        assert_eq!(
            unscheduled_decision(Some(&r), t(1, 59)),
            Some(Decision::Sleep {
                at: t(2, 0),
                slot: None
            })
        );
        assert_eq!(
            unscheduled_decision(Some(&r), t(2, 0)),
            Some(Decision::Run {
                slot: None,
                reason: retry_reason(&r)
            })
        );
    }

    #[test]
    fn the_start_up_delay_holds_back_catch_ups_except_in_run_due() {
        let delay = std::time::Duration::from_secs(120);
        assert_eq!(startup_until(t(2, 0), delay, false), t(2, 2));
        assert_eq!(startup_until(t(2, 0), delay, true), t(2, 0));
    }

    #[test]
    fn a_rebase_counts_slots_from_now() {
        let mut st = JobState::new("app", t(0, 0));
        rebase(
            &mut st,
            Some("0 3 * * *".into()),
            Some("UTC".into()),
            t(2, 0),
        );
        assert_eq!(st.schedule.as_deref(), Some("0 3 * * *"));
        assert_eq!(st.timezone.as_deref(), Some("UTC"));
        assert_eq!(st.baseline, t(2, 0));
        assert_eq!(schedule_key(None), (None, None));
    }

    #[test]
    fn a_skipped_slot_is_recorded_as_skipped() {
        let rec = skipped_record("app", &slot(2, 30), 3, "catch_up = skip", t(4, 0));
        assert_eq!(rec.run_id, "app-skipped-20260301T023000");
        assert_eq!(rec.outcome, Outcome::Skipped);
        assert_eq!(rec.slot.as_deref(), Some("2026-03-01 02:30"));
        assert_eq!((rec.missed, rec.start, rec.end), (3, t(4, 0), t(4, 0)));
    }

    /// A deterministic generator (xorshift) of configurations whose values include the
    /// extremes: whatever validation accepts, the daemon's start-up computations on it
    /// (the run slots' semaphore, the next slot with jitter, retry delays for many attempts,
    /// hook and shutdown timeouts as deadlines) do not panic.
    #[test]
    fn whatever_validation_accepts_the_daemon_computes_without_panicking() {
        // Each value is one the file can hold; most are in range, some just outside, some absurd.
        const DURATIONS: &[&str] = &[
            "0s", "1s", "59m", "1d", "1w", "5217w", "36500d", "90", "1h30m", "86400",
        ];
        const BAD_DURATIONS: &[&str] = &[
            "",
            "2d",
            "36501d",
            "18446744073709551615",
            "9999999999999999d",
            "99999999999999999999s",
        ];
        const NUMBERS: &[&str] = &["1", "2", "1024", "4294967295"];
        const BAD_NUMBERS: &[&str] = &["0", "1025", "-1", "9223372036854775807"];
        const FACTORS: &[&str] = &["0.5", "1.0", "2.0", "1e308", "inf", "nan", "-1.0"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut pick = |good: &[&'static str], bad: &[&'static str]| -> &'static str {
            let r = next();
            match r % 8 {
                0 => bad[(r >> 8) as usize % bad.len()],
                _ => good[(r >> 8) as usize % good.len()],
            }
        };
        let mut accepted = 0;
        for _ in 0..300 {
            let mut d = || pick(DURATIONS, BAD_DURATIONS);
            let (jitter, delay, max_delay, hook, shutdown) = (d(), d(), d(), d(), d());
            let (startup, within) = (d(), d());
            let text = format!(
                "[daemon]\nmax_parallel = {}\nshutdown_timeout = \"{shutdown}\"\n[repositories.r]\npath = \"/r\"\npassword_file = \"/p\"\n[jobs.j]\nrepository = \"r\"\npaths = [\"/x\"]\nschedule = \"*/5 * * * *\"\njitter = \"{jitter}\"\nstartup_delay = \"{startup}\"\ncatch_up = \"within {within}\"\nretries = {{ attempts = {}, delay = \"{delay}\", max_delay = \"{max_delay}\", factor = {} }}\n[jobs.j.hooks]\ntimeout = \"{hook}\"\n",
                pick(NUMBERS, BAD_NUMBERS),
                pick(NUMBERS, BAD_NUMBERS),
                pick(FACTORS, FACTORS),
            );
            let Ok(cfg) = Config::parse(&text, std::path::Path::new("p.toml")) else {
                continue;
            };
            accepted += 1;
            start_up_computations(&cfg);
        }
        assert!(
            accepted > 20,
            "only {accepted} configurations were accepted"
        );
    }

    /// What the daemon computes from a configuration it starts with.
    fn start_up_computations(cfg: &Config) {
        drop(super::super::runner::Limits::new(cfg.daemon.max_parallel));
        let std_now = std::time::Instant::now();
        assert!(std_now.checked_add(cfg.daemon.shutdown_timeout).is_some());
        let j = &cfg.jobs["j"];
        assert!(std_now.checked_add(j.hooks.timeout).is_some());
        let sched = j.parsed_schedule.as_ref().expect("a schedule");
        let now = Utc::now();
        let _ = startup_until(now, j.startup_delay, false);
        let timing = JobTiming {
            schedule: sched,
            catch_up: &j.catch_up,
            jitter: j.jitter,
            job: "j",
        };
        for (last, at) in [(None, now), (Some(now), now + chrono::TimeDelta::days(1))] {
            let st = schedule::ScheduleState {
                last_slot: last.map(|at| Slot {
                    wall: at.naive_utc(),
                    at,
                    zone: None,
                }),
                baseline: now - chrono::TimeDelta::days(1),
                retry: None,
            };
            let _ = schedule::decide(&timing, &st, at, &Wake::Timer);
        }
        let policy = j.retries.policy();
        let mut previous = None;
        for n in (1..=64).chain([1000, u32::MAX]) {
            let _ = policy.delay_for(n);
            previous = policy
                .after_failure(None, previous.as_ref(), now, "x")
                .or(previous);
        }
    }
}
