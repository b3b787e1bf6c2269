//! The directories a mount shows above the snapshots (restic's `mount` layout, pure): `ids/ID`, `snapshots/TIME`, `hosts/HOST/TIME`, `tags/TAG/TIME`, and a `latest` symlink beside each list of times.

use crate::repo::id::Id;
use crate::repo::snapshot::Snapshot;
use chrono::{DateTime, FixedOffset};
use std::collections::BTreeMap;

/// The name of the symlink to the newest snapshot of a folder of times.
pub const LATEST: &str = "latest";

/// One entry of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A folder of the layout itself (`ids`, `hosts/HOST`, ...).
    Dir(BTreeMap<String, Entry>),
    /// The root of a snapshot: the position of the snapshot in the list given to [`build`].
    Snapshot(usize),
    /// The `latest` symlink: the name it points to, in the same folder.
    Latest(String),
}

/// A snapshot's time as restic's default `--time-template` (Go's
/// `2006-01-02T15:04:05Z07:00`) writes it: whole seconds in the snapshot's own offset, `Z` for
/// UTC, else `+hh:mm`.
pub fn time_name(t: &DateTime<FixedOffset>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S");
    if t.offset().local_minus_utc() == 0 {
        format!("{base}Z")
    } else {
        format!("{base}{}", t.format("%:z"))
    }
}

/// The layout of `snaps`: the root folder's entries. Snapshots are placed oldest first, so two
/// with the same name in a folder are told apart as restic does (`NAME`, `NAME-1`, ...) and
/// `latest` names the newest.
pub fn build(snaps: &[(Id, Snapshot)]) -> BTreeMap<String, Entry> {
    let mut order: Vec<usize> = (0..snaps.len()).collect();
    order.sort_by_key(|&i| snaps[i].1.time);
    let mut root = BTreeMap::new();
    for name in ["ids", "snapshots", "hosts", "tags"] {
        root.insert(name.to_string(), Entry::Dir(BTreeMap::new()));
    }
    for i in order {
        let (id, s) = &snaps[i];
        let time = time_name(&s.time);
        add(&mut root, &["ids"], &id.short(), i, false);
        add(&mut root, &["snapshots"], &time, i, true);
        if !s.hostname.is_empty() {
            add(&mut root, &["hosts", &s.hostname], &time, i, true);
        }
        for tag in s.tags.iter().filter(|t| !t.is_empty()) {
            add(&mut root, &["tags", tag], &time, i, true);
        }
    }
    root
}

/// Adds snapshot `i` as `name` (made unique) in the folder `dirs` below `root` (created as
/// needed); `latest` then points at it, when the folder is a list of times.
fn add(root: &mut BTreeMap<String, Entry>, dirs: &[&str], name: &str, i: usize, latest: bool) {
    let mut here = root;
    for d in dirs {
        let e = here
            .entry(d.to_string())
            .or_insert_with(|| Entry::Dir(BTreeMap::new()));
        here = match e {
            Entry::Dir(m) => m,
            // A snapshot named like a folder of the layout cannot happen: names of one folder
            // are all times, all ids, or all hosts or tags.
            _ => return,
        };
    }
    let unique = unique_name(here, name);
    here.insert(unique.clone(), Entry::Snapshot(i));
    if latest {
        here.insert(LATEST.to_string(), Entry::Latest(unique));
    }
}

/// `name`, or `name-1`, `name-2`, ... : the first that `dir` does not hold yet.
fn unique_name(dir: &BTreeMap<String, Entry>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while dir.contains_key(&candidate) || candidate == LATEST {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str, host: &str, tags: &[&str]) -> Snapshot {
        serde_json::from_value(serde_json::json!({
            "time": time,
            "tree": Id::hash(b"t"),
            "paths": ["/x"],
            "hostname": host,
            "tags": tags,
        }))
        .unwrap()
    }

    fn dir<'a>(root: &'a BTreeMap<String, Entry>, path: &[&str]) -> &'a BTreeMap<String, Entry> {
        let mut here = root;
        for p in path {
            match &here[*p] {
                Entry::Dir(m) => here = m,
                e => panic!("{p} is {e:?}"),
            }
        }
        here
    }

    fn names(m: &BTreeMap<String, Entry>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn times_are_written_as_restics_default_template() {
        let t = DateTime::parse_from_rfc3339("2026-12-03T18:27:14.123456789+00:00").unwrap();
        assert_eq!(time_name(&t), "2026-12-03T18:27:14Z");
        let t = DateTime::parse_from_rfc3339("2026-12-03T19:27:14.5+01:00").unwrap();
        assert_eq!(time_name(&t), "2026-12-03T19:27:14+01:00");
        let t = DateTime::parse_from_rfc3339("2026-12-03T13:57:14-04:30").unwrap();
        assert_eq!(time_name(&t), "2026-12-03T13:57:14-04:30");
    }

    #[test]
    fn snapshots_go_under_ids_times_hosts_and_each_tag_with_latest() {
        // Given newest first: the layout orders by time, not by the list.
        let snaps = vec![
            (Id::hash(b"b"), snap("2026-12-03T10:00:02Z", "h2", &[])),
            (
                Id::hash(b"a"),
                snap("2026-12-03T10:00:01Z", "h1", &["x", "y"]),
            ),
        ];
        let root = build(&snaps);
        assert_eq!(names(&root), ["hosts", "ids", "snapshots", "tags"]);
        let ids = dir(&root, &["ids"]);
        assert_eq!(ids[&Id::hash(b"a").short()], Entry::Snapshot(1));
        assert!(!ids.contains_key(LATEST));
        let times = dir(&root, &["snapshots"]);
        assert_eq!(
            names(times),
            ["2026-12-03T10:00:01Z", "2026-12-03T10:00:02Z", "latest"]
        );
        assert_eq!(
            times["latest"],
            Entry::Latest("2026-12-03T10:00:02Z".into())
        );
        assert_eq!(names(dir(&root, &["hosts"])), ["h1", "h2"]);
        assert_eq!(
            names(dir(&root, &["hosts", "h1"])),
            ["2026-12-03T10:00:01Z", "latest"]
        );
        assert_eq!(names(dir(&root, &["tags"])), ["x", "y"]);
        assert_eq!(
            dir(&root, &["tags", "y"])["2026-12-03T10:00:01Z"],
            Entry::Snapshot(1)
        );
    }

    #[test]
    fn the_same_second_twice_is_told_apart_and_latest_is_the_later() {
        let snaps = vec![
            (Id::hash(b"a"), snap("2026-12-03T10:00:01.1Z", "h", &[])),
            (Id::hash(b"b"), snap("2026-12-03T10:00:01.7Z", "h", &[])),
        ];
        let root = build(&snaps);
        let times = dir(&root, &["snapshots"]);
        assert_eq!(times["2026-12-03T10:00:01Z"], Entry::Snapshot(0));
        assert_eq!(times["2026-12-03T10:00:01Z-1"], Entry::Snapshot(1));
        assert_eq!(
            times["latest"],
            Entry::Latest("2026-12-03T10:00:01Z-1".into())
        );
    }

    #[test]
    fn an_empty_repository_has_the_four_empty_folders() {
        let root = build(&[]);
        assert_eq!(names(&root), ["hosts", "ids", "snapshots", "tags"]);
        assert!(dir(&root, &["tags"]).is_empty());
    }
}
