//! `backupctl init`: create a repository.

use super::Ctx;

use crate::error::{exit, Result};
use crate::repo::Repository;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {}

pub(crate) fn run(ctx: &Ctx, _a: Args) -> Result<i32> {
    let settings = ctx.repo_settings()?;
    let be = settings.backend()?;
    let pw = settings.password()?;
    let repo = Repository::init(be, &pw)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "message_type": "initialized",
            "id": repo.config().id,
            "repository": repo.location(),
            "version": repo.config().version,
        }));
    } else {
        ctx.say(format!(
            "created repository {} at {} (format version {})",
            &repo.config().id[..10],
            repo.location(),
            repo.config().version
        ));
        ctx.say("Keep the password safe: without it the data cannot be read back.");
    }
    Ok(exit::OK)
}
