//! Node names as restic stores them in tree JSON: the body of a Go string literal
//! (`strconv.Quote` without its quotes), which restic unquotes when it reads a tree. A name with
//! `\`, `"`, a newline or another control character is escaped (`a\b` is stored as `a\\b`);
//! restic refuses a tree whose names do not unquote ("Unquote: invalid syntax").
//!
//! Reading is lenient: a stored name that does not unquote (a tree written before backupd
//! escaped names) is taken as it is.

use serde::{Deserialize, Deserializer, Serializer};

/// `name` as a Go string literal's body (what `strconv.Quote` puts between the quotes; a
/// printable non-ASCII character is kept as it is, a Unicode control character is `\u00XX`).
pub fn quote(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    for c in name.chars() {
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
    s
}

/// The name a Go string literal's body stands for; `None` when it is not one (a raw newline
/// or quote, an unknown escape). Escaped bytes that are not UTF-8 become U+FFFD.
pub fn unquote(body: &str) -> Option<String> {
    if !body.contains(['\\', '"', '\n']) {
        return Some(body.to_string());
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
    Some(String::from_utf8_lossy(&out).into_owned())
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

/// Serde's side of a node's `name` (`#[serde(with = "nodename")]`).
pub fn serialize<S: Serializer>(name: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&quote(name))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let stored = String::deserialize(d)?;
    Ok(unquote(&stored).unwrap_or(stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_as_go_quotes_them() {
        assert_eq!(quote("plain name.txt"), "plain name.txt");
        assert_eq!(quote("b\\s"), "b\\\\s");
        assert_eq!(quote("n\nl"), "n\\nl");
        assert_eq!(quote("q\"t\u{1}\u{7f}"), "q\\\"t\\x01\\x7f");
        assert_eq!(quote("ü\u{85}"), "ü\\u0085");
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
            assert_eq!(unquote(&quote(n)).as_deref(), Some(n), "{n:?}");
        }
        assert_eq!(
            unquote("\\101\\x42\\u0043\\U00000044").as_deref(),
            Some("ABCD")
        );
    }

    #[test]
    fn what_is_not_a_literal_body_does_not_unquote() {
        for bad in ["a\\s", "raw\nnewline", "a\"b", "trailing\\", "\\x4"] {
            assert_eq!(unquote(bad), None, "{bad:?}");
        }
    }
}
