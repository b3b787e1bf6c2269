//! `backupctl reload`: ask the daemon to read its configuration again.

use super::client::{connect, daemon_error};
use super::Ctx;
use crate::error::{exit, Result};
use crate::protocol::{Request, Response};

/// `backupctl reload`: the daemon reads its configuration again and names its jobs.
pub(crate) fn reload(ctx: &Ctx) -> Result<i32> {
    match connect(&ctx.daemon(), Request::Reload)?.one()? {
        Response::Reloaded { jobs } => {
            if ctx.global.json {
                ctx.print_json(&serde_json::json!({"reloaded": true, "jobs": jobs}));
            } else {
                ctx.say(format!(
                    "configuration reloaded: {} job(s): {}",
                    jobs.len(),
                    jobs.join(", ")
                ));
            }
            Ok(exit::OK)
        }
        other => Err(daemon_error(other)),
    }
}
