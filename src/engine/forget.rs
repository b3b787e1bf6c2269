//! Retention: which snapshots a keep policy keeps, and why (restic's `forget` semantics, as a pure
//! function over the snapshot list).
//!
//! Within each group the snapshots are ordered newest first (ties on the time: by id, ascending).
//! Walking that list, a snapshot is kept when any rule wants it:
//! - `last N`: it is one of the N newest;
//! - `hourly/daily/weekly/monthly/yearly N`: it is the newest snapshot of its hour/day/ISO week/
//!   month/year bucket, and that bucket is one of the N newest buckets holding a snapshot
//!   (buckets are read in the time zone the snapshot's time was stored with);
//! - `within D`: it is newer than (the group's newest snapshot time − D), D in restic's `1y2m3d4h`
//!   calendar arithmetic (Go's `AddDate` normalisation);
//! - `tags`: it carries every tag of one of the listed comma-separated tag sets.
//!
//! An empty policy is refused: it would mean "remove everything" to a careless caller.
//!
//! **Safety snapshots** (tag `pre-restore`, taken by `backupctl restore` before it replaces
//! anything) are undo points, not backups, so they are never counted by the policy's rules: they
//! form groups of their own (`safety` in the key), beside the backups of the same key. For
//! [`SAFETY_KEEP_DAYS`] days after it was taken a safety snapshot is always kept; after that,
//! it is removed unless the policy's `tags` rule keeps it (`--keep-tag pre-restore`).

use crate::engine::restore::is_safety_snapshot;
use crate::error::{Error, Result};
use crate::repo::id::Id;
use crate::repo::snapshot::Snapshot;
use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Timelike, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// A calendar duration in restic's `--keep-within` syntax: `1y2m3d4h` (any subset, any order; a
/// unit given twice keeps the last value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct KeepWithin {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl KeepWithin {
    /// Parses `1y2m3d4h`. Every number needs a unit: y (years), m (months), d (days), h (hours).
    pub fn parse(s: &str) -> std::result::Result<KeepWithin, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty duration: use e.g. 7d, 2m, 1y6m or 36h".into());
        }
        let mut d = KeepWithin::default();
        let mut num = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                num.push(c);
                continue;
            }
            if num.is_empty() {
                return Err(format!(
                    "invalid duration {s:?}: expected a number before {c:?} (e.g. 1y2m3d4h)"
                ));
            }
            let n: u32 = num
                .parse()
                .map_err(|_| format!("invalid duration {s:?}: number {num} is too large"))?;
            num.clear();
            match c {
                'y' => d.years = n,
                'm' => d.months = n,
                'd' => d.days = n,
                'h' => d.hours = n,
                _ => {
                    return Err(format!(
                        "invalid duration {s:?}: unknown unit {c:?} (use y, m, d, h as in 1y2m3d4h)"
                    ))
                }
            }
        }
        if !num.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: the number {num} needs a unit (y, m, d or h)"
            ));
        }
        Ok(d)
    }

    pub fn is_zero(&self) -> bool {
        *self == KeepWithin::default()
    }

    /// `t` minus this duration, computed as Go's `t.AddDate(-y, -m, -d).Add(-h hours)` in `t`'s
    /// own offset (day overflow normalises: Mar 31 − 1m = "Feb 31" = Mar 3). `None` when the
    /// result is before the representable range (then everything is within).
    pub fn before(&self, t: DateTime<FixedOffset>) -> Option<DateTime<FixedOffset>> {
        let local = t.naive_local();
        let month0 = local.month0() as i64 - self.months as i64;
        let year = local.year() as i64 - self.years as i64 + month0.div_euclid(12);
        let month0 = month0.rem_euclid(12);
        let first = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month0 as u32 + 1, 1)?;
        let date = first.checked_add_signed(chrono::Duration::try_days(
            local.day() as i64 - 1 - self.days as i64,
        )?)?;
        let shifted = t
            .offset()
            .from_local_datetime(&date.and_time(local.time()))
            .single()?;
        shifted.checked_sub_signed(chrono::Duration::try_hours(self.hours as i64)?)
    }
}

impl fmt::Display for KeepWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.years != 0 {
            write!(f, "{}y", self.years)?;
        }
        if self.months != 0 {
            write!(f, "{}m", self.months)?;
        }
        if self.days != 0 {
            write!(f, "{}d", self.days)?;
        }
        if self.hours != 0 {
            write!(f, "{}h", self.hours)?;
        }
        Ok(())
    }
}

