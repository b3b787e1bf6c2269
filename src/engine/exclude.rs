//! Exclusion rules for backup: glob patterns (restic's semantics), exclude files, CACHEDIR.TAG.

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
    /// Leave out the contents of folders holding a valid CACHEDIR.TAG (the tag itself is kept).
    pub exclude_caches: bool,
    /// Exact absolute paths to leave out (e.g. a database's -wal and -shm files, which its
    /// consistent copy replaces).
    pub exact: Vec<PathBuf>,
}

/// The compiled rules.
#[derive(Debug, Default)]
pub struct Excluder {
    set: Option<GlobSet>,
    /// All patterns in effect (recorded in the snapshot).
    pub patterns: Vec<String>,
    pub exclude_caches: bool,
    exact: std::collections::HashSet<PathBuf>,
}

const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

fn glob(p: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

impl Excluder {
    pub fn new(opts: &ExcludeOptions) -> Result<Excluder> {
        let mut patterns: Vec<String> = opts.patterns.clone();
        for f in &opts.exclude_files {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Error::Input(format!(
                    "cannot read the exclude file {}: {e}\n  hint: check the --exclude-file path",
                    f.display()
                ))
            })?;
            for line in text.lines() {
                let l = line.trim();
                if l.is_empty() || l.starts_with('#') {
                    continue;
                }
                patterns.push(l.to_string());
            }
        }
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            let p = p.trim_end_matches('/');
            let full = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("**/{p}")
            };
            let g = glob(&full)
                .map_err(|e| Error::Input(format!("invalid exclude pattern {p:?}: {e}")))?;
            b.add(g);
        }
        let set = if patterns.is_empty() {
            None
        } else {
            Some(
                b.build()
                    .map_err(|e| Error::Input(format!("invalid exclude patterns: {e}")))?,
            )
        };
        Ok(Excluder {
            set,
            patterns,
            exclude_caches: opts.exclude_caches,
            exact: opts.exact.iter().cloned().collect(),
        })
    }

    /// Whether `path` (absolute) matches a pattern.
    pub fn is_excluded(&self, path: &Path) -> bool {
        self.exact.contains(path) || self.set.as_ref().map(|s| s.is_match(path)).unwrap_or(false)
    }

    /// Whether `dir` is a cache folder whose contents are to be left out.
    pub fn is_cache_dir(&self, dir: &Path) -> bool {
        if !self.exclude_caches {
            return false;
        }
        let mut buf = [0u8; 43];
        match std::fs::File::open(dir.join("CACHEDIR.TAG")) {
            Ok(mut f) => {
                std::io::Read::read_exact(&mut f, &mut buf).is_ok()
                    && buf[..] == *CACHEDIR_SIGNATURE
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(e.is_cache_dir(&c));
        assert!(!e.is_cache_dir(d.path()));
        assert!(Excluder::new(&ExcludeOptions {
            exclude_files: vec!["/nonexistent".into()],
            ..Default::default()
        })
        .is_err());
    }
}
