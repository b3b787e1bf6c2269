//! Prometheus metrics in the text exposition format, for node_exporter's textfile collector: [`render`] (pure) and [`write_textfile`] (an atomic replace of a `.prom` file).
//!
//! Every metric is a gauge named `backupd_...`, with `# HELP` and `# TYPE` once per family,
//! the families in a fixed order and their series sorted by label values, so the output is
//! deterministic. A series whose value is unknown (a job that never succeeded has no
//! `backupd_job_last_success_timestamp_seconds`) is left out rather than written as NaN, so
//! `absent()` / `time() - ...` alerts behave.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::monitor::health::Level;
use crate::record::Outcome;

/// What is known about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobMetrics {
    /// The job's name (label `job`).
    pub job: String,
    /// Its repository as configured (label `repository`).
    pub repository: String,
    /// When its newest `success` or `partial` run ended.
    pub last_success: Option<DateTime<Utc>>,
    /// When its newest run ended, whatever the outcome.
    pub last_run_end: Option<DateTime<Utc>>,
    /// How long that run took.
    pub last_duration_seconds: Option<f64>,
    /// That run's outcome.
    pub last_outcome: Option<Outcome>,
    /// Bytes that run added to the repository.
    pub last_data_added: Option<u64>,
    /// Bytes that run read from the sources.
    pub last_bytes_processed: Option<u64>,
    /// New files that run found (`backupd_job_last_run_new_files`).
    pub last_files_new: Option<u64>,
    /// Failed runs since the last success.
    pub consecutive_failures: u32,
    /// [`crate::monitor::health::job_health`]'s level.
    pub health: Level,
    /// A run is in progress.
    pub running: bool,
    /// [`crate::monitor::health::JobHealth::missed_slots`].
    pub missed_slots: u32,
}

/// What is known about one repository.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RepoMetrics {
    /// The repository as configured (label `repository`).
    pub repository: String,
    /// Its size on its storage.
    pub size_bytes: Option<u64>,
    /// How many snapshots it holds.
    pub snapshots: Option<u64>,
    /// The room left on its storage, where the storage tells.
    pub free_bytes: Option<u64>,
    /// The size (or quota) of its storage, where the storage tells.
    pub capacity_bytes: Option<u64>,
    /// The share of its packs verified in the current read-data cycle (with a read-data drill).
    pub coverage: Option<f64>,
    /// Its verification drills' newest results.
    pub drills: Vec<DrillMetrics>,
}

/// The newest result of one verification drill of a repository.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillMetrics {
    /// check, read-data or restore-drill (label `drill`).
    pub drill: String,
    pub ok: bool,
    pub last_end: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
}

/// Everything [`render`] writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// One per job (sorted and deduplicated by [`render`]).
    pub jobs: Vec<JobMetrics>,
    /// One per repository.
    pub repositories: Vec<RepoMetrics>,
    /// When backupd started.
    pub daemon_start: DateTime<Utc>,
    /// When these values were collected (`backupd_metrics_generated_timestamp_seconds`).
    pub generated: DateTime<Utc>,
    /// backupd's version (`backupd_build_info{version}`).
    pub version: String,
}

