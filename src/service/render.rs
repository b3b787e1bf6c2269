//! Filling the shipped templates, and the quoting each target format needs: systemd command lines and path lists, XML text, Windows command lines.

use super::ServiceError;
use std::path::Path;

/// Replaces every `@NAME@` of `template` by its value; a placeholder left over (or a value
/// that is never used) is a bug in the template or the caller, reported as such.
pub fn fill(name: &str, template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (key, value) in values {
        let placeholder = format!("@{key}@");
        assert!(
            out.contains(&placeholder),
            "template {name} has no placeholder {placeholder}"
        );
        out = out.replace(&placeholder, value);
    }
    if let Some(i) = out.find('@') {
        let rest = &out[i + 1..];
        if let Some(end) = rest.find('@') {
            let key = &rest[..end];
            assert!(
                !(key.is_empty() || key.chars().all(|c| c.is_ascii_uppercase() || c == '_')),
                "template {name} still has the placeholder @{key}@"
            );
        }
    }
    out
}

/// A path as text, refusing what no service file can carry (not UTF-8, control characters).
pub fn path_text(p: &Path) -> Result<&str, ServiceError> {
    let s = p.to_str().ok_or_else(|| {
        ServiceError::Input(format!(
            "the path {} is not valid UTF-8 and cannot be written into a service file\n  hint: use a path with a UTF-8 name",
            p.display()
        ))
    })?;
    if s.chars().any(|c| c.is_control()) {
        return Err(ServiceError::Input(format!(
            "the path {s:?} contains a control character (such as a newline) and cannot be written into a service file\n  hint: rename it"
        )));
    }
    Ok(s)
}

/// One word of a systemd command line (`ExecStart=`): double-quoted, with `\` and `"` escaped
/// by a backslash, and `%` (specifiers) and `$` (environment variables) doubled, so that
/// systemd passes exactly `word` as one argument, spaces and all.
pub fn systemd_word(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('"');
    for c in word.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A systemd command line: every word quoted by [`systemd_word`], except that the program
/// itself keeps its `$` (systemd substitutes variables in the arguments only).
pub fn systemd_command(words: &[&str]) -> String {
    words
        .iter()
        .enumerate()
        .map(|(n, w)| match n {
            0 => systemd_word(w).replace("$$", "$"),
            _ => systemd_word(w),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One entry of a systemd path list (`ReadWritePaths=`): quoted like a command word, but with
/// no `$` expansion there (a `$` stays as it is); `-` before the quote: a path missing at
/// start is ignored instead of failing the unit.
pub fn systemd_path_entry(path: &str, may_be_missing: bool) -> String {
    let mut out = String::new();
    if may_be_missing {
        out.push('-');
    }
    out.push('"');
    for c in path.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Text for an XML element or attribute value (plists, Task Scheduler).
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// One argument of a Windows command line, quoted so that `CommandLineToArgvW` (and the Rust
/// and C runtimes) read it back as exactly `arg`: in double quotes when it has a space, a tab
/// or a quote, with backslashes doubled only before a quote.
pub fn windows_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"', '\n']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// A Windows command line of arguments (the program itself goes elsewhere).
pub fn windows_args(args: &[&str]) -> String {
    args.iter()
        .map(|a| windows_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_words_keep_spaces_quotes_specifiers_and_dollars() {
        assert_eq!(systemd_word("/usr/bin/backupd"), "\"/usr/bin/backupd\"");
        assert_eq!(
            systemd_word("/etc/my backups/b\"d\\x 100%$HOME.toml"),
            "\"/etc/my backups/b\\\"d\\\\x 100%%$$HOME.toml\""
        );
        assert_eq!(
            systemd_command(&["/opt/a b/backupd", "--config", "/c d.toml", "run"]),
            "\"/opt/a b/backupd\" \"--config\" \"/c d.toml\" \"run\""
        );
        assert_eq!(
            systemd_command(&["/opt/$x 1%/backupd", "$y"]),
            "\"/opt/$x 1%%/backupd\" \"$$y\""
        );
    }

    #[test]
    fn path_entries() {
        assert_eq!(
            systemd_path_entry("/srv/my repo", false),
            "\"/srv/my repo\""
        );
        assert_eq!(systemd_path_entry("/srv/100%$", true), "-\"/srv/100%%$\"");
    }

    #[test]
    fn xml() {
        assert_eq!(xml_text("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }

    #[test]
    fn windows_quoting_round_trips_the_msvc_rules() {
        assert_eq!(windows_arg("run-due"), "run-due");
        assert_eq!(windows_arg(""), "\"\"");
        assert_eq!(
            windows_arg("C:\\Program Files\\backupd\\"),
            "\"C:\\Program Files\\backupd\\\\\""
        );
        assert_eq!(windows_arg("a\\\"b c"), "\"a\\\\\\\"b c\"");
        assert_eq!(windows_arg("C:\\no\\space"), "C:\\no\\space");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(path_text(Path::new("/a\nb")).is_err());
        assert_eq!(path_text(Path::new("/a b")).unwrap(), "/a b");
    }

    #[test]
    #[should_panic(expected = "still has the placeholder @LEFT@")]
    fn a_placeholder_left_over_is_a_bug() {
        fill("t", "@A@ @LEFT@", &[("A", "x".into())]);
    }
}
