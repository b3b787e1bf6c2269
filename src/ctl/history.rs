//! `backupctl history`: a job's recent runs, from the daemon or, when none runs, its state file.

use super::client::{connect, daemon_error, describe_run};
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::protocol::{Request, Response};
use crate::state::{Loaded, StateStore};
use chrono::Utc;

#[derive(clap::Args, Debug)]
pub(crate) struct HistoryArgs {
    /// The job.
    pub job: String,
    /// How many runs (newest last).
    #[arg(long, short = 'n', default_value = "20")]
    pub limit: usize,
}

/// `backupctl history JOB`: its newest runs, oldest first; from the job's state file when no
/// daemon runs.
pub(crate) fn history(ctx: &Ctx, a: HistoryArgs) -> Result<i32> {
    let runs = match connect(
        &ctx.daemon(),
        Request::History {
            job: a.job.clone(),
            limit: a.limit,
        },
    ) {
        Ok(c) => match c.one()? {
            Response::History { runs, .. } => runs,
            other => return Err(daemon_error(other)),
        },
        Err(e @ Error::NoDaemon { .. }) => {
            let Ok(paths) = ctx.daemon().paths() else {
                return Err(e);
            };
            let st = match StateStore::at(&paths.state_dir).read(&a.job, Utc::now())? {
                Loaded::Good(st) => st,
                Loaded::Bad(bad) => return Err(Error::Input(bad.for_reader())),
                Loaded::Missing => {
                    return Err(Error::Input(format!(
                        "job {:?} has no history in {} (backupd is not running)",
                        a.job,
                        paths.state_dir.display()
                    )))
                }
            };
            let skip = st.history.len().saturating_sub(a.limit);
            st.history.into_iter().skip(skip).collect()
        }
        Err(e) => return Err(e),
    };
    if ctx.global.json {
        ctx.print_json(&runs);
    } else {
        for r in &runs {
            println!("{}", describe_run(r));
            if let Some(e) = &r.error {
                println!("    {}", e.lines().next().unwrap_or(""));
            }
        }
        if runs.is_empty() {
            println!("job {} has not run yet", a.job);
        }
    }
    Ok(exit::OK)
}
