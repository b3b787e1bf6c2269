//! Integration tests of `backupctl backup --sqlite`: live databases under a busy writer (rollback and WAL), locked databases, bad input, and -wal/-shm never stored.
//!
//! Writers and lock holders are python3 scripts (its sqlite3 module), started as real processes.
//! The big test's database size comes from SQLITE_TEST_MB (default 300), its writer's pace from
//! SQLITE_TEST_TPS (default 2000 transactions a second).

use crate::support::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Builds a database of `mb` MiB (1 MiB blobs in one transaction) with an empty counter table
/// `w`, in journal mode `mode` ("delete" or "wal").
const MKDB: &str = r#"
import sqlite3, sys
db, mode, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA synchronous=OFF")
c.execute("CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
c.execute("CREATE TABLE w(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB)")
c.execute("BEGIN")
for i in range(mb):
    c.execute("INSERT INTO big(b) VALUES (randomblob(1048576))")
c.execute("COMMIT")
got = c.execute("PRAGMA journal_mode=" + mode).fetchone()[0]
assert got == mode, got
c.close()
"#;

/// Commits one row per transaction, paced at `tps` transactions a second (catching up after a
/// stall), until the stop file appears; logs every committed row count; writes
/// {"tx", "secs", "worst"} (worst = longest commit, the stall).
const WRITER: &str = r#"
import sqlite3, sys, time, os, json
db, log, stop, out, tps = sys.argv[1:6]
gap = 1.0 / float(tps)
c = sqlite3.connect(db, timeout=300, isolation_level=None)
c.execute("PRAGMA synchronous=OFF")
n = c.execute("SELECT count(*) FROM w").fetchone()[0]
f = open(log, "w")
f.write("%d\n" % n)
f.flush()
open(out + ".ready", "w").close()
t0 = time.monotonic(); tx = 0; worst = 0.0
while not os.path.exists(stop):
    ahead = t0 + tx * gap - time.monotonic()
    if ahead > 0:
        time.sleep(ahead)
    s = time.monotonic()
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO w(v, pad) VALUES (?, randomblob(100))", (n,))
    c.execute("COMMIT")
    d = time.monotonic() - s
    n += 1; tx += 1
    if d > worst: worst = d
    f.write("%d\n" % n)
el = time.monotonic() - t0
f.close()
json.dump({"tx": tx, "secs": el, "worst": worst}, open(out, "w"))
"#;

/// Holds an exclusive lock (`locking_mode=EXCLUSIVE`, a write transaction) for `secs` seconds.
const HOLDER: &str = r#"
import sqlite3, sys, time
db, ready, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN EXCLUSIVE")
c.execute("INSERT INTO w(v) VALUES (1)")
c.execute("COMMIT")
open(ready, "w").close()
time.sleep(secs)
c.close()
"#;

/// Commits `n` rows in WAL mode without checkpointing, then keeps the database open (so its
/// -wal and -shm stay, holding the rows) until killed.
const WAL_KEEPER: &str = r#"
import sqlite3, sys, time
db, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = sqlite3.connect(db, isolation_level=None)
assert c.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB)")
for i in range(n):
    c.execute("INSERT INTO w(v, pad) VALUES (?, randomblob(200))", (i,))
open(ready, "w").close()
time.sleep(120)
"#;

fn python(script: &str, args: &[&Path]) -> Command {
    let mut c = Command::new("python3");
    c.arg("-c").arg(script).args(args);
    c
}

fn run_python(script: &str, args: &[&Path]) {
    let o = python(script, args)
        .output()
        .expect("python3 is needed by the SQLite tests (apt-get install python3)");
    assert!(o.status.success(), "python failed:\n{}", show(&o));
}

/// Kills a helper process when the test ends, however it ends.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path, child: &mut Child) {
    let t = Instant::now();
    while !path.exists() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("helper process exited early with {st}");
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{path:?} never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Restores the latest snapshot with backupctl into a new folder; returns the restored copy
/// of `db`.
fn restore_latest(env: &Env, target: &Path, db: &Path) -> PathBuf {
    let _ = fs::remove_dir_all(target);
    env.ctl_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    target.join(db.strip_prefix("/").unwrap())
}

