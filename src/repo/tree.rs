//! Tree blobs: a directory's entries (`nodes`) as restic's JSON, with Go's file-mode bits.

use super::id::Id;
pub use super::nodename::Name;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

/// Go's `os.FileMode` type bits, which restic stores in `mode`.
pub mod gomode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    pub const PERM: u32 = 0o777;

    /// Unix `st_mode` to Go's FileMode.
    pub fn from_unix(m: u32) -> u32 {
        let mut g = m & PERM;
        match m & 0o170000 {
            0o040000 => g |= DIR,
            0o120000 => g |= SYMLINK,
            0o060000 => g |= DEVICE,
            0o020000 => g |= DEVICE | CHAR_DEVICE,
            0o010000 => g |= NAMED_PIPE,
            0o140000 => g |= SOCKET,
            _ => {}
        }
        if m & 0o4000 != 0 {
            g |= SETUID;
        }
        if m & 0o2000 != 0 {
            g |= SETGID;
        }
        if m & 0o1000 != 0 {
            g |= STICKY;
        }
        g
    }

    /// A Go FileMode as Go's `FileMode.String` writes it (what restic's `ls -l` shows): the
    /// type and special letters set, in Go's order, or `-`, then `rwxrwxrwx`.
    pub fn to_string(g: u32) -> String {
        const LETTERS: &[u8] = b"dalTLDpSugct?";
        let mut out: String = LETTERS
            .iter()
            .enumerate()
            .filter(|(i, _)| g & (1 << (31 - i)) != 0)
            .map(|(_, c)| *c as char)
            .collect();
        if out.is_empty() {
            out.push('-');
        }
        for (i, c) in "rwxrwxrwx".chars().enumerate() {
            out.push(if g & (1 << (8 - i)) != 0 { c } else { '-' });
        }
        out
    }

    /// The permission bits of a Go FileMode as a unix mode (with setuid/setgid/sticky).
    pub fn to_unix_perm(g: u32) -> u32 {
        let mut m = g & PERM;
        if g & SETUID != 0 {
            m |= 0o4000;
        }
        if g & SETGID != 0 {
            m |= 0o2000;
        }
        if g & STICKY != 0 {
            m |= 0o1000;
        }
        m
    }
}

/// Node types as restic names them.
pub mod kind {
    pub const FILE: &str = "file";
    pub const DIR: &str = "dir";
    pub const SYMLINK: &str = "symlink";
    pub const DEV: &str = "dev";
    pub const CHARDEV: &str = "chardev";
    pub const FIFO: &str = "fifo";
    pub const SOCKET: &str = "socket";
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// An extended attribute (value base64 in JSON, as Go encodes `[]byte`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ExtendedAttribute {
    pub name: String,
    #[serde(with = "b64bytes")]
    pub value: Vec<u8>,
}

mod b64opt {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&B64.encode(v)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => B64.decode(s).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

mod b64bytes {
    use base64::engine::general_purpose::STANDARD as B64;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s).map_err(serde::de::Error::custom)
    }
}

/// One entry of a directory.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Node {
    /// The name itself, byte for byte; stored quoted as restic stores it (`repo::nodename`).
    pub name: Name,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub mode: u32,
    #[serde(serialize_with = "super::gotime::serialize")]
    pub mtime: DateTime<FixedOffset>,
    #[serde(serialize_with = "super::gotime::serialize")]
    pub atime: DateTime<FixedOffset>,
    #[serde(serialize_with = "super::gotime::serialize")]
    pub ctime: DateTime<FixedOffset>,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub device_id: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub links: u64,
    /// A symlink's target (lossy when it is not UTF-8; then `linktarget_raw` holds its bytes,
    /// as restic stores it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub linktarget: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64opt")]
    pub linktarget_raw: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extended_attributes: Vec<ExtendedAttribute>,
    /// `st_rdev` of device nodes.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub device: u64,
    /// Data blob ids of a file, in order; `null` for other types (restic requires `[]` for
    /// an empty file).
    #[serde(default)]
    pub content: Option<Vec<Id>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Id>,
}

impl Node {
    /// A node with the given name and type and every other field empty.
    pub fn new(name: impl Into<Name>, kind: &str) -> Node {
        let epoch = DateTime::<chrono::Utc>::UNIX_EPOCH.fixed_offset();
        Node {
            name: name.into(),
            kind: kind.to_string(),
            mode: 0,
            mtime: epoch,
            atime: epoch,
            ctime: epoch,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            linktarget: String::new(),
            linktarget_raw: None,
            extended_attributes: Vec::new(),
            device: 0,
            content: None,
            subtree: None,
        }
    }

    /// Sets a symlink's target from its bytes (the text lossily, the bytes kept when they are
    /// not UTF-8).
    pub fn set_link_target(&mut self, target: Vec<u8>) {
        let name = Name::from_bytes(target);
        self.linktarget = name.as_str().to_string();
        self.linktarget_raw = (!name.is_utf8()).then(|| name.as_bytes().to_vec());
    }

