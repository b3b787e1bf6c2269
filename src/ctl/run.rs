//! `backupctl run` and `backupctl cancel`: ask the daemon to start a job's run now (and follow it), or to stop it.

use super::client::{connect, daemon_error, describe_run};
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::protocol::{Request, Response};

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The job to run now.
    pub job: String,
    /// Follow the run to its end and exit with its outcome (0 success, 3 partial, 5 source failed, ...).
    #[arg(long, short = 'w')]
    pub wait: bool,
    /// Retry the run after a failure, as the job's `retries` say (a manual run is not retried
    /// otherwise).
    #[arg(long)]
    pub retry: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct JobArgs {
    /// The job.
    pub job: String,
}

/// `backupctl run JOB`: the daemon starts the job now; with --wait, its events are shown and the
/// exit code is the run's.
pub(crate) fn run(ctx: &Ctx, a: RunArgs) -> Result<i32> {
    let mut c = connect(
        &ctx.daemon(),
        Request::Run {
            job: a.job.clone(),
            wait: a.wait,
            retry: a.retry,
        },
    )?;
    let run_id = match c.next()? {
        Some(Response::Accepted { run_id, .. }) => run_id,
        Some(other) => return Err(daemon_error(other)),
        None => {
            return Err(Error::Input(
                "backupd closed the connection without an answer".into(),
            ))
        }
    };
    if !a.wait {
        if ctx.global.json {
            ctx.print_json(&serde_json::json!({"job": a.job, "run_id": run_id, "started": true}));
        } else {
            ctx.say(format!(
                "started job {} (run {run_id}); follow it with `backupctl logs -f --job {}`",
                a.job, a.job
            ));
        }
        return Ok(exit::OK);
    }
    ctx.say(format!("job {} running (run {run_id})", a.job));
    loop {
        match c.next()? {
            Some(Response::Event { message, .. }) => {
                if !ctx.global.json && !ctx.global.quiet {
                    eprintln!("  {message}");
                }
            }
            Some(Response::Finished(rec)) => {
                if ctx.global.json {
                    ctx.print_json(&rec);
                } else {
                    println!("{}", describe_run(&rec));
                    if let Some(e) = &rec.error {
                        eprintln!("error: {e}");
                    }
                }
                return Ok(rec.exit_code);
            }
            Some(other) => return Err(daemon_error(other)),
            None => {
                return Err(Error::Input(format!(
                    "backupd closed the connection before run {run_id} ended\n  hint: see `backupctl history {}` and `backupctl logs --run-id {run_id}`",
                    a.job
                )))
            }
        }
    }
}

/// `backupctl cancel JOB`: the daemon stops the job's current run at its next safe point.
pub(crate) fn cancel(ctx: &Ctx, a: JobArgs) -> Result<i32> {
    match connect(&ctx.daemon(), Request::Cancel { job: a.job.clone() })?.one()? {
        Response::Cancelled { job, run_id } => {
            if ctx.global.json {
                ctx.print_json(
                    &serde_json::json!({"job": job, "run_id": run_id, "cancelled": true}),
                );
            } else {
                ctx.say(format!(
                    "asked run {run_id} of job {job} to stop at its next safe point"
                ));
            }
            Ok(exit::OK)
        }
        other => Err(daemon_error(other)),
    }
}
