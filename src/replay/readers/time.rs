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
    DateTime::from_timestamp_millis(millis as i64)
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
mod tests {
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
        // Multi-byte characters where digits belong are rejected, never sliced through.
        for odd in [
            "2020-02-03 12:43:5é",
            "2020-02-03 12:43:59.é",
            "2020-02-03 1é:43:59",
        ] {
            assert_eq!(parse_time(odd), None, "{odd}");
        }
    }
}
