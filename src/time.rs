//! Dates and instants as people type them (command-line options, forms, CSV files) and as the
//! server writes them: one reader and one writer, so every edge accepts the same spellings.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SubsecRound};

/// A `YYYY-MM-DD` date, strictly: four, two and two digits. Read by hand because chrono's
/// `parse_from_str` interprets its format string on every call, and imports call this for
/// every date of files of millions of rows.
pub fn parse_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |digits: &[u8]| {
        digits.iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let year = i32::try_from(number(&b[0..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, number(&b[5..7])?, number(&b[8..10])?)
}

/// A `YYYY-MM-DD` date typed by a person, or the message that says what is expected.
pub fn parse_day(raw: &str) -> Result<NaiveDate, String> {
    parse_date(raw).ok_or_else(|| format!("`{raw}` is not a date of the form YYYY-MM-DD"))
}

/// Parses an instant as `YYYY-MM-DD` (midnight UTC) or RFC 3339 (converted to UTC), to the
/// microsecond, as both databases store it.
pub fn parse_instant(raw: &str) -> Result<NaiveDateTime, String> {
    let raw = raw.trim();
    let parsed = if raw.len() == 10 {
        parse_date(raw).and_then(|d| d.and_hms_opt(0, 0, 0))
    } else {
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.naive_utc())
    };
    parsed
        .map(truncate_to_micros)
        .ok_or_else(|| format!("`{raw}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

/// An instant in RFC 3339, UTC, with as many fractional digits as it has.
pub fn format_instant(t: NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Both databases keep microseconds; truncating first makes a stored value compare equal to
/// the one the server computed.
pub fn truncate_to_micros(t: NaiveDateTime) -> NaiveDateTime {
    t.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveDateTime {
        parse_instant(s).unwrap()
    }

    #[test]
    fn dates_are_four_two_and_two_digits_of_a_real_day() {
        assert_eq!(
            parse_date("2024-02-29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-05 ",
            "2024/01/05",
            "+024-01-05",
            "2024-01-0x",
            " 2024-01-5",
            "20240105",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_instant(" 2024-03-01 ").unwrap(),
            NaiveDate::from_ymd_opt(2024, 3, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        );
    }

    #[test]
    fn instants_parse_as_dates_or_rfc3339_in_utc() {
        assert_eq!(t("2025-01-02T01:30:00+02:00"), t("2025-01-01T23:30:00Z"));
        assert_eq!(t("2025-01-02"), t("2025-01-02T00:00:00Z"));
        assert!(
            parse_instant("02/01/2025")
                .unwrap_err()
                .contains("02/01/2025")
        );
        assert!(parse_instant("2025-02-30").is_err());
    }

    #[test]
    fn instants_are_written_back_as_they_are_read() {
        let at = t("2025-01-01T23:30:00.123456Z");
        assert_eq!(t(&format_instant(at)), at);
    }
}
