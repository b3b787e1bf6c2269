//! Schedules and the scheduler's pure next-run logic: cron expressions evaluated on a zone's wall clock, DST gaps and folds mapped to instants, and [`decide`] (run, skip missed slots, or sleep). No tokio, no clock reads; the only I/O is finding the local zone's name when none is given.
//!
//! # DST semantics
//!
//! The cron pattern is matched against *naive wall-clock times* of the schedule's zone; each
//! matching wall time (a nominal slot) is then mapped to an instant:
//!
//! - a wall time that exists once runs then;
//! - a wall time in a fall-back fold (it happens twice) runs at the earlier instant only;
//! - a wall time in a spring-forward gap (it never happens) runs at the first instant after the
//!   gap, the transition itself (Europe/Berlin 2026-03-29 02:30 runs at 03:00 CEST, 01:00 UTC).
//!
//! Several nominal slots can map to one instant (hourly on a spring-forward day: 02:00 and 03:00
//! both run at 03:00). They are one [`Slot`], labelled with the **latest** of those wall times
//! (03:00, the one that exists), so every instant has exactly one slot, whichever function found
//! it. The instants of successive slots are strictly increasing.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::errors::CronError;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// Counting missed slots stops here (a per-second schedule after a month of downtime).
pub const MAX_SLOT_COUNT: usize = 100_000;

/// A timer wake this close after a slot's due time still counts as on time.
pub const ON_TIME_GRACE_SECS: i64 = 60;

/// Why a schedule expression or time zone was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression is empty.
    #[error("empty schedule: expected a cron expression such as \"30 2 * * *\" (02:30 every day) or an alias such as @daily")]
    Empty,
    /// An `@alias` that is not one of the known ones.
    #[error("unknown schedule alias {alias:?}: expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually, or a cron expression such as \"30 2 * * *\"")]
    UnknownAlias {
        /// The alias as written.
        alias: String,
    },
    /// Neither 5 nor 6 fields.
    #[error("schedule {expr:?} has {found} field(s): expected 5 (minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\") or 6 with seconds first (e.g. \"0 30 2 * * *\")")]
    FieldCount {
        /// The expression as written.
        expr: String,
        /// How many whitespace-separated fields it has.
        found: usize,
    },
    /// A field is malformed or out of range.
    #[error("invalid schedule {expr:?}: {message}; expected e.g. \"30 2 * * *\" (02:30 every day) or \"0 */6 * * MON-FRI\" (every 6 hours on weekdays)")]
    Invalid {
        /// The expression as written.
        expr: String,
        /// What the cron parser objected to.
        message: String,
    },
    /// Well-formed, but no date ever matches.
    #[error("schedule {expr:?} never matches any date (like February 31st); expected e.g. \"30 2 * * *\" or \"0 0 L * *\" (the last day of each month)")]
    NeverMatches {
        /// The expression as written.
        expr: String,
    },
    /// Not an IANA time zone name.
    #[error("unknown time zone {name:?}: expected an IANA name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"")]
    UnknownTimezone {
        /// The name as written.
        name: String,
    },
}

impl ScheduleError {
    /// True when the time zone, not the expression, is wrong.
    pub fn is_timezone(&self) -> bool {
        matches!(self, ScheduleError::UnknownTimezone { .. })
    }
}

/// A parsed cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

/// One run of a schedule: the nominal wall time and the instant it runs, and the zone whose
/// wall clock it is on (for people; a slot is the same slot whatever its zone says, so
/// comparisons leave the zone out: a state file written before the zone was kept has none).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Slot {
    /// The nominal wall-clock time in the schedule's zone ("02:30 on 2026-03-29").
    pub wall: NaiveDateTime,
    /// The instant it runs.
    pub at: DateTime<Utc>,
    /// The schedule's zone, by its IANA name (None in state written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "zone_name")]
    pub zone: Option<Tz>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        (self.wall, self.at) == (other.wall, other.at)
    }
}

impl Eq for Slot {}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Slot) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slot {
    fn cmp(&self, other: &Slot) -> std::cmp::Ordering {
        (self.wall, self.at).cmp(&(other.wall, other.at))
    }
}

impl std::hash::Hash for Slot {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.wall, self.at).hash(h);
    }
}

/// A zone as its IANA name in state files; a name this build does not know reads as none.
mod zone_name {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(zone: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
        match zone {
            Some(z) => s.serialize_str(z.name()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
        let name = Option::<String>::deserialize(d)?;
        Ok(name.and_then(|n| n.parse().ok()))
    }
}

impl Slot {
    /// The wall time with its date, e.g. "2026-03-29 02:30" (seconds only when non-zero): the
    /// slot as records and ids name it. For people, [`Slot::zoned_label`].
    pub fn label(&self) -> String {
        format!("{} {}", self.wall.format("%Y-%m-%d"), self.time_label())
    }

    /// The label with the zone whose wall clock it is on, e.g. "2026-03-29 02:30
    /// Europe/Berlin": what reasons and messages show, so no time is shown without its zone.
    /// (A name, not an offset: a wall time in a spring-forward gap has none.)
    pub fn zoned_label(&self) -> String {
        match self.zone {
            Some(z) => format!("{} {}", self.label(), z.name()),
            None => self.label(),
        }
    }

    /// The wall time of day alone, e.g. "02:30" (seconds only when non-zero).
    pub fn time_label(&self) -> String {
        let format = if self.wall.second() == 0 {
            "%H:%M"
        } else {
            "%H:%M:%S"
        };
        self.wall.format(format).to_string()
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.zoned_label())
    }
}

impl Schedule {
    /// Parses a schedule.
    ///
    /// `expr`: standard 5 fields ("30 2 * * *"), 6 fields with seconds first, or
    /// @hourly/@daily/@midnight/@weekly/@monthly/@yearly/@annually. Fields take numbers, names
    /// (MON-FRI, JAN), ranges, steps and lists; day-of-week 0 and 7 are Sunday; when both
    /// day-of-month and day-of-week are restricted, a day matching either runs (Vixie cron).
    ///
    /// `tz`: an IANA name ("Europe/Berlin"); `None` is the local zone (see [`local_zone`]).
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tz = match tz {
            Some(name) => parse_zone(name)?,
            None => local_zone(),
        };
        let expr = expr.trim();
        let pattern = expand_alias(expr)?;
        let found = pattern.split_whitespace().count();
        if !(5..=6).contains(&found) {
            return Err(ScheduleError::FieldCount {
                expr: expr.to_string(),
                found,
            });
        }
        let cron = Cron::from_str(pattern).map_err(|e| ScheduleError::Invalid {
            expr: expr.to_string(),
            message: field_message(pattern, &e),
        })?;
        let probe = NaiveDateTime::default(); // 1970-01-01 00:00
        if cron.find_next_occurrence(&probe, true).is_err() {
            return Err(ScheduleError::NeverMatches {
                expr: expr.to_string(),
            });
        }
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
            tz,
        })
    }

    /// The expression as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone's IANA name.
    pub fn tz_name(&self) -> &str {
        self.tz.name()
    }

    /// The zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `after` (an instant).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Slot> {
        // Every wall time up to `after`'s own maps to an instant <= `after`; past it, only the
        // rest of a fold (already run in its first pass) can, and the filter skips those.
        let mut wall = self.wall_of(after);
        loop {
            wall = self.cron.find_next_occurrence(&wall, false).ok()?;
            let (at, in_gap) = self.instant_of(wall);
            if at > after {
                return Some(if in_gap {
                    self.merge_gap(wall, at)
                } else {
                    self.slot(wall, at)
                });
            }
        }
    }

    /// Slots with `after < slot.at <= until`: at most `limit` of them (oldest first), and how
    /// many there are in all (counting stops at [`MAX_SLOT_COUNT`]).
    pub fn slots_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> (Vec<Slot>, usize) {
        let mut slots = Vec::new();
        let mut count = 0;
        let mut cursor = after;
        while count < MAX_SLOT_COUNT {
            match self.next_after(cursor) {
                Some(slot) if slot.at <= until => {
                    if slots.len() < limit {
                        slots.push(slot);
                    }
                    count += 1;
                    cursor = slot.at;
                }
                _ => break,
            }
        }
        (slots, count)
    }

    /// The latest slot with `slot.at <= t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<Slot> {
        // Walk wall times down from an upper bound: instants grow with wall times, so the first
        // match whose instant is <= t is the latest slot (and the latest wall of its instant).
        let mut wall = self
            .cron
            .find_previous_occurrence(&self.wall_upper_bound(t), true)
            .ok()?;
        loop {
            let (at, _) = self.instant_of(wall);
            if at <= t {
                return Some(self.slot(wall, at));
            }
            wall = self.cron.find_previous_occurrence(&wall, false).ok()?;
        }
    }

    /// Typical interval between slots: the gap between the next two slots after `t`.
    pub fn interval_hint(&self, t: DateTime<Utc>) -> Option<chrono::Duration> {
        let first = self.next_after(t)?;
        let second = self.next_after(first.at)?;
        Some(second.at - first.at)
    }

    /// The wall-clock time of an instant in the schedule's zone.
    fn wall_of(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// The zone's UTC offset at `t`, in seconds.
    fn offset_secs(&self, t: DateTime<Utc>) -> i64 {
        i64::from(
            self.tz
                .offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }

    /// A wall time at or above every wall time whose instant is <= t. Inside the second pass of
    /// a fold, the first pass's later wall times are already past: they are reached with the
    /// offset from before the fold (a day earlier).
    fn wall_upper_bound(&self, t: DateTime<Utc>) -> NaiveDateTime {
        let offset = self
            .offset_secs(t)
            .max(self.offset_secs(t - chrono::Duration::days(1)));
        t.naive_utc() + chrono::Duration::seconds(offset)
    }

    /// The instant a wall time runs at, and whether it lies in a gap.
    fn instant_of(&self, wall: NaiveDateTime) -> (DateTime<Utc>, bool) {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => (t.to_utc(), false),
            LocalResult::Ambiguous(earlier, _) => (earlier.to_utc(), false),
            LocalResult::None => (self.gap_end(wall), true),
        }
    }

    /// The first instant whose wall time is later than `wall`, a wall time the clock skips: the
    /// transition that opens the gap. A binary search over a day either side, where the wall
    /// clock only rises (transitions are months apart).
    fn gap_end(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        let guess = wall.and_utc().timestamp();
        let (mut lo, mut hi) = (guess - 86_400, guess + 86_400);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.wall_of(utc_from_secs(mid)) > wall {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        utc_from_secs(hi)
    }

    /// The slot of a gap instant: the latest matching wall time that maps to the same instant
    /// (a wall time in the gap, or the one at its end).
    fn merge_gap(&self, wall: NaiveDateTime, at: DateTime<Utc>) -> Slot {
        let mut last = wall;
        while let Ok(next) = self.cron.find_next_occurrence(&last, false) {
            if self.instant_of(next).0 != at {
                break;
            }
            last = next;
        }
        self.slot(last, at)
    }

    /// A slot of this schedule (in its zone).
    fn slot(&self, wall: NaiveDateTime, at: DateTime<Utc>) -> Slot {
        Slot {
            wall,
            at,
            zone: Some(self.tz),
        }
    }
}

fn utc_from_secs(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The 5-field form of an `@alias`, or the expression itself.
fn expand_alias(expr: &str) -> Result<&str, ScheduleError> {
    if expr.is_empty() {
        return Err(ScheduleError::Empty);
    }
    if !expr.starts_with('@') {
        return Ok(expr);
    }
    Ok(match expr.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => {
            return Err(ScheduleError::UnknownAlias {
                alias: expr.to_string(),
            })
        }
    })
}

/// The fields of a 6-field expression: name and allowed values (5 fields start at minute).
const FIELDS: [(&str, &str); 6] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31, L, W"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT, 0 and 7 are Sunday"),
];

