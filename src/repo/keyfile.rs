//! Key files (`keys/<id>`): a password, through scrypt, unlocks the repository's master key.

use super::crypto::{Key, MasterKeyJson};
use crate::error::Error;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

/// scrypt cost for new keys. restic calibrates its own; these are the values it typically picks
/// and they take about 0.1 s here.
pub const DEFAULT_N: u32 = 32768;
pub const DEFAULT_R: u32 = 8;
pub const DEFAULT_P: u32 = 1;

/// The JSON document of a key file (not encrypted; `data` holds the sealed master key).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct KeyFile {
    #[serde(serialize_with = "super::gotime::serialize")]
    pub created: DateTime<FixedOffset>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u32,
    pub r: u32,
    pub p: u32,
    pub salt: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("key file uses KDF {0:?}; only scrypt is supported")]
    Kdf(String),
    #[error("key file has invalid scrypt parameters N={n} r={r} p={p} (N a power of two, 128·N·r at most 1 GiB, p at most 16)")]
    Params { n: u32, r: u32, p: u32 },
    #[error("key file field {0} is not valid base64")]
    Base64(&'static str),
    #[error("its MAC does not match: the password is wrong or the key file is damaged")]
    WrongPassword,
    #[error("the master key in this key file is malformed")]
    BadMasterKey,
}

/// The most memory (128·N·r bytes) a key file may ask scrypt for: restic calibrates to at most
/// 60 MiB, and a hostile key file must not make us allocate terabytes and abort.
pub const MAX_SCRYPT_MEMORY: u64 = 1 << 30;
/// The most parallelism (p, which multiplies the work) a key file may ask for.
pub const MAX_SCRYPT_P: u32 = 16;

/// Whether scrypt parameters are sane and within the memory and work limits (pure).
fn params_ok(n: u32, r: u32, p: u32) -> bool {
    n >= 2
        && n.is_power_of_two()
        && (1..=MAX_SCRYPT_P).contains(&p)
        && r >= 1
        && 128 * n as u64 * r as u64 <= MAX_SCRYPT_MEMORY
}

fn derive(password: &[u8], salt: &[u8], n: u32, r: u32, p: u32) -> Result<Key, KeyFileError> {
    if !params_ok(n, r, p) {
        return Err(KeyFileError::Params { n, r, p });
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 64)
        .map_err(|_| KeyFileError::Params { n, r, p })?;
    let mut out = [0u8; 64];
    scrypt::scrypt(password, salt, &params, &mut out).map_err(|_| KeyFileError::Params {
        n,
        r,
        p,
    })?;
    Ok(Key::from_derived(&out))
}

/// The error when no key file opened: a wrong password (some MAC did not match) or, when every
/// key file tried is damaged whatever the password, the damage. `failed`: (`keys/NAME`, why).
pub fn none_opened(location: String, keys: usize, failed: Vec<(String, KeyFileError)>) -> Error {
    let (mac, other): (Vec<_>, Vec<_>) = failed
        .into_iter()
        .partition(|(_, e)| matches!(e, KeyFileError::WrongPassword));
    let damaged: Vec<String> = other.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    if mac.is_empty() && !damaged.is_empty() {
        return Error::KeyFilesDamaged { location, damaged };
    }
    Error::WrongPassword {
        location,
        keys,
        mac_failed: mac.into_iter().map(|(n, _)| n).collect(),
        damaged,
    }
}

impl KeyFile {
    /// A new key file that lets `password` open `master`.
    pub fn create(
        master: &Key,
        password: &[u8],
        n: u32,
        r: u32,
        p: u32,
    ) -> Result<KeyFile, KeyFileError> {
        let mut salt = [0u8; 64];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut salt[..]);
        let user_key = derive(password, &salt, n, r, p)?;
        let plain = serde_json::to_vec(&MasterKeyJson::from_key(master))?;
        Ok(KeyFile {
            created: Local::now().fixed_offset(),
            username: crate::sysinfo::username(),
            hostname: crate::sysinfo::hostname(),
            kdf: "scrypt".into(),
            n,
            r,
            p,
            salt: B64.encode(salt),
            data: B64.encode(user_key.seal(&plain)),
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<KeyFile, KeyFileError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The master key, if `password` is the right one.
    pub fn open(&self, password: &[u8]) -> Result<Key, KeyFileError> {
        if self.kdf != "scrypt" {
            return Err(KeyFileError::Kdf(self.kdf.clone()));
        }
        let salt = B64
            .decode(&self.salt)
            .map_err(|_| KeyFileError::Base64("salt"))?;
        let data = B64
            .decode(&self.data)
            .map_err(|_| KeyFileError::Base64("data"))?;
        let user_key = derive(password, &salt, self.n, self.r, self.p)?;
        let plain = user_key
            .open(&data)
            .map_err(|_| KeyFileError::WrongPassword)?;
        let mk: MasterKeyJson =
            serde_json::from_slice(&plain).map_err(|_| KeyFileError::BadMasterKey)?;
        mk.to_key().ok_or(KeyFileError::BadMasterKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrypt_parameters_are_bounded() {
        assert!(params_ok(DEFAULT_N, DEFAULT_R, DEFAULT_P));
        assert!(params_ok(1 << 20, 8, 1)); // 1 GiB
        assert!(!params_ok(1 << 21, 8, 1));
        assert!(!params_ok(1 << 31, 8, 1));
        assert!(!params_ok(3, 8, 1));
        assert!(!params_ok(1024, 8, 0));
        assert!(!params_ok(1024, 8, 17));
        assert!(!params_ok(1024, 0, 1));
    }

    #[test]
    fn no_key_opened_is_damage_only_when_no_mac_failed() {
        let e = none_opened(
            "r".into(),
            1,
            vec![("keys/ab".into(), KeyFileError::Base64("salt"))],
        );
        assert!(matches!(e, Error::KeyFilesDamaged { .. }), "{e}");
        assert!(
            e.to_string().contains("keys/ab: key file field salt"),
            "{e}"
        );
        let e = none_opened(
            "r".into(),
            2,
            vec![
                ("keys/ab".into(), KeyFileError::WrongPassword),
                ("keys/cd".into(), KeyFileError::Base64("data")),
            ],
        );
        assert!(matches!(e, Error::WrongPassword { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("MAC of keys/ab does not match") && m.contains("also damaged: keys/cd"),
            "{m}"
        );
    }

    #[test]
    fn create_open_and_wrong_password() {
        let master = Key::generate();
        let kf = KeyFile::create(&master, b"secret", 1024, 8, 1).unwrap();
        let bytes = serde_json::to_vec(&kf).unwrap();
        let back = KeyFile::parse(&bytes).unwrap();
        let k = back.open(b"secret").unwrap();
        assert_eq!(k.open(&master.seal(b"data")).unwrap(), b"data");
        assert!(matches!(
            back.open(b"wrong"),
            Err(KeyFileError::WrongPassword)
        ));
    }
}
