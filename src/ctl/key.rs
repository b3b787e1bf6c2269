//! `backupctl key list|add|remove|passwd`: the repository's keys, as restic's `key` command (several passwords per repository; the key in use is never removed).

use super::Ctx;
use crate::error::{exit, Result};
use crate::repo::keys;
use crate::repo::open::{open_repository, open_unlocked, LockMode};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand, Debug)]
pub(crate) enum What {
    /// List the keys (`*`: the one your password opened).
    List,
    /// Add a key for another password (the repository's data stays as it is).
    Add(NewKey),
    /// Remove a key (not the one your password opened).
    Remove {
        /// The key's id (a unique prefix is enough; see `key list`).
        id: String,
    },
    /// Change the password: add a key for the new one, then remove the one in use.
    Passwd(NewKey),
}

#[derive(clap::Args, Debug)]
pub(crate) struct NewKey {
    /// The new password: the first line of this file.
    #[arg(long)]
    pub new_password_file: PathBuf,
    /// The host name recorded in the new key (this host's by default).
    #[arg(long)]
    pub host: Option<String>,
    /// The user name recorded in the new key (yours by default).
    #[arg(long)]
    pub user: Option<String>,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    match a.what {
        What::List => list(ctx),
        What::Add(n) => {
            let pw = new_password(&n)?;
            let (repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Shared)?;
            let id = keys::add(&repo, &pw, n.user.as_deref(), n.host.as_deref())?;
            done(ctx, "added", &id)
        }
        What::Remove { id } => {
            let (repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
            let name = keys::find(&repo, &id)?;
            keys::remove(&repo, &name)?;
            done(ctx, "removed", &name)
        }
        What::Passwd(n) => {
            let pw = new_password(&n)?;
            let (repo, _lock) = open_repository(&ctx.repo_settings()?, LockMode::Exclusive)?;
            let id = keys::passwd(&repo, &pw, n.user.as_deref(), n.host.as_deref())?;
            done(ctx, "saved new key", &id)
        }
    }
}

fn new_password(n: &NewKey) -> Result<Vec<u8>> {
    crate::config::secrets::from_file(
        &n.new_password_file,
        " (the new password)",
        "check --new-password-file",
    )
}

fn done(ctx: &Ctx, what: &str, id: &str) -> Result<i32> {
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({ "message_type": what, "id": id }));
    } else {
        ctx.say(format!("{what} key {}", &id[..8.min(id.len())]));
    }
    Ok(exit::OK)
}

fn list(ctx: &Ctx) -> Result<i32> {
    let repo = open_unlocked(&ctx.repo_settings()?)?;
    let all = keys::list(&repo)?;
    if ctx.global.json {
        ctx.print_json(&all);
        return Ok(exit::OK);
    }
    println!(" {:<10} {:<12} {:<24} created", "ID", "user", "host");
    for k in &all {
        let created = k
            .created
            .map(|c| keys::created_text(&c))
            .unwrap_or_else(|| format!("(unreadable: {})", k.damaged.as_deref().unwrap_or("")));
        println!(
            "{}{:<10} {:<12} {:<24} {created}",
            if k.current { "*" } else { " " },
            &k.id[..8.min(k.id.len())],
            k.username,
            k.hostname
        );
    }
    Ok(exit::OK)
}
