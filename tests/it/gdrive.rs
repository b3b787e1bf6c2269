//! The Google Drive backend against a local stand-in for Drive API v3 (tests/it/support/
//! fakedrive.rs): the backend contract (with multipart and resumable uploads), a repository
//! round trip, retries on rate-limit 403 / 429 / 503 and no retry on a plain 403, token
//! refresh, and duplicate names. Real Google is not reachable from here (README).

use crate::support::fakedrive::{self, FakeDrive};
use backupd::cancel::{CancelToken, NoProgress};
use backupd::engine::backup::{backup, BackupOptions};
use backupd::engine::check::{check, CheckOptions, ReadData};
use backupd::engine::restore::{restore, RestoreOptions};
use backupd::repo::backend::{Backend, FileType};
use backupd::repo::gdrive::{GDriveBackend, GDriveCredentials, GDriveOptions};
use backupd::repo::Repository;
use std::sync::Arc;
use std::time::Duration;

fn backend(d: &FakeDrive, path: &str, refresh: &str, attempts: u32) -> GDriveBackend {
    let opts = GDriveOptions {
        api_base: format!("{}/drive/v3", d.base()),
        upload_base: format!("{}/upload/drive/v3", d.base()),
        token_url: format!("{}/token", d.base()),
        attempts,
        backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        multipart_max: 1 << 20,
        chunk_size: 256 << 10,
        timeout: Duration::from_secs(30),
    };
    let creds = GDriveCredentials {
        client_id: "test-client".into(),
        client_secret: "test-secret".into(),
        refresh_token: refresh.into(),
    };
    GDriveBackend::new(path, creds, opts)
}

#[test]
fn backend_contract() {
    let d = FakeDrive::start();
    let be = backend(&d, "backups/host1", fakedrive::REFRESH_TOKEN, 5);
    // 3 MB: above multipart_max, so it goes up in 12 resumable parts.
    crate::support::conformance::run(&be, 3_000_000);
    let log = d.state.lock().unwrap().log.clone();
    assert!(
        log.iter().any(|l| l.starts_with("PUT /upload/session/")),
        "the resumable path ran"
    );
    assert!(
        log.iter().filter(|l| l.starts_with("POST /token")).count() == 1,
        "one token, reused"
    );
}

#[test]
fn repository_round_trip() {
    let d = FakeDrive::start();
    let be: Arc<dyn Backend> = Arc::new(backend(&d, "repo", fakedrive::REFRESH_TOKEN, 5));
    let env = crate::support::Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("a.txt"), crate::support::text(1, 50_000)).unwrap();
    std::fs::write(src.join("d/b.bin"), crate::support::bytes(2, 3_000_000)).unwrap();
    let cancel = CancelToken::new();
    let mut repo = Repository::init_with_kdf(be.clone(), b"pw", 1024, 8, 1).unwrap();
    let r = {
        let _l = backupd::repo::lock::lock(&repo, false, Duration::ZERO).unwrap();
        let opts = BackupOptions {
            paths: vec![src.clone()],
            ..Default::default()
        };
        backup(&mut repo, &opts, &NoProgress, &cancel).unwrap()
    };
    let mut repo = Repository::open(be.clone(), b"pw").unwrap();
    repo.load_index().unwrap();
    let target = env.path("out");
    let rep = restore(
        &repo,
        &r.snapshot,
        &RestoreOptions::new(&target),
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert_eq!(rep.exit_code(), 0);
    assert_eq!(
        crate::support::manifest(&src),
        crate::support::manifest(&target.join(src.strip_prefix("/").unwrap()))
    );
    let rep = check(
        &mut repo,
        &CheckOptions {
            read_data: ReadData::All,
        },
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert!(rep.is_ok(), "{rep:?}");
}

#[test]
fn retries_rate_limits_but_not_a_plain_403() {
    let d = FakeDrive::start();
    let be = backend(&d, "r", fakedrive::REFRESH_TOKEN, 6);
    be.create().unwrap();
    let n = "cd".repeat(32);
    // Two kinds of rate-limit 403, a 429 and a 503, then success.
    d.fail_next(&[
        fakedrive::rate_limit_403(),
        fakedrive::user_rate_limit_403(),
        (
            429,
            r#"{"error":{"code":429,"message":"Too Many Requests"}}"#.into(),
        ),
        (503, "Service Unavailable".into()),
    ]);
    let before = d.requests();
    be.save(FileType::Snapshot, &n, b"snap").unwrap();
    assert_eq!(be.load(FileType::Snapshot, &n).unwrap(), b"snap");
    assert!(
        d.requests() - before >= 4 + 3,
        "the four failures were retried"
    );
    assert!(d.state.lock().unwrap().fails.is_empty());

    // A 403 that is not a rate limit: one request, no retry, Drive's reason in the error.
    d.fail_next(&[fakedrive::forbidden_403()]);
    let before = d.requests();
    let e = be.load(FileType::Snapshot, &n).unwrap_err();
    assert_eq!(d.requests() - before, 1, "a plain 403 is not retried");
    let msg = e.to_string();
    assert!(
        msg.contains("insufficientFilePermissions") && msg.contains("403"),
        "{msg}"
    );
    assert!(
        msg.contains("gdrive:r/snapshots/"),
        "the object is named: {msg}"
    );
    assert_eq!(e.source.kind(), std::io::ErrorKind::PermissionDenied);

    // Too many failures: a clear give-up after the configured attempts.
    d.fail_next(&vec![(503, "down".to_string()); 6]);
    let e = be.load(FileType::Snapshot, &n).unwrap_err().to_string();
    assert!(
        e.contains("gave up after 6 attempts") && e.contains("503"),
        "{e}"
    );
    d.state.lock().unwrap().fails.clear();

    // An expired access token (401): one refresh, then the request goes through.
    d.fail_next(&[(
        401,
        r#"{"error":{"code":401,"message":"Invalid Credentials"}}"#.into(),
    )]);
    assert_eq!(be.load(FileType::Snapshot, &n).unwrap(), b"snap");
    let tokens = d
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.starts_with("POST /token"))
        .count();
    assert_eq!(tokens, 2, "the token was refreshed once");
}

