//! `Cache-Control` (and targeted fields such as `CDN-Cache-Control`) parsed
//! the way RFC 9111 §4.2.1 and §5.2 ask of a cache: comma-separated
//! directives, case-insensitive names, optional `token` or `"quoted"` values,
//! the first occurrence of a repeated directive wins, and a delta-seconds
//! value that does not parse makes the directive *invalid* (the response is
//! then treated as stale) rather than absent.

use super::sf_dictionary::{self, Value};

/// A delta-seconds directive value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seconds {
    Valid(u32),
    /// Present but not a non-negative integer.
    Invalid,
}

/// The directives a shared cache acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<Seconds>,
    pub s_maxage: Option<Seconds>,
    pub no_store: bool,
    pub no_cache: bool,
    /// Field names of a qualified `no-cache="a, b"`.
    pub no_cache_fields: Vec<String>,
    pub private: bool,
    /// Field names of a qualified `private="a, b"`.
    pub private_fields: Vec<String>,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub stale_while_revalidate: Option<Seconds>,
    pub stale_if_error: Option<Seconds>,
    pub no_transform: bool,
    // Request directives.
    pub max_stale: Option<Option<Seconds>>,
    pub min_fresh: Option<Seconds>,
    pub only_if_cached: bool,
}

/// RFC 9111 §1.2.2: a value too large to represent is 2^31.
const DELTA_MAX: u64 = 2_147_483_648;

fn seconds(value: Option<&str>) -> Seconds {
    match value {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            let n = v.trim_start_matches('0').parse::<u64>().unwrap_or(
                if v.trim_start_matches('0').is_empty() {
                    0
                } else {
                    DELTA_MAX
                },
            );
            Seconds::Valid(n.min(DELTA_MAX) as u32)
        }
        _ => Seconds::Invalid,
    }
}

fn field_names(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|f| f.trim().to_ascii_lowercase())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Splits one field value into `(name, value)` pairs, honouring quoted strings.
fn split_directives(line: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // name
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b',' {
            i += 1;
        }
        let name = line[start..i].trim().to_ascii_lowercase();
        let mut value = None;
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' && i + 1 < bytes.len() {
                        i += 1;
                    }
                    v.push(bytes[i] as char);
                    i += 1;
                }
                i += 1; // closing quote
                value = Some(v);
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
            } else {
                let vs = i;
                while i < bytes.len() && bytes[i] != b',' {
                    i += 1;
                }
                value = Some(line[vs..i].trim().to_string());
            }
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

impl Directives {
    /// Parses every line of the field; `None` if there is no line at all.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<Directives> {
        let mut d = Directives::default();
        // The first occurrence of a directive wins; only the ones obeyed
        // are remembered, one bit each.
        let mut seen = 0u32;
        let mut first = |bit: u32| {
            let new = seen & (1 << bit) == 0;
            seen |= 1 << bit;
            new
        };
        let mut any = false;
        for line in lines {
            any = true;
            let line = String::from_utf8_lossy(line);
            for (name, value) in split_directives(&line) {
                let v = value.as_deref();
                match name.as_str() {
                    "max-age" if first(0) => d.max_age = Some(seconds(v)),
                    "s-maxage" if first(1) => d.s_maxage = Some(seconds(v)),
                    "no-store" if first(2) => d.no_store = true,
                    "no-cache" if first(3) => {
                        d.no_cache = true;
                        d.no_cache_fields = field_names(v);
                    }
                    "private" if first(4) => {
                        d.private = true;
                        d.private_fields = field_names(v);
                    }
                    "public" if first(5) => d.public = true,
                    "must-revalidate" if first(6) => d.must_revalidate = true,
                    "proxy-revalidate" if first(7) => d.proxy_revalidate = true,
                    "must-understand" if first(8) => d.must_understand = true,
                    "stale-while-revalidate" if first(9) => {
                        d.stale_while_revalidate = Some(seconds(v))
                    }
                    "stale-if-error" if first(10) => d.stale_if_error = Some(seconds(v)),
                    "no-transform" if first(11) => d.no_transform = true,
                    "max-stale" if first(12) => d.max_stale = Some(v.map(|v| seconds(Some(v)))),
                    "min-fresh" if first(13) => d.min_fresh = Some(seconds(v)),
                    "only-if-cached" if first(14) => d.only_if_cached = true,
                    _ => {}
                }
            }
        }
        any.then_some(d)
    }
}

