//! How backupctl shows a time to people: in this machine's zone with its UTC offset, so that no time it prints lacks its zone (JSON keeps RFC 3339).

use chrono::{DateTime, Local, TimeZone};

/// `t` in the local zone, to the second, with the zone's offset: `2026-12-01 05:02:06 +01:00`.
pub(crate) fn time<Tz: TimeZone>(t: &DateTime<Tz>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// The width of [`time`]'s text, for columns.
pub(crate) const TIME_WIDTH: usize = 26;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    #[test]
    fn a_time_carries_its_offset_and_reads_back_as_the_same_instant() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 4, 2, 6).unwrap();
        let shown = time(&t);
        assert_eq!(shown.len(), TIME_WIDTH, "{shown}");
        let back = DateTime::parse_from_str(&shown, "%Y-%m-%d %H:%M:%S %:z").unwrap();
        assert_eq!(back, t);
        // Whatever zone the time came in.
        let east = t.with_timezone(&FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
        assert_eq!(time(&east), shown);
    }
}
