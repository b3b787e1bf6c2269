//! Notifications: the model (the event, each channel's delivery, the errors), the JSON body, and sending one notification on every configured channel at once (each channel's delivery in `webhook`, `email`, `command`).
//!
//! A pure library: [`send`] blocks (the daemon calls it on a blocking thread), never panics, and
//! returns one [`Delivery`] per channel it tried. Channels are tried in parallel, each with its
//! own retry policy, so the whole call lasts about as long as the slowest channel.
//!
//! ```toml
//! [jobs.app.notify]
//! events = ["failure", "warning", "overdue", "recovered"]   # the default; also "start", "success"
//! command = "/usr/local/bin/page-me"                        # optional; command_timeout = "60s"
//!
//! [[jobs.app.notify.webhook]]
//! url = "https://hooks.example.com/backupd"   # http:// or https://
//! mode = "json"                                # or "healthchecks"
//! timeout = "10s"                              # per attempt
//! retries = 3                                  # more attempts after the first
//! headers = { Authorization = "Bearer ..." }
//!
//! [jobs.app.notify.email]
//! server = "smtp.example.com"    # port: 587 for starttls, 465 for tls, 25 for none
//! security = "starttls"          # "tls", or "none" (localhost only)
//! username = "backupd"           # with password_file (its first line, read at each send)
//! password_file = "/etc/backupd/smtp-password"
//! from = "backupd <backupd@example.com>"
//! to = ["ops@example.com"]
//! timeout = "30s"
//! ```
//!
//! **Webhook, `mode = "json"`** (the default): `POST url` with `Content-Type: application/json`,
//! the configured `headers`, and HTTP basic authentication when the URL has `user:password@`.
//! The body, [`webhook_body`], is versioned; fields are added, never renamed, within a version:
//!
//! ```json
//! {
//!   "version": 1,
//!   "event": "failure",            // start | success | warning | failure | overdue | recovered
//!   "job": "app",
//!   "host": "db1",
//!   "time": "2026-03-29T02:30:00Z", // RFC 3339, UTC: when the event happened
//!   "run_id": "…" | null,           // the run's id (null for overdue)
//!   "reason": "…" | null,           // why the run ran ("schedule 2026-03-29 02:30", "catch-up …")
//!   "outcome": "…" | null,          // the run's outcome ("success", "failed", "interrupted", …)
//!   "snapshot_id": "…" | null,      // the snapshot the run made
//!   "error": "…" | null,            // what failed, where, why and what to do
//!   "message": "backup job app failed: …", // one sentence for people
//!   "log_tail": ["…", "…"]          // the last lines of the run's log (≤ 50 lines, ≤ 16 KiB)
//! }
//! ```
//!
//! **Webhook, `mode = "healthchecks"`** (Healthchecks.io and compatible): `url` is the check's
//! ping URL. `start` → `POST {url}/start`; `success` and `recovered` → `POST {url}`; `failure`
//! and `overdue` → `POST {url}/fail`; `warning` → `POST {url}` (a success ping: the backup
//! exists) with a body starting `warning:`. The body is plain text: the message, then the log
//! tail, which Healthchecks shows with the ping.
//!
//! **Retries.** Connection failures, timeouts, HTTP 5xx and 429 are transient: retried up to
//! `retries` more times, 1 s apart doubling (plus up to 25 % jitter). Any other 4xx, a redirect
//! (webhooks are not redirected: put the final URL in the configuration) and TLS errors are
//! permanent: no retry, and the error names the status and the first 200 bytes of the answer.
//! Email is tried up to 3 times for transient failures (connection, timeout, SMTP 4xx), a 5xx
//! answer is permanent. The command is run once.
//!
//! **Email**: a plain-text message, subject `[backupd] JOB: EVENT on HOST`, with the message, the
//! fields and the log tail.
//!
//! **Command**: `sh -c COMMAND` in its own process group, the JSON body (as above) on standard
//! input, and `BACKUPD_EVENT`, `BACKUPD_JOB`, `BACKUPD_HOST`, `BACKUPD_TIME`, `BACKUPD_MESSAGE`
//! and, when known, `BACKUPD_RUN_ID`, `BACKUPD_REASON`, `BACKUPD_OUTCOME`, `BACKUPD_SNAPSHOT_ID`,
//! `BACKUPD_ERROR` in its environment. Its standard output is discarded; it fails on a non-zero
//! exit (the error has its stderr tail) and is killed, with everything it started, after
//! `command_timeout` (60 s).
//!
//! [`Delivery::channel`] names the channel without secrets: a webhook's URL loses its
//! `user:password@` and its query (shown as `?…`).

