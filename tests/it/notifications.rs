//! Notifications against real servers on loopback: a scripted HTTP server, aiosmtpd for email, and shell commands.

use crate::support::smtpd::{free_port, Smtpd};
use backupd::config::notify::{
    redacted_url, EmailConfig, Event, NotifyConfig, SmtpSecurity, WebhookConfig, WebhookMode,
};
use backupd::monitor::notifications::{bounded_tail, send, webhook_body, Notification};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering request i with `statuses[i]` (the last one
/// repeats), recording every request.
pub(crate) struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    pub(crate) fn start(statuses: &[u16]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (reqs, statuses) = (requests.clone(), statuses.to_vec());
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate().take(50) {
                let Ok(mut conn) = conn else { continue };
                conn.set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                reqs.lock().unwrap().push(req);
                let status = statuses[i.min(statuses.len() - 1)];
                let body = match status {
                    200 => "OK".to_string(),
                    404 => "no such check: 1234".to_string(),
                    _ => format!("status {status} from the test server"),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { addr, requests }
    }

    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

fn webhook(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.into(),
        mode: WebhookMode::Json,
        timeout: Duration::from_secs(5),
        retries: 3,
        headers: BTreeMap::new(),
    }
}

fn only(w: WebhookConfig) -> NotifyConfig {
    NotifyConfig {
        events: vec![
            Event::Start,
            Event::Success,
            Event::Warning,
            Event::Failure,
            Event::Overdue,
            Event::Recovered,
        ],
        webhook: vec![w],
        ..NotifyConfig::default()
    }
}

fn failure() -> Notification {
    let mut n = Notification::new(
        Event::Failure,
        "app",
        "backup job app failed: repository /srv/repo is locked",
    );
    n.host = "db1".into();
    n.run_id = Some("r-42".into());
    n.reason = Some("schedule 2026-03-29 02:30".into());
    n.outcome = Some("failed".into());
    n.error = Some("repository /srv/repo is locked by backupctl prune (pid 7)".into());
    n.log_tail = vec![
        "02:30:00 INFO starting".into(),
        "02:30:01 ERROR repository locked".into(),
    ];
    n
}

fn event(e: Event, message: &str) -> Notification {
    let mut n = failure();
    n.event = e;
    n.message = message.into();
    n
}

#[test]
fn json_mode_sends_the_documented_body_and_headers_with_credentials_redacted() {
    let s = Server::start(&[200]);
    let mut w = webhook(&format!(
        "http://alice:s3cr3t@{}/hook/path?token=TOPSECRET&x=1",
        s.addr
    ));
    w.headers.insert("X-Api-Key".into(), "key-123".into());
    let n = failure();
    let d = send(&only(w), &n);
    assert_eq!(d.len(), 1);
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 1);
    assert_eq!(d[0].channel, format!("webhook http://{}/…?…", s.addr));
    for secret in ["s3cr3t", "alice", "TOPSECRET", "token"] {
        assert!(!d[0].channel.contains(secret), "{}", d[0].channel);
    }

    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.target, "/hook/path?token=TOPSECRET&x=1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-api-key"), Some("key-123"));
    // alice:s3cr3t, as HTTP basic authentication.
    assert_eq!(r.header("authorization"), Some("Basic YWxpY2U6czNjcjN0"));
    assert!(r.header("user-agent").unwrap().starts_with("backupd/"));

    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, webhook_body(&n));
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut expected = vec![
        "version",
        "event",
        "job",
        "host",
        "time",
        "run_id",
        "reason",
        "outcome",
        "snapshot_id",
        "error",
        "message",
        "log_tail",
    ];
    expected.sort();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, expected);
    assert_eq!(body["version"], 1);
    assert_eq!(body["event"], "failure");
    assert_eq!(body["job"], "app");
    assert_eq!(body["host"], "db1");
    assert_eq!(body["run_id"], "r-42");
    assert_eq!(body["snapshot_id"], serde_json::Value::Null);
    assert_eq!(
        body["error"],
        "repository /srv/repo is locked by backupctl prune (pid 7)"
    );
    assert_eq!(body["log_tail"][1], "02:30:01 ERROR repository locked");
    let time = body["time"].as_str().unwrap();
    assert!(time.ends_with('Z'), "{time}");
    assert_eq!(chrono::DateTime::parse_from_rfc3339(time).unwrap(), n.time);
}