/// Which field the cron parser rejected, and why: each field is tried alone (the others `*`).
fn field_message(pattern: &str, err: &CronError) -> String {
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    let names = &FIELDS[FIELDS.len() - fields.len()..];
    for (i, field) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *field } else { "*" })
            .collect();
        if let Err(e) = Cron::from_str(&alone.join(" ")) {
            let (name, allowed) = names[i];
            return format!(
                "the {name} field {field:?} is invalid ({}; allowed: {allowed})",
                cron_message(&e)
            );
        }
    }
    cron_message(err)
}

/// The cron parser's complaint without its own prefixes.
fn cron_message(e: &CronError) -> String {
    let message = match e {
        CronError::InvalidPattern(m) | CronError::IllegalCharacters(m) => m.clone(),
        CronError::ComponentError(m) => m.clone(),
        other => other.to_string(),
    };
    message.trim_end_matches('.').to_string()
}

/// An IANA zone by name.
fn parse_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimezone {
            name: name.to_string(),
        })
}

/// The local zone: the TZ environment variable if it names an IANA zone (a leading ':' is
/// stripped), else the target of /etc/localtime under zoneinfo, else /etc/timezone, else UTC.
pub fn local_zone() -> Tz {
    let tz_var = std::env::var("TZ").ok();
    let link = std::fs::read_link("/etc/localtime").ok();
    let timezone_file = std::fs::read_to_string("/etc/timezone").ok();
    zone_from_sources(tz_var.as_deref(), link.as_deref(), timezone_file.as_deref())
}

/// [`local_zone`] from its three sources, as read.
fn zone_from_sources(
    tz_var: Option<&str>,
    localtime_link: Option<&Path>,
    timezone_file: Option<&str>,
) -> Tz {
    tz_var
        .and_then(zone_from_tz_var)
        .or_else(|| localtime_link.and_then(zone_from_zoneinfo_path))
        .or_else(|| timezone_file.and_then(|s| s.trim().parse().ok()))
        .unwrap_or(Tz::UTC)
}

/// TZ=Europe/Berlin, TZ=:Europe/Berlin or TZ=:/usr/share/zoneinfo/Europe/Berlin.
fn zone_from_tz_var(value: &str) -> Option<Tz> {
    let value = value.trim();
    let value = value.strip_prefix(':').unwrap_or(value);
    value
        .parse()
        .ok()
        .or_else(|| zone_from_zoneinfo_path(Path::new(value)))
}

/// The zone of a path like /usr/share/zoneinfo/Europe/Berlin (also under posix/ or right/).
fn zone_from_zoneinfo_path(path: &Path) -> Option<Tz> {
    let path = path.to_str()?;
    let (_, name) = path.rsplit_once("zoneinfo/")?;
    let name = name
        .strip_prefix("posix/")
        .or_else(|| name.strip_prefix("right/"))
        .unwrap_or(name);
    name.parse().ok()
}

/// What to do about slots missed while the daemon could not run them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// One run for all missed slots (the newest).
    #[default]
    Once,
    /// Missed slots are not run.
    Skip,
    /// One run if the newest missed slot is at most this old, else skip.
    Within(#[serde(with = "human_duration")] Duration),
}

impl FromStr for CatchUp {
    type Err = String;

    /// Parses "once", "skip", "within 6h" / "within=6h" / "within = 6h" (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim().to_ascii_lowercase();
        match text.as_str() {
            "once" => return Ok(CatchUp::Once),
            "skip" => return Ok(CatchUp::Skip),
            _ => {}
        }
        let Some(rest) = text.strip_prefix("within") else {
            return Err(format!(
                "invalid catch_up {s:?}: expected \"once\", \"skip\" or \"within <duration>\" (e.g. \"within 6h\")"
            ));
        };
        let rest = rest.trim_start();
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
        if rest.is_empty() {
            return Err(format!(
                "invalid catch_up {s:?}: \"within\" needs a duration (e.g. \"within 6h\")"
            ));
        }
        let window = crate::duration::parse_duration(rest)
            .map_err(|e| format!("invalid catch_up {s:?}: {e}"))?;
        if window.is_zero() {
            return Err(format!(
                "invalid catch_up {s:?}: the window must be longer than 0 (e.g. \"within 6h\")"
            ));
        }
        Ok(CatchUp::Within(window))
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUp::Once => f.write_str("once"),
            CatchUp::Skip => f.write_str("skip"),
            CatchUp::Within(d) => write!(f, "within {}", format_duration(*d)),
        }
    }
}

/// A duration the way people write it: "6h", "1h30m", "2d", "45s" (whole seconds).
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Serde for a duration as text ("6h"), read with [`crate::duration::parse_duration`].
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        crate::duration::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Retries after a failed run: `delay`, then growing by `factor`, at most `max_delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first failure; 0 = none.
    pub attempts: u32,
    /// The delay before the first retry.
    pub delay: Duration,
    /// Each further retry waits this many times longer (values below 1 count as 1).
    pub factor: f64,
    /// No retry waits longer than this (it also caps `delay`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 0,
            delay: Duration::from_secs(300),
            factor: 2.0,
            max_delay: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `retry_no` (1-based): `delay * factor^(retry_no - 1)`, capped.
    pub fn delay_for(&self, retry_no: u32) -> Duration {
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let exponent = i32::try_from(retry_no.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.delay.as_secs_f64() * factor.powi(exponent);
        let max = self.max_delay.as_secs_f64();
        Duration::from_secs_f64(if secs.is_finite() { secs.min(max) } else { max })
    }

    /// The retry to schedule after a failed attempt at `now`: the first after a regular run
    /// (`previous` None), the next after a failed retry; None when no attempts are left.
    pub fn after_failure(
        &self,
        slot: Option<Slot>,
        previous: Option<&PendingRetry>,
        now: DateTime<Utc>,
        error: &str,
    ) -> Option<PendingRetry> {
        let number = previous.map_or(1, |p| p.number + 1);
        if number > self.attempts {
            return None;
        }
        Some(PendingRetry {
            number,
            of: self.attempts,
            due: now + to_chrono(self.delay_for(number)),
            slot,
            last_error: error.to_string(),
        })
    }
}

/// Why the daemon is deciding now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wake {
    /// The daemon just started.
    Startup,
    /// The timer of an earlier [`Decision::Sleep`] (or the end of a run).
    Timer,
    /// The wall clock jumped (positive: forward).
    ClockJump {
        /// How far, in seconds.
        by_seconds: i64,
    },
    /// The system woke from sleep.
    Resume,
    /// A tick of the OS timer started `backupd run-due` (on time like [`Wake::Timer`]).
    Tick,
}

impl Wake {
    /// Why slots were missed, for [`RunReason::CatchUp`]'s `cause`.
    fn cause(&self) -> String {
        match self {
            Wake::Startup => "while backupd was stopped".to_string(),
            Wake::Timer => "while the daemon was busy or the machine was suspended".to_string(),
            Wake::ClockJump { by_seconds } if *by_seconds < 0 => {
                format!(
                    "after the clock jumped back {} s",
                    by_seconds.unsigned_abs()
                )
            }
            Wake::ClockJump { by_seconds } => {
                format!("after the clock jumped forward {by_seconds} s")
            }
            Wake::Resume => "while the system was asleep".to_string(),
            Wake::Tick => {
                "while the OS timer did not start backupd (the machine was off or asleep, or the timer was stopped)".to_string()
            }
        }
    }
}

/// What the scheduler remembers about a job (the daemon persists it; [`decide`] only reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// The newest slot that was run or deliberately skipped (consumed). None: never.
    pub last_slot: Option<Slot>,
    /// When the daemon first saw this job (the baseline: slots before it are not "missed").
    pub baseline: DateTime<Utc>,
    /// A pending retry, if any.
    pub retry: Option<PendingRetry>,
}

impl ScheduleState {
    /// A job first seen at `baseline` (the tests' shorthand).
    #[cfg(test)]
    pub fn new(baseline: DateTime<Utc>) -> Self {
        ScheduleState {
            last_slot: None,
            baseline,
            retry: None,
        }
    }

    /// Slots at or before this instant are consumed or predate the job.
    pub fn consumed_until(&self) -> DateTime<Utc> {
        match self.last_slot {
            Some(slot) => slot.at.max(self.baseline),
            None => self.baseline,
        }
    }
}

/// A retry waiting to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRetry {
    /// This is retry `number` ...
    pub number: u32,
    /// ... of `of`.
    pub of: u32,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// The slot it retries (None for a manual run).
    pub slot: Option<Slot>,
    /// The error of the last attempt.
    pub last_error: String,
}

/// A job's timing configuration, borrowed for [`decide`].
#[derive(Debug, Clone, Copy)]
pub struct JobTiming<'a> {
    /// When it runs.
    pub schedule: &'a Schedule,
    /// What to do about missed slots.
    pub catch_up: &'a CatchUp,
    /// Each slot runs up to this much later (see [`jitter_for`]).
    pub jitter: Duration,
    /// The job's name (seeds the jitter).
    pub job: &'a str,
}

/// What [`decide`] tells the daemon to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run now. `slot` is consumed (becomes last_slot) when Some; a pending retry is dropped
    /// when a regular slot runs.
    Run {
        /// The slot this run consumes (None for a retry of a manual run's failure).
        slot: Option<Slot>,
        /// Why it runs.
        reason: RunReason,
    },
    /// Consume these missed slots without running (catch_up skip / too old for within); then
    /// decide again.
    Skip {
        /// The newest missed slot; it becomes last_slot.
        slot: Slot,
        /// How many slots are skipped.
        missed: usize,
        /// Why, for the log.
        reason: String,
    },
    /// Nothing due; wake at `at` (already including jitter).
    Sleep {
        /// When to decide again: the next slot's due time, or a pending retry's if earlier.
        at: DateTime<Utc>,
        /// The next regular slot (None if the schedule has none; `at` is then a day away).
        slot: Option<Slot>,
    },
}

/// Why a run happens (logged, and shown by `backupctl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunReason {
    /// The slot came and the daemon ran it on time.
    Scheduled {
        /// The slot.
        slot: Slot,
    },
    /// One run for slots missed.
    CatchUp {
        /// The newest missed slot (the one consumed).
        slot: Slot,
        /// How many slots were missed, this one included.
        missed: usize,
        /// The oldest missed slot.
        first_missed: Slot,
        /// Why they were missed: "while backupd was stopped", ...
        cause: String,
    },
    /// A retry after a failure.
    Retry {
        /// Retry `number` ...
        number: u32,
        /// ... of `of`.
        of: u32,
        /// The slot it retries.
        slot: Option<Slot>,
        /// The error of the last attempt.
        last_error: String,
    },
    /// Asked for by a person (`backupctl run`). It is retried after a failure only when the
    /// person asked for that (`backupctl run --retry`).
    Manual {
        /// Retry it after a failure, as the job's `retries` say.
        #[serde(default)]
        retry: bool,
    },
    /// A destination job's run (`app@offsite`): a run of its job saved a snapshot to copy.
    AfterBackup {
        /// The job that backed up.
        job: String,
        /// Its run.
        run_id: String,
    },
}

