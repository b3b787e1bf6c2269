//! The control socket: one versioned JSON request per connection, answered in JSON lines; on Unix a Unix domain socket (mode 0600, or 0660 for `socket_group`) with peer credentials checked (Windows' named pipe: `pipe.rs`).

use super::core::Command;
use crate::protocol::{Envelope, ErrorKind, Request, Response, PROTOCOL_VERSION};
#[cfg(unix)]
use std::path::Path;
use std::path::PathBuf;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
#[cfg(unix)]
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("another backupd is already serving the control socket {0}\n  hint: stop it first, or give this one another `socket` (and `state_dir`) in the [daemon] table")]
    InUse(PathBuf),
    #[error("cannot {what} the control socket {path}: {source}\n  hint: check that the folder exists and is writable by this user, or set `socket` in the [daemon] table")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[cfg(unix)]
    #[error("the socket group {0:?} does not exist\n  hint: create it (groupadd {0}) or fix socket_group in the [daemon] table")]
    NoGroup(String),
}

/// Binds the socket: removes a stale socket file (one no daemon answers on), creates it with
/// mode 0600 (0660 and the group's ownership with `group`).
#[cfg(unix)]
pub async fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, SocketError> {
    let io = |what, e| SocketError::Io {
        what,
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io("create the folder of", e))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| io("remove the stale", e))?;
    }
    let gid = match group {
        None => None,
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| SocketError::NoGroup(g.to_string()))?
                .gid,
        ),
    };
    // The socket is created with the umask's mode: make it private from the first instant.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let l = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = l.map_err(|e| io("create", e))?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| io("give the group ownership of", e.into()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .map_err(|e| io("set the mode of", e))?;
    }
    Ok(l)
}

