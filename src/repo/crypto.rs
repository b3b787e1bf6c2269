//! restic's authenticated encryption: AES-256-CTR with a Poly1305-AES MAC, `IV || CIPHERTEXT || MAC`.

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use subtle_eq::ct_eq;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Bytes that sealing adds: a 16-byte IV in front and a 16-byte MAC behind.
pub const OVERHEAD: usize = 32;
const IV_LEN: usize = 16;
const MAC_LEN: usize = 16;

/// Decryption failed: the data was damaged, tampered with, or sealed with another key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext too short ({0} bytes, at least 32 needed)")]
    TooShort(usize),
    #[error("MAC does not match: the data is damaged or was encrypted with another key")]
    BadMac,
}

/// The keys that encrypt and authenticate: an AES-256 key and a Poly1305-AES key (`k`, `r`).
#[derive(Clone)]
pub struct Key {
    pub(crate) encrypt: [u8; 32],
    pub(crate) mac_k: [u8; 16],
    pub(crate) mac_r: [u8; 16],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A new random master key.
    pub fn generate() -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut k.encrypt[..]);
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut k.mac_k[..]);
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut k.mac_r[..]);
        k
    }

    /// Builds a key from 64 bytes derived by a KDF: 32 encryption, 16 `k`, 16 `r`.
    pub fn from_derived(bytes: &[u8; 64]) -> Key {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        k.encrypt.copy_from_slice(&bytes[..32]);
        k.mac_k.copy_from_slice(&bytes[32..48]);
        k.mac_r.copy_from_slice(&bytes[48..64]);
        k
    }

    fn mac(&self, iv: &[u8], ciphertext: &[u8]) -> [u8; 16] {
        // Poly1305-AES: the one-time key is r || AES-128_k(nonce); the poly1305 crate clamps r.
        let aes = aes::Aes128::new(&self.mac_k.into());
        let mut s = aes::Block::clone_from_slice(iv);
        aes.encrypt_block(&mut s);
        let mut otk = [0u8; 32];
        otk[..16].copy_from_slice(&self.mac_r);
        otk[16..].copy_from_slice(&s);
        let mac = poly1305::Poly1305::new(&otk.into()).compute_unpadded(ciphertext);
        mac.into()
    }

    /// Encrypts and authenticates `plaintext` with a fresh random IV.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(plaintext, &mut out);
        out
    }

    /// Appends the sealed form of `plaintext` to `out` (no intermediate buffer); returns how
    /// many bytes were appended.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut Vec<u8>) -> usize {
        let mut iv = [0u8; IV_LEN];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut iv[..]);
        let start = out.len();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv.into());
        cipher.apply_keystream(&mut out[start + IV_LEN..]);
        let mac = self.mac(&iv, &out[start + IV_LEN..]);
        out.extend_from_slice(&mac);
        out.len() - start
    }

    /// Checks the MAC and decrypts.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < OVERHEAD {
            return Err(CryptoError::TooShort(sealed.len()));
        }
        let (iv, rest) = sealed.split_at(IV_LEN);
        let (ct, mac) = rest.split_at(rest.len() - MAC_LEN);
        if !ct_eq(&self.mac(iv, ct), mac) {
            return Err(CryptoError::BadMac);
        }
        let mut out = ct.to_vec();
        let mut iv_arr = [0u8; IV_LEN];
        iv_arr.copy_from_slice(iv);
        let mut cipher = Aes256Ctr::new(&self.encrypt.into(), &iv_arr.into());
        cipher.apply_keystream(&mut out);
        Ok(out)
    }
}

/// Constant-time comparison, so that MAC checks leak no timing.
mod subtle_eq {
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut diff = 0u8;
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        std::hint::black_box(diff) == 0
    }
}

/// The master key as stored (encrypted) in a key file: `{"mac":{"k","r"},"encrypt"}`, base64.
#[derive(Serialize, Deserialize)]
pub struct MasterKeyJson {
    pub mac: MacJson,
    pub encrypt: String,
}

#[derive(Serialize, Deserialize)]
pub struct MacJson {
    pub k: String,
    pub r: String,
}

impl MasterKeyJson {
    pub fn from_key(k: &Key) -> Self {
        MasterKeyJson {
            mac: MacJson {
                k: B64.encode(k.mac_k),
                r: B64.encode(k.mac_r),
            },
            encrypt: B64.encode(k.encrypt),
        }
    }

    /// The key, or None when a field has the wrong length or is not base64.
    pub fn to_key(&self) -> Option<Key> {
        let mut k = Key {
            encrypt: [0; 32],
            mac_k: [0; 16],
            mac_r: [0; 16],
        };
        let e = B64.decode(&self.encrypt).ok()?;
        let mk = B64.decode(&self.mac.k).ok()?;
        let mr = B64.decode(&self.mac.r).ok()?;
        if e.len() != 32 || mk.len() != 16 || mr.len() != 16 {
            return None;
        }
        k.encrypt.copy_from_slice(&e);
        k.mac_k.copy_from_slice(&mk);
        k.mac_r.copy_from_slice(&mr);
        Some(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip() {
        let k = Key::generate();
        for len in [0usize, 1, 15, 16, 17, 1000, 100_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let s = k.seal(&data);
            assert_eq!(s.len(), len + OVERHEAD);
            assert_eq!(k.open(&s).unwrap(), data);
        }
    }

    #[test]
    fn tampering_and_wrong_key_are_detected() {
        let k = Key::generate();
        let mut s = k.seal(b"hello world");
        assert_eq!(Key::generate().open(&s), Err(CryptoError::BadMac));
        s[20] ^= 1;
        assert_eq!(k.open(&s), Err(CryptoError::BadMac));
        assert_eq!(k.open(&[0u8; 10]), Err(CryptoError::TooShort(10)));
    }

    /// A Poly1305-AES test vector from Bernstein's paper (appendix B, second example), which
    /// checks that our key layout (r, then AES_k(nonce)) is the one restic uses.
    #[test]
    fn poly1305_aes_paper_vector() {
        let key = Key {
            encrypt: [0; 32],
            mac_k: hex::decode("ec074c835580741701425b623235add6")
                .unwrap()
                .try_into()
                .unwrap(),
            mac_r: hex::decode("851fc40c3467ac0be05cc20404f3f700")
                .unwrap()
                .try_into()
                .unwrap(),
        };
        let nonce = hex::decode("fb447350c4e868c52ac3275cf9d4327e").unwrap();
        let msg = hex::decode("f3f6").unwrap();
        assert_eq!(
            hex::encode(key.mac(&nonce, &msg)),
            "f4c633c3044fc145f84f335cb81953de"
        );
    }

    #[test]
    fn master_key_json_round_trip() {
        let k = Key::generate();
        let j = serde_json::to_string(&MasterKeyJson::from_key(&k)).unwrap();
        let back: MasterKeyJson = serde_json::from_str(&j).unwrap();
        let k2 = back.to_key().unwrap();
        assert_eq!(k2.open(&k.seal(b"x")).unwrap(), b"x");
    }
}
