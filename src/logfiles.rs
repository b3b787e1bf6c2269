//! Reading the daemon's log files for `backupctl logs`: listing them, filtering lines by job and run, the last lines, following, and one line as a record (for `--json`).
//!
//! The daemon writes one file a day, `backupd.YYYY-MM-DD.log` (UTC dates), as text or JSON
//! lines; see `daemon::logging`. This module does not depend on the daemon's code, so the
//! control tool can read the files without it.

use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Log files are named `{FILE_PREFIX}.YYYY-MM-DD.{FILE_SUFFIX}`.
pub const FILE_PREFIX: &str = "backupd";
pub const FILE_SUFFIX: &str = "log";

/// How often [`follow`] looks for new lines (and at `stop`).
const POLL: Duration = Duration::from_millis(200);

/// The date part of a log file's name, if it is one: `backupd.2026-01-02.log` → `2026-01-02`.
fn file_date(name: &str) -> Option<&str> {
    let date = name
        .strip_prefix(FILE_PREFIX)?
        .strip_prefix('.')?
        .strip_suffix(FILE_SUFFIX)?
        .strip_suffix('.')?;
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(date)
}

fn missing_dir(dir: &Path, why: &io::Error) -> Error {
    Error::Input(format!(
        "could not read the log directory {}: {why}\n  hint: the daemon writes its logs to `log_dir` of its config; \
         check that setting (and that backupd ran with it), or point backupctl at that directory",
        dir.display()
    ))
}

/// The daemon's log files in `dir`, oldest first.
pub fn log_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => missing_dir(dir, &e),
        _ => Error::io(format!("list the log directory {}", dir.display()), e),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io(format!("list the log directory {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(date) = file_date(name) {
            files.push((date.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Which lines to show: those of one job and/or one run (both when both are given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub job: Option<String>,
    pub run_id: Option<String>,
}

impl LogFilter {
    /// Whether `line` (text or JSON) is one to show. In text lines the field is looked for
    /// as `job=app` or `job="app"` (span fields and event fields alike), as a whole field:
    /// `job=app2` and `other_job=app` are not `job=app`. In JSON lines it is looked for at
    /// the top level and in `fields`, `span` and every entry of `spans`.
    pub fn matches(&self, line: &str) -> bool {
        let wanted = [("job", &self.job), ("run_id", &self.run_id)];
        if wanted.iter().all(|(_, v)| v.is_none()) {
            return true;
        }
        let json = line
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str::<serde_json::Value>(line).ok())
            .flatten();
        wanted.iter().all(|(name, value)| match value {
            None => true,
            Some(value) => match &json {
                Some(json) => json_has(json, name, value),
                None => text_has(line, name, value),
            },
        })
    }
}

fn json_has(line: &serde_json::Value, name: &str, value: &str) -> bool {
    let is = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s == value,
        Some(serde_json::Value::Number(n)) => {
            value.parse::<serde_json::Number>().is_ok_and(|w| &w == n)
        }
        Some(serde_json::Value::Bool(b)) => value.parse::<bool>() == Ok(*b),
        _ => false,
    };
    is(line.get(name))
        || is(line.get("fields").and_then(|f| f.get(name)))
        || is(line.get("span").and_then(|s| s.get(name)))
        || line
            .get("spans")
            .and_then(|s| s.as_array())
            .is_some_and(|spans| spans.iter().any(|s| is(s.get(name))))
}

fn text_has(line: &str, name: &str, value: &str) -> bool {
    let key = format!("{name}=");
    let quoted = format!("{value:?}");
    let mut from = 0;
    while let Some(at) = line[from..].find(&key) {
        let start = from + at;
        from = start + key.len();
        let before = line[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue; // part of a longer name, such as `other_job=`
        }
        let rest = &line[from..];
        for candidate in [value, quoted.as_str()] {
            if let Some(after) = rest.strip_prefix(candidate) {
                if after
                    .chars()
                    .next()
                    .is_none_or(|c| c.is_whitespace() || matches!(c, '}' | ',' | ':' | ';'))
                {
                    return true;
                }
            }
        }
    }
    false
}

/// Reads lines (lossy UTF-8, without the line end) and calls `each` for every one.
fn for_each_line(path: &Path, mut each: impl FnMut(String)) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        // Removed by the daemon's rotation since it was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                format!("open the log file {}", path.display()),
                e,
            ))
        }
    };
    let mut reader = BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| Error::io(format!("read the log file {}", path.display()), e))?;
        if n == 0 {
            return Ok(());
        }
        each(line_text(&buf));
    }
}

