//! Notifications as configured (`[notify]`, `[jobs.NAME.notify]`): the events, the channels, their checks, and webhook URLs taken apart and redacted.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The events a job can be notified of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A run started.
    Start,
    /// A run succeeded.
    Success,
    /// A run succeeded with warnings (e.g. files that could not be read).
    Warning,
    /// A run failed (each failed attempt, retries included).
    Failure,
    /// No successful backup for longer than the job's schedule allows.
    Overdue,
    /// The first success after failures or an overdue.
    Recovered,
}

impl Event {
    /// The name used in the configuration, the JSON body and the subject line.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Warning => "warning",
            Event::Failure => "failure",
            Event::Overdue => "overdue",
            Event::Recovered => "recovered",
        }
    }
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events sent when `events` is not given.
pub const DEFAULT_EVENTS: [Event; 4] = [
    Event::Failure,
    Event::Warning,
    Event::Overdue,
    Event::Recovered,
];
/// How long a notification command may run before it is killed.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A webhook attempt's default timeout.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// A webhook's default number of attempts after the first.
pub const DEFAULT_WEBHOOK_RETRIES: u32 = 3;
/// The most `retries` a webhook may have.
pub const MAX_WEBHOOK_RETRIES: u32 = 10;
/// An SMTP conversation's default timeout.
pub const DEFAULT_EMAIL_TIMEOUT: Duration = Duration::from_secs(30);
/// A job's `[jobs.NAME.notify]` table (also usable as a `[daemon.notify]` default).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Which events are sent (default: failure, warning, overdue, recovered).
    #[serde(default = "default_events")]
    pub events: Vec<Event>,
    /// `[[jobs.app.notify.webhook]]` tables or an inline array; none by default.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    /// `[jobs.app.notify.email]`.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Run with `sh -c`, the notification as JSON on stdin and `BACKUPD_*` in the environment.
    #[serde(default)]
    pub command: Option<String>,
    /// The command is killed (its whole process group) after this long; default 60 s.
    #[serde(default = "command_timeout", deserialize_with = "duration")]
    pub command_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            events: default_events(),
            webhook: Vec::new(),
            email: None,
            command: None,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
        }
    }
}

/// One `[[jobs.NAME.notify.webhook]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`; `user:password@` is sent as HTTP basic authentication.
    pub url: String,
    /// `"json"` (default) or `"healthchecks"`.
    #[serde(default)]
    pub mode: WebhookMode,
    /// Per attempt; default 10 s.
    #[serde(default = "webhook_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Attempts after the first for transient failures; default 3.
    #[serde(default = "webhook_retries")]
    pub retries: u32,
    /// Extra request headers (e.g. `Authorization`); they override backupd's own.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// What a webhook's requests look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookMode {
    /// `POST url` with the notification as JSON (`monitor::notifications::webhook_body`).
    #[default]
    Json,
    /// Healthchecks.io pings: `/start`, the base URL, `/fail`.
    Healthchecks,
}

/// `[jobs.NAME.notify.email]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name or address (no scheme, no port).
    pub server: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub port: Option<u16>,
    /// `"starttls"` (default), `"tls"`, or `"none"` (only to localhost).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// SMTP login; needs `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose first line is the SMTP password; read at each send.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, `addr@example.com` or `Name <addr@example.com>`.
    pub from: String,
    /// The recipients; at least one.
    pub to: Vec<String>,
    /// The SMTP conversation's timeout; default 30 s.
    #[serde(default = "email_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only allowed to localhost, 127.0.0.0/8 or ::1 (port 25).
    None,
}

impl SmtpSecurity {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "tls",
            SmtpSecurity::None => "none",
        }
    }
    fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        }
    }
}

fn default_events() -> Vec<Event> {
    DEFAULT_EVENTS.to_vec()
}
fn command_timeout() -> Duration {
    DEFAULT_COMMAND_TIMEOUT
}
fn webhook_timeout() -> Duration {
    DEFAULT_WEBHOOK_TIMEOUT
}
fn webhook_retries() -> u32 {
    DEFAULT_WEBHOOK_RETRIES
}
fn email_timeout() -> Duration {
    DEFAULT_EMAIL_TIMEOUT
}

