//! `backupctl logs`: the daemon's log files, filtered by job or run, tailed and followed; with `--json`, one JSON object per line (JSON Lines).

use super::Ctx;
use crate::error::{exit, Result};
use crate::logfiles::{self, LogFilter};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct LogsArgs {
    /// Keep printing new lines as the daemon writes them (Ctrl-C to stop).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only lines of this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only lines of this run.
    #[arg(long)]
    pub run_id: Option<String>,
    /// How many lines to show first.
    #[arg(long, short = 'n', default_value = "50")]
    pub lines: usize,
    /// The log folder (default: the configuration's).
    #[arg(long)]
    pub log_dir: Option<PathBuf>,
}

/// `backupctl logs`: the last lines of the daemon's logs (filtered), then with -f the new ones.
pub(crate) fn logs(ctx: &Ctx, a: LogsArgs) -> Result<i32> {
    let dir = match &a.log_dir {
        Some(d) => d.clone(),
        None => ctx
            .daemon()
            .paths()
            .map(|p| p.log_dir)
            .unwrap_or_else(|_| crate::paths::default_log_dir()),
    };
    let filter = LogFilter {
        job: a.job.clone(),
        run_id: a.run_id.clone(),
    };
    let json = ctx.global.json;
    for l in logfiles::tail(&dir, a.lines, &filter)? {
        print_line(&l, json);
    }
    if a.follow {
        let cancel = ctx.cancel.clone();
        logfiles::follow(&dir, &filter, &mut |l| print_line(l, json), &|| {
            cancel.is_cancelled()
        })?;
    }
    Ok(exit::OK)
}

/// A line as written, or with --json as a [`logfiles::LogRecord`] on one line.
fn print_line(line: &str, json: bool) {
    if json {
        let record = logfiles::record(line);
        println!(
            "{}",
            serde_json::to_string(&record).expect("a record of strings serializes")
        );
    } else {
        println!("{line}");
    }
}
