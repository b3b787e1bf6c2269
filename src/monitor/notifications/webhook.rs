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
        // errors permanent; kept so until the retry policies are unified.
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
