//! Repository locations in restic's syntax (`/path`, `s3:`, `rest:`, `sftp:`, `gdrive:`), parsed into a `Location`.
//!
//! | syntax | meaning |
//! |---|---|
//! | `/srv/repo`, `local:/srv/repo`, `relative/dir` | a local directory |
//! | `s3:https://host[:port]/bucket[/prefix]` | S3-compatible storage, path-style (`http://` for loopback) |
//! | `s3:host[:port]/bucket[/prefix]` | the same over HTTPS (restic's short form, e.g. `s3:s3.amazonaws.com/b`) |
//! | `rest:http(s)://[user:pass@]host[:port]/[path]` | a restic REST server (protocol v2) |
//! | `sftp:[user@]host:/abs/path` or `sftp:[user@]host:rel/path` | SFTP (scp-like) |
//! | `sftp://[user@]host[:port]//abs/path` | SFTP (URL form; one `/` after the port starts a relative path) |
//! | `gdrive:PATH` | a Google Drive folder path below "My Drive" (not a restic syntax: restic has none) |

use std::fmt;
use std::path::PathBuf;

/// Where a repository lives.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 {
        /// `http(s)://host[:port]`, without a trailing slash.
        endpoint: String,
        bucket: String,
        /// Object-name prefix inside the bucket, without leading or trailing slashes ("" for none).
        prefix: String,
    },
    Rest {
        /// The base URL without credentials, ending in `/`.
        url: String,
        user: Option<String>,
        password: Option<String>,
    },
    Sftp {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// A folder path below "My Drive" (`backups/host1`).
    GDrive {
        path: String,
    },
}

/// Why a location string could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid repository location {shown:?}: {reason}\n  hint: {hint}")]
pub struct LocationError {
    pub shown: String,
    pub reason: String,
    pub hint: &'static str,
}

const HINT: &str =
    "use a directory, s3:https://host/bucket[/prefix], rest:https://[user:pass@]host:port/, \
sftp:user@host:/path or gdrive:backups/host1";

impl Location {
    /// Parses a location string (see the module's table).
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let err = |reason: String| LocationError {
            shown: redact(s),
            reason,
            hint: HINT,
        };
        if s.trim().is_empty() {
            return Err(err("it is empty".into()));
        }
        if let Some(rest) = s.strip_prefix("local:") {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if let Some(rest) = s.strip_prefix("s3:") {
            return parse_s3(rest).map_err(err);
        }
        if let Some(rest) = s.strip_prefix("rest:") {
            return parse_rest(rest).map_err(err);
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            return parse_sftp(rest).map_err(err);
        }
        if let Some(rest) = s.strip_prefix("gdrive:") {
            let path = rest.trim_matches('/');
            if path.is_empty()
                || path
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == "..")
            {
                return Err(err(format!(
                    "{rest:?} is not a folder path below \"My Drive\" (e.g. gdrive:backups/host1)"
                )));
            }
            return Ok(Location::GDrive {
                path: path.to_string(),
            });
        }
        // Another `scheme:` we do not know (but not a Windows drive letter like C:).
        if let Some((scheme, _)) = s.split_once(':') {
            if scheme.len() > 1
                && !scheme.contains('/')
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(err(format!("the backend {scheme:?} is not known")));
            }
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// A short name of the backend kind ("local", "s3", "rest", "sftp", "gdrive").
    pub fn kind(&self) -> &'static str {
        match self {
            Location::Local(_) => "local",
            Location::S3 { .. } => "s3",
            Location::Rest { .. } => "rest",
            Location::Sftp { .. } => "sftp",
            Location::GDrive { .. } => "gdrive",
        }
    }
}

/// The location string with any password replaced by `***` (for messages and logs): the one
/// redaction every output of a location goes through (directly, or through `LocationText`).
pub fn redact(s: &str) -> String {
    let Some(i) = s.find("://") else {
        return s.to_string();
    };
    let (head, after) = s.split_at(i + 3);
    let (auth, tail) = after.split_at(after.find('/').unwrap_or(after.len()));
    match auth.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{head}{user}:***@{host}{tail}")
        }
        _ => s.to_string(),
    }
}

/// A location string as configured, which may hold a password (`rest:http://u:PASS@h/`).
/// Everything that shows it (`Display`, `Debug`, `Serialize`) shows `redact`'s form; only
/// `expose` gives the string to connect with, so a new output cannot leak it by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct LocationText(String);