/// Why the metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// node_exporter's textfile collector reads `*.prom` only.
    #[error("metrics file {path}: the name must end in \".prom\", the only files node_exporter's textfile collector reads (e.g. /var/lib/node_exporter/textfile_collector/backupd.prom)")]
    NotProm {
        /// The path as given.
        path: PathBuf,
    },
    /// Writing, syncing or renaming failed.
    #[error("cannot write metrics file {path}: {source}; check that its folder exists and that backupd may write there")]
    Write {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// A label value escaped for the exposition format: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escaped: `\` → `\\`, newline → `\n`.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: Go-style `+Inf`, `-Inf`, `NaN`, else Rust's shortest round-trip form.
fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

/// Seconds since the epoch, with milliseconds when there are any.
fn timestamp(t: DateTime<Utc>) -> String {
    float(t.timestamp_millis() as f64 / 1000.0)
}

/// One metric family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, help: &str) -> Family<'a> {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} gauge");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A job family: one sample per job whose `value` is known.
fn job_family(
    out: &mut String,
    jobs: &[&JobMetrics],
    name: &str,
    help: &str,
    value: impl Fn(&JobMetrics) -> Option<String>,
) {
    let values: Vec<(&JobMetrics, String)> = jobs
        .iter()
        .filter_map(|j| value(j).map(|v| (*j, v)))
        .collect();
    if values.is_empty() {
        return;
    }
    let mut f = Family::new(out, name, help);
    for (j, v) in values {
        f.sample(name, &[("job", &j.job), ("repository", &j.repository)], &v);
    }
}

/// The metrics in the text exposition format (version 0.0.4), ending with a newline.
///
/// Jobs are sorted by (job, repository) and repositories by name; of several entries with the
/// same labels only the first is written, so no series is ever duplicated. Families with no
/// known value at all are left out entirely.
pub fn render(m: &Metrics) -> String {
    let jobs = sorted_jobs(&m.jobs);
    let repos = sorted_repos(&m.repositories);
    let mut out = String::new();
    for (name, help, value) in JOB_RUN_FAMILIES {
        job_family(&mut out, &jobs, name, help, value);
    }
    outcome_family(&mut out, &jobs);
    for (name, help, value) in JOB_STATE_FAMILIES {
        job_family(&mut out, &jobs, name, help, value);
    }
    for (name, help, value) in REPO_FAMILIES {
        repo_family(&mut out, &repos, name, help, value);
    }
    coverage_family(&mut out, &repos);
    for (name, help, value) in DRILL_FAMILIES {
        drill_family(&mut out, &repos, name, help, value);
    }
    daemon_families(&mut out, m);
    out
}

/// The jobs sorted by (job, repository), the first of equal ones only.
fn sorted_jobs(jobs: &[JobMetrics]) -> Vec<&JobMetrics> {
    let mut jobs: Vec<&JobMetrics> = jobs.iter().collect();
    jobs.sort_by(|a, b| (&a.job, &a.repository).cmp(&(&b.job, &b.repository)));
    jobs.dedup_by(|a, b| a.job == b.job && a.repository == b.repository);
    jobs
}

/// The repositories sorted by name, the first of equal ones only.
fn sorted_repos(repos: &[RepoMetrics]) -> Vec<&RepoMetrics> {
    let mut repos: Vec<&RepoMetrics> = repos.iter().collect();
    repos.sort_by(|a, b| a.repository.cmp(&b.repository));
    repos.dedup_by(|a, b| a.repository == b.repository);
    repos
}

/// A job family's name, help and value (None: no sample for that job).
type JobFamily = (
    &'static str,
    &'static str,
    fn(&JobMetrics) -> Option<String>,
);

/// The job families about the newest run, written before `backupd_job_last_run_outcome`.
const JOB_RUN_FAMILIES: [JobFamily; 4] = [
    (
        "backupd_job_last_success_timestamp_seconds",
        "When the job's newest successful (or partial) run ended, seconds since the epoch; absent if it never succeeded.",
        |j| j.last_success.map(timestamp),
    ),
    (
        "backupd_job_last_run_timestamp_seconds",
        "When the job's newest run ended, whatever its outcome, seconds since the epoch.",
        |j| j.last_run_end.map(timestamp),
    ),
    (
        "backupd_job_last_run_duration_seconds",
        "How long the job's newest run took.",
        |j| j.last_duration_seconds.map(float),
    ),
    (
        "backupd_job_last_run_success",
        "1 if the job's newest run succeeded (success or partial), else 0.",
        |j| {
            j.last_outcome
                .as_ref()
                .map(|o| u8::from(o.is_success()).to_string())
        },
    ),
];

/// The job families written after `backupd_job_last_run_outcome`.
const JOB_STATE_FAMILIES: [JobFamily; 7] = [
    (
        "backupd_job_last_run_added_bytes",
        "Bytes the job's newest run added to the repository (after deduplication and compression).",
        |j| j.last_data_added.map(|v| v.to_string()),
    ),
    (
        "backupd_job_last_run_processed_bytes",
        "Bytes the job's newest run read from its sources.",
        |j| j.last_bytes_processed.map(|v| v.to_string()),
    ),
    (
        "backupd_job_last_run_new_files",
        "Files the job's newest run found new.",
        |j| j.last_files_new.map(|v| v.to_string()),
    ),
    (
        "backupd_job_consecutive_failures",
        "Failed runs of the job since its last success.",
        |j| Some(j.consecutive_failures.to_string()),
    ),
    (
        "backupd_job_health",
        "The job's health: 0 healthy, 1 warning, 2 error.",
        |j| Some(j.health.exit_code().to_string()),
    ),
    (
        "backupd_job_running",
        "1 while a run of the job is in progress, else 0.",
        |j| Some(u8::from(j.running).to_string()),
    ),
    (
        "backupd_job_missed_slots",
        "Scheduled slots that passed (beyond their grace) without a successful run since the last success.",
        |j| Some(j.missed_slots.to_string()),
    ),
];

/// `backupd_job_last_run_outcome`: per job with a known outcome, one series per outcome
/// ([`Outcome::KNOWN`], state-set style, and its own), 1 for its outcome and 0 for the others.
fn outcome_family(out: &mut String, jobs: &[&JobMetrics]) {
    let with_outcome: Vec<(&JobMetrics, &str)> = jobs
        .iter()
        .filter_map(|j| j.last_outcome.as_ref().map(|o| (*j, o.as_str())))
        .collect();
    if with_outcome.is_empty() {
        return;
    }
    let name = "backupd_job_last_run_outcome";
    let mut f = Family::new(
        out,
        name,
        "The outcome of the job's newest run: 1 for it, 0 for the others.",
    );
    for (j, last) in with_outcome {
        for outcome in outcomes_with(last) {
            f.sample(
                name,
                &[
                    ("job", &j.job),
                    ("repository", &j.repository),
                    ("outcome", outcome),
                ],
                if outcome == last { "1" } else { "0" },
            );
        }
    }
}

/// The words of [`Outcome::KNOWN`] and `last` if it is not one of them, sorted.
fn outcomes_with(last: &str) -> Vec<&str> {
    let mut outcomes: Vec<&str> = Outcome::KNOWN.iter().map(Outcome::as_str).collect();
    if !outcomes.contains(&last) {
        outcomes.push(last);
    }
    outcomes.sort_unstable();
    outcomes
}

/// A repository family's name, help and value (None: no sample for that repository).
type RepoFamily = (&'static str, &'static str, fn(&RepoMetrics) -> Option<u64>);

/// The repository families with a byte or a count.
const REPO_FAMILIES: [RepoFamily; 4] = [
    (
        "backupd_repository_size_bytes",
        "The repository's size on its storage.",
        |r| r.size_bytes,
    ),
    (
        "backupd_repository_snapshots",
        "Snapshots in the repository.",
        |r| r.snapshots,
    ),
    (
        "backupd_repository_storage_free_bytes",
        "Room left on the storage that holds the repository (free space or quota left).",
        |r| r.free_bytes,
    ),
    (
        "backupd_repository_storage_capacity_bytes",
        "Size or quota of the storage that holds the repository.",
        |r| r.capacity_bytes,
    ),
];

/// A repository family: one sample per repository whose `value` is known.
fn repo_family(
    out: &mut String,
    repos: &[&RepoMetrics],
    name: &str,
    help: &str,
    value: fn(&RepoMetrics) -> Option<u64>,
) {
    let values: Vec<(&RepoMetrics, u64)> = repos
        .iter()
        .filter_map(|r| value(r).map(|v| (*r, v)))
        .collect();
    if values.is_empty() {
        return;
    }
    let mut f = Family::new(out, name, help);
    for (r, v) in values {
        f.sample(name, &[("repository", &r.repository)], &v.to_string());
    }
}

/// `backupd_repository_verified_ratio`, for the repositories with a read-data drill.
fn coverage_family(out: &mut String, repos: &[&RepoMetrics]) {
    let covered: Vec<(&RepoMetrics, f64)> = repos
        .iter()
        .filter_map(|r| r.coverage.map(|c| (*r, c)))
        .collect();
    if covered.is_empty() {
        return;
    }
    let name = "backupd_repository_verified_ratio";
    let mut f = Family::new(
        out,
        name,
        "The share of the repository's packs verified (read back whole) in the current read-data cycle (0 to 1).",
    );
    for (r, c) in covered {
        f.sample(name, &[("repository", &r.repository)], &float(c));
    }
}

/// A drill family's name, help and value (None: no sample for that drill).
type DrillFamily = (
    &'static str,
    &'static str,
    fn(&DrillMetrics) -> Option<String>,
);

/// The verification drills' families.
const DRILL_FAMILIES: [DrillFamily; 3] = [
    (
        "backupd_drill_last_ok",
        "1 if the verification drill's newest run passed, 0 if it failed.",
        |d| Some(u8::from(d.ok).to_string()),
    ),
    (
        "backupd_drill_last_run_timestamp_seconds",
        "When the verification drill's newest run ended, seconds since the epoch.",
        |d| Some(timestamp(d.last_end)),
    ),
    (
        "backupd_drill_last_success_timestamp_seconds",
        "When the verification drill's newest passing run ended, seconds since the epoch.",
        |d| d.last_success.map(timestamp),
    ),
];

/// A drill family: per repository, one sample per drill (sorted by name, the first of equal
/// ones only) whose `value` is known.
fn drill_family(
    out: &mut String,
    repos: &[&RepoMetrics],
    name: &str,
    help: &str,
    value: fn(&DrillMetrics) -> Option<String>,
) {
    let mut samples = Vec::new();
    for r in repos {
        let mut drills: Vec<&DrillMetrics> = r.drills.iter().collect();
        drills.sort_by(|a, b| a.drill.cmp(&b.drill));
        drills.dedup_by(|a, b| a.drill == b.drill);
        for d in drills {
            if let Some(v) = value(d) {
                samples.push((r.repository.as_str(), d.drill.as_str(), v));
            }
        }
    }
    if samples.is_empty() {
        return;
    }
    let mut f = Family::new(out, name, help);
    for (repo, drill, v) in samples {
        f.sample(name, &[("repository", repo), ("drill", drill)], &v);
    }
}

/// The daemon's own families: its start, when these metrics were made, its version.
fn daemon_families(out: &mut String, m: &Metrics) {
    let name = "backupd_daemon_start_timestamp_seconds";
    Family::new(out, name, "When backupd started, seconds since the epoch.").sample(
        name,
        &[],
        &timestamp(m.daemon_start),
    );
    let name = "backupd_metrics_generated_timestamp_seconds";
    Family::new(
        out,
        name,
        "When backupd wrote these metrics, seconds since the epoch (alert when it is old: backupd is not updating them).",
    )
    .sample(name, &[], &timestamp(m.generated));
    let name = "backupd_build_info";
    Family::new(out, name, "Always 1; the version of backupd in its label.").sample(
        name,
        &[("version", &m.version)],
        "1",
    );
}

/// Writes [`render`]'s output to `path` atomically (`fsutil::atomic_write`: a temp
/// file in the same folder, fsync, rename, fsync of the folder), so the collector never reads
/// half a file. The temp file's name does not end in `.prom`, so the collector ignores it.
/// `path` must end in `.prom` ([`MetricsError::NotProm`] otherwise).
pub fn write_textfile(path: &Path, m: &Metrics) -> Result<(), MetricsError> {
    let is_prom = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.len() > ".prom".len() && n.ends_with(".prom"));
    if !is_prom {
        return Err(MetricsError::NotProm {
            path: path.to_path_buf(),
        });
    }
    crate::fsutil::atomic_write(path, render(m).as_bytes()).map_err(|source| MetricsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use chrono::TimeZone;

    use super::*;

    fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    /// A job that never ran.
    fn fresh(job: &str, repository: &str) -> JobMetrics {
        JobMetrics {
            job: job.to_string(),
            repository: repository.to_string(),
            last_success: None,
            last_run_end: None,
            last_duration_seconds: None,
            last_outcome: None,
            last_data_added: None,
            last_bytes_processed: None,
            last_files_new: None,
            consecutive_failures: 0,
            health: Level::Healthy,
            running: false,
            missed_slots: 0,
        }
    }

    fn ran(job: &str, repository: &str) -> JobMetrics {
        JobMetrics {
            last_success: Some(t(2026, 12, 1, 2, 31)),
            last_run_end: Some(t(2026, 12, 1, 2, 31) + chrono::Duration::milliseconds(500)),
            last_duration_seconds: Some(60.5),
            last_outcome: Some(Outcome::Success),
            last_data_added: Some(1_048_576),
            last_bytes_processed: Some(10_737_418_240),
            last_files_new: Some(12),
            ..fresh(job, repository)
        }
    }

    fn metrics(jobs: Vec<JobMetrics>, repositories: Vec<RepoMetrics>) -> Metrics {
        Metrics {
            jobs,
            repositories,
            daemon_start: t(2026, 12, 1, 0, 0),
            generated: t(2026, 12, 1, 3, 0),
            version: "0.1.0".to_string(),
        }
    }

    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
    }

    fn is_metric_name(s: &str) -> bool {
        let mut c = s.chars();
        matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(s: &str) -> bool {
        let mut c = s.chars();
        matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    fn parse_value(s: &str) -> Result<f64, String> {
        match s {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            _ if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => {
                s.parse().map_err(|e| format!("value {s:?}: {e}"))
            }
            _ => Err(format!("value {s:?} is not a float")),
        }
    }

    /// Parses `{a="b",c="d"}` at the start of `s`: the labels (unescaped) and the rest.
    type Labels = Vec<(String, String)>;

    fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
        let mut rest = s.strip_prefix('{').ok_or("expected {")?;
        let mut labels = Vec::new();
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        loop {
            let eq = rest.find('=').ok_or("label without =")?;
            let name = &rest[..eq];
            if !is_label_name(name) {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value without \"")?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape \\{other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.iter().any(|(n, _)| n == name) {
                return Err(format!("label {name} twice"));
            }
            labels.push((name.to_string(), value));
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if let Some(r) = rest.strip_prefix('}') {
                return Ok((labels, r));
            } else {
                return Err(format!("expected , or }} at {rest:?}"));
            }
        }
    }

    /// A strict reader of the text exposition format: every rule the collector (or a careful
    /// reader of the spec) enforces, and those of our own output on top (every family has
    /// HELP and TYPE, no other comments, no blank lines).
    fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
        if !text.ends_with('\n') {
            return Err("does not end with a newline".into());
        }
        let mut help: HashSet<String> = HashSet::new();
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut done: HashSet<String> = HashSet::new(); // families whose block has ended
        let mut current: Option<String> = None;
        let mut series: HashSet<String> = HashSet::new();
        let mut samples = Vec::new();
        let mut enter = |family: &str, current: &mut Option<String>| -> Result<(), String> {
            if current.as_deref() != Some(family) {
                if done.contains(family) {
                    return Err(format!("family {family} is not contiguous"));
                }
                if let Some(c) = current.take() {
                    done.insert(c);
                }
                *current = Some(family.to_string());
            }
            Ok(())
        };
        for (no, line) in text[..text.len() - 1].split('\n').enumerate() {
            let err = |m: String| format!("line {}: {m}: {line:?}", no + 1);
            if let Some(comment) = line.strip_prefix("# ") {
                let (kind, rest) = comment
                    .split_once(' ')
                    .ok_or_else(|| err("bare comment".into()))?;
                let (name, arg) = rest.split_once(' ').ok_or_else(|| err("no text".into()))?;
                if !is_metric_name(name) {
                    return Err(err(format!("bad metric name {name:?}")));
                }
                if samples.iter().any(|s: &Sample| s.name == name) {
                    return Err(err("HELP/TYPE after the family's samples".into()));
                }
                enter(name, &mut current).map_err(&err)?;
                match kind {
                    "HELP" => {
                        let mut chars = arg.chars();
                        while let Some(c) = chars.next() {
                            if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                                return Err(err("bad escape in HELP".into()));
                            }
                        }
                        if !help.insert(name.to_string()) {
                            return Err(err("second HELP".into()));
                        }
                    }
                    "TYPE" => {
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                            return Err(err(format!("bad type {arg:?}")));
                        }
                        if types.insert(name.to_string(), arg.to_string()).is_some() {
                            return Err(err("second TYPE".into()));
                        }
                    }
                    _ => return Err(err("comment that is neither HELP nor TYPE".into())),
                }
                continue;
            }
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("no value".into()))?;
            let name = &line[..name_end];
            if !is_metric_name(name) {
                return Err(err(format!("bad metric name {name:?}")));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(err)?
            } else {
                (Vec::new(), &line[name_end..])
            };
            let rest = rest
                .strip_prefix(' ')
                .ok_or_else(|| err("no space before the value".into()))?;
            let mut parts = rest.split(' ');
            let value = parse_value(parts.next().unwrap_or_default()).map_err(&err)?;
            if let Some(ts) = parts.next() {
                ts.parse::<i64>()
                    .map_err(|e| err(format!("timestamp {ts:?}: {e}")))?;
            }
            if parts.next().is_some() {
                return Err(err("trailing fields".into()));
            }
            if !types.contains_key(name) || !help.contains(name) {
                return Err(err("sample before its family's HELP and TYPE".into()));
            }
            enter(name, &mut current).map_err(&err)?;
            let mut key: Vec<&(String, String)> = labels.iter().collect();
            key.sort();
            if !series.insert(format!("{name}{key:?}")) {
                return Err(err("duplicate series".into()));
            }
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        if let Some(name) = types
            .keys()
            .find(|n| !samples.iter().any(|s| &s.name == *n))
        {
            return Err(format!("family {name} has no samples"));
        }
        Ok(samples)
    }

    fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
            })
            .map(|s| s.value)
    }

    #[test]
    fn the_strict_parser_rejects_what_it_should() {
        let ok = "# HELP a x\n# TYPE a gauge\na{l=\"v\"} 1\na{l=\"w\"} +Inf 1700000000000\n";
        assert_eq!(parse_exposition(ok).unwrap().len(), 2);
        for bad in [
            "# HELP a x\n# TYPE a gauge\na 1",                            // no final newline
            "# HELP a x\n# TYPE a gauge\na 1\n\n",                        // blank line
            "a 1\n",                                                      // no TYPE
            "# HELP a x\na 1\n# TYPE a gauge\n",                          // TYPE after sample
            "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",          // TYPE twice
            "# HELP a x\n# TYPE a gauge\na 1\na 2\n",                     // duplicate
            "# HELP a x\n# TYPE a gauge\na{l=\"1\"} 1\n# HELP b x\n# TYPE b gauge\nb 1\na{l=\"2\"} 1\n", // not contiguous
            "# HELP a x\n# TYPE a gauge\na{l=\"a\"b\"} 1\n",              // unescaped quote
            "# HELP a x\n# TYPE a gauge\na{l=\"a\\tb\"} 1\n",             // bad escape
            "# HELP a x\n# TYPE a gauge\na{1l=\"a\"} 1\n",                // bad label name
            "# HELP a-b x\n# TYPE a-b gauge\na-b 1\n",                    // bad metric name
            "# HELP a x\n# TYPE a gauge\na inf\n",                        // Go wants +Inf
            "# HELP a x\n# TYPE a gauge\na 1 2 3\n",                      // trailing
            "# HELP a x\n# TYPE a gauge\na{l=\"v\",l=\"w\"} 1\n",         // label twice
            "# HELP a x\n# TYPE a gauge\n# just a comment\na 1\n",         // other comment
            "# HELP a x\n# TYPE a meter\na 1\n",                          // bad type
        ] {
            assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn golden() {
        let mut failing = fresh("db", "/srv/repo");
        failing.last_run_end = Some(t(2026, 12, 1, 2, 45));
        failing.last_duration_seconds = Some(3.0);
        failing.last_outcome = Some(Outcome::Failed);
        failing.consecutive_failures = 2;
        failing.health = Level::Warning;
        failing.running = true;
        failing.missed_slots = 1;
        let m = metrics(
            vec![ran("app", "/srv/repo"), failing],
            vec![RepoMetrics {
                repository: "/srv/repo".to_string(),
                size_bytes: Some(5_000_000_000),
                snapshots: Some(42),
                ..Default::default()
            }],
        );
        let expected = r#"# HELP backupd_job_last_success_timestamp_seconds When the job's newest successful (or partial) run ended, seconds since the epoch; absent if it never succeeded.
# TYPE backupd_job_last_success_timestamp_seconds gauge
backupd_job_last_success_timestamp_seconds{job="app",repository="/srv/repo"} 1796092260
# HELP backupd_job_last_run_timestamp_seconds When the job's newest run ended, whatever its outcome, seconds since the epoch.
# TYPE backupd_job_last_run_timestamp_seconds gauge
backupd_job_last_run_timestamp_seconds{job="app",repository="/srv/repo"} 1796092260.5
backupd_job_last_run_timestamp_seconds{job="db",repository="/srv/repo"} 1796093100
# HELP backupd_job_last_run_duration_seconds How long the job's newest run took.
# TYPE backupd_job_last_run_duration_seconds gauge
backupd_job_last_run_duration_seconds{job="app",repository="/srv/repo"} 60.5
backupd_job_last_run_duration_seconds{job="db",repository="/srv/repo"} 3
# HELP backupd_job_last_run_success 1 if the job's newest run succeeded (success or partial), else 0.
# TYPE backupd_job_last_run_success gauge
backupd_job_last_run_success{job="app",repository="/srv/repo"} 1
backupd_job_last_run_success{job="db",repository="/srv/repo"} 0
# HELP backupd_job_last_run_outcome The outcome of the job's newest run: 1 for it, 0 for the others.
# TYPE backupd_job_last_run_outcome gauge
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="cancelled"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="failed"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="interrupted"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="partial"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="skipped"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/repo",outcome="success"} 1
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="cancelled"} 0
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="failed"} 1
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="interrupted"} 0
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="partial"} 0
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="skipped"} 0
backupd_job_last_run_outcome{job="db",repository="/srv/repo",outcome="success"} 0
# HELP backupd_job_last_run_added_bytes Bytes the job's newest run added to the repository (after deduplication and compression).
# TYPE backupd_job_last_run_added_bytes gauge
backupd_job_last_run_added_bytes{job="app",repository="/srv/repo"} 1048576
# HELP backupd_job_last_run_processed_bytes Bytes the job's newest run read from its sources.
# TYPE backupd_job_last_run_processed_bytes gauge
backupd_job_last_run_processed_bytes{job="app",repository="/srv/repo"} 10737418240
# HELP backupd_job_last_run_new_files Files the job's newest run found new.
# TYPE backupd_job_last_run_new_files gauge
backupd_job_last_run_new_files{job="app",repository="/srv/repo"} 12
# HELP backupd_job_consecutive_failures Failed runs of the job since its last success.
# TYPE backupd_job_consecutive_failures gauge
backupd_job_consecutive_failures{job="app",repository="/srv/repo"} 0
backupd_job_consecutive_failures{job="db",repository="/srv/repo"} 2
# HELP backupd_job_health The job's health: 0 healthy, 1 warning, 2 error.
# TYPE backupd_job_health gauge
backupd_job_health{job="app",repository="/srv/repo"} 0
backupd_job_health{job="db",repository="/srv/repo"} 1
# HELP backupd_job_running 1 while a run of the job is in progress, else 0.
# TYPE backupd_job_running gauge
backupd_job_running{job="app",repository="/srv/repo"} 0
backupd_job_running{job="db",repository="/srv/repo"} 1
# HELP backupd_job_missed_slots Scheduled slots that passed (beyond their grace) without a successful run since the last success.
# TYPE backupd_job_missed_slots gauge
backupd_job_missed_slots{job="app",repository="/srv/repo"} 0
backupd_job_missed_slots{job="db",repository="/srv/repo"} 1
# HELP backupd_repository_size_bytes The repository's size on its storage.
# TYPE backupd_repository_size_bytes gauge
backupd_repository_size_bytes{repository="/srv/repo"} 5000000000
# HELP backupd_repository_snapshots Snapshots in the repository.
# TYPE backupd_repository_snapshots gauge
backupd_repository_snapshots{repository="/srv/repo"} 42
# HELP backupd_daemon_start_timestamp_seconds When backupd started, seconds since the epoch.
# TYPE backupd_daemon_start_timestamp_seconds gauge
backupd_daemon_start_timestamp_seconds 1796083200
# HELP backupd_metrics_generated_timestamp_seconds When backupd wrote these metrics, seconds since the epoch (alert when it is old: backupd is not updating them).
# TYPE backupd_metrics_generated_timestamp_seconds gauge
backupd_metrics_generated_timestamp_seconds 1796094000
# HELP backupd_build_info Always 1; the version of backupd in its label.
# TYPE backupd_build_info gauge
backupd_build_info{version="0.1.0"} 1
"#;
        let text = render(&m);
        assert_eq!(text, expected, "got:\n{text}");
        parse_exposition(&text).unwrap();
        // The order of the input does not matter.
        let mut reversed = m.clone();
        reversed.jobs.reverse();
        assert_eq!(render(&reversed), text);
    }

    /// Every family, with duplicates, an outcome outside [`Outcome::KNOWN`] and drills: the whole
    /// output pinned, so a change in wording, order or number format shows.
    #[test]
    fn golden_every_family() {
        let mut partial = ran("web", "/srv/b");
        partial.last_outcome = Some(Outcome::Partial);
        partial.last_data_added = None;
        partial.health = Level::Error;
        let mut odd = fresh("odd", "/srv/a");
        odd.last_outcome = Some(Outcome::Other("exploded".to_string()));
        odd.last_run_end = Some(t(2026, 12, 1, 1, 0));
        let mut shadow = ran("app", "/srv/a");
        shadow.consecutive_failures = 9;
        let drill = |name: &str, ok: bool, success: Option<DateTime<Utc>>| DrillMetrics {
            drill: name.to_string(),
            ok,
            last_end: t(2026, 11, 30, 4, 0) + chrono::Duration::milliseconds(250),
            last_success: success,
        };
        let m = metrics(
            vec![
                partial,
                ran("app", "/srv/a"),
                odd,
                shadow,
                fresh("new", "/srv/b"),
            ],
            vec![
                RepoMetrics {
                    repository: "/srv/b".to_string(),
                    free_bytes: Some(7),
                    ..Default::default()
                },
                RepoMetrics {
                    repository: "/srv/a".to_string(),
                    size_bytes: Some(123),
                    snapshots: Some(4),
                    free_bytes: Some(1_000),
                    capacity_bytes: Some(10_000),
                    coverage: Some(0.125),
                    drills: vec![
                        drill("restore-drill", false, None),
                        drill("check", true, Some(t(2026, 11, 30, 4, 0))),
                        drill("check", false, None),
                        drill("read-data", true, Some(t(2026, 11, 29, 4, 0))),
                    ],
                },
                RepoMetrics {
                    repository: "/srv/a".to_string(),
                    size_bytes: Some(999),
                    ..Default::default()
                },
            ],
        );
        let expected = r#"# HELP backupd_job_last_success_timestamp_seconds When the job's newest successful (or partial) run ended, seconds since the epoch; absent if it never succeeded.
# TYPE backupd_job_last_success_timestamp_seconds gauge
backupd_job_last_success_timestamp_seconds{job="app",repository="/srv/a"} 1796092260
backupd_job_last_success_timestamp_seconds{job="web",repository="/srv/b"} 1796092260
# HELP backupd_job_last_run_timestamp_seconds When the job's newest run ended, whatever its outcome, seconds since the epoch.
# TYPE backupd_job_last_run_timestamp_seconds gauge
backupd_job_last_run_timestamp_seconds{job="app",repository="/srv/a"} 1796092260.5
backupd_job_last_run_timestamp_seconds{job="odd",repository="/srv/a"} 1796086800
backupd_job_last_run_timestamp_seconds{job="web",repository="/srv/b"} 1796092260.5
# HELP backupd_job_last_run_duration_seconds How long the job's newest run took.
# TYPE backupd_job_last_run_duration_seconds gauge
backupd_job_last_run_duration_seconds{job="app",repository="/srv/a"} 60.5
backupd_job_last_run_duration_seconds{job="web",repository="/srv/b"} 60.5
# HELP backupd_job_last_run_success 1 if the job's newest run succeeded (success or partial), else 0.
# TYPE backupd_job_last_run_success gauge
backupd_job_last_run_success{job="app",repository="/srv/a"} 1
backupd_job_last_run_success{job="odd",repository="/srv/a"} 0
backupd_job_last_run_success{job="web",repository="/srv/b"} 1
# HELP backupd_job_last_run_outcome The outcome of the job's newest run: 1 for it, 0 for the others.
# TYPE backupd_job_last_run_outcome gauge
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="cancelled"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="failed"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="interrupted"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="partial"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="skipped"} 0
backupd_job_last_run_outcome{job="app",repository="/srv/a",outcome="success"} 1
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="cancelled"} 0
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="exploded"} 1
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="failed"} 0
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="interrupted"} 0
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="partial"} 0
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="skipped"} 0
backupd_job_last_run_outcome{job="odd",repository="/srv/a",outcome="success"} 0
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="cancelled"} 0
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="failed"} 0
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="interrupted"} 0
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="partial"} 1
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="skipped"} 0
backupd_job_last_run_outcome{job="web",repository="/srv/b",outcome="success"} 0
# HELP backupd_job_last_run_added_bytes Bytes the job's newest run added to the repository (after deduplication and compression).
# TYPE backupd_job_last_run_added_bytes gauge
backupd_job_last_run_added_bytes{job="app",repository="/srv/a"} 1048576
# HELP backupd_job_last_run_processed_bytes Bytes the job's newest run read from its sources.
# TYPE backupd_job_last_run_processed_bytes gauge
backupd_job_last_run_processed_bytes{job="app",repository="/srv/a"} 10737418240
backupd_job_last_run_processed_bytes{job="web",repository="/srv/b"} 10737418240
# HELP backupd_job_last_run_new_files Files the job's newest run found new.
# TYPE backupd_job_last_run_new_files gauge
backupd_job_last_run_new_files{job="app",repository="/srv/a"} 12
backupd_job_last_run_new_files{job="web",repository="/srv/b"} 12
# HELP backupd_job_consecutive_failures Failed runs of the job since its last success.
# TYPE backupd_job_consecutive_failures gauge
backupd_job_consecutive_failures{job="app",repository="/srv/a"} 0
backupd_job_consecutive_failures{job="new",repository="/srv/b"} 0
backupd_job_consecutive_failures{job="odd",repository="/srv/a"} 0
backupd_job_consecutive_failures{job="web",repository="/srv/b"} 0
# HELP backupd_job_health The job's health: 0 healthy, 1 warning, 2 error.
# TYPE backupd_job_health gauge
backupd_job_health{job="app",repository="/srv/a"} 0
backupd_job_health{job="new",repository="/srv/b"} 0
backupd_job_health{job="odd",repository="/srv/a"} 0
backupd_job_health{job="web",repository="/srv/b"} 2
# HELP backupd_job_running 1 while a run of the job is in progress, else 0.
# TYPE backupd_job_running gauge
backupd_job_running{job="app",repository="/srv/a"} 0
backupd_job_running{job="new",repository="/srv/b"} 0
backupd_job_running{job="odd",repository="/srv/a"} 0
backupd_job_running{job="web",repository="/srv/b"} 0
# HELP backupd_job_missed_slots Scheduled slots that passed (beyond their grace) without a successful run since the last success.
# TYPE backupd_job_missed_slots gauge
backupd_job_missed_slots{job="app",repository="/srv/a"} 0
backupd_job_missed_slots{job="new",repository="/srv/b"} 0
backupd_job_missed_slots{job="odd",repository="/srv/a"} 0
backupd_job_missed_slots{job="web",repository="/srv/b"} 0
# HELP backupd_repository_size_bytes The repository's size on its storage.
# TYPE backupd_repository_size_bytes gauge
backupd_repository_size_bytes{repository="/srv/a"} 123
# HELP backupd_repository_snapshots Snapshots in the repository.
# TYPE backupd_repository_snapshots gauge
backupd_repository_snapshots{repository="/srv/a"} 4
# HELP backupd_repository_storage_free_bytes Room left on the storage that holds the repository (free space or quota left).
# TYPE backupd_repository_storage_free_bytes gauge
backupd_repository_storage_free_bytes{repository="/srv/a"} 1000
backupd_repository_storage_free_bytes{repository="/srv/b"} 7
# HELP backupd_repository_storage_capacity_bytes Size or quota of the storage that holds the repository.
# TYPE backupd_repository_storage_capacity_bytes gauge
backupd_repository_storage_capacity_bytes{repository="/srv/a"} 10000
# HELP backupd_repository_verified_ratio The share of the repository's packs verified (read back whole) in the current read-data cycle (0 to 1).
# TYPE backupd_repository_verified_ratio gauge
backupd_repository_verified_ratio{repository="/srv/a"} 0.125
# HELP backupd_drill_last_ok 1 if the verification drill's newest run passed, 0 if it failed.
# TYPE backupd_drill_last_ok gauge
backupd_drill_last_ok{repository="/srv/a",drill="check"} 1
backupd_drill_last_ok{repository="/srv/a",drill="read-data"} 1
backupd_drill_last_ok{repository="/srv/a",drill="restore-drill"} 0
# HELP backupd_drill_last_run_timestamp_seconds When the verification drill's newest run ended, seconds since the epoch.
# TYPE backupd_drill_last_run_timestamp_seconds gauge
backupd_drill_last_run_timestamp_seconds{repository="/srv/a",drill="check"} 1796011200.25
backupd_drill_last_run_timestamp_seconds{repository="/srv/a",drill="read-data"} 1796011200.25
backupd_drill_last_run_timestamp_seconds{repository="/srv/a",drill="restore-drill"} 1796011200.25
# HELP backupd_drill_last_success_timestamp_seconds When the verification drill's newest passing run ended, seconds since the epoch.
# TYPE backupd_drill_last_success_timestamp_seconds gauge
backupd_drill_last_success_timestamp_seconds{repository="/srv/a",drill="check"} 1796011200
backupd_drill_last_success_timestamp_seconds{repository="/srv/a",drill="read-data"} 1795924800
# HELP backupd_daemon_start_timestamp_seconds When backupd started, seconds since the epoch.
# TYPE backupd_daemon_start_timestamp_seconds gauge
backupd_daemon_start_timestamp_seconds 1796083200
# HELP backupd_metrics_generated_timestamp_seconds When backupd wrote these metrics, seconds since the epoch (alert when it is old: backupd is not updating them).
# TYPE backupd_metrics_generated_timestamp_seconds gauge
backupd_metrics_generated_timestamp_seconds 1796094000
# HELP backupd_build_info Always 1; the version of backupd in its label.
# TYPE backupd_build_info gauge
backupd_build_info{version="0.1.0"} 1
"#;
        let text = render(&m);
        assert_eq!(text, expected, "got:\n{text}");
        parse_exposition(&text).unwrap();
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line1\nline2"), "line1\\nline2");
        assert_eq!(escape_label_value("ünï 🚀 {}=,"), "ünï 🚀 {}=,");
        let text = render(&metrics(vec![fresh("a\"b\\c\nd", "r")], vec![]));
        assert!(
            text.contains("backupd_job_health{job=\"a\\\"b\\\\c\\nd\",repository=\"r\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn nasty_inputs_render_valid_exposition() {
        let nasty = [
            "quote\"d",
            "back\\slash",
            "trailing\\",
            "new\nline",
            "\\n not a newline",
            "ünïcødé ✓ 🚀",
            "{braces}=,\"\"",
            "",
            " spaced out ",
            "tab\there\r",
        ];
        let mut jobs = Vec::new();
        for (i, name) in nasty.iter().enumerate() {
            let mut j = if i % 2 == 0 {
                ran(name, name)
            } else {
                fresh(name, "/repo\n\"x\"")
            };
            if i == 3 {
                j.last_outcome = Some(Outcome::Other("weird \"outcome\"\n".to_string()));
                j.last_duration_seconds = Some(f64::NAN);
            }
            if i == 4 {
                j.last_duration_seconds = Some(f64::INFINITY);
            }
            jobs.push(j);
        }
        // Duplicates of the same labels are written once.
        jobs.push(ran("quote\"d", "quote\"d"));
        let repos = nasty
            .iter()
            .map(|r| RepoMetrics {
                repository: r.to_string(),
                size_bytes: Some(u64::MAX),
                snapshots: None,
                free_bytes: Some(0),
                capacity_bytes: Some(u64::MAX),
                coverage: Some(0.0),
                drills: vec![DrillMetrics {
                    drill: "check".into(),
                    ok: false,
                    last_end: t(2026, 12, 1, 1, 0),
                    last_success: None,
                }],
            })
            .chain([RepoMetrics {
                repository: "quote\"d".to_string(),
                size_bytes: Some(1),
                snapshots: Some(0),
                free_bytes: None,
                capacity_bytes: None,
                coverage: Some(1.0 / 3.0),
                drills: vec![
                    DrillMetrics {
                        drill: "read-data".into(),
                        ok: true,
                        last_end: t(2026, 12, 1, 2, 0),
                        last_success: Some(t(2026, 12, 1, 2, 0)),
                    },
                    DrillMetrics {
                        drill: "read-data".into(),
                        ok: false,
                        last_end: t(2026, 12, 1, 2, 0),
                        last_success: None,
                    },
                ],
            }])
            .collect();
        let mut m = metrics(jobs, repos);
        m.version = "1.0.0-rc.1+\"git\"\\\n".to_string();
        let text = render(&m);
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for name in nasty {
            let health = value_of(
                &samples,
                "backupd_job_health",
                &[
                    ("job", name),
                    (
                        "repository",
                        if nasty.iter().position(|n| *n == name).unwrap() % 2 == 0 {
                            name
                        } else {
                            "/repo\n\"x\""
                        },
                    ),
                ],
            );
            assert_eq!(health, Some(0.0), "{name:?}");
            assert_eq!(
                value_of(
                    &samples,
                    "backupd_repository_size_bytes",
                    &[("repository", name)]
                ),
                Some(u64::MAX as f64)
            );
        }
        assert_eq!(
            value_of(
                &samples,
                "backupd_job_last_run_outcome",
                &[
                    ("job", "new\nline"),
                    ("repository", "/repo\n\"x\""),
                    ("outcome", "weird \"outcome\"\n")
                ]
            ),
            Some(1.0)
        );
        assert!(value_of(
            &samples,
            "backupd_job_last_run_duration_seconds",
            &[("job", "new\nline"), ("repository", "/repo\n\"x\"")]
        )
        .unwrap()
        .is_nan());
        assert_eq!(
            value_of(
                &samples,
                "backupd_build_info",
                &[("version", "1.0.0-rc.1+\"git\"\\\n")]
            ),
            Some(1.0)
        );
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "backupd_repository_snapshots")
                .count(),
            0,
            "of two entries for one repository, the first (sorted, stable) is written"
        );
    }

    #[test]
    fn other_inputs_render_valid_exposition() {
        // Nothing known at all: the daemon's own series only.
        let text = render(&metrics(vec![], vec![]));
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(
            samples.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [
                "backupd_daemon_start_timestamp_seconds",
                "backupd_metrics_generated_timestamp_seconds",
                "backupd_build_info"
            ]
        );
        // A job that never ran: no timestamps, no NaN.
        let text = render(&metrics(
            vec![fresh("new", "r")],
            vec![RepoMetrics {
                repository: "r".into(),
                size_bytes: None,
                snapshots: None,
                ..Default::default()
            }],
        ));
        parse_exposition(&text).unwrap();
        assert!(
            !text.contains("NaN") && !text.contains("timestamp_seconds{"),
            "{text}"
        );
        assert!(!text.contains("backupd_repository_"), "{text}");
        // Many jobs over two repositories, every outcome.
        let jobs = (0..40)
            .map(|i| {
                let mut j = ran(&format!("job{i}"), &format!("/repo{}", i % 2));
                j.last_outcome = Some(Outcome::KNOWN[i % Outcome::KNOWN.len()].clone());
                j.health = [Level::Healthy, Level::Warning, Level::Error][i % 3];
                j
            })
            .collect();
        let text = render(&metrics(jobs, vec![]));
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(
            samples
                .iter()
                .filter(|s| s.name == "backupd_job_last_run_outcome")
                .count(),
            40 * Outcome::KNOWN.len()
        );
        assert_eq!(
            value_of(
                &samples,
                "backupd_job_health",
                &[("job", "job5"), ("repository", "/repo1")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value_of(
                &samples,
                "backupd_job_last_run_success",
                &[("job", "job1"), ("repository", "/repo1")]
            ),
            Some(1.0),
            "partial counts as success"
        );
    }

    #[test]
    fn write_textfile_is_atomic_and_wants_prom() {
        let dir = tempfile::tempdir().unwrap();
        let m = metrics(vec![ran("app", "r")], vec![]);
        let path = dir.path().join("backupd.prom");
        write_textfile(&path, &m).unwrap();
        write_textfile(&path, &m).unwrap(); // replaces
        assert_eq!(std::fs::read_to_string(&path).unwrap(), render(&m));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["backupd.prom"]);

        for bad in ["backupd.txt", "backupd.prom.tmp", "backupd", ".prom"] {
            let p = dir.path().join(bad);
            let e = write_textfile(&p, &m).unwrap_err();
            assert!(matches!(e, MetricsError::NotProm { .. }), "{bad}");
            let msg = e.to_string();
            assert!(
                msg.contains(bad) && msg.contains(".prom") && msg.contains("textfile"),
                "{msg}"
            );
            assert!(!p.exists());
        }
        let missing = dir.path().join("no/such/dir/backupd.prom");
        let e = write_textfile(&missing, &m).unwrap_err();
        assert!(matches!(e, MetricsError::Write { .. }));
        assert!(e.to_string().contains("no/such/dir/backupd.prom"), "{e}");
    }
}
