//! What a backup would read, measured before it writes anything: the bytes of the regular files under its paths, with its excludes (a job's `max_source_size`).
//!
//! The walk is the backup's own view of the file system, without reading any content: the same
//! exclusion rules (patterns, exact paths, CACHEDIR.TAG), symbolic links not followed, and with
//! `one_file_system` no other device. It iterates with a stack of its own, so no depth of
//! folders exhausts the call stack. What it cannot list is left out, as the backup leaves it
//! out (with a warning there).

use super::backup::device_of as device;
use super::exclude::{ExcludeOptions, Excluder};
use crate::cancel::CancelToken;
use crate::error::Result;
use std::fs;
use std::path::PathBuf;

/// The bytes of the regular files the paths hold, as a backup with these excludes would read
/// them.
pub fn source_bytes(
    paths: &[PathBuf],
    excludes: &ExcludeOptions,
    one_file_system: bool,
    cancel: &CancelToken,
) -> Result<u64> {
    let excluder = Excluder::new(excludes)?;
    let mut total = 0u64;
    for root in paths {
        let Ok(md) = fs::symlink_metadata(root) else {
            continue;
        };
        let dev = one_file_system.then(|| device(&md));
        let mut stack = vec![(root.clone(), md)];
        while let Some((path, md)) = stack.pop() {
            cancel.check()?;
            if excluder.is_excluded(&path)
                || excluder.is_too_large(&md)
                || dev.is_some_and(|d| d != device(&md))
            {
                continue;
            }
            if md.is_file() {
                total += md.len();
                continue;
            }
            if !md.is_dir() {
                continue;
            }
            let tag = excluder.tag_of(&path);
            for e in fs::read_dir(&path).into_iter().flatten().flatten() {
                if tag.is_some_and(|t| e.file_name() != t) {
                    continue;
                }
                if let Ok(md) = fs::symlink_metadata(e.path()) {
                    stack.push((e.path(), md));
                }
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_measure_counts_regular_files_once_with_the_excludes_of_the_backup() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::write(root.join("a/one"), vec![0u8; 1000]).unwrap();
        fs::write(root.join("a/b/c/two"), vec![0u8; 20]).unwrap();
        fs::write(root.join("a/skip.log"), vec![0u8; 500]).unwrap();
        fs::create_dir_all(root.join("cache")).unwrap();
        fs::write(
            root.join("cache/CACHEDIR.TAG"),
            "Signature: 8a477f597d28d172789f06886806bc55",
        )
        .unwrap();
        fs::write(root.join("cache/big"), vec![0u8; 9000]).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("a/one"), root.join("link")).unwrap();
        let cancel = CancelToken::new();
        let mut ex = ExcludeOptions {
            patterns: vec!["*.log".into()],
            ..ExcludeOptions::default()
        };
        let tag = 43; // the CACHEDIR.TAG's own bytes
        assert_eq!(
            source_bytes(std::slice::from_ref(&root), &ex, false, &cancel).unwrap(),
            1020 + tag + 9000
        );
        ex.exclude_caches = true;
        assert_eq!(
            source_bytes(std::slice::from_ref(&root), &ex, false, &cancel).unwrap(),
            1020 + tag
        );
        ex.exact.push(root.join("a/one"));
        assert_eq!(
            source_bytes(&[root.clone(), d.path().join("gone")], &ex, true, &cancel).unwrap(),
            20 + tag
        );
    }
}
