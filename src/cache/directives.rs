//! `Cache-Control` (and targeted fields such as `CDN-Cache-Control`) parsed
//! the way RFC 9111 §4.2.1 and §5.2 ask of a cache: comma-separated
//! directives, case-insensitive names, optional `token` or `"quoted"` values,
//! the first occurrence of a repeated directive wins, and a delta-seconds
//! value that does not parse makes the directive *invalid* (the response is
//! then treated as stale) rather than absent.

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
        let mut seen = std::collections::HashSet::new();
        let mut any = false;
        for line in lines {
            any = true;
            let line = String::from_utf8_lossy(line);
            for (name, value) in split_directives(&line) {
                if !seen.insert(name.clone()) {
                    continue; // the first occurrence wins
                }
                let v = value.as_deref();
                match name.as_str() {
                    "max-age" => d.max_age = Some(seconds(v)),
                    "s-maxage" => d.s_maxage = Some(seconds(v)),
                    "no-store" => d.no_store = true,
                    "no-cache" => {
                        d.no_cache = true;
                        d.no_cache_fields = field_names(v);
                    }
                    "private" => {
                        d.private = true;
                        d.private_fields = field_names(v);
                    }
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "must-understand" => d.must_understand = true,
                    "stale-while-revalidate" => d.stale_while_revalidate = Some(seconds(v)),
                    "stale-if-error" => d.stale_if_error = Some(seconds(v)),
                    "no-transform" => d.no_transform = true,
                    "max-stale" => d.max_stale = Some(v.map(|v| seconds(Some(v)))),
                    "min-fresh" => d.min_fresh = Some(seconds(v)),
                    "only-if-cached" => d.only_if_cached = true,
                    _ => {}
                }
            }
        }
        any.then_some(d)
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