/// `PRAGMA integrity_check` of a database file and its row count in `w`.
fn check_db(path: &Path) -> (String, i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM w", [], |r| r.get(0))
        .unwrap();
    (ok, n)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn ten_backups_under_a_busy_writer_in_rollback_and_wal_mode() {
    let mb: u64 = std::env::var("SQLITE_TEST_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    // The writer's pace: four times the 500 tx/s asked for, leaving CPU to the backup so that
    // the stalls measured are lock waits, not a starved machine.
    let tps: u64 = std::env::var("SQLITE_TEST_TPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let env = Env::new();
    env.ctl_ok(&["init"]);
    for mode in ["delete", "wal"] {
        let db = env.path(&format!("live-{mode}.db"));
        let t = Instant::now();
        run_python(MKDB, &[&db, p(mode), p(&mb.to_string())]);
        eprintln!(
            "[{mode}] built a {} MiB database in {:.1?}",
            fs::metadata(&db).unwrap().len() >> 20,
            t.elapsed()
        );
        let log = env.path(&format!("{mode}.log"));
        let stop = env.path(&format!("{mode}.stop"));
        let stats = env.path(&format!("{mode}.json"));
        let mut w = Proc(
            python(WRITER, &[&db, &log, &stop, &stats, p(&tps.to_string())])
                .spawn()
                .expect("python3"),
        );
        let mut ready = stats.as_os_str().to_owned();
        ready.push(".ready");
        wait_for(Path::new(&ready), &mut w.0);
        std::thread::sleep(Duration::from_millis(300));
        let mut times = Vec::new();
        let mut counts = Vec::new();
        let mut waits = 0;
        let target = env.path("out");
        let staging = env.path("staging");
        fs::create_dir_all(&staging).unwrap();
        for i in 0..10 {
            let t = Instant::now();
            let o = env
                .ctl_cmd(&["backup", "--sqlite", db.to_str().unwrap()])
                .env("TMPDIR", &staging)
                .output()
                .unwrap();
            times.push(t.elapsed());
            waits += stderr(&o).matches("waiting for SQLite database").count();
            assert_eq!(
                o.status.code(),
                Some(0),
                "[{mode}] backup {i} failed:\n{}",
                show(&o)
            );
            let restored = restore_latest(&env, &target, &db);
            let (ok, n) = check_db(&restored);
            assert_eq!(ok, "ok", "[{mode}] restored copy {i} fails integrity_check");
            counts.push(n);
        }
        fs::remove_dir_all(&target).unwrap();
        fs::write(&stop, "").unwrap();
        let st = w.0.wait().unwrap();
        assert!(st.success(), "[{mode}] writer failed: {st}");
        let s: serde_json::Value = serde_json::from_slice(&fs::read(&stats).unwrap()).unwrap();
        let committed: BTreeSet<i64> = fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        for (i, n) in counts.iter().enumerate() {
            assert!(
                committed.contains(n),
                "[{mode}] backup {i} holds {n} rows, a count the writer never committed"
            );
        }
        let tx = s["tx"].as_f64().unwrap();
        let rate = tx / s["secs"].as_f64().unwrap();
        eprintln!(
            "[{mode}] backups: {:?} ({waits} backoff waits in all); row counts captured: {counts:?}",
            times
                .iter()
                .map(|t| format!("{:.2}s", t.as_secs_f64()))
                .collect::<Vec<_>>()
        );
        eprintln!(
            "[{mode}] writer: {tx} transactions, {rate:.0} tx/s, longest commit (stall) {:.0} ms",
            s["worst"].as_f64().unwrap() * 1000.0
        );
        assert!(
            rate >= 500.0,
            "[{mode}] the writer managed only {rate:.0} tx/s: the test did not test a busy database"
        );
        assert!(
            counts.windows(2).any(|w| w[0] != w[1]),
            "[{mode}] every backup holds the same count {counts:?}: the writer was not writing"
        );
        // No staging copies are left behind.
        assert_eq!(file_list(&staging), vec![], "[{mode}] staging files left");
        fs::remove_file(&db).unwrap();
    }
}

#[test]
fn a_locked_database_is_waited_for_and_a_deadline_fails_with_exit_5() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    for mode in ["delete", "wal"] {
        let db = env.path(&format!("locked-{mode}.db"));
        run_python(MKDB, &[&db, p(mode), p("1")]);
        let ready = env.path(&format!("{mode}.ready"));
        let mut h = Proc(python(HOLDER, &[&db, &ready, p("5")]).spawn().unwrap());
        wait_for(&ready, &mut h.0);
        let holder_pid = h.0.id();
        let t = Instant::now();
        let o = env.ctl(&["backup", "--sqlite", db.to_str().unwrap()]);
        let took = t.elapsed();
        assert_eq!(o.status.code(), Some(0), "[{mode}] {}", show(&o));
        let err = stderr(&o);
        let waits = err
            .matches(&format!("waiting for SQLite database {}", db.display()))
            .count();
        assert!(waits >= 1, "[{mode}] no waits shown:\n{err}");
        eprintln!("[{mode}] waited through the 5 s lock: {took:.1?}, {waits} waits:\n{err}");
        assert!(
            err.contains(&format!("PID {holder_pid}")),
            "[{mode}] the holder's PID {holder_pid} is not named:\n{err}"
        );
        assert!(h.0.wait().unwrap().success());
        let restored = restore_latest(&env, &env.path("out"), &db);
        assert_eq!(check_db(&restored), ("ok".to_string(), 1));

        // Held past the deadline.
        fs::remove_file(&ready).unwrap();
        let _h = {
            let mut h = Proc(python(HOLDER, &[&db, &ready, p("60")]).spawn().unwrap());
            wait_for(&ready, &mut h.0);
            h
        };
        let before = file_list(&env.repo);
        let o = env.ctl(&[
            "backup",
            "--sqlite",
            db.to_str().unwrap(),
            "--sqlite-wait",
            "3s",
        ]);
        assert_eq!(o.status.code(), Some(5), "[{mode}] {}", show(&o));
        let err = stderr(&o);
        assert!(
            err.contains(&format!("error: SQLite database {}", db.display()))
                && err.contains("still busy")
                && err.contains("hint:"),
            "[{mode}] {err}"
        );
        assert_eq!(
            file_list(&env.repo),
            before,
            "[{mode}] the repository changed"
        );
    }
}

#[test]
fn bad_databases_fail_with_exit_5_and_leave_the_repository_unchanged() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let plain = env.path("plain");
    fs::create_dir(&plain).unwrap();
    fs::write(plain.join("a.txt"), "hello").unwrap();
    env.ctl_ok(&["backup", plain.to_str().unwrap()]);

    let notdb = env.path("notes.db");
    fs::write(&notdb, text(1, 100_000)).unwrap();

    // A database with a damaged table page: cell pointers in a leaf of `w` point off the page.
    let corrupt = env.path("corrupt.db");
    crate::support::sqlite_with_a_damaged_page(&corrupt);
    let bytes = fs::read(&corrupt).unwrap();
    let page = bytes.len() / 4096 / 2;
    // SQLite sees the damage: problems listed, or the check itself stops on it.
    let seen: Result<Vec<String>, rusqlite::Error> = (|| {
        let c = rusqlite::Connection::open(&corrupt)?;
        let mut st = c.prepare("PRAGMA integrity_check")?;
        let rows = st.query_map([], |r| r.get(0))?.collect();
        rows
    })();
    match seen {
        Ok(rows) => assert_ne!(rows, vec!["ok".to_string()], "the damage was not seen"),
        Err(e) => assert_eq!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt),
            "{e}"
        ),
    }

    let missing = env.path("missing.db");
    let before = file_list(&env.repo);
    let staging = env.path("staging");
    fs::create_dir(&staging).unwrap();
    for (db, says) in [
        (&notdb, "is not a SQLite database"),
        (&corrupt, "fails PRAGMA integrity_check"),
        (&missing, "does not exist"),
    ] {
        let o = env
            .ctl_cmd(&["backup", "--sqlite", db.to_str().unwrap()])
            .env("TMPDIR", &staging)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(5), "{db:?}: {}", show(&o));
        assert_eq!(file_list(&staging), vec![], "{db:?}: staging files left");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("error: SQLite database {}: {says}", db.display()))
                && err.contains("hint:"),
            "{err}"
        );
        assert_eq!(
            file_list(&env.repo),
            before,
            "{db:?}: the repository changed"
        );
    }
    // The not-a-database file was not touched.
    assert_eq!(fs::read(&notdb).unwrap(), text(1, 100_000));
    // quick_check sees the damage too; with the check off the copy is stored as it is.
    let o = env.ctl(&[
        "backup",
        "--sqlite",
        corrupt.to_str().unwrap(),
        "--sqlite-check",
        "quick",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        stderr(&o).contains("fails PRAGMA quick_check"),
        "{}",
        show(&o)
    );
    env.ctl_ok(&[
        "backup",
        "--sqlite",
        corrupt.to_str().unwrap(),
        "--sqlite-check",
        "off",
    ]);
    // The copy is page for page: the damaged page is stored as it is.
    let stored = fs::read(restore_latest(&env, &env.path("out"), &corrupt)).unwrap();
    assert_eq!(stored.len(), bytes.len());
    assert!(
        stored[page * 4096..(page + 1) * 4096] == bytes[page * 4096..(page + 1) * 4096],
        "the damaged page {page} was not stored as it is"
    );
}

