//! The SFTP backend: a restic-layout repository on a server reached with `ssh ... -s sftp`.
//!
//! Like restic, backupd does not speak SSH itself: it runs the OpenSSH client (or a command
//! given as `sftp.command`) and talks SFTP version 3 over its stdin and stdout, so keys, agents,
//! `~/.ssh/config` and known_hosts work as they do for `ssh`. Saves write a temp file
//! (`NAME-tmp-RANDOM`), fsync it on the server (fsync@openssh.com) and rename it over the name
//! (posix-rename@openssh.com when offered), so a reader sees no file or the whole file.
//! A dropped connection is re-established and the operation tried again, a bounded number of
//! times.

mod client;

use crate::repo::backend::{BResult, Backend, BackendError, FileType};
use crate::repo::http::{RemoteClass, RemoteError};
use crate::retry::{self, Attempt, GaveUp};
pub use client::DEFAULT_TIMEOUT;
use client::{Conn, ConnectError, SftpError, FXF_CREAT, FXF_EXCL, FXF_READ, FXF_TRUNC, FXF_WRITE};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How many times an operation is tried again after the connection dropped (or the host did
/// not answer), with backoff (0.5 s, 1 s, 2 s, plus jitter) in between.
pub const RECONNECT_ATTEMPTS: u32 = 3;

/// Mode of repository files (never modified after they are written) and directories.
const FILE_MODE: u32 = 0o400;
const DIR_MODE: u32 = 0o700;

/// A repository on an SFTP server.
pub struct SftpBackend {
    argv: Vec<String>,
    /// The repository's directory on the server (absolute, or relative to the login directory).
    root: String,
    shown: String,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Bounds the handshake, and how long a session may go without answering.
    timeout: Duration,
}

/// The ssh command restic runs by default: `ssh [-p PORT] [-l USER] HOST -s sftp`.
pub fn default_command(user: Option<&str>, host: &str, port: Option<u16>) -> Vec<String> {
    let mut v = vec!["ssh".to_string()];
    if let Some(p) = port {
        v.push("-p".into());
        v.push(p.to_string());
    }
    if let Some(u) = user {
        v.push("-l".into());
        v.push(u.to_string());
    }
    v.push(host.to_string());
    v.push("-s".into());
    v.push("sftp".into());
    v
}

/// Splits a command line into words: whitespace separates, single and double quotes group,
/// a backslash escapes the next character (outside single quotes). No variables, no globs.
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some('\''), '\'') => quote = None,
            (Some('"'), '"') => quote = None,
            (Some('"') | None, '\\') => {
                let n = chars
                    .next()
                    .ok_or_else(|| format!("the command {s:?} ends with a backslash"))?;
                cur.push(n);
                in_word = true;
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("the command {s:?} has an unclosed quote"));
    }
    if in_word {
        out.push(cur);
    }
    if out.is_empty() {
        return Err("the sftp command is empty".into());
    }
    Ok(out)
}

fn is_hex_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The waits between reconnects: 0.5 s, 1 s, 2 s, … (at most 32 s), each plus up to 50 %
/// jitter, for [`RECONNECT_ATTEMPTS`] retries.
fn reconnect_policy() -> retry::Policy {
    retry::Policy {
        backoff: retry::Backoff {
            first: Duration::from_millis(500),
            factor: 2.0,
            max: Duration::from_secs(32),
            jitter: retry::Jitter::Above(0.5),
        },
        limit: retry::Limit::Retries(RECONNECT_ATTEMPTS),
    }
}

/// Why an attempt is worth another: the host did not answer (the connection could not be
/// set up), or the connection was lost during the request (what was seen).
enum Dropped {
    Connect(ConnectError),
    Lost(String),
}

impl Dropped {
    /// The error once no attempt is left, the last of `attempt + 1`.
    fn into_error(self, attempt: u32, root: &str) -> io::Error {
        match self {
            Dropped::Connect(e) => connect_failed(e, attempt),
            Dropped::Lost(why) => request_failed(&SftpError::Lost(why), attempt, root),
        }
    }
}

/// The error for a connection that could not be set up, the last of `attempt + 1` tries: a
/// host that cannot be reached or does not answer is classed unreachable (exit code 15).
fn connect_failed(e: ConnectError, attempt: u32) -> io::Error {
    let msg = if attempt > 0 {
        format!("{} (after {} attempts)", e.message, attempt + 1)
    } else {
        e.message
    };
    if e.transient || e.kind == io::ErrorKind::TimedOut {
        return io::Error::new(e.kind, RemoteError::new(RemoteClass::Unreachable, msg));
    }
    io::Error::new(e.kind, msg)
}

