//! Sizes as people write them (`"500G"`, `"1.5TiB"`): the one parser of byte counts, and the one way we print them (`human_bytes`).

/// Why a size such as `"500G"` was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number.
    #[error("invalid size {text:?}: expected a number of bytes with an optional unit, e.g. \"500G\", \"1.5TiB\" or \"1048576\"")]
    Malformed {
        /// The text as written.
        text: String,
    },
    /// A unit that is not one of ours.
    #[error("invalid size {text:?}: unknown unit {unit:?}; use B, K/KiB, M/MiB, G/GiB or T/TiB (powers of 1024), e.g. \"500G\"")]
    UnknownUnit {
        /// The text as written.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More than `u64::MAX` bytes.
    #[error("invalid size {text:?}: too large (at most 16 EiB)")]
    TooLarge {
        /// The text as written.
        text: String,
    },
}

/// Human-readable bytes (KiB, MiB, ...).
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", U[i])
    }
}

/// Parses a size: a number (decimals allowed: `"1.5G"`) with an optional unit, `B`, `K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB`, `T`/`TiB`, all powers of 1024, case-insensitive, a space allowed
/// between; a plain number is bytes. `KB`, `GB` and the like are refused rather than guessed
/// (1000 or 1024?). Fractions of a byte are dropped.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim_start());
    let malformed = || SizeError::Malformed {
        text: text.to_string(),
    };
    let too_large = || SizeError::TooLarge {
        text: text.to_string(),
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(malformed());
    }
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(SizeError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut total = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !frac.is_empty() {
        // At most 18 digits matter for a 2^40 multiplier and u128 arithmetic.
        let digits = &frac[..frac.len().min(18)];
        let f: u128 = digits.parse().map_err(|_| malformed())?;
        total += f * multiplier / 10u128.pow(digits.len() as u32);
    }
    u64::try_from(total).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("2 MiB"), Ok(2 << 20));
        assert_eq!(parse_size("500G"), Ok(500 << 30));
        assert_eq!(parse_size("500g"), Ok(500 << 30));
        assert_eq!(parse_size(" 3gib "), Ok(3 << 30));
        assert_eq!(parse_size("1.5T"), Ok(3 << 39));
        assert_eq!(parse_size("1.5TiB"), Ok(3 << 39));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("1.0001B"), Ok(1));
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        assert!(matches!(
            parse_size("16777216T"),
            Err(SizeError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_size("99999999999999999999999999999999999999999"),
            Err(SizeError::TooLarge { .. })
        ));
        for bad in ["", "G", ".", "1..2G", "-1", "1.2.3"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        for unit in ["1GB", "1KB", "1P", "1 bytes", "1G B"] {
            let e = parse_size(unit).unwrap_err();
            assert!(
                matches!(e, SizeError::UnknownUnit { .. }),
                "{unit:?}: {e:?}"
            );
            assert!(e.to_string().contains("powers of 1024"));
        }
    }
}
