//! Smuggling-safe request framing: the edge only forwards a request whose
//! length and target it can state without doubt. Anything ambiguous gets
//! `400` and the connection is closed, so no byte after the head is ever
//! read as another request.
//!
//! Pingora itself already refuses two different `Content-Length` fields,
//! unknown transfer codings, obs-fold and whitespace before the colon. On top
//! of that, this refuses:
//! * a `Content-Length` that is not a single run of digits (`5, 5`, `+5`, ` 5x`);
//! * `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.3 lets a
//!   server pick one; an edge in front of an unknown origin must not);
//! * `Transfer-Encoding` on HTTP/1.0, or any coding list but a final `chunked`;
//! * HTTP/1.1 without `Host` (RFC 9112 §3.2), or several `Host` fields;
//! * an absolute-form target whose authority disagrees with `Host`.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::Version;
use pingora::http::RequestHeader;

/// Why a request was refused (metric label and log word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ContentLength,
    LengthAndChunked,
    TransferEncoding,
    MissingHost,
    DuplicateHost,
    HostMismatch,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::ContentLength => "bad_content_length",
            Refusal::LengthAndChunked => "content_length_with_transfer_encoding",
            Refusal::TransferEncoding => "bad_transfer_encoding",
            Refusal::MissingHost => "missing_host",
            Refusal::DuplicateHost => "duplicate_host",
            Refusal::HostMismatch => "host_mismatch",
        }
    }
}

/// Whether a raw request head has a `Content-Length` line (Pingora drops the
/// field when `Transfer-Encoding` is present, before filters see the head).
pub fn raw_has_content_length(raw_head: &[u8]) -> bool {
    raw_head
        .split(|b| *b == b'\n')
        .skip(1)
        .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
}

/// Checks an HTTP/1.x request head; HTTP/2 framing is the h2 layer's.
/// `raw_head` is the head as received, when available.
pub fn check(req: &RequestHeader, raw_head: Option<&[u8]>) -> Result<(), Refusal> {
    if req.version != Version::HTTP_11 && req.version != Version::HTTP_10 {
        return Ok(());
    }
    // One pass over the fields, comparing names (an enum compare for these
    // standard ones) rather than three hashed lookups: this runs on every
    // HTTP/1 request. A name's values come in the order received.
    let (mut lengths, mut bad_length) = (0usize, false);
    let (mut codings, mut chunked) = (0usize, false);
    let (mut hosts, mut host) = (0usize, None);
    for (name, value) in &req.headers {
        let v = value.as_bytes();
        if name == CONTENT_LENGTH {
            lengths += 1;
            bad_length |= v.is_empty() || !v.iter().all(u8::is_ascii_digit);
        } else if name == TRANSFER_ENCODING {
            codings += 1;
            chunked = v.trim_ascii().eq_ignore_ascii_case(b"chunked");
        } else if name == HOST {
            hosts += 1;
            host.get_or_insert(v);
        }
    }
    if lengths > 1 || bad_length {
        return Err(Refusal::ContentLength);
    }
    if codings > 0 {
        if lengths > 0 || raw_head.is_some_and(raw_has_content_length) {
            return Err(Refusal::LengthAndChunked);
        }
        let only_chunked = codings == 1 && chunked;
        if req.version == Version::HTTP_10 || !only_chunked {
            return Err(Refusal::TransferEncoding);
        }
    }
    if hosts > 1 {
        return Err(Refusal::DuplicateHost);
    }
    if host.is_none() && req.version == Version::HTTP_11 {
        return Err(Refusal::MissingHost);
    }
    if let (Some(authority), Some(host)) = (req.uri.authority(), host) {
        if !authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.trim_ascii())
        {
            return Err(Refusal::HostMismatch);
        }
    }
    Ok(())
}