impl Directives {
    /// A targeted field (RFC 9213 §2.1) such as `CDN-Cache-Control`: an
    /// RFC 8941 dictionary, ignored whole (`None`) when it does not parse.
    /// A directive whose value has the wrong type (`max-age="60"`, a
    /// negative age) is not consumed.
    pub fn parse_targeted<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<Directives> {
        let lines: Vec<String> = lines
            .into_iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        if lines.is_empty() {
            return None;
        }
        let mut d = Directives::default();
        for (key, value) in sf_dictionary::parse(&lines.join(", "))? {
            let secs = match value {
                Value::Integer(n) if n >= 0 => {
                    Some(Seconds::Valid((n as u64).min(DELTA_MAX) as u32))
                }
                _ => None,
            };
            let flag = value == Value::Boolean(true);
            let fields = match &value {
                Value::String(s) => Some(field_names(Some(s))),
                Value::Boolean(true) => Some(Vec::new()),
                _ => None,
            };
            match key.as_str() {
                "max-age" => d.max_age = secs,
                "s-maxage" => d.s_maxage = secs,
                "stale-while-revalidate" => d.stale_while_revalidate = secs,
                "stale-if-error" => d.stale_if_error = secs,
                "no-store" => d.no_store = flag,
                "public" => d.public = flag,
                "must-revalidate" => d.must_revalidate = flag,
                "proxy-revalidate" => d.proxy_revalidate = flag,
                "must-understand" => d.must_understand = flag,
                "no-transform" => d.no_transform = flag,
                "no-cache" => {
                    if let Some(f) = fields {
                        d.no_cache = true;
                        d.no_cache_fields = f;
                    }
                }
                "private" => {
                    if let Some(f) = fields {
                        d.private = true;
                        d.private_fields = f;
                    }
                }
                _ => {}
            }
        }
        Some(d)
    }