#[test]
fn wal_and_shm_files_are_never_stored() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let dir = env.path("app");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "kept").unwrap();
    let db = dir.join("app.db");
    let ready = env.path("ready");
    let mut k = Proc(
        python(WAL_KEEPER, &[&db, p("777"), &ready])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&ready, &mut k.0);
    let wal = dir.join("app.db-wal");
    assert!(
        wal.exists() && dir.join("app.db-shm").exists(),
        "no -wal/-shm to test with"
    );
    assert!(
        fs::metadata(&wal).unwrap().len() > 100_000,
        "the rows are not in the WAL"
    );

    env.ctl_ok(&[
        "backup",
        dir.to_str().unwrap(),
        "--sqlite",
        db.to_str().unwrap(),
    ]);
    let ls = env.ctl_ok(&["ls", "latest"]);
    let names: Vec<&str> = ls.lines().collect();
    assert!(names.contains(&db.to_str().unwrap()), "{ls}");
    assert!(
        names.contains(&dir.join("notes.txt").to_str().unwrap()),
        "{ls}"
    );
    assert!(
        !ls.contains("-wal") && !ls.contains("-shm") && !ls.contains("-journal"),
        "{ls}"
    );
    drop(k);
    let restored = restore_latest(&env, &env.path("out"), &db);
    let rdir = restored.parent().unwrap();
    let mut listed: Vec<String> = fs::read_dir(rdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["app.db", "notes.txt"]);
    assert_eq!(check_db(&restored), ("ok".to_string(), 777));
}