impl RunReason {
    /// One line for people, each slot with its zone ([`Slot::zoned_label`]): "scheduled
    /// 2026-03-29 02:30 Europe/Berlin", "catch-up for 2026-03-29 02:30 Europe/Berlin missed
    /// while backupd was stopped (3 slots missed since 2026-03-27 02:30 Europe/Berlin)", "retry
    /// 2 of 3 for 2026-03-29 02:30 Europe/Berlin", "manual".
    pub fn describe(&self) -> String {
        match self {
            RunReason::Scheduled { slot } => format!("scheduled {}", slot.zoned_label()),
            RunReason::CatchUp {
                slot,
                missed,
                first_missed,
                cause,
            } => format!(
                "catch-up for {} missed {cause}{}",
                slot.zoned_label(),
                missed_since(*missed, first_missed)
            ),
            RunReason::Retry {
                number, of, slot, ..
            } => match slot {
                Some(slot) => format!("retry {number} of {of} for {}", slot.zoned_label()),
                None => format!("retry {number} of {of}"),
            },
            RunReason::Manual { retry: false } => "manual".to_string(),
            RunReason::Manual { retry: true } => "manual, retried on failure".to_string(),
            RunReason::AfterBackup { job, run_id } => format!("after run {run_id} of job {job}"),
        }
    }
}

/// " (3 slots missed since 2026-03-27 02:30)", or nothing for one slot.
fn missed_since(missed: usize, first: &Slot) -> String {
    match missed {
        0 | 1 => String::new(),
        n if n >= MAX_SLOT_COUNT => {
            format!(" (at least {n} slots missed since {})", first.zoned_label())
        }
        n => format!(" ({n} slots missed since {})", first.zoned_label()),
    }
}

