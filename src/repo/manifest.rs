//! A snapshot's manifest: the `SHA256SUMS` list of every regular file's SHA-256 that a backup
//! with `manifest = true` stores at `/.backupd/SHA256SUMS` in the snapshot's own tree, its
//! line format (GNU `sha256sum`'s, escapes included), and reading it back from a repository.
//!
//! The manifest is an ordinary file node in an ordinary directory node of the root tree, so
//! restic reads, checks, copies, prunes and restores it without knowing of it. Its paths are
//! relative to the root of a restore of the whole snapshot (`restic restore latest --target T`
//! puts `/home/me/a` at `T/home/me/a`, listed as `home/me/a`), so that
//! `cd T && sha256sum -c .backupd/SHA256SUMS` checks every file.

use super::id::Id;
use super::pack::BlobType;
use super::tree::Node;
use super::Repository;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The directory of the root tree that holds the manifest.
pub const DIR: &str = ".backupd";
/// The manifest's file name in [`DIR`].
pub const FILE: &str = "SHA256SUMS";
/// The manifest's path in the snapshot.
pub const PATH: &str = "/.backupd/SHA256SUMS";

/// A file's SHA-256.
pub type Sha256 = [u8; 32];

/// The manifest: path (relative to the restore root, `/`-separated) to SHA-256, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: BTreeMap<String, Sha256>,
}

impl Manifest {
    /// The `SHA256SUMS` text: one line per file, sorted by path (byte order).
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.files.len() * 100);
        for (path, hash) in &self.files {
            out.extend_from_slice(line(path, hash).as_bytes());
        }
        out
    }

    /// Parses `SHA256SUMS` text (as [`Manifest::render`] writes it, or `sha256sum` does, with
    /// `*` binary markers too); the error names the line and what is wrong with it.
    pub fn parse(text: &[u8]) -> std::result::Result<Manifest, String> {
        let text = std::str::from_utf8(text)
            .map_err(|e| format!("it is not UTF-8 text (at byte {})", e.valid_up_to()))?;
        let mut files = BTreeMap::new();
        for (i, l) in text.split_terminator('\n').enumerate() {
            let (path, hash) = parse_line(l).map_err(|why| format!("line {}: {why}", i + 1))?;
            files.insert(path, hash);
        }
        Ok(Manifest { files })
    }

    /// The SHA-256 recorded for the snapshot path `snap_path` ("/a/b" or "a/b").
    pub fn get(&self, snap_path: &str) -> Option<&Sha256> {
        self.files.get(snap_path.trim_start_matches('/'))
    }
}

/// The manifest path of the file `name` in the directory whose names below the root are `dir`.
pub fn path_of(dir: &[String], name: &str) -> String {
    let mut p = String::new();
    for d in dir {
        p.push_str(d);
        p.push('/');
    }
    p.push_str(name);
    p
}

/// Whether `snap_path` ("/.backupd/…") is the manifest's folder or inside it.
pub fn is_manifest_path(snap_path: &str) -> bool {
    let rest = snap_path.trim_start_matches('/');
    rest == DIR || rest.starts_with(".backupd/")
}

/// One line as `sha256sum` writes it: `HASH  PATH\n`; a path with `\`, a newline or a carriage
/// return is escaped (`\\`, `\n`, `\r`) and the line starts with `\` (GNU coreutils 9).
pub fn line(path: &str, hash: &Sha256) -> String {
    let needs_escape = path.contains(['\\', '\n', '\r']);
    let mut s = String::with_capacity(path.len() + 68);
    if needs_escape {
        s.push('\\');
    }
    s.push_str(&hex::encode(hash));
    s.push_str("  ");
    if needs_escape {
        for c in path.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                c => s.push(c),
            }
        }
    } else {
        s.push_str(path);
    }
    s.push('\n');
    s
}

/// One line (without its newline) back into path and hash.
fn parse_line(l: &str) -> std::result::Result<(String, Sha256), String> {
    let (escaped, l) = match l.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, l),
    };
    let hex_part = l.get(..64).ok_or("shorter than a SHA-256")?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut hash).map_err(|e| format!("bad SHA-256: {e}"))?;
    let rest = &l[64..];
    let name = rest
        .strip_prefix("  ")
        .or_else(|| rest.strip_prefix(" *"))
        .ok_or("no two-character separator after the SHA-256")?;
    if name.is_empty() {
        return Err("no file name".into());
    }
    let name = if escaped {
        unescape(name)?
    } else {
        name.to_string()
    };
    Ok((name, hash))
}