/// An origin's `Content-Length`, normalized: a list of one repeated value
/// (`2, 2`) becomes that value (RFC 9110 §8.6 allows it), anything else that
/// is not a single number is an error (the response becomes a 502).
pub fn response_content_length(value: &[u8]) -> Result<Option<u64>, Refusal> {
    if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
        return Ok(None); // already a single number: leave it alone
    }
    let mut parts = value.split(|b| *b == b',').map(|p| p.trim_ascii());
    let first = parts
        .next()
        .filter(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
        .ok_or(Refusal::ContentLength)?;
    if parts.all(|p| p == first) {
        std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or(Refusal::ContentLength)
    } else {
        Err(Refusal::ContentLength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, target: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        r.set_uri(target.parse::<http::Uri>().unwrap());
        r.set_version(version);
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn origin_content_length_lists() {
        assert_eq!(response_content_length(b"12"), Ok(None));
        assert_eq!(response_content_length(b"2, 2"), Ok(Some(2)));
        assert_eq!(response_content_length(b"2,2 ,2"), Ok(Some(2)));
        assert_eq!(
            response_content_length(b"2, 3"),
            Err(Refusal::ContentLength)
        );
        assert_eq!(response_content_length(b"x"), Err(Refusal::ContentLength));
        assert_eq!(response_content_length(b""), Err(Refusal::ContentLength));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let v11 = Version::HTTP_11;
        let ok = |h: &[(&str, &str)]| check(&req(v11, "/", h), None);
        assert_eq!(ok(&[("host", "a"), ("content-length", "5")]), Ok(()));
        assert_eq!(
            ok(&[("host", "a"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
        assert_eq!(
            ok(&[("host", "a"), ("transfer-encoding", "Chunked ")]),
            Ok(())
        );
        for cl in ["5, 5", "5,5", "+5", " ", "5x", "-1"] {
            assert_eq!(
                ok(&[("host", "a"), ("content-length", cl)]),
                Err(Refusal::ContentLength),
                "{cl:?}"
            );
        }
        assert_eq!(
            ok(&[
                ("host", "a"),
                ("content-length", "5"),
                ("content-length", "5")
            ]),
            Err(Refusal::ContentLength)
        );
        assert_eq!(
            ok(&[
                ("host", "a"),
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ]),
            Err(Refusal::LengthAndChunked)
        );
        for te in ["gzip, chunked", "chunked, gzip", "identity", "xchunked"] {
            assert_eq!(
                ok(&[("host", "a"), ("transfer-encoding", te)]),
                Err(Refusal::TransferEncoding),
                "{te}"
            );
        }
        assert_eq!(
            ok(&[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked")
            ]),
            Err(Refusal::TransferEncoding)
        );
        assert_eq!(
            check(
                &req(Version::HTTP_10, "/", &[("transfer-encoding", "chunked")]),
                None
            ),
            Err(Refusal::TransferEncoding)
        );
        assert_eq!(ok(&[]), Err(Refusal::MissingHost));
        assert_eq!(
            check(&req(Version::HTTP_10, "/", &[]), None),
            Ok(()),
            "HTTP/1.0 may omit Host"
        );
        assert_eq!(
            ok(&[("host", "a"), ("host", "b")]),
            Err(Refusal::DuplicateHost)
        );
        assert_eq!(
            check(&req(v11, "http://a.com/x", &[("host", "a.com")]), None),
            Ok(())
        );
        assert_eq!(
            check(&req(v11, "http://a.com/x", &[("host", "b.com")]), None),
            Err(Refusal::HostMismatch)
        );
        // Pingora drops Content-Length next to Transfer-Encoding; the raw head still shows it.
        let te = req(v11, "/", &[("host", "a"), ("transfer-encoding", "chunked")]);
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check(&te, Some(raw)), Err(Refusal::LengthAndChunked));
        assert_eq!(
            check(&te, Some(b"POST / HTTP/1.1\r\nX-Content-Length: 5\r\n\r\n")),
            Ok(())
        );
    }
}
