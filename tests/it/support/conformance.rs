//! The contract every `Backend` must keep, as one test run against a fresh backend.

use backupd::repo::backend::{Backend, FileType};

fn name(i: u64) -> String {
    let h = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(i.to_le_bytes()));
    assert_eq!(h.len(), 64);
    h
}

/// Runs the contract; `large` is the size of the large-file case.
pub fn run(be: &dyn Backend, large: usize) {
    be.create().expect("create a new repository");
    // An empty repository lists nothing and has no config.
    for t in [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Pack,
        FileType::Lock,
    ] {
        assert!(be.list(t).unwrap().is_empty(), "{t:?} must start empty");
    }
    assert!(!be.exists(FileType::Config, "").unwrap());
    let e = be.load(FileType::Config, "").unwrap_err();
    assert!(
        e.is_not_found(),
        "loading a missing config must be not-found: {e}"
    );

    be.save(FileType::Config, "", b"config v1").unwrap();
    assert!(be.exists(FileType::Config, "").unwrap());
    assert_eq!(be.load(FileType::Config, "").unwrap(), b"config v1");
    let e = be.create().unwrap_err();
    assert!(
        e.to_string().contains("already exists"),
        "create over a repository must fail clearly: {e}"
    );
    // Overwrite replaces the whole content.
    be.save(FileType::Config, "", b"config v2, longer").unwrap();
    assert_eq!(be.load(FileType::Config, "").unwrap(), b"config v2, longer");

    // Every type, in its place; lists give names and sizes.
    let types = [
        FileType::Key,
        FileType::Snapshot,
        FileType::Index,
        FileType::Lock,
    ];
    for (i, t) in types.iter().enumerate() {
        let n = name(i as u64);
        let data = format!("{t:?} file {i}").into_bytes();
        be.save(*t, &n, &data).unwrap();
        assert!(be.exists(*t, &n).unwrap());
        assert_eq!(be.load(*t, &n).unwrap(), data);
        assert_eq!(be.list(*t).unwrap(), vec![(n.clone(), data.len() as u64)]);
        // Other types do not see it.
        for o in types.iter().filter(|o| *o != t) {
            assert!(!be.exists(*o, &n).unwrap());
        }
    }
    // Packs spread over data/XX; empty files are fine.
    let mut packs: Vec<(String, u64)> = Vec::new();
    for i in 10..20u64 {
        let n = name(i);
        let data = vec![i as u8; (i as usize - 10) * 1000];
        be.save(FileType::Pack, &n, &data).unwrap();
        packs.push((n, data.len() as u64));
    }
    let mut listed = be.list(FileType::Pack).unwrap();
    listed.sort();
    packs.sort();
    assert_eq!(listed, packs);

    // A large file, whole and in ranges (over chunk boundaries, at the end).
    let big: Vec<u8> = (0..large)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let bn = name(99);
    be.save(FileType::Pack, &bn, &big).unwrap();
    assert!(
        be.load(FileType::Pack, &bn).unwrap() == big,
        "large file round trip"
    );
    for (off, len) in [
        (0usize, 1usize),
        (1, 70_000),
        (32_767, 65_538),
        (large - 10, 10),
        (large / 3, large / 2),
    ] {
        assert!(
            be.load_range(FileType::Pack, &bn, off as u64, len).unwrap() == big[off..off + len],
            "range {off}+{len}"
        );
    }
    assert!(
        be.load_range(FileType::Pack, &bn, (large - 5) as u64, 10)
            .is_err(),
        "a range past the end must fail"
    );
    assert!(be
        .list(FileType::Pack)
        .unwrap()
        .contains(&(bn.clone(), large as u64)));

    // Overwrite of a content-addressed file (a retried upload) keeps it readable.
    be.save(FileType::Pack, &bn, &big).unwrap();
    assert!(be.load(FileType::Pack, &bn).unwrap() == big);
    assert_eq!(
        be.list(FileType::Pack)
            .unwrap()
            .iter()
            .filter(|(n, _)| *n == bn)
            .count(),
        1,
        "one name, one listing entry"
    );

    // Remove; a missing file is not-found.
    be.remove(FileType::Pack, &bn).unwrap();
    assert!(!be.exists(FileType::Pack, &bn).unwrap());
    let e = be.load(FileType::Pack, &bn).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        be.remove(FileType::Pack, &bn).is_err(),
        "removing a missing file fails"
    );
    for (n, _) in &packs {
        be.remove(FileType::Pack, n).unwrap();
    }
    assert!(be.list(FileType::Pack).unwrap().is_empty());
    let e = be.load(FileType::Key, &name(1234)).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(
        e.to_string().contains(&name(1234)),
        "the error names the file: {e}"
    );
}