    /// `Surrogate-Control` (W3C Edge Architecture 1.0): `max-age=N[+M]` and
    /// `no-store`, each for every surrogate or targeted at one
    /// (`max-age=60;parapet`). Directives targeted at `device` win over
    /// untargeted ones; those targeted elsewhere are ignored. `None` when
    /// no directive applies here, so `Cache-Control` rules.
    pub fn parse_surrogate<'a>(
        lines: impl IntoIterator<Item = &'a [u8]>,
        device: &str,
    ) -> Option<Directives> {
        let mut general: Vec<(String, Option<String>)> = Vec::new();
        let mut mine: Vec<(String, Option<String>)> = Vec::new();
        for line in lines {
            let line = String::from_utf8_lossy(line);
            for part in line.split(',') {
                let (directive, target) = match part.split_once(';') {
                    Some((d, t)) => (d.trim(), Some(t.trim())),
                    None => (part.trim(), None),
                };
                if directive.is_empty() {
                    continue;
                }
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (directive, None),
                };
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    continue;
                }
                let entry = (name.to_ascii_lowercase(), value);
                match target {
                    None => general.push(entry),
                    Some(t) if t.eq_ignore_ascii_case(device) => mine.push(entry),
                    Some(_) => {}
                }
            }
        }
        if general.is_empty() && mine.is_empty() {
            return None;
        }
        let mut d = Directives::default();
        for (name, value) in general.into_iter().chain(mine) {
            match name.as_str() {
                "max-age" => {
                    let n = value.as_deref().map(|v| v.split('+').next().unwrap_or(v));
                    if let Some(Seconds::Valid(n)) = n.map(|n| seconds(Some(n))) {
                        d.max_age = Some(Seconds::Valid(n));
                    }
                }
                "no-store" => d.no_store = true,
                _ => {}
            }
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Directives {
        Directives::parse([s.as_bytes()]).unwrap()
    }

    #[test]
    fn parses_values_quotes_and_case() {
        let d = p("Public, MAX-AGE=60, s-maxage=\"120\", private=\"Set-Cookie, X-A\", stale-while-revalidate=30");
        assert!(d.public);
        assert_eq!(d.max_age, Some(Seconds::Valid(60)));
        assert_eq!(d.s_maxage, Some(Seconds::Valid(120)));
        assert!(d.private);
        assert_eq!(d.private_fields, vec!["set-cookie", "x-a"]);
        assert_eq!(d.stale_while_revalidate, Some(Seconds::Valid(30)));
    }

    #[test]
    fn first_occurrence_wins_and_bad_numbers_are_invalid() {
        let d = Directives::parse([&b"max-age=10"[..], b"max-age=99999"]).unwrap();
        assert_eq!(d.max_age, Some(Seconds::Valid(10)));
        assert_eq!(p("max-age=abc").max_age, Some(Seconds::Invalid));
        assert_eq!(p("max-age=-1").max_age, Some(Seconds::Invalid));
        assert_eq!(p("max-age=1.5").max_age, Some(Seconds::Invalid));
        assert_eq!(p("max-age").max_age, Some(Seconds::Invalid));
        assert_eq!(
            p("max-age=99999999999999999999").max_age,
            Some(Seconds::Valid(2_147_483_648))
        );
        assert_eq!(p("max-age=000").max_age, Some(Seconds::Valid(0)));
        assert_eq!(Directives::parse(std::iter::empty::<&[u8]>()), None);
        assert_eq!(p(",,, ,"), Directives::default());
    }

    fn targeted(s: &str) -> Option<Directives> {
        Directives::parse_targeted([s.as_bytes()])
    }

    #[test]
    fn targeted_fields_are_dictionaries_or_nothing() {
        let d = targeted("max-age=60, private=\"x-a\", no-cache, stale-if-error=30").unwrap();
        assert_eq!(d.max_age, Some(Seconds::Valid(60)));
        assert_eq!(d.private_fields, vec!["x-a"]);
        assert!(d.no_cache && d.no_cache_fields.is_empty());
        assert_eq!(d.stale_if_error, Some(Seconds::Valid(30)));
        assert_eq!(targeted("max-age=10000, &&&&&"), None);
        assert_eq!(targeted("max-age= 100"), None);
        let wrong_type = targeted("max-age=\"10000\"").unwrap();
        assert_eq!(
            wrong_type.max_age, None,
            "a string is not consumed as an age"
        );
        assert_eq!(targeted("max-age=-5").unwrap().max_age, None);
        assert_eq!(
            targeted("max-age=99999999999").unwrap().max_age,
            Some(Seconds::Valid(2_147_483_648))
        );
        assert!(
            targeted("none").is_some(),
            "a valid field with no directive still rules"
        );
        assert_eq!(
            Directives::parse_targeted(std::iter::empty::<&[u8]>()),
            None
        );
    }

    #[test]
    fn surrogate_control_targets_devices() {
        let s = |v: &str| Directives::parse_surrogate([v.as_bytes()], "parapet");
        assert_eq!(
            s("max-age=3600").unwrap().max_age,
            Some(Seconds::Valid(3600))
        );
        assert_eq!(
            s("max-age=30+60").unwrap().max_age,
            Some(Seconds::Valid(30))
        );
        assert_eq!(s("max-age=3600;other"), None);
        assert_eq!(
            s("max-age=10, max-age=3600;parapet").unwrap().max_age,
            Some(Seconds::Valid(3600)),
            "targeted wins"
        );
        assert!(s("no-store").unwrap().no_store);
        assert_eq!(s("MaX-aGe=5").unwrap().max_age, Some(Seconds::Valid(5)));
        assert_eq!(s("max-age =100").map(|d| d.max_age), None);
        assert_eq!(
            s("foobar, max-age=7").unwrap().max_age,
            Some(Seconds::Valid(7))
        );
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "=",
            "\"",
            "a=\"unterminated",
            "max-age=\"",
            "\u{0}\u{ff}",
            "x=,y=\"\\",
            "==,==",
        ] {
            let _ = p(s);
        }
    }
}
