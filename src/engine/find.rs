//! Finding paths in snapshots (`backupctl find`): the glob patterns, the modification-time window,
//! Go's permission string, and the walk that reports each match.

use crate::error::Result;
use crate::repo::id::Id;
use crate::repo::tree::{gomode, Node};
use crate::repo::Repository;
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};
use globset::{GlobBuilder, GlobMatcher};

/// One piece of a pattern between slashes.
#[derive(Debug, Clone)]
enum Part {
    /// `**`: any number of names, none included.
    Any,
    /// A glob of one name (`*`, `?`, `[...]`, `\` escapes).
    Name(GlobMatcher),
}

/// A pattern of `find`. One starting with `/` must match the whole path from the root; any other
/// must match the path's last names (`foo` matches every entry named foo, `a/*.c` every .c file
/// in a directory named a). `**` stands for any number of directories, so `foo/**` is foo and
/// everything below it.
#[derive(Debug, Clone)]
pub struct Pattern {
    parts: Vec<Part>,
}

/// Why a pattern was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {detail}")]
pub struct PatternError {
    pattern: String,
    detail: String,
}

impl Pattern {
    /// Parses `s`; with `ignore_case` names match whatever their case.
    pub fn parse(s: &str, ignore_case: bool) -> Result<Pattern, PatternError> {
        let err = |detail: String| PatternError {
            pattern: s.into(),
            detail,
        };
        if s.is_empty() {
            return Err(err("it is empty".into()));
        }
        let mut parts = Vec::new();
        if !s.starts_with('/') {
            parts.push(Part::Any);
        }
        for p in s.split('/').filter(|p| !p.is_empty()) {
            if p == "**" {
                parts.push(Part::Any);
                continue;
            }
            let g = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|e| err(e.kind().to_string()))?;
            parts.push(Part::Name(g.compile_matcher()));
        }
        Ok(Pattern { parts })
    }

    /// Whether the path ("/a/b") matches.
    pub fn matches(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        whole(&self.parts, &names)
    }

    /// Whether something below the directory at `path` could match (else the walk skips it).
    pub fn may_match_below(&self, path: &str) -> bool {
        let names: Vec<&str> = path.split('/').filter(|n| !n.is_empty()).collect();
        prefix(&self.parts, &names)
    }
}

fn whole(parts: &[Part], names: &[&str]) -> bool {
    match parts.split_first() {
        None => names.is_empty(),
        Some((Part::Any, rest)) => (0..=names.len()).any(|k| whole(rest, &names[k..])),
        Some((Part::Name(g), rest)) => match names.split_first() {
            Some((n, more)) => g.is_match(n) && whole(rest, more),
            None => false,
        },
    }
}

/// Whether `names` followed by at least one more name can match.
fn prefix(parts: &[Part], names: &[&str]) -> bool {
    match (parts.split_first(), names.split_first()) {
        (None, _) => false,
        (Some((Part::Any, _)), _) => true,
        (Some(_), None) => true,
        (Some((Part::Name(g), rest)), Some((n, more))) => g.is_match(n) && prefix(rest, more),
    }
}

/// The modification times a match may have (both ends included).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeWindow {
    pub oldest: Option<DateTime<FixedOffset>>,
    pub newest: Option<DateTime<FixedOffset>>,
}

impl TimeWindow {
    pub fn contains(&self, t: &DateTime<FixedOffset>) -> bool {
        self.oldest.is_none_or(|o| *t >= o) && self.newest.is_none_or(|n| *t <= n)
    }
}

/// Parses a time of --oldest/--newest: RFC 3339, or as restic takes them, in local time
/// unless an offset is given: `2006-01-02`, `2006-01-02 15:04[:05][ -0700]`, `02.01.2006`,
/// `02.01.2006 15:04[:05][ -0700]`.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    for f in ["%Y-%m-%d %H:%M:%S %z", "%d.%m.%Y %H:%M:%S %z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%d.%m.%Y %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .or_else(|| {
        ["%Y-%m-%d", "%d.%m.%Y"]
            .iter()
            .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
}

