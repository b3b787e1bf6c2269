//! The Google Drive backend: a restic-layout repository in a Drive folder, over Drive API v3.
//!
//! Layout: the repository folder holds the file `config` and the folders `keys`, `snapshots`,
//! `index`, `locks` and `data`; `data` holds `00` … `ff` (made when first needed), as restic
//! lays out a repository. Authentication is OAuth2 with a refresh token, a client id and a
//! client secret (an "installed application" grant; docs/remote-storage.md says how to get them).
//!
//! Drive allows several files of one name in one folder, so "save" means: upload the new file
//! (Drive makes it visible only when the upload is complete), then delete every older file of
//! that name. A reader that meets duplicates (a crash between the two steps, or two writers)
//! takes the newest (latest `createdTime`, then the greatest id); listings show a name once.
//! Repository files other than `config` are named by their content's hash, so duplicates of
//! them hold the same bytes.
//!
//! Requests are retried with exponential backoff and jitter on transport errors, 429, 5xx and
//! Drive's rate-limit 403 (`userRateLimitExceeded`, `rateLimitExceeded`); other 403s (no
//! permission, quota exhausted) fail at once. Large files upload in parts with Drive's
//! resumable protocol; a failed part is resumed from what the server says it has.

use crate::repo::backend::{BResult, Backend, BackendError, FileType};
use crate::repo::http::{fault, Fault};
use crate::retry::{self, Attempt, GaveUp};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FOLDER_MIME: &str = "application/vnd.google-apps.folder";
const FILE_FIELDS: &str = "id,name,size,createdTime";

/// OAuth2 credentials: a refresh token of a Google Cloud "Desktop app" OAuth client, and that
/// client's id and secret. backupd trades them for short-lived access tokens.
#[derive(Clone)]
pub struct GDriveCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for GDriveCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GDriveCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl GDriveCredentials {
    /// From `GOOGLE_DRIVE_CLIENT_ID`, `GOOGLE_DRIVE_CLIENT_SECRET` and
    /// `GOOGLE_DRIVE_REFRESH_TOKEN`; the error names what is missing.
    pub fn from_env() -> Result<GDriveCredentials, String> {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| k.to_string())
        };
        let (a, b, c) = (
            get("GOOGLE_DRIVE_CLIENT_ID"),
            get("GOOGLE_DRIVE_CLIENT_SECRET"),
            get("GOOGLE_DRIVE_REFRESH_TOKEN"),
        );
        match (a, b, c) {
            (Ok(client_id), Ok(client_secret), Ok(refresh_token)) => Ok(GDriveCredentials {
                client_id,
                client_secret,
                refresh_token: refresh_token.trim().to_string(),
            }),
            (a, b, c) => {
                let missing: Vec<String> = [a, b, c].into_iter().filter_map(|r| r.err()).collect();
                Err(format!(
                    "Google Drive credentials are missing: set {} (see docs/remote-storage.md, \"Google Drive\")",
                    missing.join(", ")
                ))
            }
        }
    }
}

/// Where the Drive API is and how hard to try. `Default` is Google's endpoints.
#[derive(Debug, Clone)]
pub struct GDriveOptions {
    /// `https://www.googleapis.com/drive/v3`
    pub api_base: String,
    /// `https://www.googleapis.com/upload/drive/v3`
    pub upload_base: String,
    /// `https://oauth2.googleapis.com/token`
    pub token_url: String,
    /// Attempts per request (the first and the retries).
    pub attempts: u32,
    /// The first retry waits about this long; each next one twice as long (plus jitter).
    pub backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Files up to this size go in one multipart request; larger ones upload in parts.
    pub multipart_max: usize,
    /// Size of one part of a resumable upload (a multiple of 256 KiB).
    pub chunk_size: usize,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
}

