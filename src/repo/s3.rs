//! The S3 backend: a small S3 client (AWS Signature V4 over `ureq`, path-style or virtual-hosted-style) storing restic's layout in a bucket.
//!
//! Object names are restic's (`PREFIX/config`, `keys/ID`, `data/XX/ID`, `index/ID`,
//! `snapshots/ID`, `locks/ID`), so restic opens the same bucket. A PUT is atomic on S3: the
//! object appears whole or not at all. Packs above `MULTIPART_THRESHOLD` go up in parts; an
//! interrupted multipart upload is never visible as an object (and is aborted when we can).

use super::backend::{BResult, Backend, BackendError, FileType};
use super::http::{transient_status, Attempt, Http, RemoteClass, RemoteError, Reply};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use std::time::Duration;

/// Objects larger than this are uploaded in parts of `PART_SIZE` (S3's minimum part is 5 MiB).
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// A secret string: never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// S3 access: a key pair and the region to sign for.
#[derive(Clone, Debug)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// The region to sign requests for (`us-east-1` when none is given).
    pub region: String,
}

/// How requests name the bucket: in the path (`https://host/bucket/key`) or in the host name
/// (`https://bucket.host/key`, virtual-hosted style, which AWS prefers and needs wildcard DNS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    /// Virtual-hosted for `*.amazonaws.com` endpoints (when the bucket name can be a host
    /// name), path-style for every other endpoint: as restic and minio-go decide.
    #[default]
    Auto,
    Path,
    Virtual,
}

impl Addressing {
    pub fn name(self) -> &'static str {
        match self {
            Addressing::Auto => "auto",
            Addressing::Path => "path",
            Addressing::Virtual => "virtual",
        }
    }

    pub fn parse(s: &str) -> Result<Addressing, String> {
        match s {
            "auto" => Ok(Addressing::Auto),
            "path" => Ok(Addressing::Path),
            "virtual" => Ok(Addressing::Virtual),
            _ => Err(format!(
                "{s:?} is not an S3 addressing style (auto, path or virtual)"
            )),
        }
    }
}

/// Whether `bucket` can be the first label of a host name (and of a TLS wildcard name: no dots
/// over https).
fn dns_bucket(bucket: &str, https: bool) -> bool {
    let b = bucket.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'.')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !bucket.contains("..")
        && !bucket.contains(".-")
        && !bucket.contains("-.")
        && bucket.parse::<std::net::Ipv4Addr>().is_err()
        && !(https && bucket.contains('.'))
}

/// An unfinished multipart upload (ListMultipartUploads).
struct Upload {
    key: String,
    upload_id: String,
    /// When it was started; `None` when the server did not say (then it is never aborted).
    initiated: Option<chrono::DateTime<chrono::Utc>>,
}

/// A bucket (and a prefix in it) holding one repository.
pub struct S3Backend {
    http: Http,
    endpoint: String,
    host: String,
    /// Virtual-hosted style: `bucket.host` is the host, the path has no bucket.
    virtual_host: bool,
    bucket: String,
    prefix: String,
    creds: S3Credentials,
    shown: String,
}

const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// The parts of a request that SigV4 signs.
struct Signed<'a> {
    method: &'a str,
    /// The canonical (already encoded) path, e.g. `/bucket/data/ab/ab12...`.
    path: &'a str,
    /// Query parameters, not encoded.
    query: &'a [(&'a str, &'a str)],
    payload_hash: &'a str,
}

/// Signs a request (AWS Signature Version 4, service `s3`): returns the headers to send.
fn sign(
    creds: &S3Credentials,
    host: &str,
    req: &Signed,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let day = &amz_date[..8];
    let mut q: Vec<(String, String)> = req.query.iter().map(|(k, v)| (enc(k), enc(v))).collect();
    q.sort();
    let canonical_query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_headers = format!(
        "host:{host}\nx-amz-content-sha256:{}\nx-amz-date:{amz_date}\n",
        req.payload_hash
    );
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method, req.path, req.payload_hash
    );
    let scope = format!("{day}/{}/s3/aws4_request", creds.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let k_date = hmac(
        format!("AWS4{}", creds.secret_access_key.0).as_bytes(),
        day.as_bytes(),
    );
    let k_region = hmac(&k_date, creds.region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
    vec![
        ("Host".into(), host.to_string()),
        ("x-amz-content-sha256".into(), req.payload_hash.to_string()),
        ("x-amz-date".into(), amz_date),
        (
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key_id
            ),
        ),
    ]
}

