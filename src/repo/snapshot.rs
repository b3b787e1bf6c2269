//! Snapshot files (`snapshots/<id>`): when, where from, and which tree; plus finding and filtering them.

use super::id::Id;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// The tag prefix that records which backupd job made a snapshot (`job:NAME`).
pub const JOB_TAG_PREFIX: &str = "job:";
/// The tag that marks a snapshot some of whose sources could not be read.
pub const PARTIAL_TAG: &str = "partial";

/// What a backup did, stored in the snapshot (field names as restic 0.17 writes them; restic 0.14
/// ignores the field).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct SnapshotSummary {
    #[serde(serialize_with = "super::gotime::serialize_opt")]
    pub backup_start: Option<DateTime<FixedOffset>>,
    #[serde(serialize_with = "super::gotime::serialize_opt")]
    pub backup_end: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    pub files_new: u64,
    #[serde(default)]
    pub files_changed: u64,
    #[serde(default)]
    pub files_unmodified: u64,
    #[serde(default)]
    pub dirs_new: u64,
    #[serde(default)]
    pub dirs_changed: u64,
    #[serde(default)]
    pub dirs_unmodified: u64,
    #[serde(default)]
    pub data_blobs: u64,
    #[serde(default)]
    pub tree_blobs: u64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub data_added_packed: u64,
    #[serde(default)]
    pub total_files_processed: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Some sources could not be read (or changed while read); `warnings` names them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Snapshot {
    #[serde(serialize_with = "super::gotime::serialize")]
    pub time: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Id>,
    pub tree: Id,
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<Id>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub program_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<SnapshotSummary>,
}

impl Snapshot {
    /// The job that made it, from its `job:NAME` tag.
    pub fn job(&self) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(JOB_TAG_PREFIX))
    }

    pub fn is_partial(&self) -> bool {
        self.summary.as_ref().map(|s| s.partial).unwrap_or(false)
            || self.tags.iter().any(|t| t == PARTIAL_TAG)
    }

    pub fn has_tag(&self, t: &str) -> bool {
        self.tags.iter().any(|x| x == t)
    }
}

/// Which snapshots a command works on. Empty lists match everything. Each entry of `tags` is a
/// comma-separated set that must all be present; the entries are alternatives (as restic).
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub hosts: Vec<String>,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub job: Option<String>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        if !self.hosts.is_empty() && !self.hosts.contains(&s.hostname) {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p)) {
            return false;
        }
        if !self.tags.is_empty()
            && !self.tags.iter().any(|set| {
                set.split(',')
                    .filter(|t| !t.is_empty())
                    .all(|t| s.has_tag(t))
            })
        {
            return false;
        }
        if let Some(j) = &self.job {
            if s.job() != Some(j.as_str()) {
                return false;
            }
        }
        true
    }
}

/// Why a snapshot reference did not resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FindError {
    #[error("no snapshot matches {0:?}")]
    NotFound(String),
    #[error("snapshot id prefix {0:?} is ambiguous: it matches {1} snapshots; give more digits")]
    Ambiguous(String, usize),
}

/// Resolves `latest` (the newest matching `filter`) or a unique id prefix.
pub fn find<'a>(
    all: &'a [(Id, Snapshot)],
    spec: &str,
    filter: &SnapshotFilter,
) -> Result<&'a (Id, Snapshot), FindError> {
    if spec == "latest" {
        return all
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .max_by_key(|(_, s)| s.time)
            .ok_or_else(|| FindError::NotFound(spec.into()));
    }
    let spec_l = spec.to_ascii_lowercase();
    let m: Vec<_> = all
        .iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match m.len() {
        0 => Err(FindError::NotFound(spec.into())),
        1 => Ok(m[0]),
        n => {
            // Several files may hold the same snapshot only if one is an exact match.
            if let Some(exact) = m.iter().find(|(id, _)| id.to_hex() == spec_l) {
                return Ok(exact);
            }
            Err(FindError::Ambiguous(spec.into(), n))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(host: &str, paths: &[&str], tags: &[&str], secs: i64) -> Snapshot {
        Snapshot {
            time: DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
            parent: None,
            tree: Id::hash(b"t"),
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

    #[test]
    fn filter_and_find() {
        let all = vec![
            (Id::hash(b"1"), snap("a", &["/x"], &["job:nightly"], 100)),
            (Id::hash(b"2"), snap("b", &["/x"], &["t1", "t2"], 200)),
            (Id::hash(b"3"), snap("a", &["/y"], &["t1"], 300)),
        ];
        let f = SnapshotFilter {
            hosts: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(find(&all, "latest", &f).unwrap().0, Id::hash(b"3"));
        let f = SnapshotFilter {
            tags: vec!["t1,t2".into()],
            ..Default::default()
        };
        assert_eq!(find(&all, "latest", &f).unwrap().0, Id::hash(b"2"));
        let f = SnapshotFilter {
            job: Some("nightly".into()),
            ..Default::default()
        };
        assert_eq!(find(&all, "latest", &f).unwrap().0, Id::hash(b"1"));
        let f = SnapshotFilter {
            paths: vec!["/z".into()],
            ..Default::default()
        };
        assert!(find(&all, "latest", &f).is_err());
        let id2 = Id::hash(b"2").to_hex();
        assert_eq!(
            find(&all, &id2[..8], &SnapshotFilter::default()).unwrap().0,
            Id::hash(b"2")
        );
        assert_eq!(
            find(&all, "", &SnapshotFilter::default()),
            Err(FindError::Ambiguous("".into(), 3))
        );
    }

    #[test]
    fn restic_snapshot_parses() {
        let j = r#"{"time":"2015-01-02T18:10:50.895208559+01:00","tree":"2da81727b6585232894cfbb8f8bdab8d1eccd3d8f7c92bc934d62e62e618ffdf","paths":["/tmp/testdata"],"hostname":"kasimir","username":"fd0","uid":1000,"gid":100,"tags":["NL"]}"#;
        let s: Snapshot = serde_json::from_str(j).unwrap();
        assert_eq!(s.hostname, "kasimir");
        assert!(!s.is_partial());
        assert_eq!(s.job(), None);
    }
}
