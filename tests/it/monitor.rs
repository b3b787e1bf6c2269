//! Integration tests of monitoring with a real daemon: health (`backupctl health` exit codes), the Prometheus metrics file, and notifications.

use crate::support::daemon::*;
use crate::support::*;
use serde_json::Value;
use std::fs;
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted at `dir` (root only), unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "mount: {}", show(&o));
        Tmpfs(dir.to_path_buf())
    }
    /// A tmpfs at `s.env.path(name)` with a new repository in it (`name/repo`).
    fn with_repository(s: &Setup, name: &str) -> (Tmpfs, std::path::PathBuf) {
        let t = Tmpfs::mount(&s.env.path(name));
        let repo = s.env.path(&format!("{name}/repo"));
        let o = Command::new(BACKUPCTL)
            .args(["-q", "-r"])
            .arg(&repo)
            .arg("--password-file")
            .arg(&s.env.pw)
            .arg("init")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", show(&o));
        (t, repo)
    }
    fn remount(&self, mode: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {mode}: {}", show(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// The value of the sample `name{...job="JOB"...}` in a metrics file.
fn sample(metrics: &str, name: &str, job: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        (series.starts_with(&format!("{name}{{")) && series.contains(&format!("job=\"{job}\"")))
            .then(|| value.parse().unwrap())
    })
}

