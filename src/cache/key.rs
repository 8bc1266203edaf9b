//! Cache keys. The primary key frames scheme, host, port and target (path and
//! query) with length prefixes, so no two different requests can produce the
//! same bytes; route key tweaks (drop the query, add headers or cookies) are
//! framed the same way. The method is not part of the key: HEAD is served
//! from GET's entry. `Vary` becomes a variance hash over the request headers
//! the stored response names.

use http::header::{HeaderMap, HeaderName, COOKIE};
use pingora::cache::key::{CacheKey, HashBinary};
use pingora::cache::VarianceBuilder;
use pingora::http::RequestHeader;

/// Per-route key settings.
#[derive(Debug, Clone, Default)]
pub struct KeyPolicy {
    pub ignore_query: bool,
    pub headers: Vec<HeaderName>,
    pub cookies: Vec<String>,
}

fn frame(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

/// The primary key bytes for a request.
pub fn primary(
    scheme: &str,
    host: &str,
    port: u16,
    req: &RequestHeader,
    policy: &KeyPolicy,
) -> Vec<u8> {
    let target = if policy.ignore_query {
        req.uri.path()
    } else {
        req.uri
            .path_and_query()
            .map_or(req.uri.path(), |pq| pq.as_str())
    };
    let mut out = Vec::with_capacity(32 + host.len() + target.len());
    frame(&mut out, scheme.as_bytes());
    // The host, lowercased as it is framed (no copy of its own).
    out.extend_from_slice(&(host.len() as u32).to_be_bytes());
    out.extend(host.bytes().map(|b| b.to_ascii_lowercase()));
    frame(&mut out, &port.to_be_bytes());
    frame(&mut out, target.as_bytes());
    for name in &policy.headers {
        frame(&mut out, name.as_str().as_bytes());
        frame(&mut out, &joined(&req.headers, name));
    }
    for name in &policy.cookies {
        frame(&mut out, name.as_bytes());
        frame(&mut out, cookie(&req.headers, name).unwrap_or(b"\0"));
    }
    out
}

/// The port a scheme implies when the request names none.
pub(crate) fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// `scheme://host:port/target`: the URL an object is stored under, which
/// purges by URL and prefix match. The one place this form is built (the
/// proxy for fills and invalidations, the purge API for what it is given).
/// Built without the formatting machinery: it runs on every cache lookup.
pub(crate) fn stored_url(scheme: &str, host: &str, port: u16, target: &str) -> String {
    let mut url = String::with_capacity(scheme.len() + host.len() + target.len() + 9);
    url.push_str(scheme);
    url.push_str("://");
    url.push_str(host);
    url.push(':');
    url.push_str(itoa::Buffer::new().format(port));
    url.push_str(target);
    url
}

/// The key for `primary` bytes, tagged with the URL it stands for (purges
/// match on it). The primary hash is computed once here and set as the key's
/// override: pingora-cache asks for it again at every step (lookup, lock,
/// predictor, eviction), and would otherwise hash the key with blake2b at
/// each ask. BLAKE3 truncated to 128 bits, the width pingora-cache uses.
pub fn with_url(primary: Vec<u8>, url: String) -> CacheKey {
    let mut hash = HashBinary::default();
    let len = hash.len();
    hash.copy_from_slice(&blake3::hash(&primary).as_bytes()[..len]);
    let mut key = CacheKey::new(primary, url);
    key.set_primary_bin_override(hash);
    key
}

/// All lines of a field joined by `, ` (RFC 9110 §5.3), trimmed.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in headers.get_all(name).iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(v.as_bytes().trim_ascii());
    }
    out
}