#[test]
fn a_500_is_retried_and_the_second_attempt_succeeds() {
    let s = Server::start(&[500, 200]);
    let started = Instant::now();
    let d = send(&only(webhook(&s.url("/h"))), &failure());
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 2);
    assert_eq!(s.requests().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the backoff is 1 s"
    );
}

#[test]
fn transient_failures_give_up_after_the_retries_naming_the_status() {
    let s = Server::start(&[429, 503]);
    let mut w = webhook(&s.url("/h"));
    w.retries = 1;
    let d = send(&only(w), &failure());
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 2);
    assert_eq!(s.requests().len(), 2);
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("HTTP 503"), "{e}");
    assert!(e.contains("gave up after 2 attempts"), "{e}");
}

#[test]
fn a_404_is_permanent_and_names_the_status_and_the_answer() {
    let s = Server::start(&[404, 200]);
    let d = send(&only(webhook(&s.url("/ping/1234"))), &failure());
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1);
    assert_eq!(s.requests().len(), 1);
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("HTTP 404"), "{e}");
    assert!(e.contains("no such check: 1234"), "{e}");
    assert!(e.contains(&s.addr.to_string()), "{e}");
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_host() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().take(10) {
            held.push(c); // accepted, read nothing, answer nothing
        }
        std::thread::sleep(Duration::from_secs(60));
    });
    let mut w = webhook(&format!("http://{addr}/slow"));
    w.timeout = Duration::from_secs(1);
    w.retries = 1;
    let started = Instant::now();
    let d = send(&only(w), &failure());
    let elapsed = started.elapsed();
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 2);
    // Two attempts of 1 s and a backoff of at least 1 s.
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("timed out"), "{e}");
    assert!(e.contains(&addr.to_string()), "{e}");
}

#[test]
fn a_closed_port_is_a_connection_error() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut w = webhook(&format!("http://{addr}/x"));
    w.retries = 0;
    let d = send(&only(w), &failure());
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1);
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("could not connect"), "{e}");
    assert!(e.contains(&addr.to_string()), "{e}");
}

#[test]
fn healthchecks_mode_pings_start_base_and_fail() {
    let s = Server::start(&[200]);
    let mut w = webhook(&s.url("/ping/abc-123/"));
    w.mode = WebhookMode::Healthchecks;
    let cfg = only(w);
    let cases = [
        (
            Event::Start,
            "backup job app started",
            "/ping/abc-123/start",
        ),
        (Event::Success, "backup job app succeeded", "/ping/abc-123"),
        (
            Event::Failure,
            "backup job app failed: locked",
            "/ping/abc-123/fail",
        ),
        (
            Event::Warning,
            "backup job app: 2 files unreadable",
            "/ping/abc-123",
        ),
        (Event::Overdue, "job app is overdue", "/ping/abc-123/fail"),
        (
            Event::Recovered,
            "backup job app succeeded again",
            "/ping/abc-123",
        ),
    ];
    for (e, msg, _) in &cases {
        let d = send(&cfg, &event(*e, msg));
        assert!(d[0].ok, "{e}: {d:?}");
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), cases.len());
    for ((e, msg, path), r) in cases.iter().zip(&reqs) {
        assert_eq!(r.method, "POST");
        assert_eq!(&r.target, path, "{e}");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        let body = r.body_text();
        assert!(body.contains(msg), "{e}: {body}");
        if *e == Event::Warning {
            assert!(body.starts_with("warning:"), "{body}");
        }
    }
    let fail = reqs[2].body_text();
    assert!(fail.contains("02:30:01 ERROR repository locked"), "{fail}");
    assert!(fail.contains("02:30:00 INFO starting"), "{fail}");
}

#[test]
fn healthchecks_suffix_goes_before_the_query() {
    let s = Server::start(&[200]);
    let mut w = webhook(&s.url("/ping/abc?create=1"));
    w.mode = WebhookMode::Healthchecks;
    let d = send(&only(w), &failure());
    assert!(d[0].ok, "{d:?}");
    assert_eq!(s.requests()[0].target, "/ping/abc/fail?create=1");
}

