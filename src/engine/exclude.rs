//! Exclusion rules for backup: glob patterns (restic's semantics), exclude files, CACHEDIR.TAG, folders holding a named file (`--exclude-if-present`), files over a size (`--exclude-larger-than`).

use crate::error::{Error, Result};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use std::path::{Path, PathBuf};

/// What to leave out of a backup.
#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    /// Glob patterns. A pattern starting with `/` is matched against the whole absolute path;
    /// any other pattern matches the end of a path (`*.log`, `node_modules`, `cache/tmp`).
    pub patterns: Vec<String>,
    /// Files with one pattern per line (`#` comments and blank lines ignored).
    pub exclude_files: Vec<PathBuf>,
    /// Patterns, and files of them, matched whatever the case (restic's `--iexclude` and
    /// `--iexclude-file`).
    pub ipatterns: Vec<String>,
    pub iexclude_files: Vec<PathBuf>,
    /// Leave out the contents of folders holding a valid CACHEDIR.TAG (the tag itself is kept).
    pub exclude_caches: bool,
    /// Exact absolute paths to leave out (e.g. a database's -wal and -shm files, which its
    /// consistent copy replaces).
    pub exact: Vec<PathBuf>,
    /// `FILE` or `FILE:HEADER` (restic's `--exclude-if-present`): a folder holding FILE (whose
    /// content starts with HEADER, when given) has its contents left out but FILE itself.
    pub if_present: Vec<String>,
    /// Regular files larger than this many bytes are left out.
    pub larger_than: Option<u64>,
}

/// The compiled rules.
#[derive(Debug, Default)]
pub struct Excluder {
    set: Option<GlobSet>,
    /// All patterns in effect (recorded in the snapshot).
    pub patterns: Vec<String>,
    pub exclude_caches: bool,
    exact: std::collections::HashSet<PathBuf>,
    /// (file name, header) of each `if_present` rule, CACHEDIR.TAG's first when asked for.
    tags: Vec<(String, Vec<u8>)>,
    larger_than: Option<u64>,
}

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

fn glob(p: &str, ignore_case: bool) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .case_insensitive(ignore_case)
        .build()
}

/// `patterns` and the patterns of each file in `files`.
fn all_patterns(patterns: &[String], files: &[PathBuf]) -> Result<Vec<String>> {
    let mut out = patterns.to_vec();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| {
            Error::Input(format!(
                "cannot read the exclude file {}: {e}\n  hint: check the --exclude-file path",
                f.display()
            ))
        })?;
        for line in text.lines() {
            let l = line.trim();
            if !l.is_empty() && !l.starts_with('#') {
                out.push(l.to_string());
            }
        }
    }
    Ok(out)
}

/// Adds pattern `p` to `b`: from the root when it starts with `/`, else matching a path's end.
fn add_pattern(b: &mut GlobSetBuilder, p: &str, ignore_case: bool) -> Result<()> {
    let p = p.trim_end_matches('/');
    let full = match p.starts_with('/') {
        true => p.to_string(),
        false => format!("**/{p}"),
    };
    let g = glob(&full, ignore_case)
        .map_err(|e| Error::Input(format!("invalid exclude pattern {p:?}: {e}")))?;
    b.add(g);
    Ok(())
}

impl Excluder {
    pub fn new(opts: &ExcludeOptions) -> Result<Excluder> {
        let mut patterns = all_patterns(&opts.patterns, &opts.exclude_files)?;
        let ipatterns = all_patterns(&opts.ipatterns, &opts.iexclude_files)?;
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            add_pattern(&mut b, p, false)?;
        }
        for p in &ipatterns {
            add_pattern(&mut b, p, true)?;
        }
        patterns.extend(ipatterns);
        let set = if patterns.is_empty() {
            None
        } else {
            Some(
                b.build()
                    .map_err(|e| Error::Input(format!("invalid exclude patterns: {e}")))?,
            )
        };
        let mut tags = Vec::new();
        if opts.exclude_caches {
            tags.push(("CACHEDIR.TAG".to_string(), CACHEDIR_SIGNATURE.to_vec()));
        }
        for r in &opts.if_present {
            tags.push(if_present_rule(r)?);
        }
        Ok(Excluder {
            set,
            patterns,
            exclude_caches: opts.exclude_caches,
            exact: opts.exact.iter().cloned().collect(),
            tags,
            larger_than: opts.larger_than,
        })
    }

    /// Whether `path` (absolute) matches a pattern.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exact.contains(path) || self.set.as_ref().map(|s| s.is_match(path)).unwrap_or(false)
    }

    /// Whether the regular file described by `md` is over `--exclude-larger-than`.
    pub fn is_too_large(&self, md: &std::fs::Metadata) -> bool {
        self.larger_than
            .is_some_and(|l| md.is_file() && md.len() > l)
    }

    /// The tag file that makes `dir`'s contents left out (a valid CACHEDIR.TAG with
    /// `exclude_caches`, or an `if_present` file with its header), if one does: everything in
    /// `dir` but that file is left out.
    pub fn tag_of(&self, dir: &Path) -> Option<&str> {
        self.tags
            .iter()
            .find(|(name, header)| starts_with(&dir.join(name), header))
            .map(|(name, _)| name.as_str())
    }
}