/// The error for a request that failed for good, on the last of `attempt + 1` tries: a denied
/// permission gets a hint naming the repository's directory `root`, and a session that kept
/// dying is classed unreachable (exit code 15).
fn request_failed(e: &SftpError, attempt: u32, root: &str) -> io::Error {
    let mut io = e.to_io();
    if attempt > 0 {
        io = io::Error::new(io.kind(), format!("{io} (after {} attempts)", attempt + 1));
    }
    if io.kind() == io::ErrorKind::PermissionDenied {
        io = io::Error::new(
            io.kind(),
            format!(
                "{io}\n  hint: the login user needs read and write access to {root} on the server"
            ),
        );
    }
    if matches!(e, SftpError::Lost(_)) {
        io = io::Error::new(
            io.kind(),
            RemoteError::new(
                RemoteClass::Unreachable,
                format!("{io}; check that the SSH server is up and the network to it holds"),
            ),
        );
    }
    io
}

impl SftpBackend {
    /// Connects to `[user@]host[:port]` and uses the directory `path` there (which need not
    /// exist yet: `create` makes it). `command`, when given, replaces the ssh command line
    /// (restic's `sftp.command`, e.g. `ssh -i KEY -o BatchMode=yes user@host -s sftp`): it
    /// must start the sftp subsystem and speak SFTP on its stdin and stdout; `user`, `host` and
    /// `port` are then only used in messages.
    pub fn connect(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        path: &str,
        command: Option<&str>,
    ) -> BResult<SftpBackend> {
        Self::connect_with_timeout(user, host, port, path, command, client::DEFAULT_TIMEOUT)
    }

    /// `connect`, with the time the ssh + SFTP handshake may take (and a session may go
    /// without answering outstanding requests) instead of [`DEFAULT_TIMEOUT`] (60 s).
    pub fn connect_with_timeout(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        path: &str,
        command: Option<&str>,
        timeout: Duration,
    ) -> BResult<SftpBackend> {
        let shown = match port {
            Some(p) => format!(
                "sftp://{}{host}:{p}/{path}",
                user.map(|u| format!("{u}@")).unwrap_or_default()
            ),
            None => format!(
                "sftp:{}{host}:{path}",
                user.map(|u| format!("{u}@")).unwrap_or_default()
            ),
        };
        let argv = match command {
            Some(c) => split_command(c).map_err(|m| BackendError {
                op: "connect to",
                path: shown.clone(),
                source: io::Error::new(io::ErrorKind::InvalidInput, m),
            })?,
            None => default_command(user, host, port),
        };
        let mut root = path.trim_end_matches('/').to_string();
        if root.is_empty() {
            root = if path.starts_with('/') { "/" } else { "." }.to_string();
        }
        let be = SftpBackend {
            argv,
            root,
            shown,
            conn: Mutex::new(None),
            timeout,
        };
        be.with_conn("connect to", &be.shown.clone(), |c, _| {
            // A round trip proves the session works; a missing directory is fine here.
            match c.stat(&be.root) {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            }
        })?;
        Ok(be)
    }

    /// The ssh command line in use.
    pub fn command(&self) -> &[String] {
        &self.argv
    }

    /// Ends the ssh process, as a dropped network connection would (for tests of reconnecting).
    #[doc(hidden)]
    pub fn kill_connection_for_test(&self) {
        if let Some(c) = self.slot().as_ref() {
            c.kill();
        }
    }

    /// Stops the ssh process with SIGSTOP, as a server that hangs mid-session would look (for
    /// tests of the stall timeout; the watchdog then kills it).
    #[doc(hidden)]
    #[cfg(unix)]
    pub fn pause_connection_for_test(&self) {
        if let Some(c) = self.slot().as_ref() {
            c.pause_for_test();
        }
    }

    /// The connection slot. It holds a connection or none, and either is valid (a dead
    /// connection is replaced on its next use), so a lock poisoned by a thread that panicked
    /// while holding it is recovered.
    fn slot(&self) -> MutexGuard<'_, Option<Arc<Conn>>> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The live connection, or a new one.
    fn get_conn(&self) -> Result<Arc<Conn>, ConnectError> {
        let mut g = self.slot();
        if let Some(c) = g.as_ref() {
            if !c.is_dead() {
                return Ok(c.clone());
            }
        }
        *g = None;
        let c = Arc::new(Conn::start(&self.argv, &self.shown, self.timeout)?);
        *g = Some(c.clone());
        Ok(c)
    }

