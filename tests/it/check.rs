//! Integration tests of `backupctl check` on repositories written by restic 0.14: clean, with a
//! flipped byte, a deleted pack, a deleted or damaged index file, an orphaned pack, and subsets.

use crate::support::{bytes, show};
use backupd::repo::backend::{Backend, FileType, LocalBackend};
use backupd::repo::id::Id;
use backupd::repo::pack::PackWriter;
use backupd::repo::Repository;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

const PASSWORD: &str = "check-test-password";

/// A restic repository made once per test run, copied for each test.
struct Template {
    dir: PathBuf,
    /// The backed-up directory (absolute: trees store full paths).
    src: PathBuf,
    /// First and second snapshot (full ids).
    snap1: String,
    snap2: String,
    /// The data pack the second backup wrote (it holds only `sub/new.bin`).
    new_data_pack: String,
    /// The index file the second backup wrote.
    new_index: String,
}

fn restic(repo: &Path, pwfile: &Path, args: &[&str]) -> Output {
    crate::support::restic_at(repo, pwfile, args)
}

fn restic_ok(repo: &Path, pwfile: &Path, args: &[&str]) -> Output {
    let o = restic(repo, pwfile, args);
    assert!(o.status.success(), "restic {args:?} failed:\n{}", show(&o));
    o
}

fn write(p: &Path, data: &[u8]) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in walk_files(dir) {
        out.insert(e.file_name().unwrap().to_string_lossy().into_owned());
    }
    out
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn snapshot_ids(repo: &Path, pwfile: &Path) -> BTreeSet<String> {
    let o = restic_ok(repo, pwfile, &["snapshots", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        // One template per test process, under cargo's test scratch directory; remove those left
        // by earlier runs whose process is gone.
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        if let Ok(rd) = fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("check-template-") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let dir = base.join(format!("check-template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        let src = dir.join("src");
        write(&src.join("a/big1.bin"), &bytes(1, 2_500_000));
        write(
            &src.join("a/notes.txt"),
            "some notes\n".repeat(900).as_bytes(),
        );
        write(&src.join("b/big2.bin"), &bytes(2, 1_200_000));
        write(&src.join("b/c/mid.bin"), &bytes(3, 300_000));
        write(&src.join("empty"), b"");
        let repo = dir.join("repo");
        restic_ok(&repo, &pw, &["init"]);
        restic_ok(&repo, &pw, &["backup", src.to_str().unwrap()]);
        let snaps1 = snapshot_ids(&repo, &pw);
        let packs1 = names_in(&repo.join("data"));
        let index1 = names_in(&repo.join("index"));
        write(&src.join("sub/new.bin"), &bytes(4, 1_500_000));
        restic_ok(&repo, &pw, &["backup", src.to_str().unwrap()]);
        let snaps2 = snapshot_ids(&repo, &pw);
        let new_packs: Vec<PathBuf> = walk_files(&repo.join("data"))
            .into_iter()
            .filter(|p| !packs1.contains(&*p.file_name().unwrap().to_string_lossy()))
            .collect();
        let new_data_pack = new_packs
            .iter()
            .max_by_key(|p| fs::metadata(p).unwrap().len())
            .expect("the second backup wrote packs");
        assert!(
            fs::metadata(new_data_pack).unwrap().len() > 1_000_000,
            "the second backup's data pack holds new.bin"
        );
        let new_index: Vec<String> = names_in(&repo.join("index"))
            .difference(&index1)
            .cloned()
            .collect();
        assert_eq!(new_index.len(), 1, "the second backup wrote one index file");
        assert_eq!(snaps1.len(), 1);
        assert_eq!(snaps2.len(), 2);
        Template {
            src,
            snap1: snaps1.iter().next().unwrap().clone(),
            snap2: snaps2.difference(&snaps1).next().unwrap().clone(),
            new_data_pack: new_data_pack
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            new_index: new_index[0].clone(),
            dir,
        }
    })
}

/// A private copy of the template repository.
struct Fixture {
    _tmp: tempfile::TempDir,
    repo: PathBuf,
    pw: PathBuf,
    t: &'static Template,
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).unwrap();
        }
    }
}

fn fixture() -> Fixture {
    let t = template();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(&t.dir.join("repo"), &repo);
    let pw = tmp.path().join("pw");
    fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    Fixture {
        _tmp: tmp,
        repo,
        pw,
        t,
    }
}

