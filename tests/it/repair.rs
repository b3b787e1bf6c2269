//! `backupctl repair index` on damaged repositories: lost and garbled index files are rebuilt from the pack headers (check --read-data and restic check green again, the restore whole), a lost pack is dropped from the index, a pack with a broken header is named.

use crate::support::{make_tree, manifest, show, Env};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

fn files_in(dir: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walk(&dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn repair(env: &Env, flags: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec!["--json", "repair", "index"];
    args.extend_from_slice(flags);
    let o = env.ctl(&args);
    let v =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {}", show(&o)));
    (o.status.code(), v)
}

/// A repository of two backups, and the source of the second.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    make_tree(&src, 3);
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    fs::write(src.join("new.txt"), "second").unwrap();
    env.ctl_ok(&["backup", src.to_str().unwrap()]);
    (env, src)
}

fn green(env: &Env, src: &Path) {
    let out = env.ctl_ok(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    env.restic_ok(&["check", "--read-data"]);
    let target = env.path("restored");
    let _ = fs::remove_dir_all(&target);
    env.ctl_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(manifest(&restored), manifest(src));
}

#[test]
fn lost_and_garbled_index_files_are_rebuilt_from_the_packs() {
    let (env, src) = setup();
    let index = files_in(env.repo.join("index"));
    assert!(index.len() >= 2, "{index:?}");
    fs::remove_file(&index[0]).unwrap();
    fs::write(&index[1], b"garbage, not an index").unwrap();
    let o = env.ctl(&["check"]);
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("backupctl repair index"),
        "check points at the repair: {text}"
    );

    let (code, r) = repair(&env, &[]);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(
        r["index_files_damaged"].as_array().unwrap().len(),
        1,
        "{r:#}"
    );
    assert!(r["packs_read"].as_u64().unwrap() > 0, "{r:#}");
    assert_eq!(
        r["packs"],
        r["packs_read"].as_u64().unwrap() + r["packs_from_index"].as_u64().unwrap()
    );
    green(&env, &src);
    // Run again on a healthy repository: everything comes from the index, nothing is read.
    let (code, r) = repair(&env, &[]);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["packs_read"], 0, "{r:#}");
    green(&env, &src);
}

