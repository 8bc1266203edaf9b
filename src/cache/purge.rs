//! Purges requested through the admin API: by URL, URL prefix or surrogate
//! key; hard (delete) or soft (mark stale, so revalidation and
//! stale-if-error still have the body).

use super::key::{default_port, stored_url};
use super::memory::EntryTags;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selector {
    /// One URL, normalized by [`normalize_url`].
    Url(String),
    /// Every URL starting with this (normalized) prefix.
    Prefix(String),
    /// Every object whose `Surrogate-Key` lists this key.
    Tag(String),
}

/// A URL given to the purge API in the form the cache stores
/// ([`stored_url`]): scheme defaults to http, host lower-cased, default port
/// made explicit, path defaults to `/`.
pub(crate) fn normalize_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("not a URL: {text:?}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri
        .host()
        .ok_or_else(|| format!("URL without a host: {text:?}"))?
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or_else(|| default_port(&scheme));
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = if target.is_empty() { "/" } else { target };
    Ok(stored_url(&scheme, &host, port, target))
}

impl Selector {
    /// Whether a stored object's tags match.
    pub(crate) fn matches(&self, tags: &EntryTags) -> bool {
        match self {
            Selector::Url(u) => &*tags.url == u.as_str(),
            Selector::Prefix(p) => tags.url.starts_with(p.as_str()),
            Selector::Tag(t) => tags.surrogate_keys.iter().any(|k| &**k == t.as_str()),
        }
    }

    /// The `parapet_cache_purges_total` label of a purge by this selector.
    pub(crate) fn metric_label(&self, soft: bool) -> &'static str {
        match (self, soft) {
            (_, true) => "soft",
            (Selector::Url(_), false) => "url",
            (Selector::Prefix(_), false) => "prefix",
            (Selector::Tag(_), false) => "tag",
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or("truncated %-escape")?;
                let hex = std::str::from_utf8(hex).map_err(|_| "bad %-escape")?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad %-escape")?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
}

/// Parses the query into a selector and the soft flag.
pub(crate) fn parse_query(query: &str) -> Result<(Selector, bool), String> {
    let mut selector = None;
    let mut soft = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        let s = match k {
            "url" => Selector::Url(normalize_url(&v)?),
            "prefix" => Selector::Prefix(normalize_url(&v)?),
            "tag" if !v.is_empty() => Selector::Tag(v),
            "soft" => {
                soft = matches!(v.as_str(), "1" | "true" | "yes");
                continue;
            }
            _ => return Err(format!("unknown or empty parameter {k:?}")),
        };
        if selector.replace(s).is_some() {
            return Err("give exactly one of url, prefix, tag".into());
        }
    }
    selector
        .map(|s| (s, soft))
        .ok_or_else(|| "give one of url, prefix, tag".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalize_to_the_stored_form() {
        assert_eq!(
            normalize_url("http://Example.com/a?b=1").unwrap(),
            "http://example.com:80/a?b=1"
        );
        assert_eq!(
            normalize_url("https://example.com").unwrap(),
            "https://example.com:443/"
        );
        assert_eq!(
            normalize_url("http://example.com:8080/x").unwrap(),
            "http://example.com:8080/x"
        );
        assert!(normalize_url("/relative").is_err());
        assert!(normalize_url("not a url").is_err());
    }
}
