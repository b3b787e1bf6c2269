//! Delivering one notification: the event's body, and its blocking delivery on the configured webhooks, email and command.
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

use crate::config::notify::{
    redact, redacted_url, EmailConfig, Event, NotifyConfig, SmtpSecurity, Target, WebhookConfig,
    WebhookMode,
};
use crate::process::{describe_status, human_duration, read_lines, shell_command, Tail, Watchdog};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Email is tried at most this many times (transient failures only).
pub const EMAIL_ATTEMPTS: u32 = 3;
/// At most this many lines of the log tail are sent...
pub const LOG_TAIL_LINES: usize = 50;
/// ...and at most this many bytes (the newest lines are kept).
pub const LOG_TAIL_BYTES: usize = 16 * 1024;
/// The first bytes of an HTTP error answer quoted in the error.
const ANSWER_EXCERPT: usize = 200;

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
            Box::new(move || send_webhook(w, n)),
        ));
    }
    if let Some(e) = &cfg.email {
        jobs.push((email_channel(e), Box::new(move || send_email(e, n))));
    }
    if let Some(c) = &cfg.command {
        let timeout = cfg.command_timeout;
        jobs.push((
            "command".into(),
            Box::new(move || run_command(c, timeout, n)),
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

/// The wait before attempt `attempt + 1` (attempt ≥ 1): 1 s, 2 s, 4 s, … (at most 60 s), plus
/// up to 25 % jitter.
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let base = Duration::from_secs(1u64 << (attempt - 1).min(6)).min(Duration::from_secs(60));
    let jitter = rand::thread_rng().gen_range(0.0..0.25);
    base + base.mul_f64(jitter)
}

/// Runs `attempt` until it succeeds, fails permanently, or `max` attempts were made.
fn with_retries(
    channel: String,
    max: u32,
    mut attempt: impl FnMut() -> Result<(), NotifyError>,
) -> Delivery {
    let mut n = 0;
    loop {
        n += 1;
        match attempt() {
            Ok(()) => {
                return Delivery {
                    channel,
                    ok: true,
                    attempts: n,
                    error: None,
                }
            }
            Err(e) if e.is_transient() && n < max => std::thread::sleep(backoff(n)),
            Err(e) => {
                let mut error = e.to_string();
                if n > 1 {
                    error += &format!(" (gave up after {n} attempts)");
                }
                return Delivery {
                    channel,
                    ok: false,
                    attempts: n,
                    error: Some(error),
                };
            }
        }
    }
}

fn healthchecks_suffix(e: Event) -> &'static str {
    match e {
        Event::Start => "start",
        Event::Success | Event::Recovered | Event::Warning => "",
        Event::Failure | Event::Overdue => "fail",
    }
}

/// The plain-text body of a Healthchecks ping: the message (after "warning: " for a warning),
/// then the log tail.
fn healthchecks_body(n: &Notification) -> String {
    let mut s = match n.event {
        Event::Warning => format!("warning: {}", n.message),
        _ => n.message.clone(),
    };
    let tail = bounded_tail(&n.log_tail);
    if !tail.is_empty() {
        s += "\n\n";
        s += &tail.join("\n");
    }
    s.push('\n');
    s
}

fn send_webhook(w: &WebhookConfig, n: &Notification) -> Delivery {
    let channel = format!("webhook {}", redacted_url(&w.url));
    let target = match Target::parse(&w.url) {
        Ok(t) => t,
        Err(reason) => {
            return Delivery {
                channel,
                ok: false,
                attempts: 0,
                error: Some(
                    NotifyError::BadUrl {
                        url: redacted_url(&w.url),
                        reason,
                    }
                    .to_string(),
                ),
            }
        }
    };
    let (url, content_type, body) = match w.mode {
        WebhookMode::Json => (
            target.url.clone(),
            "application/json",
            serde_json::to_vec(&webhook_body(n)).unwrap_or_default(),
        ),
        WebhookMode::Healthchecks => (
            target.with_suffix(healthchecks_suffix(n.event)),
            "text/plain; charset=utf-8",
            healthchecks_body(n).into_bytes(),
        ),
    };
    let agent = crate::repo::http::plain_agent(w.timeout);
    let has = |name: &str| w.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
    with_retries(channel, w.retries.saturating_add(1), || {
        let mut req = agent.post(url.as_str());
        if !has("content-type") {
            req = req.header("Content-Type", content_type);
        }
        if let (Some(auth), false) = (&target.basic_auth, has("authorization")) {
            req = req.header("Authorization", auth);
        }
        for (k, v) in &w.headers {
            req = req.header(k, v);
        }
        post_once(req, &body, &url, &target.host, w.timeout)
    })
}

fn post_once(
    req: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
    url: &url::Url,
    host: &str,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let shown = redact(url);
    let mut resp = req
        .send(body)
        .map_err(|e| http_error(e, &shown, host, timeout))?;
    let status = resp.status().as_u16();
    let mut answer = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(ANSWER_EXCERPT as u64)
        .read_to_end(&mut answer);
    if (200..300).contains(&status) {
        return Ok(());
    }
    if (300..400).contains(&status) {
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(redacted_url)
            .unwrap_or_else(|| "nowhere (no Location)".into());
        return Err(NotifyError::HttpRedirect {
            url: shown,
            host: host.into(),
            status,
            location,
        });
    }
    Err(NotifyError::HttpStatus {
        url: shown,
        host: host.into(),
        status,
        answer: String::from_utf8_lossy(&answer).into_owned(),
    })
}

fn http_error(e: ureq::Error, url: &str, host: &str, timeout: Duration) -> NotifyError {
    let (url, host) = (url.to_string(), host.to_string());
    match e {
        ureq::Error::Timeout(t) => NotifyError::HttpTimeout {
            url,
            host,
            timeout,
            phase: match t {
                ureq::Timeout::Resolve => "resolving",
                ureq::Timeout::Connect => "connecting to",
                ureq::Timeout::SendRequest | ureq::Timeout::SendBody => "sending to",
                _ => "waiting for an answer from",
            }
            .into(),
        },
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            NotifyError::HttpTimeout {
                url,
                host,
                timeout,
                phase: "talking to".into(),
            }
        }
        ureq::Error::Io(io) => NotifyError::HttpConnect {
            url,
            host,
            reason: io.to_string(),
        },
        ureq::Error::HostNotFound => NotifyError::HttpConnect {
            url,
            host,
            reason: "the host name could not be resolved".into(),
        },
        ureq::Error::ConnectionFailed => NotifyError::HttpConnect {
            url,
            host,
            reason: "the connection failed".into(),
        },
        ureq::Error::BadUri(_) => NotifyError::Http {
            url,
            host,
            reason: "the URL is not valid".into(),
            transient: false,
        },
        ureq::Error::Protocol(p) => NotifyError::Http {
            url,
            host,
            reason: format!("the answer is not valid HTTP/1.1 ({p})"),
            transient: true,
        },
        other => NotifyError::Http {
            url,
            host,
            reason: other.to_string(),
            transient: false,
        },
    }
}

