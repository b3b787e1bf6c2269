//! The daemon's control channel as `backupctl` uses it: where the daemon is, one request per connection and its answers, and the one-line form of a run that several commands print.

use super::util::human_bytes;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::paths::DaemonPaths;
use crate::protocol::{Envelope, Request, Response};
use crate::record::RunRecord;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

/// Where the daemon is: its configuration file (the global --config), or its socket directly
/// (--socket). Made by [`Ctx::daemon`](super::Ctx::daemon).
#[derive(Debug, Clone)]
pub(crate) struct Where {
    /// The daemon's configuration file (its `[daemon]` table names the socket, state and logs).
    pub config: Option<PathBuf>,
    /// The daemon's control socket (overrides the configuration's).
    pub socket: Option<PathBuf>,
}

impl Where {
    pub(super) fn config(&self) -> Result<Config> {
        let p = self
            .config
            .clone()
            .unwrap_or_else(crate::paths::default_config);
        Config::load(&p)
    }

    /// The daemon's socket: --socket, else the configuration's. A configuration the daemon
    /// would reject still names it; one given with --config that cannot be read or parsed at
    /// all is an error (not the default socket: the daemon named there may not be this one).
    fn socket(&self) -> Result<PathBuf> {
        if let Some(s) = &self.socket {
            return Ok(s.clone());
        }
        let strict = match self.config() {
            Ok(c) => return Ok(c.paths().socket),
            Err(e) => e,
        };
        // Being edited, say: read just the [daemon] table, so `status` can show the daemon's view.
        match (self.lenient_socket(), &self.config) {
            (Some(sock), _) => Ok(sock.unwrap_or_else(crate::paths::default_socket)),
            (None, None) => Ok(crate::paths::default_socket()),
            (None, Some(file)) => Err(Error::Input(format!(
                "the configuration file {} cannot be read, so backupctl does not know the daemon's socket: {strict}\n  hint: fix the file (`backupctl check-config --config {}`), or name the socket with --socket",
                file.display(),
                file.display()
            ))),
        }
    }

    /// The socket the `[daemon]` table names (Some(None): the table names none, the default);
    /// None when the file cannot be read or is not TOML.
    fn lenient_socket(&self) -> Option<Option<PathBuf>> {
        let p = self
            .config
            .clone()
            .unwrap_or_else(crate::paths::default_config);
        let v: toml::Table = std::fs::read_to_string(p).ok()?.parse().ok()?;
        let Some(d) = v.get("daemon").and_then(|d| d.as_table()) else {
            return Some(None);
        };
        if let Some(s) = d.get("socket").and_then(|s| s.as_str()) {
            return Some(Some(PathBuf::from(s)));
        }
        let state = d.get("state_dir").and_then(|s| s.as_str());
        Some(state.map(|s| PathBuf::from(s).join("backupd.sock")))
    }

    /// Paths from the configuration (for working without the daemon).
    pub(super) fn paths(&self) -> Result<DaemonPaths> {
        Ok(self.config()?.paths())
    }
}

/// The daemon's control channel: a Unix socket, or on Windows a named pipe (opened as a file).
#[cfg(unix)]
type Stream = std::os::unix::net::UnixStream;
#[cfg(windows)]
type Stream = std::fs::File;

/// Opens the control channel: the socket `sock`; on Windows the pipe it stands for
/// (`paths::pipe_name`), waiting a little while all its instances are busy.
fn open_stream(sock: &std::path::Path) -> std::io::Result<Stream> {
    #[cfg(unix)]
    {
        Stream::connect(sock)
    }
    #[cfg(windows)]
    {
        let name = crate::paths::pipe_name(sock);
        let mut tries = 0;
        loop {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&name)
            {
                Ok(f) => return Ok(f),
                // ERROR_PIPE_BUSY: every instance is serving a client; the daemon makes another.
                Err(e) if e.raw_os_error() == Some(231) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A connection to the daemon carrying one request.
pub(super) struct Conn {
    lines: std::io::Lines<BufReader<Stream>>,
}

/// Sends one request to the daemon `at` names; [`Error::NoDaemon`] when it cannot be reached.
pub(super) fn connect(at: &Where, req: Request) -> Result<Conn> {
    let sock = at.socket()?;
    #[cfg(unix)]
    let shown = sock.display().to_string();
    #[cfg(windows)]
    let shown = crate::paths::pipe_name(&sock);
    let no = |detail: String| Error::NoDaemon {
        socket: shown.clone(),
        detail,
    };
    let mut s = open_stream(&sock).map_err(|e| no(e.to_string()))?;
    let mut line = serde_json::to_string(&Envelope::new(req)).expect("request serializes");
    line.push('\n');
    s.write_all(line.as_bytes())
        .map_err(|e| no(e.to_string()))?;
    Ok(Conn {
        lines: BufReader::new(s).lines(),
    })
}

impl Conn {
    /// The next response; None at the end of the stream.
    pub(super) fn next(&mut self) -> Result<Option<Response>> {
        match self.lines.next() {
            None => Ok(None),
            Some(Err(e)) => Err(Error::Io {
                what: "read backupd's answer".into(),
                source: e,
            }),
            Some(Ok(l)) => serde_json::from_str(&l).map(Some).map_err(|e| {
                Error::Input(format!(
                    "backupd's answer could not be read ({e}): {l}\n  hint: backupctl and backupd are probably of different versions; use the ones that came together"
                ))
            }),
        }
    }

    pub(super) fn one(mut self) -> Result<Response> {
        self.next()?.ok_or_else(|| {
            Error::Input(
                "backupd closed the connection without an answer\n  hint: see `backupctl logs`"
                    .into(),
            )
        })
    }
}

/// A daemon error response as the library's error.
pub(super) fn daemon_error(resp: Response) -> Error {
    match resp {
        Response::Error { message, .. } => Error::Input(message),
        other => Error::Input(format!("unexpected answer from backupd: {other:?}")),
    }
}

/// One line for a run: `2026-12-01 02:30:04 +01:00  success  12.3 s  scheduled 2026-12-01
/// 02:30 Europe/Berlin  snapshot 1a2b3c4d ...` (its start in the local zone; the reason's slot
/// in the job's).
pub(super) fn describe_run(r: &RunRecord) -> String {
    let mut s = format!(
        "{}  {:<11} {:>7.1} s  {}",
        super::show::time(&r.start),
        r.outcome,
        r.duration_seconds,
        r.reason
    );
    if let Some(id) = &r.snapshot_id {
        s.push_str(&format!("  snapshot {}", &id[..8.min(id.len())]));
    }
    match (r.copied, r.data_added) {
        (Some(n), b) => s.push_str(&format!(
            "  copied {n} snapshot(s), {}",
            human_bytes(b.unwrap_or(0))
        )),
        (None, Some(b)) => s.push_str(&format!("  added {}", human_bytes(b))),
        (None, None) => {}
    }
    if r.warnings > 0 {
        s.push_str(&format!("  {} warning(s)", r.warnings));
    }
    s
}
