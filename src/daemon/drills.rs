//! The daemon's side of verification drills and repository measurements: when each repository's drills are due, running them off the event loop within the run limits, and keeping their results on disk.

use super::runner::Limits;
use crate::cancel::{CancelToken, NoProgress};
use crate::config::verify::{DrillKind, VerifyConfig};
use crate::config::Config;
use crate::protocol::{DrillStatus, RepoStatus};
use crate::schedule::{self, CatchUp, Decision, JobTiming, Schedule, ScheduleState, Wake};
use crate::verify::{self, DrillOutcome, DrillState, RepoSize, RepoState, RepoStateStore};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a drill or a measurement reports back to the loop.
pub struct DrillDone {
    repo: String,
    /// None: a measurement only.
    kind: Option<DrillKind>,
    outcome: Option<Result<DrillOutcome, String>>,
    size: Option<(RepoSize, f64)>,
}

/// A drill whose result changed the repository's standing: for notifications.
pub struct Transition {
    pub repo: String,
    pub kind: DrillKind,
    /// Failed now (true), or passed after a failure (false).
    pub failed: bool,
    pub message: String,
}

struct RepoEntry {
    state: RepoState,
    /// The configured drills: kind, schedule and its text (expression and zone).
    schedules: Vec<(DrillKind, Schedule, String)>,
    active: Option<(DrillKind, CancelToken)>,
    measuring: bool,
    wake: Wake,
    next: BTreeMap<DrillKind, DateTime<Utc>>,
    /// The share of existing packs read in the current cycle, from the newest listing.
    coverage: Option<f64>,
}

/// Every configured repository's drills.
pub struct Drills {
    store: RepoStateStore,
    scratch: PathBuf,
    repos: BTreeMap<String, RepoEntry>,
    tx: mpsc::UnboundedSender<DrillDone>,
    pub rx: mpsc::UnboundedReceiver<DrillDone>,
}

impl Drills {
    pub fn new(state_dir: &std::path::Path, config: &Config) -> Drills {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut d = Drills {
            store: RepoStateStore::at(state_dir),
            scratch: state_dir.join("scratch"),
            repos: BTreeMap::new(),
            tx,
            rx,
        };
        d.sync(config, Utc::now());
        d
    }

    /// Makes the repositories match the configuration; a drill whose schedule changed counts
    /// its slots from now.
    pub fn sync(&mut self, config: &Config, now: DateTime<Utc>) {
        self.repos
            .retain(|name, e| config.repositories.contains_key(name) || e.active.is_some());
        for (name, rc) in &config.repositories {
            let schedules = rc
                .verify
                .as_ref()
                .map(|v| v.parsed_schedules.clone())
                .unwrap_or_default();
            let tz = rc
                .verify
                .as_ref()
                .and_then(|v| v.timezone.as_ref())
                .map(|t| t.get_ref().clone());
            let schedules: Vec<(DrillKind, Schedule, String)> = schedules
                .into_iter()
                .map(|(k, s)| {
                    let expr = rc
                        .verify
                        .as_ref()
                        .and_then(|v| v.expr(k))
                        .map(|e| e.get_ref().clone())
                        .unwrap_or_default();
                    let text = match &tz {
                        Some(z) => format!("{expr} ({z})"),
                        None => expr,
                    };
                    (k, s, text)
                })
                .collect();
            let store = &self.store;
            let e = self.repos.entry(name.clone()).or_insert_with(|| {
                let (state, err) = store.load(name);
                if let Some(err) = err {
                    tracing::error!(repository = %name, "{err}");
                }
                RepoEntry {
                    state,
                    schedules: Vec::new(),
                    active: None,
                    measuring: false,
                    wake: Wake::Startup,
                    next: BTreeMap::new(),
                    coverage: None,
                }
            });
            for (kind, _, text) in &schedules {
                let d = e.state.drills.entry(*kind).or_default();
                if d.schedule.as_deref() != Some(text.as_str()) {
                    d.schedule = Some(text.clone());
                    d.baseline = Some(now);
                    d.last_slot = None;
                }
            }
            e.schedules = schedules;
        }
    }

