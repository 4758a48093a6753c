//! Timestamps as login logs write them.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (UTC), or Unix seconds / milliseconds.
pub(super) fn parse_time(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Some(t) = parse_plain_time(v) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, format) {
            return Some(t.and_utc());
        }
    }
    let n: f64 = v.parse().ok().filter(|n: &f64| n.is_finite())?;
    let millis = if n.abs() >= 1e11 { n } else { n * 1000.0 };
    // Rounded: `1.001 * 1000.0` can be a hair below 1001, and truncating would lose the
    // millisecond.
    DateTime::from_timestamp_millis(millis.round() as i64)
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (or with `T`), the usual layout of login logs, read without
/// chrono's format interpreter (it costs more than the rest of a CSV row).
fn parse_plain_time(v: &str) -> Option<DateTime<Utc>> {
    let at = |i: usize| v.as_bytes().get(i).copied();
    let layout = at(4) == Some(b'-')
        && at(7) == Some(b'-')
        && matches!(at(10), Some(b' ' | b'T'))
        && at(13) == Some(b':')
        && at(16) == Some(b':');
    if !layout {
        return None;
    }
    // `get` rather than indexing: a multi-byte character can sit where digits should.
    let number = |from: usize, to: usize| -> Option<u32> {
        let digits = v.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let nanos = match v.get(19..)? {
        "" => 0,
        fraction => {
            let digits = fraction.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            number(20, v.len())? * 10u32.pow(9 - digits.len() as u32)
        }
    };
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(number(0, 4)?).ok()?,
        number(5, 7)?,
        number(8, 10)?,
    )?;
    let time =
        NaiveTime::from_hms_nano_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?, nanos)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn times_in_every_accepted_shape() {
        let expect: DateTime<Utc> = "2020-02-03T12:43:59.396Z".parse().unwrap();
        for v in [
            "2020-02-03 12:43:59.396",
            "2020-02-03T12:43:59.396",
            "2020-02-03 12:43:59.396000",
            "2020-02-03T12:43:59.396Z",
            "2020-02-03T13:43:59.396+01:00",
            "1580733839396",
            "1580733839.396",
        ] {
            assert_eq!(parse_time(v), Some(expect), "{v}");
        }
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2020-02-30 12:43:59"), None);
        assert_eq!(parse_time("2020-02-03 12:43:59."), None);
        assert_eq!(
            parse_time("2020-02-03 12:43:59"),
            "2020-02-03T12:43:59Z".parse().ok()
        );
        assert_eq!(parse_time("nan"), None);
        // 69168725655.290 * 1000.0 is 69168725655289.99: rounded, not truncated.
        assert_eq!(
            parse_time("69168725655.290"),
            DateTime::from_timestamp_millis(69_168_725_655_290)
        );
        // Multi-byte characters where digits belong are rejected, never sliced through.
        for odd in [
            "2020-02-03 12:43:5é",
            "2020-02-03 12:43:59.é",
            "2020-02-03 1é:43:59",
        ] {
            assert_eq!(parse_time(odd), None, "{odd}");
        }
    }

    /// Property tests, and the timestamps the readers' property tests write.
    pub(in crate::replay::readers) mod props {
        use std::fmt::Write;

        use chrono::{FixedOffset, SecondsFormat};
        use proptest::prelude::*;

        use super::*;
        use crate::replay::readers::tests::props::mutated;

        /// 0001-01-01T00:00:00Z, in Unix seconds.
        const FIRST: i64 = -62_135_596_800;
        /// 9998-12-31T23:59:59Z: RFC 3339 can write this in any offset with four digits.
        const LAST: i64 = 253_370_764_799;
        /// Unix times smaller than this (in absolute value) are read as seconds, larger as
        /// milliseconds.
        const SECONDS_BELOW: i64 = 100_000_000_000;

        fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
            DateTime::from_timestamp(secs, nanos).unwrap()
        }

        /// An instant of the years 1 to 9998, to the nanosecond.
        pub(in crate::replay::readers) fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            (FIRST..=LAST, 0..1_000_000_000u32).prop_map(|(secs, nanos)| at(secs, nanos))
        }

        /// RFC 3339 in any offset, `Z` or `+00:00` for UTC, with 0, 3, 6 or 9 fraction digits.
        fn rfc3339() -> impl Strategy<Value = (DateTime<Utc>, String)> {
            (instant(), -1439..=1439i32, any::<bool>()).prop_map(|(t, minutes, use_z)| {
                let offset = FixedOffset::east_opt(minutes * 60).unwrap();
                let text = t
                    .with_timezone(&offset)
                    .to_rfc3339_opts(SecondsFormat::AutoSi, use_z);
                (t, text)
            })
        }

        /// `YYYY-MM-DD HH:MM:SS` (or with `T`) and 0 to 9 fraction digits.
        fn plain() -> impl Strategy<Value = (DateTime<Utc>, String)> {
            (FIRST..=LAST, 0..=9u32, 0..1_000_000_000u32, any::<bool>()).prop_map(
                |(secs, digits, nanos, with_t)| {
                    let scale = 10u32.pow(9 - digits);
                    let t = at(secs, nanos / scale * scale);
                    let layout = if with_t {
                        "%Y-%m-%dT%H:%M:%S"
                    } else {
                        "%Y-%m-%d %H:%M:%S"
                    };
                    let mut text = t.format(layout).to_string();
                    if digits > 0 {
                        let width = digits as usize;
                        write!(text, ".{:0width$}", nanos / scale).unwrap();
                    }
                    (t, text)
                },
            )
        }

        /// Unix seconds, seconds with milliseconds, or milliseconds.
        fn unix() -> impl Strategy<Value = (DateTime<Utc>, String)> {
            let millis = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
            prop_oneof![
                (1 - SECONDS_BELOW..SECONDS_BELOW).prop_map(|s| (at(s, 0), s.to_string())),
                (1 - SECONDS_BELOW * 1000..SECONDS_BELOW * 1000).prop_map(move |ms| {
                    let sign = if ms < 0 { "-" } else { "" };
                    let (s, fraction) = (ms.abs() / 1000, ms.abs() % 1000);
                    (millis(ms), format!("{sign}{s}.{fraction:03}"))
                }),
                (FIRST * 1000..=LAST * 1000)
                    .prop_filter("read as seconds", |ms| ms.abs() >= SECONDS_BELOW)
                    .prop_map(move |ms| (millis(ms), ms.to_string())),
            ]
        }

        /// An instant and its text in one of the shapes `parse_time` reads.
        pub(in crate::replay::readers) fn timestamp_text()
        -> impl Strategy<Value = (DateTime<Utc>, String)> {
            prop_oneof![rfc3339(), plain(), unix()]
        }

        proptest! {
            /// Whatever the text, surrounding blanks change nothing.
            #[test]
            fn any_text_parses_or_is_refused_without_panicking(
                text in prop_oneof![
                    any::<String>(),
                    "[0-9 :.TZ+-]{0,32}",
                    any::<f64>().prop_map(|n| n.to_string()),
                    any::<i64>().prop_map(|n| n.to_string()),
                    mutated(timestamp_text().prop_map(|(_, text)| text)),
                ],
            ) {
                prop_assert_eq!(parse_time(&text), parse_time(&format!(" {text}\t")));
            }

            #[test]
            fn a_time_in_every_accepted_shape_parses_back_to_the_same_instant(
                (t, text) in timestamp_text(),
                padding in "[ \t]{0,2}",
            ) {
                prop_assert_eq!(parse_time(&text), Some(t));
                prop_assert_eq!(parse_time(&format!("{padding}{text}{padding}")), Some(t));
            }

            /// Dates and times out of range (month 13, hour 24, February 30) are refused, and
            /// every valid one is read.
            #[test]
            fn a_plain_time_is_read_exactly_when_its_date_and_time_exist(
                year in 0..10_000i32,
                (month, day, hour, minute) in (0..100u32, 0..100u32, 0..100u32, 0..100u32),
                second in 0..60u32,
            ) {
                let text =
                    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}");
                let valid = NaiveDate::from_ymd_opt(year, month, day)
                    .and_then(|date| date.and_hms_opt(hour, minute, second))
                    .map(|t| t.and_utc());
                prop_assert_eq!(parse_time(&text), valid, "{}", text);
            }
        }
    }
}
