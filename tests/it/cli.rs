//! The command line itself: `--config` as a global option, repository commands on the configuration's repositories, each command's help, waiting for a lock, and what `check-config` says of missing files.

use crate::support::daemon::{Setup, BACKUPD};
use crate::support::*;
use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `backupctl ARGS` with nothing from the environment: no -r, no password, no config.
fn bare(args: &[&str]) -> Command {
    let mut c = Command::new(BACKUPCTL);
    c.args(args);
    for v in [
        "BACKUPD_CONFIG",
        "BACKUPD_SOCKET",
        "BACKUPD_REPOSITORY",
        "BACKUPD_PASSWORD_FILE",
        "BACKUPD_PASSWORD_COMMAND",
        "BACKUPD_PASSWORD",
    ] {
        c.env_remove(v);
    }
    c
}

fn out(c: &mut Command) -> Output {
    c.output().expect("run backupctl")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_is_global_and_daemon_commands_read_it_before_the_subcommand() {
    let s = Setup::new("[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\n");
    let cfg = s.cfg.to_str().unwrap();
    // No daemon runs: the error names the configuration's socket, not the default one.
    for args in [
        &["--config", cfg, "jobs"][..],
        &["run", "app", "-c", cfg][..],
    ] {
        let o = out(&mut bare(args));
        assert_eq!(o.status.code(), Some(13), "{args:?}: {}", show(&o));
        assert!(
            stderr(&o).contains(&s.socket().display().to_string()),
            "{args:?}: {}",
            show(&o)
        );
    }
    // status answers from the configuration's state folder without a daemon.
    let o = out(&mut bare(&["--config", cfg, "status"]));
    assert!(!show(&o).contains("/run/backupd"), "{}", show(&o));
    assert!(stdout(&o).contains("app"), "{}", show(&o));
    // BACKUPD_CONFIG is the same option.
    let o = out(bare(&["jobs"]).env("BACKUPD_CONFIG", cfg));
    assert!(
        stderr(&o).contains(&s.socket().display().to_string()),
        "{}",
        show(&o)
    );
    // run-job takes it too, before or after the subcommand.
    let o = out(&mut bare(&["--config", cfg, "run-job", "app"]));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn repository_commands_open_the_configurations_repository_as_the_daemon_does() {
    let s = Setup::new("");
    let cfg = s.cfg.to_str().unwrap();
    let data = s.data.to_str().unwrap();
    // One repository: --config alone opens it, with its password file.
    let o = out(&mut bare(&["--config", cfg, "backup", data]));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = out(&mut bare(&["--config", cfg, "--json", "snapshots"]));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#}");
    // The same repository, read by restic: it is the configuration's.
    assert_eq!(
        s.env
            .restic_ok(&["snapshots", "--json"])
            .matches("\"id\"")
            .count(),
        1
    );

    // Two repositories: the command says to pick one; following the hint works.
    let other = s.env.path("other");
    let two = format!(
        "{}\n[repositories.other]\npath = \"{}\"\npassword_file = \"{}\"\n",
        s.config_text(""),
        other.display(),
        s.env.pw.display()
    );
    fs::write(&s.cfg, two).unwrap();
    let o = out(&mut bare(&["--config", cfg, "snapshots"]));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("has 2 repositories (main, other)")
            && stderr(&o).contains("pick one with --repo-name NAME"),
        "{}",
        show(&o)
    );
    let o = out(&mut bare(&[
        "--config",
        cfg,
        "--repo-name",
        "main",
        "ls",
        "latest",
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("a.txt"), "{}", show(&o));
    let o = out(bare(&["snapshots", "--repo-name", "nope"]).env("BACKUPD_CONFIG", cfg));
    assert!(
        stderr(&o).contains("no repository \"nope\"")
            && stderr(&o).contains("(repositories: main, other)"),
        "{}",
        show(&o)
    );
    // -r still wins over the configuration.
    let o = s.env.ctl(&["--config", cfg, "snapshots"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}

#[test]
fn each_commands_help_lists_the_options_that_apply_to_it() {
    let help = |args: &[&str]| {
        let o = out(&mut bare(args));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", show(&o));
        stdout(&o)
    };
    for args in [
        &["service", "install", "--help"][..],
        &["schedule", "status", "--help"][..],
        &["status", "--help"][..],
        &["logs", "--help"][..],
        &["run-job", "--help"][..],
    ] {
        let h = help(args);
        for not in [
            "--repo ",
            "--password-file",
            "--compression",
            "--lock-wait",
            "--cacert",
        ] {
            assert!(!h.contains(not), "{args:?} lists {not}:\n{h}");
        }
        assert!(h.contains("--config"), "{args:?}:\n{h}");
    }
    let h = help(&["snapshots", "--help"]);
    for yes in [
        "--repo ",
        "--password-file",
        "--lock-wait",
        "--repo-name",
        "--config",
    ] {
        assert!(h.contains(yes), "snapshots --help lacks {yes}:\n{h}");
    }
    assert!(!h.contains("--socket"), "{h}");
    for kind in ["s3:", "rest:", "sftp:", "gdrive:"] {
        assert!(h.contains(kind), "-r's help lacks {kind}:\n{h}");
    }
    // A hidden option is still accepted where it is meaningless, as before.
    assert_eq!(
        out(&mut bare(&[
            "service",
            "status",
            "--compression",
            "off",
            "--help"
        ]))
        .status
        .code(),
        Some(0)
    );
}

/// Waits until the repository has a lock file.
fn wait_for_lock(repo: &std::path::Path) {
    daemon::wait_for(Duration::from_secs(30), "a lock in the repository", || {
        fs::read_dir(repo.join("locks"))
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
}

/// A backup whose command source sleeps `secs` seconds, holding a shared lock meanwhile; returns
/// once its lock is in the repository.
fn slow_backup(env: &Env, secs: u32) -> std::process::Child {
    let backup = env
        .ctl_cmd(&[
            "backup",
            "--command",
            &format!("/slow.txt=sleep {secs}; echo done"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_lock(&env.repo);
    backup
}

#[test]
fn a_locked_repository_is_waited_for_by_default_and_the_wait_is_said_once() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let mut backup = slow_backup(&env, 4);
    // prune needs an exclusive lock: with no --lock-wait it waits (stderr is a file here, not a
    // terminal), says so once, and succeeds when the backup is done.
    let o = env.ctl(&["prune"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(backup.wait().unwrap().success());
    let err = stderr(&o);
    assert_eq!(err.matches("is locked").count(), 1, "{err}");
    assert!(
        err.contains("a shared lock held by PID") && err.contains("waiting up to 5m"),
        "{err}"
    );
    let snaps = env.ctl_json(&["snapshots"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps:#}");

    // --lock-wait 0s fails at once, naming the holder (exit 11).
    let mut backup = slow_backup(&env, 4);
    let o = env.ctl(&["prune", "--lock-wait", "0s"]);
    assert_eq!(o.status.code(), Some(11), "{}", show(&o));
    assert!(
        stderr(&o).contains("a shared lock held by PID"),
        "{}",
        show(&o)
    );
    assert!(backup.wait().unwrap().success());
}

#[test]
fn a_wait_for_a_lock_ends_at_ctrl_c() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let mut backup = slow_backup(&env, 20);
    let prune = env
        .ctl_cmd(&["prune"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Time to open the repository and find the lock (a signal before the wait ends it too).
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(prune.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = prune.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", show(&o));
    assert!(stderr(&o).contains("waiting up to 5m"), "{}", show(&o));
    let _ = backup.kill();
    let _ = backup.wait();
}

#[test]
fn check_config_names_missing_password_files_and_sources_and_its_hint_works() {
    let s = Setup::new("[jobs.app]\nrepository = \"main\"\npaths = [\"{data}/not-yet\"]\n");
    let check = || {
        Command::new(BACKUPD)
            .args(["check-config", "--config"])
            .arg(&s.cfg)
            .output()
            .unwrap()
    };
    // A source that is not there yet is a warning; the configuration is still valid.
    let o = check();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        stderr(&o).contains("warning: [jobs.app] source")
            && stderr(&o).contains("not-yet does not exist"),
        "{}",
        show(&o)
    );
    // A password file that is not there is an error.
    let pw = s.env.pw.clone();
    fs::rename(&pw, s.env.path("pw.away")).unwrap();
    let o = check();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains(&format!(
            "error: [repositories.main] password_file {} does not exist",
            pw.display()
        )),
        "{}",
        show(&o)
    );
    fs::rename(s.env.path("pw.away"), &pw).unwrap();
    // A repository folder with no repository yet: the hint creates it.
    fs::remove_dir_all(&s.env.repo).unwrap();
    let o = check();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = stderr(&o);
    let hint = err
        .lines()
        .find_map(|l| {
            l.split_once("create it with `")
                .map(|(_, h)| h.trim_end_matches('`'))
        })
        .unwrap_or_else(|| panic!("no hint: {err}"));
    let words: Vec<&str> = hint.split_whitespace().collect();
    assert_eq!(words[0], "backupctl", "{hint}");
    let o = out(&mut bare(&words[1..]));
    assert_eq!(o.status.code(), Some(0), "{hint}: {}", show(&o));
    s.env.restic_ok(&["snapshots"]);
    assert!(!stderr(&check()).contains("no repository there"));
}

#[test]
fn a_daemon_command_with_a_config_file_that_does_not_parse_says_so_not_that_backupd_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("broken.toml");
    fs::write(&cfg, "[daemon\nsocket = \"/x.sock\"\n").unwrap();
    let missing = dir.path().join("missing.toml");
    for file in [&cfg, &missing] {
        for cmd in ["reload", "jobs"] {
            let o = bare(&[cmd, "--config", file.to_str().unwrap()])
                .output()
                .unwrap();
            let out = show(&o);
            assert_eq!(o.status.code(), Some(1), "{cmd} {file:?}: {out}");
            assert!(
                out.contains(&format!("configuration file {}", file.display()))
                    && !out.contains("backupd is not running"),
                "{cmd} {file:?}: {out}"
            );
        }
    }
}