    /// A symlink's target, byte for byte.
    pub fn link_target_bytes(&self) -> &[u8] {
        self.linktarget_raw
            .as_deref()
            .unwrap_or(self.linktarget.as_bytes())
    }

    /// A symlink's target as a path of this system (byte for byte on Unix).
    pub fn link_target_path(&self) -> std::path::PathBuf {
        let target = Name::from_bytes(self.link_target_bytes().to_vec());
        std::path::PathBuf::from(target.to_os().into_owned())
    }

    pub fn is_dir(&self) -> bool {
        self.kind == kind::DIR
    }

    pub fn is_file(&self) -> bool {
        self.kind == kind::FILE
    }
}

/// The deepest path (in names below a snapshot's root) any walk of a tree accepts: 2,048, the
/// most that Linux's PATH_MAX of 4,096 bytes allows with one-character names. A deeper chain
/// cannot be restored and is refused as the work of a buggy or hostile writer.
pub const MAX_TREE_DEPTH: usize = 2048;

/// The error for a path of more than [`MAX_TREE_DEPTH`] names: names `path` by its first 100
/// characters.
pub fn too_deep(path: &str) -> crate::error::Error {
    crate::error::Error::TreeTooDeep {
        max: MAX_TREE_DEPTH,
        path: shorten(path),
    }
}

/// The first 100 characters of `path`, then `...` if there is more.
pub fn shorten(path: &str) -> String {
    let mut shown: String = path.chars().take(100).collect();
    if shown.len() < path.len() {
        shown.push_str("...");
    }
    shown
}

/// A directory listing; nodes are sorted by name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// The blob bytes: compact JSON and a newline, as restic writes it.
    pub fn serialize(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a tree always serializes");
        v.push(b'\n');
        v
    }

    pub fn parse(bytes: &[u8]) -> Result<Tree, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    pub fn find(&self, name: &(impl AsRef<[u8]> + ?Sized)) -> Option<&Node> {
        let name = name.as_ref();
        self.nodes
            .binary_search_by(|n| n.name.as_bytes().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_as_go_prints_them() {
        assert_eq!(gomode::to_string(2148532735), "dtrwxrwxrwx");
        assert_eq!(gomode::to_string(2147484141), "drwxr-xr-x");
        assert_eq!(gomode::to_string(0o644), "-rw-r--r--");
        assert_eq!(gomode::to_string(gomode::SYMLINK | 0o777), "Lrwxrwxrwx");
        assert_eq!(gomode::to_string(gomode::SETUID | 0o755), "urwxr-xr-x");
    }

    #[test]
    fn modes_convert_like_go() {
        assert_eq!(gomode::from_unix(0o040755), gomode::DIR | 0o755);
        assert_eq!(gomode::from_unix(0o100644), 0o644);
        assert_eq!(gomode::from_unix(0o120777), gomode::SYMLINK | 0o777);
        assert_eq!(gomode::from_unix(0o104755), gomode::SETUID | 0o755);
        assert_eq!(
            gomode::to_unix_perm(gomode::SETUID | gomode::STICKY | 0o700),
            0o5700
        );
    }

    #[test]
    fn file_content_null_vs_empty() {
        let mut f = Node::new("f", kind::FILE);
        f.content = Some(vec![]);
        let d = Node::new("d", kind::DIR);
        let t = Tree { nodes: vec![d, f] };
        let s = String::from_utf8(t.serialize()).unwrap();
        assert!(s.ends_with("}\n"));
        assert!(s.contains(r#""name":"f","type":"file""#));
        assert!(s.contains(r#""content":[]"#), "{s}");
        assert!(s.contains(r#""content":null"#), "{s}");
        assert!(!s.contains("subtree"));
        assert_eq!(Tree::parse(s.as_bytes()).unwrap(), t);
    }

    #[test]
    fn parses_a_restic_node() {
        let j = r#"{"nodes":[{"name":"testfile","type":"file","mode":420,"mtime":"2014-12-06T17:50:23.34513538+01:00","atime":"2014-12-06T17:50:23.338468713+01:00","ctime":"2014-12-06T17:50:23.34513538+01:00","uid":1000,"gid":100,"user":"fd0","inode":416863351,"size":1234,"links":1,"content":["50f77b3b4291e8411a027b9f9b9e64658181cc676ce6ba9958b95f268cb1109d"]}]}"#;
        let t = Tree::parse(j.as_bytes()).unwrap();
        assert_eq!(t.nodes[0].size, 1234);
        assert_eq!(t.nodes[0].content.as_ref().unwrap().len(), 1);
        assert_eq!(t.find("testfile").unwrap().user, "fd0");
    }
}
