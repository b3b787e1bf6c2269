//! Integration tests of hostile repositories (#20 item 3): a foreign or hostile writer's files
//! must not crash backupctl or exhaust its memory.

use crate::support::{show, Env};
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// A key file asking scrypt for N = 2^31, r = 8 (2 TiB of memory) is refused as damaged, with
/// its name, instead of aborting on the allocation.
#[test]
fn a_key_file_with_a_memory_bomb_of_scrypt_parameters_is_refused() {
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let dir = env.repo.join("keys");
    let k = fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
    let name = k.file_name().unwrap().to_str().unwrap().to_string();
    fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&k).unwrap()).unwrap();
    v["N"] = serde_json::json!(2147483648u64);
    fs::write(&k, serde_json::to_vec(&v).unwrap()).unwrap();
    let o = env.ctl(&["snapshots"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("keys/{name}")), "{err}");
    assert!(err.contains("scrypt"), "{err}");
}

/// An index claiming a 4 GiB uncompressed length for every blob: `ls` fails on the lengths, it
/// does not allocate what they claim (run under a 1 GiB address-space limit, which the claimed
/// length would exceed).
#[test]
fn an_index_claiming_huge_blob_lengths_does_not_allocate_them() {
    use backupd::repo::backend::{Backend, FileType, LocalBackend};
    use backupd::repo::index::IndexFile;
    use backupd::repo::Repository;
    use std::sync::Arc;
    let env = Env::new();
    env.ctl_ok(&["init"]);
    let data = env.path("data");
    fs::create_dir_all(data.join("d")).unwrap();
    fs::write(data.join("d/a.txt"), b"some text, compressed").unwrap();
    env.ctl_ok(&["backup", data.to_str().unwrap()]);
    let be: Arc<dyn Backend> = Arc::new(LocalBackend::new(&env.repo));
    let pw = fs::read_to_string(&env.pw).unwrap();
    let repo = Repository::open(be.clone(), pw.trim_end().as_bytes()).unwrap();
    for id in repo.list_ids(FileType::Index).unwrap() {
        let mut f: IndexFile = repo.load_unpacked(FileType::Index, &id).unwrap();
        for b in f.packs.iter_mut().flat_map(|p| p.blobs.iter_mut()) {
            if b.uncompressed_length.is_some() {
                b.uncompressed_length = Some(u32::MAX);
            }
        }
        repo.save_unpacked(FileType::Index, &f).unwrap();
        be.remove(FileType::Index, &id.to_hex()).unwrap();
    }
    let o = crate::support::ctl_in_memory_limit(&env, 1 << 20, &["ls", "latest"]);
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("instead of 4294967295"), "{err}");
}
