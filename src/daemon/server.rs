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
    #[error("{0} is not a socket (a regular file, folder or link is there), so backupd leaves it alone\n  hint: move that file away if it is not needed, or set `socket` in the [daemon] table to another path")]
    NotASocket(PathBuf),
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
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        // Only a socket may be taken over, and only one no process answers on: anything else
        // at that path is somebody's file.
        if !meta.file_type().is_socket() {
            return Err(SocketError::NotASocket(path.to_path_buf()));
        }
        if UnixStream::connect(path).await.is_ok() {
            return Err(SocketError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| io("remove the stale", e))?;
    }
    let gid = match group {
        None => None,
        Some(g) => Some(nix::unistd::Gid::from_raw(
            crate::sysinfo::group_id(g).ok_or_else(|| SocketError::NoGroup(g.to_string()))?,
        )),
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
    let gid = group.as_deref().and_then(crate::sysinfo::group_id);
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
    let env = match parse(&line) {
        Ok(e) => e,
        Err(resp) => return write(&mut w, &resp).await,
    };
    tracing::debug!(client = %env.client, "control request {:?}", env.request);
    let resp = match env.request {
        Request::Status => ask(&commands, Command::Status)
            .await
            .map(|s| Response::Status(Box::new(s))),
        Request::Run { job, wait, retry } => {
            let (tx, rx) = oneshot::channel();
            if commands
                .send(Command::Run {
                    job,
                    retry,
                    reply: tx,
                })
                .await
                .is_err()
            {
                return write(&mut w, &gone()).await;
            }
            match rx.await {
                Err(_) => None,
                Ok(Err(resp)) => Some(resp),
                Ok(Ok((accepted, events))) => {
                    write(&mut w, &accepted).await?;
                    if wait {
                        stream_events(&mut w, events).await?;
                    }
                    return w.shutdown().await;
                }
            }
        }
        Request::Cancel { job } => ask(&commands, |reply| Command::Cancel { job, reply }).await,
        Request::Reload => ask(&commands, |reply| Command::Reload(Some(reply))).await,
        Request::History { job, limit } => {
            ask(&commands, |reply| Command::History { job, limit, reply }).await
        }
    };
    write(&mut w, &resp.unwrap_or_else(gone)).await?;
    w.shutdown().await
}

/// Hands the event loop a command carrying `reply` and waits for the answer; None when the
/// loop is gone (backupd is shutting down).
async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    commands.send(command(tx)).await.ok()?;
    rx.await.ok()
}

