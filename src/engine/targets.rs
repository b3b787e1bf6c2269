//! The paths a backup is given and where they go in the snapshot's tree, by restic's convention: an absolute path keeps its full path, a relative one is stored below the tree's root from its first name on.
//!
//! restic 0.14's rules (`internal/archiver/tree.go`), which this module follows so that scripts
//! written for restic carry over:
//! - `/srv/app/data` is stored as `/srv/app/data`;
//! - `data`, `./data` and `a/../data` are stored as `/data`: the path is cleaned lexically and
//!   its names are put below the root;
//! - leading `..` are dropped from the tree but kept on disk: from `/srv/app`, `../x/data` is
//!   stored as `/x/data` and read from `/srv/x/data` (`x` gets the metadata of `/srv/x`);
//! - `.`, `..` (a path of nothing but `.` and `..`) stands for the entries of that directory,
//!   each stored as a relative path of its own;
//! - two paths whose first names are equal but that start from different directories (say `data`
//!   and `../data`, or `tmp` and `/tmp/x`) do not merge: the later one gets `data-1` (then `-2`
//!   ...), in the order the paths were given.
//!
//! The snapshot's `paths` stay absolute, as restic's are (they decide the parent snapshot).

use crate::error::{Error, Result};
use std::path::{Component, Path, PathBuf};

/// The lexically normalised absolute form of `p` (no `.` or `..`; symlinks are not resolved).
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("read the current directory", e))?
            .join(p)
    };
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// The directory a path's names start from (restic's `Root` of a top-level tree entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// An absolute path: from `/`.
    Root,
    /// A relative path with this many leading `..` (0: the current directory).
    Up(usize),
}

/// A path as restic cleans it: where its names start and the names (no `.`, no `..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cleaned {
    pub start: Start,
    pub names: Vec<String>,
}

/// `p` cleaned lexically, as Go's `filepath.Clean`: `a/../b` is `b`, a leading `..` stays
/// (in `start`), `..` at the root is the root.
pub(crate) fn clean(p: &Path) -> Cleaned {
    let mut start = if p.has_root() {
        Start::Root
    } else {
        Start::Up(0)
    };
    let mut names: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => names.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                if names.pop().is_none() {
                    if let Start::Up(n) = start {
                        start = Start::Up(n + 1);
                    }
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Cleaned { start, names }
}

/// A path to back up: where it is on disk, and the names leading to it in the snapshot's tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// Lexically normalised and absolute (an entry of the snapshot's `paths`).
    pub disk: PathBuf,
    /// From the tree's root down to the target; the first may be renamed (`data-1`).
    pub tree: Vec<String>,
    /// Where the first name starts from (two top-level entries merge only if it is the same).
    pub start: Start,
}

impl Target {
    /// The path on disk of the tree entry `depth` names down (1: the first name).
    pub fn disk_at(&self, depth: usize) -> &Path {
        let up = self.tree.len() - depth;
        self.disk
            .ancestors()
            .nth(up)
            .expect("a target's disk path has a name for each of its tree names")
    }

    /// The tree path of the target, as `/`-rooted path (as messages and extras name it).
    pub fn tree_path(&self) -> PathBuf {
        let mut p = PathBuf::from("/");
        p.extend(&self.tree);
        p
    }
}

/// The targets of `paths` (given relative to `cwd`, the current directory), in the order
/// given: relative paths that are only `.` and `..` replaced by their entries (`entries`
/// lists a directory), then placed by [`place`].
pub(crate) fn targets(
    paths: &[PathBuf],
    cwd: &Path,
    entries: &mut dyn FnMut(&Path) -> Result<Vec<String>>,
) -> Result<Vec<Target>> {
    let mut out = Vec::new();
    for p in paths {
        let c = clean(p);
        let disk = normalise(&cwd.join(p));
        if c.names.is_empty() && c.start != Start::Root {
            for name in entries(&disk)? {
                out.push(Target {
                    disk: disk.join(&name),
                    tree: vec![name],
                    start: c.start,
                });
            }
            continue;
        }
        out.push(Target {
            disk,
            tree: c.names,
            start: c.start,
        });
    }
    Ok(place(out))
}

/// `p` (absolute) without `.` and `..`.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Renames, in order, a target whose first name is taken by an earlier target that starts from
/// another directory: `name-1`, `name-2`, ... (the first that is free or starts from the same
/// directory), as restic does.
pub(crate) fn place(mut targets: Vec<Target>) -> Vec<Target> {
    let mut tops: Vec<(String, Start)> = Vec::new();
    for t in &mut targets {
        let Some(first) = t.tree.first().cloned() else {
            continue;
        };
        let mut name = first.clone();
        let mut i = 0;
        loop {
            match tops.iter().find(|(n, _)| *n == name) {
                None => {
                    tops.push((name.clone(), t.start));
                    break;
                }
                Some((_, s)) if *s == t.start => break,
                Some(_) => {
                    i += 1;
                    name = format!("{first}-{i}");
                }
            }
        }
        t.tree[0] = name;
    }
    targets
}