/// A Go FileMode as Go's `FileMode.String` writes it (restic's `permissions`): type letters
/// (`d` directory, `L` symlink, `D` device, `c` char device, `p` pipe, `S` socket, `u` setuid,
/// `g` setgid, `t` sticky), or `-`, then `rwxrwxrwx`.
pub fn permissions(mode: u32) -> String {
    const LETTERS: &[u8] = b"dalTLDpSugct?";
    let mut out = String::new();
    for (i, c) in LETTERS.iter().enumerate() {
        if mode & (1 << (31 - i)) != 0 {
            out.push(*c as char);
        }
    }
    if out.is_empty() {
        out.push('-');
    }
    for i in 0..9 {
        let set = mode & gomode::PERM & (1 << (8 - i)) != 0;
        out.push(if set { b"rwxrwxrwx"[i] as char } else { '-' });
    }
    out
}

/// Visits, depth-first in name order, every node below `tree` whose path matches one of
/// `patterns` and whose modification time is in `window`; directories no pattern can match
/// below are not read.
pub fn find_in_tree(
    repo: &Repository,
    tree: &Id,
    patterns: &[Pattern],
    window: &TimeWindow,
    found: &mut dyn FnMut(&str, &Node),
) -> Result<()> {
    super::walk::walk_tree(repo, tree, "", &mut |path, node| {
        if window.contains(&node.mtime) && patterns.iter().any(|p| p.matches(path)) {
            found(path, node);
        }
        Ok(node.is_dir() && patterns.iter().any(|p| p.may_match_below(path)))
    })
}

/// What `find --blob/--tree/--pack` looks for: blob and tree ids, each a full id or a prefix
/// (a full id is looked up in a set, so a pack's thousands of blobs are cheap to seek).
#[derive(Debug, Clone, Default)]
pub struct ObjectIds {
    blobs: Sought,
    trees: Sought,
}

#[derive(Debug, Clone, Default)]
struct Sought {
    full: std::collections::HashSet<Id>,
    prefixes: Vec<String>,
}

impl Sought {
    fn new(ids: &[String]) -> Sought {
        let mut s = Sought::default();
        for i in ids {
            let i = i.to_ascii_lowercase();
            match Id::parse(&i) {
                Some(id) => {
                    s.full.insert(id);
                }
                None => s.prefixes.push(i),
            }
        }
        s
    }

    fn has(&self, id: &Id) -> bool {
        self.full.contains(id) || {
            let hex = id.to_hex();
            self.prefixes.iter().any(|p| hex.starts_with(p.as_str()))
        }
    }
}

impl ObjectIds {
    pub fn new(blobs: &[String], trees: &[String]) -> ObjectIds {
        ObjectIds {
            blobs: Sought::new(blobs),
            trees: Sought::new(trees),
        }
    }

    fn has_blob(&self, id: &Id) -> bool {
        self.blobs.has(id)
    }

    fn has_tree(&self, id: &Id) -> bool {
        self.trees.has(id)
    }
}

/// Where a sought object is used in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUse {
    /// `blob` or `tree`.
    pub kind: &'static str,
    pub id: Id,
    /// The file that holds the blob, or the directory that is the tree ("/" for the root).
    pub path: String,
    /// For a blob: the tree of the directory that lists the file.
    pub parent_tree: Option<Id>,
}

