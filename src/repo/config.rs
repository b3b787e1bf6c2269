//! The repository `config` file: format version, repository id and chunker polynomial.

use serde::{Deserialize, Serialize};

/// The repository format version we write. restic 0.14 and later read it (compression).
pub const REPO_VERSION: u32 = 2;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    pub chunker_polynomial: String,
}

impl RepoConfig {
    /// A new config with a random id and a random irreducible polynomial of degree 53, as restic
    /// makes; both restic and backupd cut files with it (`engine::chunker`), so they share blobs.
    pub fn new() -> RepoConfig {
        let mut id = [0u8; 32];
        rand::Rng::fill(&mut rand::rngs::OsRng, &mut id[..]);
        RepoConfig {
            version: REPO_VERSION,
            id: hex::encode(id),
            chunker_polynomial: format!("{:x}", random_irreducible_polynomial()),
        }
    }
}

impl Default for RepoConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// Degree of a polynomial over GF(2) stored as bits; -1 for zero.
fn deg(p: u128) -> i32 {
    127 - p.leading_zeros() as i32
}

/// `a mod m` over GF(2).
fn pmod(mut a: u128, m: u128) -> u128 {
    let dm = deg(m);
    while deg(a) >= dm {
        a ^= m << (deg(a) - dm);
    }
    a
}

/// `a * b mod m` over GF(2), for `a, b` of degree below 64.
fn mulmod(a: u128, b: u128, m: u128) -> u128 {
    let mut r = 0u128;
    let (mut a, mut b) = (pmod(a, m), pmod(b, m));
    while b != 0 {
        if b & 1 == 1 {
            r ^= a;
        }
        b >>= 1;
        a = pmod(a << 1, m);
    }
    r
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        let t = pmod(a, b);
        a = b;
        b = t;
    }
    a
}

/// Ben-Or's test: `f` of degree d is irreducible iff gcd(f, x^(2^i) - x mod f) = 1 for i = 1..=d/2.
pub fn is_irreducible(f: u64) -> bool {
    let f = f as u128;
    let d = deg(f);
    if d < 1 {
        return false;
    }
    let mut xp = 2u128; // x
    for _ in 1..=d / 2 {
        xp = mulmod(xp, xp, f); // x^(2^i)
        if gcd(f, xp ^ 2) != 1 {
            return false;
        }
    }
    true
}

fn random_irreducible_polynomial() -> u64 {
    loop {
        let mut p: u64 = rand::random();
        p &= (1u64 << 54) - 1; // degree at most 53
        p |= (1u64 << 53) | 1; // degree exactly 53, constant term set
        if is_irreducible(p) {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_polynomials() {
        // restic's own test polynomial is irreducible; x^2+1 = (x+1)^2 and x^53+x^52 are not.
        assert!(is_irreducible(0x3DA3358B4DC173));
        assert!(is_irreducible(0b111)); // x^2+x+1
        assert!(!is_irreducible(0b101));
        assert!(!is_irreducible((1 << 53) | (1 << 52)));
    }

    #[test]
    fn new_config_is_valid() {
        let c = RepoConfig::new();
        assert_eq!(c.version, 2);
        assert_eq!(c.id.len(), 64);
        let p = u64::from_str_radix(&c.chunker_polynomial, 16).unwrap();
        assert_eq!(63 - p.leading_zeros(), 53);
        assert!(is_irreducible(p));
    }
}
