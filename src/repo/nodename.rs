//! Node names as restic stores them: [`Name`], the exact bytes of a name (a Unix name need not
//! be UTF-8) with a readable form, written in tree JSON as the body of a Go string literal
//! (`strconv.Quote` without its quotes), which restic unquotes when it reads a tree. A name with
//! `\`, `"`, a newline or another control character is escaped (`a\b` is stored as `a\\b`), a
//! byte that is not UTF-8 as `\xff`; restic refuses a tree whose names do not unquote
//! ("Unquote: invalid syntax").
//!
//! Reading is lenient: a stored name that does not unquote (a tree written before backupd
//! escaped names) is taken as it is.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::ffi::OsStr;

/// `name` as a Go string literal's body (what `strconv.Quote` puts between the quotes; a
/// printable non-ASCII character is kept as it is, a Unicode control character is `\u00XX`, a
/// byte that is not part of valid UTF-8 is `\xXX`).
pub fn quote(name: &[u8]) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            quote_char(c, &mut s);
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

fn quote_char(c: char, s: &mut String) {
    match c {
        '"' => s.push_str("\\\""),
        '\\' => s.push_str("\\\\"),
        '\u{7}' => s.push_str("\\a"),
        '\u{8}' => s.push_str("\\b"),
        '\u{c}' => s.push_str("\\f"),
        '\n' => s.push_str("\\n"),
        '\r' => s.push_str("\\r"),
        '\t' => s.push_str("\\t"),
        '\u{b}' => s.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => s.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() => s.push_str(&format!("\\u{:04x}", c as u32)),
        c => s.push(c),
    }
}

/// The name a Go string literal's body stands for; `None` when it is not one (a raw newline
/// or quote, an unknown escape).
pub fn unquote(body: &str) -> Option<Vec<u8>> {
    if !body.contains(['\\', '"', '\n']) {
        return Some(body.as_bytes().to_vec());
    }
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut it = body.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' | '"' => return None,
            '\\' => unescape_one(&mut it, &mut out)?,
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Some(out)
}

/// One escape after its backslash, appended to `out` as bytes.
fn unescape_one(it: &mut std::iter::Peekable<std::str::Chars>, out: &mut Vec<u8>) -> Option<()> {
    let simple = |b: u8, out: &mut Vec<u8>| out.push(b);
    match it.next()? {
        'a' => simple(7, out),
        'b' => simple(8, out),
        'f' => simple(0xc, out),
        'n' => simple(b'\n', out),
        'r' => simple(b'\r', out),
        't' => simple(b'\t', out),
        'v' => simple(0xb, out),
        '\\' => simple(b'\\', out),
        '"' => simple(b'"', out),
        'x' => out.push(u8::from_str_radix(&take(it, 2)?, 16).ok()?),
        'u' => push_char(u32::from_str_radix(&take(it, 4)?, 16).ok()?, out)?,
        'U' => push_char(u32::from_str_radix(&take(it, 8)?, 16).ok()?, out)?,
        d @ '0'..='7' => {
            let rest = take(it, 2)?;
            let v = u32::from_str_radix(&format!("{d}{rest}"), 8).ok()?;
            out.push(u8::try_from(v).ok()?);
        }
        _ => return None,
    }
    Some(())
}

/// The next `n` characters.
fn take(it: &mut std::iter::Peekable<std::str::Chars>, n: usize) -> Option<String> {
    let s: String = it.take(n).collect();
    (s.chars().count() == n).then_some(s)
}

fn push_char(v: u32, out: &mut Vec<u8>) -> Option<()> {
    let c = char::from_u32(v)?;
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    Some(())
}

/// A node's name: its exact bytes, and the text shown for it (the same when the name is UTF-8;
/// else with U+FFFD for what is not). It compares and sorts by its bytes, as restic sorts a
/// tree's nodes, and reads as a `str` (the text) everywhere a name is only shown or matched.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Name {
    text: String,
    /// The bytes when they are not UTF-8 (`text` is then their lossy form).
    raw: Option<Box<[u8]>>,
}

