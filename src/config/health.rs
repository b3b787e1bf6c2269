//! A job's health thresholds (`[jobs.NAME.health]`), as read from the configuration.

use crate::schedule::Schedule;
use crate::size::parse_size;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// Default grace, as a share of the schedule's interval.
const GRACE_SHARE: f64 = 0.10;
/// Default grace, at least.
const GRACE_MIN: Duration = Duration::from_secs(60);
/// Default grace, at most.
const GRACE_MAX: Duration = Duration::from_secs(3600);

/// Per-job thresholds: the job's `[jobs.NAME.health]` table. Every key is optional.
///
/// ```toml
/// [jobs.app.health]
/// overdue_warning_slots = 1
/// overdue_error_slots = 2
/// grace = "30m"
/// failures_warning = 1
/// failures_error = 3
/// partial_is_warning = true
/// max_repository_bytes = "500G"
/// max_growth = 10
/// growth_runs = 5
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Missed slots for a warning (default 1: one slot passed without a success); 0: never.
    pub overdue_warning_slots: u32,
    /// Missed slots for an error (default 2); 0: never.
    pub overdue_error_slots: u32,
    /// How long after a slot a success may still come before the slot counts as missed.
    ///
    /// Default ([`HealthConfig::grace_for`]): 10 % of the schedule's interval, at least 1
    /// minute, at most 1 hour. A run does not succeed *at* its slot: `jitter` and
    /// `startup_delay` delay its start, a busy repository or `max_parallel` queues it, a
    /// repository lock makes it wait (`lock_wait`), and then it takes as long as it takes, and
    /// a success is recorded when it ends. Proportional, so an every-minute job is not
    /// given an hour (it would hide a dead job for 60 slots), floored at 1 minute so timer
    /// and jitter noise never flaps, and capped at 1 hour so a daily job is reported late
    /// the same morning, not the next day. A run in progress protects its slot however long
    /// it takes; set `grace` explicitly for jobs that wait long for their turn.
    #[serde(deserialize_with = "de_opt_duration")]
    pub grace: Option<Duration>,
    /// Consecutive failures for a warning (default 1); 0: never.
    pub failures_warning: u32,
    /// Consecutive failures for an error (default 3); 0: never.
    pub failures_error: u32,
    /// A last run that was `partial` (some sources unreadable) is a warning (default true).
    pub partial_is_warning: bool,
    /// The repository size limit: a warning at 90 %, an error at 100 %. A number of bytes or
    /// a string such as `"500G"` (see `size::parse_size`).
    #[serde(deserialize_with = "de_opt_size")]
    pub max_repository_bytes: Option<u64>,
    /// The room that must stay free on the repository's storage: `"10%"` (the default) of the
    /// file system or quota, or a size such as `"50G"`; `"0%"` or `0` switches it off. Less is
    /// a warning, less than a tenth of it an error.
    #[serde(deserialize_with = "de_min_free")]
    pub min_free_space: MinFree,
    /// A warning when the newest run read more than this many times the median of the
    /// `growth_runs` successful runs before it (more than 1, e.g. `10`); none by default.
    #[serde(deserialize_with = "de_opt_growth")]
    pub max_growth: Option<f64>,
    /// How many runs before the newest `max_growth` compares it with (default 5, at least 1).
    #[serde(deserialize_with = "de_growth_runs")]
    pub growth_runs: u32,
}

fn de_opt_growth<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    let f = f64::deserialize(d)?;
    if !(f > 1.0 && f <= 1e6) {
        return Err(serde::de::Error::custom(format!(
            "max_growth {f} must be a factor above 1 (at most 1000000), e.g. 10"
        )));
    }
    Ok(Some(f))
}

fn de_growth_runs<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u32::deserialize(d)?;
    if !(1..=1000).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "growth_runs {n} must be from 1 to 1000 (default 5)"
        )));
    }
    Ok(n)
}

/// How much room must stay free on a repository's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinFree {
    /// A share of the storage's size or quota, in percent (0 to 100).
    Percent(u8),
    /// A number of bytes.
    Bytes(u64),
}

impl MinFree {
    /// The threshold in bytes for storage of `total` bytes; 0 means the rule is off.
    pub fn bytes_of(self, total: u64) -> u64 {
        match self {
            MinFree::Percent(p) => (u128::from(total) * u128::from(p) / 100) as u64,
            MinFree::Bytes(b) => b,
        }
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Percent(p) => write!(f, "{p} %"),
            MinFree::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

fn de_min_free<'de, D: Deserializer<'de>>(d: D) -> Result<MinFree, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(MinFree::Bytes(n)),
        Raw::Text(t) => match t.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(MinFree::Percent(p)),
                _ => Err(serde::de::Error::custom(format!(
                    "invalid min_free_space {t:?}: a percentage must be a whole number from 0 to 100, e.g. \"10%\""
                ))),
            },
            None => parse_size(&t)
                .map(MinFree::Bytes)
                .map_err(serde::de::Error::custom),
        },
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            overdue_warning_slots: 1,
            overdue_error_slots: 2,
            grace: None,
            failures_warning: 1,
            failures_error: 3,
            partial_is_warning: true,
            max_repository_bytes: None,
            min_free_space: MinFree::Percent(10),
            max_growth: None,
            growth_runs: 5,
        }
    }
}

impl HealthConfig {
    /// The grace in effect for `schedule` around `now`: the configured one, or 10 % of the
    /// schedule's interval (`Schedule::interval_hint(now)`) clamped to 1 minute ..= 1 hour.
    pub fn grace_for(&self, schedule: &Schedule, now: DateTime<Utc>) -> Duration {
        if let Some(g) = self.grace {
            return g;
        }
        match schedule.interval_hint(now).and_then(|i| i.to_std().ok()) {
            Some(interval) => interval.mul_f64(GRACE_SHARE).clamp(GRACE_MIN, GRACE_MAX),
            None => GRACE_MAX,
        }
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(n) => crate::duration::from_secs(n)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Raw::Text(t) => crate::duration::parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A size limit: a number of bytes or a string such as `"500M"`, more than 0.
pub(crate) fn de_opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Raw::deserialize(d)? {
        Raw::Bytes(n) => n,
        Raw::Text(t) => parse_size(&t).map_err(serde::de::Error::custom)?,
    };
    if bytes == 0 {
        return Err(serde::de::Error::custom(
            "a size limit must be more than 0, e.g. \"500G\" (leave it out for no limit)",
        ));
    }
    Ok(Some(bytes))
}
