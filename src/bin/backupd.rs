//! `backupd`: the backup daemon. All of it lives in the library (`backupd::daemon`).

fn main() {
    // As in backupctl: return freed buffers (chunks, packs) to the OS at once.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
    }
    std::process::exit(backupd::daemon::main());
}