    /// Starts the drills that are due (a catch-up once for slots missed while backupd was
    /// down); returns the earliest next one.
    pub fn plan(
        &mut self,
        now: DateTime<Utc>,
        config: &Arc<Config>,
        limits: &Limits,
    ) -> Option<DateTime<Utc>> {
        let mut earliest: Option<DateTime<Utc>> = None;
        let names: Vec<String> = self.repos.keys().cloned().collect();
        for name in names {
            let Some(rc) = config.repositories.get(&name) else {
                continue;
            };
            let e = self.repos.get_mut(&name).expect("repository entry");
            if e.active.is_some() {
                continue;
            }
            let mut due = None;
            e.next.clear();
            for (kind, sched, _) in &e.schedules {
                let d = e.state.drills.entry(*kind).or_default();
                let label = format!("{name}/{}", kind.as_str());
                let timing = JobTiming {
                    schedule: sched,
                    catch_up: &CatchUp::Once,
                    jitter: std::time::Duration::ZERO,
                    job: &label,
                };
                let st = ScheduleState {
                    last_slot: d.last_slot,
                    baseline: d.baseline.unwrap_or(now),
                    retry: None,
                };
                match schedule::decide(&timing, &st, now, &e.wake) {
                    Decision::Run { slot, reason } => {
                        if due.is_none() {
                            d.last_slot = slot.or(d.last_slot);
                            due = Some((*kind, reason.describe()));
                        }
                    }
                    Decision::Skip { slot, .. } => d.last_slot = Some(slot),
                    Decision::Sleep { at, .. } => {
                        e.next.insert(*kind, at);
                        earliest = Some(earliest.map_or(at, |t: DateTime<Utc>| t.min(at)));
                    }
                }
            }
            e.wake = Wake::Timer;
            let Some((kind, why)) = due else { continue };
            if let Err(err) = self.store.save(&e.state) {
                tracing::error!(repository = %name, "{err}");
            }
            let cancel = CancelToken::new();
            e.active = Some((kind, cancel.clone()));
            tracing::info!(repository = %name, drill = kind.as_str(), "starting the {} of repository {name}: {why}", kind.as_str());
            let job = DrillJob {
                repo: name.clone(),
                kind,
                rc: rc.clone(),
                verify: rc.verify.clone().unwrap_or_default(),
                coverage: e.state.coverage.clone(),
                read_schedule: e
                    .schedules
                    .iter()
                    .find(|(k, _, _)| *k == DrillKind::ReadData)
                    .map(|(_, s, _)| s.clone()),
                scratch: self.scratch.clone(),
                cancel,
            };
            let (limits, tx) = (limits.clone(), self.tx.clone());
            tokio::spawn(async move {
                let _guards = limits.acquire(job.rc.path.expose()).await;
                let repo = job.repo.clone();
                let kind = job.kind;
                let outcome = tokio::task::spawn_blocking(move || job.run())
                    .await
                    .unwrap_or_else(|e| {
                        Err(format!(
                            "the drill crashed inside backupd: {e} (a bug; please report it)"
                        ))
                    });
                let _ = tx.send(DrillDone {
                    repo,
                    kind: Some(kind),
                    outcome: Some(outcome),
                    size: None,
                });
            });
        }
        earliest
    }

    /// Measures a repository's size (after a run changed it, or at start-up), off the loop.
    pub fn measure(&mut self, repo: &str, config: &Config) {
        let (Some(e), Some(rc)) = (self.repos.get_mut(repo), config.repositories.get(repo)) else {
            return;
        };
        if e.measuring {
            return;
        }
        e.measuring = true;
        let rc = rc.clone();
        let cov = e.state.coverage.clone();
        let (tx, repo) = (self.tx.clone(), repo.to_string());
        tokio::task::spawn_blocking(move || {
            let measured =
                verify::backend_of(&rc).and_then(|be| verify::measure(be.as_ref(), Utc::now()));
            let size = match measured {
                Ok((size, packs)) => Some((size, verify::coverage_ratio(&cov, &packs))),
                Err(e) => {
                    tracing::warn!(repository = %repo, "cannot measure the repository's size: {e}");
                    None
                }
            };
            let _ = tx.send(DrillDone {
                repo,
                kind: None,
                outcome: None,
                size,
            });
        });
    }