#[test]
fn refused_refresh_token_is_a_clear_error() {
    let d = FakeDrive::start();
    let be = backend(&d, "r", "revoked", 3);
    let e = be.create().unwrap_err().to_string();
    assert!(
        e.contains("invalid_grant") && e.contains("access token"),
        "{e}"
    );
}

#[test]
fn duplicate_names_newest_wins_and_save_cleans_up() {
    let d = FakeDrive::start();
    let be = backend(&d, "r", fakedrive::REFRESH_TOKEN, 3);
    be.create().unwrap();
    be.save(FileType::Config, "", b"one").unwrap();
    // Another writer's (or a crashed save's) second file of the same name, newer.
    let parent = d.named("config")[0].parents.clone();
    d.state.lock().unwrap().fails.clear();
    {
        let mut s = d.state.lock().unwrap();
        let mut f = s
            .files
            .values()
            .find(|f| f.name == "config")
            .unwrap()
            .clone();
        f.id = "id999999".into();
        f.data = b"two".to_vec();
        f.created = "2027-01-01T00:00:00.000000000Z".into();
        f.parents = parent;
        s.files.insert(f.id.clone(), f);
    }
    assert_eq!(d.named("config").len(), 2);
    assert_eq!(
        be.load(FileType::Config, "").unwrap(),
        b"two",
        "the newest is read"
    );
    let k = "ee".repeat(32);
    be.save(FileType::Key, &k, b"k1").unwrap();
    be.save(FileType::Key, &k, b"k1").unwrap();
    assert_eq!(
        d.named(&k).len(),
        1,
        "save removes the older file of its name"
    );
    assert_eq!(be.list(FileType::Key).unwrap(), vec![(k.clone(), 2)]);
    be.remove(FileType::Key, &k).unwrap();
    assert!(d.named(&k).is_empty());
}

#[test]
fn the_storage_quota_comes_from_about() {
    let d = FakeDrive::start();
    let be = backend(&d, "q", fakedrive::REFRESH_TOKEN, 5);
    be.create().unwrap();
    // Unlimited storage: no room to tell.
    assert_eq!(be.space().unwrap(), None);
    d.state.lock().unwrap().quota = Some(1_000_000);
    be.save(FileType::Key, &"ab".repeat(32), &[1u8; 300_000])
        .unwrap();
    let s = be.space().unwrap().expect("a limit is set");
    assert_eq!((s.total, s.available), (1_000_000, 700_000));
    assert!(d
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|l| l == "GET /drive/v3/about"));
}