fn line_text(buf: &[u8]) -> String {
    let line = buf.strip_suffix(b"\n").unwrap_or(buf);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// The last `n` matching lines across the files in `dir` (oldest first, newest file
/// last). Reads the newest file first and older ones only while fewer than `n` lines
/// were found; holds at most `n` lines of each file at a time.
pub fn tail(dir: &Path, n: usize, filter: &LogFilter) -> Result<Vec<String>> {
    let files = log_files(dir)?;
    let mut found: VecDeque<String> = VecDeque::new();
    for path in files.iter().rev() {
        let want = n - found.len();
        if want == 0 {
            break;
        }
        let mut ring = VecDeque::with_capacity(want.min(4096));
        for_each_line(path, |line| {
            if filter.matches(&line) {
                if ring.len() == want {
                    ring.pop_front();
                }
                ring.push_back(line);
            }
        })?;
        while let Some(line) = ring.pop_back() {
            found.push_front(line);
        }
    }
    Ok(found.into())
}

/// Where [`follow`] is reading.
struct Followed {
    path: PathBuf,
    file: File,
    /// Bytes of the file consumed so far.
    offset: u64,
    /// The start of a line whose end is not written yet.
    partial: Vec<u8>,
}

impl Followed {
    fn open(path: PathBuf, at_end: bool) -> Result<Option<Followed>> {
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("open the log file {}", path.display()),
                    e,
                ))
            }
        };
        let offset = if at_end {
            file.seek(SeekFrom::End(0)).map_err(|e| {
                Error::io(
                    format!("seek to the end of the log file {}", path.display()),
                    e,
                )
            })?
        } else {
            0
        };
        Ok(Some(Followed {
            path,
            file,
            offset,
            partial: Vec::new(),
        }))
    }

    /// Reads what was appended since the last call and hands out its complete lines.
    /// Returns whether anything was read.
    fn read_new(&mut self, each: &mut dyn FnMut(String)) -> Result<bool> {
        let what = || format!("read the log file {}", self.path.display());
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(what(), e))?
            .len();
        if len < self.offset {
            // Truncated (or replaced): start again from its beginning.
            self.offset = 0;
            self.partial.clear();
        }
        self.file
            .seek(SeekFrom::Start(self.offset))
            .map_err(|e| Error::io(what(), e))?;
        let mut chunk = Vec::new();
        let n = (&mut self.file)
            .take(1 << 20)
            .read_to_end(&mut chunk)
            .map_err(|e| Error::io(what(), e))?;
        self.offset += n as u64;
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&rest[..=end]);
            each(line_text(&self.partial));
            self.partial.clear();
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(n > 0)
    }

    /// Hands out a last line without its line end (the file is left for a newer one).
    fn finish(&mut self, each: &mut dyn FnMut(String)) {
        if !self.partial.is_empty() {
            each(line_text(&self.partial));
            self.partial.clear();
        }
    }
}

