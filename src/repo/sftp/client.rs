//! A minimal SFTP (protocol version 3) client over an `ssh ... -s sftp` child process.
//!
//! One [`Conn`] is one ssh process. Requests from many threads share it: each request gets an
//! id and a reply slot, a reader thread hands every reply to its slot, so callers can keep
//! several requests outstanding (pipelined reads and writes) and threads do not wait for each
//! other's round trips.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the ssh + SFTP handshake may take, and how long a session may go without an answer
/// while requests are outstanding (then it counts as lost), unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

// Packet types (draft-ietf-secsh-filexfer-02).
const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_FSTAT: u8 = 8;
const FXP_OPENDIR: u8 = 11;
const FXP_READDIR: u8 = 12;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_STAT: u8 = 17;
const FXP_RENAME: u8 = 18;
const FXP_EXTENDED: u8 = 200;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_DATA: u8 = 103;
const FXP_NAME: u8 = 104;
const FXP_ATTRS: u8 = 105;
const FXP_EXTENDED_REPLY: u8 = 201;

pub const FXF_READ: u32 = 0x01;
pub const FXF_WRITE: u32 = 0x02;
pub const FXF_CREAT: u32 = 0x08;
pub const FXF_TRUNC: u32 = 0x10;
pub const FXF_EXCL: u32 = 0x20;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_OP_UNSUPPORTED: u32 = 8;

/// Read/write size when the server does not say (every SFTP server must accept 32 KiB).
const DEFAULT_CHUNK: u32 = 32 * 1024;
/// Upper bound on the chunk, whatever the server offers (OpenSSH's limit is 255 KiB).
const MAX_CHUNK: u32 = 255 * 1024;
/// The largest reply we accept (a chunk plus headers, or a directory listing page).
const MAX_PACKET: u32 = 4 << 20;
/// Outstanding READ or WRITE requests per transfer.
pub const WINDOW: usize = 64;

/// What went wrong with an SFTP request.
#[derive(Debug, Clone)]
pub enum SftpError {
    /// The server answered with a status other than OK.
    Status { code: u32, message: String },
    /// The connection is gone (ssh exited, the pipe broke); `reason` says what was seen.
    Lost(String),
    /// The server sent something this client does not understand.
    Protocol(String),
}

impl SftpError {
    pub fn code(&self) -> Option<u32> {
        match self {
            SftpError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(FX_NO_SUCH_FILE)
    }

    /// The error as an `io::Error` of the matching kind, with the server's words.
    pub fn to_io(&self) -> io::Error {
        match self {
            SftpError::Status { code, message } => {
                let (kind, what) = match *code {
                    FX_NO_SUCH_FILE => (io::ErrorKind::NotFound, "no such file or directory"),
                    FX_PERMISSION_DENIED => (io::ErrorKind::PermissionDenied, "permission denied"),
                    FX_OP_UNSUPPORTED => (
                        io::ErrorKind::Unsupported,
                        "the SFTP server does not support this operation",
                    ),
                    FX_EOF => (io::ErrorKind::UnexpectedEof, "end of file"),
                    FX_FAILURE => (
                        io::ErrorKind::Other,
                        "the SFTP server reported a failure (a full disk, an existing name or a server-side error)",
                    ),
                    _ => (io::ErrorKind::Other, "the SFTP server reported an error"),
                };
                io::Error::new(kind, format!("{what} (SFTP status {code}: {message:?})"))
            }
            SftpError::Lost(r) => io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("the SFTP connection was lost: {r}"),
            ),
            SftpError::Protocol(m) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("SFTP protocol error: {m}"),
            ),
        }
    }
}

pub type SResult<T> = Result<T, SftpError>;

/// File attributes (the fields this client uses).
#[derive(Debug, Clone, Default)]
pub struct Attrs {
    pub size: Option<u64>,
    pub permissions: Option<u32>,
}

impl Attrs {
    pub fn is_dir(&self) -> bool {
        self.permissions.map(|p| p & 0o170000 == 0o040000) == Some(true)
    }
    /// A regular file, or unknown type (a server that sends no permissions).
    pub fn is_file(&self) -> bool {
        self.permissions
            .map(|p| p & 0o170000 == 0o100000)
            .unwrap_or(true)
    }
}

/// Builds a request body.
#[derive(Default)]
pub struct Buf(pub Vec<u8>);

impl Buf {
    pub fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(self, s: &str) -> Self {
        self.bytes(s.as_bytes())
    }
    /// ATTRS with only the permissions set, or empty.
    pub fn attrs(self, perms: Option<u32>) -> Self {
        match perms {
            Some(p) => self.u32(ATTR_PERMISSIONS).u32(p),
            None => self.u32(0),
        }
    }
}

