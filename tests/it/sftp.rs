//! The SFTP backend against a real OpenSSH server on 127.0.0.1: the backend contract, a
//! reconnect after the connection drops, a whole repository (init, backup, restore,
//! check --read-data) that restic 0.14 then reads over SFTP too, and the errors a user meets.

use crate::support::sshd::{Sshd, USER};
use backupd::cancel::{CancelToken, NoProgress};
use backupd::engine::backup::{backup, BackupOptions};
use backupd::engine::check::{check, CheckOptions, ReadData};
use backupd::engine::restore::{restore, RestoreOptions};
use backupd::repo::backend::{Backend, FileType};
use backupd::repo::sftp::SftpBackend;
use backupd::repo::Repository;
use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn connect(s: &Sshd, path: &std::path::Path) -> SftpBackend {
    SftpBackend::connect(
        Some(USER),
        "127.0.0.1",
        Some(s.port),
        path.to_str().unwrap(),
        Some(&s.command()),
    )
    .unwrap_or_else(|e| panic!("connect: {e}\nsshd log:\n{}", s.log()))
}

#[test]
fn backend_contract_and_reconnect() {
    let Some(s) = Sshd::start() else { return };
    // A nested path: create makes the parents.
    let be = connect(&s, &s.path("a/b/repo"));
    crate::support::conformance::run(&be, 3_000_000);
    assert!(s.path("a/b/repo/data/ff").is_dir());
    assert!(s.path("a/b/repo/config").is_file());
    // Nothing temporary is left behind.
    let leftovers: Vec<_> = fs::read_dir(s.path("a/b/repo/keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // The server's file system tells its size and free space (statvfs@openssh.com): the same
    // file system as the local view of that folder.
    let sp = be
        .space()
        .unwrap()
        .expect("OpenSSH offers statvfs@openssh.com");
    let local = backupd::repo::backend::LocalBackend::new(s.path("a/b/repo"))
        .space()
        .unwrap()
        .unwrap();
    assert_eq!(sp.total, local.total);
    assert!(sp.available <= sp.total && sp.available > 0, "{sp:?}");

    // The connection drops (the ssh process dies): the next operations reconnect.
    let n = "ab".repeat(32);
    be.save(FileType::Snapshot, &n, b"before").unwrap();
    be.kill_connection_for_test();
    assert_eq!(be.load(FileType::Snapshot, &n).unwrap(), b"before");
    be.kill_connection_for_test();
    be.save(FileType::Snapshot, &n, b"after").unwrap();
    be.kill_connection_for_test();
    be.remove(FileType::Snapshot, &n).unwrap();
    assert!(!be.exists(FileType::Snapshot, &n).unwrap());
    assert_eq!(
        be.list(FileType::Snapshot).unwrap().len(),
        1,
        "the one from the contract run"
    );

    // The server hangs mid-session (the ssh process is stopped): the stall watchdog ends the
    // session after its timeout and the operation goes on over a new connection.
    let stalling = SftpBackend::connect_with_timeout(
        Some(USER),
        "127.0.0.1",
        Some(s.port),
        s.path("a/b/repo").to_str().unwrap(),
        Some(&s.command()),
        Duration::from_secs(2),
    )
    .unwrap();
    let stalling = Arc::new(stalling);
    let big = vec![7u8; 3_000_000];
    let m = "cd".repeat(32);
    stalling.save(FileType::Pack, &m, &big).unwrap();
    stalling.pause_connection_for_test();
    let (st, m2) = (stalling.clone(), m.clone());
    assert!(guarded(move || st.load(FileType::Pack, &m2).unwrap()) == big);
    stalling.remove(FileType::Pack, &m).unwrap();

    // Many threads share the one connection.
    let be = Arc::new(be);
    let hs: Vec<_> = (0..8u8)
        .map(|t| {
            let be = be.clone();
            std::thread::spawn(move || {
                for i in 0..10u8 {
                    let name = format!("{:02x}", t * 16 + i).repeat(32);
                    let data = vec![t ^ i; 100_000 + i as usize];
                    be.save(FileType::Pack, &name, &data).unwrap();
                    assert!(be.load(FileType::Pack, &name).unwrap() == data);
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(be.list(FileType::Pack).unwrap().len(), 80);
}

#[test]
fn repository_round_trip_and_restic_reads_it() {
    let Some(s) = Sshd::start() else { return };
    let env = crate::support::Env::new();
    let src = env.path("src");
    crate::support::make_tree(&src, 7);
    let repo_dir = s.path("repo");
    let be: Arc<dyn Backend> = Arc::new(connect(&s, &repo_dir));
    let pw = fs::read_to_string(&env.pw).unwrap();
    let pw = pw.trim_end().as_bytes();
    let cancel = CancelToken::new();
    let snap_id = {
        let mut repo = Repository::init_with_kdf(be.clone(), pw, 1024, 8, 1).unwrap();
        let _lock = backupd::repo::lock::lock(&repo, false, Duration::ZERO).unwrap();
        let opts = BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        };
        let r = backup(&mut repo, &opts, &NoProgress, &cancel).unwrap();
        assert!(!r.is_partial(), "{:?}", r.warnings);
        // A second backup of the same data adds nothing.
        let r2 = backup(&mut repo, &opts, &NoProgress, &cancel).unwrap();
        assert_eq!(r2.summary().data_added, 0);
        r.snapshot_id
    };
    // Open again from scratch, restore, check every byte.
    let mut repo = Repository::open(be.clone(), pw).unwrap();
    let _lock = backupd::repo::lock::lock(&repo, false, Duration::ZERO).unwrap();
    repo.load_index().unwrap();
    let snaps = repo.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 2);
    let snap = &snaps.iter().find(|(id, _)| *id == snap_id).unwrap().1;
    let target = env.path("restored");
    let rep = restore(
        &repo,
        snap,
        &RestoreOptions::new(&target),
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert_eq!(rep.exit_code(), 0);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        crate::support::manifest(&src),
        crate::support::manifest(&restored)
    );
    let rep = check(
        &mut repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert!(rep.is_ok(), "check --read-data found problems: {rep:?}");
    drop(_lock);

    // restic 0.14 opens the same repository over its own SFTP client.
    let loc = format!("sftp:{USER}@127.0.0.1:{}", repo_dir.display());
    let restic = |args: &[&str]| {
        let o = Command::new("restic")
            .arg("-r")
            .arg(&loc)
            .arg("-o")
            .arg(format!("sftp.command={}", s.command()))
            .arg("--password-file")
            .arg(&env.pw)
            .arg("--no-cache")
            .args(args)
            .env_remove("RESTIC_REPOSITORY")
            .output()
            .expect("run restic");
        assert!(
            o.status.success(),
            "restic {args:?}: {}",
            crate::support::show(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    restic(&["check", "--read-data"]);
    let rtarget = env.path("restic-restored");
    restic(&[
        "restore",
        &snap_id.to_hex(),
        "--target",
        rtarget.to_str().unwrap(),
    ]);
    let rrestored = rtarget.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        crate::support::manifest(&src).get("docs/deep/er/big.bin"),
        crate::support::manifest(&rrestored).get("docs/deep/er/big.bin")
    );
    // And restic's own backup into it is read back by backupd.
    restic(&["backup", env.path("src/docs").to_str().unwrap()]);
    let repo = Repository::open(be.clone(), pw).unwrap();
    assert_eq!(repo.list_snapshots().unwrap().len(), 3);
}

/// Runs `f` in a thread; fails the test (instead of hanging it) if it has not returned in 2 min.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("it hung: no timeout ended it within 2 minutes")
}

/// A server that accepts TCP connections and never says a word, and a "sftp command" that
/// never answers: each fails after BACKUPD_SFTP_TIMEOUT with exit 15, naming the host. (No
/// root needed: no sshd.)
#[test]
fn silent_server_and_silent_command_time_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    let env = crate::support::Env::new();
    let loc = format!("sftp://backup@127.0.0.1:{port}//srv/repo");
    let ssh = format!("ssh -p {port} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR backup@127.0.0.1 -s sftp");
    for (cmd, timeout, code, wanted) in [
        (ssh.as_str(), "2s", 15, "did not start within 2s"),
        ("sleep 600", "1s", 15, "did not start within 1s"),
        (ssh.as_str(), "soon", 1, "invalid duration"),
    ] {
        let mut c = Command::new(crate::support::BACKUPCTL);
        c.args(["-r", &loc, "--password-file"])
            .arg(&env.pw)
            .arg("snapshots")
            .env_remove("BACKUPD_REPOSITORY")
            .env("BACKUPD_SFTP_COMMAND", cmd)
            .env("BACKUPD_SFTP_TIMEOUT", timeout)
            .env("BACKUPD_CACHE_DIR", env.path("cache"));
        let o = guarded(move || c.output().unwrap());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{cmd}: {}",
            crate::support::show(&o)
        );
        assert!(err.contains(wanted), "{cmd}: {err}");
        assert!(
            err.contains(&format!("127.0.0.1:{port}")),
            "names the host: {err}"
        );
    }
}

fn err_of(r: Result<SftpBackend, backupd::repo::backend::BackendError>) -> String {
    match r {
        Ok(_) => panic!("the connection must fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn clear_errors() {
    let Some(s) = Sshd::start() else { return };
    let path = s.path("repo");
    let p = path.to_str().unwrap();

    // A key the server does not know: authentication failed, ssh's words shown.
    let other = s.dir.path().join("other_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let cmd = s.command_with(&other, s.port);
    let e = err_of(SftpBackend::connect(
        Some(USER),
        "127.0.0.1",
        Some(s.port),
        p,
        Some(&cmd),
    ));
    assert!(e.contains("authentication failed"), "{e}");
    assert!(
        e.contains("Permission denied"),
        "ssh's stderr is shown: {e}"
    );

    // Nothing listens on the port: unreachable, after the bounded retries.
    let dead = crate::support::smtpd::free_port();
    let cmd = s.command_with(&s.key, dead);
    let e = err_of(SftpBackend::connect(
        Some(USER),
        "127.0.0.1",
        Some(dead),
        p,
        Some(&cmd),
    ));
    assert!(
        e.contains("cannot be reached") && e.contains("Connection refused"),
        "{e}"
    );
    assert!(
        e.contains(&format!("sftp://{USER}@127.0.0.1:{dead}/")),
        "the location is named: {e}"
    );

    // No such command.
    let e = err_of(SftpBackend::connect(
        None,
        "h",
        None,
        p,
        Some("/nonexistent/ssh -s sftp"),
    ));
    assert!(e.contains("could not run"), "{e}");

    // A directory that does not exist: no repository there.
    let be: Arc<dyn Backend> = Arc::new(connect(&s, &s.path("missing/dir")));
    match Repository::open(be.clone(), b"pw") {
        Err(backupd::Error::NoRepository { location, detail }) => {
            assert!(location.contains("missing/dir"), "{location}");
            assert_eq!(detail, "the directory does not exist");
        }
        Err(e) => panic!("expected no repository, got {e}"),
        Ok(_) => panic!("expected no repository"),
    }
    // A directory that exists but holds no repository: told apart.
    fs::create_dir(s.path("not-a-repo")).unwrap();
    let nr: Arc<dyn Backend> = Arc::new(connect(&s, &s.path("not-a-repo")));
    match Repository::open(nr, b"pw") {
        Err(backupd::Error::NoRepository { detail, .. }) => {
            assert_eq!(detail, "it has no config file")
        }
        Err(e) => panic!("expected no repository, got {e}"),
        Ok(_) => panic!("expected no repository"),
    }
    let e = be.list(FileType::Snapshot).unwrap_err();
    assert!(
        e.is_not_found() && e.to_string().contains("missing/dir/snapshots"),
        "{e}"
    );

    // A directory the login user may not write: permission denied on that path.
    let ro = s.path("readonly");
    fs::create_dir(&ro).unwrap();
    let be = connect(&s, &ro.join("repo"));
    let e = be.create().unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("permission denied"), "{msg}");
    assert!(msg.contains("readonly/repo"), "the path is named: {msg}");
    assert_eq!(e.source.kind(), std::io::ErrorKind::PermissionDenied);
}