    fn forget_conn(&self, c: &Arc<Conn>) {
        let mut g = self.slot();
        if g.as_ref().map(|x| Arc::ptr_eq(x, c)).unwrap_or(false) {
            *g = None;
        }
    }

    /// Runs `f` on a live connection; a lost connection (or a host that does not answer) is
    /// tried again up to [`RECONNECT_ATTEMPTS`] times. `f` gets the attempt number (0 first).
    fn with_conn<T>(
        &self,
        op: &'static str,
        path: &str,
        mut f: impl FnMut(&Conn, u32) -> Result<T, SftpError>,
    ) -> BResult<T> {
        let log = |d: &Dropped, w: &retry::Wait| {
            let attempt = w.attempts - 1;
            match d {
                Dropped::Connect(e) => {
                    tracing::warn!(location = %self.shown, attempt, "sftp: connecting failed, trying again: {}", e.message)
                }
                Dropped::Lost(why) => {
                    tracing::warn!(location = %self.shown, attempt, "sftp: connection lost during {op} {path}, reconnecting: {why}")
                }
            }
        };
        let r = retry::run(&reconnect_policy(), None, log, |attempt| {
            self.try_once(attempt, &mut f)
        });
        r.map_err(|g| {
            let source = match g {
                GaveUp::Failed { error, .. } => error,
                GaveUp::Exhausted { last, attempts, .. }
                | GaveUp::Cancelled { last, attempts, .. } => {
                    last.into_error(attempts.saturating_sub(1), &self.root)
                }
            };
            BackendError {
                op,
                path: path.to_string(),
                source,
            }
        })
    }

    /// One attempt of `with_conn`: connect if needed, then `f`; a lost connection is forgotten.
    fn try_once<T>(
        &self,
        attempt: u32,
        f: &mut impl FnMut(&Conn, u32) -> Result<T, SftpError>,
    ) -> Attempt<T, io::Error, Dropped> {
        let conn = match self.get_conn() {
            Ok(c) => c,
            Err(e) if e.transient => return Attempt::Retry(Dropped::Connect(e)),
            Err(e) => return Attempt::Fail(connect_failed(e, attempt)),
        };
        match f(&conn, attempt) {
            Ok(v) => Attempt::Done(v),
            Err(SftpError::Lost(why)) => {
                self.forget_conn(&conn);
                Attempt::Retry(Dropped::Lost(why))
            }
            Err(e) => Attempt::Fail(request_failed(&e, attempt, &self.root)),
        }
    }

    fn dir_of(&self, t: FileType, name: &str) -> String {
        match t {
            FileType::Config => self.root.clone(),
            FileType::Pack => format!(
                "{}/data/{}",
                self.join_root(),
                name.get(..2).unwrap_or("00")
            ),
            _ => format!("{}/{}", self.join_root(), t.dir()),
        }
    }

    fn join_root(&self) -> &str {
        if self.root == "/" {
            ""
        } else {
            &self.root
        }
    }

    /// The path of a repository file on the server.
    pub fn path_of(&self, t: FileType, name: &str) -> String {
        match t {
            FileType::Config => format!("{}/config", self.join_root()),
            _ => format!("{}/{name}", self.dir_of(t, name)),
        }
    }

    /// Makes `dirs` (parents first), several requests in flight; existing ones are fine.
    fn mkdirs(c: &Conn, dirs: &[String]) -> Result<(), SftpError> {
        let pending: Vec<_> = dirs
            .iter()
            .map(|d| c.mkdir_req(d, DIR_MODE))
            .collect::<Result<_, _>>()?;
        let mut failed = Vec::new();
        for (d, p) in dirs.iter().zip(pending) {
            if let Err(e) = p.wait()?.ok() {
                failed.push((d, e));
            }
        }
        for (d, e) in failed {
            match c.stat(d) {
                Ok(a) if a.is_dir() => {}
                _ => {
                    return Err(match e {
                        SftpError::Status { code, message } => SftpError::Status {
                            code,
                            message: format!("mkdir {d}: {message}"),
                        },
                        other => other,
                    })
                }
            }
        }
        Ok(())
    }