/// Reads a reply body.
pub struct Rd<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Rd<'a> {
    pub fn new(b: &'a [u8]) -> Rd<'a> {
        Rd { b, p: 0 }
    }
    fn take(&mut self, n: usize) -> SResult<&'a [u8]> {
        if self.b.len() - self.p < n {
            return Err(SftpError::Protocol("a reply ended early".into()));
        }
        let s = &self.b[self.p..self.p + n];
        self.p += n;
        Ok(s)
    }
    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> SResult<[u8; N]> {
        // `take` gives exactly N bytes or an error, so the conversion cannot fail; should it,
        // the reply is reported short rather than the thread panicking.
        self.take(N)?
            .try_into()
            .map_err(|_| SftpError::Protocol("a reply ended early".into()))
    }
    pub fn u32(&mut self) -> SResult<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> SResult<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn bytes(&mut self) -> SResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> SResult<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
    pub fn attrs(&mut self) -> SResult<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.b[self.p..]
    }
}

/// A reply: its packet type and the body after the request id.
pub struct Reply {
    pub typ: u8,
    pub body: Vec<u8>,
}

impl Reply {
    fn status(&self) -> SResult<(u32, String)> {
        let mut r = Rd::new(&self.body);
        let code = r.u32()?;
        // Some servers leave out the message; an empty one is fine.
        let message = r.string().unwrap_or_default();
        Ok((code, message))
    }

    fn unexpected<T>(&self, wanted: &str) -> SResult<T> {
        if self.typ == FXP_STATUS {
            let (code, message) = self.status()?;
            return Err(SftpError::Status { code, message });
        }
        Err(SftpError::Protocol(format!(
            "expected {wanted}, got packet type {}",
            self.typ
        )))
    }

    pub fn ok(self) -> SResult<()> {
        if self.typ == FXP_STATUS {
            let (code, message) = self.status()?;
            if code == FX_OK {
                return Ok(());
            }
            return Err(SftpError::Status { code, message });
        }
        self.unexpected("STATUS")
    }

    pub fn handle(self) -> SResult<Vec<u8>> {
        if self.typ == FXP_HANDLE {
            return Ok(Rd::new(&self.body).bytes()?.to_vec());
        }
        self.unexpected("HANDLE")
    }

    /// DATA, or `None` at end of file.
    pub fn data(self) -> SResult<Option<Vec<u8>>> {
        match self.typ {
            FXP_DATA => Ok(Some(Rd::new(&self.body).bytes()?.to_vec())),
            FXP_STATUS if self.status()?.0 == FX_EOF => Ok(None),
            _ => self.unexpected("DATA"),
        }
    }

    pub fn attrs(self) -> SResult<Attrs> {
        if self.typ == FXP_ATTRS {
            return Rd::new(&self.body).attrs();
        }
        self.unexpected("ATTRS")
    }

    /// NAME entries (file name, attributes), or `None` at the end of a listing.
    pub fn names(self) -> SResult<Option<Vec<(String, Attrs)>>> {
        match self.typ {
            FXP_NAME => {
                let mut r = Rd::new(&self.body);
                let n = r.u32()?;
                let mut out = Vec::with_capacity(n.min(4096) as usize);
                for _ in 0..n {
                    let name = r.string()?;
                    r.bytes()?; // longname
                    out.push((name, r.attrs()?));
                }
                Ok(Some(out))
            }
            FXP_STATUS if self.status()?.0 == FX_EOF => Ok(None),
            _ => self.unexpected("NAME"),
        }
    }

    pub fn extended(self) -> SResult<Vec<u8>> {
        if self.typ == FXP_EXTENDED_REPLY {
            return Ok(self.body);
        }
        self.unexpected("EXTENDED_REPLY")
    }
}

/// A request that was sent; `wait` gives its reply.
pub struct Pending {
    rx: Receiver<Reply>,
    shared: Arc<Shared>,
}

impl Pending {
    pub fn wait(self) -> SResult<Reply> {
        self.rx.recv().map_err(|_| self.shared.lost())
    }
}

struct Table {
    slots: HashMap<u32, SyncSender<Reply>>,
    /// Set once the connection is gone: why.
    dead: Option<String>,
    /// The last sign of life while requests are outstanding: a reply, or the first request
    /// after a quiet spell.
    progress: Instant,
}

struct Shared {
    table: Mutex<Table>,
    /// What ssh printed on stderr (its last 8 KiB).
    stderr: Mutex<String>,
    /// The ssh process (killed when the session stalls, so blocked writers and readers wake).
    child: Mutex<Child>,
    /// No answer for this long with requests outstanding: the session is lost.
    timeout: Duration,
}

impl Shared {
    /// The state of a session over the ssh process `child`, no request outstanding.
    fn new(child: Child, timeout: Duration) -> Arc<Shared> {
        Arc::new(Shared {
            table: Mutex::new(Table {
                slots: HashMap::new(),
                dead: None,
                progress: Instant::now(),
            }),
            stderr: Mutex::new(String::new()),
            child: Mutex::new(child),
            timeout,
        })
    }

