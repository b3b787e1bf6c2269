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