    /// `root` and each of its missing parents, outermost first.
    fn root_and_parents(&self) -> Vec<String> {
        let mut out = Vec::new();
        let abs = self.root.starts_with('/');
        let mut acc = String::new();
        for part in self.root.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if abs || !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            out.push(acc.clone());
        }
        out
    }
}

impl Backend for SftpBackend {
    fn location(&self) -> String {
        self.shown.clone()
    }

    fn create(&self) -> BResult<()> {
        let cfg = self.path_of(FileType::Config, "");
        self.with_conn("create repository at", &self.shown, |c, _| {
            match c.stat(&cfg) {
                Ok(_) => {
                    return Err(SftpError::Status {
                        code: client::FX_FAILURE,
                        message: "a repository already exists here (config file found)".into(),
                    })
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            // Parents one by one (each needs the one before), then the type directories,
            // then the 256 pack directories, each group pipelined.
            for d in self.root_and_parents() {
                match c.stat(&d) {
                    Ok(a) if a.is_dir() => continue,
                    Ok(_) => {
                        return Err(SftpError::Status {
                            code: client::FX_FAILURE,
                            message: format!("{d} exists and is not a directory"),
                        })
                    }
                    Err(e) if e.is_not_found() => Self::mkdirs(c, std::slice::from_ref(&d))?,
                    Err(e) => return Err(e),
                }
            }
            let top: Vec<String> = ["keys", "snapshots", "index", "locks", "data"]
                .iter()
                .map(|d| format!("{}/{d}", self.join_root()))
                .collect();
            Self::mkdirs(c, &top)?;
            let packs: Vec<String> = (0..256)
                .map(|i| format!("{}/data/{i:02x}", self.join_root()))
                .collect();
            Self::mkdirs(c, &packs)
        })
    }

    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        let target = self.path_of(t, name);
        let dir = self.dir_of(t, name);
        self.with_conn("write", &target, |c, _| {
            let tmp = format!("{target}-tmp-{:016x}", rand::random::<u64>());
            let flags = FXF_WRITE | FXF_CREAT | FXF_EXCL | FXF_TRUNC;
            let h = match c.open(&tmp, flags, Some(FILE_MODE)) {
                Ok(h) => h,
                // The two-hex-digit directory may be missing in a repository made by another
                // tool (restic makes them lazily).
                Err(e) if e.is_not_found() && t == FileType::Pack => {
                    Self::mkdirs(c, std::slice::from_ref(&dir))?;
                    c.open(&tmp, flags, Some(FILE_MODE))?
                }
                Err(e) => return Err(e),
            };
            let written = c.write_all(&h, data).and_then(|_| {
                if c.features.fsync {
                    c.fsync(&h)
                } else {
                    Ok(())
                }
            });
            let closed = c.close(&h);
            let done = written.and(closed).and_then(|_| c.rename(&tmp, &target));
            let done = match done {
                // Plain RENAME does not replace: an existing content-addressed file already
                // holds these bytes, so it stays and the temp file goes.
                Err(SftpError::Status { .. })
                    if !c.features.posix_rename
                        && t != FileType::Config
                        && c.stat(&target).is_ok() =>
                {
                    c.remove(&tmp)
                }
                other => other,
            };
            if let Err(e) = done {
                if !matches!(e, SftpError::Lost(_)) {
                    let _ = c.remove(&tmp);
                }
                return Err(e);
            }
            Ok(())
        })
    }

    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        let p = self.path_of(t, name);
        self.with_conn("read", &p, |c, _| {
            let h = c.open(&p, FXF_READ, None)?;
            let res = c.fstat(&h).and_then(|a| {
                let size = a.size.ok_or_else(|| {
                    SftpError::Protocol("the server did not report the file's size".into())
                })?;
                c.read_exact_at(&h, 0, size as usize)
            });
            let _ = c.close(&h);
            res
        })
    }

    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        let p = self.path_of(t, name);
        self.with_conn("read", &p, |c, _| {
            let h = c.open(&p, FXF_READ, None)?;
            let res = c.read_exact_at(&h, offset, len);
            let _ = c.close(&h);
            res
        })
    }

    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        let files = |c: &Conn, dir: &str, out: &mut Vec<(String, u64)>| -> Result<(), SftpError> {
            for (name, a) in c.read_dir(dir)? {
                if is_hex_name(&name) && a.is_file() {
                    out.push((name, a.size.unwrap_or(0)));
                }
            }
            Ok(())
        };
        match t {
            FileType::Config => Ok(Vec::new()),
            FileType::Pack => {
                let data = format!("{}/data", self.join_root());
                self.with_conn("list", &data, |c, _| {
                    let mut subdirs: Vec<String> = c
                        .read_dir(&data)?
                        .into_iter()
                        .filter(|(_, a)| a.is_dir())
                        .map(|(n, _)| n)
                        .collect();
                    subdirs.sort();
                    let mut out = Vec::new();
                    for d in subdirs {
                        match files(c, &format!("{data}/{d}"), &mut out) {
                            Ok(()) => {}
                            // Removed between the two listings.
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(out)
                })
            }
            _ => {
                let dir = format!("{}/{}", self.join_root(), t.dir());
                self.with_conn("list", &dir, |c, _| {
                    let mut out = Vec::new();
                    files(c, &dir, &mut out)?;
                    Ok(out)
                })
            }
        }
    }

    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        let p = self.path_of(t, name);
        self.with_conn("remove", &p, |c, attempt| match c.remove(&p) {
            // The first attempt may have removed it before the connection dropped.
            Err(e) if attempt > 0 && e.is_not_found() => Ok(()),
            other => other,
        })
    }

    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        let p = self.path_of(t, name);
        self.with_conn("stat", &p, |c, _| match c.stat(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        })
    }

    fn root_exists(&self) -> Option<bool> {
        let root = self.root.clone();
        self.with_conn("stat", &root, |c, _| match c.stat(&root) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        })
        .ok()
    }

    fn lock_settle_delay(&self) -> Duration {
        // One server's file system: a listing shows every completed rename.
        Duration::ZERO
    }

    fn space(&self) -> BResult<Option<crate::repo::backend::Space>> {
        let root = self.root.clone();
        let s = self.with_conn("statvfs", &root, |c, _| c.statvfs(&root))?;
        Ok(s.map(|(total, available)| crate::repo::backend::Space { total, available }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_words() {
        assert_eq!(
            split_command(r#"ssh -i "/tmp/my key" -o 'A B' x\ y -s sftp"#).unwrap(),
            vec!["ssh", "-i", "/tmp/my key", "-o", "A B", "x y", "-s", "sftp"]
        );
        assert!(split_command("ssh 'open").is_err());
        assert!(split_command("  ").is_err());
        assert_eq!(
            default_command(Some("u"), "h", Some(2222)),
            vec!["ssh", "-p", "2222", "-l", "u", "h", "-s", "sftp"]
        );
    }

    fn class(e: &io::Error) -> Option<RemoteClass> {
        e.get_ref()
            .and_then(|i| i.downcast_ref::<RemoteError>())
            .map(|r| r.class)
    }

    #[test]
    fn unreachable_hosts_and_dying_sessions_are_classed_unreachable() {
        let refused = |transient, kind| ConnectError {
            kind,
            message: "no".into(),
            transient,
        };
        let e = connect_failed(refused(true, io::ErrorKind::ConnectionRefused), 3);
        assert_eq!(class(&e), Some(RemoteClass::Unreachable));
        assert_eq!(e.to_string(), "no (after 4 attempts)");
        let e = connect_failed(refused(false, io::ErrorKind::TimedOut), 0);
        assert_eq!(class(&e), Some(RemoteClass::Unreachable));
        assert_eq!(e.to_string(), "no");
        let e = connect_failed(refused(false, io::ErrorKind::PermissionDenied), 0);
        assert_eq!(
            (e.kind(), class(&e)),
            (io::ErrorKind::PermissionDenied, None)
        );

        let lost = SftpError::Lost("ssh closed the connection".into());
        let e = request_failed(&lost, 3, "/r");
        assert_eq!(class(&e), Some(RemoteClass::Unreachable));
        assert!(e
            .to_string()
            .contains("(after 4 attempts); check that the SSH server is up"));
        let denied = SftpError::Status {
            code: client::FX_PERMISSION_DENIED,
            message: "Permission denied".into(),
        };
        let e = request_failed(&denied, 0, "/srv/repo");
        assert_eq!(
            (e.kind(), class(&e)),
            (io::ErrorKind::PermissionDenied, None)
        );
        assert!(e.to_string().ends_with(
            "\n  hint: the login user needs read and write access to /srv/repo on the server"
        ));
    }
}