impl LocationText {
    pub fn new(s: impl Into<String>) -> LocationText {
        LocationText(s.into())
    }

    /// The location with its password, for connecting (never for output).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The location as shown to people and written to files: `redact`'s form.
    pub fn shown(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Display for LocationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

impl fmt::Debug for LocationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

impl serde::Serialize for LocationText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown())
    }
}

fn parse_s3(rest: &str) -> Result<Location, String> {
    let (scheme, after) = match rest.split_once("://") {
        Some((sc, a)) if sc == "http" || sc == "https" => (sc, a),
        Some((sc, _)) => return Err(format!("the scheme {sc:?} is not http or https")),
        None => ("https", rest),
    };
    let (host, path) = after
        .split_once('/')
        .ok_or_else(|| "it names no bucket (expected s3:https://host/bucket)".to_string())?;
    if host.is_empty() {
        return Err("it names no host".into());
    }
    if host.contains('@') {
        return Err(
            "credentials do not belong in an s3: location; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the config".into(),
        );
    }
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err("it names no bucket (expected s3:https://host/bucket)".into());
    }
    Ok(Location::S3 {
        endpoint: format!("{scheme}://{host}"),
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

fn parse_rest(rest: &str) -> Result<Location, String> {
    let (scheme, after) = rest
        .split_once("://")
        .ok_or_else(|| "a rest: location needs a URL (rest:http://host:port/)".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme {scheme:?} is not http or https"));
    }
    let (auth, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, "/"),
    };
    let (userinfo, host) = match auth.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, auth),
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| "the user or password is not valid UTF-8 after %-decoding".to_string())
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((u, p)) => (Some(dec(u)?), Some(dec(p)?)),
            None => (Some(dec(u)?), None),
        },
    };
    let mut path = path.to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    Ok(Location::Rest {
        url: format!("{scheme}://{host}{path}"),
        user,
        password,
    })
}

fn parse_sftp(rest: &str) -> Result<Location, String> {
    if let Some(after) = rest.strip_prefix("//") {
        // URL form: sftp://[user@]host[:port]/path ; "//abs" is an absolute path.
        let (auth, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i + 1..]),
            None => return Err("it names no path (sftp://user@host:port//path)".into()),
        };
        let (user, hostport) = match auth.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, auth),
        };
        let (host, port) = split_host_port(hostport)?;
        if path.is_empty() {
            return Err("it names no path (sftp://user@host:port//path)".into());
        }
        return Ok(Location::Sftp {
            user,
            host,
            port,
            path: path.to_string(),
        });
    }
    // scp form: [user@]host:path
    let (auth, path) = rest
        .split_once(':')
        .ok_or_else(|| "expected sftp:user@host:/path".to_string())?;
    let (user, host) = match auth.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, auth),
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    if path.is_empty() {
        return Err("it names no path (sftp:user@host:/path)".into());
    }
    Ok(Location::Sftp {
        user: user.filter(|u| !u.is_empty()),
        host: host.to_string(),
        port: None,
        path: path.to_string(),
    })
}

fn split_host_port(hp: &str) -> Result<(String, Option<u16>), String> {
    // [v6]:port, [v6], host:port, host
    if let Some(v6) = hp.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| "an IPv6 address lacks its ]".to_string())?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| format!("{p:?} is not a port"))?),
            None => None,
        };
        return Ok((h.to_string(), port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            Some(p.parse().map_err(|_| format!("{p:?} is not a port"))?),
        )),
        None if hp.is_empty() => Err("it names no host".into()),
        None => Ok((hp.to_string(), None)),
    }
}

/// Shown in messages: restic's syntax again, with any password as `***`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                write!(f, "s3:{endpoint}/{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
            Location::Rest {
                url,
                user,
                password,
            } => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
                match (user, password) {
                    (Some(u), Some(_)) => write!(f, "rest:{scheme}://{u}:***@{rest}"),
                    (Some(u), None) => write!(f, "rest:{scheme}://{u}@{rest}"),
                    _ => write!(f, "rest:{url}"),
                }
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let u = user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                match port {
                    Some(p) => write!(f, "sftp://{u}{host}:{p}/{path}"),
                    None => write!(f, "sftp:{u}{host}:{path}"),
                }
            }
            Location::GDrive { path } => write!(f, "gdrive:{path}"),
        }
    }
}

