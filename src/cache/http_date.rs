//! HTTP-dates as a cache should read them (RFC 9110 §5.6.7, RFC 9111 §4.2):
//! exactly one of the three formats (IMF-fixdate, RFC 850, asctime), with
//! names matched case-insensitively (RFC 9111 §4.2: "a cache recipient
//! SHOULD match them case-insensitively") and the redundant weekday not
//! checked against the date. Anything else (another zone, a missing comma,
//! doubled spaces, a one-digit hour) is not a date. `httpdate` is exact on
//! case and weekday, so `Expires: THU, 18 AUG 2050 ...` gave no freshness.

use std::time::{Duration, SystemTime};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const LONG_DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Parses an HTTP-date; `None` for anything that is not one.
pub(crate) fn parse(value: &str) -> Option<SystemTime> {
    parse_at(value, SystemTime::now())
}

/// [`parse`], with `now` for the two-digit years of RFC 850 dates.
pub(crate) fn parse_at(value: &str, now: SystemTime) -> Option<SystemTime> {
    if !value.is_ascii() {
        return None; // and the byte offsets below are char boundaries
    }
    let v = value.trim().to_ascii_lowercase();
    let (year, month, day, hms) = if let Some(rest) = v.strip_suffix(" gmt") {
        if let Some((name, rest)) = rest.split_once(", ") {
            if DAYS.contains(&name) {
                // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
                let [d, m, y, t] = words(rest)?;
                (four_digits(y)?, month(m)?, two_digits(d)?, t)
            } else if LONG_DAYS.contains(&name) {
                // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
                let (date, t) = rest.split_once(' ')?;
                let mut parts = date.split('-');
                let (d, m, y) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() {
                    return None;
                }
                (two_digit_year(y, now)?, month(m)?, two_digits(d)?, t)
            } else {
                return None;
            }
        } else {
            return None;
        }
    } else {
        // asctime: Sun Nov  6 08:49:37 1994
        let (name, rest) = v.split_once(' ')?;
        if !DAYS.contains(&name) || rest.len() != 20 {
            return None;
        }
        let (m, rest) = rest.split_at(3);
        let rest = rest.strip_prefix(' ')?;
        let (d, rest) = rest.split_at(2);
        let d = d.strip_prefix(' ').unwrap_or(d);
        let rest = rest.strip_prefix(' ')?;
        let (t, y) = rest.split_at(8);
        let y = y.strip_prefix(' ')?;
        let day = if d.len() == 1 {
            digits(d)?
        } else {
            two_digits(d)?
        };
        (four_digits(y)?, month(m)?, day, t)
    };
    let mut hms_parts = hms.split(':');
    let (h, m, s) = (hms_parts.next()?, hms_parts.next()?, hms_parts.next()?);
    if hms_parts.next().is_some() {
        return None;
    }
    let (h, m, s) = (two_digits(h)?, two_digits(m)?, two_digits(s)?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = u64::try_from(days * 86_400 + i64::from(h * 3600 + m * 60 + s)).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Exactly four space-separated words.
fn words(s: &str) -> Option<[&str; 4]> {
    let mut it = s.split(' ');
    let w = [it.next()?, it.next()?, it.next()?, it.next()?];
    (it.next().is_none()).then_some(w)
}

fn month(m: &str) -> Option<u32> {
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn two_digits(s: &str) -> Option<u32> {
    (s.len() == 2).then(|| digits(s)).flatten()
}

fn four_digits(s: &str) -> Option<i64> {
    (s.len() == 4).then(|| digits(s)).flatten().map(i64::from)
}

/// A two-digit year, in the most recent century that does not put it more
/// than 50 years after `now` (RFC 9110 §5.6.7).
fn two_digit_year(s: &str, now: SystemTime) -> Option<i64> {
    let yy = i64::from(two_digits(s)?);
    let this_year = 1970
        + now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64 / 31_556_952);
    let year = this_year - this_year.rem_euclid(100) + yy;
    Some(if year > this_year + 50 {
        year - 100
    } else {
        year
    })
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
        assert_eq!(secs("Sun Nov  6 08:49:37 1994"), want);
        for v in [
            "Thu, 18 Aug 2050 02:01:18 GMT",
            "Fri, 01 Jan 2021 00:00:00 GMT",
            "Tue, 29 Feb 2000 12:00:00 GMT",
            "Tue, 19 Jan 2038 14:14:08 GMT",
        ] {
            assert_eq!(
                parse(v),
                httpdate::parse_http_date(v).ok(),
                "agrees with httpdate on {v}"
            );
        }
        assert_eq!(
            secs("Thursday, 18-Aug-50 02:01:18 GMT"),
            secs("Thu, 18 Aug 2050 02:01:18 GMT"),
            "an RFC 850 year is at most 50 years ahead"
        );
        assert_eq!(
            secs("Sunday, 06-Nov-94 08:49:37 GMT"),
            want,
            "and otherwise in the past"
        );
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
    fn near_misses_are_not_dates() {
        for v in [
            "",
            "0",
            "-1",
            "now",
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 32 Aug 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 25:01:18 GMT",
            "Thu, 18 Foo 2050 02:01:18 GMT",
            "Thursday, 18 Aug 2050 02:01:18 GMT",
            "Thu Aug 8 02:01:18 2050",
            "Thu Aug \u{e9}8 02:01:18 2050",
            "Thu \u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert_eq!(parse(v), None, "{v:?}");
        }
    }
}
