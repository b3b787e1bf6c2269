//! `backupctl`: the control tool. All of it lives in the library (`backupd::ctl`).

fn main() {
    std::process::exit(backupd::ctl::main());
}