/// The text of every `<tag>…</tag>` in `xml`, unescaped.
fn xml_all(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        match after.find(&close) {
            Some(j) => {
                out.push(xml_unescape(&after[..j]));
                rest = &after[j + close.len()..];
            }
            None => break,
        }
    }
    out
}

fn xml_one(xml: &str, tag: &str) -> Option<String> {
    xml_all(xml, tag).into_iter().next()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

fn valid_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl S3Backend {
    pub fn new(endpoint: &str, bucket: &str, prefix: &str, creds: S3Credentials) -> S3Backend {
        let host = endpoint
            .split_once("://")
            .map(|(_, h)| h)
            .unwrap_or(endpoint)
            .trim_end_matches('/')
            .to_string();
        let shown = if prefix.is_empty() {
            format!("s3:{endpoint}/{bucket}")
        } else {
            format!("s3:{endpoint}/{bucket}/{prefix}")
        };
        S3Backend {
            http: Http::new(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            host,
            virtual_host: false,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            creds,
            shown,
        }
    }

    /// Chooses path-style or virtual-hosted-style requests (see `Addressing`). Fails when
    /// virtual-hosted style is asked for and the bucket name cannot be a host name.
    pub fn with_addressing(mut self, a: Addressing) -> Result<S3Backend, String> {
        let https = self.endpoint.starts_with("https://");
        let name = self
            .host
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.host);
        let aws = name.ends_with(".amazonaws.com");
        self.virtual_host = match a {
            Addressing::Path => false,
            Addressing::Auto => aws && dns_bucket(&self.bucket, https),
            Addressing::Virtual if dns_bucket(&self.bucket, https) => true,
            Addressing::Virtual => {
                return Err(format!(
                    "the bucket name {:?} cannot be a host name, so virtual-hosted addressing cannot reach it (it needs 3-63 lowercase letters, digits and hyphens{}): use s3_addressing = \"path\"",
                    self.bucket,
                    if https { ", and no dots over https" } else { ", or dots" }
                ))
            }
        };
        Ok(self)
    }

    /// Where a request for the path-style `path` (`/bucket[/key]`) goes: the base URL, the Host
    /// header, and the canonical path SigV4 signs.
    fn route(&self, path: &str) -> (String, String, String) {
        if !self.virtual_host {
            return (self.endpoint.clone(), self.host.clone(), path.to_string());
        }
        let b = format!("/{}", enc(&self.bucket));
        let rest = path.strip_prefix(&b).unwrap_or(path);
        let rest = if rest.is_empty() { "/" } else { rest };
        let host = format!("{}.{}", self.bucket, self.host);
        let scheme = self
            .endpoint
            .split_once("://")
            .map(|(s, _)| s)
            .unwrap_or("https");
        (format!("{scheme}://{host}"), host, rest.to_string())
    }

    /// The URL, Host header and canonical path of a request for the path-style `path`.
    fn target(&self, path: &str, query: &[(&str, &str)]) -> (String, String, String) {
        let (base, host, path) = self.route(path);
        let mut url = format!("{base}{path}");
        if !query.is_empty() {
            let mut q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect();
            q.sort();
            url.push('?');
            url.push_str(&q.join("&"));
        }
        (url, host, path)
    }

    /// Use another retry policy (tests make it quick).
    pub fn with_http(mut self, http: Http) -> S3Backend {
        self.http = http;
        self
    }

    /// The object name of a repository file.
    pub fn key_of(&self, t: FileType, name: &str) -> String {
        let rel = match t {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{name}", name.get(..2).unwrap_or("00")),
            _ => format!("{}/{name}", t.dir()),
        };
        if self.prefix.is_empty() {
            rel
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn object_path(&self, key: &str) -> String {
        let mut p = format!("/{}", enc(&self.bucket));
        for seg in key.split('/') {
            p.push('/');
            p.push_str(&enc(seg));
        }
        p
    }

    /// One signed request, retried on transport failures and transient statuses. Returns the
    /// final reply whatever its status.
    fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, RemoteError> {
        self.request_with(false, method, path, query, extra, body)
    }

    /// `request`, or with `cleanup` under `Http::retry_cleanup`'s policy (one attempt once the
    /// endpoint was found unreachable).
    fn request_with(
        &self,
        cleanup: bool,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        extra: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, RemoteError> {
        let payload_hash = hex_sha256(body.unwrap_or(&[]));
        let (url, host, path) = self.target(path, query);
        let path = path.as_str();
        let once = || {
            let mut headers = sign(
                &self.creds,
                &host,
                &Signed {
                    method,
                    path,
                    query,
                    payload_hash: &payload_hash,
                },
                chrono::Utc::now(),
            );
            headers.extend(extra.iter().cloned());
            match self.http.send(method, &url, &headers, body) {
                Attempt::Done(r) if transient_status(r.status) => {
                    Attempt::Retry(self.status_error(&r, "the request"))
                }
                other => other,
            }
        };
        if cleanup {
            self.http.retry_cleanup(once)
        } else {
            self.http.retry(once)
        }
    }

    /// Describes a non-success reply: the status, S3's error code and message, and a hint.
    fn status_error(&self, r: &Reply, what: &str) -> RemoteError {
        let text = String::from_utf8_lossy(&r.body);
        let code = xml_one(&text, "Code").unwrap_or_default();
        let msg = xml_one(&text, "Message").unwrap_or_default();
        let said = match (code.is_empty(), msg.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!(" ({code})"),
            (true, false) => format!(" ({msg})"),
            (false, false) => format!(" ({code}: {msg})"),
        };
        let lower = format!("{code} {msg}").to_ascii_lowercase();
        let (class, hint) = if lower.contains("quota") || code == "EntityTooLarge" {
            (
                RemoteClass::Quota,
                "the bucket is full or over its quota: raise the bucket's quota with your storage provider's tools (Garage: `garage bucket set-quotas`), or free space (`backupctl forget ... --prune`), then run the backup again",
            )
        } else if code == "NoSuchBucket" {
            (
                RemoteClass::NoContainer,
                "the bucket does not exist: check the location, or create the bucket with your storage provider's tools",
            )
        } else if r.status == 401 || r.status == 403 {
            (
                RemoteClass::Denied,
                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or s3_access_key_id and s3_secret_access_key_file in the configuration), the region (AWS_DEFAULT_REGION), and the key's permissions on the bucket",
            )
        } else if r.status == 404 {
            (RemoteClass::NotFound, "")
        } else if r.status == 400 && code == "AuthorizationHeaderMalformed" {
            (
                RemoteClass::Denied,
                "check the region (AWS_DEFAULT_REGION or s3_region)",
            )
        } else {
            (RemoteClass::Other, "")
        };
        let hint = if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        };
        RemoteError::new(
            class,
            format!(
                "{what}: {} answered HTTP {}{said}{hint}",
                self.endpoint, r.status
            ),
        )
    }

    fn err(&self, op: &'static str, key: &str, e: RemoteError) -> BackendError {
        e.into_backend(op, format!("{} (object {key})", self.shown))
    }

    fn put_simple(&self, key: &str, data: &[u8]) -> Result<(), RemoteError> {
        let path = self.object_path(key);
        let r = self.request("PUT", &path, &[], &[], Some(data))?;
        if r.status == 200 {
            Ok(())
        } else {
            Err(self.status_error(&r, "upload"))
        }
    }

    /// Starts a multipart upload of object `key` (CreateMultipartUpload); returns its upload id.
    fn create_upload(&self, key: &str) -> Result<String, RemoteError> {
        let path = self.object_path(key);
        let r = self.request("POST", &path, &[("uploads", "")], &[], Some(&[]))?;
        if r.status != 200 {
            return Err(self.status_error(&r, "start a multipart upload"));
        }
        xml_one(&String::from_utf8_lossy(&r.body), "UploadId").ok_or_else(|| {
            RemoteError::new(
                RemoteClass::Other,
                "the answer to CreateMultipartUpload has no UploadId",
            )
        })
    }

    /// Starts a multipart upload of a repository file and leaves it unfinished; returns its
    /// upload id. For tests of the cleanup of unfinished uploads (`abort_stale_uploads`).
    pub fn start_upload(&self, t: FileType, name: &str) -> Result<String, RemoteError> {
        self.create_upload(&self.key_of(t, name))
    }

    /// Aborts the multipart upload `upload_id` of object `key` (an upload that is gone already
    /// counts as aborted). `cleanup`: right after a failure (see `Http::retry_cleanup`).
    fn abort_upload(&self, key: &str, upload_id: &str, cleanup: bool) -> Result<(), RemoteError> {
        let path = self.object_path(key);
        let r = self.request_with(
            cleanup,
            "DELETE",
            &path,
            &[("uploadId", upload_id)],
            &[],
            None,
        )?;
        if matches!(r.status, 200 | 204 | 404) {
            Ok(())
        } else {
            Err(self.status_error(&r, "abort the multipart upload"))
        }
    }

    fn put_multipart(&self, key: &str, data: &[u8]) -> Result<(), RemoteError> {
        let path = self.object_path(key);
        let upload_id = self.create_upload(key)?;
        let result = (|| {
            let mut etags = Vec::new();
            let parts = data.len().div_ceil(PART_SIZE);
            for (i, part) in data.chunks(PART_SIZE).enumerate() {
                let n = (i + 1).to_string();
                let r = self
                    .request(
                        "PUT",
                        &path,
                        &[("partNumber", &n), ("uploadId", &upload_id)],
                        &[],
                        Some(part),
                    )
                    .map_err(|mut e| {
                        e.message = format!("upload part {n} of {parts}: {}", e.message);
                        e
                    })?;
                if r.status != 200 {
                    return Err(self.status_error(&r, &format!("upload part {n} of {parts}")));
                }
                let etag = r.header("etag").unwrap_or("").to_string();
                etags.push((n, etag));
            }
            let mut xml = String::from("<CompleteMultipartUpload>");
            for (n, etag) in &etags {
                xml.push_str(&format!(
                    "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                    etag.replace('&', "&amp;").replace('"', "&quot;")
                ));
            }
            xml.push_str("</CompleteMultipartUpload>");
            let r = self.request(
                "POST",
                &path,
                &[("uploadId", &upload_id)],
                &[],
                Some(xml.as_bytes()),
            )?;
            // S3 may answer 200 and put the error in the body.
            if r.status != 200 || String::from_utf8_lossy(&r.body).contains("<Error>") {
                return Err(self.status_error(&r, "complete the multipart upload"));
            }
            Ok(())
        })();
        // Abort, so that the storage drops the parts; say whether that worked.
        result.map_err(|mut e| {
            match self.abort_upload(key, &upload_id, true) {
                Ok(()) => e.message.push_str("; the multipart upload was aborted"),
                Err(a) => e.message.push_str(&format!(
                    "; aborting the multipart upload {upload_id} failed too ({a}): it is not visible as an object, but its parts may take space until it is aborted (`backupctl prune` aborts this repository's unfinished uploads older than an hour; or a lifecycle rule AbortIncompleteMultipartUpload, or Garage's `garage bucket cleanup-incomplete-uploads`)"
                )),
            }
            e
        })
    }

    fn get(&self, key: &str, range: Option<(u64, usize)>) -> Result<Vec<u8>, RemoteError> {
        let path = self.object_path(key);
        let extra: Vec<(String, String)> = match range {
            Some((off, len)) => vec![(
                "Range".into(),
                format!("bytes={off}-{}", off + len as u64 - 1),
            )],
            None => vec![],
        };
        let r = self.request("GET", &path, &[], &extra, None)?;
        match (r.status, range) {
            (200, None) => Ok(r.body),
            (206, Some((_, len))) | (200, Some((_, len))) if r.body.len() == len => Ok(r.body),
            (200, Some((off, len))) if r.body.len() as u64 >= off + len as u64 => {
                Ok(r.body[off as usize..off as usize + len].to_vec())
            }
            (206, Some((off, len))) | (200, Some((off, len))) => Err(RemoteError::new(
                RemoteClass::Other,
                format!(
                    "asked for {len} bytes at offset {off}, got {}: the object is shorter than the index says",
                    r.body.len()
                ),
            )),
            _ => Err(self.status_error(&r, "download")),
        }
    }

    /// Every object name under `prefix` with its size (ListObjectsV2, following continuations).
    fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, u64)>, RemoteError> {
        let path = format!("/{}", enc(&self.bucket));
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = vec![("list-type", "2"), ("prefix", prefix)];
            if let Some(t) = &token {
                q.push(("continuation-token", t));
            }
            let r = self.request("GET", &path, &q, &[], None)?;
            if r.status != 200 {
                return Err(self.status_error(&r, "list"));
            }
            let text = String::from_utf8_lossy(&r.body);
            for c in xml_all(&text, "Contents") {
                let key = xml_one(&c, "Key").unwrap_or_default();
                let size = xml_one(&c, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                out.push((key, size));
            }
            let truncated = xml_one(&text, "IsTruncated").as_deref() == Some("true");
            token = xml_one(&text, "NextContinuationToken");
            if !truncated || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// The multipart uploads under this repository's prefix that were started and neither
    /// completed nor aborted (ListMultipartUploads): `(object name, upload id)`. They are never
    /// visible as objects, but the storage may count their parts until they are aborted.
    pub fn incomplete_uploads(&self) -> Result<Vec<(String, String)>, RemoteError> {
        Ok(self
            .list_uploads()?
            .into_iter()
            .map(|u| (u.key, u.upload_id))
            .collect())
    }

    /// Whether object `key` belongs to this repository's layout (`PREFIX/config`,
    /// `PREFIX/data/XX/ID`, `PREFIX/keys/ID`, ...): never a key of another prefix in the bucket.
    fn in_layout(&self, key: &str) -> bool {
        let rel = if self.prefix.is_empty() {
            key
        } else {
            match key
                .strip_prefix(self.prefix.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                Some(r) => r,
                None => return false,
            }
        };
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["config"] => true,
            ["data", xx, id] => valid_name(id) && id.get(..2) == Some(*xx),
            [dir, id] => ["keys", "snapshots", "index", "locks"].contains(dir) && valid_name(id),
            _ => false,
        }
    }

    /// ListMultipartUploads under this repository's prefix, with when each was started.
    fn list_uploads(&self) -> Result<Vec<Upload>, RemoteError> {
        let path = format!("/{}", enc(&self.bucket));
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut q: Vec<(&str, &str)> = vec![("uploads", ""), ("prefix", &prefix)];
            if let Some((k, u)) = &markers {
                q.push(("key-marker", k));
                q.push(("upload-id-marker", u));
            }
            let r = self.request("GET", &path, &q, &[], None)?;
            if r.status != 200 {
                return Err(self.status_error(&r, "list the multipart uploads"));
            }
            let text = String::from_utf8_lossy(&r.body);
            for u in xml_all(&text, "Upload") {
                out.push(Upload {
                    key: xml_one(&u, "Key").unwrap_or_default(),
                    upload_id: xml_one(&u, "UploadId").unwrap_or_default(),
                    initiated: xml_one(&u, "Initiated").and_then(|t| {
                        chrono::DateTime::parse_from_rfc3339(&t)
                            .ok()
                            .map(|t| t.with_timezone(&chrono::Utc))
                    }),
                });
            }
            let truncated = xml_one(&text, "IsTruncated").as_deref() == Some("true");
            match (
                xml_one(&text, "NextKeyMarker"),
                xml_one(&text, "NextUploadIdMarker"),
            ) {
                (Some(k), Some(u)) if truncated => markers = Some((k, u)),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Checks that the bucket exists and the credentials may list it.
    pub fn check_bucket(&self) -> Result<(), RemoteError> {
        let path = format!("/{}", enc(&self.bucket));
        let r = self.request(
            "GET",
            &path,
            &[
                ("list-type", "2"),
                ("max-keys", "1"),
                ("prefix", &self.prefix),
            ],
            &[],
            None,
        )?;
        if r.status == 200 {
            return Ok(());
        }
        let mut e = self.status_error(&r, &format!("open bucket {}", self.bucket));
        if r.status == 404 {
            e.class = RemoteClass::NoContainer;
        }
        Err(e)
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        self.shown.clone()
    }

    fn create(&self) -> BResult<()> {
        let key = self.key_of(FileType::Config, "");
        self.check_bucket()
            .map_err(|e| self.err("create repository at", &key, e))?;
        if self.exists(FileType::Config, "")? {
            return Err(BackendError {
                op: "create repository at",
                path: self.shown.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a repository already exists here (config object found)",
                ),
            });
        }
        Ok(())
    }

    fn save(&self, t: FileType, name: &str, data: &[u8]) -> BResult<()> {
        let key = self.key_of(t, name);
        let r = if data.len() > MULTIPART_THRESHOLD {
            self.put_multipart(&key, data)
        } else {
            self.put_simple(&key, data)
        };
        r.map_err(|e| self.err("upload", &key, e))
    }

    fn load(&self, t: FileType, name: &str) -> BResult<Vec<u8>> {
        let key = self.key_of(t, name);
        self.get(&key, None)
            .map_err(|e| self.err("download", &key, e))
    }

    fn load_range(&self, t: FileType, name: &str, offset: u64, len: usize) -> BResult<Vec<u8>> {
        let key = self.key_of(t, name);
        if len == 0 {
            return Ok(Vec::new());
        }
        self.get(&key, Some((offset, len)))
            .map_err(|e| self.err("download", &key, e))
    }

    fn list(&self, t: FileType) -> BResult<Vec<(String, u64)>> {
        if t == FileType::Config {
            return Ok(Vec::new());
        }
        let dir = self.key_of(t, "0000");
        // key_of gives PREFIX/dir/0000 or PREFIX/data/00/0000: keep PREFIX/dir/
        let base = match t {
            FileType::Pack => dir.trim_end_matches("00/0000").to_string(),
            _ => dir.trim_end_matches("0000").to_string(),
        };
        let all = self
            .list_prefix(&base)
            .map_err(|e| self.err("list", &base, e))?;
        Ok(all
            .into_iter()
            .filter_map(|(k, size)| {
                let name = k.rsplit('/').next().unwrap_or("").to_string();
                valid_name(&name).then_some((name, size))
            })
            .collect())
    }

    fn remove(&self, t: FileType, name: &str) -> BResult<()> {
        let key = self.key_of(t, name);
        let path = self.object_path(&key);
        // Deleting our lock is cleanup: once the endpoint was found unreachable, one attempt
        // (a lock left behind is stale once its process is gone, and refreshed by nobody).
        let r = self
            .request_with(t == FileType::Lock, "DELETE", &path, &[], &[], None)
            .map_err(|e| self.err("delete", &key, e))?;
        if r.status == 204 || r.status == 200 {
            Ok(())
        } else {
            Err(self.err("delete", &key, self.status_error(&r, "delete")))
        }
    }

    fn exists(&self, t: FileType, name: &str) -> BResult<bool> {
        let key = self.key_of(t, name);
        let path = self.object_path(&key);
        let r = self
            .request("HEAD", &path, &[], &[], None)
            .map_err(|e| self.err("look up", &key, e))?;
        match r.status {
            200 => Ok(true),
            404 => {
                // HEAD has no body: tell a missing bucket from a missing object.
                if t == FileType::Config {
                    self.check_bucket()
                        .map_err(|e| self.err("look up", &key, e))?;
                }
                Ok(false)
            }
            _ => Err(self.err("look up", &key, self.status_error(&r, "look up"))),
        }
    }

    fn upload_parallelism(&self) -> usize {
        4
    }

    fn abort_stale_uploads(&self, older_than: Duration, dry_run: bool) -> BResult<usize> {
        let base = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let uploads = self
            .list_uploads()
            .map_err(|e| self.err("list the multipart uploads of", &base, e))?;
        let older_than = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let now = chrono::Utc::now();
        let mut n = 0;
        for u in uploads {
            let stale = u.initiated.is_some_and(|t| now - t >= older_than);
            if !stale || !self.in_layout(&u.key) {
                continue;
            }
            if !dry_run {
                self.abort_upload(&u.key, &u.upload_id, false)
                    .map_err(|e| {
                        self.err(
                            "abort the unfinished multipart upload",
                            &format!("{} (upload {})", u.key, u.upload_id),
                            e,
                        )
                    })?;
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_matches_aws_example() {
        // From AWS's "Deriving the signing key" example.
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), b"20120215");
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"iam");
        let k_signing = hmac(&k_service, b"aws4_request");
        assert_eq!(
            hex::encode(k_signing),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    #[test]
    fn signature_is_deterministic_and_secret_hidden() {
        let creds = S3Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            region: "us-east-1".into(),
        };
        assert!(!format!("{creds:?}").contains("wJalr"));
        let now = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let empty = hex_sha256(b"");
        // AWS's documented example "GET Bucket (List Objects)" uses exactly our signed
        // header set (host, x-amz-content-sha256, x-amz-date).
        let h = sign(
            &creds,
            "examplebucket.s3.amazonaws.com",
            &Signed {
                method: "GET",
                path: "/",
                query: &[("max-keys", "2"), ("prefix", "J")],
                payload_hash: &empty,
            },
            now,
        );
        let auth = &h.iter().find(|(k, _)| k == "Authorization").unwrap().1;
        assert!(
            auth.contains(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            ),
            "{auth}"
        );
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date"
        ));
    }

    fn aws_example_creds() -> S3Credentials {
        S3Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn virtual_hosted_requests_sign_as_aws_examples() {
        // AWS's SigV4 examples for S3 ("Authenticating Requests: Using the Authorization
        // Header"): bucket examplebucket, endpoint s3.amazonaws.com, virtual-hosted style.
        let b = S3Backend::new(
            "https://s3.amazonaws.com",
            "examplebucket",
            "",
            aws_example_creds(),
        )
        .with_addressing(Addressing::Auto)
        .unwrap();
        assert!(b.virtual_host, "auto is virtual-hosted for *.amazonaws.com");
        let now = chrono::DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let empty = hex_sha256(b"");
        let bucket = format!("/{}", enc("examplebucket"));
        for (query, url, signature) in [
            (
                &[("max-keys", "2"), ("prefix", "J")][..],
                "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            ),
            (
                &[("lifecycle", "")][..],
                "https://examplebucket.s3.amazonaws.com/?lifecycle=",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            ),
        ] {
            let (u, host, path) = b.target(&bucket, query);
            assert_eq!(u, url);
            assert_eq!(host, "examplebucket.s3.amazonaws.com");
            assert_eq!(path, "/");
            let h = sign(
                &aws_example_creds(),
                &host,
                &Signed {
                    method: "GET",
                    path: &path,
                    query,
                    payload_hash: &empty,
                },
                now,
            );
            let auth = &h.iter().find(|(k, _)| k == "Authorization").unwrap().1;
            assert!(auth.ends_with(&format!("Signature={signature}")), "{auth}");
            let host_header = &h.iter().find(|(k, _)| k == "Host").unwrap().1;
            assert_eq!(host_header, "examplebucket.s3.amazonaws.com");
        }
        // Objects: the key is the whole path, the bucket is in the host.
        let id = "ab".to_string() + &"0".repeat(62);
        let key = b.key_of(FileType::Pack, &id);
        let (u, host, path) = b.target(&b.object_path(&key), &[]);
        assert_eq!(path, format!("/data/ab/{id}"));
        assert_eq!(
            u,
            format!("https://examplebucket.s3.amazonaws.com/data/ab/{id}")
        );
        assert_eq!(host, "examplebucket.s3.amazonaws.com");
    }

    #[test]
    fn addressing_auto_path_and_virtual() {
        let c = aws_example_creds;
        // Path-style keeps the bucket in the path and the endpoint's host (with its port).
        let p = S3Backend::new("http://127.0.0.1:3900", "bkt", "pre", c())
            .with_addressing(Addressing::Auto)
            .unwrap();
        assert!(!p.virtual_host, "auto is path-style off AWS");
        let (u, host, path) = p.target(&p.object_path("pre/config"), &[]);
        assert_eq!(u, "http://127.0.0.1:3900/bkt/pre/config");
        assert_eq!(host, "127.0.0.1:3900");
        assert_eq!(path, "/bkt/pre/config");
        // Forced virtual off AWS (MinIO with MINIO_DOMAIN, Garage's root_domain): the port stays.
        let v = S3Backend::new("http://s3.garage.localhost:3900", "bkt", "", c())
            .with_addressing(Addressing::Virtual)
            .unwrap();
        let (u, host, path) = v.target("/bkt", &[("list-type", "2")]);
        assert_eq!(u, "http://bkt.s3.garage.localhost:3900/?list-type=2");
        assert_eq!(host, "bkt.s3.garage.localhost:3900");
        assert_eq!(path, "/");
        // Forced path on AWS.
        let p = S3Backend::new("https://s3.eu-west-1.amazonaws.com", "bkt", "", c())
            .with_addressing(Addressing::Path)
            .unwrap();
        assert!(!p.virtual_host);
        // Buckets that cannot be host names: auto falls back to path, virtual refuses.
        for bucket in ["my.bucket", "Upper", "ab", "a_b", "192.168.1.1"] {
            let a = S3Backend::new("https://s3.amazonaws.com", bucket, "", c())
                .with_addressing(Addressing::Auto)
                .unwrap();
            assert!(!a.virtual_host, "{bucket}");
            let e = S3Backend::new("https://s3.amazonaws.com", bucket, "", c())
                .with_addressing(Addressing::Virtual)
                .err()
                .unwrap();
            assert!(e.contains(bucket) && e.contains("s3_addressing"), "{e}");
        }
        // Dots are fine in a host name over plain http.
        assert!(
            S3Backend::new("http://s3.amazonaws.com", "my.bucket", "", c())
                .with_addressing(Addressing::Auto)
                .unwrap()
                .virtual_host
        );
        assert_eq!(Addressing::parse("virtual"), Ok(Addressing::Virtual));
        assert!(Addressing::parse("dns")
            .unwrap_err()
            .contains("auto, path or virtual"));
    }

    #[test]
    fn layout_and_xml() {
        let creds = S3Credentials {
            access_key_id: "k".into(),
            secret_access_key: Secret("s".into()),
            region: "r".into(),
        };
        let b = S3Backend::new("http://h:1", "bkt", "a/b", creds);
        let id = "ab".to_string() + &"0".repeat(62);
        assert_eq!(b.key_of(FileType::Pack, &id), format!("a/b/data/ab/{id}"));
        assert_eq!(b.key_of(FileType::Config, ""), "a/b/config");
        assert_eq!(b.key_of(FileType::Key, &id), format!("a/b/keys/{id}"));
        // Only this repository's layout under its own prefix.
        assert!(b.in_layout(&format!("a/b/data/ab/{id}")));
        assert!(b.in_layout(&format!("a/b/locks/{id}")));
        assert!(b.in_layout("a/b/config"));
        for other in [
            format!("a/data/ab/{id}"),
            format!("a/bc/data/ab/{id}"),
            format!("a/b/c/data/ab/{id}"),
            format!("a/b/data/cd/{id}"),
            format!("a/b/data/ab/{id}x"),
            format!("a/b/other/{id}"),
            format!("x/a/b/data/ab/{id}"),
        ] {
            assert!(!b.in_layout(&other), "{other}");
        }
        let root = S3Backend::new("http://h:1", "bkt", "", b.creds.clone());
        assert!(root.in_layout(&format!("data/ab/{id}")));
        assert!(!root.in_layout(&format!("a/b/data/ab/{id}")));
        let xml = "<L><Contents><Key>a&amp;b</Key><Size>3</Size></Contents><Contents><Key>c</Key></Contents></L>";
        let c = xml_all(xml, "Contents");
        assert_eq!(c.len(), 2);
        assert_eq!(xml_one(&c[0], "Key").unwrap(), "a&b");
    }
}