    /// Measures every repository.
    pub fn measure_all(&mut self, config: &Config) {
        let names: Vec<String> = self.repos.keys().cloned().collect();
        for n in names {
            self.measure(&n, config);
        }
    }

    /// Records a drill's or a measurement's end; returns a transition worth a notification.
    pub fn finished(&mut self, d: DrillDone, config: &Config) -> Option<Transition> {
        let e = self.repos.get_mut(&d.repo)?;
        if let Some((size, ratio)) = d.size {
            e.measuring = false;
            e.state.size = Some(size);
            e.coverage = Some(ratio);
        }
        let kind = d.kind?;
        e.active = None;
        let now = Utc::now();
        let result = match d.outcome? {
            Ok(o) => {
                if let Some(c) = o.coverage {
                    e.state.coverage = c;
                }
                o.result
            }
            Err(err) => verify::DrillResult {
                kind,
                started: now,
                ended: now,
                ok: false,
                summary: format!("the {} could not run", kind.as_str()),
                error: Some(err),
            },
        };
        let st: &mut DrillState = e.state.drills.entry(kind).or_default();
        let was_failing = st.last.as_ref().is_some_and(|r| !r.ok);
        if result.ok {
            st.last_ok = Some(result.ended);
            tracing::info!(repository = %d.repo, drill = kind.as_str(), "{} of repository {} passed: {}", kind.as_str(), d.repo, result.summary);
        } else {
            tracing::error!(repository = %d.repo, drill = kind.as_str(), "{} of repository {} FAILED: {}", kind.as_str(), d.repo, result.error.as_deref().unwrap_or(&result.summary));
        }
        let transition = if !result.ok {
            Some(Transition {
                repo: d.repo.clone(),
                kind,
                failed: true,
                message: format!(
                    "the {} of repository {} failed: {}",
                    kind.as_str(),
                    d.repo,
                    result.error.as_deref().unwrap_or(&result.summary)
                ),
            })
        } else if was_failing {
            Some(Transition {
                repo: d.repo.clone(),
                kind,
                failed: false,
                message: format!(
                    "the {} of repository {} passed again: {}",
                    kind.as_str(),
                    d.repo,
                    result.summary
                ),
            })
        } else {
            None
        };
        st.last = Some(result);
        if let Err(err) = self.store.save(&e.state) {
            tracing::error!(repository = %d.repo, "{err}");
        }
        // The drill read the repository's newest listing: measure again for the coverage.
        self.measure(&d.repo, config);
        transition
    }

    /// Asks every drill to stop at its next safe point; returns whether any was running.
    pub fn cancel_all(&mut self) -> bool {
        let mut any = false;
        for e in self.repos.values_mut() {
            if let Some((_, c)) = &e.active {
                c.cancel();
                any = true;
            }
        }
        any
    }

    pub fn any_active(&self) -> bool {
        self.repos.values().any(|e| e.active.is_some())
    }

    /// The newest failed drill of the repository, its size and the room left on its storage,
    /// for the health of its jobs.
    pub fn facts(
        &self,
        repo: &str,
    ) -> (
        Option<String>,
        Option<u64>,
        Option<crate::repo::backend::Space>,
    ) {
        match self.repos.get(repo) {
            Some(e) => (
                e.state.failing(),
                e.state.size.map(|s| s.bytes),
                e.state.size.and_then(|s| s.space),
            ),
            None => (None, None, None),
        }
    }

