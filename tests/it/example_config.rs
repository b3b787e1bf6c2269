//! Every example configuration shipped in the repository parses.

#[test]
fn example_configs_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let cfg = backupd::config::Config::load(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(!cfg.jobs.is_empty(), "{} defines no job", p.display());
            n += 1;
        }
    }
    assert!(
        n >= 1,
        "no example configuration found in {}",
        dir.display()
    );
}
