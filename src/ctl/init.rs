//! `backupctl init`: create a repository.

use super::Ctx;
use crate::error::{exit, Result};
use crate::repo::Repository;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(ctx: &Ctx, _a: Args) -> Result<i32> {
    let be = ctx.backend()?;
    let pw = ctx.password()?;
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