    /// Every repository, for `backupctl status`.
    pub fn status(&self, config: &Config) -> Vec<RepoStatus> {
        self.repos
            .iter()
            .map(|(name, e)| RepoStatus {
                name: name.clone(),
                location: config
                    .repositories
                    .get(name)
                    .map(|r| r.path.shown())
                    .unwrap_or_default(),
                size_bytes: e.state.size.map(|s| s.bytes),
                packs: e.state.size.map(|s| s.packs),
                snapshots: e.state.size.map(|s| s.snapshots),
                measured: e.state.size.and_then(|s| s.measured),
                free_bytes: e.state.size.and_then(|s| s.space).map(|s| s.available),
                capacity_bytes: e.state.size.and_then(|s| s.space).map(|s| s.total),
                coverage: e
                    .schedules
                    .iter()
                    .any(|(k, _, _)| *k == DrillKind::ReadData)
                    .then_some(e.coverage)
                    .flatten(),
                cycle_start: e.state.coverage.cycle_start,
                last_complete_cycle: e.state.coverage.last_complete,
                drills: e
                    .schedules
                    .iter()
                    .map(|(kind, _, text)| {
                        let st = e.state.drills.get(kind);
                        let last = st.and_then(|s| s.last.as_ref());
                        DrillStatus {
                            kind: kind.as_str().to_string(),
                            schedule: text.clone(),
                            running: e.active.as_ref().is_some_and(|(k, _)| k == kind),
                            next: e.next.get(kind).copied(),
                            last_end: last.map(|r| r.ended),
                            last_ok: last.map(|r| r.ok),
                            last_summary: last.map(|r| r.summary.clone()),
                            last_error: last.and_then(|r| r.error.clone()),
                            last_success: st.and_then(|s| s.last_ok),
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every repository's figures, for the metrics.
    pub fn metrics(&self, config: &Config) -> Vec<crate::monitor::metrics::RepoMetrics> {
        self.repos
            .iter()
            .filter_map(|(name, e)| {
                let rc = config.repositories.get(name)?;
                Some(crate::monitor::metrics::RepoMetrics {
                    repository: rc.path.shown(),
                    size_bytes: e.state.size.map(|s| s.bytes),
                    snapshots: e.state.size.map(|s| s.snapshots),
                    free_bytes: e.state.size.and_then(|s| s.space).map(|s| s.available),
                    capacity_bytes: e.state.size.and_then(|s| s.space).map(|s| s.total),
                    coverage: e.coverage.filter(|_| {
                        e.schedules
                            .iter()
                            .any(|(k, _, _)| *k == DrillKind::ReadData)
                    }),
                    drills: e
                        .state
                        .drills
                        .iter()
                        .filter(|(k, _)| e.schedules.iter().any(|(s, _, _)| s == *k))
                        .filter_map(|(k, s)| {
                            s.last
                                .as_ref()
                                .map(|r| crate::monitor::metrics::DrillMetrics {
                                    drill: k.as_str().to_string(),
                                    ok: r.ok,
                                    last_end: r.ended,
                                    last_success: s.last_ok,
                                })
                        })
                        .collect(),
                })
            })
            .collect()
    }
}

/// One drill to run on a blocking thread.
struct DrillJob {
    repo: String,
    kind: DrillKind,
    rc: crate::config::RepositoryConfig,
    verify: VerifyConfig,
    coverage: verify::Coverage,
    read_schedule: Option<Schedule>,
    scratch: PathBuf,
    cancel: CancelToken,
}

impl DrillJob {
    fn run(self) -> Result<DrillOutcome, String> {
        let span =
            tracing::info_span!("drill", repository = %self.repo, drill = self.kind.as_str());
        let _e = span.enter();
        let p = NoProgress;
        let r = match self.kind {
            DrillKind::Check => verify::run_check(&self.rc, &p, &self.cancel),
            DrillKind::ReadData => {
                let sched = self.read_schedule.clone();
                let runs_left = move |end: DateTime<Utc>| match &sched {
                    Some(s) => s.slots_between(Utc::now(), end, 0).1,
                    None => 0,
                };
                verify::run_read_data(
                    &self.rc,
                    &self.coverage,
                    self.verify.read_data_cycle,
                    runs_left,
                    &p,
                    &self.cancel,
                )
            }
            DrillKind::RestoreDrill => verify::run_restore_drill(
                &self.rc,
                self.verify.restore_drill_files,
                &self.scratch,
                &p,
                &self.cancel,
            ),
        };
        r.map_err(|e| e.to_string())
    }
}