/// Follows the newest log file in `dir` from its current end (and switches to a newer
/// file when the day rolls over, reading that one from its start), calling `out` for
/// every new matching line. Waits for a first file if there is none yet. Returns when
/// `stop()` is true, which it checks at least every 250 ms. Blocking. Fails when the
/// directory or the followed file can no longer be read.
pub fn follow(
    dir: &Path,
    filter: &LogFilter,
    out: &mut dyn FnMut(&str),
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    let mut emit = |line: String| {
        if filter.matches(&line) {
            out(&line);
        }
    };
    // Existing lines are not repeated (`tail` shows those); a file that appears later
    // is new, all of it.
    let mut current = match log_files(dir)?.pop() {
        Some(path) => Followed::open(path, true)?,
        None => None,
    };
    loop {
        if stop() {
            return Ok(());
        }
        let mut read = false;
        if let Some(f) = current.as_mut() {
            read = f.read_new(&mut emit)?;
        }
        if read {
            continue;
        }
        let newest = log_files(dir)?.pop();
        let switch = match (&current, &newest) {
            (Some(f), Some(newest)) => &f.path != newest,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if switch {
            if let Some(f) = current.as_mut() {
                // The old file may have got its last lines since the read above.
                while f.read_new(&mut emit)? {}
                f.finish(&mut emit);
            }
            if let Some(path) = newest {
                current = Followed::open(path, false)?;
            }
            continue;
        }
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// One line as a record (`backupctl logs --json`)

/// One log line as `backupctl logs --json` prints it: the same keys whether the daemon writes
/// text or JSON lines. A line that continues the message of the line above it (the `hint:` of
/// an error, in the text form) has no timestamp, level or target: its text is the message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogRecord {
    /// RFC 3339, UTC, as the daemon wrote it.
    pub timestamp: Option<String>,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: Option<String>,
    /// The module that logged it (`backupd::daemon::core`).
    pub target: Option<String>,
    /// The job and run it belongs to, from its span or its fields.
    pub job: Option<String>,
    pub run_id: Option<String>,
    /// The message, followed by the event's other fields as `name=value` (as the text form
    /// writes them: `backup finished files=3`).
    pub message: String,
}

/// `line` (text or JSON, as the daemon writes them) as a record.
pub fn record(line: &str) -> LogRecord {
    json_record(line)
        .or_else(|| text_record(line))
        .unwrap_or_else(|| LogRecord {
            message: line.to_string(),
            ..LogRecord::default()
        })
}

/// A line of `log_format = "json"`: tracing's object with `fields`, `span` and `spans`.
fn json_record(line: &str) -> Option<LogRecord> {
    if !line.trim_start().starts_with('{') {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let text = |key: &str| v.get(key).and_then(|s| s.as_str()).map(str::to_string);
    let fields = v.get("fields").and_then(|f| f.as_object());
    let mut message = fields
        .and_then(|f| f.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    for (k, value) in fields
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "message")
    {
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        message.push_str(&format!(" {k}={shown}"));
    }
    Some(LogRecord {
        timestamp: text("timestamp"),
        level: text("level"),
        target: text("target"),
        job: json_value(&v, "job"),
        run_id: json_value(&v, "run_id"),
        message: message.trim_start().to_string(),
    })
}

/// The value of field `name` where [`json_has`] looks for it.
fn json_value(line: &serde_json::Value, name: &str) -> Option<String> {
    let get = |v: Option<&serde_json::Value>| match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    get(line.get(name))
        .or_else(|| get(line.get("fields").and_then(|f| f.get(name))))
        .or_else(|| get(line.get("span").and_then(|s| s.get(name))))
        .or_else(|| {
            line.get("spans")?
                .as_array()?
                .iter()
                .find_map(|s| get(s.get(name)))
        })
}

/// A line of the text form: `TIMESTAMP LEVEL span{fields}:span{fields}: target: message
/// fields` (tracing's full format; the spans are optional).
fn text_record(line: &str) -> Option<LogRecord> {
    let (timestamp, rest) = line.split_once(' ')?;
    chrono::DateTime::parse_from_rfc3339(timestamp).ok()?;
    let (level, rest) = rest.trim_start().split_once(' ')?;
    if !matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") {
        return None;
    }
    let (spans, rest) = match spans_prefix(rest) {
        Some((spans, after)) if target_prefix(after).is_some() => (spans, after),
        _ => (Vec::new(), rest),
    };
    let (target, message) = match target_prefix(rest) {
        Some((t, m)) => (Some(t.to_string()), m),
        None => (None, rest),
    };
    let field = |name: &str| {
        spans
            .iter()
            .find_map(|s| field_value(s, name))
            .or_else(|| field_value(message, name))
    };
    Some(LogRecord {
        timestamp: Some(timestamp.to_string()),
        level: Some(level.to_string()),
        target,
        job: field("job"),
        run_id: field("run_id"),
        message: message.to_string(),
    })
}

/// `run{job=app run_id=x}:other: ` at the start of `s`: the fields of each span, and what
/// follows the space after them.
fn spans_prefix(s: &str) -> Option<(Vec<&str>, &str)> {
    let mut spans = Vec::new();
    let mut rest = s;
    loop {
        let name = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|&n| n > 0)?;
        rest = &rest[name..];
        let mut fields = "";
        if rest.starts_with('{') {
            let end = closing_brace(rest)?;
            fields = &rest[1..end];
            rest = &rest[end + 1..];
        }
        rest = rest.strip_prefix(':')?;
        spans.push(fields);
        if let Some(after) = rest.strip_prefix(' ') {
            return Some((spans, after));
        }
    }
}

/// The index of the `}` that closes the `{` at the start of `s` (quoted strings skipped).
fn closing_brace(s: &str) -> Option<usize> {
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (true, false, _) => {}
            (false, _, '"') => quoted = true,
            (false, _, '{') => depth += 1,
            (false, _, '}') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `backupd::daemon::core: message` at the start of `s`: the target and the message.
fn target_prefix(s: &str) -> Option<(&str, &str)> {
    let (target, message) = s
        .split_once(": ")
        .or_else(|| s.strip_suffix(':').map(|t| (t, "")))?;
    let ident = |p: &str| {
        p.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    target.split("::").all(ident).then_some((target, message))
}

/// The value of the field `name` in text fields (`job=app`, `job="a b"`), the field matched
/// whole as [`text_has`] matches it.
fn field_value(text: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    let mut from = 0;
    while let Some(at) = text[from..].find(&key) {
        let start = from + at;
        from = start + key.len();
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
            continue;
        }
        let rest = &text[from..];
        if rest.starts_with('"') {
            return quoted_value(rest);
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '}' | ',' | ';'))
            .unwrap_or(rest.len());
        return Some(rest[..end].to_string());
    }
    None
}

/// A Debug-quoted string at the start of `s` (`"a \"b\""` → `a "b"`).
fn quoted_value(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().skip(1);
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    fn job(j: &str) -> LogFilter {
        LogFilter {
            job: Some(j.into()),
            run_id: None,
        }
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn file_names_match_the_appender() {
        assert_eq!(file_date("backupd.2026-01-02.log"), Some("2026-01-02"));
        for name in [
            "backupd.log",
            "backupd.2026-01-02.log.gz",
            "other.2026-01-02.log",
            "backupd.latest.log",
        ] {
            assert_eq!(file_date(name), None, "{name}");
        }
    }

    #[test]
    fn lists_log_files_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "backupd.2026-01-10.log",
            "backupd.2025-12-31.log",
            "notes.txt",
            "backupd.2026-01-02.log",
        ] {
            std::fs::write(tmp.path().join(name), "").unwrap();
        }
        let names: Vec<_> = log_files(tmp.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "backupd.2025-12-31.log",
                "backupd.2026-01-02.log",
                "backupd.2026-01-10.log"
            ]
        );
    }

    #[test]
    fn a_missing_dir_says_which_and_how_to_set_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nope");
        let err = log_files(&dir).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.display().to_string()) && msg.contains("log_dir"),
            "{msg}"
        );
        assert!(tail(&dir, 10, &LogFilter::default()).is_err());
    }

    #[test]
    fn filters_text_lines_by_whole_fields() {
        let line = "2026-01-02T03:00:00.1Z  INFO run{job=app run_id=app-20260102-0300}: backupd::daemon: started";
        assert!(job("app").matches(line));
        assert!(!job("app2").matches(line));
        assert!(!job("ap").matches(line));
        let other = line.replace("job=app ", "job=app2 ");
        assert!(!job("app").matches(&other));
        assert!(job("app2").matches(&other));
        assert!(!job("app").matches("INFO run{other_job=app}: x"));
        assert!(job("app").matches("INFO run{job=\"app\" run_id=\"x\"}: x"));
        assert!(!job("app").matches("INFO run{job=\"app2\"}: x"));
        assert!(job("app").matches("INFO backupd: next run job=app"));
        assert!(!job("app").matches("INFO backupd: daemon started"));
        let run = LogFilter {
            job: Some("app".into()),
            run_id: Some("app-20260102-0300".into()),
        };
        assert!(run.matches(line));
        let other_run = LogFilter {
            run_id: Some("app-20260101-0300".into()),
            ..run.clone()
        };
        assert!(!other_run.matches(line));
        assert!(LogFilter::default().matches("anything"));
    }

    #[test]
    fn filters_json_lines_anywhere() {
        let top = r#"{"timestamp":"t","level":"INFO","job":"app","fields":{"message":"m"}}"#;
        let fields = r#"{"level":"INFO","fields":{"message":"m","job":"app"}}"#;
        let span = r#"{"level":"INFO","fields":{"message":"m"},"span":{"job":"app","name":"run"}}"#;
        let spans = r#"{"level":"INFO","fields":{"message":"m"},"spans":[{"name":"daemon"},{"job":"app","run_id":"r1","name":"run"}]}"#;
        for line in [top, fields, span, spans] {
            assert!(job("app").matches(line), "{line}");
            assert!(!job("app2").matches(line), "{line}");
        }
        let app2 = r#"{"level":"INFO","fields":{"message":"job=app"},"span":{"job":"app2"}}"#;
        assert!(
            !job("app").matches(app2),
            "the message text is not a field of a JSON line"
        );
        assert!(job("app2").matches(app2));
        let run = LogFilter {
            job: Some("app".into()),
            run_id: Some("r1".into()),
        };
        assert!(run.matches(spans));
        let numbered = r#"{"fields":{"message":"m"},"span":{"job":7}}"#;
        assert!(job("7").matches(numbered));
        assert!(!job("70").matches(numbered));
        assert!(!run.matches(span));
    }

    #[test]
    fn tail_takes_the_last_lines_across_files() {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("backupd.2026-01-01.log");
        let new = tmp.path().join("backupd.2026-01-02.log");
        append(
            &old,
            "run{job=app}: a1\nrun{job=app2}: b1\nrun{job=app}: a2\n",
        );
        append(
            &new,
            "run{job=app}: a3\r\nrun{job=app2}: b2\nrun{job=app}: a4",
        );
        let all = LogFilter::default();
        assert_eq!(
            tail(tmp.path(), 2, &all).unwrap(),
            ["run{job=app2}: b2", "run{job=app}: a4"]
        );
        assert_eq!(
            tail(tmp.path(), 3, &job("app")).unwrap(),
            ["run{job=app}: a2", "run{job=app}: a3", "run{job=app}: a4"]
        );
        assert_eq!(
            tail(tmp.path(), 10, &job("app2")).unwrap(),
            ["run{job=app2}: b1", "run{job=app2}: b2"]
        );
        assert_eq!(tail(tmp.path(), 10, &all).unwrap().len(), 6);
        assert!(tail(tmp.path(), 0, &all).unwrap().is_empty());
        assert!(tail(tmp.path(), 5, &job("none")).unwrap().is_empty());
    }

    fn wait_for(seen: &Mutex<Vec<String>>, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = seen.lock().unwrap().clone();
            if lines.len() >= count || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn follow_picks_up_appended_lines_and_a_new_days_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let day1 = dir.join("backupd.2026-01-01.log");
        append(&day1, "run{job=app}: before\n");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (dir, seen, stop) = (dir.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut out = |line: &str| seen.lock().unwrap().push(line.to_string());
                follow(&dir, &job("app"), &mut out, &|| stop.load(Ordering::SeqCst))
            })
        };
        // Give it time to open the file at its end before appending.
        std::thread::sleep(Duration::from_millis(500));
        append(
            &day1,
            "run{job=app}: one\nrun{job=app2}: skipped\nrun{job=app}: t",
        );
        std::thread::sleep(Duration::from_millis(300));
        append(&day1, "wo\n");
        assert_eq!(
            wait_for(&seen, 2),
            ["run{job=app}: one", "run{job=app}: two"]
        );

        let day2 = dir.join("backupd.2026-01-02.log");
        append(&day2, "run{job=app}: three\nrun{job=app2}: skipped\n");
        append(&day2, "run{job=app}: four\n");
        let lines = wait_for(&seen, 4);
        assert_eq!(lines[2..], ["run{job=app}: three", "run{job=app}: four"]);

        stop.store(true, Ordering::SeqCst);
        let started = Instant::now();
        follower.join().unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(seen.lock().unwrap().len(), 4, "{:?}", seen.lock().unwrap());
    }

    #[test]
    fn follow_waits_for_a_first_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let follower = {
            let (dir, seen, stop) = (dir.clone(), seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut out = |line: &str| seen.lock().unwrap().push(line.to_string());
                follow(&dir, &LogFilter::default(), &mut out, &|| {
                    stop.load(Ordering::SeqCst)
                })
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        append(&dir.join("backupd.2026-01-01.log"), "first\n");
        assert_eq!(wait_for(&seen, 1), ["first"]);
        stop.store(true, Ordering::SeqCst);
        follower.join().unwrap().unwrap();
    }

    #[test]
    fn a_text_line_becomes_a_record_with_its_span_fields() {
        let r = record("2026-01-02T03:00:00.123456Z  INFO run{job=app run_id=app-20260102-0300}: backupd::job: backup finished files=3");
        assert_eq!(
            r,
            LogRecord {
                timestamp: Some("2026-01-02T03:00:00.123456Z".into()),
                level: Some("INFO".into()),
                target: Some("backupd::job".into()),
                job: Some("app".into()),
                run_id: Some("app-20260102-0300".into()),
                message: "backup finished files=3".into(),
            }
        );
    }

    #[test]
    fn a_text_line_without_spans_takes_the_job_from_its_fields() {
        let r = record(
            "2026-01-02T03:00:00Z  WARN backupd::daemon::core: skipped 2026-01-02 02:30 UTC: catch_up is skip job=\"my app\" other_job=x missed=3",
        );
        assert_eq!(r.level.as_deref(), Some("WARN"));
        assert_eq!(r.target.as_deref(), Some("backupd::daemon::core"));
        assert_eq!(r.job.as_deref(), Some("my app"));
        assert_eq!(r.run_id, None);
        assert_eq!(
            r.message,
            "skipped 2026-01-02 02:30 UTC: catch_up is skip job=\"my app\" other_job=x missed=3"
        );
        // Nested spans, a quoted value with a brace in it.
        let r = record("2026-01-02T03:00:00Z ERROR run{job=\"a}b\" run_id=r1}:hook: backupd::sources::hooks: it failed");
        assert_eq!(
            (r.job.as_deref(), r.run_id.as_deref()),
            (Some("a}b"), Some("r1"))
        );
        assert_eq!(r.message, "it failed");
    }

    #[test]
    fn a_continuation_line_or_foreign_text_is_only_a_message() {
        for line in ["  hint: fix the hook", "not a log line", ""] {
            assert_eq!(
                record(line),
                LogRecord {
                    message: line.into(),
                    ..LogRecord::default()
                }
            );
        }
    }

    #[test]
    fn a_json_line_becomes_the_same_record() {
        let line = r#"{"timestamp":"2026-01-02T03:00:00.123456Z","level":"INFO","fields":{"message":"backup finished","files":3},"target":"backupd::job","span":{"job":"app","run_id":"app-1","name":"run"},"spans":[{"job":"app","run_id":"app-1","name":"run"}]}"#;
        assert_eq!(
            record(line),
            LogRecord {
                timestamp: Some("2026-01-02T03:00:00.123456Z".into()),
                level: Some("INFO".into()),
                target: Some("backupd::job".into()),
                job: Some("app".into()),
                run_id: Some("app-1".into()),
                message: "backup finished files=3".into(),
            }
        );
    }
}