#[test]
fn events_not_wanted_are_not_sent() {
    let s = Server::start(&[200]);
    let cfg = NotifyConfig {
        webhook: vec![webhook(&s.url("/h"))],
        ..NotifyConfig::default()
    };
    assert!(!cfg.wants(Event::Start) && !cfg.wants(Event::Success));
    assert!(cfg.wants(Event::Failure) && cfg.wants(Event::Overdue));
    assert!(send(&cfg, &event(Event::Start, "started")).is_empty());
    assert!(send(&cfg, &event(Event::Success, "ok")).is_empty());
    assert!(s.requests().is_empty());
    assert_eq!(send(&cfg, &failure()).len(), 1);
    assert_eq!(s.requests().len(), 1);
}

#[test]
fn channel_names_never_show_credentials_or_tokens() {
    for (raw, shown) in [
        ("http://user:pass@hooks.example/p", "http://hooks.example/…"),
        (
            "https://hooks.example:8443/a/b?token=abc",
            "https://hooks.example:8443/…?…",
        ),
        ("https://u:p@h/x?token=t#frag", "https://h/…?…"),
        ("ftp://user:pass@host/x?token=t", "ftp://host/…?…"),
        ("not a url user:pass@x/y?token=t", "x/…?…"),
        // A path can be the secret itself (healthchecks' UUID, a hook token, an ntfy topic).
        (
            "https://hc-ping.com/5f1c6c1e-0d7b-4a53-9d52-2f3c4b5a6d7e",
            "https://hc-ping.com/…",
        ),
    ] {
        assert_eq!(redacted_url(raw), shown, "{raw}");
    }
    // Even when the URL is unusable, the delivery names it without the secret.
    let cfg = only(webhook("gopher://user:pass@h/p?token=zzz"));
    let d = send(&cfg, &failure());
    assert!(!d[0].ok);
    let all = format!("{} {}", d[0].channel, d[0].error.as_deref().unwrap());
    assert!(!all.contains("pass") && !all.contains("zzz"), "{all}");
}

#[test]
fn the_log_tail_is_bounded() {
    let lines: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    let t = bounded_tail(&lines);
    assert_eq!(t.len(), 50);
    assert_eq!(t[0], "line 150");
    assert_eq!(t[49], "line 199");
    let big: Vec<String> = (0..10)
        .map(|i| format!("{i}{}", "x".repeat(5000)))
        .collect();
    let t = bounded_tail(&big);
    assert_eq!(t.len(), 3);
    assert!(t[0].starts_with('7'));
    assert!(t.iter().map(|l| l.len()).sum::<usize>() <= 16 * 1024);
    let huge = vec!["y".repeat(100_000)];
    let t = bounded_tail(&huge);
    assert!(
        t[0].starts_with('…') && t[0].len() <= 16 * 1024,
        "{}",
        t[0].len()
    );
    let mut n = failure();
    n.log_tail = lines;
    assert_eq!(webhook_body(&n)["log_tail"].as_array().unwrap().len(), 50);
}

// --- configuration ---

fn parse(toml_text: &str) -> Result<NotifyConfig, String> {
    toml::from_str::<NotifyConfig>(toml_text).map_err(|e| e.to_string())
}