impl Fixture {
    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_backupctl"))
            .arg("-r")
            .arg(&self.repo)
            .arg("--password-file")
            .arg(&self.pw)
            .args(args)
            .output()
            .expect("run backupctl")
    }

    /// Runs check with --json; returns the exit code and the parsed report.
    fn check_json(&self, extra: &[&str]) -> (i32, Value) {
        let mut args = vec!["--json", "check"];
        args.extend_from_slice(extra);
        let o = self.ctl(&args);
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "check --json output does not parse ({e}): {}\nstderr: {}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        });
        assert!(v["errors"].is_array(), "report has errors[]: {v}");
        (o.status.code().unwrap(), v)
    }

    fn pack_path(&self, name: &str) -> PathBuf {
        self.repo.join("data").join(&name[..2]).join(name)
    }

    fn pack_count(&self) -> usize {
        walk_files(&self.repo.join("data")).len()
    }

    fn new_bin(&self) -> String {
        format!("{}/sub/new.bin", self.t.src.display())
    }
}

fn make_writable(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn clean_repository_passes_like_restic_says() {
    let f = fixture();
    let o = restic(&f.repo, &f.pw, &["check", "--read-data"]);
    assert!(o.status.success(), "restic: {}", show(&o));

    let o = f.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("no errors found"));

    let (code, v) = f.check_json(&["--read-data"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    assert_eq!(v["snapshots"], 2);
    assert_eq!(v["index_files"], 2);
    let packs = f.pack_count() as u64;
    assert_eq!(v["packs_listed"], packs);
    assert_eq!(v["packs_read"], packs, "--read-data reads every pack");
    let bytes: u64 = walk_files(&f.repo.join("data"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(v["bytes_read"], bytes);
    // Every data blob restic lists is referenced in this clean repository, and was checked.
    // (How many there are depends on restic's random chunker polynomial.)
    let o = restic(&f.repo, &f.pw, &["list", "blobs"]);
    assert!(o.status.success(), "restic: {}", show(&o));
    let restic_data = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("data "))
        .count() as u64;
    assert!(
        restic_data >= 5,
        "5 files with content need at least 5 data blobs"
    );
    assert_eq!(v["data_blobs"].as_u64().unwrap(), restic_data, "{v}");
    assert!(v["orphaned_packs"].as_array().unwrap().is_empty());
    assert!(v["affected_snapshots"].as_array().unwrap().is_empty());
}

#[test]
fn flipped_byte_in_a_data_blob_is_found_by_read_data() {
    let f = fixture();
    let pack = f.t.new_data_pack.clone();
    let p = f.pack_path(&pack);
    // Flip a byte in the middle of the pack's largest blob (the header says where it is).
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&f.repo));
    let repo = Repository::open(be, PASSWORD.as_bytes()).unwrap();
    let id = Id::parse(&pack).unwrap();
    let size = fs::metadata(&p).unwrap().len();
    let header = repo.read_pack_header(&id, size).unwrap();
    let blob = header.iter().max_by_key(|b| b.length).unwrap();
    let at = blob.offset as usize + blob.length as usize / 2;
    make_writable(&p);
    let mut bytes = fs::read(&p).unwrap();
    bytes[at] ^= 0x01;
    fs::write(&p, &bytes).unwrap();

    // The structure is intact: only reading the data can find this.
    let o = f.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    let o = f.ctl(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&pack), "names the pack:\n{out}");
    assert!(out.contains(&f.t.snap2[..8]), "names the snapshot:\n{out}");
    assert!(out.contains(&f.new_bin()), "names the file:\n{out}");
    assert!(
        !out.contains(&f.t.snap1[..8]),
        "the first snapshot does not use new.bin:\n{out}"
    );
    assert!(out.contains("hint:"), "{out}");

    let (code, v) = f.check_json(&["--read-data"]);
    assert_eq!(code, 4);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    let e = &errors[0];
    assert_eq!(e["kind"], "pack_damaged");
    assert_eq!(e["pack"], pack.as_str());
    assert_eq!(
        e["blobs"][0]["id"],
        blob.id.to_hex().as_str(),
        "the damaged blob"
    );
    assert_eq!(e["blobs"].as_array().unwrap().len(), 1, "only one blob hit");
    assert_eq!(strs(&e["snapshots"]), set(&[&f.t.snap2]));
    assert_eq!(strs(&e["paths"]), set(&[&f.new_bin()]));
    let aff = v["affected_snapshots"].as_array().unwrap();
    assert_eq!(aff.len(), 1);
    assert_eq!(aff[0]["id"], f.t.snap2.as_str());
    assert_eq!(strs(&aff[0]["damaged_paths"]), set(&[&f.new_bin()]));

    // restic agrees that the repository is damaged.
    let o = restic(&f.repo, &f.pw, &["check", "--read-data"]);
    assert!(
        !o.status.success(),
        "restic check --read-data must fail too"
    );
}