impl Default for GDriveOptions {
    fn default() -> Self {
        GDriveOptions {
            api_base: "https://www.googleapis.com/drive/v3".into(),
            upload_base: "https://www.googleapis.com/upload/drive/v3".into(),
            token_url: "https://oauth2.googleapis.com/token".into(),
            attempts: 8,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(32),
            multipart_max: 5 << 20,
            chunk_size: 8 << 20,
            timeout: Duration::from_secs(300),
        }
    }
}

/// A file as Drive lists it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DriveFile {
    id: String,
    name: String,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    created_time: Option<String>,
}

impl DriveFile {
    fn size(&self) -> u64 {
        self.size
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
    /// Newest first: latest createdTime (RFC 3339 in UTC sorts as text), then greatest id.
    fn newer_than(&self, o: &DriveFile) -> bool {
        (&self.created_time, &self.id) > (&o.created_time, &o.id)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileList {
    #[serde(default)]
    files: Vec<DriveFile>,
    next_page_token: Option<String>,
}

/// `about.get` with `fields=storageQuota`: Drive's numbers are decimal strings; `limit` is
/// absent for unlimited storage.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct About {
    storage_quota: Option<StorageQuota>,
}

#[derive(Deserialize)]
struct StorageQuota {
    limit: Option<String>,
    usage: Option<String>,
}

/// The room a Drive `about` answer tells: its quota and what is left of it.
fn space_of(body: &[u8]) -> Result<Option<super::backend::Space>, String> {
    let a: About = serde_json::from_slice(body).map_err(|e| format!("not understood: {e}"))?;
    let Some(q) = a.storage_quota else {
        return Ok(None);
    };
    let num = |v: &Option<String>, what: &str| -> Result<Option<u64>, String> {
        v.as_deref()
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| format!("{what} {t:?} is not a number"))
            })
            .transpose()
    };
    let (Some(limit), usage) = (num(&q.limit, "limit")?, num(&q.usage, "usage")?) else {
        return Ok(None);
    };
    Ok(Some(super::backend::Space {
        total: limit,
        available: limit.saturating_sub(usage.unwrap_or(0)),
    }))
}

/// An HTTP answer, read whole.
struct Answer {
    status: u16,
    location: Option<String>,
    range: Option<String>,
    body: Vec<u8>,
}

/// What a failed attempt means for the next one.
enum Failure {
    /// Try again (after the backoff).
    Retry(String),
    /// The access token was refused: get a new one, then try again.
    Reauth(String),
    /// Give up.
    Fatal(io::Error),
}

/// A repository in a Google Drive folder.
pub struct GDriveBackend {
    agent: ureq::Agent,
    creds: GDriveCredentials,
    opts: GDriveOptions,
    /// The folder path below "My Drive" (e.g. `backups/host1`).
    path: String,
    token: Mutex<Option<(String, Instant)>>,
    /// Folder ids by repository-relative path ("" is the repository folder).
    folders: Mutex<HashMap<String, String>>,
}

