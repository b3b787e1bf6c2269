//! The REST backend: restic's REST protocol v2 (as `rest-server` and `rclone serve restic` speak it) over `ureq`.
//!
//! `POST /?create=true` creates a repository; `GET|HEAD|POST|DELETE /config` and
//! `/{keys,locks,snapshots,index,data}/NAME` move files (`POST` is atomic on the server: it
//! writes a temporary file and renames it); `GET /TYPE/` with
//! `Accept: application/vnd.x.restic.rest.v2` lists names and sizes. A server in append-only
//! mode answers 403 to every DELETE except of locks: `check_deletable` finds that out up front.

use super::backend::{BResult, Backend, BackendError, FileType};
use super::http::{transient_status, Attempt, Http, RemoteClass, RemoteError, Reply};
use base64::Engine;

const V2: &str = "application/vnd.x.restic.rest.v2";

/// A repository on a REST server.
pub struct RestBackend {
    http: Http,
    /// The base URL, ending in `/`, without credentials.
    url: String,
    /// `Basic …`, when a user is given.
    auth: Option<String>,
    shown: String,
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    size: u64,
}

impl RestBackend {
    /// `url` ends in `/`; `shown` is the location for messages (password hidden).
    pub fn new(url: &str, user: Option<&str>, password: Option<&str>, shown: String) -> Self {
        let auth = user.map(|u| {
            let raw = format!("{u}:{}", password.unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let mut url = url.to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        RestBackend {
            http: Http::new(),
            url,
            auth,
            shown,
        }
    }

    /// Use another HTTP client (extra CA roots, another retry policy).
    pub fn with_http(mut self, http: Http) -> RestBackend {
        self.http = http;
        self
    }

    fn path_of(t: FileType, name: &str) -> String {
        match t {
            FileType::Config => "config".to_string(),
            _ => format!("{}/{name}", t.dir()),
        }
    }

    fn request(
        &self,
        method: &str,
        rel: &str,
        extra: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, RemoteError> {
        let url = format!("{}{rel}", self.url);
        let mut headers: Vec<(String, String)> = vec![("Accept".into(), V2.into())];
        if let Some(a) = &self.auth {
            headers.push(("Authorization".into(), a.clone()));
        }
        headers.extend(extra.iter().cloned());
        self.http
            .retry(|| match self.http.send(method, &url, &headers, body) {
                Attempt::Done(r) if transient_status(r.status) => {
                    Attempt::Retry(self.status_error(&r, method, rel))
                }
                other => other,
            })
    }

    fn status_error(&self, r: &Reply, method: &str, rel: &str) -> RemoteError {
        let text = String::from_utf8_lossy(&r.body);
        let said = text.trim();
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" ({})", said.chars().take(200).collect::<String>())
        };
        let (class, hint) = match r.status {
            401 => (
                RemoteClass::Denied,
                "; check the user and password in the rest: location",
            ),
            403 if method == "DELETE" => (
                RemoteClass::Denied,
                "; the server refuses deletions: it runs in append-only mode",
            ),
            403 => (RemoteClass::Denied, "; the server refuses access"),
            404 => (RemoteClass::NotFound, ""),
            413 | 507 => (
                RemoteClass::Quota,
                "; the server is out of space or over its quota",
            ),
            _ => (RemoteClass::Other, ""),
        };
        RemoteError::new(
            class,
            format!(
                "{method} {rel}: the REST server answered HTTP {}{said}{hint}",
                r.status
            ),
        )
    }

    fn err(&self, op: &'static str, rel: &str, e: RemoteError) -> BackendError {
        e.into_backend(op, format!("{} (file {rel})", self.shown))
    }

    fn ok(&self, r: Reply, method: &str, rel: &str, op: &'static str) -> BResult<Reply> {
        if (200..300).contains(&r.status) {
            Ok(r)
        } else {
            Err(self.err(op, rel, self.status_error(&r, method, rel)))
        }
    }
}

impl Backend for RestBackend {
    fn location(&self) -> String {
        self.shown.clone()
    }

    fn create(&self) -> BResult<()> {
        if self.exists(FileType::Config, "")? {
            return Err(BackendError {
                op: "create repository at",
                path: self.shown.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a repository already exists here (config file found)",
                ),
            });
        }
        let r = self
            .request("POST", "?create=true", &[], Some(&[]))
            .map_err(|e| self.err("create repository at", "/", e))?;
        self.ok(r, "POST", "?create=true", "create repository at")?;
        Ok(())
    }

    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        let rel = Self::path_of(t, name);
        let r = self
            .request(
                "POST",
                &rel,
                &[("Content-Type".into(), "application/octet-stream".into())],
                Some(data),
            )
            .map_err(|e| self.err("upload", &rel, e))?;
        self.ok(r, "POST", &rel, "upload")?;
        Ok(())
    }

    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        let rel = Self::path_of(t, name);
        let r = self
            .request("GET", &rel, &[], None)
            .map_err(|e| self.err("download", &rel, e))?;
        Ok(self.ok(r, "GET", &rel, "download")?.body)
    }

    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let rel = Self::path_of(t, name);
        let range = format!("bytes={offset}-{}", offset + len as u64 - 1);
        let r = self
            .request("GET", &rel, &[("Range".into(), range)], None)
            .map_err(|e| self.err("download", &rel, e))?;
        let r = self.ok(r, "GET", &rel, "download")?;
        if r.body.len() == len {
            Ok(r.body)
        } else if r.status == 200 && r.body.len() as u64 >= offset + len as u64 {
            Ok(r.body[offset as usize..offset as usize + len].to_vec())
        } else {
            Err(self.err(
                "download",
                &rel,
                RemoteError::new(
                    RemoteClass::Other,
                    format!(
                        "asked for {len} bytes at offset {offset}, got {}: the file is shorter than the index says",
                        r.body.len()
                    ),
                ),
            ))
        }
    }

    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let rel = format!("{}/", t.dir());
        let r = self
            .request("GET", &rel, &[], None)
            .map_err(|e| self.err("list", &rel, e))?;
        let r = self.ok(r, "GET", &rel, "list")?;
        let entries: Vec<Entry> = serde_json::from_slice(&r.body).map_err(|e| {
            self.err(
                "list",
                &rel,
                RemoteError::new(
                    RemoteClass::Other,
                    format!("the server's listing is not REST protocol v2 JSON: {e}"),
                ),
            )
        })?;
        Ok(entries
            .into_iter()
            .filter(|e| e.name.len() == 64 && e.name.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|e| (e.name, e.size))
            .collect())
    }

    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        let rel = Self::path_of(t, name);
        let r = self
            .request("DELETE", &rel, &[], None)
            .map_err(|e| self.err("delete", &rel, e))?;
        self.ok(r, "DELETE", &rel, "delete")?;
        Ok(())
    }

    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        let rel = Self::path_of(t, name);
        let r = self
            .request("HEAD", &rel, &[], None)
            .map_err(|e| self.err("look up", &rel, e))?;
        match r.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.err("look up", &rel, self.status_error(&r, "HEAD", &rel))),
        }
    }

    fn upload_parallelism(&self) -> usize {
        4
    }

    /// Deletes a snapshot name no one uses: an append-only server answers 403 before it looks.
    fn check_deletable(&self) -> BResult<()> {
        let rel = Self::path_of(FileType::Snapshot, &"0".repeat(64));
        let r = self
            .request("DELETE", &rel, &[], None)
            .map_err(|e| self.err("probe deletion on", &rel, e))?;
        match r.status {
            403 => Err(BackendError {
                op: "delete files on",
                path: self.shown.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    RemoteError::new(
                        RemoteClass::AppendOnly,
                        "the REST server is append-only (it answered 403 to a DELETE): forget and prune cannot remove anything there; run them against a server without --append-only",
                    ),
                ),
            }),
            _ => Ok(()),
        }
    }
}
