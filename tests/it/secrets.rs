//! Secrets stay secret: a daemon with a password file, an S3 secret (Garage), a REST password (rclone) and a webhook token runs jobs that succeed and fail; then every output is searched for each secret.

use crate::notifications::Server;
use crate::support::daemon::{wait_for, Daemon, BACKUPD};
use crate::support::remote::{Garage, Rclone};
use crate::support::{show, Env, BACKUPCTL};
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const REST_PASSWORD: &str = "restpw-Zq7xK2";
const WEBHOOK_TOKEN: &str = "whtok-8f3k2Lm9";

/// Every file below `dir`, as (path, content).
fn files_below(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            let text = String::from_utf8_lossy(&fs::read(&p).unwrap_or_default()).into_owned();
            out.push((p.display().to_string(), text));
        }
    }
    out
}

/// The configuration: three repositories (REST with a password, S3 with a secret file, a REST
/// server that is down) and a job on each; hooks, a command source and a notification command
/// write their environment and command lines to `child/`.
fn config(d: &Path, env: &Env, g: &Garage, rest: &str, down: &str, hook: &str) -> String {
    let dump = d.join("dump.sh");
    fs::write(
        &dump,
        format!(
            "env > {d}/child/$1-env-$$\nfor p in $$ $PPID; do tr '\\0' ' ' < /proc/$p/cmdline; echo; done > {d}/child/$1-cmdline-$$\n",
            d = d.display()
        ),
    )
    .unwrap();
    let sh = |what: &str| format!("sh {} {what}", dump.display());
    format!(
        r#"[daemon]
state_dir = "{d}/state"
log_dir = "{d}/logs"
socket = "{d}/backupd.sock"
metrics_file = "{d}/metrics/backupd.prom"

[daemon.notify]
events = ["start", "success", "failure"]
command = "{notify}"

[[daemon.notify.webhook]]
url = "{hook}"

[repositories.rest]
path = "{rest}"
password_file = "{pw}"

[repositories.s3]
path = "{s3}"
password_file = "{pw}"
s3_access_key_id = "{id}"
s3_secret_access_key_file = "{d}/s3-secret"
s3_region = "garage"

[repositories.down]
path = "{down}"
password_file = "{pw}"

[jobs.to-rest]
repository = "rest"
paths = ["{d}/data"]
commands = [{{ path = "/dump.txt", run = "{cmd}" }}]

[jobs.to-rest.hooks]
before = ["{before}"]
always = ["{always}"]

[jobs.to-s3]
repository = "s3"
paths = ["{d}/data"]

[jobs.to-s3.hooks]
before = ["{before_s3}"]

[jobs.broken]
repository = "down"
paths = ["{d}/data"]
retries = {{ attempts = 0 }}

[jobs.broken.hooks]
after_failure = ["{failure}"]
"#,
        d = d.display(),
        notify = sh("notify"),
        pw = env.pw.display(),
        s3 = g.location("secrets"),
        id = g.key_id,
        cmd = sh("command"),
        before = sh("before"),
        always = sh("always"),
        before_s3 = sh("before-s3"),
        failure = sh("after-failure"),
    )
}

fn ctl(cfg: &Path, args: &[&str]) -> Output {
    Command::new(BACKUPCTL)
        .args(args)
        .arg("--config")
        .arg(cfg)
        .env_remove("BACKUPD_CONFIG")
        .env_remove("BACKUPD_SOCKET")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CA_BUNDLE")
        .env("BACKUPD_CACHE_DIR", cfg.with_file_name("cache"))
        .output()
        .unwrap()
}

fn start_daemon(cfg: &Path, d: &Path) -> Daemon {
    let child = Command::new(BACKUPD)
        .arg("--config")
        .arg(cfg)
        .env("BACKUPD_CACHE_DIR", d.join("cache"))
        .env_remove("BACKUPD_CONFIG")
        .env_remove("BACKUPD_SOCKET")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(d.join("backupd.stdout")).unwrap())
        .stderr(fs::File::create(d.join("backupd.stderr")).unwrap())
        .spawn()
        .expect("start backupd");
    let daemon = Daemon {
        child,
        socket: d.join("backupd.sock"),
    };
    wait_for(Duration::from_secs(30), "the daemon's socket", || {
        std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok()
    });
    daemon
}

