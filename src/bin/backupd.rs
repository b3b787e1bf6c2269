//! `backupd`: the backup daemon. It reads argv and installs the signal handlers; all the rest lives in the library (`backupd::daemon`).

use backupd::daemon::{signal_channel, Cli, Signal, Signals};
use clap::Parser;

fn main() {
    // As in backupctl: return freed buffers (chunks, packs) to the OS at once.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    std::process::exit(backupd::daemon::main(cli, forward_signals()));
}

/// SIGTERM, SIGINT and SIGHUP, caught on a thread of their own and handed to the daemon.
#[cfg(unix)]
fn forward_signals() -> Signals {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (tx, rx) = signal_channel();
    match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(mut caught) => {
            std::thread::spawn(move || {
                for s in caught.forever() {
                    let sig = match s {
                        SIGTERM => Signal::Terminate,
                        SIGINT => Signal::Interrupt,
                        _ => Signal::Hangup,
                    };
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
        }
        Err(e) => eprintln!(
            "backupd: cannot install the signal handlers ({e}); SIGTERM and SIGINT will end backupd at once, without its graceful stop"
        ),
    }
    rx
}

/// Ctrl-C (the console's break), caught on a thread of its own and handed to the daemon.
#[cfg(not(unix))]
fn forward_signals() -> Signals {
    let (tx, rx) = signal_channel();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            let _ = tx.send(Signal::Interrupt);
        }
    });
    rx
}