fn email_channel(e: &EmailConfig) -> String {
    format!("email to {}", e.to.join(", "))
}

/// The subject line: `[backupd] JOB: EVENT on HOST`.
fn email_subject(n: &Notification) -> String {
    format!("[backupd] {}: {} on {}", n.job, n.event, n.host)
}

/// The plain-text body: the message, the fields, the log tail.
fn email_text(n: &Notification) -> String {
    let mut s = format!("{}\n\n", n.message);
    let mut field = |name: &str, v: Option<&str>| {
        if let Some(v) = v {
            s += &format!("{name:<10} {v}\n");
        }
    };
    field("event:", Some(n.event.as_str()));
    field("job:", Some(&n.job));
    field("host:", Some(&n.host));
    field(
        "time:",
        Some(&n.time.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    field("run id:", n.run_id.as_deref());
    field("reason:", n.reason.as_deref());
    field("outcome:", n.outcome.as_deref());
    field("snapshot:", n.snapshot_id.as_deref());
    field("error:", n.error.as_deref());
    let tail = bounded_tail(&n.log_tail);
    if !tail.is_empty() {
        s += "\nThe last lines of the run's log:\n\n";
        for l in tail {
            s += &format!("    {l}\n");
        }
    }
    s
}

fn send_email(e: &EmailConfig, n: &Notification) -> Delivery {
    let channel = email_channel(e);
    let fail = |err: NotifyError| Delivery {
        channel: channel.clone(),
        ok: false,
        attempts: 0,
        error: Some(err.to_string()),
    };
    let message = match build_email(e, n) {
        Ok(m) => m,
        Err(err) => return fail(err),
    };
    let credentials = match (&e.username, &e.password_file) {
        (Some(user), Some(path)) => match std::fs::read_to_string(path) {
            Ok(p) => Some(lettre::transport::smtp::authentication::Credentials::new(
                user.clone(),
                p.lines().next().unwrap_or("").to_string(),
            )),
            Err(source) => {
                return fail(NotifyError::PasswordFile {
                    path: path.clone(),
                    source,
                })
            }
        },
        _ => None,
    };
    let server = e.server.trim().to_string();
    let port = e.port();
    let smtp_error = |reason: String, hint: &'static str, transient: bool| NotifyError::Smtp {
        server: server.clone(),
        port,
        security: e.security.as_str(),
        reason,
        hint,
        transient,
    };
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let tls = match e.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::StartTls | SmtpSecurity::Tls => {
            let host = server
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            match TlsParameters::new(host) {
                Ok(p) if e.security == SmtpSecurity::Tls => Tls::Wrapper(p),
                Ok(p) => Tls::Required(p),
                Err(err) => {
                    return fail(smtp_error(
                        format!("could not set up TLS: {err}"),
                        "check `server`",
                        false,
                    ))
                }
            }
        }
    };
    let mut builder = lettre::SmtpTransport::builder_dangerous(server.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(e.timeout));
    if let Some(c) = credentials {
        builder = builder.credentials(c);
    }
    let transport = builder.build();
    with_retries(channel.clone(), EMAIL_ATTEMPTS, || {
        use lettre::Transport;
        transport.send(&message).map(|_| ()).map_err(|err| {
            let (hint, transient) = if err.is_permanent() {
                (
                    "the server refused: check `from`, `to`, `username` and the password",
                    false,
                )
            } else if err.is_transient() {
                ("the server asked to try later: it was retried", true)
            } else if err.is_tls() {
                (
                    "check `security` and `port` (starttls: 587, tls: 465) and the server's certificate",
                    false,
                )
            } else if err.is_timeout() {
                (
                    "the server did not answer in time: check it, or raise `timeout`",
                    true,
                )
            } else {
                (
                    "check `server`, `port` and `security`, and that the server is reachable from this machine",
                    true,
                )
            };
            let mut reason = err.to_string();
            let mut src = std::error::Error::source(&err);
            while let Some(s) = src {
                let t = s.to_string();
                if !reason.contains(&t) {
                    reason += &format!(": {t}");
                }
                src = s.source();
            }
            smtp_error(reason, hint, transient)
        })
    })
}