    /// The request table. Its lock is poisoned only when a thread panicked while holding it;
    /// the session is then ended rather than trusted: the table is recovered, marked dead
    /// (with a reason naming the SFTP session) and its waiters woken, so every caller gets
    /// [`SftpError::Lost`] and the backend reconnects.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| {
            let mut t = poisoned.into_inner();
            if t.dead.is_none() {
                t.dead = Some(
                    "a thread of the SFTP session panicked while it held the request table".into(),
                );
            }
            t.slots.clear();
            t
        })
    }

    /// What ssh printed on stderr. A panic while the lock was held leaves at worst an untrimmed
    /// tail of text, which is still fine for messages: a poisoned lock is recovered.
    fn stderr(&self) -> MutexGuard<'_, String> {
        self.stderr.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What ssh printed on stderr, trimmed.
    fn stderr_text(&self) -> String {
        self.stderr().trim().to_string()
    }

    /// The ssh process. A `Child` has no state a panic could leave half-changed, and what
    /// every caller does with it (kill it, wait for it, read its id) stays right: a poisoned
    /// lock is recovered.
    fn child(&self) -> MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn kill(&self, why: String) {
        let mut t = self.table();
        if t.dead.is_none() {
            t.dead = Some(why);
        }
        t.slots.clear();
    }

    /// Ends the ssh process: blocked reads and writes on its pipes fail at once.
    fn kill_child(&self) {
        let mut c = self.child();
        let _ = c.kill();
        let _ = c.wait();
    }

    fn lost(&self) -> SftpError {
        let why = self
            .table()
            .dead
            .clone()
            .unwrap_or_else(|| "the connection closed".into());
        let err = self.stderr_text();
        if err.is_empty() {
            SftpError::Lost(why)
        } else {
            SftpError::Lost(format!("{why}; ssh said: {err}"))
        }
    }
}

/// How the server's extensions and limits shape what the client does.
#[derive(Debug, Clone)]
pub struct Features {
    pub posix_rename: bool,
    pub fsync: bool,
    /// statvfs@openssh.com: the size and free space of the server's file system.
    pub statvfs: bool,
    pub read_chunk: u32,
    pub write_chunk: u32,
}

/// One SFTP session over one ssh process.
pub struct Conn {
    writer: Mutex<BufWriter<ChildStdin>>,
    shared: Arc<Shared>,
    next_id: AtomicU32,
    pub features: Features,
}

/// Why a connection could not be set up, in words for the user.
#[derive(Debug)]
pub struct ConnectError {
    pub kind: io::ErrorKind,
    pub message: String,
    /// Worth trying again (the host did not answer), as opposed to a refused login.
    pub transient: bool,
}

impl Conn {
    /// Starts `argv` (an ssh command that runs the sftp subsystem) and does the SFTP handshake,
    /// within `timeout` (a server that accepts the connection and then says nothing fails
    /// after it); later, a session with requests outstanding and no answer for `timeout` is
    /// lost (and reconnected by the backend).
    pub fn start(argv: &[String], target: &str, timeout: Duration) -> Result<Conn, ConnectError> {
        let shown = argv.join(" ");
        let (child, pipes, stderr) = spawn_ssh(argv, &shown)?;
        let shared = Shared::new(child, timeout);
        let sh = shared.clone();
        let err_thread = match spawn("sftp-ssh-stderr", move || collect_stderr(stderr, sh)) {
            Ok(h) => h,
            Err(e) => {
                shared.kill_child();
                return Err(e);
            }
        };
        let (version, Pipes { stdin, stdout }) =
            handshake(&shared, pipes, err_thread, &shown, target)?;
        let (features, limits) = match parse_version(&version, target) {
            Ok(f) => f,
            Err(e) => {
                shared.kill_child();
                return Err(e);
            }
        };
        // From here on, dropping `conn` (on an error too) ends the session.
        let mut conn = Conn {
            writer: Mutex::new(stdin),
            shared: shared.clone(),
            next_id: AtomicU32::new(1),
            features,
        };
        let sh = shared.clone();
        spawn("sftp-reader", move || reader_loop(stdout, sh))?;
        spawn("sftp-watchdog", move || watchdog(shared))?;
        if limits {
            conn.apply_limits();
        }
        Ok(conn)
    }

    /// Sizes reads and writes by the server's limits (limits@openssh.com); keeps the defaults
    /// when it does not answer.
    fn apply_limits(&mut self) {
        let reply = self
            .request(FXP_EXTENDED, Buf::default().str("limits@openssh.com"))
            .and_then(|p| p.wait())
            .and_then(|r| r.extended());
        if let Some((read, write)) = reply.ok().and_then(|body| chunk_limits(&body)) {
            self.features.read_chunk = read;
            self.features.write_chunk = write;
        }
    }

    pub fn is_dead(&self) -> bool {
        self.shared.table().dead.is_some()
    }