/// Successful and failing runs, then every log, state file, metrics file, notification body,
/// backupctl output (text and JSON, errors included) and child process's command line and
/// environment: none holds the repository password, the S3 secret, the REST password or the
/// webhook token.
#[test]
fn no_secret_appears_in_any_output_of_successful_and_failing_runs() {
    let g = Garage::start();
    let env = Env::new();
    let d = env.dir.path();
    for sub in ["data", "child", "metrics"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(d.join("data/a.txt"), "some data").unwrap();
    fs::write(d.join("s3-secret"), format!("{}\n", g.secret)).unwrap();
    let rclone = Rclone::start_with(&d.join("rest-root"), false, Some(("alice", REST_PASSWORD)));
    let rest = format!(
        "rest:http://alice:{REST_PASSWORD}@127.0.0.1:{}/r",
        rclone.port
    );
    let down = format!(
        "rest:http://alice:{REST_PASSWORD}@127.0.0.1:{}/r",
        crate::support::remote::free_port()
    );
    let server = Server::start(&[200]);
    let hook = server.url(&format!("/hook/{WEBHOOK_TOKEN}"));
    let cfg = d.join("backupd.toml");
    fs::write(&cfg, config(d, &env, &g, &rest, &down, &hook)).unwrap();

    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut run = |args: &[&str], want: Option<i32>| {
        let o = ctl(&cfg, args);
        if let Some(code) = want {
            assert_eq!(
                o.status.code(),
                Some(code),
                "backupctl {args:?}: {}",
                show(&o)
            );
        }
        outputs.push((format!("backupctl {args:?}"), show(&o)));
    };
    for name in ["rest", "s3"] {
        run(&["init", "--repo-name", name], Some(0));
    }
    let daemon = start_daemon(&cfg, d);
    run(&["run", "to-rest", "--wait"], Some(0));
    run(&["run", "to-s3", "--wait"], Some(0));
    run(&["run", "broken", "--wait"], None);
    wait_for(Duration::from_secs(20), "the notifications", || {
        server.requests().len() >= 4
    });
    for args in [
        &["status"][..],
        &["--json", "status"],
        &["jobs"],
        &["--json", "jobs"],
        &["history", "broken"],
        &["--json", "history", "broken"],
        &["--json", "history", "to-rest"],
        &["health"],
        &["--json", "health"],
        &["logs", "-n", "1000"],
        &["--json", "logs", "-n", "1000"],
        &["snapshots", "--repo-name", "rest"],
        &["--json", "snapshots", "--repo-name", "s3"],
        &["snapshots", "--repo-name", "down"],
        &["--json", "check", "--repo-name", "down"],
    ] {
        run(args, None);
    }
    daemon.term();
    // Without a daemon, status and history read the state files.
    run(&["status"], None);
    run(&["--json", "history", "broken"], None);
    let o = Command::new(BACKUPD)
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    outputs.push(("backupd check-config".into(), show(&o)));
    let o = Command::new(BACKUPCTL)
        .args(["-r", &down, "--password-file"])
        .arg(&env.pw)
        .arg("snapshots")
        .output()
        .unwrap();
    outputs.push(("backupctl -r DOWN snapshots".into(), show(&o)));

    let mut searched = outputs;
    for sub in ["state", "logs", "metrics", "child"] {
        searched.extend(files_below(&d.join(sub)));
    }
    for f in ["backupd.stderr", "backupd.stdout"] {
        searched.extend(files_below(d).into_iter().filter(|(p, _)| p.ends_with(f)));
    }
    for r in server.requests() {
        let headers: Vec<String> = r.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let body = String::from_utf8_lossy(&r.body).into_owned();
        searched.push((
            format!("webhook {} {}", r.method, r.target.len()),
            headers.join("\n") + &body,
        ));
    }
    // The search covers what it claims: the runs happened and the children wrote their dumps.
    let all: String = searched.iter().map(|(_, t)| t.as_str()).collect();
    for seen in [
        "to-rest",
        "broken",
        "alice:***@127.0.0.1",
        "BACKUPD_REPOSITORY=",
    ] {
        assert!(all.contains(seen), "the outputs should show {seen:?}");
    }
    let dumps = files_below(&d.join("child"));
    for kind in [
        "before-env",
        "before-s3-env",
        "command-env",
        "notify-env",
        "after-failure-env",
    ] {
        assert!(
            dumps.iter().any(|(p, _)| p.contains(&format!("/{kind}-"))),
            "no dump of {kind}: {:?}",
            dumps.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
    let password = fs::read_to_string(&env.pw).unwrap().trim().to_string();
    let secrets = [
        ("the repository password", password.as_str()),
        ("the S3 secret key", g.secret.as_str()),
        ("the REST password", REST_PASSWORD),
        ("the webhook token", WEBHOOK_TOKEN),
    ];
    let hits: Vec<String> = searched
        .iter()
        .flat_map(|(place, text)| {
            secrets
                .iter()
                .filter(|(_, s)| text.contains(s))
                .map(move |(what, _)| format!("{what} in {place}"))
        })
        .collect();
    assert!(hits.is_empty(), "secrets found:\n{}", hits.join("\n"));
}
