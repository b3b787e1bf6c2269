//! Human durations in configuration and on the command line: `30s`, `5m`, `1h30m`, `2d`, at most [`MAX`].

use std::time::Duration;

/// The longest duration backupd takes anywhere: 100 years (36500 days). Anything longer is a
/// typo, and every clock and timer computation stays far from overflowing below it.
pub const MAX: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses durations like `30s`, `5m`, `2h`, `1d`, `1h30m`, or plain seconds; an empty text
/// and anything longer than [`MAX`] are errors.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("an empty duration: write e.g. 30s, 5m, 2h, 1d (0s for none)".into());
    }
    let too_long = || format!("invalid duration {s:?}: at most 100 years (36500d)");
    let secs = seconds_of(s)?.ok_or_else(too_long)?;
    let d = Duration::from_secs(secs);
    if d > MAX {
        return Err(too_long());
    }
    Ok(d)
}

/// A bare number of seconds (the notification keys take one), at most [`MAX`].
pub fn from_secs(n: u64) -> std::result::Result<Duration, String> {
    let d = Duration::from_secs(n);
    if d > MAX {
        return Err(format!(
            "invalid duration {n} s: at most 100 years (36500d)"
        ));
    }
    Ok(d)
}

/// The seconds `s` says; None when they overflow.
fn seconds_of(s: &str) -> std::result::Result<Option<u64>, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(s.parse::<u64>().ok());
    }
    let mut total = Some(0u64);
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        if num.is_empty() {
            return Err(format!(
                "invalid duration {s:?}: expected e.g. 30s, 5m, 2h, 1d"
            ));
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {c:?} (use s, m, h, d, w)"
                ))
            }
        };
        let n = num.parse::<u64>().ok();
        num.clear();
        total = total
            .zip(n)
            .and_then(|(t, n)| n.checked_mul(unit).and_then(|x| t.checked_add(x)));
    }
    if !num.is_empty() {
        return Err(format!(
            "invalid duration {s:?}: a number needs a unit (s, m, h, d, w)"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_overflow_empty_and_too_long_are_errors() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("36500d"), Ok(MAX));
        for bad in [
            "",
            " ",
            "36501d",
            "18446744073709551615",
            "9999999999999999d",
            "99999999999999999999s",
            "5x",
            "h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