    #[cfg(unix)]
    pub fn pause_for_test(&self) {
        let pid = self.shared.child().id();
        // SAFETY: kill(2) on our own child, which is not reaped while `shared` holds it.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGSTOP);
        }
    }

    /// Ends the ssh process (the connection is then dead for every user).
    pub fn kill(&self) {
        self.shared.kill("the connection was closed".into());
        self.shared.kill_child();
    }

    /// Sends a request; the reply comes through the returned [`Pending`].
    pub fn request(&self, typ: u8, body: Buf) -> SResult<Pending> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        {
            let mut t = self.shared.table();
            if t.dead.is_some() {
                drop(t);
                return Err(self.shared.lost());
            }
            if t.slots.is_empty() {
                t.progress = Instant::now();
            }
            t.slots.insert(id, tx);
        }
        let mut payload = Vec::with_capacity(4 + body.0.len());
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&body.0);
        let res = match self.writer.lock() {
            Ok(mut w) => write_packet(&mut *w, typ, &payload).and_then(|_| w.flush()),
            // A thread panicked while writing: part of a packet may have gone out, so the
            // stream is out of step and the session cannot go on.
            Err(_) => Err(io::Error::other(
                "a thread of the SFTP session panicked while it wrote a request",
            )),
        };
        if let Err(e) = res {
            self.shared.kill(format!("writing to ssh failed: {e}"));
            return Err(self.shared.lost());
        }
        Ok(Pending {
            rx,
            shared: self.shared.clone(),
        })
    }

    fn call(&self, typ: u8, body: Buf) -> SResult<Reply> {
        self.request(typ, body)?.wait()
    }

    pub fn open(&self, path: &str, flags: u32, perms: Option<u32>) -> SResult<Vec<u8>> {
        self.call(FXP_OPEN, Buf::default().str(path).u32(flags).attrs(perms))?
            .handle()
    }

    pub fn close(&self, handle: &[u8]) -> SResult<()> {
        self.call(FXP_CLOSE, Buf::default().bytes(handle))?.ok()
    }

    pub fn fstat(&self, handle: &[u8]) -> SResult<Attrs> {
        self.call(FXP_FSTAT, Buf::default().bytes(handle))?.attrs()
    }

    pub fn stat(&self, path: &str) -> SResult<Attrs> {
        self.call(FXP_STAT, Buf::default().str(path))?.attrs()
    }

    pub fn mkdir_req(&self, path: &str, perms: u32) -> SResult<Pending> {
        self.request(FXP_MKDIR, Buf::default().str(path).attrs(Some(perms)))
    }

    pub fn remove(&self, path: &str) -> SResult<()> {
        self.call(FXP_REMOVE, Buf::default().str(path))?.ok()
    }

    /// Renames `from` to `to`, replacing `to` atomically when the server offers
    /// posix-rename@openssh.com (plain SFTP RENAME fails when `to` exists).
    pub fn rename(&self, from: &str, to: &str) -> SResult<()> {
        if self.features.posix_rename {
            self.call(
                FXP_EXTENDED,
                Buf::default()
                    .str("posix-rename@openssh.com")
                    .str(from)
                    .str(to),
            )?
            .ok()
        } else {
            self.call(FXP_RENAME, Buf::default().str(from).str(to))?
                .ok()
        }
    }

    /// Flushes a written file to stable storage on the server (fsync@openssh.com).
    pub fn fsync(&self, handle: &[u8]) -> SResult<()> {
        self.call(
            FXP_EXTENDED,
            Buf::default().str("fsync@openssh.com").bytes(handle),
        )?
        .ok()
    }

    /// The size and the space available to the user of the file system that holds `path`
    /// (statvfs@openssh.com), in bytes; `None` when the server does not offer it.
    pub fn statvfs(&self, path: &str) -> SResult<Option<(u64, u64)>> {
        if !self.features.statvfs {
            return Ok(None);
        }
        let body = self
            .call(
                FXP_EXTENDED,
                Buf::default().str("statvfs@openssh.com").str(path),
            )?
            .extended()?;
        let mut r = Rd::new(&body);
        let _bsize = r.u64()?;
        let frsize = r.u64()?;
        let blocks = r.u64()?;
        let _bfree = r.u64()?;
        let bavail = r.u64()?;
        Ok(Some((
            blocks.saturating_mul(frsize),
            bavail.saturating_mul(frsize),
        )))
    }

    /// Writes `data` at offset 0 of an open file, keeping up to [`WINDOW`] writes in flight.
    pub fn write_all(&self, handle: &[u8], data: &[u8]) -> SResult<()> {
        let chunk = self.features.write_chunk as usize;
        let mut inflight: std::collections::VecDeque<Pending> = std::collections::VecDeque::new();
        let mut first_err = None;
        for (i, part) in data.chunks(chunk).enumerate() {
            if inflight.len() >= WINDOW {
                if let Some(p) = inflight.pop_front() {
                    if let Err(e) = p.wait().and_then(|r| r.ok()) {
                        first_err = Some(e);
                        break;
                    }
                }
            }
            let off = (i * chunk) as u64;
            let req = self.request(FXP_WRITE, Buf::default().bytes(handle).u64(off).bytes(part))?;
            inflight.push_back(req);
        }
        for p in inflight {
            if let Err(e) = p.wait().and_then(|r| r.ok()) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads exactly `len` bytes from `offset` of an open file, keeping up to [`WINDOW`] reads
    /// in flight. Short answers are filled in with further reads; the end of the file before
    /// `len` bytes is an error.
    pub fn read_exact_at(&self, handle: &[u8], offset: u64, len: usize) -> SResult<Vec<u8>> {
        let chunk = self.features.read_chunk as usize;
        let mut out = vec![0u8; len];
        // (position in `out`, length asked, reply)
        let mut inflight: std::collections::VecDeque<(usize, usize, Pending)> =
            std::collections::VecDeque::new();
        let mut gaps: Vec<(usize, usize)> = Vec::new();
        let mut next = 0usize;
        let mut eof_at: Option<usize> = None;
        loop {
            while next < len && inflight.len() < WINDOW && eof_at.is_none() {
                let n = chunk.min(len - next);
                let p = self.request(
                    FXP_READ,
                    Buf::default()
                        .bytes(handle)
                        .u64(offset + next as u64)
                        .u32(n as u32),
                )?;
                inflight.push_back((next, n, p));
                next += n;
            }
            let Some((pos, n, p)) = inflight.pop_front() else {
                break;
            };
            match p.wait()?.data()? {
                Some(d) => {
                    let got = d.len().min(n);
                    out[pos..pos + got].copy_from_slice(&d[..got]);
                    if got < n {
                        gaps.push((pos + got, n - got));
                    }
                }
                None => {
                    eof_at = Some(eof_at.map_or(pos, |e| e.min(pos)));
                }
            }
        }
        for (mut pos, mut n) in gaps {
            while n > 0 {
                match self
                    .call(
                        FXP_READ,
                        Buf::default()
                            .bytes(handle)
                            .u64(offset + pos as u64)
                            .u32(n as u32),
                    )?
                    .data()?
                {
                    Some(d) if !d.is_empty() => {
                        let got = d.len().min(n);
                        out[pos..pos + got].copy_from_slice(&d[..got]);
                        pos += got;
                        n -= got;
                    }
                    _ => {
                        eof_at = Some(eof_at.map_or(pos, |e| e.min(pos)));
                        break;
                    }
                }
            }
        }
        if let Some(at) = eof_at {
            return Err(SftpError::Status {
                code: FX_EOF,
                message: format!(
                    "the file ends at byte {} but {} bytes from offset {offset} were asked for",
                    offset + at as u64,
                    len
                ),
            });
        }
        Ok(out)
    }

    /// Every entry of a directory except `.` and `..`.
    pub fn read_dir(&self, path: &str) -> SResult<Vec<(String, Attrs)>> {
        let h = self.call(FXP_OPENDIR, Buf::default().str(path))?.handle()?;
        let mut out = Vec::new();
        let res = loop {
            match self
                .call(FXP_READDIR, Buf::default().bytes(&h))
                .and_then(|r| r.names())
            {
                Ok(Some(names)) => {
                    out.extend(names.into_iter().filter(|(n, _)| n != "." && n != ".."))
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let closed = self.close(&h);
        res?;
        closed?;
        Ok(out)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ssh process's stdin and stdout, which carry SFTP.
struct Pipes {
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// Starts the ssh command `argv` (never empty) with its stdin, stdout and stderr piped.
fn spawn_ssh(argv: &[String], shown: &str) -> Result<(Child, Pipes, ChildStderr), ConnectError> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ConnectError {
            kind: e.kind(),
            message: format!(
                "could not run `{shown}`: {e}\n  hint: install the OpenSSH client (`ssh`), or set the command with sftp.command"
            ),
            transient: false,
        })?;
    // All three were set to `Stdio::piped()` just above, so each is there to be taken, once.
    let stderr = child.stderr.take().expect("stderr is piped");
    let pipes = Pipes {
        stdin: BufWriter::new(child.stdin.take().expect("stdin is piped")),
        stdout: BufReader::new(child.stdout.take().expect("stdout is piped")),
    };
    Ok((child, pipes, stderr))
}

/// Starts a thread of the session named `name`.
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, ConnectError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| ConnectError {
            kind: e.kind(),
            message: format!("could not start the thread {name} of the SFTP session: {e}"),
            transient: false,
        })
}

/// How much of what ssh prints on stderr is kept for messages (its last bytes).
const STDERR_KEEP: usize = 8192;

/// Collects what ssh prints on stderr until the pipe closes, keeping the last
/// [`STDERR_KEEP`] bytes.
fn collect_stderr(mut stderr: ChildStderr, shared: Arc<Shared>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf) {
        if n == 0 {
            break;
        }
        let mut s = shared.stderr();
        s.push_str(&String::from_utf8_lossy(&buf[..n]));
        keep_tail(&mut s, STDERR_KEEP);
    }
}

/// Cuts `s` to its last `max` bytes, or a little fewer so that it starts on a character.
fn keep_tail(s: &mut String, max: usize) {
    if s.len() > max {
        let cut = s.len() - max;
        let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.drain(..cut);
    }
}

/// What the handshake thread hands back: the VERSION packet's body (or why there is none), and
/// the pipes.
type Handshake = (io::Result<Vec<u8>>, Pipes);

/// Runs the SFTP handshake in a thread of its own, so that a server that never answers (or a
/// command whose children keep the pipes open after it is killed) cannot hold us, and waits
/// for it up to `shared.timeout`. On failure ssh is ended and the error says why (`classify`,
/// `timed_out`).
fn handshake(
    shared: &Shared,
    mut pipes: Pipes,
    err_thread: JoinHandle<()>,
    shown: &str,
    target: &str,
) -> Result<(Vec<u8>, Pipes), ConnectError> {
    let (tx, rx) = std::sync::mpsc::channel::<Handshake>();
    let started = spawn("sftp-handshake", move || {
        let r = exchange_versions(&mut pipes.stdin, &mut pipes.stdout);
        let _ = tx.send((r, pipes));
    });
    if let Err(e) = started {
        shared.kill_child();
        return Err(e);
    }
    match rx.recv_timeout(shared.timeout) {
        Ok((Ok(v), pipes)) => Ok((v, pipes)),
        Ok((Err(e), _)) => {
            let status = {
                let mut c = shared.child();
                let _ = c.kill();
                c.wait().ok()
            };
            let _ = err_thread.join();
            Err(classify(shown, target, status, &shared.stderr_text(), e))
        }
        Err(_) => {
            shared.kill_child();
            std::thread::sleep(Duration::from_millis(50));
            let said = shared.stderr_text();
            Err(timed_out(shown, target, shared.timeout, &said))
        }
    }
}

/// Sends INIT (version 3) and reads the server's answer; returns the body of its VERSION.
fn exchange_versions(w: &mut impl Write, r: &mut impl Read) -> io::Result<Vec<u8>> {
    let init = Buf::default().u32(3).0;
    write_packet(w, FXP_INIT, &init)?;
    w.flush()?;
    let (typ, body) = read_packet(r)?;
    if typ != FXP_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server's first packet is type {typ}, not VERSION (is something printing on login, e.g. in .bashrc?)"),
        ));
    }
    Ok(body)
}