#[test]
fn deleted_pack_is_found_by_the_structure_check() {
    let f = fixture();
    let pack = f.t.new_data_pack.clone();
    fs::remove_file(f.pack_path(&pack)).unwrap();

    let o = f.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&pack), "{out}");
    assert!(
        out.contains(&f.new_bin()),
        "names the affected file:\n{out}"
    );
    assert!(out.contains(&f.t.snap2[..8]), "{out}");

    let (code, v) = f.check_json(&[]);
    assert_eq!(code, 4);
    let e = &v["errors"][0];
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(e["kind"], "pack_missing");
    assert_eq!(e["pack"], pack.as_str());
    assert_eq!(strs(&e["paths"]), set(&[&f.new_bin()]));
    assert_eq!(strs(&e["snapshots"]), set(&[&f.t.snap2]));

    let o = restic(&f.repo, &f.pw, &["check"]);
    assert!(!o.status.success(), "restic check must fail too");
}

#[test]
fn deleted_index_file_reports_blobs_not_indexed() {
    let f = fixture();
    fs::remove_file(f.repo.join("index").join(&f.t.new_index)).unwrap();

    let o = f.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("in no index"), "{out}");
    assert!(out.contains("do NOT"), "warns against pruning:\n{out}");

    let (code, v) = f.check_json(&[]);
    assert_eq!(code, 4);
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty());
    for e in errors {
        assert_eq!(e["kind"], "blobs_not_indexed", "{e}");
        assert_eq!(strs(&e["snapshots"]), set(&[&f.t.snap2]), "{e}");
    }
    // The second backup's packs are orphans now, and the check knows snapshots need them.
    let orphans = v["orphaned_packs"].as_array().unwrap();
    let data = orphans
        .iter()
        .find(|o| o["id"] == f.t.new_data_pack.as_str())
        .unwrap_or_else(|| panic!("the new data pack is orphaned: {v}"));
    assert!(data["needed_blobs"].as_u64().unwrap() >= 1, "{data}");
    let paths: BTreeSet<String> = errors.iter().flat_map(|e| strs(&e["paths"])).collect();
    assert!(
        paths.iter().any(|p| f.new_bin().starts_with(p.as_str())),
        "new.bin (or a directory above it) is named: {paths:?}"
    );

    let o = restic(&f.repo, &f.pw, &["check"]);
    assert!(!o.status.success(), "restic check must fail too");
}

#[test]
fn damaged_index_file_is_named() {
    let f = fixture();
    let p = f.repo.join("index").join(&f.t.new_index);
    make_writable(&p);
    let mut bytes = fs::read(&p).unwrap();
    bytes[40] ^= 0x80;
    fs::write(&p, &bytes).unwrap();
    let (code, v) = f.check_json(&[]);
    assert_eq!(code, 4);
    let e = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "index_damaged")
        .unwrap_or_else(|| panic!("an index_damaged error: {v}"));
    assert_eq!(e["index_file"], f.t.new_index.as_str());
}

#[test]
fn pack_in_no_index_is_orphaned_not_an_error() {
    let f = fixture();
    // A valid copy of a pack under a new name: the same sealed blobs, the header sealed again
    // (a new IV), so a new SHA-256 - as an interrupted backup leaves behind.
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&f.repo));
    let repo = Repository::open(be.clone(), PASSWORD.as_bytes()).unwrap();
    let src = f.t.new_data_pack.clone();
    let size = fs::metadata(f.pack_path(&src)).unwrap().len();
    let header = repo
        .read_pack_header(&Id::parse(&src).unwrap(), size)
        .unwrap();
    let mut w = PackWriter::new();
    for b in &header {
        let raw = be
            .load_range(FileType::Pack, &src, b.offset as u64, b.length as usize)
            .unwrap();
        w.add_raw(b.id, b.tpe, &raw, b.uncompressed_length);
    }
    let (bytes, id, _) = w.finish(repo.key());
    assert_ne!(id.to_hex(), src);
    repo.save_pack(&id, &bytes).unwrap();

    let o = f.ctl(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&id.short()), "{out}");
    assert!(out.contains("prune"), "{out}");

    let (code, v) = f.check_json(&["--read-data"]);
    assert_eq!(code, 0, "{v}");
    let orphans = v["orphaned_packs"].as_array().unwrap();
    assert_eq!(orphans.len(), 1, "{v}");
    assert_eq!(orphans[0]["id"], id.to_hex().as_str());
    assert_eq!(orphans[0]["needed_blobs"], 0);
    assert_eq!(orphans[0]["blobs"], header.len());
    assert!(orphans[0].get("damaged").is_none(), "a valid pack: {v}");
    assert_eq!(v["packs_read"], f.pack_count());

    let o = restic(&f.repo, &f.pw, &["check", "--read-data"]);
    assert!(o.status.success(), "restic also accepts it: {}", show(&o));
}

