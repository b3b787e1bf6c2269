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

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use crate::config::notify::Event;
    use std::time::Duration;

    fn config(security: SmtpSecurity) -> EmailConfig {
        EmailConfig {
            server: " smtp.example.com ".into(),
            port: None,
            security,
            username: None,
            password_file: None,
            from: "backupd <backupd@example.com>".into(),
            to: vec!["ops@example.com".into(), "dba@example.com".into()],
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn subject_and_text_carry_the_message_the_fields_and_the_tail() {
        let n = sample();
        assert_eq!(email_subject(&n), "[backupd] app: failure on db1");
        assert_eq!(
            email_text(&n),
            "backup job app failed: repository /srv/repo is locked\n\
             \n\
             event:     failure\n\
             job:       app\n\
             host:      db1\n\
             time:      2026-03-29T02:30:00Z\n\
             run id:    r-42\n\
             reason:    schedule 2026-03-29 02:30\n\
             outcome:   failed\n\
             error:     repository /srv/repo is locked\n\
             \n\
             The last lines of the run's log:\n\
             \n    02:30:00 INFO starting\n    02:30:01 ERROR locked\n"
        );
        let bare = Notification::new(Event::Overdue, "app", "job app is overdue");
        let text = email_text(&bare);
        assert!(
            text.starts_with("job app is overdue\n\nevent:     overdue\n"),
            "{text}"
        );
        assert!(
            !text.contains("run id:") && !text.contains("log:"),
            "{text}"
        );
        assert_eq!(
            channel(&config(SmtpSecurity::Tls)),
            "email to ops@example.com, dba@example.com"
        );
    }

    #[test]
    fn bad_addresses_and_password_files_are_named() {
        let mut e = config(SmtpSecurity::StartTls);
        e.to.push("not an address".into());
        let err = build_email(&e, &sample()).unwrap_err().to_string();
        assert!(
            err.starts_with("email: could not build the message: to = \"not an address\" is not an email address"),
            "{err}"
        );
        assert!(err.ends_with("; fix it in the configuration"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smtp-password");
        e.username = Some("backupd".into());
        e.password_file = Some(file.clone());
        let err = credentials(&e).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "email: could not read the SMTP password from {}: ",
                file.display()
            )) && err.ends_with("; check `password_file` and its permissions"),
            "{err}"
        );
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        assert_eq!(
            credentials(&e).unwrap(),
            Some(Credentials::new("backupd".into(), "s3cret".into()))
        );
        e.username = None;
        assert_eq!(credentials(&e).unwrap(), None);
    }

    #[test]
    fn security_picks_the_tls_and_errors_name_the_server() {
        assert!(matches!(tls(&config(SmtpSecurity::None)), Ok(Tls::None)));
        assert!(matches!(
            tls(&config(SmtpSecurity::Tls)),
            Ok(Tls::Wrapper(_))
        ));
        assert!(matches!(
            tls(&config(SmtpSecurity::StartTls)),
            Ok(Tls::Required(_))
        ));
        let e = smtp_error(
            &config(SmtpSecurity::Tls),
            "connection refused".into(),
            "check `server`",
            true,
        );
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "email via smtp.example.com:465 (tls): connection refused; check `server`"
        );
    }

    #[test]
    fn causes_are_added_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let inner = E("refused", None);
        let err = E(
            "connection error: refused",
            Some(Box::new(E("os error 111", Some(Box::new(inner))))),
        );
        assert_eq!(with_causes(&err), "connection error: refused: os error 111");
    }
}
