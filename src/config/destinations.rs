//! Several destinations per job: `repositories = ["local", "offsite"]` checked at line:col, and each destination after the first expanded into a copy job `NAME@REPO` of its own.
//!
//! ```toml
//! [jobs.app]
//! repositories = ["local", "offsite"]   # backs up into "local", then copies to "offsite"
//! retention = { keep_last = 30 }         # "local"'s (and every destination's by default)
//!
//! [jobs.app.destinations.offsite]
//! retention = { keep_last = 50 }
//! retries = { attempts = 10, delay = "5m", max_delay = "1h" }
//! ```
//!
//! A destination job has its own state file, history, health, notifications and metrics
//! (they are keyed by job name), its own retries and its own retention. It has no schedule:
//! the daemon starts it after each run of its job that saved a snapshot, and it copies every
//! snapshot of the job its repository is missing, oldest first — so a destination that was
//! unreachable catches up on its own.

use super::{JobConfig, RepositoryConfig, RetentionConfig, RunRetryConfig, Source};
use crate::error::Result;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The separator of a destination job's name (`app@offsite`); job names cannot contain it.
pub const SEPARATOR: char = '@';

/// A `[jobs.NAME.destinations.REPO]` table: what differs for that destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Its retention (default: the job's).
    pub retention: Option<RetentionConfig>,
    /// How a failed copy is retried (default: the job's `retries`).
    pub retries: Option<RunRetryConfig>,
}

/// What makes a job a destination job: whose snapshots it copies, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationOf {
    /// The job that backs up (its snapshots carry the tag `job:NAME`).
    pub job: String,
    /// The repository it backs up into (the job's first), which the copies come from.
    pub from: String,
}

/// The name of the job that copies `job`'s snapshots to `repo`.
pub fn job_name(job: &str, repo: &str) -> String {
    format!("{job}{SEPARATOR}{repo}")
}

/// A placeholder for a job that gives `repositories` instead of `repository` (it is never
/// seen after [`resolve`]).
pub(super) fn unset() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, String::new())
}

/// Sets the job's `repository` from `repositories` (exactly one of the two is given), and
/// checks that every destination is defined, named once, and that each
/// `destinations` table names one of them other than the first.
pub(super) fn resolve(
    src: &Source,
    repositories: &BTreeMap<String, RepositoryConfig>,
    name: &str,
    j: &mut JobConfig,
) -> Result<()> {
    let Some(list) = &j.repositories else {
        if j.repository.get_ref().is_empty() {
            return Err(src.invalid_at(src.table_start(&format!("jobs.{name}")), format!(
                "job {name:?} names no repository\n  hint: add repository = \"NAME\" (or repositories = [\"NAME\", ...]) naming a [repositories.NAME] table"
            )));
        }
        if let Some(k) = j.destinations.keys().next() {
            return Err(src.invalid_at(k.span().start, format!(
                "job {name:?} has a destinations table for {:?} but only one repository\n  hint: list it: repositories = [{:?}, {:?}]",
                k.get_ref(), j.repository.get_ref(), k.get_ref()
            )));
        }
        return Ok(());
    };
    if !j.repository.get_ref().is_empty() {
        return Err(src.invalid_at(j.repository.span().start, format!(
            "job {name:?} gives both repository and repositories\n  hint: keep one: repositories = [{:?}, ...] backs up into the first and copies to the others",
            j.repository.get_ref()
        )));
    }
    let Some(first) = list.get_ref().first() else {
        return Err(src.invalid_at(list.span().start, format!(
            "job {name:?}: repositories is empty\n  hint: name at least one [repositories.NAME] table"
        )));
    };
    for (i, r) in list.get_ref().iter().enumerate() {
        super::check_repository_name(src, repositories, name, r)?;
        if list.get_ref()[..i]
            .iter()
            .any(|o| o.get_ref() == r.get_ref())
        {
            return Err(src.invalid_at(
                r.span().start,
                format!(
                    "job {name:?} names the repository {:?} twice in repositories",
                    r.get_ref()
                ),
            ));
        }
    }
    for k in j.destinations.keys() {
        if k.get_ref() == first.get_ref()
            || !list.get_ref().iter().any(|r| r.get_ref() == k.get_ref())
        {
            return Err(src.invalid_at(k.span().start, format!(
                "job {name:?}: destinations.{} is not one of the repositories it copies to ({})\n  hint: the first repository's retention and retries are the job's own (retention, retries); a destinations table is for the others",
                k.get_ref(),
                others(list.get_ref()),
            )));
        }
        check_retention(src, name, k, j.destinations[k].retention.as_ref())?;
    }
    j.repository = first.clone();
    Ok(())
}

