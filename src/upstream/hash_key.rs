//! What a consistent-hash pool hashes on: `uri`, `path`, `client_ip`,
//! `header:NAME` or `cookie:NAME`. A missing header or cookie hashes as empty,
//! so such requests all land on one backend, as in nginx's `hash`.

use http::header::{HeaderName, COOKIE};
use pingora::http::RequestHeader;
use std::borrow::Cow;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// Path and query.
    Uri,
    Path,
    ClientIp,
    Header(HeaderName),
    Cookie(String),
}

impl FromStr for HashKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let key = match s {
            "uri" => HashKey::Uri,
            "path" => HashKey::Path,
            "client_ip" => HashKey::ClientIp,
            _ => match s.split_once(':') {
                Some(("header", name)) => HashKey::Header(
                    HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| format!("invalid header name {name:?}"))?,
                ),
                Some(("cookie", name))
                    if !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_graphic() && !b"=;,".contains(&b)) =>
                {
                    HashKey::Cookie(name.to_string())
                }
                _ => {
                    return Err(format!(
                        "invalid hash_key {s:?} (expected uri, path, client_ip, header:NAME or cookie:NAME)"
                    ))
                }
            },
        };
        Ok(key)
    }
}

impl HashKey {
    /// The bytes to hash for this request.
    pub fn extract<'a>(&self, req: &'a RequestHeader, client_ip: IpAddr) -> Cow<'a, [u8]> {
        match self {
            HashKey::Uri => Cow::Borrowed(
                req.uri
                    .path_and_query()
                    .map_or(req.uri.path(), |pq| pq.as_str())
                    .as_bytes(),
            ),
            HashKey::Path => Cow::Borrowed(req.uri.path().as_bytes()),
            HashKey::ClientIp => Cow::Owned(match client_ip {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            }),
            HashKey::Header(name) => {
                Cow::Borrowed(req.headers.get(name).map_or(&b""[..], |v| v.as_bytes()))
            }
            HashKey::Cookie(name) => Cow::Borrowed(cookie(req, name).unwrap_or(b"")),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` header(s).
fn cookie<'a>(req: &'a RequestHeader, name: &str) -> Option<&'a [u8]> {
    req.headers.get_all(COOKIE).iter().find_map(|v| {
        v.as_bytes().split(|b| *b == b';').find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_extract() {
        let mut req = RequestHeader::build("GET", b"/a/b?x=1", None).unwrap();
        req.append_header("cookie", "theme=dark; session=abc123")
            .unwrap();
        req.append_header("x-user", "u7").unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let get = |k: &str| HashKey::from_str(k).unwrap().extract(&req, ip).into_owned();
        assert_eq!(get("uri"), b"/a/b?x=1");
        assert_eq!(get("path"), b"/a/b");
        assert_eq!(get("client_ip"), vec![192, 0, 2, 1]);
        assert_eq!(get("header:X-User"), b"u7");
        assert_eq!(get("cookie:session"), b"abc123");
        assert_eq!(get("cookie:missing"), b"");
        for bad in [
            "",
            "host",
            "header:",
            "header:bad name",
            "cookie:",
            "cookie:a=b",
        ] {
            assert!(HashKey::from_str(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
