//! Whether a folder is a mount point, from the text of `/proc/self/mountinfo` (pure: the caller reads the file).

use std::path::Path;

/// Whether `mountinfo` (the text of `/proc/self/mountinfo`) lists a mount at `dir` (an absolute,
/// canonical path).
pub fn lists(mountinfo: &str, dir: &Path) -> bool {
    let want = dir.as_os_str().as_encoded_bytes();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| unescape(m) == want)
}

/// A mountinfo field with its octal escapes (`\040` for a space, `\011`, `\012`, `\134`) undone.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_mount_point_with_escaped_spaces() {
        let text = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                    45 22 0:40 / /tmp/a\\040b ro,nosuid - fuse backupctl ro\n";
        assert!(lists(text, Path::new("/tmp/a b")));
        assert!(lists(text, Path::new("/")));
        assert!(!lists(text, Path::new("/tmp/a")));
        assert!(!lists(text, Path::new("/tmp")));
    }
}
