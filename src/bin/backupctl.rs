//! `backupctl`: the control tool. It reads argv, wires SIGINT/SIGTERM to a cancel token and turns a closed stdout into an exit code; all the rest lives in the library (`backupd::ctl`).

use backupd::cancel::CancelToken;
use backupd::ctl;
use backupd::error::exit;
use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

fn main() {
    // glibc keeps freed memory at the top of its heaps up to a threshold that grows with the
    // largest buffer freed (8 MiB chunks, 16 MiB packs); returning it at once keeps the backup's
    // peak RSS below restic's (measured on the bench data set: 206 MiB -> about 140 MiB).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a tuning parameter of the allocator, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 0);
    }
    let cli = match ctl::parse_args() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(ctl::usage_exit_code(&e));
        }
    };
    quiet_output_failures();
    let cancel = cancel_on_signals();
    // `println!` panics when stdout fails; unwinding runs the destructors (a repository lock is
    // removed) and the payload becomes an exit code here.
    let code = match panic::catch_unwind(AssertUnwindSafe(|| ctl::run(cli, cancel))) {
        Ok(code) => code,
        Err(payload) => match output_failure(payload.as_ref()) {
            Some(OutputFailure::ClosedPipe) => exit::CLOSED_PIPE,
            Some(OutputFailure::Other) => exit::FAILURE,
            None => panic::resume_unwind(payload),
        },
    };
    std::process::exit(code);
}

/// A cancel token that SIGINT and SIGTERM set: commands stop at their next safe point (exit 130).
fn cancel_on_signals() -> CancelToken {
    let cancel = CancelToken::new();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, cancel.flag()) {
            eprintln!("warning: cannot catch signal {sig} ({e}); it will end backupctl at once");
        }
    }
    cancel
}

enum OutputFailure {
    /// The reader of stdout went away (`| head`): nothing to say.
    ClosedPipe,
    /// Any other failure to write the output (a full disk, an I/O error).
    Other,
}

/// Which failure to write stdout or stderr a panic payload is, if it is one (std's `print!`
/// panics with "failed printing to stdout: ERROR").
fn output_failure(payload: &(dyn Any + Send)) -> Option<OutputFailure> {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())?;
    if !msg.starts_with("failed printing to std") {
        return None;
    }
    let closed = msg.contains("Broken pipe") || msg.contains("os error 232");
    Some(if closed {
        OutputFailure::ClosedPipe
    } else {
        OutputFailure::Other
    })
}

/// Replaces the panic message of a failed write to stdout with one line of error (none for a
/// closed pipe); every other panic keeps the default report.
fn quiet_output_failures() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| match output_failure(info.payload()) {
        Some(OutputFailure::ClosedPipe) => {}
        Some(OutputFailure::Other) => {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map_or("", String::as_str);
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("error: cannot write the output: {msg}\n  hint: check the file or device standard output goes to (a full disk?)\n").as_bytes(),
            );
        }
        None => default(info),
    }));
}