/// `run --wait`: the run's events, up to and including its `Finished` (a client too slow to
/// keep up misses some progress events, never the end).
async fn stream_events<W: AsyncWrite + Unpin>(
    w: &mut W,
    mut events: broadcast::Receiver<Response>,
) -> std::io::Result<()> {
    loop {
        match events.recv().await {
            Ok(ev) => {
                write(w, &ev).await?;
                if matches!(ev, Response::Finished(_)) {
                    return Ok(());
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return write(w, &gone()).await,
        }
    }
}

/// Writes one response as a JSON line.
async fn write<W: AsyncWrite + Unpin>(w: &mut W, resp: &Response) -> std::io::Result<()> {
    // A response is plain data (strings, numbers, lists, string-keyed maps): serializing it
    // cannot fail.
    let mut s = serde_json::to_string(resp).expect("response serializes");
    s.push('\n');
    w.write_all(s.as_bytes()).await
}

/// The answer when the event loop is gone.
fn gone() -> Response {
    Response::Error {
        kind: ErrorKind::ShuttingDown,
        message: "backupd is shutting down".into(),
    }
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
    use crate::record::RunRecord;
    use serde_json::Value;

    /// Sends `request` (a raw line) over an in-memory connection whose event loop hands its one
    /// command to `answer` (None: the loop is gone); the response lines.
    async fn exchange_line(
        line: String,
        answer: Option<Box<dyn FnOnce(Command) + Send>>,
    ) -> Vec<Value> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::channel(1);
        let served = tokio::spawn(connection(server, tx));
        match answer {
            Some(f) => {
                tokio::spawn(async move {
                    if let Some(c) = rx.recv().await {
                        f(c)
                    }
                });
            }
            None => drop(rx),
        }
        let (r, mut w) = tokio::io::split(client);
        w.write_all(line.as_bytes()).await.unwrap();
        let mut lines = BufReader::new(r).lines();
        let mut out = Vec::new();
        while let Some(l) = lines.next_line().await.unwrap() {
            out.push(serde_json::from_str(&l).unwrap());
        }
        served.await.unwrap().unwrap();
        out
    }

    async fn exchange(
        request: Request,
        answer: Option<Box<dyn FnOnce(Command) + Send>>,
    ) -> Vec<Value> {
        let line = serde_json::to_string(&Envelope::new(request)).unwrap() + "\n";
        exchange_line(line, answer).await
    }

    fn kind(v: &Value) -> Value {
        v["kind"].clone()
    }

    fn json<T: serde::Serialize>(x: T) -> Value {
        serde_json::to_value(x).unwrap()
    }

    #[tokio::test]
    async fn only_a_stale_socket_is_replaced_never_a_file_a_folder_or_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("backupd.sock");
        // A user's file at the socket path stays, byte for byte.
        std::fs::write(&sock, "important user data").unwrap();
        let e = bind(&sock, None).await.err().unwrap();
        assert!(matches!(e, SocketError::NotASocket(_)), "{e}");
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&sock).unwrap(),
            "important user data"
        );
        std::fs::remove_file(&sock).unwrap();
        // A folder, and a link to a socket, are left alone too.
        std::fs::create_dir(&sock).unwrap();
        assert!(matches!(
            bind(&sock, None).await,
            Err(SocketError::NotASocket(_))
        ));
        std::fs::remove_dir(&sock).unwrap();
        let real = dir.path().join("real.sock");
        drop(bind(&real, None).await.unwrap());
        std::os::unix::fs::symlink(&real, &sock).unwrap();
        assert!(matches!(
            bind(&sock, None).await,
            Err(SocketError::NotASocket(_))
        ));
        assert!(real.exists());
        std::fs::remove_file(&sock).unwrap();
        // A socket nobody answers on is stale: replaced. One that answers is in use.
        drop(bind(&sock, None).await.unwrap());
        let live = bind(&sock, None).await.unwrap();
        assert!(matches!(
            bind(&sock, None).await,
            Err(SocketError::InUse(_))
        ));
        drop(live);
    }

    #[tokio::test]
    async fn a_request_that_is_not_json_is_answered_bad_request() {
        let out = exchange_line("not json\n".into(), None).await;
        assert_eq!(out.len(), 1);
        assert_eq!(kind(&out[0]), json(ErrorKind::BadRequest));
    }

    #[tokio::test]
    async fn a_gone_event_loop_answers_shutting_down() {
        for request in [
            Request::Status,
            Request::Reload,
            Request::Run {
                job: "app".into(),
                wait: true,
                retry: false,
            },
        ] {
            let out = exchange(request, None).await;
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!(kind(&out[0]), json(ErrorKind::ShuttingDown));
        }
    }

    #[tokio::test]
    async fn history_is_the_event_loops_answer() {
        let answer = Box::new(|c: Command| match c {
            Command::History { job, limit, reply } => {
                assert_eq!((job.as_str(), limit), ("app", 5));
                let _ = reply.send(Response::History { job, runs: vec![] });
            }
            _ => panic!("not a history command"),
        });
        let req = Request::History {
            job: "app".into(),
            limit: 5,
        };
        let out = exchange(req, Some(answer)).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["type"], "history");
        assert_eq!(out[0]["job"], "app");
    }

    #[tokio::test]
    async fn a_loop_that_drops_the_reply_answers_shutting_down() {
        let out = exchange(Request::Cancel { job: "app".into() }, Some(Box::new(drop))).await;
        assert_eq!(out.len(), 1);
        assert_eq!(kind(&out[0]), json(ErrorKind::ShuttingDown));
    }

    /// An event loop that accepts the run, then sends `events` (the sender is dropped after).
    fn accept_with(events: Vec<Response>) -> Box<dyn FnOnce(Command) + Send> {
        Box::new(move |c| {
            let Command::Run { job, reply, .. } = c else {
                panic!("not a run command")
            };
            let (tx, rx) = broadcast::channel(16);
            let accepted = Response::Accepted {
                job,
                run_id: "app-1".into(),
            };
            let _ = reply.send(Ok((accepted, rx)));
            for ev in events {
                let _ = tx.send(ev);
            }
        })
    }

    fn event(message: &str) -> Response {
        Response::Event {
            job: "app".into(),
            run_id: "app-1".into(),
            message: message.into(),
        }
    }

    fn run(wait: bool) -> Request {
        Request::Run {
            job: "app".into(),
            wait,
            retry: false,
        }
    }

    #[tokio::test]
    async fn run_wait_streams_the_events_up_to_finished() {
        let rec = RunRecord::new(
            "app-1",
            "app",
            "manual".into(),
            chrono::Utc::now(),
            crate::record::Outcome::Success,
            0,
        );
        let events = vec![
            event("backup..."),
            Response::Finished(Box::new(rec)),
            event("after the end"),
        ];
        let out = exchange(run(true), Some(accept_with(events))).await;
        let types: Vec<&str> = out.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["accepted", "event", "finished"], "{out:?}");
    }

    #[tokio::test]
    async fn run_wait_whose_events_end_without_finished_ends_with_shutting_down() {
        let out = exchange(run(true), Some(accept_with(vec![event("backup...")]))).await;
        assert_eq!(out.len(), 3, "{out:?}");
        assert_eq!(out[1]["type"], "event");
        assert_eq!(kind(&out[2]), json(ErrorKind::ShuttingDown));
    }

    #[tokio::test]
    async fn run_without_wait_answers_the_acceptance_only() {
        let out = exchange(run(false), Some(accept_with(vec![event("backup...")]))).await;
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0]["type"], "accepted");
        assert_eq!(out[0]["run_id"], "app-1");
    }

    #[tokio::test]
    async fn a_refused_run_is_answered_with_the_refusal() {
        let refuse = Box::new(|c: Command| {
            let Command::Run { reply, .. } = c else {
                panic!("not a run command")
            };
            let _ = reply.send(Err(Response::Error {
                kind: ErrorKind::Busy,
                message: "busy".into(),
            }));
        });
        let out = exchange(run(true), Some(refuse)).await;
        assert_eq!(out.len(), 1);
        assert_eq!(kind(&out[0]), json(ErrorKind::Busy));
    }

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