#[test]
fn subsets_together_read_every_pack() {
    let f = fixture();
    let total = f.pack_count() as u64;
    let bytes: u64 = walk_files(&f.repo.join("data"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    let (c1, v1) = f.check_json(&["--read-data-subset", "1/2"]);
    let (c2, v2) = f.check_json(&["--read-data-subset", "2/2"]);
    assert_eq!((c1, c2), (0, 0));
    assert_eq!(v1["read_data"], "1/2");
    let read = v1["packs_read"].as_u64().unwrap() + v2["packs_read"].as_u64().unwrap();
    assert_eq!(read, total, "1/2 and 2/2 together read every pack once");
    let b = v1["bytes_read"].as_u64().unwrap() + v2["bytes_read"].as_u64().unwrap();
    assert_eq!(b, bytes);
    // The groups are deterministic: the first byte of the pack id decides.
    let in_first: u64 = walk_files(&f.repo.join("data"))
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            u8::from_str_radix(&n[..2], 16).unwrap() % 2 == 0
        })
        .count() as u64;
    assert_eq!(v1["packs_read"], in_first);

    let (c, v) = f.check_json(&["--read-data-subset", "1%"]);
    assert_eq!(c, 0);
    assert_eq!(v["packs_read"], 1, "a percentage reads at least one pack");

    for bad in ["0/2", "3/2", "0%", "abc"] {
        let o = f.ctl(&["check", "--read-data-subset", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", show(&o));
    }
}

// ---------------------------------------------------------------------------------------------
// Following the hints check prints.

/// The `backupctl ...` commands (between backticks) of the last hint line check printed at the
/// start of a line, as argument lists without the program's name.
fn hinted_commands(out: &str) -> Vec<Vec<String>> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with("hint: "))
        .unwrap_or_else(|| panic!("check printed no hint:\n{out}"));
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|c| c.strip_prefix("backupctl "))
        .map(|c| c.split_whitespace().map(String::from).collect())
        .collect()
}

/// A repository made by backupctl: snapshot 1 of `src` (big.bin, small.bin), snapshot 2 of
/// `src/big.bin` alone; both in one data pack. Returns (snapshot 1, snapshot 2, the data pack,
/// the small file's blob as the pack's header lists it).
fn two_snapshots_one_pack(
    env: &crate::support::Env,
) -> (String, String, PathBuf, backupd::repo::pack::PackedBlob) {
    env.ctl_ok(&["init"]);
    let src = env.path("src");
    write(&src.join("big.bin"), &bytes(21, 6_000_000));
    write(&src.join("small.bin"), &bytes(22, 60_000));
    let id_of = |v: Value| v["snapshot_id"].as_str().unwrap().to_string();
    let s1 = id_of(env.ctl_json(&["backup", src.to_str().unwrap()]));
    let s2 = id_of(env.ctl_json(&["backup", src.join("big.bin").to_str().unwrap()]));
    let pack = walk_files(&env.repo.join("data"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&env.repo));
    let pw = fs::read_to_string(&env.pw).unwrap();
    let repo = Repository::open(be, pw.trim_end().as_bytes()).unwrap();
    let pid = Id::parse(&pack.file_name().unwrap().to_string_lossy()).unwrap();
    let header = repo
        .read_pack_header(&pid, fs::metadata(&pack).unwrap().len())
        .unwrap();
    assert!(
        header.len() >= 3,
        "big.bin's chunks and small.bin share the pack"
    );
    let small = header.into_iter().min_by_key(|b| b.length).unwrap();
    assert!(small.length < 100_000, "the smallest blob is small.bin's");
    (s1, s2, pack, small)
}