/// The targets in tree order without duplicates, less those inside another target (which
/// covers them).
pub(crate) fn covering(mut targets: Vec<Target>) -> Vec<Target> {
    targets.sort_by(|a, b| a.tree.cmp(&b.tree));
    targets.dedup_by(|a, b| a.tree == b.tree);
    let inside = |t: &Target, o: &Target| o.tree != t.tree && t.tree.starts_with(&o.tree);
    targets
        .iter()
        .filter(|t| !targets.iter().any(|o| inside(t, o)))
        .cloned()
        .collect()
}

/// Where a single path goes in the snapshot's tree without the renaming of two first names that clash: for
/// `backupctl backup --sqlite data/app.db`, `/data/app.db`.
pub fn tree_path_of(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        return absolute(p);
    }
    let mut out = PathBuf::from("/");
    out.extend(clean(p).names);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(cwd: &str, paths: &[&str]) -> Vec<(String, String)> {
        let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        let mut entries = |d: &Path| -> Result<Vec<String>> {
            Ok(match d.to_str().unwrap() {
                "/srv/app" => vec!["data".into(), "file.txt".into()],
                "/srv" => vec!["app".into(), "x".into()],
                other => panic!("unexpected listing of {other}"),
            })
        };
        targets(&paths, Path::new(cwd), &mut entries)
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.tree_path().display().to_string(),
                    t.disk.display().to_string(),
                )
            })
            .collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn relative_paths_go_below_the_root_as_restic_stores_them() {
        // What `restic backup` 0.14 stored for each, run in /srv/app (restic ls latest).
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: &[Case] = &[
            (&["data"], &[("/data", "/srv/app/data")]),
            (&["./data"], &[("/data", "/srv/app/data")]),
            (&["../x/data"], &[("/x/data", "/srv/x/data")]),
            (&["../a/../b/data2"], &[("/b/data2", "/srv/b/data2")]),
            (&["data/../data/f"], &[("/data/f", "/srv/app/data/f")]),
            (
                &["../../srv/app/data"],
                &[("/srv/app/data", "/srv/app/data")],
            ),
            (&["/srv/app/data"], &[("/srv/app/data", "/srv/app/data")]),
            (
                &["."],
                &[
                    ("/data", "/srv/app/data"),
                    ("/file.txt", "/srv/app/file.txt"),
                ],
            ),
            (&[".."], &[("/app", "/srv/app"), ("/x", "/srv/x")]),
        ];
        for (paths, want) in cases {
            assert_eq!(at("/srv/app", paths), pairs(want), "{paths:?}");
        }
    }

    #[test]
    fn equal_first_names_from_other_directories_are_renamed_in_order() {
        assert_eq!(
            at("/srv/app", &["data", "../data"]),
            pairs(&[("/data", "/srv/app/data"), ("/data-1", "/srv/data")])
        );
        assert_eq!(
            at("/srv/app", &["../data", "data"]),
            pairs(&[("/data", "/srv/data"), ("/data-1", "/srv/app/data")])
        );
        // Absolute paths start from the root: `srv` and `/srv/data` differ too.
        assert_eq!(
            at("/srv/app", &["/srv/data", "../app/data", "srv"]),
            pairs(&[
                ("/srv/data", "/srv/data"),
                ("/app/data", "/srv/app/data"),
                ("/srv-1", "/srv/app/srv")
            ])
        );
        // The same start merges: `data` and `data/sub` share `/data`.
        assert_eq!(
            at("/srv/app", &["data/sub", "data", "x/y", "../x/z"]),
            pairs(&[
                ("/data/sub", "/srv/app/data/sub"),
                ("/data", "/srv/app/data"),
                ("/x/y", "/srv/app/x/y"),
                ("/x-1/z", "/srv/x/z")
            ])
        );
    }

    #[test]
    fn covering_is_by_tree_path_and_each_level_has_its_disk_path() {
        let ts = targets(
            &[
                PathBuf::from("data/sub"),
                PathBuf::from("../app/data"),
                PathBuf::from("data"),
            ],
            Path::new("/srv/app"),
            &mut |_| unreachable!(),
        )
        .unwrap();
        let c = covering(ts);
        let trees: Vec<PathBuf> = c.iter().map(Target::tree_path).collect();
        assert_eq!(
            trees,
            vec![PathBuf::from("/app/data"), PathBuf::from("/data")]
        );
        assert_eq!(c[0].disk_at(1), Path::new("/srv/app"));
        assert_eq!(c[0].disk_at(2), Path::new("/srv/app/data"));
    }

    #[test]
    fn a_single_path_s_tree_path() {
        assert_eq!(
            tree_path_of(Path::new("a/../db/x.db")).unwrap(),
            Path::new("/db/x.db")
        );
        assert_eq!(
            tree_path_of(Path::new("/srv/./x.db")).unwrap(),
            Path::new("/srv/x.db")
        );
    }
}
