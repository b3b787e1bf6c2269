//! Integration tests of command sources, hooks, job configuration files and `backupctl run-job`, with real processes and restic.

use crate::support::*;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The repository's files (without locks), to prove a failed run changed nothing.
fn repo_files(repo: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("locks") {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(repo, repo, &mut out);
    out.sort();
    out
}

fn snapshot_count(env: &Env) -> usize {
    let s: serde_json::Value =
        serde_json::from_str(&env.restic_ok(&["snapshots", "--json"])).unwrap();
    s.as_array().unwrap().len()
}

fn sh_out(script: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(o.status.success(), "{script}: {}", show(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// 500 MiB of deterministic text that neither deduplicates nor compresses to nothing.
const BIG: &str = "seq 1 100000000 | head -c 524288000";

#[test]
fn a_500_mib_command_output_is_streamed_with_bounded_memory() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    assert!(
        Path::new("/usr/bin/time").exists(),
        "/usr/bin/time is needed to measure peak memory: apt-get install -y time"
    );
    let spec = format!("/dumps/big.txt={BIG}");
    let mut c = Command::new("/usr/bin/time");
    c.arg("-v")
        .arg(BACKUPCTL)
        .arg("-r")
        .arg(&env.repo)
        .arg("--password-file")
        .arg(&env.pw)
        .args(["--json", "backup", "--command", &spec]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let kib: u64 = err
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no peak RSS in /usr/bin/time's output:\n{err}"))
        .trim()
        .parse()
        .unwrap();
    println!(
        "backupctl peak RSS backing up 500 MiB of command output: {} MiB",
        kib / 1024
    );
    assert!(kib < 300 * 1024, "peak RSS {} MiB ≥ 300 MiB", kib / 1024);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["total_bytes_processed"], 524288000u64);

    let want = sh_out(&format!("{BIG} | sha256sum"));
    let got = sh_out(&format!(
        "restic -r {} --password-file {} --no-cache dump latest /dumps/big.txt | sha256sum",
        env.repo.display(),
        env.pw.display()
    ));
    assert_eq!(got, want, "restic's copy of the command output differs");
}

#[test]
fn a_failing_command_fails_the_backup_and_changes_nothing() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), b"data").unwrap();
    let before = repo_files(&env.repo);
    let o = env.ctl(&[
        "backup",
        src.to_str().unwrap(),
        "--command",
        "/dumps/x.sql=echo partial-output; echo oops >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("oops"), "{err}");
    assert!(err.contains("status 3"), "{err}");
    assert!(err.contains("/dumps/x.sql"), "{err}");
    assert_eq!(snapshot_count(&env), 0);
    // No snapshot and no index was written. (The engine flushes the packs it filled before the
    // error: at most unreferenced data remains, which restic's check accepts and prune removes.)
    let meta = |v: Vec<String>| -> Vec<String> {
        v.into_iter().filter(|f| !f.starts_with("data/")).collect()
    };
    assert_eq!(
        meta(repo_files(&env.repo)),
        meta(before),
        "the repository changed"
    );
    let check = env.restic(&["check"]);
    assert!(check.status.success(), "{}", show(&check));
}

#[test]
fn a_missing_program_fails_clearly() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let o = env.ctl(&["backup", "--command", "/dumps/x=/no/such/program --dump"]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/no/such/program"), "{err}");
    assert!(err.contains("127") && err.contains("not found"), "{err}");
    assert_eq!(snapshot_count(&env), 0);
    // A relative snapshot path is refused before anything runs.
    let o = env.ctl(&["backup", "--command", "dumps/x=echo hi"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be absolute"));
}

/// A configuration with one job `app` backing up `src` into the test repository.
fn config(env: &Env, job_extra: &str, hooks: &str) -> std::path::PathBuf {
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f.txt"), b"hello").unwrap();
    let text = format!(
        r#"[repositories.main]
path = "{}"
password_file = "{}"

[jobs.app]
repository = "main"
paths = ["{}"]
{job_extra}

[jobs.app.hooks]
{hooks}

[daemon]
state_dir = "{}"
"#,
        env.repo.display(),
        env.pw.display(),
        src.display(),
        // run-job records its runs in the state folder: the test's own, not the system's.
        env.path("state").display()
    );
    let f = env.path("backupd.toml");
    fs::write(&f, text).unwrap();
    f
}

fn run_job(cfg: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut c = Command::new(BACKUPCTL);
    c.args(["--json", "run-job", "app", "--config"])
        .arg(cfg)
        .args(extra)
        .env_remove("BACKUPD_REPOSITORY");
    let o = c.output().unwrap();
    let j = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}", show(&o)));
    (
        o.status.code(),
        j,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn hooks_run_in_order_with_the_run_facts() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let log = env.path("hooks.log");
    let rec = |name: &str| {
        format!(
            "\"echo {name} $BACKUPD_EVENT $BACKUPD_JOB $BACKUPD_RUN_ID ${{BACKUPD_SNAPSHOT_ID:-none}} ${{BACKUPD_ERROR:-noerror}} $BACKUPD_REPOSITORY >> {}\"",
            log.display()
        )
    };
    let hooks = format!(
        "before = [{}, {}]\nafter_success = [{}]\nafter_failure = [{}]\nalways = [{}]\ntimeout = \"30s\"",
        rec("b1"),
        rec("b2"),
        rec("ok"),
        rec("bad"),
        rec("end")
    );
    let cfg = config(&env, "", &hooks);
    let (code, j, err) = run_job(&cfg, &["--run-id", "run42"]);
    assert_eq!(code, Some(0), "{j}\n{err}");
    assert_eq!(j["outcome"], "success");
    let snap = j["snapshot_id"].as_str().unwrap().to_string();
    let repo = env.repo.display().to_string();
    let lines: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines,
        vec![
            format!("b1 before app run42 none noerror {repo}"),
            format!("b2 before app run42 none noerror {repo}"),
            format!("ok success app run42 {snap} noerror {repo}"),
            format!("end always app run42 {snap} noerror {repo}"),
        ]
    );
    // Hook output reaches the log (stderr).
    assert!(
        err.contains("hook before:") || err.contains("running before hook"),
        "{err}"
    );
    assert_eq!(snapshot_count(&env), 1);
}

#[test]
fn a_failing_before_hook_aborts_the_run() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let log = env.path("hooks.log");
    let hooks = format!(
        "before = [\"echo stopping; echo cannot stop the worker >&2; exit 7\", \"echo second >> {l}\"]\nafter_success = [\"echo ok >> {l}\"]\nafter_failure = [\"echo failure $BACKUPD_EVENT >> {l}\"]\nalways = [\"echo always $BACKUPD_EVENT ${{BACKUPD_SNAPSHOT_ID:-nosnap}} >> {l}; echo \\\"$BACKUPD_ERROR\\\" | head -1 >> {l}\"]",
        l = log.display()
    );
    let cfg = config(&env, "", &hooks);
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(5), "{j}\n{err}");
    assert_eq!(j["outcome"], "failed");
    assert!(j["snapshot_id"].is_null());
    let e = j["error"].as_str().unwrap();
    assert!(
        e.contains("before hook") && e.contains("status 7") && e.contains("cannot stop the worker"),
        "{e}"
    );
    assert_eq!(
        snapshot_count(&env),
        0,
        "a snapshot was made after a failed before-hook"
    );
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "failure failure");
    assert_eq!(lines[1], "always always nosnap");
    assert!(lines[2].contains("before hook"), "{text}");
    assert_eq!(lines.len(), 3, "{text}");
}