/// Accepts connections until `shutdown`; each is served on its own task.
#[cfg(unix)]
pub async fn serve(
    listener: UnixListener,
    group: Option<String>,
    commands: mpsc::Sender<Command>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let me = nix::unistd::geteuid().as_raw();
    let gid = group
        .as_deref()
        .and_then(|g| nix::unistd::Group::from_name(g).ok().flatten())
        .map(|g| g.gid.as_raw());
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            a = listener.accept() => match a {
                Ok((stream, _)) => {
                    let cred = stream.peer_cred().ok();
                    let allowed = cred.as_ref().is_some_and(|c| {
                        c.uid() == 0 || c.uid() == me || gid.is_some_and(|g| c.gid() == g || in_group(c.pid(), g))
                    });
                    if !allowed {
                        tracing::warn!("refused a control connection from uid {:?} pid {:?}: not root, not the daemon's user, not in socket_group", cred.as_ref().map(|c| c.uid()), cred.as_ref().and_then(|c| c.pid()));
                        continue;
                    }
                    let commands = commands.clone();
                    let uid = cred.map(|c| c.uid());
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, commands).await {
                            tracing::debug!("control connection from uid {uid:?} ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::error!("accepting a control connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// True when the process `pid` has `gid` among its supplementary groups (Linux: /proc).
#[cfg(unix)]
fn in_group(pid: Option<i32>, gid: u32) -> bool {
    let Some(pid) = pid else { return false };
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x == gid.to_string()))
}

/// Serves one connection: reads its request line, answers it.
pub(super) async fn connection<S>(stream: S, commands: mpsc::Sender<Command>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite,
{
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r.take(MAX_REQUEST as u64));
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let reply = |resp: &Response| {
        let mut s = serde_json::to_string(resp).expect("response serializes");
        s.push('\n');
        s
    };
    let env = match parse(&line) {
        Ok(e) => e,
        Err(resp) => {
            w.write_all(reply(&resp).as_bytes()).await?;
            return Ok(());
        }
    };
    tracing::debug!(client = %env.client, "control request {:?}", env.request);
    let gone = || Response::Error {
        kind: ErrorKind::ShuttingDown,
        message: "backupd is shutting down".into(),
    };
    match env.request {
        Request::Status => {
            let (tx, rx) = oneshot::channel();
            let resp = match commands.send(Command::Status(tx)).await {
                Ok(()) => rx
                    .await
                    .map(|s| Response::Status(Box::new(s)))
                    .unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            };
            w.write_all(reply(&resp).as_bytes()).await?;
        }
        Request::Run { job, wait } => {
            let (tx, rx) = oneshot::channel();
            if commands
                .send(Command::Run { job, reply: tx })
                .await
                .is_err()
            {
                w.write_all(reply(&gone()).as_bytes()).await?;
                return Ok(());
            }
            match rx.await {
                Err(_) => w.write_all(reply(&gone()).as_bytes()).await?,
                Ok(Err(resp)) => w.write_all(reply(&resp).as_bytes()).await?,
                Ok(Ok((accepted, mut events))) => {
                    w.write_all(reply(&accepted).as_bytes()).await?;
                    if wait {
                        loop {
                            match events.recv().await {
                                Ok(ev) => {
                                    let last = matches!(ev, Response::Finished(_));
                                    w.write_all(reply(&ev).as_bytes()).await?;
                                    if last {
                                        break;
                                    }
                                }
                                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                                Err(broadcast::error::RecvError::Closed) => {
                                    w.write_all(reply(&gone()).as_bytes()).await?;
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        }
        Request::Cancel { job } => {
            let (tx, rx) = oneshot::channel();
            let resp = match commands.send(Command::Cancel { job, reply: tx }).await {
                Ok(()) => rx.await.unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            };
            w.write_all(reply(&resp).as_bytes()).await?;
        }
        Request::Reload => {
            let (tx, rx) = oneshot::channel();
            let resp = match commands.send(Command::Reload(Some(tx))).await {
                Ok(()) => rx.await.unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            };
            w.write_all(reply(&resp).as_bytes()).await?;
        }
        Request::History { job, limit } => {
            let (tx, rx) = oneshot::channel();
            let resp = match commands
                .send(Command::History {
                    job,
                    limit,
                    reply: tx,
                })
                .await
            {
                Ok(()) => rx.await.unwrap_or_else(|_| gone()),
                Err(_) => gone(),
            };
            w.write_all(reply(&resp).as_bytes()).await?;
        }
    }
    w.shutdown().await
}

/// Reads a request line: the protocol version first (so a newer client's unknown request is
/// reported as a version mismatch, not as garbage), then the request.
fn parse(line: &str) -> Result<Envelope, Response> {
    let v: serde_json::Value = serde_json::from_str(line.trim()).map_err(|e| Response::Error {
        kind: ErrorKind::BadRequest,
        message: format!("the request is not JSON: {e}"),
    })?;
    let proto = v.get("protocol").and_then(|p| p.as_u64());
    if proto != Some(PROTOCOL_VERSION as u64) {
        return Err(Response::Error {
            kind: ErrorKind::Version,
            message: format!(
                "protocol mismatch: the client speaks protocol {}, backupd {} speaks protocol {PROTOCOL_VERSION}\n  hint: use the backupctl that came with this backupd (or restart backupd after an upgrade)",
                proto.map(|p| p.to_string()).unwrap_or_else(|| "(none)".into()),
                env!("CARGO_PKG_VERSION")
            ),
        });
    }
    serde_json::from_value(v).map_err(|e| Response::Error {
        kind: ErrorKind::BadRequest,
        message: format!("the request could not be read: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_mismatch_names_both_versions() {
        let e = parse(r#"{"protocol": 99, "client": "x", "request": {"type": "frobnicate"}}"#)
            .unwrap_err();
        match e {
            Response::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::Version);
                assert!(
                    message.contains("protocol 99") && message.contains("protocol 1"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let ok = parse(r#"{"protocol": 1, "client": "x", "request": {"type": "status"}}"#).unwrap();
        assert_eq!(ok.request, Request::Status);
        assert!(matches!(
            parse("not json"),
            Err(Response::Error {
                kind: ErrorKind::BadRequest,
                ..
            })
        ));
    }
}