/// Visits every use of the sought blobs (in files' content) and trees (the root and every
/// directory) below `root`, depth-first in name order (a directory stored twice, as one tree,
/// is reported at each of its paths).
pub fn find_objects(
    repo: &Repository,
    root: &Id,
    ids: &ObjectIds,
    found: &mut dyn FnMut(ObjectUse),
) -> Result<()> {
    if ids.has_tree(root) {
        found(ObjectUse {
            kind: "tree",
            id: *root,
            path: "/".into(),
            parent_tree: None,
        });
    }
    let mut stack = vec![(*root, String::new())];
    while let Some((tree, dir)) = stack.pop() {
        if super::walk::depth_of(&dir) >= crate::repo::tree::MAX_TREE_DEPTH {
            return Err(crate::repo::tree::too_deep(&dir));
        }
        let mut subdirs = Vec::new();
        for node in repo.load_tree(&tree)?.nodes {
            let path = super::walk::join(&dir, &node.name);
            for b in node.content.iter().flatten().filter(|b| ids.has_blob(b)) {
                found(ObjectUse {
                    kind: "blob",
                    id: *b,
                    path: path.clone(),
                    parent_tree: Some(tree),
                });
            }
            if let (true, Some(sub)) = (node.is_dir(), node.subtree) {
                if ids.has_tree(&sub) {
                    found(ObjectUse {
                        kind: "tree",
                        id: sub,
                        path: path.clone(),
                        parent_tree: None,
                    });
                }
                subdirs.push((sub, path));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s, false).unwrap()
    }

    #[test]
    fn a_relative_pattern_matches_the_last_names() {
        assert!(p("foo").matches("/foo"));
        assert!(p("foo").matches("/a/b/foo"));
        assert!(!p("foo").matches("/foo/bar"), "not what is below it");
        assert!(p("*.c").matches("/src/main.c"));
        assert!(!p("*.c").matches("/src/main.h"));
        assert!(p("src/*.c").matches("/x/src/main.c"));
        assert!(!p("src/*.c").matches("/src/x/main.c"), "* is one name");
        assert!(p("foo/**").matches("/a/foo/b/c"));
        assert!(p("foo/**").matches("/a/foo"));
    }

    #[test]
    fn an_absolute_pattern_matches_from_the_root() {
        assert!(p("/home/*").matches("/home/alice"));
        assert!(!p("/home/*").matches("/srv/home/alice"));
        assert!(!p("/home").matches("/home/alice"));
        assert!(p("/home/**/*.txt").matches("/home/a/b/c.txt"));
        assert!(p("/home/**/*.txt").matches("/home/c.txt"));
    }

    #[test]
    fn the_walk_skips_what_cannot_match() {
        assert!(p("foo").may_match_below("/anything"));
        assert!(p("/home/*/x").may_match_below("/home"));
        assert!(p("/home/*/x").may_match_below("/home/alice"));
        assert!(!p("/home/*/x").may_match_below("/srv"));
        assert!(!p("/home/*/x").may_match_below("/home/alice/x"));
        assert!(p("/home/**").may_match_below("/home/a/b"));
    }

    #[test]
    fn ignore_case_and_bad_patterns() {
        assert!(Pattern::parse("FOO", true).unwrap().matches("/x/foo"));
        assert!(!p("FOO").matches("/x/foo"));
        assert!(Pattern::parse("[", false).is_err());
        assert!(Pattern::parse("", false).is_err());
    }

    #[test]
    fn times_and_window() {
        let t = parse_time("2024-03-01 10:00:00 +0000").unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-01T10:00:00+00:00");
        assert!(parse_time("2024-03-01").is_some());
        assert!(parse_time("01.03.2024 10:00").is_some());
        assert!(parse_time("2024-03-01T10:00:00Z").is_some());
        assert!(parse_time("yesterday").is_none());
        let w = TimeWindow {
            oldest: parse_time("2024-01-01T00:00:00Z"),
            newest: parse_time("2024-12-31T00:00:00Z"),
        };
        assert!(w.contains(&t));
        assert!(!w.contains(&parse_time("2025-01-01T00:00:00Z").unwrap()));
    }

    #[test]
    fn object_ids_are_full_ids_or_prefixes() {
        let a = Id::hash(b"a");
        let b = Id::hash(b"b");
        let ids = ObjectIds::new(&[a.to_hex().to_uppercase()], &[b.to_hex()[..8].to_string()]);
        assert!(ids.has_blob(&a));
        assert!(!ids.has_blob(&b));
        assert!(ids.has_tree(&b));
        assert!(!ids.has_tree(&a));
    }

    #[test]
    fn permissions_as_go_writes_them() {
        assert_eq!(permissions(0o644), "-rw-r--r--");
        assert_eq!(permissions(gomode::DIR | 0o755), "drwxr-xr-x");
        assert_eq!(permissions(gomode::SYMLINK | 0o777), "Lrwxrwxrwx");
        assert_eq!(
            permissions(gomode::DEVICE | gomode::CHAR_DEVICE | 0o600),
            "Dcrw-------"
        );
    }
}
