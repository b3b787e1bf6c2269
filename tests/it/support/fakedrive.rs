//! A stand-in for Google Drive API v3 on 127.0.0.1 (std TcpListener, one thread per
//! connection): OAuth token refresh, files.list with q= and paging, folder create, multipart and
//! resumable uploads, alt=media downloads with Range, delete, about (the storage quota). Failures can be queued to prove
//! the client's retries. It implements only what backupd's Drive backend uses.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

pub const FOLDER: &str = "application/vnd.google-apps.folder";
pub const REFRESH_TOKEN: &str = "test-refresh-token";
/// The most files one listing page holds (small, so that paging is exercised).
pub const PAGE: usize = 3;

#[derive(Clone, Debug)]
pub struct File {
    pub id: String,
    pub name: String,
    pub parents: Vec<String>,
    pub folder: bool,
    pub data: Vec<u8>,
    pub created: String,
}

#[derive(Default)]
pub struct State {
    pub files: HashMap<String, File>,
    counter: u64,
    /// Answers to give instead of serving, one request each, front first (token requests too).
    pub fails: VecDeque<(u16, String)>,
    /// Every request: "METHOD path".
    pub log: Vec<String>,
    sessions: HashMap<String, (String, Vec<String>, u64, Vec<u8>)>,
    tokens_issued: u64,
    /// The account's storage limit for `about` (None: unlimited); usage is what the files hold.
    pub quota: Option<u64>,
}

impl State {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }
    fn add(&mut self, name: &str, parents: Vec<String>, folder: bool, data: Vec<u8>) -> File {
        let n = self.next();
        let f = File {
            id: format!("id{n:06}"),
            name: name.to_string(),
            parents,
            folder,
            data,
            created: format!("2026-01-01T00:00:00.{n:09}Z"),
        };
        self.files.insert(f.id.clone(), f.clone());
        f
    }
}

pub struct FakeDrive {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
}

pub fn rate_limit_403() -> (u16, String) {
    (
        403,
        r#"{"error":{"errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"Rate Limit Exceeded"}],"code":403,"message":"Rate Limit Exceeded"}}"#.into(),
    )
}

pub fn user_rate_limit_403() -> (u16, String) {
    (
        403,
        r#"{"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}],"code":403,"message":"User Rate Limit Exceeded"}}"#.into(),
    )
}

pub fn forbidden_403() -> (u16, String) {
    (
        403,
        r#"{"error":{"errors":[{"domain":"global","reason":"insufficientFilePermissions","message":"The user does not have sufficient permissions for this file."}],"code":403,"message":"The user does not have sufficient permissions for this file."}}"#.into(),
    )
}

impl FakeDrive {
    pub fn start() -> FakeDrive {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(c, st, port);
                });
            }
        });
        FakeDrive { port, state }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn fail_next(&self, answers: &[(u16, String)]) {
        self.state
            .lock()
            .unwrap()
            .fails
            .extend(answers.iter().cloned());
    }

    pub fn requests(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Files (not folders) with this name, anywhere.
    pub fn named(&self, name: &str) -> Vec<File> {
        let s = self.state.lock().unwrap();
        s.files
            .values()
            .filter(|f| f.name == name && !f.folder)
            .cloned()
            .collect()
    }
}

fn file_json(f: &File) -> serde_json::Value {
    serde_json::json!({
        "id": f.id, "name": f.name, "size": f.data.len().to_string(), "createdTime": f.created,
        "mimeType": if f.folder { FOLDER } else { "application/octet-stream" },
    })
}

fn unquote(s: &str) -> String {
    let s = s.trim().trim_start_matches('\'').trim_end_matches('\'');
    s.replace("\\'", "'").replace("\\\\", "\\")
}