/// Which snapshots to keep. Counts of 0 and a zero `within` count as not given.
#[derive(Debug, Clone, Default)]
pub struct KeepPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub within: Option<KeepWithin>,
    /// Each entry is a comma-separated set of tags that must all be present.
    pub tags: Vec<String>,
}

impl KeepPolicy {
    /// True when the policy names no rule at all.
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ];
        counts.iter().all(|c| c.unwrap_or(0) == 0)
            && self.within.map(|w| w.is_zero()).unwrap_or(true)
            && self.tags.is_empty()
    }
}

/// Which snapshot fields make up a group (each group gets the policy applied separately).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
    pub job: bool,
}

impl GroupBy {
    /// Parses a comma-separated list of `host`, `paths`, `tags`, `job`; "" means one group.
    pub fn parse(s: &str) -> std::result::Result<GroupBy, String> {
        let mut g = GroupBy::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                "job" => g.job = true,
                other => {
                    return Err(format!(
                        "invalid --group-by field {other:?}: use host, paths, tags, job (comma-separated) or \"\""
                    ))
                }
            }
        }
        Ok(g)
    }
}

/// What the snapshots of one group have in common (only the grouped fields are set).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `Some(None)`: grouped by job, and these snapshots have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Option<String>>,
    /// A group of safety snapshots (tag `pre-restore`): kept by their own rule (module docs).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub safety: bool,
}

impl GroupKey {
    /// The key of `s` under `g` (a safety snapshot's marked as such).
    pub fn of(s: &Snapshot, g: &GroupBy) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            host: g.host.then(|| s.hostname.clone()),
            paths: g.paths.then(|| sorted(&s.paths)),
            tags: g.tags.then(|| sorted(&s.tags)),
            job: g.job.then(|| s.job().map(str::to_string)),
            safety: is_safety_snapshot(s),
        }
    }
}

/// The snapshots of `snaps` (oldest first) in groups under `g`, each group's members in
/// their order, the groups sorted by key; safety snapshots are not set apart here.
pub fn groups<'a>(
    snaps: &'a [(Id, Snapshot)],
    g: &GroupBy,
) -> Vec<(GroupKey, Vec<&'a (Id, Snapshot)>)> {
    let mut out: std::collections::BTreeMap<GroupKey, Vec<&(Id, Snapshot)>> = Default::default();
    for e in snaps {
        let mut key = GroupKey::of(&e.1, g);
        key.safety = false;
        out.entry(key).or_default().push(e);
    }
    out.into_iter().collect()
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h:?}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(", ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(", ")));
        }
        if let Some(j) = &self.job {
            parts.push(match j {
                Some(j) => format!("job {j:?}"),
                None => "no job".to_string(),
            });
        }
        let what = if self.safety {
            "safety snapshots (pre-restore)"
        } else {
            "all snapshots"
        };
        match (parts.is_empty(), self.safety) {
            (true, _) => f.write_str(what),
            (false, false) => f.write_str(&parts.join(", ")),
            (false, true) => write!(f, "{what}, {}", parts.join(", ")),
        }
    }
}

/// One snapshot in a plan, with why it is kept (empty for removed ones).
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    pub id: Id,
    pub short_id: String,
    #[serde(flatten)]
    pub snapshot: Snapshot,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// The outcome for one group: kept snapshots (newest first) with reasons, and removed ones.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetGroup {
    #[serde(flatten)]
    pub key: GroupKey,
    pub keep: Vec<Planned>,
    pub remove: Vec<Planned>,
}

impl ForgetGroup {
    /// Puts a snapshot among the kept when it has a reason to stay, else among the removed.
    fn place(&mut self, id: Id, snapshot: Snapshot, reasons: Vec<String>) {
        let p = Planned {
            id,
            short_id: id.short(),
            snapshot,
            reasons,
        };
        if p.reasons.is_empty() {
            self.remove.push(p);
        } else {
            self.keep.push(p);
        }
    }
}

fn bucket(kind: usize, t: &DateTime<FixedOffset>, nr: usize) -> i64 {
    let (y, m, d, h) = (
        t.year() as i64,
        t.month() as i64,
        t.day() as i64,
        t.hour() as i64,
    );
    match kind {
        0 => nr as i64,
        1 => y * 1_000_000 + m * 10_000 + d * 100 + h,
        2 => y * 10_000 + m * 100 + d,
        3 => {
            let w = t.iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }
        4 => y * 100 + m,
        _ => y,
    }
}