#[test]
fn an_unwritable_repository_turns_the_job_to_error_and_the_fix_back_to_healthy() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a read-only tmpfs needs root (CI runs as root)");
        return;
    }
    let s = Setup::new("");
    let (ro, repo) = Tmpfs::with_repository(&s, "ro");
    ro.remount("ro");
    let metrics = s.env.path("metrics/backupd.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let cfg = s.config_text(&format!(
        "[repositories.ro]\npath = \"{}\"\npassword_file = \"{}\"\n\n[jobs.bad]\nrepository = \"ro\"\npaths = [\"{{data}}\"]\nretries = {{ attempts = 1, delay = \"3s\" }}\nhealth = {{ failures_error = 2 }}\n\n[jobs.good]\nrepository = \"main\"\npaths = [\"{{data}}\"]\n",
        repo.display(),
        s.env.pw.display()
    ))
    .replace("[daemon]\n", &format!("[daemon]\nmetrics_file = \"{}\"\n", metrics.display()));
    fs::write(&s.cfg, cfg).unwrap();
    let d = s.start(None);
    assert_eq!(s.ctl(&["run", "good", "--wait"]).status.code(), Some(0));
    // A manual run is retried only when asked (`--retry`).
    let o = s.ctl(&["run", "bad", "--wait", "--retry"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    // One failure: warning (health exit 1); after the retry fails too: error (exit 2).
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    wait_for(Duration::from_secs(30), "the retry to fail", || {
        s.history("bad").len() == 2
    });
    let h = s.history("bad");
    assert!(reason(&h[1]).starts_with("retry 1 of 1"), "{h:#?}");
    assert!(
        h[1]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("read-only"),
        "{h:#?}"
    );
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("bad: error") && out.contains("good: healthy"),
        "{out}"
    );
    assert!(
        out.contains("2 failed runs in a row") || out.contains("failed"),
        "{out}"
    );
    let st = s.ctl_json(&["status"]);
    let bad = st["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "bad")
        .unwrap();
    assert_eq!(bad["health"]["level"], "error", "{bad:#}");
    assert_eq!(bad["stats"]["runs"], 2, "{bad:#}");
    assert_eq!(st["health"]["level"], "error");
    // The file is rewritten (atomically, on a blocking thread) right after each run.
    wait_for(
        Duration::from_secs(10),
        "the metrics after the retry",
        || {
            fs::read_to_string(&metrics)
                .is_ok_and(|m| sample(&m, "backupd_job_consecutive_failures", "bad") == Some(2.0))
        },
    );
    let m = fs::read_to_string(&metrics).unwrap();
    promtool_check(&m);
    // Each failed run has one log line that says what failed (the job's run), where (the
    // repository), why, and what happens next; the hint follows on its own indented line.
    let log: String = fs::read_dir(s.env.path("logs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("run failed")).collect();
    assert_eq!(failed.len(), 2, "one line per failed run:\n{log}");
    for l in &failed {
        assert!(
            l.contains("bad") && l.contains(&repo.display().to_string()),
            "{l}"
        );
    }
    assert!(
        log.contains("  retry 1 of 1 at ") && log.contains("no retries left"),
        "{log}"
    );
    assert_eq!(sample(&m, "backupd_job_health", "bad"), Some(2.0), "{m}");
    assert_eq!(sample(&m, "backupd_job_health", "good"), Some(0.0), "{m}");
    assert_eq!(
        sample(&m, "backupd_job_consecutive_failures", "bad"),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "backupd_job_last_run_success", "good"),
        Some(1.0),
        "{m}"
    );
    assert!(sample(&m, "backupd_job_last_success_timestamp_seconds", "good").unwrap() > 1.7e9);

    // The fix: the repository is writable again; the next run succeeds, the job is healthy.
    ro.remount("rw");
    let o = s.ctl(&["run", "bad", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(10), "the metrics after the fix", || {
        fs::read_to_string(&metrics)
            .is_ok_and(|m| sample(&m, "backupd_job_health", "bad") == Some(0.0))
    });
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Without the daemon, health judges the state files and says the daemon is down: error.
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("backupd is not running"),
        "{}",
        show(&o)
    );
    let v: Value = serde_json::from_slice(&s.ctl(&["--json", "health"]).stdout).unwrap();
    assert_eq!(v["level"], "error");
}

#[test]
fn a_daemon_down_for_three_intervals_reports_the_job_overdue_at_once() {
    let hook = Receiver::start();
    let s = Setup::new(&format!(
        "[jobs.daily]\nrepository = \"main\"\npaths = [\"{{data}}\"]\nschedule = \"30 2 * * *\"\ntimezone = \"UTC\"\ncatch_up = \"skip\"\nnotify = {{ events = [\"overdue\"], webhook = [{{ url = \"http://127.0.0.1:{}/\" }}] }}\n",
        hook.port
    ));
    let day1 = epoch("2026-06-01T02:29:50Z");
    let d = s.start(Some(day1 - real_now()));
    wait_for(Duration::from_secs(30), "the first run", || {
        runs(&s.history("daily"), "success").len() == 1
    });
    assert_eq!(s.ctl(&["health"]).status.code(), Some(0));
    let (code, _) = d.term();
    assert_eq!(code, Some(0));
    // Down for three days; started at 05:00 on the fourth: three slots without a success.
    let day4 = epoch("2026-06-04T05:00:00Z");
    let d = s.start(Some(day4 - real_now()));
    let o = s.ctl(&["--json", "health"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let h = &v["jobs"][0]["health"];
    assert_eq!(h["missed_slots"], 3, "{v:#}");
    assert_eq!(
        h["overdue_since"].as_str().map(|t| &t[..16]),
        Some("2026-06-02T02:30"),
        "{v:#}"
    );
    let why = h["reasons"][0].as_str().unwrap();
    assert!(why.contains("3 slots"), "{why}");
    // The dead-man alarm went out at once, with the gap in the message, and only once.
    wait_for(Duration::from_secs(20), "the overdue notification", || {
        hook.events() == ["overdue"]
    });
    let msg = hook.bodies()[0]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("job daily is overdue")
            && msg.contains("3 slots")
            && msg.contains("2026-06-01"),
        "{msg}"
    );
    drop(d);
    let d = s.start(Some(day4 + 60 - real_now()));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        hook.events(),
        ["overdue"],
        "not sent again for the same episode"
    );
    drop(d);
}

/// A webhook receiver on loopback: records every request's path and body, answers 200.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>> = Default::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = r.read_exact(&mut body);
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                g.lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { port, got }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, b)| serde_json::from_str(b).ok())
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.bodies()
            .iter()
            .map(|b| b["event"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

#[test]
fn failures_reach_a_webhook_and_a_real_smtp_server_with_the_log_tail_and_a_dead_endpoint_delays_nothing(
) {
    let hook = Receiver::start();
    // An endpoint that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let silent = format!("127.0.0.1:{silent_port}/");
    let s = Setup::new("");
    let maildir = s.env.path("mail");
    let smtpd = crate::support::smtpd::Smtpd::start(&maildir);
    let smtp_port = smtpd.port;
    let jobs = format!(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{{data}}\"]\nretries = {{ attempts = 0 }}\n[jobs.app.hooks]\nbefore = [\"test -e {flag} || {{ echo 'the app database is gone' >&2; exit 4; }}\"]\n[jobs.app.notify]\nevents = [\"failure\", \"recovered\"]\nwebhook = [{{ url = \"http://127.0.0.1:{port}/hook\" }}, {{ url = \"http://127.0.0.1:{silent_port}/never\", timeout = \"3s\", retries = 1 }}]\nemail = {{ server = \"127.0.0.1\", port = {smtp_port}, security = \"none\", from = \"backupd@example.com\", to = [\"ops@example.com\"] }}\n",
        flag = s.env.path("flag").display(),
        port = hook.port
    );
    s.write_config(&jobs);
    let d = s.start(None);
    let o = s.ctl(&["run", "app", "--wait"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    // The run is over while the silent endpoint still holds its delivery (3 s x 2 attempts).
    let st = s.ctl_json(&["status"]);
    assert!(
        st["jobs"][0]["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| !n["channel"].as_str().unwrap().contains(&silent)),
        "{st:#}"
    );
    wait_for(Duration::from_secs(20), "the webhook", || {
        hook.events() == ["failure"]
    });
    let b = &hook.bodies()[0];
    assert_eq!(b["job"], "app");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("backup job app failed"),
        "{b:#}"
    );
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("the app database is gone"),
        "{b:#}"
    );
    let tail: Vec<&str> = b["log_tail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        tail.iter().any(|l| l.contains("run started")),
        "the run's log lines: {tail:#?}"
    );
    // The email.
    wait_for(Duration::from_secs(20), "the email", || {
        fs::read_dir(maildir.join("new")).is_ok_and(|mut r| r.next().is_some())
    });
    let mail = fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = fs::read_to_string(mail).unwrap();
    assert!(
        text.contains("[backupd] app: failure") && text.contains("the app database is gone"),
        "{text}"
    );
    // The dead endpoint's failure is visible in status, and did not hold anything up.
    wait_for(
        Duration::from_secs(20),
        "the silent endpoint's failure in status",
        || {
            s.ctl_json(&["status"])["jobs"][0]["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["channel"].as_str().unwrap().contains(&silent) && n["ok"] == false)
        },
    );
    let st = s.ctl_json(&["status"]);
    let dead = st["jobs"][0]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ok"] == false)
        .unwrap()
        .clone();
    assert!(
        dead["error"].as_str().unwrap().contains("timed out"),
        "{dead:#}"
    );
    assert_eq!(dead["attempts"], 2);
    // The fix: recovered.
    fs::write(s.env.path("flag"), b"").unwrap();
    let o = s.ctl(&["run", "app", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(20), "recovered", || {
        hook.events() == ["failure", "recovered"]
    });
    drop(silent);
    drop(d);
}

/// `GET path` on loopback; the whole response (head and body).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample `name{labels}` (labels exactly as written) in metrics text.
fn exact_sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().unwrap())
    })
}

/// Sizes of every file of the repository but its locks.
fn repo_bytes(repo: &std::path::Path) -> u64 {
    fn walk(p: &std::path::Path, total: &mut u64) {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                if e.file_name() != "locks" {
                    walk(&e.path(), total);
                }
            } else {
                *total += md.len();
            }
        }
    }
    let mut t = 0;
    walk(repo, &mut t);
    t
}