#[test]
fn the_table_parses_with_defaults() {
    let c = parse(
        r#"
        command = "logger -t backupd"
        [[webhook]]
        url = "https://hc-ping.com/abc"
        mode = "healthchecks"
        timeout = "3s"
        [[webhook]]
        url = "https://hooks.example/x"
        headers = { Authorization = "Bearer t" }
        retries = 0
        [email]
        server = "smtp.example.com"
        from = "backupd@example.com"
        to = ["ops@example.com"]
        "#,
    )
    .unwrap();
    assert_eq!(
        c.events,
        vec![
            Event::Failure,
            Event::Warning,
            Event::Overdue,
            Event::Recovered
        ]
    );
    assert_eq!(c.webhook[0].mode, WebhookMode::Healthchecks);
    assert_eq!(c.webhook[0].timeout, Duration::from_secs(3));
    assert_eq!(c.webhook[0].retries, 3);
    assert_eq!(c.webhook[1].mode, WebhookMode::Json);
    assert_eq!(c.webhook[1].timeout, Duration::from_secs(10));
    assert_eq!(c.webhook[1].retries, 0);
    let e = c.email.as_ref().unwrap();
    assert_eq!(e.security, SmtpSecurity::StartTls);
    assert_eq!(e.timeout, Duration::from_secs(30));
    assert_eq!(c.command_timeout, Duration::from_secs(60));
    c.validate("jobs.app.notify").unwrap();

    let c = parse(r#"events = ["start", "success"]"#).unwrap();
    assert_eq!(c.events, vec![Event::Start, Event::Success]);
    let err = parse(r#"events = ["failed"]"#).unwrap_err();
    assert!(err.contains("failed"), "{err}");
    let err = parse("[[webhook]]\nurl = \"http://x\"\nretry = 2").unwrap_err();
    assert!(err.contains("retry"), "{err}");
    let err =
        parse("[email]\nserver = \"s\"\nfrom = \"a@b\"\nto = []\nsecurity = \"ssl\"").unwrap_err();
    assert!(err.contains("ssl"), "{err}");
}

fn email_cfg(server: &str, security: SmtpSecurity) -> EmailConfig {
    EmailConfig {
        server: server.into(),
        port: None,
        security,
        username: None,
        password_file: None,
        from: "backupd <backupd@example.com>".into(),
        to: vec!["ops@example.com".into()],
        timeout: Duration::from_secs(30),
    }
}

fn with_email(e: EmailConfig) -> NotifyConfig {
    NotifyConfig {
        email: Some(e),
        ..NotifyConfig::default()
    }
}

#[test]
fn validate_refuses_plain_smtp_to_another_host() {
    let err = with_email(email_cfg("smtp.example.com", SmtpSecurity::None))
        .validate("jobs.app.notify")
        .unwrap_err();
    assert!(err.starts_with("jobs.app.notify.email:"), "{err}");
    assert!(
        err.contains("\"none\"") && err.contains("smtp.example.com"),
        "{err}"
    );
    assert!(err.contains("starttls"), "{err}");
    for local in ["localhost", "127.0.0.1", "::1", "[::1]"] {
        with_email(email_cfg(local, SmtpSecurity::None))
            .validate("x")
            .unwrap_or_else(|e| panic!("{local}: {e}"));
    }
    with_email(email_cfg("smtp.example.com", SmtpSecurity::Tls))
        .validate("x")
        .unwrap();
}

#[test]
fn validate_refuses_bad_webhooks_and_emails() {
    let err = only(webhook("ftp://host/x"))
        .validate("jobs.app.notify")
        .unwrap_err();
    assert!(
        err.contains("webhook[1]") && err.contains("http:// or https://"),
        "{err}"
    );
    let err = only(webhook("hooks.example.com/x"))
        .validate("j")
        .unwrap_err();
    assert!(err.contains("not a URL"), "{err}");
    let mut w = webhook("https://h/x");
    w.headers.insert("Bad Header".into(), "v".into());
    assert!(only(w).validate("j").unwrap_err().contains("header name"));

    let mut e = email_cfg("smtp.example.com", SmtpSecurity::StartTls);
    e.to.clear();
    let err = with_email(e).validate("jobs.app.notify").unwrap_err();
    assert!(err.contains("to is empty"), "{err}");
    let mut e = email_cfg("smtp.example.com", SmtpSecurity::StartTls);
    e.to = vec!["not an address".into()];
    assert!(with_email(e)
        .validate("j")
        .unwrap_err()
        .contains("not an email address"));
    let mut e = email_cfg("smtp.example.com", SmtpSecurity::StartTls);
    e.username = Some("u".into());
    assert!(with_email(e)
        .validate("j")
        .unwrap_err()
        .contains("password_file"));
    let e = email_cfg("smtp.example.com:587", SmtpSecurity::StartTls);
    assert!(with_email(e).validate("j").unwrap_err().contains("`port`"));
}

// --- email, through a real SMTP server (Debian's python3-aiosmtpd; tests/run.sh installs it) ---

#[test]
fn email_arrives_with_subject_job_error_and_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let server = Smtpd::start(&maildir);
    let port = server.port;

    let mut e = email_cfg("127.0.0.1", SmtpSecurity::None);
    e.port = Some(port);
    e.to = vec![
        "ops@example.com".into(),
        "Backup Admin <admin@example.com>".into(),
    ];
    e.timeout = Duration::from_secs(10);
    let cfg = with_email(e);
    cfg.validate("jobs.app.notify").unwrap();
    let d = send(&cfg, &failure());
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].channel,
        "email to ops@example.com, Backup Admin <admin@example.com>"
    );
    assert!(d[0].ok, "{d:?}");
    assert_eq!(d[0].attempts, 1);

    let new = maildir.join("new");
    let deadline = Instant::now() + Duration::from_secs(10);
    let file = loop {
        let found = std::fs::read_dir(&new)
            .ok()
            .and_then(|mut r| r.next())
            .map(|e| e.unwrap().path());
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no message in {}", new.display());
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains("Subject: [backupd] app: failure on db1"),
        "{text}"
    );
    assert!(
        text.contains("From: backupd <backupd@example.com>"),
        "{text}"
    );
    assert!(
        text.contains("backup job app failed: repository /srv/repo is locked"),
        "{text}"
    );
    assert!(text.contains("job:       app"), "{text}");
    assert!(
        text.contains("repository /srv/repo is locked by backupctl prune (pid 7)"),
        "{text}"
    );
    assert!(
        text.contains("    02:30:01 ERROR repository locked"),
        "{text}"
    );
}