/// A duration written as a string ("30s", "1m") or a number of seconds.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => crate::duration::from_secs(s).map_err(serde::de::Error::custom),
        Raw::Text(s) => crate::duration::parse_duration(&s).map_err(serde::de::Error::custom),
    }
}

impl NotifyConfig {
    /// Whether `e` is sent.
    pub fn wants(&self, e: Event) -> bool {
        self.events.contains(&e)
    }

    /// Checks what parsing cannot: URL schemes, header syntax, addresses, the plain-SMTP rule.
    /// `where_` names the table in the messages, e.g. "jobs.app.notify".
    pub fn validate(&self, where_: &str) -> Result<(), String> {
        for (i, w) in self.webhook.iter().enumerate() {
            let at = format!("{where_}.webhook[{}]", i + 1);
            Target::parse(&w.url).map_err(|reason| format!("{at}: url: {reason}"))?;
            if w.timeout.is_zero() {
                return Err(format!("{at}: timeout must be more than 0 s (default 10s)"));
            }
            if w.retries > MAX_WEBHOOK_RETRIES {
                return Err(format!(
                    "{at}: retries = {} is too many (at most {MAX_WEBHOOK_RETRIES}; the wait doubles each time)",
                    w.retries
                ));
            }
            for (k, v) in &w.headers {
                if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                    return Err(format!(
                        "{at}: headers: {k:?} is not a valid HTTP header name"
                    ));
                }
                if ureq::http::HeaderValue::from_str(v).is_err() {
                    return Err(format!(
                        "{at}: headers: the value of {k:?} is not a valid HTTP header value (no line breaks or control characters)"
                    ));
                }
            }
        }
        if let Some(e) = &self.email {
            let at = format!("{where_}.email");
            e.validate(&at)?;
        }
        if let Some(c) = &self.command {
            if c.trim().is_empty() {
                return Err(format!(
                    "{where_}: command is empty; remove it or give a shell command"
                ));
            }
            if self.command_timeout.is_zero() {
                return Err(format!(
                    "{where_}: command_timeout must be more than 0 s (default 60s)"
                ));
            }
        }
        Ok(())
    }
}

impl EmailConfig {
    fn validate(&self, at: &str) -> Result<(), String> {
        let server = self.server.trim();
        if server.is_empty() {
            return Err(format!(
                "{at}: server is empty; give the SMTP server's host name"
            ));
        }
        if server.contains("://") {
            return Err(format!(
                "{at}: server = {server:?}: give a host name, not a URL (security and port are separate keys)"
            ));
        }
        let bare = server.trim_start_matches('[').trim_end_matches(']');
        if server.contains(':') && bare.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{at}: server = {server:?}: put the port in `port`, not in the server name"
            ));
        }
        if self.security == SmtpSecurity::None && !is_local_host(server) {
            return Err(format!(
                "{at}: security = \"none\" sends the mail and any password unencrypted, so it is only allowed to localhost, 127.0.0.1 or ::1, not to {server:?}; use \"starttls\" (port 587) or \"tls\" (port 465)"
            ));
        }
        if self.port == Some(0) {
            return Err(format!("{at}: port 0 is not a port"));
        }
        match (&self.username, &self.password_file) {
            (Some(_), None) => {
                return Err(format!(
                    "{at}: username needs password_file (a file holding the SMTP password)"
                ))
            }
            (None, Some(_)) => {
                return Err(format!(
                    "{at}: password_file needs username (the SMTP login)"
                ))
            }
            _ => {}
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| format!("{at}: from = {:?} is not an email address: {e}", self.from))?;
        if self.to.is_empty() {
            return Err(format!(
                "{at}: to is empty; give at least one recipient, e.g. to = [\"ops@example.com\"]"
            ));
        }
        for t in &self.to {
            t.parse::<lettre::message::Mailbox>()
                .map_err(|e| format!("{at}: to: {t:?} is not an email address: {e}"))?;
        }
        if self.timeout.is_zero() {
            return Err(format!("{at}: timeout must be more than 0 s (default 30s)"));
        }
        Ok(())
    }

    pub(crate) fn port(&self) -> u16 {
        self.port.unwrap_or(self.security.default_port())
    }
}