mod command;
mod email;
mod webhook;

use crate::config::notify::{redacted_url, Event, NotifyConfig};
use crate::process::human_duration;
use crate::retry::{self, Attempt};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Email is tried at most this many times (transient failures only).
pub const EMAIL_ATTEMPTS: u32 = 3;
/// At most this many lines of the log tail are sent...
pub const LOG_TAIL_LINES: usize = 50;
/// ...and at most this many bytes (the newest lines are kept).
pub const LOG_TAIL_BYTES: usize = 16 * 1024;

/// One event to send.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub event: Event,
    pub job: String,
    pub host: String,
    pub time: DateTime<Utc>,
    pub run_id: Option<String>,
    pub reason: Option<String>,
    pub outcome: Option<String>,
    pub snapshot_id: Option<String>,
    pub error: Option<String>,
    /// One sentence for people: "backup job app failed: ...", "job app is overdue: no successful
    /// backup for 3 slots since ... (backupd was down for 2 d 4 h)".
    pub message: String,
    /// The last lines of the run's log (bounded when sent: at most 50 lines / 16 KiB).
    pub log_tail: Vec<String>,
}

impl Notification {
    /// A notification of `event` for `job` now, on this host, with no run details.
    pub fn new(event: Event, job: &str, message: impl Into<String>) -> Notification {
        Notification {
            event,
            job: job.to_string(),
            host: crate::sysinfo::hostname(),
            time: Utc::now(),
            run_id: None,
            reason: None,
            outcome: None,
            snapshot_id: None,
            error: None,
            message: message.into(),
            log_tail: Vec::new(),
        }
    }
}

/// The newest lines of `lines`: at most [`LOG_TAIL_LINES`] lines and [`LOG_TAIL_BYTES`] bytes (a
/// single longer line keeps its end, after "…").
pub fn bounded_tail(lines: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev().take(LOG_TAIL_LINES) {
        if bytes + line.len() > LOG_TAIL_BYTES {
            if out.is_empty() {
                let mut cut = line.len() - (LOG_TAIL_BYTES - 3);
                while !line.is_char_boundary(cut) {
                    cut += 1;
                }
                out.push(format!("…{}", &line[cut..]));
            }
            break;
        }
        bytes += line.len();
        out.push(line.clone());
    }
    out.reverse();
    out
}

/// The outcome of sending on one channel.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// "webhook https://host/path" (no credentials, no query), "email to a@b", "command".
    pub channel: String,
    pub ok: bool,
    /// Attempts made (0: the channel could not even be tried, e.g. an invalid URL).
    pub attempts: u32,
    /// The last attempt's error: what failed, where, why, and what to do.
    pub error: Option<String>,
}

/// Why a channel failed. [`Delivery::error`] is its text.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("webhook POST {url}: timed out after {} {phase} {host}; check that the server is up and answers, or raise the webhook's `timeout`", human_duration(*timeout))]
    HttpTimeout {
        url: String,
        host: String,
        timeout: Duration,
        phase: String,
    },
    #[error("webhook POST {url}: could not connect to {host}: {reason}; check the URL and that the server is up and reachable from this machine")]
    HttpConnect {
        url: String,
        host: String,
        reason: String,
    },
    #[error("webhook POST {url}: {host} answered HTTP {status}{}; {}", excerpt_suffix(answer), status_hint(*status))]
    HttpStatus {
        url: String,
        host: String,
        status: u16,
        answer: String,
    },
    #[error("webhook POST {url}: {host} redirected (HTTP {status}) to {location}; webhooks are not redirected: put the final URL in the configuration")]
    HttpRedirect {
        url: String,
        host: String,
        status: u16,
        location: String,
    },
    #[error("webhook POST {url}: the request to {host} failed: {reason}")]
    Http {
        url: String,
        host: String,
        reason: String,
        transient: bool,
    },
    #[error("email: could not read the SMTP password from {}: {source}; check `password_file` and its permissions", path.display())]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("email: could not build the message: {reason}")]
    Message { reason: String },
    #[error("email via {server}:{port} ({security}): {reason}; {hint}")]
    Smtp {
        server: String,
        port: u16,
        security: &'static str,
        reason: String,
        hint: &'static str,
        transient: bool,
    },
    #[error("notification command {command:?}: could not start `sh -c`: {source}")]
    CommandSpawn {
        command: String,
        source: std::io::Error,
    },
    #[error(
        "notification command {command:?} failed: {status}; {hint}{}",
        stderr_suffix(stderr)
    )]
    CommandFailed {
        command: String,
        status: String,
        hint: &'static str,
        stderr: String,
    },
    #[error("{channel}: internal error: the sending thread panicked or could not be started; see the daemon's log")]
    Panicked { channel: String },
}

