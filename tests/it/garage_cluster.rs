//! S3 storage failing under a backup, on real Garage: a 3-node cluster (replication 3) losing a storage node or the endpoint node mid-backup, a full bucket quota, and a multipart upload whose part uploads are cut mid-way.

use crate::support::daemon::{wait_for, Daemon, Setup, BACKUPD};
use crate::support::remote::{CutProxy, Garage, GarageCluster};
use crate::support::{bytes, make_tree, manifest, show, Env};
use backupd::repo::backend::{Backend, FileType};
use backupd::repo::s3::S3Backend;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// S3 credentials for backupctl and restic.
struct Creds {
    key_id: String,
    secret: String,
}

impl Creds {
    fn of_cluster(c: &GarageCluster) -> Creds {
        Creds {
            key_id: c.key_id.clone(),
            secret: c.secret.clone(),
        }
    }

    fn of(g: &Garage) -> Creds {
        Creds {
            key_id: g.key_id.clone(),
            secret: g.secret.clone(),
        }
    }

    fn apply<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "garage")
            .env_remove("AWS_REGION")
            .env_remove("AWS_CA_BUNDLE")
    }
}

/// `backupctl -r LOC --password-file PW ARGS` with the credentials and a private cache.
fn ctl_cmd(env: &Env, cr: &Creds, loc: &str, args: &[&str]) -> Command {
    let mut c = crate::support::remote::backupctl(env);
    c.arg("-r").arg(loc).args(args);
    cr.apply(&mut c);
    c
}

fn ctl(env: &Env, cr: &Creds, loc: &str, args: &[&str]) -> Output {
    ctl_cmd(env, cr, loc, args).output().expect("run backupctl")
}

fn ctl_ok(env: &Env, cr: &Creds, loc: &str, args: &[&str]) -> String {
    let o = ctl(env, cr, loc, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "backupctl {args:?} on {loc}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn restic_ok(env: &Env, cr: &Creds, loc: &str, args: &[&str]) -> String {
    let mut c = Command::new("restic");
    c.arg("-r")
        .arg(loc)
        .arg("--password-file")
        .arg(&env.pw)
        .arg("--no-cache")
        .args(args)
        .env_remove("RESTIC_REPOSITORY");
    cr.apply(&mut c);
    let o = c
        .output()
        .expect("restic is needed (tests/run.sh installs it)");
    assert!(
        o.status.success(),
        "restic {args:?} on {loc}:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn snapshot_count(env: &Env, cr: &Creds, loc: &str) -> usize {
    let out = ctl_ok(env, cr, loc, &["--json", "snapshots"]);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}):\n{out}"));
    v.as_array().unwrap().len()
}

/// `files` random files of `mib` MiB each in `dir` (incompressible, so each MiB is stored).
fn random_files(dir: &Path, seed: u64, files: u64, mib: usize) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        fs::write(
            dir.join(format!("r{seed}-{i}.bin")),
            bytes(seed * 100 + i, mib << 20),
        )
        .unwrap();
    }
    dir.to_path_buf()
}

