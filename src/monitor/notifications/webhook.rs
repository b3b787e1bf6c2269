//! Delivery on webhooks: the Healthchecks pings' paths and bodies, one POST and what its answer or its failure means.

use super::{bounded_tail, webhook_body, with_retries, Delivery, Notification, NotifyError};
use crate::config::notify::{redact, redacted_url, Event, Target, WebhookConfig, WebhookMode};
use crate::repo::http::{fault, Fault};
use std::io::{ErrorKind, Read};
use std::time::Duration;

/// The first bytes of an HTTP error answer quoted in the error.
const ANSWER_EXCERPT: usize = 200;

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

/// Sends `n` on webhook `w`, retried per its policy.
pub(super) fn send(w: &WebhookConfig, n: &Notification) -> Delivery {
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

/// A request that got no answer as a [`NotifyError`], from [`fault`]'s reading of it.
fn http_error(e: ureq::Error, url: &str, host: &str, timeout: Duration) -> NotifyError {
    let (url, host) = (url.to_string(), host.to_string());
    let timed_out = |url, host, phase: &str| NotifyError::HttpTimeout {
        url,
        host,
        timeout,
        phase: phase.into(),
    };
    let connect = |url, host, reason: String| NotifyError::HttpConnect { url, host, reason };
    match fault(&e) {
        Fault::Timeout(t) => timed_out(url, host, timeout_phase(t)),
        // A TLS failure in the handshake comes inside an I/O error and has always been taken
        // as one here (a connection failure, retried), though the module docs call TLS
        // errors permanent. The waits are crate::retry's now, but what is transient stays this
        // file's: repo::http's classification would change it (it fails TLS at once, retries
        // 408 and Fault::Other), see crate::retry's module docs.
        Fault::Io(io) | Fault::Tls { io: Some(io), .. } if io.kind() == ErrorKind::TimedOut => {
            timed_out(url, host, "talking to")
        }
        Fault::Io(io) | Fault::Tls { io: Some(io), .. } => connect(url, host, io.to_string()),
        Fault::HostNotFound => connect(url, host, "the host name could not be resolved".into()),
        Fault::ConnectionFailed => connect(url, host, "the connection failed".into()),
        Fault::BadUri(_) => NotifyError::Http {
            url,
            host,
            reason: "the URL is not valid".into(),
            transient: false,
        },
        Fault::Protocol(p) => NotifyError::Http {
            url,
            host,
            reason: format!("the answer is not valid HTTP/1.1 ({p})"),
            transient: true,
        },
        Fault::Tls { io: None, .. } | Fault::TlsSetup(_) | Fault::Other => NotifyError::Http {
            url,
            host,
            reason: e.to_string(),
            transient: false,
        },
    }
}

/// The words for the phase a ureq timeout fired in: "timed out after 10 s {phase} HOST".
fn timeout_phase(t: ureq::Timeout) -> &'static str {
    match t {
        ureq::Timeout::Resolve => "resolving",
        ureq::Timeout::Connect => "connecting to",
        ureq::Timeout::SendRequest | ureq::Timeout::SendBody => "sending to",
        _ => "waiting for an answer from",
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;

    #[test]
    fn healthchecks_pings_start_succeed_or_fail() {
        for (e, suffix) in [
            (Event::Start, "start"),
            (Event::Success, ""),
            (Event::Recovered, ""),
            (Event::Warning, ""),
            (Event::Failure, "fail"),
            (Event::Overdue, "fail"),
        ] {
            assert_eq!(healthchecks_suffix(e), suffix, "{e}");
        }
        let t = Target::parse("https://hc-ping.com/abc/?create=1").unwrap();
        assert_eq!(
            t.with_suffix(healthchecks_suffix(Event::Failure)).as_str(),
            "https://hc-ping.com/abc/fail?create=1"
        );
        assert_eq!(
            t.with_suffix("").as_str(),
            "https://hc-ping.com/abc?create=1"
        );
    }

    #[test]
    fn healthchecks_bodies_are_the_message_then_the_log_tail() {
        let n = sample();
        assert_eq!(
            healthchecks_body(&n),
            "backup job app failed: repository /srv/repo is locked\n\n\
             02:30:00 INFO starting\n02:30:01 ERROR locked\n"
        );
        let warning = Notification {
            event: Event::Warning,
            message: "2 files could not be read".into(),
            log_tail: Vec::new(),
            ..n
        };
        assert_eq!(
            healthchecks_body(&warning),
            "warning: 2 files could not be read\n"
        );
    }

    fn error_of(e: ureq::Error) -> NotifyError {
        http_error(e, "https://h/x", "h:443", Duration::from_secs(10))
    }

    #[test]
    fn transport_failures_become_errors_that_name_the_host() {
        let e = error_of(ureq::Error::Timeout(ureq::Timeout::Connect));
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "webhook POST https://h/x: timed out after 10s connecting to h:443; check that the \
             server is up and answers, or raise the webhook's `timeout`"
        );
        let e = error_of(ureq::Error::Timeout(ureq::Timeout::RecvResponse));
        assert!(
            e.to_string().contains("waiting for an answer from h:443"),
            "{e}"
        );
        let io = |kind| ureq::Error::Io(std::io::Error::new(kind, "boom"));
        let e = error_of(io(ErrorKind::TimedOut));
        assert!(
            e.to_string()
                .contains("timed out after 10s talking to h:443"),
            "{e}"
        );
        let e = error_of(io(ErrorKind::ConnectionRefused));
        assert!(e.is_transient());
        assert_eq!(
            e.to_string(),
            "webhook POST https://h/x: could not connect to h:443: boom; check the URL and that \
             the server is up and reachable from this machine"
        );
        let e = error_of(ureq::Error::HostNotFound);
        assert!(e.is_transient());
        assert!(
            e.to_string()
                .contains("could not connect to h:443: the host name could not be resolved"),
            "{e}"
        );
        let e = error_of(ureq::Error::BadUri("x".into()));
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "webhook POST https://h/x: the request to h:443 failed: the URL is not valid"
        );
        let e = error_of(ureq::Error::TooManyRedirects);
        assert!(!e.is_transient());
    }

    #[test]
    fn tls_failures_read_as_they_always_did() {
        let tls = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // In the handshake (inside an I/O error): a connection failure, retried.
        let e = error_of(ureq::Error::Io(std::io::Error::new(
            ErrorKind::InvalidData,
            tls(),
        )));
        assert!(matches!(e, NotifyError::HttpConnect { .. }), "{e}");
        assert!(e.is_transient());
        assert!(e.to_string().contains(&tls().to_string()), "{e}");
        // Setting the connection up: permanent, in ureq's words.
        let e = error_of(ureq::Error::Rustls(tls()));
        assert!(!e.is_transient());
        assert!(
            e.to_string()
                .ends_with(&format!("failed: rustls: {}", tls())),
            "{e}"
        );
    }
}