#[test]
fn a_hook_that_times_out_is_killed_and_reported() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let marker = env.path("survived");
    let hooks = format!(
        "before = [\"echo slow hook started; sleep 20; touch {}\"]\ntimeout = \"1s\"",
        marker.display()
    );
    let cfg = config(&env, "", &hooks);
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(5), "{j}\n{err}");
    let e = j["error"].as_str().unwrap();
    assert!(e.contains("killed after its timeout of 1s"), "{e}");
    assert!(e.contains("slow hook started"), "{e}");
    assert_eq!(snapshot_count(&env), 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!marker.exists(), "the hook kept running after its timeout");
}

#[test]
fn an_after_hook_failure_keeps_the_snapshot_but_fails_the_run() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let cfg = config(&env, "", "after_success = [\"exit 9\"]");
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(5), "{j}\n{err}");
    assert_eq!(j["outcome"], "failed");
    assert!(j["snapshot_id"].is_string());
    assert!(j["error"].as_str().unwrap().contains("status 9"));
    assert_eq!(snapshot_count(&env), 1);
}

#[test]
fn config_errors_point_at_line_and_column() {
    let env = Env::new();
    // Line 8 is the first line after `paths = [...]`.
    let cfg = config(&env, "compresion = \"max\"", "");
    let o = Command::new(BACKUPCTL)
        .args(["run-job", "app", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let at = format!("{}:8:1", cfg.display());
    assert!(
        err.contains(&at) && err.contains("unknown field `compresion`"),
        "{err}"
    );

    let cfg = config(&env, "tags = \"app\"", "");
    let o = Command::new(BACKUPCTL)
        .args(["run-job", "app", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let at = format!("{}:8:8", cfg.display());
    assert!(
        err.contains(&at) && err.contains("expected a sequence"),
        "{err}"
    );

    let cfg = config(&env, "", "timeout = 5");
    let o = Command::new(BACKUPCTL)
        .args(["run-job", "app", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let at = format!("{}:11:11", cfg.display());
    assert!(err.contains(&at), "{err}");
}

#[test]
fn a_job_with_sqlite_paths_and_a_command_is_restored_by_restic() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let db = env.path("src/app.db");
    fs::create_dir_all(env.path("src")).unwrap();
    let o = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES ('row-one'),('row-two');")
        .output()
        .expect("sqlite3 is needed by this test (apt-get install sqlite3)");
    assert!(o.status.success(), "{}", show(&o));
    let extra = format!(
        "sqlite = [{{ path = \"{}\", check = \"quick\", wait = \"10s\" }}]\ncommands = [{{ path = \"/dumps/app.txt\", run = \"echo dumped $((6*7))\", timeout = \"1m\" }}]",
        db.display()
    );
    let cfg = config(&env, &extra, "");
    let (code, j, err) = run_job(&cfg, &["--reason", "test"]);
    assert_eq!(j["reason"], "test");
    assert_eq!(j["sources"][0]["kind"], "sqlite");
    let e = j["error"].as_str().unwrap_or("");
    if e.contains("SQLite sources are not implemented yet") {
        // SQLite capture (being written by another developer) has not landed in this branch:
        // the job must fail cleanly, naming the database, with nothing committed. Once capture
        // works, the branch below runs instead.
        eprintln!("NOTE: SQLite capture not implemented yet; checked the clean failure only");
        assert_eq!(code, Some(5), "{j}\n{err}");
        assert_eq!(j["outcome"], "failed");
        assert!(e.contains(db.to_str().unwrap()), "{e}");
        assert_eq!(snapshot_count(&env), 0);
        return;
    }
    assert_eq!(code, Some(0), "{j}\n{err}");
    assert_eq!(j["outcome"], "success");
    assert!(j["sources"][0]["bytes"].as_u64().unwrap() > 0);
    let out = env.path("out");
    env.restic_ok(&["restore", "latest", "--target", out.to_str().unwrap()]);
    let rel = |p: &Path| out.join(p.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read_to_string(rel(&env.path("src/f.txt"))).unwrap(),
        "hello"
    );
    assert_eq!(
        fs::read_to_string(out.join("dumps/app.txt")).unwrap(),
        "dumped 42\n"
    );
    let rows = sh_out(&format!(
        "sqlite3 {} 'SELECT x FROM t ORDER BY x'",
        rel(&db).display()
    ));
    assert_eq!(rows, "row-one\nrow-two");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    assert!(!rel(Path::new(&wal)).exists(), "the -wal file was stored");
}

/// Whether process `pid` is gone (or a zombie: dead, not yet reaped).
fn process_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// A shell command that records its own pid in `dir/leader`, starts a child that records its
/// pid in `dir/child`, and waits: it never ends by itself.
fn lingering_command(dir: &Path) -> String {
    format!(
        "echo $$ > {d}/leader.tmp && mv {d}/leader.tmp {d}/leader; \
         sh -c 'echo $$ > {d}/child.tmp && mv {d}/child.tmp {d}/child; exec sleep 300' & \
         echo started; wait",
        d = dir.display()
    )
}

/// The pids `lingering_command` recorded, once both are written.
fn recorded_pids(dir: &Path) -> Vec<i32> {
    let read = |n: &str| fs::read_to_string(dir.join(n)).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let (Some(a), Some(b)) = (read("leader"), read("child")) {
            return vec![a.trim().parse().unwrap(), b.trim().parse().unwrap()];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Asserts that every process of `pids` disappears (a generous deadline: the assertion is on
/// disappearance, not on timing); kills the survivors so that a failure leaves nothing behind.
fn assert_all_gone(pids: &[i32], what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !pids.iter().all(|&p| process_gone(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let alive: Vec<i32> = pids.iter().copied().filter(|&p| !process_gone(p)).collect();
    for &p in &alive {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    assert!(alive.is_empty(), "{what}: processes {alive:?} outlived it");
}

#[test]
fn a_command_source_dies_with_a_killed_backupctl() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let dir = env.path("pids");
    fs::create_dir_all(&dir).unwrap();
    let spec = format!("/dumps/slow.txt={}", lingering_command(&dir));
    let mut ctl = env
        .ctl_cmd(&["backup", "--command", &spec])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pids = recorded_pids(&dir);
    ctl.kill().unwrap(); // SIGKILL
    ctl.wait().unwrap();
    assert_all_gone(&pids, "kill -9 of backupctl backup");
    // The next run finds nothing stale: it starts its own command and completes.
    env.ctl_ok(&["backup", "--command", "/dumps/quick.txt=echo quick"]);
}

#[test]
fn a_command_source_and_a_hook_die_with_a_killed_daemon() {
    use crate::support::daemon::Setup;
    for (name, job) in [
        (
            "source",
            "commands = [{ path = \"/dumps/slow.txt\", run = \"CMD\" }]\n",
        ),
        ("hook", "[jobs.slow.hooks]\nbefore = [\"CMD\"]\n"),
    ] {
        let s = Setup::new("");
        let dir = s.env.path("pids");
        fs::create_dir_all(&dir).unwrap();
        let cmd = lingering_command(&dir).replace('"', "\\\"");
        s.write_config(&format!(
            "[jobs.slow]\nrepository = \"main\"\npaths = [\"{{data}}\"]\nretries = {{ attempts = 0 }}\n{}",
            job.replace("CMD", &cmd)
        ));
        let d = s.start(None);
        let o = s.ctl(&["run", "slow"]);
        assert_eq!(o.status.code(), Some(0), "{}", show(&o));
        let pids = recorded_pids(&dir);
        d.kill9();
        assert_all_gone(&pids, &format!("kill -9 of backupd running a {name}"));
    }
}

/// The pack files of a local repository (not the temp files of writes under way).
fn pack_files(repo: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for d in fs::read_dir(repo.join("data"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
            if !f.file_name().to_string_lossy().starts_with('.') {
                out.push(f.path());
            }
        }
    }
    out
}

/// verify_after = "new-data": a clean run reads back every pack it wrote (the cost is in the
/// report); a pack damaged on the storage after it was written, before it was read back, fails
/// the run naming the pack (exit 4), with the snapshot kept.
#[test]
fn verify_after_reads_back_the_new_packs_and_a_pack_damaged_on_the_storage_fails_the_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let cfg = config(&env, "verify_after = \"new-data\"", "");
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(0), "{err}\n{j}");
    let rb = &j["verify_after"];
    assert!(rb["packs_written"].as_u64().unwrap() >= 1, "{j}");
    assert_eq!(rb["packs_read"], rb["packs_written"], "{j}");
    assert_eq!(rb["damaged"].as_array().unwrap().len(), 0, "{j}");

    // Much new data, so many packs: the first one is damaged as soon as it appears.
    for i in 0..6 {
        fs::write(env.path(&format!("src/big{i}")), bytes(100 + i, 4 << 20)).unwrap();
    }
    let before = pack_files(&env.repo);
    let stop = Arc::new(AtomicBool::new(false));
    let (repo, halt) = (env.repo.clone(), stop.clone());
    let watcher = std::thread::spawn(move || {
        while !halt.load(Ordering::SeqCst) {
            if let Some(p) = pack_files(&repo).into_iter().find(|p| !before.contains(p)) {
                let mut b = fs::read(&p).unwrap();
                let mid = b.len() / 2;
                b[mid] ^= 0x55;
                fs::write(&p, b).unwrap();
                return Some(p.file_name().unwrap().to_string_lossy().into_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        None
    });
    let (code, j, err) = run_job(&cfg, &[]);
    stop.store(true, Ordering::SeqCst);
    let damaged = watcher.join().unwrap().expect("the watcher saw a new pack");
    assert_eq!(code, Some(4), "{err}\n{j}");
    let e = j["error"].as_str().unwrap();
    assert!(
        e.contains("reading back") && e.contains(&format!("pack {}", &damaged[..8])),
        "the error names the pack {damaged}: {e}"
    );
    assert!(e.contains("check --read-data"), "what to do: {e}");
    assert!(j["snapshot_id"].is_string(), "the snapshot is kept: {j}");
    assert_eq!(
        j["verify_after"]["damaged"].as_array().unwrap().len(),
        1,
        "{j}"
    );
}

/// max_source_size: a run that would read more fails before writing anything, with the sizes
/// in the message (exit 5); with on_size_limit = "warn" it warns and backs up.
#[test]
fn a_run_over_max_source_size_fails_before_writing_anything_or_warns_by_policy() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let cfg = config(&env, "max_source_size = \"20K\"", "");
    fs::write(env.path("src/big"), bytes(7, 30_000)).unwrap();
    let before = repo_files(&env.repo);
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(5), "{err}\n{j}");
    let e = j["error"].as_str().unwrap();
    assert!(
        e.contains("the sources of job app")
            && e.contains("would read 29.30 KiB of files")
            && e.contains("over max_source_size 20.00 KiB")
            && e.contains("nothing was written"),
        "what, the sizes and the limit: {e}"
    );
    assert!(e.contains("on_size_limit = \"warn\""), "what to do: {e}");
    assert_eq!(repo_files(&env.repo), before, "nothing written");

    let cfg = config(
        &env,
        "max_source_size = \"20K\"\non_size_limit = \"warn\"",
        "",
    );
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(0), "{err}\n{j}");
    assert!(err.contains("warning: the run would read"), "{err}");
    assert_eq!(snapshot_count(&env), 1);
}

/// max_added_size: a dry run finds what the run would add, so a run within the limit backs up,
/// one over it fails before writing anything with the sizes (exit 5), and data the repository
/// already holds does not count.
#[test]
fn a_run_that_would_add_more_than_max_added_size_fails_before_writing_anything() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let cfg = config(&env, "max_added_size = \"20K\"", "");
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(0), "{err}\n{j}");
    let big = bytes(8, 30_000);
    fs::write(env.path("src/big"), &big).unwrap();
    let before = repo_files(&env.repo);
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(5), "{err}\n{j}");
    let e = j["error"].as_str().unwrap();
    assert!(
        e.contains("would add 29.30 KiB of new data")
            && e.contains("over max_added_size 20.00 KiB")
            && e.contains("nothing was written")
            && e.contains("raise max_added_size"),
        "{e}"
    );
    assert_eq!(repo_files(&env.repo), before, "nothing written");
    // Once the repository holds that data (backed up by hand), the same run adds nothing new.
    env.ctl_ok(&["backup", env.path("src/big").to_str().unwrap()]);
    let (code, j, err) = run_job(&cfg, &[]);
    assert_eq!(code, Some(0), "{err}\n{j}");
}