/// Escapes a value for a Drive query string literal.
fn q_lit(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// Drive's reason for an error answer (`error.errors[0].reason`, or `error.status`).
fn drive_reason(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    let reason = e["errors"][0]["reason"]
        .as_str()
        .or_else(|| e["status"].as_str())
        .or_else(|| v["error"].as_str())
        .unwrap_or("")
        .to_string();
    let message = e["message"]
        .as_str()
        .or_else(|| v["error_description"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    (reason, message)
}

/// Whether a status (and Drive's reason) is worth another attempt.
pub fn is_retryable(status: u16, body: &[u8]) -> bool {
    match status {
        429 | 500..=599 => true,
        403 => matches!(
            drive_reason(body).0.as_str(),
            "userRateLimitExceeded" | "rateLimitExceeded"
        ),
        _ => false,
    }
}

fn status_error(what: &str, a: &Answer) -> io::Error {
    let (reason, message) = drive_reason(&a.body);
    let kind = match a.status {
        404 => io::ErrorKind::NotFound,
        401 | 403 if reason == "storageQuotaExceeded" || reason == "quotaExceeded" => {
            io::ErrorKind::StorageFull
        }
        401 | 403 => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    let hint = match (a.status, reason.as_str()) {
        (_, "storageQuotaExceeded") => {
            "\n  hint: the Drive account's storage is full; free space or buy more, then run again"
        }
        (403, _) => "\n  hint: the Google account needs write access to the repository folder",
        (401, _) => "\n  hint: the credentials were refused; authorize backupd again (docs/remote-storage.md, \"Google Drive\")",
        _ => "",
    };
    let reason = if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    };
    io::Error::new(
        kind,
        format!(
            "{what}: Google Drive answered {}{reason}: {message}{hint}",
            a.status
        ),
    )
}

impl GDriveBackend {
    /// A backend for the folder `path` below "My Drive" (`a/b` = folder b in folder a), which
    /// `create` makes if missing. Nothing is requested until the first operation.
    pub fn new(path: &str, creds: GDriveCredentials, opts: GDriveOptions) -> GDriveBackend {
        let agent = crate::repo::http::plain_agent(opts.timeout);
        GDriveBackend {
            agent,
            creds,
            opts,
            path: path.trim_matches('/').to_string(),
            token: Mutex::new(None),
            folders: Mutex::new(HashMap::new()),
        }
    }

    fn err(&self, op: &'static str, path: &str, source: io::Error) -> BackendError {
        BackendError {
            op,
            path: format!("{}/{path}", self.location()),
            source,
        }
    }

    /// The waits between attempts: `backoff`, doubling up to `max_backoff`, each plus up to
    /// 50 % jitter; `attempts` in all (at least one).
    fn retry_policy(&self) -> retry::Policy {
        retry::Policy {
            backoff: retry::Backoff {
                first: self.opts.backoff,
                factor: 2.0,
                max: self.opts.max_backoff,
                jitter: retry::Jitter::Above(0.5),
            },
            limit: retry::Limit::Retries(self.opts.attempts.saturating_sub(1)),
        }
    }

    /// An access token, fetched (with retries) when there is none or it is about to expire.
    fn access_token(&self, force: bool) -> io::Result<String> {
        let mut g = self.token.lock().unwrap();
        if let (false, Some((t, until))) = (force, g.as_ref()) {
            if Instant::now() + Duration::from_secs(60) < *until {
                return Ok(t.clone());
            }
        }
        let form = [
            ("client_id", self.creds.client_id.as_str()),
            ("client_secret", self.creds.client_secret.as_str()),
            ("refresh_token", self.creds.refresh_token.as_str()),
            ("grant_type", "refresh_token"),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let a = self.retrying(
            "get an access token from",
            &self.opts.token_url,
            &mut |_| {
                let r = self
                    .agent
                    .post(&self.opts.token_url)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(body.as_bytes());
                Self::classify(r, false)
            },
        )?;
        #[derive(Deserialize)]
        struct Tok {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let t: Tok = serde_json::from_slice(&a.body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the token endpoint {} sent no access token: {e}",
                    self.opts.token_url
                ),
            )
        })?;
        let until = Instant::now() + Duration::from_secs(t.expires_in.unwrap_or(3600));
        *g = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    /// Reads an answer and decides what it means.
    fn classify(
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        authed: bool,
    ) -> Result<Answer, Failure> {
        let mut resp = match r {
            Ok(r) => r,
            Err(e) => {
                return Err(match fault(&e) {
                    // A TLS failure in the handshake comes inside an I/O error: retried like
                    // one, as it always was here.
                    Fault::Io(_)
                    | Fault::Tls { io: Some(_), .. }
                    | Fault::Timeout(_)
                    | Fault::ConnectionFailed
                    | Fault::HostNotFound
                    | Fault::Protocol(_) => Failure::Retry(e.to_string()),
                    _ => Failure::Fatal(io::Error::other(e.to_string())),
                });
            }
        };
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (location, range) = (header("location"), header("range"));
        let mut body = Vec::new();
        if let Err(e) = resp.body_mut().as_reader().read_to_end(&mut body) {
            return Err(Failure::Retry(format!("reading the answer failed: {e}")));
        }
        let a = Answer {
            status,
            location,
            range,
            body,
        };
        if (200..300).contains(&status) || status == 308 {
            return Ok(a);
        }
        if authed && status == 401 {
            return Err(Failure::Reauth(format!("{status}")));
        }
        if is_retryable(status, &a.body) {
            let (reason, message) = drive_reason(&a.body);
            return Err(Failure::Retry(format!("HTTP {status} {reason}: {message}")));
        }
        Err(Failure::Fatal(status_error("the request failed", &a)))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the attempts are used up.
    fn retrying(
        &self,
        what: &str,
        url: &str,
        attempt: &mut dyn FnMut(u32) -> Result<Answer, Failure>,
    ) -> io::Result<Answer> {
        let mut reauthed = false;
        let r = retry::run(
            &self.retry_policy(),
            None,
            |_: &String, _: &retry::Wait| {},
            |n| self.try_once(what, url, n, &mut reauthed, attempt),
        );
        r.map_err(|g| match g {
            GaveUp::Failed { error, .. } => error,
            GaveUp::Exhausted { last, attempts, .. } | GaveUp::Cancelled { last, attempts, .. } => {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{what} {url}: gave up after {attempts} attempts; the last: {last}"),
                )
            }
        })
    }

    /// Attempt `n` (0 first) of `retrying`. A refused access token is renewed once per
    /// `retrying` (`reauthed`) and the request sent again at once, as the same attempt.
    fn try_once(
        &self,
        what: &str,
        url: &str,
        n: u32,
        reauthed: &mut bool,
        attempt: &mut dyn FnMut(u32) -> Result<Answer, Failure>,
    ) -> Attempt<Answer, io::Error, String> {
        loop {
            match attempt(n) {
                Ok(a) => return Attempt::Done(a),
                Err(Failure::Fatal(e)) => {
                    return Attempt::Fail(io::Error::new(e.kind(), format!("{what} {url}: {e}")))
                }
                Err(Failure::Reauth(_)) if !*reauthed => {
                    *reauthed = true;
                    if let Err(e) = self.access_token(true) {
                        return Attempt::Fail(e);
                    }
                }
                Err(Failure::Reauth(m)) => {
                    return Attempt::Fail(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{what} {url}: Google Drive refused a fresh access token ({m})\n  hint: authorize backupd again (docs/remote-storage.md, \"Google Drive\")"),
                    ))
                }
                Err(Failure::Retry(m)) => {
                    // Logged for every failed attempt, the last one too (as it always was).
                    tracing::warn!(url, attempt = n + 1, "Google Drive: {m}; trying again");
                    return Attempt::Retry(m);
                }
            }
        }
    }

    /// One API request with a bearer token, retried.
    fn call(
        &self,
        what: &str,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> io::Result<Answer> {
        self.retrying(what, url, &mut |_| {
            let tok = self.access_token(false).map_err(Failure::Fatal)?;
            let auth = format!("Bearer {tok}");
            let r = match method {
                "GET" | "DELETE" => {
                    let mut b = if method == "GET" {
                        self.agent.get(url)
                    } else {
                        self.agent.delete(url)
                    };
                    b = b.header("Authorization", &auth);
                    for (k, v) in headers {
                        b = b.header(*k, v);
                    }
                    b.call()
                }
                _ => {
                    let mut b = if method == "PUT" {
                        self.agent.put(url)
                    } else {
                        self.agent.post(url)
                    };
                    b = b.header("Authorization", &auth);
                    for (k, v) in headers {
                        b = b.header(*k, v);
                    }
                    b.send(body.unwrap_or(&[]))
                }
            };
            Self::classify(r, true)
        })
    }

    fn files_url(&self, q: &str, page: Option<&str>) -> String {
        let mut u = url::Url::parse(&format!("{}/files", self.opts.api_base)).expect("valid base");
        {
            let mut p = u.query_pairs_mut();
            p.append_pair("q", q)
                .append_pair("fields", &format!("nextPageToken,files({FILE_FIELDS})"))
                .append_pair("pageSize", "1000")
                .append_pair("spaces", "drive");
            if let Some(t) = page {
                p.append_pair("pageToken", t);
            }
        }
        u.to_string()
    }

    /// Every file matching `q`, over all pages.
    fn query(&self, q: &str) -> io::Result<Vec<DriveFile>> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let url = self.files_url(q, page.as_deref());
            let a = self.call("list", "GET", &url, &[], None)?;
            let l: FileList = serde_json::from_slice(&a.body).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a listing from Google Drive is not understood: {e}"),
                )
            })?;
            out.extend(l.files);
            match l.next_page_token {
                Some(t) if !t.is_empty() => page = Some(t),
                _ => return Ok(out),
            }
        }
    }

    fn children(
        &self,
        parent: &str,
        name: Option<&str>,
        folders: bool,
    ) -> io::Result<Vec<DriveFile>> {
        let mut q = format!(
            "'{}' in parents and trashed = false and mimeType {} '{FOLDER_MIME}'",
            q_lit(parent),
            if folders { "=" } else { "!=" }
        );
        if let Some(n) = name {
            q.push_str(&format!(" and name = '{}'", q_lit(n)));
        }
        self.query(&q)
    }

    fn make_folder(&self, parent: &str, name: &str) -> io::Result<String> {
        let meta = serde_json::json!({"name": name, "mimeType": FOLDER_MIME, "parents": [parent]});
        let url = format!("{}/files?fields={FILE_FIELDS}", self.opts.api_base);
        let a = self.call(
            "create folder",
            "POST",
            &url,
            &[("Content-Type", "application/json; charset=UTF-8".into())],
            Some(meta.to_string().as_bytes()),
        )?;
        let f: DriveFile = serde_json::from_slice(&a.body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Google Drive's answer to creating folder {name} is not understood: {e}"),
            )
        })?;
        Ok(f.id)
    }

    /// The folder `name` in `parent`: the oldest of that name (two clients may have made one
    /// at once; all of them then agree on the oldest), or a new one when `create` is set.
    fn child_folder(&self, parent: &str, name: &str, create: bool) -> io::Result<Option<String>> {
        let mut found = self.children(parent, Some(name), true)?;
        found.sort_by(|a, b| (&a.created_time, &a.id).cmp(&(&b.created_time, &b.id)));
        match found.first() {
            Some(f) => Ok(Some(f.id.clone())),
            None if create => Ok(Some(self.make_folder(parent, name)?)),
            None => Ok(None),
        }
    }

    /// The id of a folder by its path relative to the repository folder ("" = the repository
    /// folder itself, "data/ab"), found and cached, or made when `create` is set. `Ok(None)`
    /// when it does not exist.
    fn folder(&self, rel: &str, create: bool) -> io::Result<Option<String>> {
        if let Some(id) = self.folders.lock().unwrap().get(rel) {
            return Ok(Some(id.clone()));
        }
        let id = if rel.is_empty() {
            let mut at = "root".to_string();
            for part in self.path.split('/').filter(|s| !s.is_empty()) {
                match self.child_folder(&at, part, create)? {
                    Some(id) => at = id,
                    None => return Ok(None),
                }
            }
            at
        } else {
            let (parent_rel, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let Some(parent) = self.folder(parent_rel, create)? else {
                return Ok(None);
            };
            match self.child_folder(&parent, name, create)? {
                Some(id) => id,
                None => return Ok(None),
            }
        };
        self.folders
            .lock()
            .unwrap()
            .insert(rel.to_string(), id.clone());
        Ok(Some(id))
    }

    fn folder_of(t: FileType, name: &str) -> String {
        match t {
            FileType::Config => String::new(),
            FileType::Pack => format!("data/{}", name.get(..2).unwrap_or("00")),
            _ => t.dir().to_string(),
        }
    }

    fn file_name(t: FileType, name: &str) -> &str {
        if t == FileType::Config {
            "config"
        } else {
            name
        }
    }

    fn rel(t: FileType, name: &str) -> String {
        match t {
            FileType::Config => "config".into(),
            _ => format!("{}/{name}", Self::folder_of(t, name)),
        }
    }

    /// All files of this name, newest first; empty when the name or its folder is missing.
    fn versions(&self, t: FileType, name: &str) -> io::Result<Vec<DriveFile>> {
        let Some(folder) = self.folder(&Self::folder_of(t, name), false)? else {
            return Ok(Vec::new());
        };
        let mut v = self.children(&folder, Some(Self::file_name(t, name)), false)?;
        v.sort_by(|a, b| {
            if a.newer_than(b) {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        });
        Ok(v)
    }

    fn newest(&self, t: FileType, name: &str) -> io::Result<DriveFile> {
        self.versions(t, name)?.into_iter().next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no such file in the Google Drive folder",
            )
        })
    }

    fn upload(&self, folder: &str, name: &str, data: &[u8]) -> io::Result<DriveFile> {
        let meta = serde_json::json!({"name": name, "parents": [folder]}).to_string();
        let a = if data.len() <= self.opts.multipart_max {
            let boundary = loop {
                let b = format!("backupd-{:032x}", rand::random::<u128>());
                if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
                    break b;
                }
            };
            let mut body = Vec::with_capacity(data.len() + meta.len() + 200);
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let url = format!(
                "{}/files?uploadType=multipart&fields={FILE_FIELDS}",
                self.opts.upload_base
            );
            self.call(
                "upload",
                "POST",
                &url,
                &[(
                    "Content-Type",
                    format!("multipart/related; boundary={boundary}"),
                )],
                Some(&body),
            )?
        } else {
            self.resumable(&meta, data)?
        };
        serde_json::from_slice(&a.body).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("Google Drive's answer to an upload is not understood: {e}"),
            )
        })
    }

    /// Drive's resumable upload: open a session, send parts; after a failed part, ask the
    /// session how much it has and go on from there.
    fn resumable(&self, meta: &str, data: &[u8]) -> io::Result<Answer> {
        let url = format!(
            "{}/files?uploadType=resumable&fields={FILE_FIELDS}",
            self.opts.upload_base
        );
        let total = data.len();
        let a = self.call(
            "start an upload at",
            "POST",
            &url,
            &[
                ("Content-Type", "application/json; charset=UTF-8".into()),
                ("X-Upload-Content-Type", "application/octet-stream".into()),
                ("X-Upload-Content-Length", total.to_string()),
            ],
            Some(meta.as_bytes()),
        )?;
        let session = a.location.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "Google Drive started an upload but sent no session URL (Location)",
            )
        })?;
        let chunk = self.opts.chunk_size.max(256 << 10) / (256 << 10) * (256 << 10);
        let mut pos = 0usize;
        let mut stalls = 0u32;
        loop {
            let end = (pos + chunk).min(total);
            let range = if total == 0 {
                "bytes */0".to_string()
            } else {
                format!("bytes {pos}-{}/{total}", end - 1)
            };
            let sent = self.call(
                "upload a part to",
                "PUT",
                &session,
                &[("Content-Range", range)],
                Some(&data[pos..end]),
            );
            let a = match sent {
                Ok(a) => a,
                Err(e) if stalls + 1 < self.opts.attempts => {
                    // Ask what arrived, then continue from there.
                    tracing::warn!("Google Drive: a part of an upload failed ({e}); resuming");
                    stalls += 1;
                    let st = self.call(
                        "ask the upload state of",
                        "PUT",
                        &session,
                        &[("Content-Range", format!("bytes */{total}"))],
                        Some(&[]),
                    )?;
                    if st.status != 308 {
                        return Ok(st);
                    }
                    pos = next_offset(st.range.as_deref());
                    continue;
                }
                Err(e) => return Err(e),
            };
            if a.status != 308 {
                return Ok(a);
            }
            let next = next_offset(a.range.as_deref());
            if next <= pos {
                stalls += 1;
                if stalls >= self.opts.attempts {
                    return Err(io::Error::other(format!(
                        "the upload session {session} makes no progress at byte {pos}"
                    )));
                }
            }
            pos = next;
        }
    }
}

