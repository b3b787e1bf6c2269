//! Dedup with restic: backupd cuts files as restic 0.19 does, so each adds almost nothing to a repository the other already filled with the same data.

use crate::support::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

/// restic 0.19 or newer (`restic19`, installed by tests/get-restic19.sh).
fn restic19() -> PathBuf {
    tool(
        "restic19",
        "restic19 (restic 0.19) is needed by the chunker tests",
        "run `bash tests/run.sh` (it runs tests/get-restic19.sh once), or `bash tests/get-restic19.sh` yourself",
    )
}

fn restic19_ok(env: &Env, args: &[&str]) -> String {
    let o: Output = restic_bin_at(&restic19(), &env.repo, &env.pw, args);
    assert!(
        o.status.success(),
        "restic19 {args:?} failed:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Three big pseudo-random files (6, 13 and 20 MiB: several chunks each, some cut at the
/// fingerprint, the last of each at the end of the file) and a few small ones; returns the
/// data's size.
fn data_set(root: &Path) -> u64 {
    fs::create_dir_all(root.join("small")).unwrap();
    let mut total = 0;
    for (i, mib) in [6usize, 13, 20].into_iter().enumerate() {
        let b = bytes(100 + i as u64, mib * 1024 * 1024 + 4321 * i);
        total += b.len() as u64;
        fs::write(root.join(format!("big{i}.bin")), b).unwrap();
    }
    for i in 0..4u64 {
        let b = bytes(200 + i, 1000 + 300_000 * i as usize);
        total += b.len() as u64;
        fs::write(root.join(format!("small/s{i}.bin")), b).unwrap();
    }
    total
}

/// restic's summary line of `backup --json`.
fn restic_summary(out: &str) -> Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in restic's output:\n{out}"))
}

fn under_one_percent(added: u64, total: u64, what: &str) {
    assert!(
        added * 100 < total,
        "{what} added {added} bytes of {total} ({:.2} %)",
        added as f64 * 100.0 / total as f64
    );
}

#[test]
fn backupctl_adds_almost_nothing_after_restic() {
    let env = Env::new();
    let src = env.path("src");
    let total = data_set(&src);
    let s = src.to_str().unwrap();
    restic19_ok(&env, &["init"]);
    let first = restic_summary(&restic19_ok(&env, &["backup", "--json", s]));
    assert!(first["data_added"].as_u64().unwrap() >= total, "{first}");
    // --force: reading every file again, not trusting restic's snapshot as the parent.
    let second = env.ctl_json(&["backup", "--force", s]);
    under_one_percent(second["data_added"].as_u64().unwrap(), total, "backupctl");
    // Both restics still read the repository, and restore backupctl's snapshot.
    restic19_ok(&env, &["check"]);
    let restored = restic_restore(&env, "latest", &env.path("out"), &src);
    assert_eq!(manifest(&restored), manifest(&src));
}

#[test]
fn restic_adds_almost_nothing_after_backupctl() {
    let env = Env::new();
    let src = env.path("src");
    let total = data_set(&src);
    let s = src.to_str().unwrap();
    env.ctl_ok(&["init"]);
    let first = env.ctl_json(&["backup", s]);
    assert!(first["data_added"].as_u64().unwrap() >= total, "{first}");
    let second = restic_summary(&restic19_ok(&env, &["backup", "--json", "--force", s]));
    under_one_percent(second["data_added"].as_u64().unwrap(), total, "restic 0.19");
    let check = env.restic(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic 0.14 check:\n{}",
        show(&check)
    );
}
