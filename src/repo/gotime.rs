//! Times in JSON as restic (Go's RFC 3339 with nanoseconds) writes them: trailing zeros of the
//! fraction dropped, `Z` for UTC.

use chrono::{DateTime, FixedOffset};
use serde::Serializer;

/// `t` as Go's `time.RFC3339Nano` formats it, e.g. `2026-12-03T18:27:14.85705316Z`.
pub fn format(t: &DateTime<FixedOffset>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let mut out = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    if t.offset().local_minus_utc() == 0 {
        out.push('Z');
    } else {
        out.push_str(&t.format("%:z").to_string());
    }
    out
}

/// For `#[serde(serialize_with = "gotime::serialize")]`.
pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(t))
}

/// For an optional time field.
pub fn serialize_opt<S: Serializer>(
    t: &Option<DateTime<FixedOffset>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> String {
        format(&DateTime::parse_from_rfc3339(text).unwrap())
    }

    #[test]
    fn trailing_zeros_of_the_fraction_are_dropped_as_go_does() {
        assert_eq!(
            at("2026-12-03T18:27:14.857053160Z"),
            "2026-12-03T18:27:14.85705316Z"
        );
        assert_eq!(
            at("2026-12-03T18:27:14.857000000Z"),
            "2026-12-03T18:27:14.857Z"
        );
        assert_eq!(at("2026-12-03T18:27:14.000Z"), "2026-12-03T18:27:14Z");
        assert_eq!(
            at("2026-12-03T18:27:14.5+01:00"),
            "2026-12-03T18:27:14.5+01:00"
        );
        assert_eq!(at("2026-12-03T18:27:14-05:30"), "2026-12-03T18:27:14-05:30");
    }
}
