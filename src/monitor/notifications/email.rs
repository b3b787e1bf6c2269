//! Delivery by email: the subject, the plain-text body, and one SMTP conversation (retried for transient failures).

use super::{bounded_tail, with_retries, Delivery, Notification, NotifyError, EMAIL_ATTEMPTS};
use crate::config::notify::{EmailConfig, SmtpSecurity};
use chrono::SecondsFormat;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};

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
    let (message, transport) = match build_email(e, n).and_then(|m| Ok((m, transport(e)?))) {
        Ok(ready) => ready,
        Err(err) => {
            return Delivery {
                channel,
                ok: false,
                attempts: 0,
                error: Some(err.to_string()),
            }
        }
    };
    with_retries(channel, EMAIL_ATTEMPTS, || {
        use lettre::Transport;
        transport
            .send(&message)
            .map(|_| ())
            .map_err(|err| smtp_failure(e, &err))
    })
}

/// The SMTP client for `e`: its server, port, TLS, timeout and login.
fn transport(e: &EmailConfig) -> Result<lettre::SmtpTransport, NotifyError> {
    let credentials = credentials(e)?;
    let mut builder = lettre::SmtpTransport::builder_dangerous(e.server.trim())
        .port(e.port())
        .tls(tls(e)?)
        .timeout(Some(e.timeout));
    if let Some(c) = credentials {
        builder = builder.credentials(c);
    }
    Ok(builder.build())
}

/// The SMTP login: `username` and the first line of `password_file` (read now), if both are set.
fn credentials(e: &EmailConfig) -> Result<Option<Credentials>, NotifyError> {
    let (Some(user), Some(path)) = (&e.username, &e.password_file) else {
        return Ok(None);
    };
    let password = std::fs::read_to_string(path).map_err(|source| NotifyError::PasswordFile {
        path: path.clone(),
        source,
    })?;
    Ok(Some(Credentials::new(
        user.clone(),
        password.lines().next().unwrap_or("").to_string(),
    )))
}

/// The TLS of `security`: none, STARTTLS required, or TLS from the first byte.
fn tls(e: &EmailConfig) -> Result<Tls, NotifyError> {
    if e.security == SmtpSecurity::None {
        return Ok(Tls::None);
    }
    let host = e
        .server
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']');
    match TlsParameters::new(host.to_string()) {
        Ok(p) if e.security == SmtpSecurity::Tls => Ok(Tls::Wrapper(p)),
        Ok(p) => Ok(Tls::Required(p)),
        Err(err) => Err(smtp_error(
            e,
            format!("could not set up TLS: {err}"),
            "check `server`",
            false,
        )),
    }
}

/// A failed SMTP conversation as a [`NotifyError`]: what the server or the connection said
/// (with its causes), what to do, and whether to try again.
fn smtp_failure(e: &EmailConfig, err: &lettre::transport::smtp::Error) -> NotifyError {
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
    smtp_error(e, with_causes(err), hint, transient)
}

/// `err`'s text, then each cause's that it does not already contain, after ": ".
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut reason = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !reason.contains(&t) {
            reason += &format!(": {t}");
        }
        src = s.source();
    }
    reason
}

/// [`NotifyError::Smtp`] naming `e`'s server, port and security.
fn smtp_error(e: &EmailConfig, reason: String, hint: &'static str, transient: bool) -> NotifyError {
    NotifyError::Smtp {
        server: e.server.trim().to_string(),
        port: e.port(),
        security: e.security.as_str(),
        reason,
        hint,
        transient,
    }
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