/// A selecting header's value for matching (RFC 9111 §4.1): lines combined,
/// whitespace around list commas removed, and `Accept-Language`, whose
/// language ranges are case-insensitive, lowercased. `Accept-Language:
/// en, de` and `en,de` then share a variant.
fn normalized(headers: &HeaderMap, name: &HeaderName) -> Vec<u8> {
    let mut out = Vec::new();
    for line in headers.get_all(name) {
        for member in line.as_bytes().split(|b| *b == b',') {
            let member = member.trim_ascii();
            if member.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
    }
    if name == http::header::ACCEPT_LANGUAGE {
        out.make_ascii_lowercase();
    }
    out
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get_all(COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

/// The variance for a request against a stored response's `Vary`, or `None`
/// when the response does not vary. A request lacking a listed header still
/// gets a value of its own (pingora would otherwise treat "no value" as "no
/// Vary" and serve the primary variant).
pub fn variance(vary: &HeaderMap, req: &HeaderMap) -> Option<HashBinary> {
    let mut names: Vec<String> = vary
        .get_all(http::header::VARY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|n| String::from_utf8_lossy(n.trim_ascii()).to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    let mut builder = VarianceBuilder::new();
    for name in names {
        let value = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if req.contains_key(&h) => {
                let mut v = b"=".to_vec();
                v.extend(normalized(req, &h));
                v
            }
            _ => b"\0absent".to_vec(),
        };
        builder.add_owned_name_value(name, value);
    }
    builder.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn framing_is_unambiguous() {
        let p = KeyPolicy::default();
        let a = primary("http", "ab", 80, &req("/c", &[]), &p);
        let b = primary("http", "a", 80, &req("/bc", &[]), &p);
        assert_ne!(a, b);
        assert_ne!(
            primary("http", "h", 80, &req("/", &[]), &p),
            primary("https", "h", 80, &req("/", &[]), &p)
        );
        assert_ne!(
            primary("http", "h", 80, &req("/", &[]), &p),
            primary("http", "h", 8080, &req("/", &[]), &p)
        );
        assert_eq!(
            primary("http", "H", 80, &req("/x?q=1", &[]), &p),
            primary("http", "h", 80, &req("/x?q=1", &[]), &p)
        );
        assert_ne!(
            primary("http", "h", 80, &req("/x?q=1", &[]), &p),
            primary("http", "h", 80, &req("/x?q=2", &[]), &p)
        );
    }

    #[test]
    fn key_tweaks() {
        let p = KeyPolicy {
            ignore_query: true,
            headers: vec![HeaderName::from_static("x-device")],
            cookies: vec!["lang".into()],
        };
        let k = |t: &str, h: &[(&str, &str)]| primary("http", "h", 80, &req(t, h), &p);
        assert_eq!(k("/a?x=1", &[]), k("/a?y=2", &[]));
        assert_ne!(
            k("/a", &[("x-device", "mobile")]),
            k("/a", &[("x-device", "desktop")])
        );
        assert_ne!(
            k("/a", &[("cookie", "lang=en")]),
            k("/a", &[("cookie", "lang=fr; x=1")])
        );
        assert_eq!(
            k("/a", &[("cookie", "x=2; lang=en")]),
            k("/a", &[("cookie", "lang=en")])
        );
    }

    #[test]
    fn variance_distinguishes_values_and_absence() {
        let mut vary = HeaderMap::new();
        vary.insert("vary", "Accept-Encoding, Accept-Language".parse().unwrap());
        let v = |h: &[(&str, &str)]| variance(&vary, &req("/", h).headers);
        assert!(v(&[]).is_some(), "absent headers still give a variance");
        assert_ne!(v(&[]), v(&[("accept-encoding", "gzip")]));
        assert_eq!(
            v(&[("accept-encoding", "gzip")]),
            v(&[("Accept-Encoding", "gzip"), ("x-other", "1")])
        );
        assert_ne!(v(&[("accept-encoding", "")]), v(&[]), "empty is not absent");
        assert_eq!(
            v(&[("accept-language", " en ,   de")]),
            v(&[("accept-language", "EN,De")]),
            "whitespace and language case do not make a variant"
        );
        assert_eq!(
            v(&[("accept-language", "en"), ("accept-language", "de")]),
            v(&[("accept-language", "en, de")])
        );
        assert_ne!(
            v(&[("accept-language", "en, de")]),
            v(&[("accept-language", "de, en")]),
            "order may carry preference"
        );
        assert_eq!(variance(&HeaderMap::new(), &HeaderMap::new()), None);
    }
}