fn matches(f: &File, q: &str) -> bool {
    q.split(" and ").all(|c| {
        let c = c.trim();
        if let Some(p) = c.strip_suffix(" in parents") {
            f.parents.contains(&unquote(p))
        } else if c == "trashed = false" {
            true
        } else if let Some(m) = c.strip_prefix("mimeType != ") {
            (unquote(m) == FOLDER) != f.folder
        } else if let Some(m) = c.strip_prefix("mimeType = ") {
            (unquote(m) == FOLDER) == f.folder
        } else if let Some(n) = c.strip_prefix("name = ") {
            f.name == unquote(n)
        } else {
            panic!("fake Drive: query clause not understood: {c:?}")
        }
    })
}

struct Req {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn read_req(r: &mut BufReader<TcpStream>) -> std::io::Result<Req> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
    let query = url::form_urlencoded::parse(qs.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(Req {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

type Resp = (u16, Vec<(String, String)>, Vec<u8>);

fn json(code: u16, v: serde_json::Value) -> Resp {
    (code, vec![], v.to_string().into_bytes())
}

fn not_found() -> Resp {
    json(
        404,
        serde_json::json!({"error":{"errors":[{"reason":"notFound"}],"code":404,"message":"File not found."}}),
    )
}

fn handle(req: &Req, st: &Mutex<State>, port: u16) -> Resp {
    let mut s = st.lock().unwrap();
    s.log.push(format!("{} {}", req.method, req.path));
    if let Some((code, body)) = s.fails.pop_front() {
        return (code, vec![], body.into_bytes());
    }
    if req.path == "/token" {
        let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if form.get("refresh_token").map(String::as_str) != Some(REFRESH_TOKEN)
            || form.get("grant_type").map(String::as_str) != Some("refresh_token")
        {
            return json(
                400,
                serde_json::json!({"error":"invalid_grant","error_description":"Token has been expired or revoked."}),
            );
        }
        s.tokens_issued += 1;
        let n = s.tokens_issued;
        return json(
            200,
            serde_json::json!({"access_token": format!("tok-{n}"), "expires_in": 3599, "token_type": "Bearer"}),
        );
    }
    let authed = req
        .headers
        .get("authorization")
        .map(|a| a.starts_with("Bearer tok-"))
        .unwrap_or(false);
    if !authed {
        return json(
            401,
            serde_json::json!({"error":{"code":401,"message":"Request had invalid authentication credentials."}}),
        );
    }
    let m = req.method.as_str();
    let p = req.path.as_str();
    if m == "GET" && p == "/drive/v3/about" {
        let usage: usize = s.files.values().map(|f| f.data.len()).sum();
        let mut q =
            serde_json::json!({"usage": usage.to_string(), "usageInDrive": usage.to_string()});
        if let Some(l) = s.quota {
            q["limit"] = serde_json::Value::String(l.to_string());
        }
        return json(200, serde_json::json!({ "storageQuota": q }));
    }
    if m == "GET" && p == "/drive/v3/files" {
        let q = req.query.get("q").cloned().unwrap_or_default();
        let mut all: Vec<&File> = s.files.values().filter(|f| matches(f, &q)).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let start: usize = req
            .query
            .get("pageToken")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let size = req
            .query
            .get("pageSize")
            .and_then(|t| t.parse::<usize>().ok())
            .unwrap_or(100)
            .min(PAGE);
        let page: Vec<_> = all
            .iter()
            .skip(start)
            .take(size)
            .map(|f| file_json(f))
            .collect();
        let mut out = serde_json::json!({"files": page});
        if start + size < all.len() {
            out["nextPageToken"] = (start + size).to_string().into();
        }
        return json(200, out);
    }
    if m == "POST" && p == "/drive/v3/files" {
        let meta: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let parents: Vec<String> = serde_json::from_value(meta["parents"].clone()).unwrap();
        let folder = meta["mimeType"] == FOLDER;
        let f = s.add(meta["name"].as_str().unwrap(), parents, folder, vec![]);
        return json(200, file_json(&f));
    }
    if let Some(id) = p.strip_prefix("/drive/v3/files/") {
        let Some(f) = s.files.get(id).cloned() else {
            return not_found();
        };
        if m == "DELETE" {
            s.files.remove(id);
            return (204, vec![], vec![]);
        }
        if m == "GET" && req.query.get("alt").map(String::as_str) == Some("media") {
            if let Some(r) = req.headers.get("range") {
                let r = r.strip_prefix("bytes=").unwrap();
                let (a, b) = r.split_once('-').unwrap();
                let a: usize = a.parse().unwrap();
                let b: usize = b
                    .parse::<usize>()
                    .unwrap()
                    .min(f.data.len().saturating_sub(1));
                if a >= f.data.len() {
                    return (416, vec![], vec![]);
                }
                return (206, vec![], f.data[a..=b].to_vec());
            }
            return (200, vec![], f.data);
        }
    }
    if m == "POST" && p == "/upload/drive/v3/files" {
        match req.query.get("uploadType").map(String::as_str) {
            Some("multipart") => {
                let ct = req.headers.get("content-type").unwrap();
                let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
                let b = req.body.as_slice();
                let sep = format!("--{boundary}");
                let h1 = find(b, b"\r\n\r\n").unwrap() + 4;
                let e1 = h1 + find(&b[h1..], sep.as_bytes()).unwrap();
                let meta: serde_json::Value =
                    serde_json::from_slice(b[h1..e1].strip_suffix(b"\r\n").unwrap()).unwrap();
                let h2 = e1 + find(&b[e1..], b"\r\n\r\n").unwrap() + 4;
                let end = find(&b[h2..], format!("\r\n--{boundary}--").as_bytes()).unwrap() + h2;
                let parents: Vec<String> = serde_json::from_value(meta["parents"].clone()).unwrap();
                let f = s.add(
                    meta["name"].as_str().unwrap(),
                    parents,
                    false,
                    b[h2..end].to_vec(),
                );
                return json(200, file_json(&f));
            }
            Some("resumable") => {
                let meta: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
                let parents: Vec<String> = serde_json::from_value(meta["parents"].clone()).unwrap();
                let total: u64 = req.headers["x-upload-content-length"].parse().unwrap();
                let sid = format!("s{}", s.next());
                s.sessions.insert(
                    sid.clone(),
                    (
                        meta["name"].as_str().unwrap().to_string(),
                        parents,
                        total,
                        vec![],
                    ),
                );
                return (
                    200,
                    vec![(
                        "Location".into(),
                        format!("http://127.0.0.1:{port}/upload/session/{sid}"),
                    )],
                    vec![],
                );
            }
            _ => {}
        }
    }
    if let (true, Some(sid)) = (m == "PUT", p.strip_prefix("/upload/session/")) {
        let Some((name, parents, total, mut have)) = s.sessions.get(sid).cloned() else {
            return not_found();
        };
        let cr = req.headers["content-range"]
            .strip_prefix("bytes ")
            .unwrap()
            .to_string();
        let (span, _) = cr.split_once('/').unwrap();
        if span != "*" {
            let (a, _) = span.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            if a != have.len() {
                return (
                    400,
                    vec![],
                    b"part does not start where the last ended".to_vec(),
                );
            }
            have.extend_from_slice(&req.body);
        }
        if have.len() as u64 == total {
            s.sessions.remove(sid);
            let f = s.add(&name, parents, false, have);
            return json(200, file_json(&f));
        }
        let got = have.len();
        s.sessions.get_mut(sid).unwrap().3 = have;
        let hdr = if got == 0 {
            vec![]
        } else {
            vec![("Range".into(), format!("bytes=0-{}", got - 1))]
        };
        return (308, hdr, vec![]);
    }
    (
        400,
        vec![],
        format!("fake Drive: {m} {p} not implemented").into_bytes(),
    )
}

fn serve(c: TcpStream, st: Arc<Mutex<State>>, port: u16) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    loop {
        let req = match read_req(&mut r) {
            Ok(req) if !req.method.is_empty() => req,
            _ => return Ok(()),
        };
        let (code, headers, body) = handle(&req, &st, port);
        let mut head = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
        if !(200..300).contains(&code) || code == 204 {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(&body)?;
        w.flush()?;
    }
}