fn health_code(s: &Setup) -> Option<i32> {
    s.ctl(&["health"]).status.code()
}

#[test]
fn verification_drills_cover_every_pack_catch_damage_notify_and_recover() {
    let s = Setup::new("");
    // Four backups of different data: several packs.
    for i in 0..4u64 {
        fs::write(s.data.join(format!("f{i}.bin")), bytes(100 + i, 300_000)).unwrap();
        s.env.ctl_ok(&["backup", s.data.to_str().unwrap()]);
    }
    let hook = Receiver::start();
    let port = smtpd_free_port();
    let cfg = s
        .config_text(&format!(
            "[jobs.app]\nrepository = \"main\"\npaths = [\"{{data}}\"]\nnotify = {{ events = [\"failure\", \"recovered\"], webhook = [{{ url = \"http://127.0.0.1:{}/hook\" }}] }}\n\n[repositories.main.verify]\ncheck = \"*/3 * * * * *\"\nread_data = \"*/2 * * * * *\"\nread_data_cycle = \"12s\"\nrestore_drill = \"*/5 * * * * *\"\nrestore_drill_files = 3\n",
            hook.port
        ))
        .replace(
            "[daemon]\n",
            &format!("[daemon]\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
        );
    fs::write(&s.cfg, cfg).unwrap();
    let d = s.start(None);

    // Every drill passes, and a read-data cycle completes: every pack re-read.
    let repo_status = || s.ctl_json(&["status"])["repositories"][0].clone();
    wait_for(
        Duration::from_secs(120),
        "a complete read-data cycle and three passing drills",
        || {
            let r = repo_status();
            let drills = r["drills"].as_array().cloned().unwrap_or_default();
            !r["last_complete_cycle"].is_null()
                && drills.len() == 3
                && drills.iter().all(|d| d["last_ok"] == Value::Bool(true))
        },
    );
    let r = repo_status();
    let restore = r["drills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "restore-drill")
        .unwrap()
        .clone();
    assert!(
        restore["last_summary"]
            .as_str()
            .unwrap()
            .contains("restored 3 random files"),
        "{restore}"
    );
    assert!(
        restore["last_summary"]
            .as_str()
            .unwrap()
            .contains("also with the unchanged source"),
        "the source files are unchanged, so they are compared too: {restore}"
    );
    // The state file: the coverage of the cycle, which started with the first read.
    let state: Value = serde_json::from_slice(
        &fs::read(s.env.path("state/repos/main.json")).expect("repository state file"),
    )
    .unwrap();
    assert!(!state["coverage"]["last_complete"].is_null(), "{state}");

    // Size and snapshots, measured from the repository, in status and on the endpoint.
    let packs = fs::read_dir(s.env.repo.join("data"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .count() as u64;
    assert!(packs >= 4, "{packs} packs");
    wait_for(Duration::from_secs(20), "the measured size", || {
        repo_status()["size_bytes"].as_u64() == Some(repo_bytes(&s.env.repo))
    });
    assert_eq!(repo_status()["snapshots"].as_u64(), Some(4));
    assert_eq!(repo_status()["packs"].as_u64(), Some(packs));
    let page = http_get(port, "/metrics");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(
        page.contains("Content-Type: text/plain; version=0.0.4"),
        "{page}"
    );
    let repo = s.env.repo.display().to_string();
    let size = exact_sample(
        &page,
        &format!("backupd_repository_size_bytes{{repository=\"{repo}\"}}"),
    );
    assert_eq!(size, Some(repo_bytes(&s.env.repo) as f64), "{page}");
    assert_eq!(
        exact_sample(
            &page,
            &format!("backupd_repository_snapshots{{repository=\"{repo}\"}}")
        ),
        Some(4.0)
    );
    for drill in ["check", "read-data", "restore-drill"] {
        assert_eq!(
            exact_sample(
                &page,
                &format!("backupd_drill_last_ok{{repository=\"{repo}\",drill=\"{drill}\"}}")
            ),
            Some(1.0),
            "{drill}: {page}"
        );
    }
    assert!(
        page.contains("backupd_repository_verified_ratio{"),
        "{page}"
    );
    promtool_check(page.split_once("\r\n\r\n").unwrap().1);
    assert!(http_get(port, "/other").starts_with("HTTP/1.1 404"));
    assert_eq!(health_code(&s), Some(0), "{}", show(&s.ctl(&["health"])));

    // Damage: one byte of the largest pack's data flipped. A read-data share finds it (the
    // pack is not covered until it reads back intact), the job's health turns error, and the
    // webhook hears of it.
    let largest = fs::read_dir(s.env.repo.join("data"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let flip = |p: &std::path::Path| {
        let mut b = fs::read(p).unwrap();
        let mid = b.len() / 3;
        b[mid] ^= 0x55;
        fs::write(p, b).unwrap();
    };
    flip(&largest);
    wait_for(
        Duration::from_secs(60),
        "health error from a failed drill",
        || health_code(&s) == Some(2),
    );
    let h = s.ctl(&["health"]);
    let out = String::from_utf8_lossy(&h.stdout).to_string();
    assert!(out.contains("of repository main failed"), "{out}");
    wait_for(Duration::from_secs(20), "the failure notification", || {
        hook.bodies().iter().any(|b| {
            b["event"] == "failure"
                && b["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("repository main")
        })
    });

    // The fix: the byte flipped back; the next drills pass, health is back, `recovered` sent.
    flip(&largest);
    wait_for(Duration::from_secs(60), "health back to healthy", || {
        health_code(&s) == Some(0)
    });
    wait_for(
        Duration::from_secs(20),
        "the recovered notification",
        || hook.events().iter().any(|e| e == "recovered"),
    );

    // A size limit below the measured size: the job's health is an error that says so.
    let limit = repo_bytes(&s.env.repo) / 2;
    let text = fs::read_to_string(&s.cfg).unwrap().replace(
        "[jobs.app]\n",
        &format!("[jobs.app]\nhealth = {{ max_repository_bytes = {limit} }}\n"),
    );
    fs::write(&s.cfg, text).unwrap();
    assert_eq!(s.ctl(&["reload"]).status.code(), Some(0));
    wait_for(
        Duration::from_secs(20),
        "health error from the size limit",
        || health_code(&s) == Some(2),
    );
    let out = String::from_utf8_lossy(&s.ctl(&["health"]).stdout).to_string();
    assert!(out.contains("limit"), "{out}");
    d.term();
}

fn smtpd_free_port() -> u16 {
    crate::support::smtpd::free_port()
}

/// `promtool check metrics` (Prometheus's own linter and parser; tests/run.sh installs Debian's
/// prometheus package for it) accepts the text with no complaint at all.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut c) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing (tests/run.sh installs the prometheus package)"
        );
        eprintln!("SKIPPED promtool check: promtool is not installed (tests/run.sh installs it)");
        return;
    };
    c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics: {}\n{text}",
        show(&o)
    );
}

/// The room left on the repository's file system, as `backupctl status --json` tells it.
fn free_of(s: &Setup) -> Option<u64> {
    s.ctl_json(&["status"])["repositories"][0]["free_bytes"].as_u64()
}

#[test]
fn a_filling_disk_warns_then_errs_before_backups_fail_and_clears_when_freed() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let s = Setup::new("");
    let (small, repo) = Tmpfs::with_repository(&s, "small");
    let cfg = s
        .config_text(&format!(
            "[repositories.small]\npath = \"{}\"\npassword_file = \"{}\"\n\n[jobs.app]\nrepository = \"small\"\npaths = [\"{{data}}\"]\nhealth = {{ min_free_space = \"50%\" }}\n",
            repo.display(),
            s.env.pw.display()
        ))
        .replace(
            &format!(
                "[repositories.main]\npath = \"{}\"\npassword_file = \"{}\"\n",
                s.env.repo.display(),
                s.env.pw.display()
            ),
            "",
        );
    fs::write(&s.cfg, cfg).unwrap();
    let _d = s.start(None);
    assert_eq!(s.ctl(&["run", "app", "--wait"]).status.code(), Some(0));
    wait_for(
        Duration::from_secs(30),
        "the free space to be measured",
        || free_of(&s).is_some(),
    );
    assert_eq!(health_code(&s), Some(0));
    let st = s.ctl_json(&["status"]);
    let r = &st["repositories"][0];
    assert_eq!(r["capacity_bytes"].as_u64(), Some(64 << 20), "{r:#}");
    let out = String::from_utf8_lossy(&s.ctl(&["status"]).stdout).to_string();
    assert!(
        out.contains("storage") && out.contains("free of 64.00 MiB"),
        "{out}"
    );

    // Under half free (the configured minimum): a warning that says how much is left and what
    // to do, while backups still succeed.
    let filler = s.env.path("small/filler");
    fs::write(&filler, vec![7u8; 40 << 20]).unwrap();
    assert_eq!(s.ctl(&["run", "app", "--wait"]).status.code(), Some(0));
    wait_for(Duration::from_secs(30), "a warning", || {
        health_code(&s) == Some(1)
    });
    let h = String::from_utf8_lossy(&s.ctl(&["health"]).stdout).to_string();
    assert!(
        h.contains("app: warning") && h.contains("min_free_space (50 %)") && h.contains("quota"),
        "{h}"
    );
    // Under a tenth of the minimum: an error, still before a backup failed.
    let filler2 = s.env.path("small/filler2");
    let left = free_of(&s).unwrap();
    fs::write(&filler2, vec![7u8; (left - (2 << 20)) as usize]).unwrap();
    assert_eq!(s.ctl(&["run", "app", "--wait"]).status.code(), Some(0));
    wait_for(Duration::from_secs(30), "an error", || {
        health_code(&s) == Some(2)
    });
    assert_eq!(s.history("app").len(), 3, "every run succeeded");

    // Room made: the next measurement clears it.
    fs::remove_file(&filler).unwrap();
    fs::remove_file(&filler2).unwrap();
    assert_eq!(s.ctl(&["run", "app", "--wait"]).status.code(), Some(0));
    wait_for(Duration::from_secs(30), "healthy again", || {
        health_code(&s) == Some(0)
    });
    drop(small);
}

/// max_growth: runs of about the same size are healthy; a run that reads ten times the median
/// of the runs before it turns health to a warning naming the sizes; later runs back at the
/// old size make it healthy again.
#[test]
fn a_source_that_suddenly_grows_is_a_health_warning() {
    let s = Setup::new(
        "[jobs.app]\nrepository = \"main\"\npaths = [\"{data}\"]\nhealth = { max_growth = 5, growth_runs = 2 }\n",
    );
    let d = s.start(None);
    let run = || {
        let o = s.ctl(&["run", "app", "--wait"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    };
    run();
    run();
    assert_eq!(health_code(&s), Some(0), "{}", show(&s.ctl(&["health"])));
    let big = s.data.join("big.db");
    fs::write(&big, bytes(9, 200_000)).unwrap();
    run();
    let o = s.ctl(&["health"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("grown to 205.08 KiB") && out.contains("more than max_growth (5)"),
        "{out}"
    );
    fs::remove_file(&big).unwrap();
    run();
    assert_eq!(health_code(&s), Some(0), "{}", show(&s.ctl(&["health"])));
    d.term();
}
