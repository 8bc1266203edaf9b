//! HTTP-dates as a cache should read them (RFC 9110 §5.6.7, RFC 9111 §4.2):
//! the three formats (IMF-fixdate, RFC 850, asctime), names matched
//! case-insensitively ("a cache recipient SHOULD match them
//! case-insensitively"), and the redundant weekday not checked against the
//! date. `httpdate` is exact on both counts, so an origin sending
//! `Expires: THU, 18 AUG 2050 ...` got no freshness from it.

use std::time::{Duration, SystemTime};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Parses an HTTP-date; `None` for anything that is not one.
pub fn parse(value: &str) -> Option<SystemTime> {
    let lower = value.trim().to_ascii_lowercase();
    let tokens: Vec<&str> = lower
        .split([' ', ',', '-'])
        .filter(|t| !t.is_empty())
        .collect();
    let month_name = tokens.iter().find(|t| MONTHS.contains(t))?;
    let month = MONTHS.iter().position(|m| m == month_name)? as u32 + 1;
    let time = tokens.iter().find(|t| t.contains(':'))?;
    let numbers: Vec<&str> = tokens
        .iter()
        .copied()
        .filter(|t| t.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    // IMF-fixdate and RFC 850 read day month year; asctime month day time
    // year: either way the day is the first number and the year the second.
    let (day, year) = (*numbers.first()?, *numbers.get(1)?);
    // Only a known zone (GMT/UTC) or none (asctime) may follow.
    if tokens
        .iter()
        .any(|t| t.bytes().all(|b| b.is_ascii_alphabetic()) && t.len() <= 3 && !is_name(t))
    {
        return None;
    }
    let day: u32 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: i64 = match year.len() {
        4 => year.parse().ok()?,
        // RFC 850 two-digit year: the most recent century that is not more
        // than 50 years in the future (RFC 9110 §5.6.7); a fixed 1950-2049
        // window is that rule for today's dates.
        2 => {
            let y: i64 = year.parse().ok()?;
            if y < 50 {
                2000 + y
            } else {
                1900 + y
            }
        }
        _ => return None,
    };
    let mut hms = time.split(':').map(|p| p.parse::<u32>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + s);
    let secs = u64::try_from(secs).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Weekday and zone names that may appear besides the month.
fn is_name(t: &str) -> bool {
    matches!(
        t,
        "gmt" | "utc" | "mon" | "tue" | "wed" | "thu" | "fri" | "sat" | "sun"
    ) || MONTHS.contains(&t)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(v: &str) -> Option<u64> {
        parse(v).map(|t| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn the_three_formats_agree() {
        let want = Some(784_111_777);
        assert_eq!(secs("Sun, 06 Nov 1994 08:49:37 GMT"), want);
        assert_eq!(secs("Sunday, 06-Nov-94 08:49:37 GMT"), want);
        assert_eq!(secs("Sun Nov  6 08:49:37 1994"), want);
        for v in [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "Fri, 01 Jan 2021 00:00:00 GMT",
            "Tue, 29 Feb 2000 12:00:00 GMT",
        ] {
            assert_eq!(
                parse(v),
                httpdate::parse_http_date(v).ok(),
                "agrees with httpdate on {v}"
            );
        }
    }

    #[test]
    fn case_and_weekday_are_not_held_against_a_date() {
        let want = secs("Thu, 18 Aug 2050 02:01:18 GMT");
        assert!(want.is_some());
        assert_eq!(secs("THU, 18 Aug 2050 02:01:18 GMT"), want);
        assert_eq!(secs("Thu, 18 AUG 2050 02:01:18 GMT"), want);
        assert_eq!(secs("Thu, 18 Aug 2050 02:01:18 gMT"), want);
        assert!(
            secs("Thu Aug  8 02:01:18 2050").is_some(),
            "8 Aug 2050 is a Monday"
        );
    }

    #[test]
    fn garbage_is_not_a_date() {
        for v in [
            "",
            "0",
            "-1",
            "now",
            "Thu, 32 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 25:01:18 GMT",
            "Thu, 18 Aug 2050 02:01 GMT",
            "Thu, 18 Aug 2050 02:01:18 PST",
            "Thu, 18 Foo 2050 02:01:18 GMT",
            "18 Aug 12345 02:01:18 GMT",
        ] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }
}
