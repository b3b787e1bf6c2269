//! `backupctl copy`: copy snapshots (and the data they need) from one repository into another.

use super::snapshots::FilterArgs;
use super::Ctx;
use crate::engine::copy;
use crate::error::{exit, Error, Result};
use crate::repo::open::{open_unlocked, RepoSettings};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The source repository (a directory, s3:…, rest:…, sftp:…, gdrive:…).
    #[arg(long)]
    pub from: String,
    /// The target repository (default: -r/--repo).
    #[arg(long)]
    pub to: Option<String>,
    /// The source's password file (default: the target's password options).
    #[arg(long)]
    pub from_password_file: Option<PathBuf>,
    /// A command printing the source's password (default: the target's password options).
    #[arg(long)]
    pub from_password_command: Option<String>,
    /// Copy every snapshot (that matches the filters).
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Snapshot ids (or prefixes, or `latest`) to copy.
    pub snapshots: Vec<String>,
}

pub(crate) fn run(ctx: &Ctx, a: Args) -> Result<i32> {
    if a.all != a.snapshots.is_empty() {
        return Err(Error::Input(
            "copy needs snapshot ids or --all (not both)\n  hint: `backupctl copy --from SRC --to DST --all`".into(),
        ));
    }
    let to = match &a.to {
        Some(t) => t.clone(),
        None => ctx.location()?,
    };
    let creds = ctx.credentials();
    let dst_pw = ctx.password()?;
    let src_pw = if let Some(f) = &a.from_password_file {
        crate::config::secrets::from_file(
            f,
            " of the source repository",
            "check --from-password-file",
        )?
    } else if let Some(c) = &a.from_password_command {
        crate::config::secrets::from_command(
            c,
            " of the source repository",
            "check --from-password-command",
        )?
    } else {
        dst_pw.clone()
    };
    // Both passwords were read first: the settings only hand them over.
    let settings = |location: &str, pw: Vec<u8>, compression| RepoSettings {
        location: location.to_string(),
        credentials: creds.clone(),
        password: Box::new(move || Ok(pw.clone())),
        lock_wait: ctx.lock_wait(),
        on_lock_wait: None,
        cancel: Some(&ctx.cancel),
        compression,
    };
    let mut src = open_unlocked(&settings(&a.from, src_pw, None))?;
    let mut dst = open_unlocked(&settings(
        &to,
        dst_pw,
        Some(ctx.global.compression.unwrap_or_default()),
    ))?;
    if src.config().id == dst.config().id {
        return Err(Error::Input(format!(
            "{} and {to} are the same repository (id {})",
            a.from,
            &src.config().id[..10]
        )));
    }
    let notice = ctx.lock_notice();
    let waiting = crate::repo::lock::Waiting {
        up_to: ctx.lock_wait(),
        cancel: Some(&ctx.cancel),
        notice: &*notice,
    };
    let _src_lock = crate::repo::lock::lock_waiting(&src, false, &waiting)?;
    let _dst_lock = crate::repo::lock::lock_waiting(&dst, false, &waiting)?;
    src.load_index()?;
    dst.load_index()?;
    let all = super::snapref::load(ctx, &src)?;
    let filter = a.filter.filter();
    let selected: Vec<_> = if a.all {
        all.readable
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect()
    } else {
        let mut v = Vec::new();
        for spec in &a.snapshots {
            let latest = super::snapref::Latest::Refuse {
                hint: super::snapref::BY_ID,
            };
            let found = super::snapref::find(&all, spec, &filter, latest).map_err(|e| match e {
                Error::Input(m) => Error::Input(format!("in the source {}: {m}", a.from)),
                e => e,
            })?;
            if !v.iter().any(|(i, _)| *i == found.0) {
                v.push(found.clone());
            }
        }
        v
    };
    let progress = ctx.progress();
    let r = copy::copy(&src, &mut dst, &selected, progress.as_ref(), &ctx.cancel)?;
    if ctx.global.json {
        ctx.print_json(&serde_json::json!({
            "message_type": "copy",
            "from": src.location(),
            "to": dst.location(),
            "copied": r.copied.iter().map(|(s, d)| serde_json::json!({"source": s, "target": d})).collect::<Vec<_>>(),
            "skipped": r.skipped.iter().map(|(s, d)| serde_json::json!({"source": s, "target": d})).collect::<Vec<_>>(),
            "blobs_copied": r.blobs_copied,
            "bytes_copied": r.bytes_copied,
        }));
    } else {
        for (s, d) in &r.skipped {
            ctx.say(format!(
                "snapshot {} skipped: the target has it as {}",
                s.short(),
                d.short()
            ));
        }
        for (s, d) in &r.copied {
            ctx.say(format!("snapshot {} copied as {}", s.short(), d.short()));
        }
        ctx.say(format!(
            "copied {} snapshot(s), skipped {}; {} blob(s), {} bytes",
            r.copied.len(),
            r.skipped.len(),
            r.blobs_copied,
            r.bytes_copied
        ));
    }
    Ok(exit::OK)
}