const BUCKET_REASONS: [&str; 6] = [
    "last snapshot",
    "hourly snapshot",
    "daily snapshot",
    "weekly snapshot",
    "monthly snapshot",
    "yearly snapshot",
];

/// Applies `policy` to one group (any order in; newest first out).
fn apply(mut list: Vec<(Id, Snapshot)>, policy: &KeepPolicy, key: GroupKey) -> ForgetGroup {
    list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.0.cmp(&b.0)));
    let counts = [
        policy.last,
        policy.hourly,
        policy.daily,
        policy.weekly,
        policy.monthly,
        policy.yearly,
    ];
    let mut left: Vec<u32> = counts.iter().map(|c| c.unwrap_or(0)).collect();
    let mut last_bucket: [Option<i64>; 6] = [None; 6];
    let tag_sets: Vec<Vec<&str>> = policy
        .tags
        .iter()
        .map(|t| t.split(',').filter(|x| !x.is_empty()).collect())
        .collect();
    let within = policy.within.filter(|w| !w.is_zero());
    // Everything newer than this is kept; `None` inside means "before all time".
    let within_limit = within.map(|w| list.first().and_then(|(_, s)| w.before(s.time)));
    let mut g = ForgetGroup {
        key,
        keep: Vec::new(),
        remove: Vec::new(),
    };
    for (nr, (id, s)) in list.into_iter().enumerate() {
        let mut reasons = Vec::new();
        for (set, raw) in tag_sets.iter().zip(&policy.tags) {
            if !set.is_empty() && set.iter().all(|t| s.has_tag(t)) {
                reasons.push(if set.len() == 1 {
                    format!("tag {raw}")
                } else {
                    format!("tags {raw}")
                });
            }
        }
        if let (Some(w), Some(limit)) = (within, within_limit) {
            if limit.map(|l| s.time > l).unwrap_or(true) {
                reasons.push(format!("within {w}"));
            }
        }
        for k in 0..6 {
            if left[k] == 0 {
                continue;
            }
            let b = bucket(k, &s.time, nr);
            if last_bucket[k] != Some(b) {
                last_bucket[k] = Some(b);
                left[k] -= 1;
                reasons.push(BUCKET_REASONS[k].to_string());
            }
        }
        g.place(id, s, reasons);
    }
    g
}

/// Refuses an empty policy and keep-tag entries that name no tag.
pub fn check_policy(policy: &KeepPolicy) -> Result<()> {
    if policy.is_empty() {
        return Err(Error::Input(
            "no policy given: refusing to remove every snapshot\n  hint: pass at least one of --keep-last, \
             --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within, \
             --keep-tag (or snapshot ids to remove)"
                .into(),
        ));
    }
    if let Some(bad) = policy
        .tags
        .iter()
        .find(|t| t.split(',').all(|x| x.trim().is_empty()))
    {
        return Err(Error::Input(format!(
            "invalid --keep-tag {bad:?}: it names no tag\n  hint: give a tag, or several separated by commas (all must match)"
        )));
    }
    Ok(())
}

/// How many days a safety snapshot is kept whatever the policy (module docs).
pub const SAFETY_KEEP_DAYS: i64 = 14;

/// Applies the safety snapshots' rule to one group of them at `now` (newest first out).
fn apply_safety(
    mut list: Vec<(Id, Snapshot)>,
    policy: &KeepPolicy,
    key: GroupKey,
    now: DateTime<Utc>,
) -> ForgetGroup {
    list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(a.0.cmp(&b.0)));
    let mut g = ForgetGroup {
        key,
        keep: Vec::new(),
        remove: Vec::new(),
    };
    for (id, s) in list {
        let until = s.time.with_timezone(&Utc) + chrono::Duration::days(SAFETY_KEEP_DAYS);
        let mut reasons = Vec::new();
        if until > now {
            reasons.push(format!(
                "safety snapshot, kept until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        let by_tag = policy.tags.iter().find(|raw| {
            let set: Vec<&str> = raw.split(',').filter(|x| !x.is_empty()).collect();
            !set.is_empty() && set.iter().all(|t| s.has_tag(t))
        });
        if let Some(raw) = by_tag {
            reasons.push(format!("tag {raw}"));
        }
        g.place(id, s, reasons);
    }
    g
}