/// The repositories after the first, for messages.
fn others(list: &[toml::Spanned<String>]) -> String {
    let v: Vec<&str> = list.iter().skip(1).map(|r| r.get_ref().as_str()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn check_retention(
    src: &Source,
    name: &str,
    k: &toml::Spanned<String>,
    r: Option<&RetentionConfig>,
) -> Result<()> {
    match r {
        Some(r) if r.policy().is_empty() => Err(src.invalid_at(k.span().start, format!(
            "job {name:?}: destinations.{}.retention keeps nothing — it needs at least one keep_* rule\n  hint: e.g. retention = {{ keep_last = 50 }}",
            k.get_ref()
        ))),
        _ => Ok(()),
    }
}

/// The destination jobs of `name` (`NAME@REPO` for each repository after its first).
pub(super) fn expand(name: &str, j: &JobConfig) -> Vec<(String, JobConfig)> {
    let Some(list) = &j.repositories else {
        return Vec::new();
    };
    list.get_ref()
        .iter()
        .skip(1)
        .map(|repo| {
            let own = j
                .destinations
                .iter()
                .find(|(k, _)| k.get_ref() == repo.get_ref())
                .map(|(_, d)| d.clone())
                .unwrap_or_default();
            (
                job_name(name, repo.get_ref()),
                destination_job(name, j, repo, own),
            )
        })
        .collect()
}

/// The copy job of one destination: the job's health, notifications and start-up delay; its
/// own (or the job's) retention and retries; no schedule, sources, hooks, size limits or
/// jitter.
fn destination_job(
    name: &str,
    j: &JobConfig,
    repo: &toml::Spanned<String>,
    own: DestinationConfig,
) -> JobConfig {
    JobConfig {
        repository: repo.clone(),
        repositories: None,
        destinations: BTreeMap::new(),
        destination_of: Some(DestinationOf {
            job: name.to_string(),
            from: j.repository.get_ref().clone(),
        }),
        paths: Vec::new(),
        sqlite: Vec::new(),
        commands: Vec::new(),
        hooks: Default::default(),
        schedule: None,
        timezone: None,
        parsed_schedule: None,
        catch_up: Default::default(),
        jitter: Default::default(),
        max_source_size: None,
        max_added_size: None,
        retries: own.retries.unwrap_or(j.retries),
        retention: own.retention.or_else(|| j.retention.clone()),
        ..j.clone()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    const REPOS: &str = "[repositories.local]\npath = \"/l\"\npassword_file = \"/p\"\n[repositories.offsite]\npath = \"/o\"\npassword_file = \"/p\"\n";

    fn parse(job: &str) -> crate::Result<Config> {
        Config::parse(
            &format!("{REPOS}[jobs.app]\npaths = [\"/srv\"]\n{job}"),
            Path::new("c.toml"),
        )
    }

    fn err(job: &str) -> String {
        parse(job).unwrap_err().to_string()
    }

    #[test]
    fn each_destination_after_the_first_is_a_copy_job_with_its_own_retention_and_retries() {
        let c = parse(
            "schedule = \"@daily\"\nrepositories = [\"local\", \"offsite\"]\nretention = { keep_last = 30 }\nretries = { attempts = 2 }\nhooks = { before = [\"true\"] }\n[jobs.app.destinations.offsite]\nretention = { keep_last = 50 }\nretries = { attempts = 9 }\n",
        )
        .unwrap();
        let app = &c.jobs["app"];
        assert_eq!(app.repository.get_ref(), "local");
        assert!(app.destination_of.is_none() && app.parsed_schedule.is_some());
        assert_eq!(c.destinations_of("app"), ["app@offsite"]);
        let d = &c.jobs["app@offsite"];
        assert_eq!(d.repository.get_ref(), "offsite");
        assert_eq!(
            d.destination_of,
            Some(super::DestinationOf {
                job: "app".into(),
                from: "local".into()
            })
        );
        assert!(d.schedule.is_none() && d.parsed_schedule.is_none());
        assert!(d.hooks.before.is_empty(), "hooks belong to the backup");
        assert!(d.paths.is_empty(), "so are the sources");
        assert_eq!(d.retention.as_ref().unwrap().keep_last, Some(50));
        assert_eq!(d.retries.attempts, 9);
        assert!(c.destinations_of("app@offsite").is_empty());
    }

    #[test]
    fn a_destination_without_its_own_table_takes_the_jobs_retention_and_retries() {
        let c = parse("repositories = [\"local\", \"offsite\"]\nretention = { keep_last = 30 }\nretries = { attempts = 4 }\n").unwrap();
        let d = &c.jobs["app@offsite"];
        assert_eq!(d.retention.as_ref().unwrap().keep_last, Some(30));
        assert_eq!(d.retries.attempts, 4);
        let one = parse("repositories = [\"local\"]\n").unwrap();
        assert_eq!(one.jobs.len(), 1);
        assert_eq!(one.jobs["app"].repository.get_ref(), "local");
    }

    #[test]
    fn exclusion_rules_of_a_job_are_checked_with_it() {
        let c = parse("repository = \"local\"\nexclude_if_present = [\".nobackup\", \"TAG:hdr\"]\nexclude_larger_than = \"100M\"\n").unwrap();
        assert_eq!(c.jobs["app"].exclude_larger_than, Some(100 << 20));
        let e = err("repository = \"local\"\nexclude_if_present = [\"a/b\"]\n");
        assert!(e.contains("c.toml:7:1") && e.contains("without '/'"), "{e}");
    }

    #[test]
    fn mistakes_are_refused_at_their_line_and_column() {
        let e = err("repositories = [\"local\", \"nowhere\"]\n");
        assert!(
            e.contains("c.toml:9:26: job \"app\" names the repository \"nowhere\""),
            "{e}"
        );
        let e = err("repositories = [\"local\", \"local\"]\n");
        assert!(e.contains("c.toml:9:26") && e.contains("twice"), "{e}");
        let e = err("repository = \"local\"\nrepositories = [\"local\"]\n");
        assert!(
            e.contains("c.toml:9:14") && e.contains("both repository and repositories"),
            "{e}"
        );
        let e = err("repositories = []\n");
        assert!(
            e.contains("c.toml:9:16") && e.contains("repositories is empty"),
            "{e}"
        );
        let e = err("");
        assert!(
            e.contains("c.toml:7:1: job \"app\" names no repository"),
            "{e}"
        );
        let e = err("repositories = [\"local\", \"offsite\"]\n[jobs.app.destinations.local]\nretries = { attempts = 1 }\n");
        assert!(
            e.contains("c.toml:10:24") && e.contains("destinations.local is not one of"),
            "{e}"
        );
        let e = err("repository = \"local\"\n[jobs.app.destinations.offsite]\n");
        assert!(
            e.contains("c.toml:10:24") && e.contains("only one repository"),
            "{e}"
        );
        let e = err("repositories = [\"local\", \"offsite\"]\n[jobs.app.destinations.offsite]\nretention = { keep_tags = [] }\n");
        assert!(
            e.contains("c.toml:10:24") && e.contains("keeps nothing"),
            "{e}"
        );
        let e = err("repositories = [\"local\", \"offsite\"]\n[jobs.app.destinations.offsite]\nschedule = \"@daily\"\n");
        assert!(
            e.contains("c.toml:11:1") && e.contains("unknown field"),
            "{e}"
        );
    }
}