fn build_email(e: &EmailConfig, n: &Notification) -> Result<lettre::Message, NotifyError> {
    use lettre::message::{header::ContentType, Mailbox};
    let bad = |field: &str, v: &str, err: &dyn std::fmt::Display| NotifyError::Message {
        reason: format!(
            "{field} = {v:?} is not an email address ({err}); fix it in the configuration"
        ),
    };
    let from: Mailbox = e.from.parse().map_err(|err| bad("from", &e.from, &err))?;
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(email_subject(n))
        .header(ContentType::TEXT_PLAIN);
    for t in &e.to {
        b = b.to(t.parse().map_err(|err| bad("to", t, &err))?);
    }
    b.body(email_text(n)).map_err(|err| NotifyError::Message {
        reason: err.to_string(),
    })
}

fn run_command(shell: &str, timeout: Duration, n: &Notification) -> Delivery {
    let channel = "command".to_string();
    let shown: String = if shell.chars().count() > 100 {
        format!("{}…", shell.chars().take(100).collect::<String>())
    } else {
        shell.to_string()
    };
    let result = (|| -> Result<(), NotifyError> {
        let mut c = shell_command(shell);
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let env: [(&str, Option<String>); 10] = [
            ("BACKUPD_EVENT", Some(n.event.as_str().into())),
            ("BACKUPD_JOB", Some(n.job.clone())),
            ("BACKUPD_HOST", Some(n.host.clone())),
            (
                "BACKUPD_TIME",
                Some(n.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            ),
            ("BACKUPD_MESSAGE", Some(n.message.clone())),
            ("BACKUPD_RUN_ID", n.run_id.clone()),
            ("BACKUPD_REASON", n.reason.clone()),
            ("BACKUPD_OUTCOME", n.outcome.clone()),
            ("BACKUPD_SNAPSHOT_ID", n.snapshot_id.clone()),
            ("BACKUPD_ERROR", n.error.clone()),
        ];
        for (k, v) in env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let mut child = c.spawn().map_err(|source| NotifyError::CommandSpawn {
            command: shown.clone(),
            source,
        })?;
        let pid = child.id();
        let mut dog = Watchdog::start(pid, Some(timeout));
        if let Some(mut stdin) = child.stdin.take() {
            let mut body = serde_json::to_vec(&webhook_body(n)).unwrap_or_default();
            body.push(b'\n');
            // A command that does not read its input must not block us: write from a thread
            // (it ends with a broken pipe at the latest when the command's group is gone).
            std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut tail = Tail::default();
                read_lines(stderr, |l| tail.push(l));
                let _ = tx.send(tail);
            });
        }
        let status = child.wait();
        let fired = dog.stop();
        // Something the command left running may hold stderr open: wait a little, not forever.
        let tail = rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
        let status = match status {
            Ok(s) if s.success() && !fired => return Ok(()),
            Ok(s) => describe_status(&s, fired.then_some(timeout)),
            Err(e) => format!("waiting for it failed: {e}"),
        };
        Err(NotifyError::CommandFailed {
            command: shown.clone(),
            status,
            hint: if fired {
                "make it finish sooner or raise `command_timeout`"
            } else {
                "run it by hand with the JSON on standard input to see why"
            },
            stderr: if tail.is_empty() {
                String::new()
            } else {
                tail.indented()
            },
        })
    })();
    Delivery {
        channel,
        ok: result.is_ok(),
        attempts: 1,
        error: result.err().map(|e| e.to_string()),
    }
}