/// The offset after `Range: bytes=0-N` (0 when absent).
fn next_offset(range: Option<&str>) -> usize {
    range
        .and_then(|r| r.rsplit('-').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map(|n| n + 1)
        .unwrap_or(0)
}

impl Backend for GDriveBackend {
    fn location(&self) -> String {
        format!("gdrive:{}", self.path)
    }

    fn create(&self) -> BResult<()> {
        let e = |src| self.err("create repository at", "", src);
        if !self.versions(FileType::Config, "").map_err(e)?.is_empty() {
            return Err(e(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a repository already exists here (config file found)",
            )));
        }
        for d in ["keys", "snapshots", "index", "locks", "data"] {
            self.folder(d, true).map_err(e)?;
        }
        Ok(())
    }

    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        let rel = Self::rel(t, name);
        let e = |src| self.err("write", &rel, src);
        let folder = self
            .folder(&Self::folder_of(t, name), true)
            .map_err(e)?
            .expect("made when missing");
        let fname = Self::file_name(t, name);
        let new = self.upload(&folder, fname, data).map_err(e)?;
        // The new file is complete and visible; older files of this name go.
        for old in self.children(&folder, Some(fname), false).map_err(e)? {
            if old.id != new.id && !old.newer_than(&new) {
                let url = format!("{}/files/{}", self.opts.api_base, old.id);
                match self.call("delete", "DELETE", &url, &[], None) {
                    Ok(_) => {}
                    Err(x) if x.kind() == io::ErrorKind::NotFound => {}
                    Err(x) => return Err(e(x)),
                }
            }
        }
        Ok(())
    }

    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        let rel = Self::rel(t, name);
        let e = |src| self.err("read", &rel, src);
        let f = self.newest(t, name).map_err(e)?;
        let url = format!("{}/files/{}?alt=media", self.opts.api_base, f.id);
        let a = self.call("download", "GET", &url, &[], None).map_err(e)?;
        Ok(a.body)
    }

    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        let rel = Self::rel(t, name);
        let e = |src| self.err("read", &rel, src);
        if len == 0 {
            return Ok(Vec::new());
        }
        let f = self.newest(t, name).map_err(e)?;
        if offset + len as u64 > f.size() {
            return Err(e(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}..{} were asked for, but the file has {} bytes",
                    offset + len as u64,
                    f.size()
                ),
            )));
        }
        let url = format!("{}/files/{}?alt=media", self.opts.api_base, f.id);
        let range = format!("bytes={offset}-{}", offset + len as u64 - 1);
        let a = self
            .call("download", "GET", &url, &[("Range", range)], None)
            .map_err(e)?;
        let body = match a.status {
            206 => a.body,
            // A server that ignores Range sends the whole file.
            _ if a.body.len() as u64 >= offset + len as u64 => {
                a.body[offset as usize..offset as usize + len].to_vec()
            }
            _ => a.body,
        };
        if body.len() != len {
            return Err(e(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "asked for {len} bytes at offset {offset}, got {}",
                    body.len()
                ),
            )));
        }
        Ok(body)
    }

    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        let e = |src| self.err("list", t.dir(), src);
        let mut folders = Vec::new();
        match t {
            FileType::Config => return Ok(Vec::new()),
            FileType::Pack => {
                let Some(data) = self.folder("data", false).map_err(e)? else {
                    return Err(e(io::Error::new(
                        io::ErrorKind::NotFound,
                        "the data folder is missing",
                    )));
                };
                for f in self.children(&data, None, true).map_err(e)? {
                    self.folders
                        .lock()
                        .unwrap()
                        .entry(format!("data/{}", f.name))
                        .or_insert_with(|| f.id.clone());
                    folders.push(f.id);
                }
            }
            _ => match self.folder(t.dir(), false).map_err(e)? {
                Some(id) => folders.push(id),
                None => {
                    return Err(e(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("the {} folder is missing", t.dir()),
                    )))
                }
            },
        }
        let mut by_name: HashMap<String, DriveFile> = HashMap::new();
        for id in folders {
            for f in self.children(&id, None, false).map_err(e)? {
                if !(f.name.len() == 64 && f.name.bytes().all(|b| b.is_ascii_hexdigit())) {
                    continue;
                }
                match by_name.get(&f.name) {
                    Some(old) if old.newer_than(&f) => {}
                    _ => {
                        by_name.insert(f.name.clone(), f);
                    }
                }
            }
        }
        let mut out: Vec<(String, u64)> = by_name
            .into_values()
            .map(|f| (f.name.clone(), f.size()))
            .collect();
        out.sort();
        Ok(out)
    }

    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        let rel = Self::rel(t, name);
        let e = |src| self.err("remove", &rel, src);
        let v = self.versions(t, name).map_err(e)?;
        if v.is_empty() {
            return Err(e(io::Error::new(
                io::ErrorKind::NotFound,
                "no such file in the Google Drive folder",
            )));
        }
        for f in v {
            let url = format!("{}/files/{}", self.opts.api_base, f.id);
            match self.call("delete", "DELETE", &url, &[], None) {
                Ok(_) => {}
                Err(x) if x.kind() == io::ErrorKind::NotFound => {}
                Err(x) => return Err(e(x)),
            }
        }
        Ok(())
    }

    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        let rel = Self::rel(t, name);
        Ok(!self
            .versions(t, name)
            .map_err(|src| self.err("stat", &rel, src))?
            .is_empty())
    }

    fn lock_settle_delay(&self) -> Duration {
        // Drive's listings can lag a moment behind a completed upload.
        Duration::from_secs(2)
    }

    fn space(&self) -> BResult<Option<super::backend::Space>> {
        let url = format!("{}/about?fields=storageQuota", self.opts.api_base);
        let a = self
            .call("about", "GET", &url, &[], None)
            .map_err(|src| self.err("quota", "about", src))?;
        space_of(&a.body).map_err(|m| {
            self.err(
                "quota",
                "about",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("Drive's quota answer is {m}"),
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_from_about() {
        let s = space_of(
            br#"{"storageQuota":{"limit":"16106127360","usage":"6106127360","usageInDrive":"1"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((s.total, s.available), (16106127360, 10000000000));
        // Unlimited (no limit) and over quota.
        assert_eq!(
            space_of(br#"{"storageQuota":{"usage":"5"}}"#).unwrap(),
            None
        );
        let s = space_of(br#"{"storageQuota":{"limit":"10","usage":"12"}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(s.available, 0);
        assert!(space_of(br#"{"storageQuota":{"limit":"ten"}}"#)
            .unwrap_err()
            .contains("ten"));
    }

    #[test]
    fn retry_rules() {
        let rl = br#"{"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"slow down"}],"code":403,"message":"slow down"}}"#;
        let rl2 =
            br#"{"error":{"errors":[{"reason":"rateLimitExceeded"}],"code":403,"message":"x"}}"#;
        let perm = br#"{"error":{"errors":[{"reason":"insufficientFilePermissions"}],"code":403,"message":"no"}}"#;
        assert!(is_retryable(403, rl));
        assert!(is_retryable(403, rl2));
        assert!(!is_retryable(403, perm));
        assert!(!is_retryable(403, b"not json"));
        assert!(is_retryable(429, b""));
        assert!(is_retryable(503, b""));
        assert!(!is_retryable(404, b""));
        assert_eq!(next_offset(Some("bytes=0-262143")), 262144);
        assert_eq!(next_offset(None), 0);
        assert_eq!(q_lit("it's a\\b"), "it\\'s a\\\\b");
    }
}