/// Debug never shows a password.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Location {
        Location::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn local_paths() {
        assert_eq!(p("/srv/repo"), Location::Local("/srv/repo".into()));
        assert_eq!(p("rel/dir"), Location::Local("rel/dir".into()));
        assert_eq!(p("local:/x:y"), Location::Local("/x:y".into()));
        assert_eq!(p("/odd:name"), Location::Local("/odd:name".into()));
        assert!(Location::parse("swift:container").is_err());
        assert!(Location::parse("").is_err());
    }

    #[test]
    fn s3_forms() {
        assert_eq!(
            p("s3:http://127.0.0.1:3900/bucket/some/prefix/"),
            Location::S3 {
                endpoint: "http://127.0.0.1:3900".into(),
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            p("s3:s3.amazonaws.com/b"),
            Location::S3 {
                endpoint: "https://s3.amazonaws.com".into(),
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            p("s3:http://h:1/b/p").to_string(),
            "s3:http://h:1/b/p",
            "Display gives restic's syntax back"
        );
        for bad in [
            "s3:http://host",
            "s3:http://host/",
            "s3:ftp://h/b",
            "s3:http://k:s@h/b",
        ] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rest_forms_and_redaction() {
        let l = p("rest:http://alice:s%40cret@127.0.0.1:8000/repo");
        assert_eq!(
            l,
            Location::Rest {
                url: "http://127.0.0.1:8000/repo/".into(),
                user: Some("alice".into()),
                password: Some("s@cret".into())
            }
        );
        let shown = format!("{l} {l:?}");
        assert!(!shown.contains("cret"), "password leaked: {shown}");
        assert!(shown.contains("alice:***@127.0.0.1:8000/repo/"), "{shown}");
        assert_eq!(
            p("rest:https://host:8000"),
            Location::Rest {
                url: "https://host:8000/".into(),
                user: None,
                password: None
            }
        );
        let e = Location::parse("rest:ftp://u:topsecret@h/").unwrap_err();
        assert!(!e.to_string().contains("topsecret"), "{e}");
        assert!(e.to_string().contains("u:***@h/"), "{e}");
        assert!(Location::parse("rest:host:8000").is_err());
    }

    #[test]
    fn sftp_forms() {
        assert_eq!(
            p("sftp:backup@host:/srv/repo"),
            Location::Sftp {
                user: Some("backup".into()),
                host: "host".into(),
                port: None,
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            p("sftp:host:rel"),
            Location::Sftp {
                user: None,
                host: "host".into(),
                port: None,
                path: "rel".into()
            }
        );
        assert_eq!(
            p("sftp://backup@127.0.0.1:2222//srv/repo"),
            Location::Sftp {
                user: Some("backup".into()),
                host: "127.0.0.1".into(),
                port: Some(2222),
                path: "/srv/repo".into()
            }
        );
        assert_eq!(
            p("sftp://[::1]:22/rel"),
            Location::Sftp {
                user: None,
                host: "::1".into(),
                port: Some(22),
                path: "rel".into()
            }
        );
        assert!(Location::parse("sftp:host").is_err());
        assert!(Location::parse("sftp://h:port//x").is_err());
        assert!(Location::parse("sftp://h:22").is_err());
    }

    #[test]
    fn gdrive_form() {
        assert_eq!(
            p("gdrive:backups/laptop/"),
            Location::GDrive {
                path: "backups/laptop".into()
            }
        );
        assert_eq!(
            p("gdrive:backups/laptop").to_string(),
            "gdrive:backups/laptop"
        );
        assert!(Location::parse("gdrive:").is_err());
        assert!(Location::parse("gdrive:a//b").is_err());
        assert!(Location::parse("gdrive:a/../b").is_err());
    }

    #[test]
    fn every_printed_form_of_a_configured_location_hides_its_password() {
        let l = super::LocationText::new("rest:https://alice:s3cr3t@host:8000/repo");
        let json = serde_json::to_string(&l).unwrap();
        for shown in [format!("{l}"), format!("{l:?}"), l.shown(), json] {
            assert!(!shown.contains("s3cr3t"), "password leaked: {shown}");
            assert!(shown.contains("alice:***@host:8000/repo"), "{shown}");
        }
        assert_eq!(l.expose(), "rest:https://alice:s3cr3t@host:8000/repo");
        // Locations that refuse credentials still never echo them in their error.
        let e = Location::parse("s3:http://key:s3cr3t@h/b").unwrap_err();
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert_eq!(
            super::redact("sftp://u:pw@h:2222//srv"),
            "sftp://u:***@h:2222//srv"
        );
        assert_eq!(super::redact("/srv/a@b:c"), "/srv/a@b:c");
    }
}
