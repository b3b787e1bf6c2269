//! The HTTP plumbing remote backends share: one request with `ureq`, classification of failures (also for Google Drive and the webhooks), and retries with backoff and jitter.

use super::backend::BackendError;
use crate::retry::{self, GaveUp};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What kind of remote failure it is (decides exit codes and whether to retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteClass {
    /// The object is not there (404 on an object).
    NotFound,
    /// The bucket (or the repository's top folder) is not there.
    NoContainer,
    /// The credentials are wrong or lack the permission (401, 403).
    Denied,
    /// The server cannot be reached (connection refused, DNS, timeouts after every retry).
    Unreachable,
    /// The storage is full or over its quota.
    Quota,
    /// The server refuses deletions (a REST server in append-only mode).
    AppendOnly,
    /// The TLS handshake failed: an untrusted or wrong certificate, or no TLS on that port.
    /// Not retried; exit code 15 like `Unreachable` (the storage cannot be reached safely).
    Tls,
    /// Anything else (a 4xx we do not know, a malformed answer, 5xx after every retry).
    Other,
}

/// A failure of a remote request, with the server's own words where it gave some.
#[derive(Debug)]
pub struct RemoteError {
    pub class: RemoteClass,
    pub message: String,
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RemoteError {}

impl RemoteError {
    pub fn new(class: RemoteClass, message: impl Into<String>) -> RemoteError {
        RemoteError {
            class,
            message: message.into(),
        }
    }

    /// As a `BackendError` for operation `op` on `path`.
    pub fn into_backend(self, op: &'static str, path: String) -> BackendError {
        let kind = match self.class {
            RemoteClass::NotFound => io::ErrorKind::NotFound,
            RemoteClass::Denied | RemoteClass::AppendOnly => io::ErrorKind::PermissionDenied,
            RemoteClass::Unreachable => io::ErrorKind::ConnectionRefused,
            _ => io::ErrorKind::Other,
        };
        BackendError {
            op,
            path,
            source: io::Error::new(kind, self),
        }
    }
}

/// The remote failure class of a backend error, if it came from a remote backend.
pub fn remote_class(e: &BackendError) -> Option<RemoteClass> {
    e.source
        .get_ref()
        .and_then(|r| r.downcast_ref::<RemoteError>())
        .map(|r| r.class)
}

/// One answer: status, headers and the whole body.
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The outcome of one attempt: done, worth another try, or final.
pub type Attempt<T> = retry::Attempt<T, RemoteError>;

/// Extra trusted roots for HTTPS (a private CA, restic's `--cacert`), added to Mozilla's.
#[derive(Clone)]
pub struct CaCerts {
    /// The file they came from (for messages).
    pub file: PathBuf,
    certs: Arc<Vec<ureq::tls::Certificate<'static>>>,
}

impl fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CaCerts({}, {} certificate(s))",
            self.file.display(),
            self.certs.len()
        )
    }
}

impl CaCerts {
    /// Every certificate of a PEM file; an unreadable file, a file without a certificate or a
    /// certificate that is not valid DER is an error naming the file.
    pub fn from_pem_file(file: &Path) -> Result<CaCerts, String> {
        let what = format!("the CA certificate file {}", file.display());
        let pem = std::fs::read(file).map_err(|e| format!("cannot read {what}: {e}"))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => {
                    let der = rustls::pki_types::CertificateDer::from(c.der());
                    if let Err(e) = webpki_anchor_check(&der) {
                        return Err(format!(
                            "{what}: certificate {} is not valid: {e}",
                            certs.len() + 1
                        ));
                    }
                    certs.push(c)
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{what} is not valid PEM: {e}")),
            }
        }
        if certs.is_empty() {
            return Err(format!(
                "{what} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)"
            ));
        }
        Ok(CaCerts {
            file: file.to_path_buf(),
            certs: Arc::new(certs),
        })
    }

    /// Mozilla's roots and these, as ureq takes them.
    fn root_certs(&self) -> ureq::tls::RootCerts {
        let mut all: Vec<ureq::tls::Certificate<'static>> =
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
        all.extend(self.certs.iter().cloned());
        ureq::tls::RootCerts::Specific(Arc::new(all))
    }
}

/// Whether rustls would take `der` as a trust anchor (rustls silently skips ones it cannot
/// parse; we say so instead).
fn webpki_anchor_check(der: &rustls::pki_types::CertificateDer<'_>) -> Result<(), String> {
    let mut store = rustls::RootCertStore::empty();
    store
        .add(der.clone().into_owned())
        .map_err(|e| e.to_string())
}