impl NotifyError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            NotifyError::HttpTimeout { .. } | NotifyError::HttpConnect { .. } => true,
            NotifyError::HttpStatus { status, .. } => *status == 429 || *status >= 500,
            NotifyError::Http { transient, .. } | NotifyError::Smtp { transient, .. } => *transient,
            _ => false,
        }
    }
}

fn excerpt_suffix(answer: &str) -> String {
    if answer.trim().is_empty() {
        String::new()
    } else {
        format!(": {:?}", answer.trim())
    }
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "check the credentials in the URL or the `headers`",
        404 | 410 => "check the URL (for Healthchecks: the check's ping URL)",
        429 => "the server limits requests: it was retried",
        s if s >= 500 => "the server failed: it was retried; check the server",
        _ => "the server refused the request: check the URL, `mode` and `headers`",
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{stderr}")
    }
}

/// The webhook's JSON body (schema in the module docs; `version` 1).
pub fn webhook_body(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "event": n.event,
        "job": n.job,
        "host": n.host,
        "time": n.time.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "run_id": n.run_id,
        "reason": n.reason,
        "outcome": n.outcome,
        "snapshot_id": n.snapshot_id,
        "error": n.error,
        "message": n.message,
        "log_tail": bounded_tail(&n.log_tail),
    })
}

/// Sends `n` on every configured channel that wants its event. Blocking; never panics; each
/// channel retried per its policy; returns one [`Delivery`] per channel tried (none when the
/// event is not wanted).
pub fn send(cfg: &NotifyConfig, n: &Notification) -> Vec<Delivery> {
    if !cfg.wants(n.event) {
        return Vec::new();
    }
    type Job<'a> = (String, Box<dyn FnOnce() -> Delivery + Send + 'a>);
    let mut jobs: Vec<Job> = Vec::new();
    for w in &cfg.webhook {
        jobs.push((
            format!("webhook {}", redacted_url(&w.url)),
            Box::new(move || webhook::send(w, n)),
        ));
    }
    if let Some(e) = &cfg.email {
        jobs.push((email::channel(e), Box::new(move || email::send(e, n))));
    }
    if let Some(c) = &cfg.command {
        let timeout = cfg.command_timeout;
        jobs.push((
            "command".into(),
            Box::new(move || command::run(c, timeout, n)),
        ));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(channel, f)| (channel, std::thread::Builder::new().spawn_scoped(s, f)))
            .collect();
        handles
            .into_iter()
            .map(|(channel, h)| {
                let joined = match h {
                    Ok(h) => h.join().ok(),
                    Err(_) => None,
                };
                joined.unwrap_or_else(|| Delivery {
                    error: Some(
                        NotifyError::Panicked {
                            channel: channel.clone(),
                        }
                        .to_string(),
                    ),
                    channel,
                    ok: false,
                    attempts: 0,
                })
            })
            .collect()
    })
}

/// The waits between a channel's attempts: 1 s, 2 s, 4 s, … (at most 60 s), each plus up to
/// 25 % jitter; `max` attempts in all (at least one).
fn retry_policy(max: u32) -> retry::Policy {
    retry::Policy {
        backoff: retry::Backoff {
            first: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: retry::Jitter::Above(0.25),
        },
        limit: retry::Limit::Retries(max.saturating_sub(1)),
    }
}