/// Undoes [`line`]'s escapes.
fn unescape(s: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// The nodes of a snapshot's manifest: its folder node in the root tree and its file node.
#[derive(Debug, Clone)]
pub struct Stored {
    pub dir: Node,
    pub file: Node,
}

/// The manifest nodes of the snapshot whose root tree is `root`; `None` when it has none.
pub fn find(repo: &Repository, root: &Id) -> Result<Option<Stored>> {
    let tree = repo.load_tree(root)?;
    let Some(dir) = tree.find(DIR).filter(|n| n.is_dir()) else {
        return Ok(None);
    };
    let Some(sub) = dir.subtree else {
        return Ok(None);
    };
    let inner = repo.load_tree(&sub)?;
    Ok(inner.find(FILE).filter(|n| n.is_file()).map(|file| Stored {
        dir: dir.clone(),
        file: file.clone(),
    }))
}

/// The bytes of a manifest file node, read blob by blob (each blob's hash verified).
pub fn read_content(repo: &Repository, file: &Node) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(file.size as usize);
    for id in file.content.as_deref().unwrap_or(&[]) {
        out.extend_from_slice(&repo.load_blob(id, BlobType::Data)?);
    }
    Ok(out)
}

/// A snapshot's manifest as read from the repository.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub nodes: Stored,
    /// The file's bytes, as `backupctl manifest` prints them.
    pub text: Vec<u8>,
    pub manifest: Manifest,
}

/// The manifest of the snapshot `snapshot` (shown in errors) with root tree `root`; `None`
/// when it has none. A manifest that does not parse is damaged.
pub fn load(repo: &Repository, snapshot: &str, root: &Id) -> Result<Option<Loaded>> {
    let Some(nodes) = find(repo, root)? else {
        return Ok(None);
    };
    let text = read_content(repo, &nodes.file)?;
    let manifest = Manifest::parse(&text).map_err(|why| {
        Error::damaged(
            format!("the manifest {PATH} of snapshot {snapshot}"),
            format!("it is not a SHA256SUMS list: {why}"),
        )
    })?;
    Ok(Some(Loaded {
        nodes,
        text,
        manifest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: u8) -> Sha256 {
        [b; 32]
    }

    #[test]
    fn plain_lines_are_hash_two_spaces_path() {
        assert_eq!(
            line("tmp/x/a.txt", &h(0xab)),
            format!("{}  tmp/x/a.txt\n", "ab".repeat(32))
        );
    }

    #[test]
    fn backslash_newline_and_carriage_return_are_escaped_as_sha256sum_does() {
        assert_eq!(
            line("a\\b", &h(1)),
            format!("\\{}  a\\\\b\n", "01".repeat(32))
        );
        assert_eq!(
            line("n\nl", &h(2)),
            format!("\\{}  n\\nl\n", "02".repeat(32))
        );
        assert_eq!(
            line("c\rr", &h(3)),
            format!("\\{}  c\\rr\n", "03".repeat(32))
        );
    }

    #[test]
    fn render_sorts_by_path_and_parse_reads_it_back() {
        let mut m = Manifest::default();
        for (p, b) in [("b/z", 1), ("a\\x", 2), ("a/n\nl", 3), ("a b", 4), ("", 5)] {
            if !p.is_empty() {
                m.files.insert(p.to_string(), h(b));
            }
        }
        let text = String::from_utf8(m.render()).unwrap();
        let paths: Vec<&str> = text
            .lines()
            .map(|l| &l[l.find("  ").unwrap() + 2..])
            .collect();
        assert_eq!(paths, vec!["a b", "a/n\\nl", "a\\\\x", "b/z"]);
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), m);
        assert_eq!(m.get("/a\\x"), Some(&h(2)));
    }

    #[test]
    fn parse_refuses_what_is_not_a_sha256sums_line() {
        for bad in [
            "xyz  a\n",
            &format!("{}a\n", "0".repeat(64)),
            &format!("\\{}  a\\q\n", "0".repeat(64)),
        ] {
            let e = Manifest::parse(bad.as_bytes()).unwrap_err();
            assert!(e.starts_with("line 1:"), "{e}");
        }
        let binary = format!("{} *a\n", "0".repeat(64));
        assert!(Manifest::parse(binary.as_bytes())
            .unwrap()
            .files
            .contains_key("a"));
    }

    #[test]
    fn paths_are_joined_below_the_root_and_the_manifest_folder_is_known() {
        assert_eq!(path_of(&["tmp".into(), "x".into()], "f"), "tmp/x/f");
        assert_eq!(path_of(&[], "f"), "f");
        assert!(is_manifest_path("/.backupd"));
        assert!(is_manifest_path("/.backupd/SHA256SUMS"));
        assert!(!is_manifest_path("/.backupdx"));
        assert!(!is_manifest_path("/home/.backupd"));
    }
}