/// The error for a handshake that got no answer within `timeout`; `said` is what ssh printed.
fn timed_out(shown: &str, target: &str, timeout: Duration, said: &str) -> ConnectError {
    let said = if said.is_empty() {
        "it printed nothing".to_string()
    } else {
        format!("ssh said: {said}")
    };
    ConnectError {
        kind: io::ErrorKind::TimedOut,
        message: format!(
            "the SSH/SFTP session did not start within {}s: `{shown}` ({target}) got no SFTP answer and was stopped; {said}\n  hint: check that the host and port are an SSH server that answers (`ssh -v` with the same arguments shows where it stops), and that the sftp subsystem starts; a slow server may need a longer BACKUPD_SFTP_TIMEOUT or sftp_timeout",
            timeout.as_secs()
        ),
        transient: false,
    }
}

/// The server's VERSION body: what the client may use (with the default chunk sizes), and
/// whether the server offers limits@openssh.com. Refuses a protocol version below 3.
fn parse_version(body: &[u8], target: &str) -> Result<(Features, bool), ConnectError> {
    let mut r = Rd::new(body);
    let v = r.u32().unwrap_or(0);
    if v < 3 {
        return Err(ConnectError {
            kind: io::ErrorKind::Unsupported,
            message: format!(
                "{target}: the SFTP server speaks protocol version {v}; version 3 is needed"
            ),
            transient: false,
        });
    }
    let mut exts = Vec::new();
    while !r.rest().is_empty() {
        match (r.string(), r.string()) {
            (Ok(name), Ok(data)) => exts.push((name, data)),
            _ => break,
        }
    }
    let has = |n: &str, v: &str| exts.iter().any(|(a, b)| a == n && b == v);
    let features = Features {
        posix_rename: has("posix-rename@openssh.com", "1"),
        fsync: has("fsync@openssh.com", "1"),
        statvfs: has("statvfs@openssh.com", "2"),
        read_chunk: DEFAULT_CHUNK,
        write_chunk: DEFAULT_CHUNK,
    };
    Ok((features, has("limits@openssh.com", "1")))
}