/// Starts `backupctl backup SRC` in the background.
fn spawn_backup(env: &Env, cr: &Creds, loc: &str, src: &Path) -> Child {
    ctl_cmd(env, cr, loc, &["backup", src.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start backupctl backup")
}

/// Waits until `s3` lists at least `n` packs while `child` still runs; returns how many it saw.
fn wait_for_packs(s3: &S3Backend, child: &mut Child, n: usize) -> usize {
    let t = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the backup ended ({st}) before {n} packs were in the bucket: the data set is too small to kill a node mid-backup");
        }
        let packs = s3.list(FileType::Pack).map(|l| l.len()).unwrap_or(0);
        if packs >= n {
            return packs;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no {n} packs in the bucket after 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// Garage stores each block on 3 nodes and acknowledges a write once 2 have it: with a storage
/// node killed by SIGKILL mid-backup, the backup through another node goes on and commits, and
/// both backupctl and restic read every byte back.
#[test]
fn cluster_survives_a_storage_node_killed_mid_backup() {
    let mut c = GarageCluster::start();
    let cr = Creds::of_cluster(&c);
    let env = Env::new();
    let loc = c.location(0, "repo");
    ctl_ok(&env, &cr, &loc, &["init"]);
    let src = random_files(&env.path("src"), 1, 6, 20);

    let s3 = c.s3(0, "repo");
    let mut child = spawn_backup(&env, &cr, &loc, &src);
    let at_kill = wait_for_packs(&s3, &mut child, 2);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    c.kill(2); // 127.0.0.3: a storage node, not the endpoint
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "with 2 of 3 nodes the cluster still has its write quorum:\n{}",
        show(&o)
    );
    let packs = s3.list(FileType::Pack).unwrap().len();
    assert!(
        packs > at_kill,
        "packs were written after the kill ({at_kill} before, {packs} at the end)"
    );

    let out = ctl_ok(&env, &cr, &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let out = restic_ok(&env, &cr, &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors were found"), "{out}");
    let rt = env.path("restic-restore");
    restic_ok(
        &env,
        &cr,
        &loc,
        &["restore", "latest", "--target", rt.to_str().unwrap()],
    );
    assert_eq!(manifest(&restored(&rt, &src)), manifest(&src));
}

/// The endpoint node killed mid-backup: the run fails after its retries with exit 15, naming
/// the endpoint and what to do; through another node the repository is intact, the failed run
/// left no snapshot, and its lock (which it could not delete) blocks nobody.
#[test]
fn cluster_endpoint_killed_mid_backup_fails_cleanly_and_another_endpoint_carries_on() {
    let mut c = GarageCluster::start();
    let cr = Creds::of_cluster(&c);
    let env = Env::new();
    let loc = c.location(0, "repo");
    ctl_ok(&env, &cr, &loc, &["init"]);
    let small = env.path("small");
    make_tree(&small, 3);
    ctl_ok(&env, &cr, &loc, &["backup", small.to_str().unwrap()]);
    let src = random_files(&env.path("src"), 2, 6, 20);

    let s3_other = c.s3(1, "repo");
    let before = s3_other.list(FileType::Pack).unwrap().len();
    let mut child = spawn_backup(&env, &cr, &loc, &src);
    wait_for_packs(&s3_other, &mut child, before + 2);
    assert!(child.try_wait().unwrap().is_none(), "still running");
    c.kill(0); // 127.0.0.1: the endpoint
    let killed = Instant::now();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!(
        "the run through the killed endpoint ended {:.1} s after the kill: {err}",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(15), "{}", show(&o));
    assert!(
        err.contains(&format!("127.0.0.1:{}", c.s3_port)) && err.contains("attempts"),
        "names the endpoint and the retries: {err}"
    );
    assert!(
        err.contains("hint:") && err.contains("another endpoint"),
        "says what to do: {err}"
    );

    // Through node 2: no snapshot of the failed run, the structure is intact.
    let loc2 = c.location(1, "repo");
    assert_eq!(snapshot_count(&env, &cr, &loc2), 1);
    let out = ctl_ok(&env, &cr, &loc2, &["check"]);
    assert!(out.contains("no errors"), "{out}");
    // Its lock is still there (deleting it needed the dead endpoint)...
    let locks = s3_other.list(FileType::Lock).unwrap();
    assert_eq!(locks.len(), 1, "the failed run's lock: {locks:?}");
    // ...and an interrupted multipart upload may be too. Garage can leave one listed as
    // unfinished after completing it (the kill fell between its two writes): then the visible
    // object must be the whole pack, its SHA-256 its name. A part-written pack is never visible.
    let visible: Vec<String> = s3_other
        .list(FileType::Pack)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let uploads = s3_other.incomplete_uploads().unwrap();
    eprintln!(
        "incomplete multipart uploads left by the killed endpoint: {}",
        uploads.len()
    );
    // Such a completed-yet-listed upload (a ghost) outlives an abort too: Garage answers the
    // abort, and keeps listing it.
    let mut ghosts = Vec::new();
    for (key, upload) in &uploads {
        let name = key.rsplit('/').next().unwrap();
        if visible.iter().any(|n| n == name) {
            let whole = s3_other.load(FileType::Pack, name).unwrap();
            assert_eq!(
                hex(&Sha256::digest(&whole)),
                name,
                "{key} is visible as an object but is not the whole pack"
            );
            ghosts.push((key.clone(), upload.clone()));
        }
    }

    // A new backup through node 2 is not blocked by that lock, and commits.
    ctl_ok(&env, &cr, &loc2, &["backup", src.to_str().unwrap()]);
    assert_eq!(snapshot_count(&env, &cr, &loc2), 2);
    let out = ctl_ok(&env, &cr, &loc2, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    // The lock's process is gone: `unlock` removes it as stale, then restic is happy too.
    ctl_ok(&env, &cr, &loc2, &["unlock"]);
    assert_eq!(s3_other.list(FileType::Lock).unwrap().len(), 0);
    let out = restic_ok(&env, &cr, &loc2, &["check"]);
    assert!(out.contains("no errors were found"), "{out}");

    // prune aborts this repository's unfinished multipart uploads older than an hour, never
    // another prefix's. One more under each prefix, so that there surely is one.
    let name = format!("ab{}", "0".repeat(62));
    s3_other.start_upload(FileType::Pack, &name).unwrap();
    let s3_foreign = c.s3(1, "other");
    let foreign = s3_foreign.start_upload(FileType::Pack, &name).unwrap();
    let ours = s3_other.incomplete_uploads().unwrap().len();
    assert!(ours >= 1);
    // All are young: the default age (an hour) keeps them.
    let out = ctl_ok(&env, &cr, &loc2, &["prune"]);
    assert!(!out.contains("multipart"), "{out}");
    assert_eq!(s3_other.incomplete_uploads().unwrap().len(), ours);
    // A dry run only counts them.
    let out = ctl_ok(
        &env,
        &cr,
        &loc2,
        &["prune", "--dry-run", "--stale-upload-secs", "0"],
    );
    assert!(
        out.contains(&format!(
            "would abort {ours} stale unfinished multipart upload(s)"
        )),
        "{out}"
    );
    assert_eq!(s3_other.incomplete_uploads().unwrap().len(), ours);
    let aborted = s3_other.incomplete_uploads().unwrap();
    let out = ctl_ok(&env, &cr, &loc2, &["prune", "--stale-upload-secs", "0"]);
    assert!(
        out.contains(&format!(
            "aborted {ours} stale unfinished multipart upload(s)"
        )),
        "{out}"
    );
    // Garage's listing of uploads can lag an abort while a node is down (seen in CI, for a
    // minute and more): what may stay listed is only what prune aborted (ghosts included),
    // never a new upload; aborting again is harmless and says so.
    let settled = || s3_other.incomplete_uploads().unwrap().is_empty();
    let t = Instant::now();
    while !settled() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let left = s3_other.incomplete_uploads().unwrap();
    eprintln!(
        "uploads still listed after prune's abort: {} (ghosts: {})",
        left.len(),
        ghosts.len()
    );
    assert!(left.iter().all(|u| aborted.contains(u)), "{left:?}");
    if !left.is_empty() {
        let out = ctl_ok(&env, &cr, &loc2, &["prune", "--stale-upload-secs", "0"]);
        assert!(out.contains("aborted"), "{out}");
    }
    assert_eq!(
        s3_foreign.incomplete_uploads().unwrap(),
        vec![(format!("other/data/ab/{name}"), foreign)],
        "another prefix's upload is untouched"
    );
    let out = ctl_ok(&env, &cr, &loc2, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
}

/// `max_repository_bytes` warns first (a daemon job on the bucket); then a bucket quota that a
/// backup runs into: exit 16, the object and the quota named with what to do; nothing
/// half-written is visible; after the quota is raised the same backup commits.
#[test]
fn full_bucket_quota_fails_the_backup_clearly_and_leaves_nothing_half_written() {
    let g = Garage::start();
    let cr = Creds::of(&g);
    let s = Setup::new("");
    let env = &s.env;
    let loc = g.location("quota");
    ctl_ok(env, &cr, &loc, &["init"]);
    let small = env.path("small");
    make_tree(&small, 4);
    ctl_ok(env, &cr, &loc, &["backup", small.to_str().unwrap()]);

    // Before the quota bites, the health warns: a daemon job on this bucket with
    // max_repository_bytes just above the measured size is a warning after its run.
    let (size, _) = backupd::verify::measure(&g.s3("quota"), chrono::Utc::now()).unwrap();
    let limit = size.bytes * 100 / 95;
    fs::write(env.path("s3-secret"), &g.secret).unwrap();
    let d = env.dir.path();
    fs::write(
        &s.cfg,
        format!(
            "[daemon]\nstate_dir = \"{d}/state\"\nlog_dir = \"{d}/logs\"\nsocket = \"{d}/backupd.sock\"\n\n\
             [repositories.main]\npath = \"{loc}\"\npassword_file = \"{pw}\"\ns3_access_key_id = \"{id}\"\n\
             s3_secret_access_key_file = \"{d}/s3-secret\"\ns3_region = \"garage\"\n\n\
             [jobs.app]\nrepository = \"main\"\npaths = [\"{small}\"]\nhealth = {{ max_repository_bytes = {limit} }}\n",
            d = d.display(),
            pw = env.pw.display(),
            id = g.key_id,
            small = small.display(),
        ),
    )
    .unwrap();
    let child = Command::new(BACKUPD)
        .arg("--config")
        .arg(&s.cfg)
        .env("BACKUPD_CACHE_DIR", env.path("cache"))
        .env_remove("BACKUPD_CONFIG")
        .env_remove("BACKUPD_SOCKET")
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(env.path("backupd.stderr")).unwrap())
        .spawn()
        .expect("start backupd");
    let daemon = Daemon {
        child,
        socket: s.socket(),
    };
    wait_for(Duration::from_secs(30), "the daemon's socket", || {
        std::os::unix::net::UnixStream::connect(&daemon.socket).is_ok()
    });
    let o = s.ctl(&["run", "app", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_for(Duration::from_secs(20), "the health warning", || {
        s.ctl(&["health"]).status.code() == Some(1)
    });
    let out = String::from_utf8_lossy(&s.ctl(&["health"]).stdout).into_owned();
    assert!(out.contains("of max_repository_bytes"), "{out}");
    daemon.term();

    g.set_max_size("12MiB");
    let src = random_files(&env.path("src"), 3, 3, 10);
    let o = ctl(env, &cr, &loc, &["backup", src.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("the run into the quota: {err}");
    assert_eq!(o.status.code(), Some(16), "{}", show(&o));
    assert!(
        err.contains("could not upload") && err.contains("(object quota/data/"),
        "what failed, on which object: {err}"
    );
    assert!(
        err.contains("quota is reached") && err.contains("garage bucket set-quotas"),
        "why, and what to do: {err}"
    );
    assert_eq!(
        snapshot_count(env, &cr, &loc),
        2,
        "no snapshot of the failed run"
    );
    let out = ctl_ok(env, &cr, &loc, &["check"]);
    assert!(out.contains("no errors"), "{out}");
    assert_eq!(g.s3("quota").list(FileType::Lock).unwrap().len(), 0);
    assert_eq!(g.s3("quota").incomplete_uploads().unwrap().len(), 0);

    g.set_max_size("none");
    ctl_ok(env, &cr, &loc, &["backup", src.to_str().unwrap()]);
    assert_eq!(snapshot_count(env, &cr, &loc), 3);
    let out = ctl_ok(env, &cr, &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
}

/// Packs above 8 MiB go up as multipart uploads. A part upload cut mid-body once is retried and
/// the backup commits; part uploads that keep being cut fail the run (exit 15) after the
/// retries, the multipart upload is aborted (ListMultipartUploads shows none), no object
/// appears under the pack's name, and the repository checks clean.
#[test]
fn a_part_upload_cut_mid_way_is_retried_and_one_that_keeps_failing_is_aborted() {
    let g = Garage::start();
    let cr = Creds::of(&g);
    let proxy = CutProxy::start(g.port, "partNumber=2&");
    let env = Env::new();
    let loc = format!("s3:{}/{}/mp", proxy.endpoint(), g.bucket);
    let s3 = g.s3("mp");
    ctl_ok(&env, &cr, &loc, &["init"]);
    let src = random_files(&env.path("src"), 4, 2, 20);

    // Cut once: the part is sent again and the backup commits.
    proxy.cuts.store(1, Ordering::SeqCst);
    ctl_ok(&env, &cr, &loc, &["backup", src.to_str().unwrap()]);
    assert_eq!(proxy.cut_lines.lock().unwrap().len(), 1, "one part was cut");
    assert_eq!(s3.incomplete_uploads().unwrap(), vec![]);
    let out = ctl_ok(&env, &cr, &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");

    // Cut every time: the run fails, and every multipart upload it started is aborted.
    random_files(&src, 5, 2, 20);
    proxy.cuts.store(usize::MAX, Ordering::SeqCst);
    let o = ctl(&env, &cr, &loc, &["backup", src.to_str().unwrap()]);
    proxy.cuts.store(0, Ordering::SeqCst);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("the run whose part uploads were cut: {err}");
    assert_eq!(o.status.code(), Some(15), "{}", show(&o));
    assert!(
        err.contains("upload part 2 of ")
            && err.contains("attempts")
            && err.contains("the multipart upload was aborted"),
        "{err}"
    );
    let cut: Vec<String> = proxy.cut_lines.lock().unwrap().drain(1..).collect();
    assert!(cut.len() >= 6, "every attempt was cut: {cut:?}");
    assert_eq!(
        s3.incomplete_uploads().unwrap(),
        vec![],
        "no multipart upload left"
    );
    for line in &cut {
        // PUT /BUCKET/mp/data/XX/NAME?partNumber=2&uploadId=... HTTP/1.1
        let path = line.split(' ').nth(1).unwrap();
        let name = path.split('?').next().unwrap().rsplit('/').next().unwrap();
        assert!(
            !s3.exists(FileType::Pack, name).unwrap(),
            "no object under the cut pack's name {name}"
        );
    }
    assert_eq!(snapshot_count(&env, &cr, &loc), 1);
    let out = ctl_ok(&env, &cr, &loc, &["check"]);
    assert!(out.contains("no errors"), "{out}");

    // The connection is good again: the same backup commits.
    ctl_ok(&env, &cr, &loc, &["backup", src.to_str().unwrap()]);
    assert_eq!(snapshot_count(&env, &cr, &loc), 2);
    let out = ctl_ok(&env, &cr, &loc, &["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