/// A blocking HTTP client with the timeouts and retry policy of remote backends.
pub struct Http {
    agent: ureq::Agent,
    /// The extra roots it trusts, if any (named in TLS failures).
    ca: Option<CaCerts>,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff delay; it doubles each retry up to `max_delay`, with ±50 % jitter
    /// (`crate::retry`).
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Set when a request gave up as unreachable after all its retries; cleared when a request
    /// gets an answer. While set, cleanup requests (`retry_cleanup`) try once.
    gave_up: AtomicBool,
}

/// A plain agent for one-shot requests (webhooks, Google Drive): status codes come back as
/// values, no redirect is followed, backupd's user agent, and `timeout` for the whole request.
pub fn plain_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .user_agent(format!("backupd/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Http {
    pub fn new() -> Http {
        Http::with_ca(None)
    }

    /// An `Http` that also trusts the roots in `ca` (for `https://` with a private CA).
    pub fn with_ca(ca: Option<CaCerts>) -> Http {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &ca {
            tls = tls.root_certs(ca.root_certs());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(300)))
            .timeout_send_body(Some(Duration::from_secs(300)))
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(format!("backupd/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Http {
            agent,
            ca,
            retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            gave_up: AtomicBool::new(false),
        }
    }

    /// Sends one request. Transport failures come back as `Attempt::Retry` (or `Fail` for a bad
    /// URL); any HTTP status is `Done`.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Attempt<Reply> {
        let mut b = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let result = match body {
            Some(data) => match b.body(data) {
                Ok(req) => self.agent.run(req),
                Err(e) => {
                    return Attempt::Fail(RemoteError::new(RemoteClass::Other, e.to_string()))
                }
            },
            None => match b.body(()) {
                Ok(req) => self.agent.run(req),
                Err(e) => {
                    return Attempt::Fail(RemoteError::new(RemoteClass::Other, e.to_string()))
                }
            },
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return self.transport_failure(e, url),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            match resp.body_mut().with_config().limit(u64::MAX).read_to_vec() {
                Ok(b) => b,
                Err(e) => return self.transport_failure(e, url),
            }
        };
        Attempt::Done(Reply {
            status,
            headers,
            body,
        })
    }

    /// Runs `f` until it is done, fails for good, or the retries are used up (then the last
    /// transient failure is returned, class `Unreachable` for transport errors).
    pub fn retry<T>(&self, f: impl FnMut() -> Attempt<T>) -> Result<T, RemoteError> {
        self.retry_up_to(self.retries, true, f)
    }

    /// For cleanup after a failure (aborting a multipart upload, deleting our lock): like
    /// `retry`, but when a request of this client already gave up as unreachable (and none got
    /// an answer since), one attempt without backoff: the endpoint is most likely down, and
    /// what cannot be cleaned up now is handled later (stale locks, `prune` aborting old
    /// multipart uploads).
    pub fn retry_cleanup<T>(&self, f: impl FnMut() -> Attempt<T>) -> Result<T, RemoteError> {
        if self.gave_up.load(Ordering::Relaxed) {
            self.retry_up_to(0, false, f).map_err(|mut e| {
                e.message
                    .push_str(" (tried once: the endpoint was already unreachable)");
                e
            })
        } else {
            self.retry(f)
        }
    }

    fn retry_up_to<T>(
        &self,
        retries: u32,
        say_attempts: bool,
        mut f: impl FnMut() -> Attempt<T>,
    ) -> Result<T, RemoteError> {
        let policy = retry::Policy {
            backoff: retry::Backoff {
                first: self.base_delay,
                factor: 2.0,
                max: self.max_delay,
                jitter: retry::Jitter::Around(0.5),
            },
            limit: retry::Limit::Retries(retries),
        };
        let log = |e: &RemoteError, w: &retry::Wait| {
            let (n, delay) = (w.attempts, w.delay);
            tracing::debug!("remote request failed, retry {n} in ~{delay:?}: {e}");
        };
        match retry::run(&policy, None, log, |_| f()) {
            Ok(t) => {
                self.gave_up.store(false, Ordering::Relaxed);
                Ok(t)
            }
            Err(GaveUp::Exhausted {
                mut last, attempts, ..
            }) => {
                if last.class == RemoteClass::Unreachable {
                    self.gave_up.store(true, Ordering::Relaxed);
                }
                if say_attempts {
                    last.message = format!("{} (after {attempts} attempts)", last.message);
                }
                Err(last)
            }
            // Without a cancel token `run` is never cancelled; a final failure is as it came.
            Err(g) => Err(g.into_error()),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// Whether an HTTP status is worth retrying: 5xx, 429 and 408.
pub fn transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

impl Http {
    fn transport_failure<T>(&self, e: ureq::Error, url: &str) -> Attempt<T> {
        let msg = match fault(&e) {
            Fault::Tls { error, .. } => {
                return Attempt::Fail(tls_failure(error, url, self.ca.as_ref()))
            }
            Fault::Timeout(t) => format!("timed out ({t:?})"),
            Fault::HostNotFound => "the host name could not be resolved".into(),
            Fault::ConnectionFailed => "the connection failed".into(),
            Fault::Io(io) => format!("network error: {io}"),
            Fault::BadUri(u) => {
                return Attempt::Fail(RemoteError::new(
                    RemoteClass::Other,
                    format!("the URL is not valid: {u}"),
                ))
            }
            Fault::TlsSetup(t) => {
                return Attempt::Fail(RemoteError::new(
                    RemoteClass::Tls,
                    format!("TLS with {}: {t}", authority(url)),
                ))
            }
            Fault::Protocol(_) | Fault::Other => format!("HTTP error: {e}"),
        };
        Attempt::Retry(RemoteError::new(RemoteClass::Unreachable, msg))
    }
}

/// Why a request got no answer: ureq's error read once for every HTTP client (the backends,
/// Google Drive, the webhooks), each of which decides its own retries and words from it.
#[derive(Debug)]
pub enum Fault<'a> {
    /// One of the agent's timeouts fired, in this phase.
    Timeout(ureq::Timeout),
    /// The host name could not be resolved.
    HostNotFound,
    /// ureq found no way to connect.
    ConnectionFailed,
    /// rustls refused: the server's certificate, or no TLS on that port. `io` is the I/O error
    /// it came in, when it came in one (the handshake on a connection that was made).
    Tls {
        error: &'a rustls::Error,
        io: Option<&'a io::Error>,
    },
    /// TLS could not be set up (ureq's own TLS error, e.g. a host that is no DNS name).
    TlsSetup(&'static str),
    /// Any other I/O error on the connection: refused, reset, or the socket's own timeout
    /// (kind `TimedOut`).
    Io(&'a io::Error),
    /// The URL is not one ureq can request.
    BadUri(&'a str),
    /// The answer is not valid HTTP/1.1.
    Protocol(&'a dyn std::error::Error),
    /// Anything else (ureq's own words say what).
    Other,
}

/// The [`Fault`] of a request that failed with `e`.
pub fn fault(e: &ureq::Error) -> Fault<'_> {
    match e {
        ureq::Error::Timeout(t) => Fault::Timeout(*t),
        ureq::Error::HostNotFound => Fault::HostNotFound,
        ureq::Error::ConnectionFailed => Fault::ConnectionFailed,
        ureq::Error::Rustls(error) => Fault::Tls { error, io: None },
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(error) => Fault::Tls {
                error,
                io: Some(io),
            },
            None => Fault::Io(io),
        },
        ureq::Error::Tls(t) => Fault::TlsSetup(t),
        ureq::Error::BadUri(u) => Fault::BadUri(u),
        ureq::Error::Protocol(p) => Fault::Protocol(p),
        _ => Fault::Other,
    }
}

/// `host:port` of a URL (for messages).
fn authority(url: &str) -> &str {
    let after = url.split_once("://").map(|(_, a)| a).unwrap_or(url);
    after.split(['/', '?']).next().unwrap_or(after)
}

/// A TLS failure as the user should read it: what was wrong with whose certificate, and what to do.
fn tls_failure(e: &rustls::Error, url: &str, ca: Option<&CaCerts>) -> RemoteError {
    use rustls::CertificateError as C;
    let at = authority(url);
    let host = at
        .rsplit_once(':')
        .filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        .map(|(h, _)| h)
        .unwrap_or(at);
    let cacert_hint = match ca {
        None => "if the server's certificate comes from a private CA, pass the CA's certificate (PEM) with --cacert FILE, BACKUPD_CACERT=FILE or cacert = \"FILE\" in the repository's table".to_string(),
        Some(ca) => format!(
            "the CA certificate(s) in {} (--cacert / BACKUPD_CACERT / cacert) did not sign it either: pass the CA that issued the server's certificate",
            ca.file.display()
        ),
    };
    let (what, hint) = match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => (
            "its certificate is not signed by a trusted authority".to_string(),
            cacert_hint,
        ),
        rustls::Error::InvalidCertificate(C::NotValidForName)
        | rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. }) => (
            format!("its certificate is not valid for the name {host:?}"),
            format!("connect with a host name the certificate names (its subjectAltName), or issue the server a certificate for {host:?}"),
        ),
        rustls::Error::InvalidCertificate(C::Expired)
        | rustls::Error::InvalidCertificate(C::ExpiredContext { .. })
        | rustls::Error::InvalidCertificate(C::NotValidYet)
        | rustls::Error::InvalidCertificate(C::NotValidYetContext { .. }) => (
            format!("its certificate is outside its validity period ({e})"),
            "renew the server's certificate, and check this machine's clock".to_string(),
        ),
        rustls::Error::InvalidCertificate(c) => (
            format!("its certificate was refused ({c:?})"),
            cacert_hint,
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } | rustls::Error::InappropriateHandshakeMessage { .. } => (
            format!("it did not answer in TLS ({e})"),
            format!("the port may serve plain HTTP: use http:// for it, or the port where {host} serves HTTPS"),
        ),
        other => (
            format!("the TLS handshake failed ({other})"),
            "check that the server serves HTTPS on that port with a valid certificate".to_string(),
        ),
    };
    RemoteError::new(
        RemoteClass::Tls,
        format!("TLS connection to {at} failed: {what}\n  hint: {hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_gives_up_and_says_how_often() {
        let mut h = Http::new();
        h.base_delay = Duration::from_millis(1);
        h.retries = 3;
        let mut n = 0;
        let r: Result<(), _> = h.retry(|| {
            n += 1;
            Attempt::Retry(RemoteError::new(RemoteClass::Other, "503 Slow Down"))
        });
        assert_eq!(n, 4);
        assert!(r.unwrap_err().message.contains("after 4 attempts"));
        let mut n = 0;
        let r = h.retry(|| {
            n += 1;
            if n < 3 {
                Attempt::Retry(RemoteError::new(RemoteClass::Other, "429"))
            } else {
                Attempt::Done(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn cleanup_tries_once_after_giving_up_as_unreachable() {
        let mut h = Http::new();
        h.base_delay = Duration::from_millis(1);
        h.retries = 2;
        let down = || Attempt::<()>::Retry(RemoteError::new(RemoteClass::Unreachable, "refused"));
        // Before any give-up, cleanup retries in full.
        let mut n = 0;
        let _ = h.retry_cleanup(|| {
            n += 1;
            Attempt::<()>::Retry(RemoteError::new(RemoteClass::Other, "503"))
        });
        assert_eq!(n, 3, "a 5xx is no give-up as unreachable");
        let mut n = 0;
        let _ = h.retry_cleanup(|| {
            n += 1;
            down()
        });
        assert_eq!(n, 3);
        // Now the endpoint is known down: one attempt, and it says so.
        let mut n = 0;
        let e = h
            .retry_cleanup(|| {
                n += 1;
                down()
            })
            .unwrap_err();
        assert_eq!(n, 1);
        assert!(e.message.contains("tried once"), "{e}");
        // Ordinary requests still retry in full; an answer clears the state.
        let mut n = 0;
        let _ = h.retry(|| {
            n += 1;
            if n < 3 {
                down()
            } else {
                Attempt::Done(())
            }
        });
        let mut n = 0;
        let _ = h.retry_cleanup(|| {
            n += 1;
            down()
        });
        assert_eq!(n, 3, "after an answer, cleanup retries in full again");
    }

    #[test]
    fn ca_files_that_are_not_certificates_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(
            &f,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = CaCerts::from_pem_file(&f).unwrap_err();
        assert!(
            e.contains("ca.pem") && e.contains("certificate 1 is not valid"),
            "{e}"
        );
        std::fs::write(
            &f,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = CaCerts::from_pem_file(&f).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        assert_eq!(authority("https://h:1/b/k?x=1"), "h:1");
        assert_eq!(authority("https://h"), "h");
    }

    #[test]
    fn faults_find_tls_inside_io_errors() {
        let tls = || rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, tls()));
        assert!(matches!(fault(&e), Fault::Tls { io: Some(_), .. }), "{e}");
        let e = ureq::Error::Rustls(tls());
        assert!(matches!(fault(&e), Fault::Tls { io: None, .. }));
        let e = ureq::Error::Io(io::Error::from(io::ErrorKind::TimedOut));
        assert!(matches!(fault(&e), Fault::Io(io) if io.kind() == io::ErrorKind::TimedOut));
        let e = ureq::Error::Timeout(ureq::Timeout::Connect);
        assert!(matches!(fault(&e), Fault::Timeout(ureq::Timeout::Connect)));
        assert!(matches!(
            fault(&ureq::Error::HostNotFound),
            Fault::HostNotFound
        ));
        assert!(matches!(
            fault(&ureq::Error::Tls("no DNS name")),
            Fault::TlsSetup("no DNS name")
        ));
        assert!(matches!(
            fault(&ureq::Error::TooManyRedirects),
            Fault::Other
        ));
    }

    #[test]
    fn connection_refused_is_unreachable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let h = Http::new();
        match h.send("GET", &format!("http://127.0.0.1:{port}/"), &[], None) {
            Attempt::Retry(e) => assert_eq!(e.class, RemoteClass::Unreachable),
            _ => panic!("expected a transient failure"),
        }
    }
}