/// The read and write sizes from a limits@openssh.com reply (max-packet-length,
/// max-read-length, max-write-length, max-open-handles): 0 (no limit given) is
/// [`DEFAULT_CHUNK`], more than [`MAX_CHUNK`] is cut to it; `None` for a short reply.
fn chunk_limits(body: &[u8]) -> Option<(u32, u32)> {
    let mut r = Rd::new(body);
    let (_packet, read, write) = (r.u64().ok()?, r.u64().ok()?, r.u64().ok()?);
    let pick = |v: u64| {
        if v == 0 {
            DEFAULT_CHUNK
        } else {
            v.min(MAX_CHUNK as u64) as u32
        }
    };
    Some((pick(read), pick(write)))
}

fn write_packet(w: &mut impl Write, typ: u8, payload: &[u8]) -> io::Result<()> {
    let len = (payload.len() + 1) as u32;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&[typ])?;
    w.write_all(payload)
}

fn read_packet(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_PACKET {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the server sent a packet of {len} bytes (not SFTP, or something printed on login?)"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    let typ = buf.remove(0);
    Ok((typ, buf))
}

fn reader_loop(mut stdout: BufReader<ChildStdout>, shared: Arc<Shared>) {
    let why = loop {
        match read_packet(&mut stdout) {
            Ok((typ, mut body)) => {
                let Ok(id) = Rd::new(&body).u32() else {
                    break "the server sent a reply without a request id".to_string();
                };
                body.drain(..4);
                let slot = {
                    let mut t = shared.table();
                    t.progress = Instant::now();
                    t.slots.remove(&id)
                };
                if let Some(tx) = slot {
                    let _ = tx.send(Reply { typ, body });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                break "ssh closed the connection".to_string()
            }
            Err(e) => break format!("reading from ssh failed: {e}"),
        }
    };
    // Give the stderr reader a moment to collect ssh's last words.
    std::thread::sleep(std::time::Duration::from_millis(50));
    shared.kill(why);
}

/// Ends a session that has requests outstanding and has not answered for `shared.timeout`
/// (a stalled server, a network that drops packets without closing): writers blocked on a full
/// pipe and readers waiting for replies then fail, and the backend reconnects.
fn watchdog(shared: Arc<Shared>) {
    let tick = (shared.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        std::thread::sleep(tick);
        let stalled = {
            let t = shared.table();
            if t.dead.is_some() {
                return;
            }
            !t.slots.is_empty() && t.progress.elapsed() > shared.timeout
        };
        if stalled {
            shared.kill(format!(
                "the server did not answer for {}s (the session stalled; BACKUPD_SFTP_TIMEOUT or sftp_timeout sets how long to wait)",
                shared.timeout.as_secs()
            ));
            shared.kill_child();
            return;
        }
    }
}

/// Turns a failed handshake into a message that says why: login refused, host unreachable,
/// no sftp subsystem.
fn classify(
    shown: &str,
    target: &str,
    status: Option<std::process::ExitStatus>,
    said: &str,
    e: io::Error,
) -> ConnectError {
    let exit = status
        .map(|s| match s.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".into(),
        })
        .unwrap_or_else(|| "unknown exit".into());
    let said_line = if said.is_empty() {
        format!("it printed nothing on stderr ({e})")
    } else {
        format!("ssh said: {said}")
    };
    let has = |s: &str| said.contains(s);
    let (kind, what, hint, transient) = if has("Permission denied")
        || has("Too many authentication failures")
    {
        (
            io::ErrorKind::PermissionDenied,
            "authentication failed",
            "check the user name, the key (ssh -i / IdentityFile in ~/.ssh/config) and the server's authorized_keys; `ssh USER@HOST` by hand shows the same problem",
            false,
        )
    } else if has("Host key verification failed") || has("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        (
            io::ErrorKind::PermissionDenied,
            "the server's host key is unknown or changed",
            "connect once with `ssh USER@HOST` to check and accept the host key (backupd cannot answer ssh's question)",
            false,
        )
    } else if has("Connection refused")
        || has("No route to host")
        || has("Could not resolve hostname")
        || has("Connection timed out")
        || has("Network is unreachable")
        || has("Connection closed by")
        || has("Connection reset")
    {
        (
            io::ErrorKind::ConnectionRefused,
            "the host cannot be reached",
            "check the host name and port, and that sshd runs there",
            true,
        )
    } else if has("subsystem request failed") {
        (
            io::ErrorKind::Unsupported,
            "the server has no sftp subsystem",
            "enable `Subsystem sftp` in the server's sshd_config",
            false,
        )
    } else {
        (
            io::ErrorKind::ConnectionAborted,
            "the SFTP session did not start",
            "run the ssh command by hand to see what happens",
            false,
        )
    };
    ConnectError {
        kind,
        message: format!(
            "{what}: `{shown}` ({target}) ended with {exit}; {said_line}\n  hint: {hint}"
        ),
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version_body(v: u32, exts: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Buf::default().u32(v);
        for (n, d) in exts {
            b = b.str(n).str(d);
        }
        b.0
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_bytes_on_a_character() {
        let mut s = "abcdef".to_string();
        keep_tail(&mut s, 10);
        assert_eq!(s, "abcdef");
        keep_tail(&mut s, 4);
        assert_eq!(s, "cdef");
        // "é" is two bytes: a cut inside it moves past it.
        let mut s = "aébc".to_string();
        keep_tail(&mut s, 3);
        assert_eq!(s, "bc");
    }

    #[test]
    fn the_handshake_sends_init_and_wants_version_first() {
        let mut sent = Vec::new();
        let mut reply = Vec::new();
        write_packet(&mut reply, FXP_VERSION, &version_body(3, &[])).unwrap();
        let body = exchange_versions(&mut sent, &mut io::Cursor::new(reply)).unwrap();
        assert_eq!(body, version_body(3, &[]));
        assert_eq!(sent, [0, 0, 0, 5, FXP_INIT, 0, 0, 0, 3]);

        let mut reply = Vec::new();
        write_packet(&mut reply, FXP_STATUS, &[0; 8]).unwrap();
        let e = exchange_versions(&mut Vec::new(), &mut io::Cursor::new(reply)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains(".bashrc"), "{e}");
        // Text printed on login is no SFTP packet length.
        let e = exchange_versions(
            &mut Vec::new(),
            &mut io::Cursor::new(b"Welcome!\n".to_vec()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("printed on login"), "{e}");
    }

    #[test]
    fn the_version_gives_the_features_the_server_offers() {
        let body = version_body(
            3,
            &[
                ("posix-rename@openssh.com", "1"),
                ("statvfs@openssh.com", "2"),
                ("fsync@openssh.com", "2"),
                ("limits@openssh.com", "1"),
            ],
        );
        let (f, limits) = parse_version(&body, "host").unwrap();
        assert!(f.posix_rename && f.statvfs && !f.fsync && limits);
        assert_eq!(
            (f.read_chunk, f.write_chunk),
            (DEFAULT_CHUNK, DEFAULT_CHUNK)
        );
        let (f, limits) = parse_version(&version_body(3, &[]), "host").unwrap();
        assert!(!f.posix_rename && !f.statvfs && !f.fsync && !limits);
        for old in [version_body(2, &[]), Vec::new()] {
            let e = parse_version(&old, "sftp:h:/r").unwrap_err();
            assert_eq!(e.kind, io::ErrorKind::Unsupported);
            assert!(e
                .message
                .starts_with("sftp:h:/r: the SFTP server speaks protocol version"));
        }
    }

    #[test]
    fn chunk_sizes_follow_the_servers_limits_within_bounds() {
        let limits = |rd: u64, wr: u64| Buf::default().u64(1 << 18).u64(rd).u64(wr).u64(64).0;
        assert_eq!(
            chunk_limits(&limits(64 * 1024, 1 << 30)),
            Some((64 * 1024, MAX_CHUNK))
        );
        assert_eq!(
            chunk_limits(&limits(0, 0)),
            Some((DEFAULT_CHUNK, DEFAULT_CHUNK))
        );
        assert_eq!(chunk_limits(&Buf::default().u64(1).u64(2).0), None);
    }

    #[test]
    fn a_handshake_timeout_says_what_ssh_printed() {
        let e = timed_out("ssh h -s sftp", "sftp:h:/r", Duration::from_secs(7), "");
        assert_eq!(e.kind, io::ErrorKind::TimedOut);
        assert!(!e.transient);
        assert!(e.message.starts_with(
            "the SSH/SFTP session did not start within 7s: `ssh h -s sftp` (sftp:h:/r) got no SFTP answer and was stopped; it printed nothing\n"
        ));
        let e = timed_out("ssh", "t", Duration::from_secs(1), "banner");
        assert!(e.message.contains("; ssh said: banner\n"), "{}", e.message);
    }

    #[test]
    fn short_replies_are_protocol_errors() {
        let mut r = Rd::new(&[0, 0, 1]);
        assert!(matches!(r.u32(), Err(SftpError::Protocol(_))));
        let mut r = Rd::new(&[0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u64().unwrap(), 9);
        assert!(r.u32().is_err());
    }

    #[cfg(unix)]
    #[test]
    fn a_poisoned_request_table_ends_the_session_with_an_error() {
        let child = Command::new("true").spawn().unwrap();
        let shared = Shared::new(child, DEFAULT_TIMEOUT);
        let (tx, _rx) = sync_channel(1);
        shared.table().slots.insert(1, tx);
        let sh = shared.clone();
        let _ = std::thread::spawn(move || {
            let _t = sh.table.lock().unwrap();
            panic!("poison the table");
        })
        .join();
        assert!(shared.table.is_poisoned());
        let t = shared.table();
        assert!(t.slots.is_empty());
        assert!(t.dead.as_deref().is_some_and(|d| d.contains("panicked")));
        drop(t);
        match shared.lost() {
            SftpError::Lost(why) => assert!(why.contains("SFTP session panicked"), "{why}"),
            e => panic!("{e:?}"),
        }
        shared.kill_child();
    }
}