fn is_local_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A webhook URL taken apart: what to request, what to show, and the credentials.
pub(crate) struct Target {
    /// Without userinfo (sent as a header instead).
    pub(crate) url: url::Url,
    /// `host:port`, for messages.
    pub(crate) host: String,
    /// `Basic ...` from the URL's `user:password@`.
    pub(crate) basic_auth: Option<String>,
}

impl Target {
    pub(crate) fn parse(raw: &str) -> Result<Target, String> {
        let mut url = url::Url::parse(raw.trim()).map_err(|e| {
            format!(
                "{} is not a URL ({e}); write e.g. https://hooks.example.com/backupd",
                redacted_url(raw)
            )
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "{} must start with http:// or https://, not {}://",
                redacted_url(raw),
                url.scheme()
            ));
        }
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => return Err(format!("{} has no host", redacted_url(raw))),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let basic_auth = if !url.username().is_empty() || url.password().is_some() {
            use base64::Engine;
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .to_string()
            };
            let user = dec(url.username());
            let pass = url.password().map(dec).unwrap_or_default();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            ))
        } else {
            None
        };
        Ok(Target {
            url,
            host: format!("{host}:{port}"),
            basic_auth,
        })
    }

    /// The URL without a trailing `/`, then with `/suffix` appended to the path (before the
    /// query) unless `suffix` is empty.
    pub(crate) fn with_suffix(&self, suffix: &str) -> url::Url {
        let mut u = self.url.clone();
        if let Ok(mut segs) = u.path_segments_mut() {
            segs.pop_if_empty();
            if !suffix.is_empty() {
                segs.push(suffix);
            }
        }
        u
    }
}

/// `raw` as shown in status, logs and history: scheme, host and port only, its path as `/…` and
/// its query as `?…` (a healthchecks UUID, a `/hook/TOKEN` or an ntfy topic is a secret), no
/// `user:password@` and no fragment.
pub fn redacted_url(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(u) => redact(&u),
        Err(_) => {
            // Not a URL: still never show what could be credentials or tokens.
            let s = raw.trim();
            let (scheme, rest) = s.split_once("://").unwrap_or(("", s));
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            let rest = match rest.split_once('/') {
                Some((auth, "")) => format!("{}/", strip_userinfo(auth)),
                Some((auth, _)) => format!("{}/…", strip_userinfo(auth)),
                None => strip_userinfo(rest).to_string(),
            };
            let q = if s.contains('?') { "?…" } else { "" };
            if scheme.is_empty() {
                format!("{rest}{q}")
            } else {
                format!("{scheme}://{rest}{q}")
            }
        }
    }
}

fn strip_userinfo(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority)
}

pub(crate) fn redact(u: &url::Url) -> String {
    let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(p) = u.port() {
        out += &format!(":{p}");
    }
    out += match u.path() {
        "" | "/" => u.path(),
        _ => "/…",
    };
    if u.query().is_some() {
        out += "?…";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn a_webhook_url_is_shown_without_its_path_query_or_credentials() {
        for (raw, shown) in [
            (
                "https://hc-ping.com/0b1c8c54-2f7e-4a6b-9d51-5a1e0c3d9f11",
                "https://hc-ping.com/…",
            ),
            (
                "https://u:pw@hooks.example:8443/hook/TOKEN?k=v#f",
                "https://hooks.example:8443/…?…",
            ),
            ("https://ntfy.sh/my-secret-topic", "https://ntfy.sh/…"),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/"),
            ("not a url u:pw@host/TOKEN?x", "host/…?…"),
        ] {
            assert_eq!(redacted_url(raw), shown, "{raw}");
        }
    }
}