#[test]
fn a_lost_pack_is_dropped_from_the_index_and_a_broken_header_is_named() {
    let (env, _src) = setup();
    let packs = files_in(env.repo.join("data"));
    let lost = packs[0].file_name().unwrap().to_string_lossy().into_owned();
    fs::remove_file(&packs[0]).unwrap();
    let broken = packs[1].file_name().unwrap().to_string_lossy().into_owned();
    let mut b = fs::read(&packs[1]).unwrap();
    let n = b.len();
    b[n - 10] ^= 0xff; // inside the sealed header: its MAC fails
    fs::write(&packs[1], &b).unwrap();

    // By default the index's entries are trusted for packs that are there with their size.
    let (code, r) = repair(&env, &[]);
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["packs_missing"], serde_json::json!([lost]), "{r:#}");
    assert_eq!(r["packs_read"], 0, "{r:#}");
    // --read-all-packs reads every header: the broken one is named, exit 4.
    let (code, r) = repair(&env, &["--read-all-packs"]);
    assert_eq!(code, Some(4), "a pack it cannot read is damage: {r:#}");
    assert_eq!(r["packs_missing"], serde_json::json!([]), "{r:#}");
    let unreadable = r["packs_unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1, "{r:#}");
    assert_eq!(unreadable[0][0], broken.as_str());
    assert_eq!(r["packs_read"], 2, "the two whole packs: {r:#}");
    let o = env.ctl(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "the lost data is reported: {}",
        show(&o)
    );
}

/// `repair snapshots --forget`: its JSON, and every path it reports lost.
fn repair_snapshots_forget(env: &Env) -> (Value, std::collections::BTreeSet<String>) {
    let o = env.ctl(&["--json", "repair", "snapshots", "--forget"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lost = r["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["lost"].as_array().unwrap().iter())
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    (r, lost)
}

/// The files restic's `find --pack` says hold data of `pack`, if any.
fn files_in_pack(env: &Env, pack: &str) -> std::collections::BTreeSet<String> {
    env.restic_ok(&["find", "--pack", pack])
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("... in file "))
        .map(String::from)
        .collect()
}

#[test]
fn snapshots_that_lost_a_pack_are_saved_again_without_exactly_the_files_it_held() {
    let (env, src) = setup();
    let before = env.ctl_json(&["snapshots"]).as_array().unwrap().len();
    // A data pack some files need (restic's own `find --pack` names them).
    let (pack, lost) = files_in(env.repo.join("data"))
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let files = files_in_pack(&env, &name);
            (p, files)
        })
        .find(|(_, files)| !files.is_empty())
        .expect("a pack with file data");
    fs::remove_file(&pack).unwrap();
    let (code, _) = repair(&env, &[]);
    assert_eq!(code, Some(0));

    // A dry run says what it would do and writes nothing.
    let o = env.ctl(&["--json", "repair", "snapshots", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let dry: Value = serde_json::from_slice(&o.stdout).unwrap();
    let needing = dry["repaired"].as_array().unwrap().len();
    assert!(needing >= 1, "{dry:#}");
    assert_eq!(
        env.ctl_json(&["snapshots"]).as_array().unwrap().len(),
        before
    );

    let (r, reported) = repair_snapshots_forget(&env);
    assert_eq!(
        reported, lost,
        "exactly the files whose data was in the pack"
    );

    // Green again, for restic too; the repaired snapshots replace the originals.
    let out = env.ctl_ok(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    env.restic_ok(&["check", "--read-data"]);
    let snaps = env.ctl_json(&["snapshots"]);
    let snaps = snaps.as_array().unwrap();
    assert_eq!(snaps.len(), before);
    let new_ids: Vec<&str> = r["repaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["new_id"].as_str().unwrap())
        .collect();
    assert_eq!(new_ids.len(), needing);
    for s in snaps {
        let repaired = s["tags"].to_string().contains("repaired");
        assert_eq!(
            repaired,
            new_ids.contains(&s["id"].as_str().unwrap()),
            "{s}"
        );
    }
    // The restore has every other file, whole, and none of the lost ones.
    let target = env.path("restored");
    env.ctl_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = manifest(&target.join(src.strip_prefix("/").unwrap()));
    let mut want = manifest(&src);
    let prefix = format!("{}/", src.display());
    want.retain(|rel, _| !lost.contains(&format!("{prefix}{rel}")));
    assert_eq!(restored, want);
    // Nothing left to repair.
    let o = env.ctl(&["--json", "repair", "snapshots"]);
    let again: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["repaired"].as_array().unwrap().len(), 0, "{again:#}");
}

/// A blob as an index lists it: id, offset, length.
type Entry = (String, u64, u64);

/// The data blobs of the index, per pack: (pack id, its blobs).
fn data_packs(env: &Env) -> Vec<(String, Vec<Entry>)> {
    let mut out = Vec::new();
    for f in files_in(env.repo.join("index")) {
        let id = f.file_name().unwrap().to_string_lossy().into_owned();
        let idx: Value = serde_json::from_str(&env.ctl_ok(&["cat", "index", &id])).unwrap();
        for p in idx["packs"].as_array().unwrap() {
            let blobs: Vec<Entry> = p["blobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["type"] == "data")
                .map(|b| {
                    let n = |k: &str| b[k].as_u64().unwrap();
                    (
                        b["id"].as_str().unwrap().to_string(),
                        n("offset"),
                        n("length"),
                    )
                })
                .collect();
            if !blobs.is_empty() {
                out.push((p["id"].as_str().unwrap().to_string(), blobs));
            }
        }
    }
    out
}

#[test]
fn repair_packs_salvages_every_readable_blob_and_repair_snapshots_names_exactly_the_files_lost() {
    let (env, src) = setup();
    let (pack, blobs) = data_packs(&env)
        .into_iter()
        .max_by_key(|(_, b)| b.len())
        .unwrap();
    assert!(blobs.len() >= 3, "{blobs:?}");
    let (bad, off, len) = blobs[1].clone();
    let path = env.repo.join("data").join(&pack[..2]).join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    bytes[(off + len / 2) as usize] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let lost_files: std::collections::BTreeSet<String> = env
        .restic_ok(&["find", "--blob", &bad])
        .lines()
        .filter_map(|l| l.split(" in file ").nth(1))
        .map(|l| l.trim().to_string())
        .collect();
    assert!(!lost_files.is_empty());

    let o = env.ctl(&["--json", "repair", "packs", &pack[..12]]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &r["packs"][0];
    assert_eq!(p["id"], pack.as_str(), "{r:#}");
    assert_eq!(
        p["salvaged"].as_u64().unwrap() as usize,
        blobs.len() - 1,
        "{r:#}"
    );
    let lost = p["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{r:#}");
    assert!(
        lost[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("data {bad}: ")),
        "{r:#}"
    );
    assert!(!path.exists(), "the damaged pack is removed");
    assert_eq!(r["packs_removed"], 1);

    let (_, reported) = repair_snapshots_forget(&env);
    assert_eq!(
        reported, lost_files,
        "exactly the files that needed the damaged blob"
    );
    let out = env.ctl_ok(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    let o = env.restic19(&["check", "--read-data"]);
    assert!(o.status.success(), "restic 0.19: {}", show(&o));
    // Every other file restores whole.
    let target = env.path("restored");
    env.ctl_ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let mut want = manifest(&src);
    let prefix = format!("{}/", src.display());
    want.retain(|rel, _| !lost_files.contains(&format!("{prefix}{rel}")));
    assert_eq!(manifest(&target.join(src.strip_prefix("/").unwrap())), want);
}