/// Runs `check --read-data` (it must find damage), runs the commands its last hint names,
/// literally, and asserts that `check --read-data` passes afterwards; returns the commands.
fn follow_the_hint(env: &crate::support::Env) -> Vec<Vec<String>> {
    let o = env.ctl(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let cmds = hinted_commands(&String::from_utf8_lossy(&o.stdout));
    assert!(!cmds.is_empty(), "the hint names commands:\n{}", show(&o));
    for c in &cmds {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        env.ctl_ok(&args);
    }
    let o = env.ctl(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(0), "after {cmds:?}: {}", show(&o));
    cmds
}

fn snapshot_list(env: &crate::support::Env) -> BTreeSet<String> {
    env.ctl_json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_damaged_blob_beside_needed_ones_is_dropped_by_following_the_hint() {
    let env = crate::support::Env::new();
    let (s1, s2, pack, small) = two_snapshots_one_pack(&env);
    make_writable(&pack);
    let mut data = fs::read(&pack).unwrap();
    data[small.offset as usize + small.length as usize / 2] ^= 0x01;
    fs::write(&pack, &data).unwrap();

    // The premise: on a copy, forget and a plain prune leave the damaged pack in place (its
    // unused share is under the default 5 %), so check still fails.
    let plain = env.path("plain");
    copy_dir(&env.repo, &plain);
    let ctl_plain = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_backupctl"))
            .arg("-r")
            .arg(&plain)
            .arg("--password-file")
            .arg(&env.pw)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(ctl_plain(&["forget", &s1]).status.success());
    assert!(ctl_plain(&["prune"]).status.success());
    let o = ctl_plain(&["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));

    let cmds = follow_the_hint(&env);
    let pid = pack.file_name().unwrap().to_str().unwrap();
    assert_eq!(cmds[0], ["repair", "packs", pid], "{cmds:?}");
    assert_eq!(cmds[1], ["repair", "snapshots", "--forget"], "{cmds:?}");
    // Snapshot 2 never needed the damaged blob: it is kept as it was. Snapshot 1 is saved again
    // without small.bin and with big.bin, whose blobs were salvaged.
    let now = snapshot_list(&env);
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(now.contains(&s2) && !now.contains(&s1), "{now:?}");
    let repaired = now.iter().find(|s| **s != s2).unwrap();
    let listed = env.ctl_ok(&["ls", repaired]);
    assert!(
        listed.contains("big.bin") && !listed.contains("small.bin"),
        "{listed}"
    );
    env.restic_ok(&["check", "--read-data"]);
    let out = env.path("out");
    env.restic_ok(&["restore", &s2, "--target", out.to_str().unwrap()]);
    let src = env.path("src");
    let restored = out.join(src.join("big.bin").strip_prefix("/").unwrap());
    assert!(
        fs::read(restored).unwrap() == bytes(21, 6_000_000),
        "big.bin restored byte for byte"
    );
    // "Then back up the affected files again": the damaged blob is not reused.
    let v = env.ctl_json(&["backup", src.to_str().unwrap()]);
    let s3 = v["snapshot_id"].as_str().unwrap();
    env.ctl_ok(&["check", "--read-data"]);
    let out3 = env.path("out3");
    env.restic_ok(&["restore", s3, "--target", out3.to_str().unwrap()]);
    let small_file = out3.join(src.join("small.bin").strip_prefix("/").unwrap());
    assert_eq!(fs::read(small_file).unwrap(), bytes(22, 60_000));
}

#[test]
fn every_pack_damage_hint_works_when_followed() {
    type Damage = fn(&Path, &backupd::repo::pack::PackedBlob);
    let cases: [(&str, Damage); 3] = [
        ("a deleted pack", |p, _| fs::remove_file(p).unwrap()),
        ("a truncated pack", |p, b| {
            let f = fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(b.offset as u64 + b.length as u64 / 2).unwrap();
        }),
        ("a damaged pack header", |p, _| {
            let mut d = fs::read(p).unwrap();
            let n = d.len();
            d[n - 10] ^= 0x01;
            fs::write(p, &d).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let env = crate::support::Env::new();
        let (s1, s2, pack, small) = two_snapshots_one_pack(&env);
        make_writable(&pack);
        damage(&pack, &small);
        let cmds = follow_the_hint(&env);
        let pid = pack.file_name().unwrap().to_str().unwrap();
        assert_eq!(cmds[0], ["repair", "packs", pid], "{what}: {cmds:?}");
        // What is left: a deleted pack loses every blob, so each snapshot is saved again
        // without its files; a truncated one keeps the blobs before the cut; a damaged header
        // loses nothing (the index still says where each blob is), so no snapshot changes.
        let now = snapshot_list(&env);
        assert_eq!(now.len(), 2, "{what}: {now:?}");
        let unchanged = now.contains(&s1) && now.contains(&s2);
        assert_eq!(
            unchanged,
            what == "a damaged pack header",
            "{what}: {now:?}"
        );
        env.restic_ok(&["check", "--read-data"]);
    }
}
