//! Delivery by email: the subject, the plain-text body, and one SMTP conversation (retried for transient failures).

use super::{bounded_tail, with_retries, Delivery, Notification, NotifyError, EMAIL_ATTEMPTS};
use crate::config::notify::{EmailConfig, SmtpSecurity};
use chrono::SecondsFormat;

/// "email to a@b, c@d".
pub(super) fn channel(e: &EmailConfig) -> String {
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

/// Sends `n` by email per `e`.
pub(super) fn send(e: &EmailConfig, n: &Notification) -> Delivery {
    let channel = channel(e);
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
