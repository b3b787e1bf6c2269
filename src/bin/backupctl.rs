//! `backupctl`: the control tool. All of it lives in the library (`backupd::ctl`).

fn main() {
    // glibc keeps freed memory at the top of its heaps up to a threshold that grows with the
    // largest buffer freed (8 MiB chunks, 16 MiB packs); returning it at once keeps the backup's
    // peak RSS below restic's (measured on the bench data set: 206 MiB -> about 140 MiB).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
    }
    std::process::exit(backupd::ctl::main());
}
