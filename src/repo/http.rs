//! The HTTP plumbing remote backends share: one request with `ureq`, classification of failures, and retries with backoff and jitter.

use super::backend::BackendError;
use std::fmt;
use std::io;
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
pub enum Attempt<T> {
    Done(T),
    Retry(RemoteError),
    Fail(RemoteError),
}

/// A blocking HTTP client with the timeouts and retry policy of remote backends.
pub struct Http {
    agent: ureq::Agent,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff delay; it doubles each retry up to `max_delay`, with ±50 % jitter.
    pub base_delay: Duration,
    pub max_delay: Duration,
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
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
            retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
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
            Err(e) => return transport_failure(e),
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            match resp.body_mut().with_config().limit(u64::MAX).read_to_vec() {
                Ok(b) => b,
                Err(e) => return transport_failure(e),
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
    pub fn retry<T>(&self, mut f: impl FnMut() -> Attempt<T>) -> Result<T, RemoteError> {
        let mut delay = self.base_delay;
        let mut attempt = 0;
        loop {
            match f() {
                Attempt::Done(t) => return Ok(t),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e) => {
                    if attempt >= self.retries {
                        let mut e = e;
                        e.message = format!("{} (after {} attempts)", e.message, attempt + 1);
                        return Err(e);
                    }
                    attempt += 1;
                    tracing::debug!("remote request failed, retry {attempt} in ~{delay:?}: {e}");
                    std::thread::sleep(jitter(delay));
                    delay = (delay * 2).min(self.max_delay);
                }
            }
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// `d` scaled by a random factor in [0.5, 1.5).
pub fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Whether an HTTP status is worth retrying: 5xx, 429 and 408.
pub fn transient_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

fn transport_failure<T>(e: ureq::Error) -> Attempt<T> {
    let msg = match &e {
        ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
        ureq::Error::HostNotFound => "the host name could not be resolved".into(),
        ureq::Error::ConnectionFailed => "the connection failed".into(),
        ureq::Error::Io(io) => format!("network error: {io}"),
        ureq::Error::BadUri(u) => {
            return Attempt::Fail(RemoteError::new(
                RemoteClass::Other,
                format!("the URL is not valid: {u}"),
            ))
        }
        other => format!("HTTP error: {other}"),
    };
    Attempt::Retry(RemoteError::new(RemoteClass::Unreachable, msg))
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