/// Whether the file at `path` exists and its content starts with `header`.
fn starts_with(path: &Path, header: &[u8]) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut buf = vec![0u8; header.len()];
    std::io::Read::read_exact(&mut f, &mut buf).is_ok() && buf == header
}

/// `FILE` or `FILE:HEADER`: the file name (no `/`) and the header its content must start with.
fn if_present_rule(r: &str) -> Result<(String, Vec<u8>)> {
    let (name, header) = r.split_once(':').unwrap_or((r, ""));
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::Input(format!(
            "exclude-if-present {r:?}: the file is a name in the folder, without '/'\n  hint: e.g. --exclude-if-present .nobackup or --exclude-if-present CACHEDIR.TAG:Signature"
        )));
    }
    Ok((name.to_string(), header.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_holding_a_named_file_with_its_header_is_left_out_but_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (nob, hdr, other) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        for p in [&nob, &hdr, &other] {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(nob.join(".nobackup"), "").unwrap();
        std::fs::write(hdr.join("TAG"), "magic-123 and more").unwrap();
        std::fs::write(other.join("TAG"), "not magic").unwrap();
        std::fs::create_dir_all(other.join(".nobackup")).unwrap(); // a folder, not a file
        let e = Excluder::new(&ExcludeOptions {
            if_present: vec![".nobackup".into(), "TAG:magic-".into()],
            larger_than: Some(10),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.tag_of(&nob), Some(".nobackup"));
        assert_eq!(e.tag_of(&hdr), Some("TAG"));
        assert_eq!(e.tag_of(&other), None);
        let md = |p: &Path| std::fs::metadata(p).unwrap();
        assert!(e.is_too_large(&md(&hdr.join("TAG"))));
        assert!(!e.is_too_large(&md(&other.join("TAG"))));
        assert!(!e.is_too_large(&md(&hdr)), "a folder is never too large");
        for bad in ["", "a/b", "..", ":x"] {
            let r = Excluder::new(&ExcludeOptions {
                if_present: vec![bad.into()],
                ..Default::default()
            });
            assert!(r.is_err(), "{bad:?}");
        }
    }

    fn ex(p: &[&str]) -> Excluder {
        Excluder::new(&ExcludeOptions {
            patterns: p.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn restic_like_matching() {
        let e = ex(&["*.log", "node_modules", "/srv/tmp", "cache/tmp"]);
        assert!(e.is_excluded(Path::new("/a/b/x.log")));
        assert!(!e.is_excluded(Path::new("/a/b/x.logs")));
        assert!(e.is_excluded(Path::new("/a/node_modules")));
        assert!(!e.is_excluded(Path::new("/a/node_modules_x")));
        assert!(e.is_excluded(Path::new("/srv/tmp")));
        assert!(!e.is_excluded(Path::new("/x/srv/tmp")));
        assert!(e.is_excluded(Path::new("/home/u/cache/tmp")));
        assert!(!e.is_excluded(Path::new("/home/u/cache/tmp2")));
        assert!(!ex(&[]).is_excluded(Path::new("/x")));
    }

    #[test]
    fn exclude_file_and_cachedir() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("ex");
        std::fs::write(&f, "# comment\n\n*.tmp\n").unwrap();
        let c = d.path().join("c");
        std::fs::create_dir(&c).unwrap();
        std::fs::write(
            c.join("CACHEDIR.TAG"),
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        )
        .unwrap();
        let e = Excluder::new(&ExcludeOptions {
            exclude_files: vec![f],
            exclude_caches: true,
            ..Default::default()
        })
        .unwrap();
        assert!(e.is_excluded(Path::new("/q/a.tmp")));
        assert_eq!(e.tag_of(&c), Some("CACHEDIR.TAG"));
        assert_eq!(e.tag_of(d.path()), None);
        assert!(Excluder::new(&ExcludeOptions {
            exclude_files: vec!["/nonexistent".into()],
            ..Default::default()
        })
        .is_err());
    }
}