#[test]
fn email_to_a_closed_port_is_an_error_naming_the_server() {
    let mut e = email_cfg("127.0.0.1", SmtpSecurity::None);
    let port = free_port();
    e.port = Some(port);
    e.timeout = Duration::from_secs(2);
    let d = send(&with_email(e), &failure());
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 3);
    let err = d[0].error.as_deref().unwrap();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

// --- command ---

fn with_command(cmd: &str, timeout: Duration) -> NotifyConfig {
    NotifyConfig {
        command: Some(cmd.into()),
        command_timeout: timeout,
        ..NotifyConfig::default()
    }
}

#[test]
fn the_command_gets_the_json_on_stdin_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdin.json");
    let env = dir.path().join("env.txt");
    let cmd = format!(
        "cat > '{}'; printf '%s|%s|%s|%s|%s|%s\\n' \"$BACKUPD_EVENT\" \"$BACKUPD_JOB\" \"$BACKUPD_HOST\" \"$BACKUPD_RUN_ID\" \"${{BACKUPD_SNAPSHOT_ID-unset}}\" \"$BACKUPD_MESSAGE\" > '{}'",
        out.display(),
        env.display()
    );
    let n = failure();
    let d = send(&with_command(&cmd, Duration::from_secs(30)), &n);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].channel, "command");
    assert!(d[0].ok, "{d:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json, webhook_body(&n));
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "failure|app|db1|r-42|unset|backup job app failed: repository /srv/repo is locked\n"
    );
}

#[test]
fn a_failing_command_reports_its_status_and_stderr() {
    let d = send(
        &with_command(
            "echo 'curl: (6) Could not resolve host' >&2; exit 3",
            Duration::from_secs(30),
        ),
        &failure(),
    );
    assert!(!d[0].ok);
    assert_eq!(d[0].attempts, 1);
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("status 3"), "{e}");
    assert!(e.contains("curl: (6) Could not resolve host"), "{e}");
}

#[test]
fn a_command_past_its_timeout_is_killed_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let cmd = format!("sleep 60 & echo $! > '{}'; wait", pidfile.display());
    let started = Instant::now();
    let d = send(&with_command(&cmd, Duration::from_secs(1)), &failure());
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(!d[0].ok);
    let e = d[0].error.as_deref().unwrap();
    assert!(e.contains("killed after its timeout of 1s"), "{e}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The background `sleep` was in the command's process group: it is gone (or a zombie
    // about to be reaped by init).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'));
        if gone {
            break;
        }
        assert!(Instant::now() < deadline, "sleep {pid} survived: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_channel_is_tried_and_reported() {
    let s = Server::start(&[200]);
    let mut cfg = with_command("exit 0", Duration::from_secs(30));
    cfg.webhook = vec![webhook(&s.url("/a")), webhook(&s.url("/b"))];
    let d = send(&cfg, &failure());
    assert_eq!(d.len(), 3);
    assert!(d.iter().all(|d| d.ok), "{d:?}");
    let mut targets: Vec<String> = s.requests().into_iter().map(|r| r.target).collect();
    targets.sort();
    assert_eq!(targets, ["/a", "/b"]);
}