/// Runs `attempt` until it succeeds, fails permanently, or `max` attempts were made.
fn with_retries(
    channel: String,
    max: u32,
    mut attempt: impl FnMut() -> Result<(), NotifyError>,
) -> Delivery {
    let mut made = 0;
    let r = retry::run(
        &retry_policy(max),
        None,
        |_: &NotifyError, _: &retry::Wait| {},
        |n| {
            made = n + 1;
            match attempt() {
                Ok(()) => Attempt::Done(()),
                Err(e) if e.is_transient() => Attempt::Retry(e),
                Err(e) => Attempt::Fail(e),
            }
        },
    );
    let error = r.err().map(|g| {
        let n = g.attempts();
        let mut error = g.into_error().to_string();
        if n > 1 {
            error += &format!(" (gave up after {n} attempts)");
        }
        error
    });
    Delivery {
        channel,
        ok: error.is_none(),
        attempts: made,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A failure with every field known and a two-line log tail (shared by the channels' tests).
    pub(super) fn sample() -> Notification {
        Notification {
            event: Event::Failure,
            job: "app".into(),
            host: "db1".into(),
            time: Utc.with_ymd_and_hms(2026, 3, 29, 2, 30, 0).unwrap(),
            run_id: Some("r-42".into()),
            reason: Some("schedule 2026-03-29 02:30".into()),
            outcome: Some("failed".into()),
            snapshot_id: None,
            error: Some("repository /srv/repo is locked".into()),
            message: "backup job app failed: repository /srv/repo is locked".into(),
            log_tail: vec![
                "02:30:00 INFO starting".into(),
                "02:30:01 ERROR locked".into(),
            ],
        }
    }

    fn lines(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0len$}")).collect()
    }

    #[test]
    fn the_webhook_body_is_version_1_with_every_field() {
        let n = sample();
        let body = webhook_body(&n);
        let expected = serde_json::json!({
            "version": 1,
            "event": "failure",
            "job": "app",
            "host": "db1",
            "time": "2026-03-29T02:30:00Z",
            "run_id": "r-42",
            "reason": "schedule 2026-03-29 02:30",
            "outcome": "failed",
            "snapshot_id": null,
            "error": "repository /srv/repo is locked",
            "message": "backup job app failed: repository /srv/repo is locked",
            "log_tail": ["02:30:00 INFO starting", "02:30:01 ERROR locked"],
        });
        assert_eq!(body, expected);
        // Sub-second times keep their digits, in UTC; the tail is bounded.
        let n = Notification {
            time: n.time + chrono::Duration::milliseconds(250),
            log_tail: lines(80, 3),
            ..n
        };
        let body = webhook_body(&n);
        assert_eq!(body["time"], "2026-03-29T02:30:00.250Z");
        assert_eq!(body["log_tail"].as_array().unwrap().len(), LOG_TAIL_LINES);
        assert_eq!(body["log_tail"][0], "030");
    }

    #[test]
    fn bounded_tail_keeps_the_newest_lines_within_both_limits() {
        assert!(bounded_tail(&[]).is_empty());
        let few = lines(3, 2);
        assert_eq!(bounded_tail(&few), few);
        // Lines: the newest 50.
        let t = bounded_tail(&lines(51, 2));
        assert_eq!(t.len(), LOG_TAIL_LINES);
        assert_eq!((t[0].as_str(), t[49].as_str()), ("01", "50"));
        // Bytes: whole lines only, the newest first; exactly the limit fits.
        let t = bounded_tail(&lines(4, LOG_TAIL_BYTES / 4));
        assert_eq!(t.len(), 4);
        let t = bounded_tail(&lines(4, LOG_TAIL_BYTES / 4 + 1));
        assert_eq!(t.len(), 3);
        assert!(t[0].starts_with('0') && t[0].ends_with('1'));
        // One line longer than the limit keeps its end after "…", on a character boundary.
        let long = format!("start{}", "é".repeat(LOG_TAIL_BYTES));
        let t = bounded_tail(&["old".into(), long.clone()]);
        assert_eq!(t.len(), 1);
        assert!(t[0].starts_with('…') && long.ends_with(&t[0]["…".len()..]));
        assert!(t[0].len() <= LOG_TAIL_BYTES, "{}", t[0].len());
    }

    fn status(status: u16, answer: &str) -> NotifyError {
        NotifyError::HttpStatus {
            url: "https://hooks.example/x?…".into(),
            host: "hooks.example:443".into(),
            status,
            answer: answer.into(),
        }
    }

    #[test]
    fn http_statuses_say_what_to_do_and_whether_they_were_retried() {
        assert_eq!(
            status(404, "  no such check  ").to_string(),
            "webhook POST https://hooks.example/x?…: hooks.example:443 answered HTTP 404: \
             \"no such check\"; check the URL (for Healthchecks: the check's ping URL)"
        );
        assert_eq!(
            status(401, " \n").to_string(),
            "webhook POST https://hooks.example/x?…: hooks.example:443 answered HTTP 401; \
             check the credentials in the URL or the `headers`"
        );
        let hint = |s: u16| {
            let text = status(s, "").to_string();
            text.split_once("; ").unwrap().1.to_string()
        };
        assert_eq!(hint(403), hint(401));
        assert_eq!(hint(410), hint(404));
        assert_eq!(hint(429), "the server limits requests: it was retried");
        assert_eq!(
            hint(503),
            "the server failed: it was retried; check the server"
        );
        assert_eq!(
            hint(400),
            "the server refused the request: check the URL, `mode` and `headers`"
        );
        for (s, transient) in [(400, false), (404, false), (408, false), (429, true)] {
            assert_eq!(status(s, "").is_transient(), transient, "{s}");
        }
        assert!(status(500, "").is_transient() && status(599, "").is_transient());
    }

    #[test]
    fn other_errors_read_as_documented() {
        let redirect = NotifyError::HttpRedirect {
            url: "http://h/x".into(),
            host: "h:80".into(),
            status: 301,
            location: "https://h/x".into(),
        };
        assert_eq!(
            redirect.to_string(),
            "webhook POST http://h/x: h:80 redirected (HTTP 301) to https://h/x; webhooks are \
             not redirected: put the final URL in the configuration"
        );
        assert!(!redirect.is_transient());
        let timeout = NotifyError::HttpTimeout {
            url: "http://h/x".into(),
            host: "h:80".into(),
            timeout: Duration::from_secs(90),
            phase: "connecting to".into(),
        };
        assert!(timeout.is_transient());
        assert_eq!(
            timeout.to_string(),
            "webhook POST http://h/x: timed out after 1m30s connecting to h:80; check that the \
             server is up and answers, or raise the webhook's `timeout`"
        );
        let failed = |stderr: &str| NotifyError::CommandFailed {
            command: "page-me".into(),
            status: "exit code 3".into(),
            hint: "run it by hand",
            stderr: stderr.into(),
        };
        assert_eq!(
            failed("").to_string(),
            "notification command \"page-me\" failed: exit code 3; run it by hand"
        );
        assert_eq!(
            failed("    oops").to_string(),
            "notification command \"page-me\" failed: exit code 3; run it by hand; its stderr \
             ended with:\n    oops"
        );
        assert!(!failed("").is_transient());
    }

    #[test]
    fn send_tries_only_wanted_events_and_reports_unusable_channels() {
        let cfg = NotifyConfig {
            webhook: vec![crate::config::notify::WebhookConfig {
                url: "ftp://user:secret@h/x?token=t".into(),
                mode: Default::default(),
                timeout: Duration::from_secs(1),
                retries: 0,
                headers: Default::default(),
            }],
            ..NotifyConfig::default()
        };
        let start = Notification::new(Event::Start, "app", "started");
        assert!(send(&cfg, &start).is_empty());
        let d = send(&cfg, &sample());
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].channel, "webhook ftp://h/…?…");
        assert!(!d[0].ok);
        assert_eq!(d[0].attempts, 0);
        let e = d[0].error.as_deref().unwrap();
        assert!(e.starts_with("webhook URL ftp://h/…?…: "), "{e}");
        assert!(!e.contains("secret") && !e.contains("token=t"), "{e}");
    }

    #[test]
    fn retries_stop_at_success_or_a_permanent_error() {
        let mut calls = 0;
        let d = with_retries("c".into(), 5, || {
            calls += 1;
            Ok(())
        });
        assert!(d.ok && d.attempts == 1 && d.error.is_none() && calls == 1);
        let d = with_retries("c".into(), 5, || Err(status(404, "")));
        assert_eq!((d.ok, d.attempts), (false, 1));
        assert!(!d.error.unwrap().contains("gave up"));
    }
}