/// Deterministic jitter for (job, slot): a value in `[0, jitter)` in whole milliseconds (zero
/// below 1 ms), from an FNV-1a hash of "job|slot instant", so a restart computes the same due
/// time.
pub fn jitter_for(job: &str, slot: &Slot, jitter: Duration) -> Duration {
    let range = jitter.as_millis();
    if range == 0 {
        return Duration::ZERO;
    }
    let key = format!("{job}|{}", slot.at.timestamp());
    let millis = u128::from(fnv1a64(key.as_bytes())) % range;
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When a slot is due: its instant plus the job's jitter for it.
fn due_at(t: &JobTiming, slot: &Slot) -> DateTime<Utc> {
    slot.at + to_chrono(jitter_for(t.job, slot, t.jitter))
}

/// THE pure function: (schedule timing, last state, now, why we woke) -> what to do.
///
/// Slots in `(max(last_slot.at, baseline), now]` whose due time (instant + jitter) has come are
/// due, and so is every older unconsumed slot. One due slot on time (a timer wake within
/// [`ON_TIME_GRACE_SECS`] of its due time) runs as scheduled; anything else is a catch-up of the
/// newest due slot, handled by the job's [`CatchUp`]. A due slot beats a pending retry (the
/// daemon drops the retry); a retry runs only when no slot is due. A consumed slot is never due
/// again, so a clock that jumps back never runs a slot twice.
pub fn decide(t: &JobTiming, s: &ScheduleState, now: DateTime<Utc>, wake: &Wake) -> Decision {
    let after = s.consumed_until();
    if let Some(newest) = newest_due(t, after, now) {
        return decide_due(t, after, newest, now, wake);
    }
    if let Some(retry) = s.retry.as_ref().filter(|r| r.due <= now) {
        return Decision::Run {
            slot: None,
            reason: RunReason::Retry {
                number: retry.number,
                of: retry.of,
                slot: retry.slot,
                last_error: retry.last_error.clone(),
            },
        };
    }
    sleep_until_next(t, s, after, now)
}

/// The newest slot in `(after, now]` that is due by `now`.
fn newest_due(t: &JobTiming, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<Slot> {
    let mut candidate = t.schedule.last_at_or_before(now)?;
    while candidate.at > after {
        if due_at(t, &candidate) <= now {
            return Some(candidate);
        }
        // Only slots within the jitter of `now` can still be waiting.
        candidate = t
            .schedule
            .last_at_or_before(candidate.at - chrono::Duration::nanoseconds(1))?;
    }
    None
}

/// Run on time, or catch up on the due slots `(after, newest]`.
fn decide_due(
    t: &JobTiming,
    after: DateTime<Utc>,
    newest: Slot,
    now: DateTime<Utc>,
    wake: &Wake,
) -> Decision {
    let (first, missed) = t.schedule.slots_between(after, newest.at, 1);
    let first_missed = first.first().copied().unwrap_or(newest);
    let late = now - due_at(t, &newest);
    if missed <= 1
        && matches!(wake, Wake::Timer | Wake::Tick)
        && late <= chrono::Duration::seconds(ON_TIME_GRACE_SECS)
    {
        return Decision::Run {
            slot: Some(newest),
            reason: RunReason::Scheduled { slot: newest },
        };
    }
    let missed = CatchUpRun {
        slot: newest,
        missed: missed.max(1),
        first_missed,
        cause: wake.cause(),
    };
    missed.decide(t.catch_up, now)
}

/// A catch-up waiting for the job's policy.
struct CatchUpRun {
    slot: Slot,
    missed: usize,
    first_missed: Slot,
    cause: String,
}

impl CatchUpRun {
    /// Applies the job's catch-up policy.
    fn decide(self, policy: &CatchUp, now: DateTime<Utc>) -> Decision {
        match policy {
            CatchUp::Once => self.run(),
            CatchUp::Skip => self.skip("catch_up is skip".to_string()),
            CatchUp::Within(window) => {
                let age = now - self.slot.at;
                if age <= to_chrono(*window) {
                    self.run()
                } else {
                    let age = format_duration(age.to_std().unwrap_or_default());
                    let window = format_duration(*window);
                    self.skip(format!(
                        "it is {age} old, older than {window} (catch_up is within {window})"
                    ))
                }
            }
        }
    }

    fn run(self) -> Decision {
        Decision::Run {
            slot: Some(self.slot),
            reason: RunReason::CatchUp {
                slot: self.slot,
                missed: self.missed,
                first_missed: self.first_missed,
                cause: self.cause,
            },
        }
    }

    fn skip(self, why: String) -> Decision {
        Decision::Skip {
            slot: self.slot,
            missed: self.missed,
            reason: format!(
                "skipped {} missed {}{}: {why}",
                self.slot.zoned_label(),
                self.cause,
                missed_since(self.missed, &self.first_missed)
            ),
        }
    }
}

/// Nothing due: wake for the next slot's due time, or a pending retry's if earlier.
fn sleep_until_next(
    t: &JobTiming,
    s: &ScheduleState,
    after: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Decision {
    let next = t.schedule.next_after(after);
    let slot_due = next.map(|slot| due_at(t, &slot));
    let retry_due = s.retry.as_ref().map(|r| r.due);
    let at = match (slot_due, retry_due) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => now + chrono::Duration::days(1),
    };
    Decision::Sleep { at, slot: next }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Datelike, NaiveDate, Weekday};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap()
    }

    fn wall(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, mi, s)
            .unwrap()
    }

    fn sched(expr: &str, tz: &str) -> Schedule {
        Schedule::parse(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn mins(n: i64) -> chrono::Duration {
        chrono::Duration::minutes(n)
    }

    /// All slots with from < at <= to.
    fn all_between(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let (slots, count) = s.slots_between(from, to, usize::MAX);
        assert_eq!(slots.len(), count);
        slots
    }

    fn assert_strictly_increasing(slots: &[Slot]) {
        for pair in slots.windows(2) {
            assert!(pair[0].at < pair[1].at, "{pair:?}");
            assert!(pair[0].wall < pair[1].wall, "{pair:?}");
        }
    }

    // ---- parsing ----

    #[test]
    fn five_fields() {
        let s = sched("  30 2 * * *  ", "Europe/Berlin");
        assert_eq!(s.expr(), "30 2 * * *");
        assert_eq!(s.tz_name(), "Europe/Berlin");
        let n = s.next_after(utc(2026, 1, 10, 12, 0, 0)).unwrap();
        assert_eq!(n.wall, wall(2026, 1, 11, 2, 30, 0));
        assert_eq!(n.at, utc(2026, 1, 11, 1, 30, 0)); // CET is UTC+1
        assert_eq!(n.label(), "2026-01-11 02:30");
        assert_eq!(n.time_label(), "02:30");
        assert_eq!(n.zoned_label(), "2026-01-11 02:30 Europe/Berlin");
        assert_eq!(n.to_string(), "2026-01-11 02:30 Europe/Berlin");
    }

    #[test]
    fn a_slot_keeps_its_zone_for_people_but_not_for_comparison() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        // 02:30 on 2026-03-29 does not exist in Berlin: the label names the zone, not an offset.
        let gap = s.next_after(utc(2026, 3, 28, 12, 0, 0)).unwrap();
        assert_eq!(gap.label(), "2026-03-29 02:30");
        assert_eq!(gap.zoned_label(), "2026-03-29 02:30 Europe/Berlin");
        let json = serde_json::to_string(&gap).unwrap();
        assert!(json.contains(r#""zone":"Europe/Berlin""#), "{json}");
        // A slot from a state file written before the zone was kept is the same slot.
        let old: Slot =
            serde_json::from_str(&json.replace(r#","zone":"Europe/Berlin""#, "")).unwrap();
        assert_eq!(old, gap);
        assert_eq!(old.zone, None);
        assert_eq!(old.zoned_label(), "2026-03-29 02:30");
        let unknown: Slot =
            serde_json::from_str(&json.replace("Europe/Berlin", "Mars/Olympus")).unwrap();
        assert_eq!((unknown, unknown.zone), (gap, None));
    }

    #[test]
    fn six_fields_seconds_first() {
        let s = sched("15 30 2 * * *", "UTC");
        let n = s.next_after(utc(2026, 1, 10, 12, 0, 0)).unwrap();
        assert_eq!(n.at, utc(2026, 1, 11, 2, 30, 15));
        assert_eq!(n.label(), "2026-01-11 02:30:15");
        assert_eq!(n.time_label(), "02:30:15");
        let s = sched("*/10 * * * * *", "UTC");
        let (slots, count) = s.slots_between(utc(2026, 1, 1, 0, 0, 3), utc(2026, 1, 1, 0, 1, 0), 2);
        assert_eq!(count, 6); // :10 :20 :30 :40 :50 and 00:01:00
        assert_eq!(slots[0].at, utc(2026, 1, 1, 0, 0, 10));
        assert_eq!(slots[1].at, utc(2026, 1, 1, 0, 0, 20));
    }

    #[test]
    fn aliases() {
        let t = utc(2026, 1, 7, 10, 20, 0); // a Wednesday
        for (alias, expected) in [
            ("@hourly", utc(2026, 1, 7, 11, 0, 0)),
            ("@daily", utc(2026, 1, 8, 0, 0, 0)),
            ("@midnight", utc(2026, 1, 8, 0, 0, 0)),
            ("@DAILY", utc(2026, 1, 8, 0, 0, 0)),
            ("@weekly", utc(2026, 1, 11, 0, 0, 0)), // Sunday
            ("@monthly", utc(2026, 2, 1, 0, 0, 0)),
            ("@yearly", utc(2027, 1, 1, 0, 0, 0)),
            ("@annually", utc(2027, 1, 1, 0, 0, 0)),
        ] {
            let s = sched(alias, "UTC");
            assert_eq!(s.expr(), alias);
            assert_eq!(s.next_after(t).unwrap().at, expected, "{alias}");
        }
    }

    #[test]
    fn names_ranges_steps_lists() {
        let friday = utc(2026, 1, 9, 10, 0, 0);
        for expr in ["0 9 * * MON-FRI", "0 9 * * mon-fri", "0 9 * * 1-5"] {
            let s = sched(expr, "UTC");
            let slots = all_between(&s, friday, utc(2026, 1, 17, 0, 0, 0));
            let days: Vec<u32> = slots.iter().map(|s| s.wall.day()).collect();
            assert_eq!(days, [12, 13, 14, 15, 16], "{expr}"); // Mon..Fri, not Sat 10th / Sun 11th
        }
        let s = sched("0 0 1 JAN *", "UTC");
        assert_eq!(
            s.next_after(utc(2026, 2, 1, 0, 0, 0)).unwrap().at,
            utc(2027, 1, 1, 0, 0, 0)
        );
        let s = sched("0 0 1 jun-aug *", "UTC");
        let months: Vec<u32> = all_between(&s, utc(2026, 1, 1, 0, 0, 0), utc(2027, 1, 1, 0, 0, 0))
            .iter()
            .map(|s| s.wall.month())
            .collect();
        assert_eq!(months, [6, 7, 8]);
        let s = sched("0,30 8-10/2 * * *", "UTC");
        let slots = all_between(&s, utc(2026, 1, 7, 0, 0, 0), utc(2026, 1, 8, 9, 0, 0));
        let labels: Vec<String> = slots.iter().map(Slot::label).collect();
        assert_eq!(
            labels,
            [
                "2026-01-07 08:00",
                "2026-01-07 08:30",
                "2026-01-07 10:00",
                "2026-01-07 10:30",
                "2026-01-08 08:00",
                "2026-01-08 08:30"
            ]
        );
    }

    #[test]
    fn sunday_is_0_and_7() {
        let (from, to) = (utc(2026, 1, 1, 0, 0, 0), utc(2026, 4, 1, 0, 0, 0));
        let zero = all_between(&sched("0 0 * * 0", "UTC"), from, to);
        let seven = all_between(&sched("0 0 * * 7", "UTC"), from, to);
        let sun = all_between(&sched("0 0 * * SUN", "UTC"), from, to);
        assert_eq!(zero.len(), 13); // Jan 4 .. Mar 29
        assert!(zero.iter().all(|s| s.wall.weekday() == Weekday::Sun));
        assert_eq!(zero, seven);
        assert_eq!(zero, sun);
        let weekend = all_between(&sched("0 0 * * 5-7", "UTC"), from, to);
        assert!(weekend
            .iter()
            .all(|s| matches!(s.wall.weekday(), Weekday::Fri | Weekday::Sat | Weekday::Sun)));
        assert_eq!(weekend.len(), 13 * 3); // 13 Fridays (Jan 2 .. Mar 27), Saturdays and Sundays
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        let s = sched("0 0 13 * 5", "UTC");
        let slots = all_between(&s, utc(2025, 12, 31, 0, 0, 0), utc(2026, 12, 31, 0, 0, 0));
        let expected: Vec<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .iter_days()
            .take(365)
            .filter(|d| d.day() == 13 || d.weekday() == Weekday::Fri)
            .collect();
        let got: Vec<NaiveDate> = slots.iter().map(|s| s.wall.date()).collect();
        assert_eq!(got, expected);
        assert!(got.contains(&NaiveDate::from_ymd_opt(2026, 1, 13).unwrap())); // a Tuesday
        assert!(got.contains(&NaiveDate::from_ymd_opt(2026, 1, 16).unwrap())); // a Friday
        assert_eq!(got.len(), 52 + 12 - 3); // 52 Fridays, 12 13ths, 3 of them Friday the 13th
    }

    #[test]
    fn invalid_expressions_say_what_is_wrong() {
        let err = |expr: &str| Schedule::parse(expr, Some("UTC")).unwrap_err();
        assert_eq!(err(""), ScheduleError::Empty);
        assert_eq!(err("   "), ScheduleError::Empty);
        assert!(err("").to_string().contains("\"30 2 * * *\""));
        let e = err("30 2 * *");
        assert_eq!(
            e,
            ScheduleError::FieldCount {
                expr: "30 2 * *".into(),
                found: 4
            }
        );
        assert!(e.to_string().contains("has 4 field(s)"), "{e}");
        assert!(e.to_string().contains("e.g. \"30 2 * * *\""), "{e}");
        assert!(matches!(
            err("0 30 2 * * * 2026"),
            ScheduleError::FieldCount { found: 7, .. }
        ));
        for bad in [
            "61 * * * *",
            "0 25 * * *",
            "* * * * FOO",
            "0 0 0 * *",
            "0 0 * 13 *",
            "x * * * *",
            "*/0 * * * *",
        ] {
            let e = err(bad);
            assert!(matches!(e, ScheduleError::Invalid { .. }), "{bad}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("e.g. \"30 2 * * *\""), "{text}");
        }
        for (bad, field, allowed) in [
            ("61 * * * *", "the minute field \"61\"", "0-59"),
            ("0 25 * * *", "the hour field \"25\"", "0-23"),
            ("0 0 0 * *", "the day-of-month field \"0\"", "1-31"),
            ("* * * * FOO", "the day-of-week field \"FOO\"", "SUN-SAT"),
            ("0 0 * 13 *", "the month field \"13\"", "JAN-DEC"),
            ("61 0 0 * * *", "the second field \"61\"", "0-59"),
            ("0 61 0 * * *", "the minute field \"61\"", "0-59"),
        ] {
            let text = err(bad).to_string();
            assert!(text.contains(field), "{text}");
            assert!(text.contains(allowed), "{text}");
        }
        let e = err("@often");
        assert_eq!(
            e,
            ScheduleError::UnknownAlias {
                alias: "@often".into()
            }
        );
        assert!(e.to_string().contains("@daily"), "{e}");
        for never in ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6 *"] {
            let e = err(never);
            assert!(
                matches!(e, ScheduleError::NeverMatches { .. }),
                "{never}: {e:?}"
            );
            assert!(e.to_string().contains("never matches"), "{e}");
        }
        // February 29th exists in leap years.
        let leap = sched("0 0 29 2 *", "UTC");
        assert_eq!(
            leap.next_after(utc(2026, 1, 1, 0, 0, 0)).unwrap().at,
            utc(2028, 2, 29, 0, 0, 0)
        );
    }

    #[test]
    fn invalid_time_zones_say_what_is_wrong() {
        for bad in ["Mars/Olympus", "", "Europe/Berlinn", "+02:00"] {
            let e = Schedule::parse("30 2 * * *", Some(bad)).unwrap_err();
            assert_eq!(e, ScheduleError::UnknownTimezone { name: bad.into() });
            let text = e.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("\"Europe/Berlin\""), "{text}");
        }
        assert_eq!(sched("30 2 * * *", " UTC ").tz_name(), "UTC");
    }

    #[test]
    fn local_zone_sources_in_order() {
        let link = Path::new("/usr/share/zoneinfo/America/New_York");
        let pick = |tz: Option<&str>, link: Option<&Path>, file: Option<&str>| {
            zone_from_sources(tz, link, file).name().to_string()
        };
        assert_eq!(
            pick(Some(":Europe/Berlin"), Some(link), None),
            "Europe/Berlin"
        );
        assert_eq!(pick(Some("Asia/Tokyo"), Some(link), None), "Asia/Tokyo");
        assert_eq!(
            pick(Some(":/usr/share/zoneinfo/Europe/Rome"), Some(link), None),
            "Europe/Rome"
        );
        // Not an IANA name (a POSIX rule): the link decides.
        assert_eq!(
            pick(Some("CET-1CEST"), Some(link), None),
            "America/New_York"
        );
        assert_eq!(pick(Some(""), Some(link), None), "America/New_York");
        assert_eq!(
            pick(
                None,
                Some(Path::new("../usr/share/zoneinfo/posix/Asia/Tokyo")),
                None
            ),
            "Asia/Tokyo"
        );
        assert_eq!(
            pick(
                None,
                Some(Path::new("/etc/zoneinfo-copy")),
                Some("Europe/Paris\n")
            ),
            "Europe/Paris"
        );
        assert_eq!(pick(None, None, Some("Europe/Paris\n")), "Europe/Paris");
        assert_eq!(pick(None, None, Some("garbage")), "UTC");
        assert_eq!(pick(None, None, None), "UTC");
        // Whatever the machine has, a schedule without a zone parses and names one.
        let s = Schedule::parse("30 2 * * *", None).unwrap();
        assert!(s.tz_name().parse::<Tz>().is_ok());
    }

    // ---- DST ----

    /// Every slot of a year (local midnight to local midnight), checked for basic sanity.
    fn year_of(s: &Schedule, year: i32) -> Vec<Slot> {
        let from = s.tz.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap().to_utc();
        let to =
            s.tz.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0)
                .unwrap()
                .to_utc();
        let slots = all_between(
            s,
            from - chrono::Duration::seconds(1),
            to - chrono::Duration::seconds(1),
        );
        assert_strictly_increasing(&slots);
        slots
    }

    fn local_time(s: &Schedule, at: DateTime<Utc>) -> NaiveDateTime {
        s.wall_of(at)
    }

    fn check_daily_0230(
        tz: &str,
        spring: NaiveDate,
        spring_at: DateTime<Utc>,
        fall: NaiveDate,
        fall_at: DateTime<Utc>,
    ) {
        let s = sched("30 2 * * *", tz);
        let slots = year_of(&s, 2026);
        assert_eq!(slots.len(), 365, "{tz}");
        let days: Vec<NaiveDate> = slots.iter().map(|s| s.wall.date()).collect();
        let expected: Vec<NaiveDate> = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .iter_days()
            .take(365)
            .collect();
        assert_eq!(days, expected, "{tz}: one slot per calendar day");
        for slot in &slots {
            assert_eq!(slot.wall.time(), wall(2026, 1, 1, 2, 30, 0).time());
            if slot.wall.date() == spring {
                assert_eq!(slot.at, spring_at, "{tz}: the gap's slot runs at its end");
                assert_eq!(
                    local_time(&s, slot.at).time(),
                    wall(2026, 1, 1, 3, 0, 0).time()
                );
                assert_eq!(slot.label(), format!("{spring} 02:30"));
            } else if slot.wall.date() == fall {
                assert_eq!(slot.at, fall_at, "{tz}: fall-back day");
            } else {
                assert_eq!(local_time(&s, slot.at), slot.wall, "{tz}: an ordinary day");
            }
        }
    }

    #[test]
    fn daily_0230_for_a_year_in_berlin() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        // 02:30 on 2026-10-25 happens at 00:30 UTC (CEST) and 01:30 UTC (CET): the earlier.
        check_daily_0230(
            "Europe/Berlin",
            d(3, 29),
            utc(2026, 3, 29, 1, 0, 0),
            d(10, 25),
            utc(2026, 10, 25, 0, 30, 0),
        );
    }

    #[test]
    fn daily_0230_for_a_year_in_new_york() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        // Spring: 02:30 does not exist, 03:00 EDT is 07:00 UTC. Fall: 02:30 EST is after the fold.
        check_daily_0230(
            "America/New_York",
            d(3, 8),
            utc(2026, 3, 8, 7, 0, 0),
            d(11, 1),
            utc(2026, 11, 1, 7, 30, 0),
        );
        // 01:30 is repeated in New York on 2026-11-01: EDT (05:30 UTC), not EST (06:30 UTC).
        let s = sched("30 1 * * *", "America/New_York");
        let slot = s.next_after(utc(2026, 11, 1, 0, 0, 0)).unwrap();
        assert_eq!(slot.at, utc(2026, 11, 1, 5, 30, 0));
        assert_eq!(
            s.next_after(slot.at).unwrap().at,
            utc(2026, 11, 2, 6, 30, 0)
        );
        assert_eq!(year_of(&s, 2026).len(), 365);
    }

    /// The hourly slots whose wall time is on `day`.
    fn hourly_on(s: &Schedule, day: NaiveDate) -> Vec<Slot> {
        let midnight = day.and_hms_opt(0, 0, 0).unwrap().and_utc();
        all_between(
            s,
            midnight - chrono::Duration::days(1),
            midnight + chrono::Duration::days(2),
        )
        .into_iter()
        .filter(|slot| slot.wall.date() == day)
        .collect()
    }

    fn check_hourly(
        tz: &str,
        spring: NaiveDate,
        gap_end: DateTime<Utc>,
        fall: NaiveDate,
        fold_hour: u32,
        fold_start: DateTime<Utc>,
    ) {
        let s = sched("0 * * * *", tz);
        let spring_slots = hourly_on(&s, spring);
        assert_eq!(spring_slots.len(), 23, "{tz}");
        assert_strictly_increasing(&spring_slots);
        assert!(
            spring_slots.iter().all(|s| s.wall.hour() != 2),
            "{tz}: 02:00 merges into 03:00"
        );
        let three = spring_slots.iter().find(|s| s.wall.hour() == 3).unwrap();
        assert_eq!(three.at, gap_end);
        assert!(spring_slots
            .windows(2)
            .all(|p| p[1].at - p[0].at == mins(60)));

        let fall_slots = hourly_on(&s, fall);
        assert_eq!(fall_slots.len(), 24, "{tz}");
        assert_strictly_increasing(&fall_slots);
        let hours: Vec<u32> = fall_slots.iter().map(|s| s.wall.hour()).collect();
        assert_eq!(hours, (0..24).collect::<Vec<_>>());
        let repeated = fall_slots[fold_hour as usize];
        assert_eq!(
            repeated.at, fold_start,
            "{tz}: the repeated hour runs in its first pass"
        );
        let gaps: Vec<i64> = fall_slots
            .windows(2)
            .map(|p| (p[1].at - p[0].at).num_minutes())
            .collect();
        assert_eq!(
            gaps.iter().filter(|&&g| g == 120).count(),
            1,
            "{tz}: {gaps:?}"
        );
        assert!(gaps.iter().all(|&g| g == 60 || g == 120));

        // From anywhere in the second pass of the repeated hour, the next slot is after it.
        let second_pass = fold_start + mins(60);
        let after_fold = fold_start + mins(120);
        for m in 0..60 {
            let t = second_pass + mins(m) + chrono::Duration::seconds(7);
            let next = s.next_after(t).unwrap();
            assert!(next.at > t);
            assert_eq!(next.at, after_fold, "{tz}: from {t}");
            assert_eq!(next.wall.hour(), fold_hour + 1);
            assert_eq!(s.last_at_or_before(t).unwrap(), repeated);
        }
    }

    #[test]
    fn hourly_across_transitions_in_berlin() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        check_hourly(
            "Europe/Berlin",
            d(3, 29),
            utc(2026, 3, 29, 1, 0, 0),
            d(10, 25),
            2,
            utc(2026, 10, 25, 0, 0, 0),
        );
    }

    #[test]
    fn hourly_across_transitions_in_new_york() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        check_hourly(
            "America/New_York",
            d(3, 8),
            utc(2026, 3, 8, 7, 0, 0),
            d(11, 1),
            1,
            utc(2026, 11, 1, 5, 0, 0),
        );
    }

    #[test]
    fn every_15_minutes_across_new_york_transitions() {
        let s = sched("*/15 * * * *", "America/New_York");
        // Spring: 01:45 EST, then 02:00-02:45 do not exist and merge into 03:00 EDT.
        let slots = all_between(&s, utc(2026, 3, 8, 5, 59, 0), utc(2026, 3, 8, 8, 0, 0));
        let got: Vec<(String, DateTime<Utc>)> =
            slots.iter().map(|s| (s.time_label(), s.at)).collect();
        let expected: Vec<(String, DateTime<Utc>)> = [
            ("01:00", 6, 0),
            ("01:15", 6, 15),
            ("01:30", 6, 30),
            ("01:45", 6, 45),
            ("03:00", 7, 0),
            ("03:15", 7, 15),
            ("03:30", 7, 30),
            ("03:45", 7, 45),
            ("04:00", 8, 0),
        ]
        .iter()
        .map(|&(l, h, m)| (l.to_string(), utc(2026, 3, 8, h, m, 0)))
        .collect();
        assert_eq!(got, expected);
        // The merged slot is the same whichever way it is found.
        let merged = slots[4];
        assert_eq!(s.next_after(utc(2026, 3, 8, 6, 45, 0)).unwrap(), merged);
        assert_eq!(s.last_at_or_before(merged.at).unwrap(), merged);
        assert_eq!(
            s.last_at_or_before(utc(2026, 3, 8, 7, 14, 59)).unwrap(),
            merged
        );
        // Fall: 01:00-01:45 EDT run, the EST repeat (06:00-06:59 UTC) is silent, then 02:00 EST.
        let slots = all_between(&s, utc(2026, 11, 1, 4, 59, 0), utc(2026, 11, 1, 7, 15, 0));
        let got: Vec<(String, DateTime<Utc>)> =
            slots.iter().map(|s| (s.time_label(), s.at)).collect();
        let expected: Vec<(String, DateTime<Utc>)> = [
            ("01:00", 5, 0),
            ("01:15", 5, 15),
            ("01:30", 5, 30),
            ("01:45", 5, 45),
            ("02:00", 7, 0),
            ("02:15", 7, 15),
        ]
        .iter()
        .map(|&(l, h, m)| (l.to_string(), utc(2026, 11, 1, h, m, 0)))
        .collect();
        assert_eq!(got, expected);
        let in_repeat = utc(2026, 11, 1, 6, 20, 0); // 01:20 EST, second pass
        assert_eq!(
            s.next_after(in_repeat).unwrap().at,
            utc(2026, 11, 1, 7, 0, 0)
        );
        assert_eq!(
            s.last_at_or_before(in_repeat).unwrap().at,
            utc(2026, 11, 1, 5, 45, 0)
        );
        assert_eq!(
            s.last_at_or_before(in_repeat).unwrap().time_label(),
            "01:45"
        );
    }

    /// An independent model of the DST rules: walk the instants minute by minute and run every
    /// matching wall time the first time the clock reaches (or jumps over) it, labelled with
    /// the latest such wall time.
    fn oracle(s: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Slot> {
        let mut out = Vec::new();
        let mut max_seen = s.wall_of(from);
        let mut x = from + mins(1);
        while x <= to {
            let w = s.wall_of(x);
            let mut candidate = max_seen + mins(1);
            let mut label = None;
            while candidate <= w {
                if s.cron.is_time_matching(&candidate).unwrap() {
                    label = Some(candidate);
                }
                candidate += mins(1);
            }
            if let Some(wall) = label {
                out.push(Slot {
                    wall,
                    at: x,
                    zone: None,
                });
            }
            max_seen = max_seen.max(w);
            x += mins(1);
        }
        out
    }

    #[test]
    fn dst_rules_match_a_minute_by_minute_model() {
        let zones = [
            ("Europe/Berlin", [(3, 29), (10, 25)]),
            ("America/New_York", [(3, 8), (11, 1)]),
            ("Australia/Sydney", [(4, 5), (10, 4)]),
            ("Australia/Lord_Howe", [(4, 5), (10, 4)]), // a 30-minute shift
        ];
        let patterns = [
            "*/15 * * * *",
            "0 * * * *",
            "30 2 * * *",
            "*/20 1-3 * * *",
            "45 1,2 * * *",
            "10,40 * * * *",
        ];
        for (tz, days) in zones {
            for (m, d) in days {
                for expr in patterns {
                    let s = sched(expr, tz);
                    let from = utc(2026, m, d, 0, 0, 0) - chrono::Duration::days(1);
                    let to = from + chrono::Duration::days(3);
                    let expected = oracle(&s, from, to);
                    let got = all_between(&s, from, to);
                    assert_eq!(got, expected, "{tz} {expr} around {m}-{d}");
                    assert_strictly_increasing(&got);
                    for (i, slot) in got.iter().enumerate() {
                        assert_eq!(s.last_at_or_before(slot.at), Some(*slot));
                        let before = s.last_at_or_before(slot.at - chrono::Duration::seconds(1));
                        if i > 0 {
                            assert_eq!(before, Some(got[i - 1]), "{tz} {expr}");
                        }
                    }
                    let mut t = from;
                    while t < to - chrono::Duration::hours(6) {
                        let Some(want) = expected.iter().find(|slot| slot.at > t) else {
                            break;
                        };
                        assert_eq!(s.next_after(t).as_ref(), Some(want), "{tz} {expr} from {t}");
                        if let Some(last) = expected.iter().rev().find(|slot| slot.at <= t) {
                            assert_eq!(
                                s.last_at_or_before(t).as_ref(),
                                Some(last),
                                "{tz} {expr} at {t}"
                            );
                        }
                        t += mins(1);
                    }
                }
            }
        }
    }

    #[test]
    fn slots_between_limits_and_caps() {
        let s = sched("0 * * * *", "UTC");
        let (slots, count) = s.slots_between(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 2, 0, 0, 0), 3);
        assert_eq!(count, 24); // 01:00 .. next 00:00 inclusive, not 00:00 itself
        assert_eq!(slots.len(), 3);
        assert_eq!(slots[0].at, utc(2026, 1, 1, 1, 0, 0));
        let (none, zero) =
            s.slots_between(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 59, 59), 10);
        assert!(none.is_empty());
        assert_eq!(zero, 0);
        let every_second = sched("* * * * * *", "UTC");
        let (slots, count) =
            every_second.slots_between(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 4, 0, 0, 0), 5);
        assert_eq!(count, MAX_SLOT_COUNT);
        assert_eq!(slots.len(), 5);
    }

    #[test]
    fn interval_hints() {
        let t = utc(2026, 1, 10, 12, 0, 0);
        assert_eq!(
            sched("30 2 * * *", "Europe/Berlin").interval_hint(t),
            Some(chrono::Duration::days(1))
        );
        assert_eq!(sched("@hourly", "UTC").interval_hint(t), Some(mins(60)));
        assert_eq!(
            sched("*/10 * * * * *", "UTC").interval_hint(t),
            Some(chrono::Duration::seconds(10))
        );
        assert_eq!(
            sched("0 9 * * MON-FRI", "UTC").interval_hint(t),
            Some(chrono::Duration::days(1))
        );
        // Across the spring-forward night a "day" is shorter.
        let short = sched("30 2 * * *", "Europe/Berlin").interval_hint(utc(2026, 3, 28, 12, 0, 0));
        assert_eq!(short, Some(mins(23 * 60 + 30)));
    }

    // ---- catch_up, retry, jitter ----

    #[test]
    fn catch_up_from_config_text() {
        let six = CatchUp::Within(Duration::from_secs(6 * 3600));
        for (text, want) in [
            ("once", CatchUp::Once),
            (" Skip ", CatchUp::Skip),
            ("within 6h", six.clone()),
            ("within=6h", six.clone()),
            ("within = 6h", six.clone()),
            ("WITHIN 1h30m", CatchUp::Within(Duration::from_secs(5400))),
        ] {
            assert_eq!(text.parse::<CatchUp>(), Ok(want), "{text}");
        }
        for bad in [
            "sometimes",
            "",
            "within",
            "within =",
            "within 6x",
            "within 0s",
            "once 6h",
        ] {
            let e = bad.parse::<CatchUp>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("within 6h") || e.contains("unit"), "{e}");
        }
        assert_eq!(CatchUp::default(), CatchUp::Once);
        assert_eq!(six.to_string(), "within 6h");
        assert_eq!(
            CatchUp::Within(Duration::from_secs(93_780)).to_string(),
            "within 1d2h3m"
        );
        assert_eq!(serde_json::to_string(&six).unwrap(), r#"{"within":"6h"}"#);
        assert_eq!(serde_json::to_string(&CatchUp::Skip).unwrap(), r#""skip""#);
        for c in [
            CatchUp::Once,
            CatchUp::Skip,
            six,
            CatchUp::Within(Duration::from_secs(90)),
        ] {
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<CatchUp>(&json).unwrap(), c);
            assert_eq!(c.to_string().parse::<CatchUp>().unwrap(), c);
        }
        assert!(serde_json::from_str::<CatchUp>(r#"{"within":"6x"}"#).is_err());
    }

    #[test]
    fn format_durations() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400 + 5)), "2d5s");
    }

    #[test]
    fn retry_delays_grow_and_cap() {
        let p = RetryPolicy {
            attempts: 3,
            delay: Duration::from_secs(60),
            factor: 2.0,
            max_delay: Duration::from_secs(600),
        };
        let secs: Vec<u64> = [1, 2, 3, 4, 5, 100, u32::MAX]
            .iter()
            .map(|&n| p.delay_for(n).as_secs())
            .collect();
        assert_eq!(secs, [60, 120, 240, 480, 600, 600, 600]);
        let flat = RetryPolicy {
            factor: 1.0,
            ..p.clone()
        };
        assert_eq!(flat.delay_for(7), Duration::from_secs(60));
        let odd = RetryPolicy {
            factor: f64::NAN,
            ..p.clone()
        };
        assert_eq!(odd.delay_for(3), Duration::from_secs(60));
        let now = utc(2026, 3, 5, 2, 40, 0);
        let slot = sched("30 2 * * *", "UTC").last_at_or_before(now);
        let first = p.after_failure(slot, None, now, "disk full").unwrap();
        assert_eq!((first.number, first.of, first.due), (1, 3, now + mins(1)));
        assert_eq!(first.slot, slot);
        let second = p.after_failure(slot, Some(&first), now, "again").unwrap();
        assert_eq!(
            (second.number, second.due, second.last_error.as_str()),
            (2, now + mins(2), "again")
        );
        let third = p.after_failure(slot, Some(&second), now, "x").unwrap();
        assert!(p.after_failure(slot, Some(&third), now, "x").is_none());
        assert!(RetryPolicy::default()
            .after_failure(slot, None, now, "x")
            .is_none());
    }

    #[test]
    fn jitter_is_stable_bounded_and_spread() {
        let s = sched("0 * * * *", "UTC");
        let slot = sched("30 2 * * *", "UTC")
            .next_after(utc(2026, 3, 5, 0, 0, 0))
            .unwrap();
        let hour = Duration::from_secs(3600);
        // FNV-1a of "home|1772677800" mod 3,600,000 ms, computed independently: it must never change,
        // or a daemon upgraded mid-wait would move its due times.
        assert_eq!(
            jitter_for("home", &slot, hour),
            Duration::from_millis(2_104_695)
        );
        assert_eq!(
            jitter_for("home", &slot, hour),
            jitter_for("home", &slot, hour)
        );
        assert_ne!(
            jitter_for("home", &slot, hour),
            jitter_for("work", &slot, hour)
        );
        assert_eq!(jitter_for("home", &slot, Duration::ZERO), Duration::ZERO);
        assert_eq!(
            jitter_for("home", &slot, Duration::from_micros(999)),
            Duration::ZERO
        );
        let slots = all_between(&s, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 11, 0, 0, 0));
        let ten_min = Duration::from_secs(600);
        let values: Vec<Duration> = slots
            .iter()
            .map(|slot| jitter_for("home", slot, ten_min))
            .collect();
        assert!(values.iter().all(|&j| j < ten_min));
        let distinct: std::collections::BTreeSet<_> = values.iter().collect();
        assert!(
            distinct.len() > values.len() * 9 / 10,
            "{} of {}",
            distinct.len(),
            values.len()
        );
        let early = values.iter().filter(|&&j| j < ten_min / 2).count();
        assert!(
            early > values.len() / 3 && early < values.len() * 2 / 3,
            "{early} of {}",
            values.len()
        );
    }

    // ---- decide ----

    const JOB: &str = "home";

    fn daily() -> Schedule {
        sched("30 2 * * *", "UTC")
    }

    /// The 02:30 slot of a March 2026 day.
    fn march(day: u32) -> Slot {
        Slot {
            wall: wall(2026, 3, day, 2, 30, 0),
            at: utc(2026, 3, day, 2, 30, 0),
            zone: Some(Tz::UTC),
        }
    }

    fn timing<'a>(s: &'a Schedule, c: &'a CatchUp) -> JobTiming<'a> {
        JobTiming {
            schedule: s,
            catch_up: c,
            jitter: Duration::ZERO,
            job: JOB,
        }
    }

    fn state(last: Option<Slot>) -> ScheduleState {
        ScheduleState {
            last_slot: last,
            baseline: utc(2026, 1, 1, 0, 0, 0),
            retry: None,
        }
    }

    fn catch_up_run(slot: Slot, missed: usize, first_missed: Slot, cause: &str) -> Decision {
        Decision::Run {
            slot: Some(slot),
            reason: RunReason::CatchUp {
                slot,
                missed,
                first_missed,
                cause: cause.to_string(),
            },
        }
    }

    const STOPPED: &str = "while backupd was stopped";
    const BUSY: &str = "while the daemon was busy or the machine was suspended";

    #[test]
    fn on_time_timer_runs_as_scheduled() {
        let s = daily();
        let t = timing(&s, &CatchUp::Once);
        let st = state(Some(march(4)));
        let scheduled = Decision::Run {
            slot: Some(march(5)),
            reason: RunReason::Scheduled { slot: march(5) },
        };
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 2, 30, 0), &Wake::Timer),
            scheduled
        );
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 2, 31, 0), &Wake::Timer),
            scheduled
        );
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 2, 31, 1), &Wake::Timer),
            catch_up_run(march(5), 1, march(5), BUSY)
        );
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 2, 29, 59), &Wake::Timer),
            Decision::Sleep {
                at: march(5).at,
                slot: Some(march(5))
            }
        );
        let Decision::Run { reason, .. } = scheduled else {
            unreachable!()
        };
        assert_eq!(reason.describe(), "scheduled 2026-03-05 02:30 UTC");
    }

    #[test]
    fn startup_with_nothing_missed_sleeps() {
        let s = daily();
        for policy in [
            CatchUp::Once,
            CatchUp::Skip,
            CatchUp::Within(Duration::from_secs(3600)),
        ] {
            let t = timing(&s, &policy);
            let d = decide(
                &t,
                &state(Some(march(5))),
                utc(2026, 3, 5, 12, 0, 0),
                &Wake::Startup,
            );
            assert_eq!(
                d,
                Decision::Sleep {
                    at: march(6).at,
                    slot: Some(march(6))
                },
                "{policy}"
            );
        }
    }

    #[test]
    fn an_os_timer_tick_within_the_grace_runs_on_time_and_a_late_one_catches_up() {
        let s = daily();
        let st = state(Some(march(4)));
        // The per-minute tick of `backupd run-due` comes up to a minute after the slot.
        for policy in [CatchUp::Once, CatchUp::Skip] {
            assert_eq!(
                decide(
                    &timing(&s, &policy),
                    &st,
                    march(5).at + chrono::Duration::seconds(59),
                    &Wake::Tick
                ),
                Decision::Run {
                    slot: Some(march(5)),
                    reason: RunReason::Scheduled { slot: march(5) }
                },
                "{policy}"
            );
        }
        // The machine was off at the slot: the first tick after boot is a catch-up.
        let d = decide(
            &timing(&s, &CatchUp::Once),
            &st,
            utc(2026, 3, 5, 12, 0, 0),
            &Wake::Tick,
        );
        let Decision::Run { reason, .. } = d else {
            panic!("expected a run, got {d:?}")
        };
        assert!(
            reason.describe().starts_with(
                "catch-up for 2026-03-05 02:30 UTC missed while the OS timer did not start backupd"
            ),
            "{}",
            reason.describe()
        );
    }

    #[test]
    fn startup_with_one_missed_slot() {
        let s = daily();
        let now = utc(2026, 3, 5, 12, 0, 0); // 9.5 h after the slot
        let st = state(Some(march(4)));
        let once = decide(&timing(&s, &CatchUp::Once), &st, now, &Wake::Startup);
        assert_eq!(once, catch_up_run(march(5), 1, march(5), STOPPED));
        let Decision::Run { reason, .. } = &once else {
            unreachable!()
        };
        assert_eq!(
            reason.describe(),
            "catch-up for 2026-03-05 02:30 UTC missed while backupd was stopped"
        );
        let Decision::Skip {
            slot,
            missed,
            reason,
        } = decide(&timing(&s, &CatchUp::Skip), &st, now, &Wake::Startup)
        else {
            panic!("expected a skip")
        };
        assert_eq!((slot, missed), (march(5), 1));
        assert_eq!(
            reason,
            "skipped 2026-03-05 02:30 UTC missed while backupd was stopped: catch_up is skip"
        );
        let within = |h: u64| CatchUp::Within(Duration::from_secs(h * 3600));
        assert_eq!(
            decide(&timing(&s, &within(12)), &st, now, &Wake::Startup),
            once
        );
        let Decision::Skip {
            slot,
            missed,
            reason,
        } = decide(&timing(&s, &within(6)), &st, now, &Wake::Startup)
        else {
            panic!("expected a skip")
        };
        assert_eq!((slot, missed), (march(5), 1));
        assert!(
            reason.contains("it is 9h30m old, older than 6h"),
            "{reason}"
        );
    }

    #[test]
    fn startup_with_five_missed_slots() {
        let s = daily();
        let now = utc(2026, 3, 6, 12, 0, 0);
        let st = state(Some(march(1)));
        let once = decide(&timing(&s, &CatchUp::Once), &st, now, &Wake::Startup);
        assert_eq!(once, catch_up_run(march(6), 5, march(2), STOPPED));
        let Decision::Run { reason, .. } = &once else {
            unreachable!()
        };
        assert_eq!(
            reason.describe(),
            "catch-up for 2026-03-06 02:30 UTC missed while backupd was stopped (5 slots missed since 2026-03-02 02:30 UTC)"
        );
        let skip = decide(&timing(&s, &CatchUp::Skip), &st, now, &Wake::Startup);
        let Decision::Skip {
            slot,
            missed,
            reason,
        } = &skip
        else {
            panic!("{skip:?}")
        };
        assert_eq!((*slot, *missed), (march(6), 5));
        assert!(
            reason.contains("(5 slots missed since 2026-03-02 02:30 UTC)"),
            "{reason}"
        );
        let within = |h: u64| CatchUp::Within(Duration::from_secs(h * 3600));
        assert_eq!(
            decide(&timing(&s, &within(10)), &st, now, &Wake::Startup),
            once
        );
        let d = decide(&timing(&s, &within(9)), &st, now, &Wake::Startup);
        assert!(
            matches!(d, Decision::Skip { slot, missed: 5, .. } if slot == march(6)),
            "{d:?}"
        );
        // After the skip is applied, nothing is due until the next slot.
        let after = state(Some(march(6)));
        assert_eq!(
            decide(&timing(&s, &CatchUp::Skip), &after, now, &Wake::Timer),
            Decision::Sleep {
                at: march(7).at,
                slot: Some(march(7))
            }
        );
    }

    #[test]
    fn several_slots_due_on_a_timer_is_a_catch_up() {
        let s = daily();
        let st = state(Some(march(3)));
        let d = decide(
            &timing(&s, &CatchUp::Once),
            &st,
            utc(2026, 3, 5, 2, 30, 10),
            &Wake::Timer,
        );
        assert_eq!(d, catch_up_run(march(5), 2, march(4), BUSY));
    }

    #[test]
    fn clock_jumps() {
        let s = daily();
        let t = timing(&s, &CatchUp::Once);
        // The 02:30 slot ran, then the clock went back an hour: it does not run again.
        let ran = state(Some(march(5)));
        let next = Decision::Sleep {
            at: march(6).at,
            slot: Some(march(6)),
        };
        assert_eq!(
            decide(
                &t,
                &ran,
                utc(2026, 3, 5, 1, 35, 0),
                &Wake::ClockJump { by_seconds: -3600 }
            ),
            next
        );
        assert_eq!(
            decide(&t, &ran, utc(2026, 3, 5, 2, 30, 0), &Wake::Timer),
            next
        );
        assert_eq!(
            decide(&t, &ran, utc(2026, 3, 5, 2, 30, 30), &Wake::Startup),
            next
        );
        // Forward over two slots: one catch-up that says so.
        let d = decide(
            &t,
            &ran,
            utc(2026, 3, 7, 3, 0, 0),
            &Wake::ClockJump { by_seconds: 3600 },
        );
        assert_eq!(
            d,
            catch_up_run(
                march(7),
                2,
                march(6),
                "after the clock jumped forward 3600 s"
            )
        );
        let Decision::Run { reason, .. } = d else {
            unreachable!()
        };
        assert_eq!(
            reason.describe(),
            "catch-up for 2026-03-07 02:30 UTC missed after the clock jumped forward 3600 s (2 slots missed since 2026-03-06 02:30 UTC)"
        );
        // Even a jump straight onto a slot's time is a catch-up: the timer did not see it come.
        let d = decide(&t, &ran, march(6).at, &Wake::ClockJump { by_seconds: 7200 });
        assert!(
            matches!(
                d,
                Decision::Run {
                    reason: RunReason::CatchUp { .. },
                    ..
                }
            ),
            "{d:?}"
        );
    }

    #[test]
    fn resume_from_sleep() {
        let s = daily();
        let d = decide(
            &timing(&s, &CatchUp::Once),
            &state(Some(march(4))),
            utc(2026, 3, 5, 7, 0, 0),
            &Wake::Resume,
        );
        assert_eq!(
            d,
            catch_up_run(march(5), 1, march(5), "while the system was asleep")
        );
    }

    #[test]
    fn retries() {
        let s = daily();
        let t = timing(&s, &CatchUp::Once);
        let retry = PendingRetry {
            number: 2,
            of: 3,
            due: utc(2026, 3, 5, 3, 0, 0),
            slot: Some(march(5)),
            last_error: "repository locked".into(),
        };
        let st = ScheduleState {
            retry: Some(retry.clone()),
            ..state(Some(march(5)))
        };
        let run_retry = Decision::Run {
            slot: None,
            reason: RunReason::Retry {
                number: 2,
                of: 3,
                slot: Some(march(5)),
                last_error: "repository locked".into(),
            },
        };
        // Due.
        assert_eq!(decide(&t, &st, retry.due, &Wake::Timer), run_retry);
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 9, 0, 0), &Wake::Startup),
            run_retry
        );
        let Decision::Run { reason, .. } = &run_retry else {
            unreachable!()
        };
        assert_eq!(reason.describe(), "retry 2 of 3 for 2026-03-05 02:30 UTC");
        // Not due: sleep until it (before the next slot).
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 5, 2, 50, 0), &Wake::Timer),
            Decision::Sleep {
                at: retry.due,
                slot: Some(march(6))
            }
        );
        // A retry due after the next slot: sleep until the slot.
        let late = ScheduleState {
            retry: Some(PendingRetry {
                due: utc(2026, 3, 6, 5, 0, 0),
                ..retry.clone()
            }),
            ..st.clone()
        };
        assert_eq!(
            decide(&t, &late, utc(2026, 3, 5, 12, 0, 0), &Wake::Timer),
            Decision::Sleep {
                at: march(6).at,
                slot: Some(march(6))
            }
        );
        // Both due: the regular slot wins.
        assert_eq!(
            decide(&t, &late, march(6).at, &Wake::Timer),
            Decision::Run {
                slot: Some(march(6)),
                reason: RunReason::Scheduled { slot: march(6) }
            }
        );
        assert_eq!(
            decide(&t, &late, utc(2026, 3, 6, 6, 0, 0), &Wake::Startup),
            catch_up_run(march(6), 1, march(6), STOPPED)
        );
        // A retry of a manual run has no slot.
        let manual = RunReason::Retry {
            number: 1,
            of: 2,
            slot: None,
            last_error: String::new(),
        };
        assert_eq!(manual.describe(), "retry 1 of 2");
        assert_eq!(RunReason::Manual { retry: false }.describe(), "manual");
        let retried = RunReason::Manual { retry: true };
        assert_eq!(retried.describe(), "manual, retried on failure");
        // A state file written before `retry` existed still reads.
        let old: RunReason = serde_json::from_str(r#"{"kind":"manual"}"#).unwrap();
        assert_eq!(old, RunReason::Manual { retry: false });
    }

    #[test]
    fn jitter_delays_the_due_time() {
        let s = daily();
        let policy = CatchUp::Once;
        let t = JobTiming {
            jitter: Duration::from_secs(3600),
            ..timing(&s, &policy)
        };
        let j = to_chrono(jitter_for(JOB, &march(5), t.jitter));
        assert_eq!(j, chrono::Duration::milliseconds(2_104_695)); // see jitter_is_stable_bounded_and_spread
        let due = march(5).at + j;
        let st = state(Some(march(4)));
        let sleep = Decision::Sleep {
            at: due,
            slot: Some(march(5)),
        };
        assert_eq!(
            decide(&t, &st, march(4).at + mins(1), &Wake::Timer),
            Decision::Sleep {
                at: march(5).at + j,
                slot: Some(march(5)),
            }
        );
        assert_eq!(
            decide(
                &t,
                &st,
                march(5).at + chrono::Duration::seconds(1),
                &Wake::Timer
            ),
            sleep
        );
        assert_eq!(
            decide(
                &t,
                &st,
                due - chrono::Duration::milliseconds(1),
                &Wake::Timer
            ),
            sleep
        );
        let scheduled = Decision::Run {
            slot: Some(march(5)),
            reason: RunReason::Scheduled { slot: march(5) },
        };
        assert_eq!(decide(&t, &st, due, &Wake::Timer), scheduled);
        assert_eq!(decide(&t, &st, due + mins(1), &Wake::Timer), scheduled);
        // A restart before the due time waits for the same due time.
        assert_eq!(
            decide(&t, &st, march(5).at + mins(2), &Wake::Startup),
            sleep
        );
    }

    #[test]
    fn baseline_hides_older_slots() {
        let s = daily();
        let t = timing(&s, &CatchUp::Once);
        let first_seen = utc(2026, 3, 5, 12, 0, 0);
        assert_eq!(
            decide(
                &t,
                &ScheduleState::new(first_seen),
                first_seen,
                &Wake::Startup
            ),
            Decision::Sleep {
                at: march(6).at,
                slot: Some(march(6))
            }
        );
        // Seen on the 4th at noon, started again on the 6th: the 5th and 6th were missed, not the 4th.
        let st = ScheduleState::new(utc(2026, 3, 4, 12, 0, 0));
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 6, 12, 0, 0), &Wake::Startup),
            catch_up_run(march(6), 2, march(5), STOPPED)
        );
        // A last slot older than the baseline does not bring older slots back.
        let st = ScheduleState {
            last_slot: Some(march(1)),
            ..st
        };
        assert_eq!(st.consumed_until(), utc(2026, 3, 4, 12, 0, 0));
        assert_eq!(
            decide(&t, &st, utc(2026, 3, 6, 12, 0, 0), &Wake::Startup),
            catch_up_run(march(6), 2, march(5), STOPPED)
        );
    }

    #[test]
    fn serde_shapes() {
        let reason = RunReason::Scheduled { slot: march(5) };
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["kind"], "scheduled");
        assert_eq!(json["slot"]["wall"], "2026-03-05T02:30:00");
        assert_eq!(json["slot"]["at"], "2026-03-05T02:30:00Z");
        let catch_up = RunReason::CatchUp {
            slot: march(6),
            missed: 2,
            first_missed: march(5),
            cause: STOPPED.into(),
        };
        assert_eq!(serde_json::to_value(&catch_up).unwrap()["kind"], "catch_up");
        for r in [reason, catch_up, RunReason::Manual { retry: true }] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<RunReason>(&text).unwrap(), r);
        }
        let st = ScheduleState {
            retry: Some(PendingRetry {
                number: 1,
                of: 2,
                due: march(6).at,
                slot: None,
                last_error: "e".into(),
            }),
            ..state(Some(march(5)))
        };
        let text = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<ScheduleState>(&text).unwrap(), st);
    }

    // ---- a daemon's life, simulated ----

    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Outage {
        Stopped,
        Asleep,
    }

    /// Non-overlapping outages between `from` and `to`, with up-time between them.
    fn outages(
        rng: &mut StdRng,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>, Outage)> {
        let mut out = Vec::new();
        let mut t = from;
        loop {
            let start = t + chrono::Duration::seconds(rng.gen_range(3_600..12 * 86_400));
            let end = start + chrono::Duration::seconds(rng.gen_range(600..4 * 86_400));
            if end >= to {
                return out;
            }
            let kind = if rng.gen_bool(0.6) {
                Outage::Stopped
            } else {
                Outage::Asleep
            };
            out.push((start, end, kind));
            t = end;
        }
    }

    struct Consumed {
        slots: Vec<Slot>,
        decision: Decision,
        now: DateTime<Utc>,
    }

    /// A stretch in which the daemon made no decision (sleeping, running, stopped or asleep),
    /// and how it woke at the end.
    type Gap = (DateTime<Utc>, DateTime<Utc>, Wake);

    /// Runs a daemon from `from` to `to` like backupd would: decide, apply (a run takes a
    /// while), sleep; outages come when they are due. Returns what was consumed, and the gaps.
    fn simulate(
        t: &JobTiming,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        outages: &[(DateTime<Utc>, DateTime<Utc>, Outage)],
        rng: &mut StdRng,
    ) -> (Vec<Consumed>, Vec<Gap>) {
        let mut state = ScheduleState::new(from);
        let (mut consumed, mut gaps) = (Vec::new(), Vec::new());
        let (mut now, mut wake) = (from, Wake::Startup);
        let mut next_outage = outages.iter().peekable();
        let mut decisions = 0;
        while now < to {
            decisions += 1;
            assert!(decisions < 100_000, "the simulation does not advance");
            let decision = decide(t, &state, now, &wake);
            let target = match &decision {
                Decision::Run {
                    slot: Some(slot), ..
                }
                | Decision::Skip { slot, .. } => {
                    let slot = *slot;
                    let slots = t
                        .schedule
                        .slots_between(state.consumed_until(), slot.at, usize::MAX)
                        .0;
                    state.last_slot = Some(slot);
                    consumed.push(Consumed {
                        slots,
                        decision: decision.clone(),
                        now,
                    });
                    if matches!(decision, Decision::Skip { .. }) {
                        continue; // decide again at once
                    }
                    now + chrono::Duration::seconds(rng.gen_range(30..3_600))
                }
                Decision::Run { .. } => panic!("no retries here, so every run has a slot"),
                Decision::Sleep { at, .. } => {
                    assert!(*at > now, "sleeping into the past: {at} at {now}");
                    *at
                }
            };
            // Move to `target`, unless an outage starts first: then to its end.
            let (until, woke) = match next_outage.peek() {
                Some(&&(start, end, kind)) if start <= target => {
                    next_outage.next();
                    let woke = match kind {
                        Outage::Stopped => Wake::Startup,
                        Outage::Asleep => Wake::Resume,
                    };
                    (end.max(now), woke)
                }
                _ => (target, Wake::Timer),
            };
            gaps.push((now, until, woke));
            (now, wake) = (until, woke);
        }
        (consumed, gaps)
    }

    #[test]
    fn simulated_daemon_consumes_every_slot_exactly_once() {
        let s = sched("30 2 * * *", "Europe/Berlin");
        let from = utc(2026, 3, 1, 0, 0, 0);
        let to = utc(2026, 12, 1, 0, 0, 0);
        let all_days: Vec<NaiveDate> = NaiveDate::from_ymd_opt(2026, 3, 1)
            .unwrap()
            .iter_days()
            .take(275)
            .collect();
        let within = Duration::from_secs(6 * 3600);
        let (mut causes_seen, mut late_seen) = (BTreeMap::new(), 0);
        for policy in [CatchUp::Once, CatchUp::Skip, CatchUp::Within(within)] {
            for seed in 1..=6u64 {
                let mut rng = StdRng::seed_from_u64(seed);
                let downtime = outages(&mut rng, from, to - chrono::Duration::days(3));
                assert!(downtime.len() > 10);
                let t = JobTiming {
                    schedule: &s,
                    catch_up: &policy,
                    jitter: Duration::from_secs(600),
                    job: "home",
                };
                let (log, gaps) = simulate(&t, from, to, &downtime, &mut rng);
                let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
                let mut last_run: Option<Slot> = None;
                for event in &log {
                    for slot in &event.slots {
                        *per_day.entry(slot.wall.date()).or_default() += 1;
                        assert_eq!(slot.wall.time(), wall(2026, 1, 1, 2, 30, 0).time());
                    }
                    let newest = *event.slots.last().expect("an event consumes a slot");
                    let oldest = event.slots[0];
                    let due = due_at(&t, &newest);
                    // The daemon was not deciding when the slot came due: it is missed.
                    let missed_in = gaps.iter().find(|&&(a, b, _)| a < due && due < b);
                    let context = format!(
                        "{policy} seed {seed}: {event:?} due {due} gap {missed_in:?}",
                        event = event.decision
                    );
                    match (&event.decision, missed_in) {
                        (
                            Decision::Run {
                                slot,
                                reason: RunReason::Scheduled { slot: s2 },
                            },
                            None,
                        ) => {
                            assert_eq!((*slot, *s2), (Some(newest), newest), "{context}");
                            assert_eq!(event.slots.len(), 1, "{context}");
                            assert_eq!(
                                event.now, due,
                                "{context}: the timer fires at the due time"
                            );
                        }
                        (
                            Decision::Run {
                                slot,
                                reason:
                                    RunReason::CatchUp {
                                        slot: s2,
                                        missed,
                                        first_missed,
                                        cause,
                                    },
                            },
                            Some(&(_, end, woke)),
                        ) => {
                            assert_ne!(policy, CatchUp::Skip, "{context}");
                            assert_eq!(
                                (*slot, *s2, *first_missed),
                                (Some(newest), newest, oldest),
                                "{context}"
                            );
                            assert_eq!(*missed, event.slots.len(), "{context}");
                            assert_eq!(*cause, woke.cause(), "{context}");
                            assert_eq!(
                                event.now, end,
                                "{context}: a catch-up runs as the daemon comes back"
                            );
                            if let CatchUp::Within(w) = policy {
                                assert!(event.now - newest.at <= to_chrono(w), "{context}");
                            }
                            *causes_seen.entry(cause.clone()).or_insert(0) += 1;
                            if woke == Wake::Timer {
                                late_seen += 1;
                            }
                        }
                        (
                            Decision::Skip {
                                slot,
                                missed,
                                reason,
                            },
                            Some(&(_, end, woke)),
                        ) => {
                            assert_ne!(policy, CatchUp::Once, "{context}");
                            assert_eq!((*slot, *missed), (newest, event.slots.len()), "{context}");
                            assert!(reason.contains(&woke.cause()), "{context}");
                            assert!(reason.contains(&newest.label()), "{context}");
                            assert_eq!(event.now, end, "{context}");
                            if let CatchUp::Within(w) = policy {
                                assert!(event.now - newest.at > to_chrono(w), "{context}");
                                assert!(reason.contains("older than 6h"), "{context}");
                            }
                        }
                        _ => panic!("{context}"),
                    }
                    if let Decision::Run { slot, .. } = &event.decision {
                        assert!(last_run < *slot, "{context}: runs in order, none twice");
                        last_run = *slot;
                    }
                }
                let counted: Vec<NaiveDate> = per_day.keys().copied().collect();
                assert_eq!(
                    counted, all_days,
                    "{policy} seed {seed}: every day's slot is consumed"
                );
                assert!(
                    per_day.values().all(|&n| n == 1),
                    "{policy} seed {seed}: exactly once"
                );
                let on_time = log
                    .iter()
                    .filter(|e| {
                        matches!(
                            e.decision,
                            Decision::Run {
                                reason: RunReason::Scheduled { .. },
                                ..
                            }
                        )
                    })
                    .count();
                assert!(
                    on_time > 100,
                    "{policy} seed {seed}: only {on_time} runs on time"
                );
                assert!(
                    log.len() < 275,
                    "{policy} seed {seed}: outages coalesce or skip slots"
                );
            }
        }
        // The simulation reached every kind of miss.
        assert!(causes_seen.contains_key(STOPPED), "{causes_seen:?}");
        assert!(
            causes_seen.contains_key("while the system was asleep"),
            "{causes_seen:?}"
        );
        assert!(late_seen > 0, "{causes_seen:?}");
    }
}