impl Name {
    /// The name with these bytes.
    pub fn from_bytes(bytes: Vec<u8>) -> Name {
        match String::from_utf8(bytes) {
            Ok(text) => Name { text, raw: None },
            Err(e) => {
                let raw = e.into_bytes();
                let text = String::from_utf8_lossy(&raw).into_owned();
                Name {
                    text,
                    raw: Some(raw.into_boxed_slice()),
                }
            }
        }
    }

    /// The name of a file on this system (on Unix its exact bytes; on Windows its UTF-16 read
    /// lossily, as restic reads it).
    pub fn from_os(name: &OsStr) -> Name {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            Name::from_bytes(name.as_bytes().to_vec())
        }
        #[cfg(not(unix))]
        {
            Name::from(name.to_string_lossy().into_owned())
        }
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or(self.text.as_bytes())
    }

    /// The text shown for the name (lossy when [`Name::is_utf8`] is false).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the name is valid UTF-8 (so its text is exact).
    pub fn is_utf8(&self) -> bool {
        self.raw.is_none()
    }

    /// The name to create on this system: on Unix its exact bytes.
    pub fn to_os(&self) -> Cow<'_, OsStr> {
        Cow::Borrowed(self.as_ref())
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name { text, raw: None }
    }
}

impl From<&Name> for Name {
    fn from(name: &Name) -> Name {
        name.clone()
    }
}

impl From<&String> for Name {
    fn from(text: &String) -> Name {
        Name::from(text.clone())
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::from(text.to_string())
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<OsStr> for Name {
    fn as_ref(&self) -> &OsStr {
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            OsStr::from_bytes(self.as_bytes())
        }
        #[cfg(not(unix))]
        {
            OsStr::new(&self.text)
        }
    }
}

impl AsRef<std::path::Path> for Name {
    fn as_ref(&self) -> &std::path::Path {
        std::path::Path::new(AsRef::<OsStr>::as_ref(self))
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Quoted as restic quotes it, so a byte that is not UTF-8 shows as `\xff`.
impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", quote(self.as_bytes()))
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&quote(self.as_bytes()))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let stored = String::deserialize(d)?;
        Ok(match unquote(&stored) {
            Some(bytes) => Name::from_bytes(bytes),
            None => Name::from(stored),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_go_quotes_them() {
        assert_eq!(quote(b"plain name.txt"), "plain name.txt");
        assert_eq!(quote(b"b\\s"), "b\\\\s");
        assert_eq!(quote(b"n\nl"), "n\\nl");
        assert_eq!(quote(b"q\"t\x01\x7f"), "q\\\"t\\x01\\x7f");
        assert_eq!(quote("ü\u{85}".as_bytes()), "ü\\u0085");
    }

    #[test]
    fn quoted_names_unquote_to_themselves() {
        for n in [
            "plain",
            "b\\s",
            "n\nl",
            "q\"t",
            "\u{1}\u{7f}\t\r",
            "ü\u{85}x",
            "\\x41",
        ] {
            assert_eq!(
                unquote(&quote(n.as_bytes())).as_deref(),
                Some(n.as_bytes()),
                "{n:?}"
            );
        }
        assert_eq!(
            unquote("\\101\\x42\\u0043\\U00000044").as_deref(),
            Some(&b"ABCD"[..])
        );
    }

    #[test]
    fn a_name_that_is_not_utf8_is_kept_byte_for_byte() {
        let n = Name::from_bytes(b"a\xffb".to_vec());
        assert!(!n.is_utf8());
        assert_eq!(n.as_str(), "a\u{fffd}b");
        assert_eq!(n.as_bytes(), b"a\xffb");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, r#""a\\xffb""#, "as restic 0.19 stores it");
        let back: Name = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        assert_ne!(
            back,
            Name::from("a\u{fffd}b"),
            "the lossy text is another name"
        );
        let mut names = vec![Name::from("ok"), n.clone(), Name::from("b")];
        names.sort();
        assert_eq!(
            names,
            [n, Name::from("b"), Name::from("ok")],
            "sorted by bytes"
        );
    }

    #[test]
    fn what_is_not_a_literal_body_does_not_unquote() {
        for bad in ["a\\s", "raw\nnewline", "a\"b", "trailing\\", "\\x4"] {
            assert_eq!(unquote(bad), None, "{bad:?}");
        }
    }
}