/// Splits `snapshots` into groups and applies `policy` to each, and the safety snapshots' rule
/// (at `now`) to the groups of safety snapshots. Groups come sorted by key.
pub fn plan(
    snapshots: &[(Id, Snapshot)],
    policy: &KeepPolicy,
    group_by: &GroupBy,
    now: DateTime<Utc>,
) -> Result<Vec<ForgetGroup>> {
    check_policy(policy)?;
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in snapshots {
        groups
            .entry(GroupKey::of(s, group_by))
            .or_default()
            .push((*id, s.clone()));
    }
    Ok(groups
        .into_iter()
        .map(|(k, list)| {
            if k.safety {
                apply_safety(list, policy, k, now)
            } else {
                apply(list, policy, k)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
        Snapshot {
            time: DateTime::parse_from_rfc3339(time).unwrap(),
            parent: None,
            tree: Id::hash(b"tree"),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            hostname: host.into(),
            username: String::new(),
            uid: 0,
            gid: 0,
            excludes: vec![],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            original: None,
            program_version: String::new(),
            summary: None,
        }
    }

    /// Snapshots named by their time (the id is the hash of the time and a counter).
    fn list(times: &[&str]) -> Vec<(Id, Snapshot)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    Id::hash(format!("{t}#{i}").as_bytes()),
                    snap(t, "h", &["/d"], &[]),
                )
            })
            .collect()
    }

    /// The instant the plans are made at.
    fn now() -> DateTime<Utc> {
        "2026-12-10T00:00:00Z".parse().unwrap()
    }

    fn kept_times(g: &ForgetGroup) -> Vec<String> {
        g.keep
            .iter()
            .map(|p| p.snapshot.time.to_rfc3339())
            .collect()
    }

    fn rfc(ts: &[&str]) -> Vec<String> {
        ts.iter()
            .map(|t| DateTime::parse_from_rfc3339(t).unwrap().to_rfc3339())
            .collect()
    }

    fn one_group(snaps: &[(Id, Snapshot)], p: &KeepPolicy) -> ForgetGroup {
        let mut g = plan(snaps, p, &GroupBy::default(), now()).unwrap();
        assert_eq!(g.len(), 1);
        g.pop().unwrap()
    }

    /// A year of snapshots with gaps, across midnight, week, month and year ends, plus a tie.
    const TIMES: &[&str] = &[
        "2023-12-30T23:30:00+00:00", // Sat, ISO week 2023-52
        "2023-12-31T23:59:59+00:00", // Sun, ISO week 2023-52
        "2024-01-01T00:00:00+00:00", // Mon, ISO week 2024-01
        "2024-01-01T00:30:00+00:00",
        "2024-01-01T01:10:00+00:00",
        "2024-01-07T12:00:00+00:00", // Sun, week 01
        "2024-01-08T08:00:00+00:00", // Mon, week 02
        "2024-02-29T10:00:00+00:00",
        "2024-03-01T10:00:00+00:00",
        "2024-03-01T10:00:00+00:00", // identical time
        "2024-03-01T10:59:59+00:00",
        "2024-03-01T11:00:00+00:00",
    ];

    #[test]
    fn each_option_alone() {
        let s = list(TIMES);
        let cases: Vec<(KeepPolicy, Vec<&str>)> = vec![
            (
                KeepPolicy {
                    last: Some(3),
                    ..Default::default()
                },
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-03-01T10:59:59+00:00",
                    "2024-03-01T10:00:00+00:00",
                ],
            ),
            (
                KeepPolicy {
                    hourly: Some(4),
                    ..Default::default()
                },
                // 11h, 10h (newest of that hour), Feb 29 10h, Jan 8 8h
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-03-01T10:59:59+00:00",
                    "2024-02-29T10:00:00+00:00",
                    "2024-01-08T08:00:00+00:00",
                ],
            ),
            (
                KeepPolicy {
                    daily: Some(5),
                    ..Default::default()
                },
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-02-29T10:00:00+00:00",
                    "2024-01-08T08:00:00+00:00",
                    "2024-01-07T12:00:00+00:00",
                    "2024-01-01T01:10:00+00:00",
                ],
            ),
            (
                KeepPolicy {
                    weekly: Some(4),
                    ..Default::default()
                },
                // weeks 2024-09, 2024-02, 2024-01, 2023-52
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-01-08T08:00:00+00:00",
                    "2024-01-07T12:00:00+00:00",
                    "2023-12-31T23:59:59+00:00",
                ],
            ),
            (
                KeepPolicy {
                    monthly: Some(3),
                    ..Default::default()
                },
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-02-29T10:00:00+00:00",
                    "2024-01-08T08:00:00+00:00",
                ],
            ),
            (
                KeepPolicy {
                    yearly: Some(10),
                    ..Default::default()
                },
                vec!["2024-03-01T11:00:00+00:00", "2023-12-31T23:59:59+00:00"],
            ),
            (
                KeepPolicy {
                    within: Some(KeepWithin::parse("1d").unwrap()),
                    ..Default::default()
                },
                // newer than 2024-02-29T11:00 (strictly)
                vec![
                    "2024-03-01T11:00:00+00:00",
                    "2024-03-01T10:59:59+00:00",
                    "2024-03-01T10:00:00+00:00",
                    "2024-03-01T10:00:00+00:00",
                ],
            ),
            (
                KeepPolicy {
                    within: Some(KeepWithin::parse("1h").unwrap()),
                    ..Default::default()
                },
                // exactly one hour older (10:00) is not "newer than", 10:59:59 is
                vec!["2024-03-01T11:00:00+00:00", "2024-03-01T10:59:59+00:00"],
            ),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            let g = one_group(&s, p);
            assert_eq!(kept_times(&g), rfc(want), "case {i}: {p:?}");
            assert_eq!(g.keep.len() + g.remove.len(), s.len(), "case {i}");
        }
    }

    #[test]
    fn reasons_and_combination_is_or() {
        let s = list(TIMES);
        let p = KeepPolicy {
            last: Some(1),
            daily: Some(2),
            yearly: Some(2),
            ..Default::default()
        };
        let g = one_group(&s, &p);
        assert_eq!(
            kept_times(&g),
            rfc(&[
                "2024-03-01T11:00:00+00:00",
                "2024-02-29T10:00:00+00:00",
                "2023-12-31T23:59:59+00:00",
            ])
        );
        assert_eq!(
            g.keep[0].reasons,
            vec!["last snapshot", "daily snapshot", "yearly snapshot"]
        );
        assert_eq!(g.keep[1].reasons, vec!["daily snapshot"]);
        assert_eq!(g.keep[2].reasons, vec!["yearly snapshot"]);
        assert!(g.remove.iter().all(|r| r.reasons.is_empty()));
        // Removed ones come newest first too.
        assert_eq!(
            g.remove.first().unwrap().snapshot.time.to_rfc3339(),
            "2024-03-01T10:59:59+00:00"
        );
    }

    #[test]
    fn ties_with_identical_times_are_deterministic() {
        let s = list(&[
            "2024-03-01T10:00:00+00:00",
            "2024-03-01T10:00:00+00:00",
            "2024-03-01T10:00:00+00:00",
        ]);
        let p = KeepPolicy {
            last: Some(2),
            ..Default::default()
        };
        let g = one_group(&s, &p);
        assert_eq!(g.keep.len(), 2);
        let mut ids: Vec<Id> = s.iter().map(|x| x.0).collect();
        ids.sort();
        assert_eq!(g.keep[0].id, ids[0]);
        assert_eq!(g.keep[1].id, ids[1]);
        assert_eq!(g.remove[0].id, ids[2]);
        // Same input in another order: same outcome.
        let mut rev = s.clone();
        rev.reverse();
        let g2 = one_group(&rev, &p);
        assert_eq!(
            g2.remove.iter().map(|x| x.id).collect::<Vec<_>>(),
            vec![ids[2]]
        );
        // A daily bucket keeps just one of the identical ones.
        let g3 = one_group(
            &s,
            &KeepPolicy {
                daily: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(g3.keep.len(), 1);
        assert_eq!(g3.keep[0].id, ids[0]);
    }

    #[test]
    fn buckets_use_the_stored_time_zone() {
        // Local days: May 11, May 11, May 10. In UTC they would be May 11, May 10, May 10, and
        // the kept pair would differ.
        let s = list(&[
            "2024-05-11T00:30:00-05:00", // 05:30Z May 11
            "2024-05-11T01:30:00+02:00", // 23:30Z May 10
            "2024-05-10T22:00:00+00:00",
        ]);
        let g = one_group(
            &s,
            &KeepPolicy {
                daily: Some(10),
                ..Default::default()
            },
        );
        assert_eq!(
            kept_times(&g),
            rfc(&["2024-05-11T00:30:00-05:00", "2024-05-10T22:00:00+00:00"])
        );
        // ISO week across the year end: 2024-12-30 (Mon) is week 2025-01.
        let s = list(&[
            "2024-12-28T12:00:00+00:00",
            "2024-12-30T12:00:00+00:00",
            "2025-01-05T12:00:00+00:00",
        ]);
        let g = one_group(
            &s,
            &KeepPolicy {
                weekly: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(
            kept_times(&g),
            rfc(&["2025-01-05T12:00:00+00:00", "2024-12-28T12:00:00+00:00"])
        );
        let g = one_group(
            &s,
            &KeepPolicy {
                yearly: Some(5),
                ..Default::default()
            },
        );
        assert_eq!(
            kept_times(&g),
            rfc(&["2025-01-05T12:00:00+00:00", "2024-12-30T12:00:00+00:00"])
        );
    }

    #[test]
    fn groups_by_host_and_paths() {
        let s = vec![
            (
                Id::hash(b"1"),
                snap("2024-01-01T00:00:00Z", "a", &["/x"], &[]),
            ),
            (
                Id::hash(b"2"),
                snap("2024-01-02T00:00:00Z", "a", &["/x"], &[]),
            ),
            (
                Id::hash(b"3"),
                snap("2024-01-03T00:00:00Z", "b", &["/x"], &[]),
            ),
            (
                Id::hash(b"4"),
                snap("2024-01-04T00:00:00Z", "b", &["/x"], &[]),
            ),
            (
                Id::hash(b"5"),
                snap("2024-01-05T00:00:00Z", "a", &["/y", "/x"], &[]),
            ),
            (
                Id::hash(b"6"),
                snap("2024-01-06T00:00:00Z", "a", &["/x", "/y"], &[]),
            ),
        ];
        let p = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let gb = GroupBy::parse("host,paths").unwrap();
        let groups = plan(&s, &p, &gb, now()).unwrap();
        assert_eq!(groups.len(), 3, "paths are compared as sorted sets");
        let kept: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|k| k.id))
            .collect();
        assert_eq!(kept, vec![Id::hash(b"2"), Id::hash(b"6"), Id::hash(b"4")]);
        assert_eq!(groups[0].key.host.as_deref(), Some("a"));
        assert_eq!(
            groups[1].key.paths,
            Some(vec!["/x".to_string(), "/y".to_string()])
        );
        // By host only: two groups.
        let groups = plan(&s, &p, &GroupBy::parse("host").unwrap(), now()).unwrap();
        let kept: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|k| k.id))
            .collect();
        assert_eq!(kept, vec![Id::hash(b"6"), Id::hash(b"4")]);
        // No grouping: one group, one kept.
        let groups = plan(&s, &p, &GroupBy::parse("").unwrap(), now()).unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].keep[0].id, Id::hash(b"6"));
        assert_eq!(groups[0].key.to_string(), "all snapshots");
        assert!(GroupBy::parse("host,color").is_err());
    }

    #[test]
    fn groups_by_job_and_tags() {
        let s = vec![
            (
                Id::hash(b"1"),
                snap("2024-01-01T00:00:00Z", "a", &["/x"], &["job:n"]),
            ),
            (
                Id::hash(b"2"),
                snap("2024-01-02T00:00:00Z", "a", &["/x"], &["job:n", "z"]),
            ),
            (
                Id::hash(b"3"),
                snap("2024-01-03T00:00:00Z", "a", &["/x"], &["job:w"]),
            ),
            (
                Id::hash(b"4"),
                snap("2024-01-04T00:00:00Z", "a", &["/x"], &[]),
            ),
        ];
        let p = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let groups = plan(&s, &p, &GroupBy::parse("job").unwrap(), now()).unwrap();
        assert_eq!(groups.len(), 3);
        let kept: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|k| k.id))
            .collect();
        assert_eq!(kept, vec![Id::hash(b"4"), Id::hash(b"2"), Id::hash(b"3")]);
        assert_eq!(groups[0].key.job, Some(None));
        let groups = plan(&s, &p, &GroupBy::parse("tags").unwrap(), now()).unwrap();
        assert_eq!(
            groups.len(),
            4,
            "tag sets differ, so every snapshot is alone"
        );
        assert!(groups.iter().all(|g| g.remove.is_empty()));
    }

    #[test]
    fn keep_tag() {
        let s = vec![
            (
                Id::hash(b"1"),
                snap("2024-01-01T00:00:00Z", "a", &["/x"], &["nightly"]),
            ),
            (
                Id::hash(b"2"),
                snap("2024-01-02T00:00:00Z", "a", &["/x"], &["nightly", "keep"]),
            ),
            (
                Id::hash(b"3"),
                snap("2024-01-03T00:00:00Z", "a", &["/x"], &["keep"]),
            ),
            (
                Id::hash(b"4"),
                snap("2024-01-04T00:00:00Z", "a", &["/x"], &[]),
            ),
        ];
        let g = one_group(
            &s,
            &KeepPolicy {
                tags: vec!["nightly".into()],
                ..Default::default()
            },
        );
        let kept: Vec<Id> = g.keep.iter().map(|k| k.id).collect();
        assert_eq!(kept, vec![Id::hash(b"2"), Id::hash(b"1")]);
        assert_eq!(g.keep[0].reasons, vec!["tag nightly"]);
        // A comma set needs all its tags; several --keep-tag are alternatives.
        let g = one_group(
            &s,
            &KeepPolicy {
                tags: vec!["nightly,keep".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            g.keep.iter().map(|k| k.id).collect::<Vec<_>>(),
            vec![Id::hash(b"2")]
        );
        assert_eq!(g.keep[0].reasons, vec!["tags nightly,keep"]);
        let g = one_group(
            &s,
            &KeepPolicy {
                tags: vec!["keep".into(), "nightly".into()],
                last: Some(1),
                ..Default::default()
            },
        );
        assert_eq!(g.keep.len(), 4);
        assert_eq!(g.keep[0].reasons, vec!["last snapshot"]);
        assert_eq!(g.keep[2].reasons, vec!["tag keep", "tag nightly"]);
        assert_eq!(g.keep[3].reasons, vec!["tag nightly"]);
        // Tags are not counted: keep-last still counts the tagged snapshots.
        let g = one_group(
            &s,
            &KeepPolicy {
                tags: vec!["keep".into()],
                last: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            g.keep.iter().map(|k| k.id).collect::<Vec<_>>(),
            vec![Id::hash(b"4"), Id::hash(b"3"), Id::hash(b"2")]
        );
        assert!(plan(
            &s,
            &KeepPolicy {
                tags: vec![",".into()],
                ..Default::default()
            },
            &GroupBy::default(),
            now()
        )
        .is_err());
    }

    #[test]
    fn policy_keeping_all_and_empty_policy() {
        let s = list(TIMES);
        for p in [
            KeepPolicy {
                last: Some(100),
                ..Default::default()
            },
            KeepPolicy {
                within: Some(KeepWithin::parse("10y").unwrap()),
                ..Default::default()
            },
            KeepPolicy {
                within: Some(KeepWithin::parse("99999999y").unwrap()),
                ..Default::default()
            },
        ] {
            let g = one_group(&s, &p);
            assert_eq!(g.keep.len(), s.len(), "{p:?}");
            assert!(g.remove.is_empty());
        }
        for p in [
            KeepPolicy::default(),
            KeepPolicy {
                last: Some(0),
                daily: Some(0),
                within: Some(KeepWithin::default()),
                ..Default::default()
            },
        ] {
            let e = plan(&s, &p, &GroupBy::default(), now())
                .unwrap_err()
                .to_string();
            assert!(e.contains("no policy given"), "{e}");
        }
        // An empty list with a policy is fine.
        assert!(plan(
            &[],
            &KeepPolicy {
                last: Some(1),
                ..Default::default()
            },
            &GroupBy::default(),
            now()
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn keep_within_parse_and_arithmetic() {
        let w = KeepWithin::parse("1y2m3d4h").unwrap();
        assert_eq!(
            w,
            KeepWithin {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(w.to_string(), "1y2m3d4h");
        assert_eq!(KeepWithin::parse("4h1y").unwrap().to_string(), "1y4h");
        assert_eq!(KeepWithin::parse("2d").unwrap().days, 2);
        for bad in ["", "5", "d", "1x", "1d2", "-1d", "1.5d", "99999999999d"] {
            assert!(KeepWithin::parse(bad).is_err(), "{bad:?} must be rejected");
        }
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        // Go's AddDate: Mar 31 − 1 month is "Feb 31", normalised to Mar 2 (leap year).
        assert_eq!(
            KeepWithin::parse("1m")
                .unwrap()
                .before(t("2024-03-31T12:00:00+01:00")),
            Some(t("2024-03-02T12:00:00+01:00"))
        );
        assert_eq!(
            KeepWithin::parse("1y")
                .unwrap()
                .before(t("2024-02-29T00:00:00Z")),
            Some(t("2023-03-01T00:00:00Z"))
        );
        assert_eq!(
            KeepWithin::parse("14m")
                .unwrap()
                .before(t("2024-01-15T00:00:00Z")),
            Some(t("2022-11-15T00:00:00Z"))
        );
        assert_eq!(
            KeepWithin::parse("1d25h")
                .unwrap()
                .before(t("2024-03-01T00:30:00-05:00")),
            Some(t("2024-02-27T23:30:00-05:00"))
        );
    }

    #[test]
    fn within_is_relative_to_each_groups_newest() {
        let s = vec![
            (
                Id::hash(b"1"),
                snap("2020-01-01T00:00:00Z", "old", &["/x"], &[]),
            ),
            (
                Id::hash(b"2"),
                snap("2020-01-05T00:00:00Z", "old", &["/x"], &[]),
            ),
            (
                Id::hash(b"3"),
                snap("2024-01-01T00:00:00Z", "new", &["/x"], &[]),
            ),
            (
                Id::hash(b"4"),
                snap("2024-01-10T00:00:00Z", "new", &["/x"], &[]),
            ),
        ];
        let p = KeepPolicy {
            within: Some(KeepWithin::parse("7d").unwrap()),
            ..Default::default()
        };
        let groups = plan(&s, &p, &GroupBy::parse("host").unwrap(), now()).unwrap();
        let kept: Vec<Id> = groups
            .iter()
            .flat_map(|g| g.keep.iter().map(|k| k.id))
            .collect();
        assert_eq!(kept, vec![Id::hash(b"4"), Id::hash(b"2"), Id::hash(b"1")]);
        assert_eq!(groups[0].keep[0].reasons, vec!["within 7d"]);
    }

    #[test]
    fn safety_snapshots_are_not_counted_and_keep_their_own_days() {
        let backup = |id: &[u8], t| (Id::hash(id), snap(t, "h", &["/d"], &["job:app"]));
        let safety = |id: &[u8], t| (Id::hash(id), snap(t, "h", &["/d"], &["pre-restore"]));
        let s = vec![
            backup(b"b1", "2026-12-01T00:00:00Z"),
            backup(b"b2", "2026-12-02T00:00:00Z"),
            // Newer than every backup, of the same host and paths.
            safety(b"fresh", "2026-12-09T00:00:00Z"),
            // Taken more than SAFETY_KEEP_DAYS ago.
            safety(b"old", "2026-11-20T00:00:00Z"),
        ];
        let last1 = KeepPolicy {
            last: Some(1),
            ..Default::default()
        };
        let ids = |l: &[Planned]| l.iter().map(|p| p.id).collect::<Vec<_>>();
        let groups = plan(&s, &last1, &GroupBy::parse("host,paths").unwrap(), now()).unwrap();
        assert_eq!(groups.len(), 2);
        let (backups, safeties) = (&groups[0], &groups[1]);
        assert!(!backups.key.safety && safeties.key.safety);
        // The newest backup is kept: the newer safety snapshot does not count as "last 1".
        assert_eq!(ids(&backups.keep), vec![Id::hash(b"b2")]);
        assert_eq!(ids(&backups.remove), vec![Id::hash(b"b1")]);
        // The fresh safety snapshot is kept by its own rule, the old one is removed.
        assert_eq!(ids(&safeties.keep), vec![Id::hash(b"fresh")]);
        assert_eq!(
            safeties.keep[0].reasons,
            vec!["safety snapshot, kept until 2026-12-23 00:00 UTC"]
        );
        assert_eq!(ids(&safeties.remove), vec![Id::hash(b"old")]);
        assert_eq!(
            safeties.key.to_string(),
            "safety snapshots (pre-restore), host \"h\", paths [/d]"
        );
        assert_eq!(serde_json::to_value(&safeties.key).unwrap()["safety"], true);
        assert!(serde_json::to_value(&backups.key)
            .unwrap()
            .get("safety")
            .is_none());

        // --keep-tag pre-restore keeps it for good; no rule of counting ever does.
        let tagged = KeepPolicy {
            tags: vec!["pre-restore".into()],
            ..last1.clone()
        };
        let groups = plan(&s, &tagged, &GroupBy::parse("").unwrap(), now()).unwrap();
        assert_eq!(groups[1].keep.len(), 2);
        assert_eq!(groups[1].keep[1].reasons, vec!["tag pre-restore"]);
        let many = KeepPolicy {
            last: Some(100),
            within: Some(KeepWithin::parse("10y").unwrap()),
            ..Default::default()
        };
        let groups = plan(&s, &many, &GroupBy::parse("").unwrap(), now()).unwrap();
        assert_eq!(ids(&groups[1].remove), vec![Id::hash(b"old")]);
    }
}
