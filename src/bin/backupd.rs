//! `backupd`: the backup daemon (scheduler and service; see issue #4). For now it only reports its version.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("backupd {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    eprintln!(
        "backupd: the daemon is not built yet; use backupctl to work on a repository directly"
    );
    std::process::exit(1);
}
