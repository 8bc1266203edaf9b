//! Turning fuzz bytes into a `pingora::http::RequestHeader`, shared by the
//! request targets. Lines are split on `\n` with one trailing `\r` dropped;
//! header lines are `name: value` (split at the first `:`, value trimmed of
//! spaces and tabs). Invalid header names or values are skipped, not errors:
//! the real parser would refuse them before any parapet code runs.

#![allow(dead_code)]

use http::{HeaderValue, Method, Version};
use pingora::http::RequestHeader;

/// The input's lines, `\r\n` or `\n` terminated.
pub fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect()
}

/// `GET <target>`, or `None` when pingora refuses the target.
pub fn request(method: Method, target: &[u8]) -> Option<RequestHeader> {
    RequestHeader::build(method, target, None).ok()
}

/// A request line: `METHOD TARGET [VERSION]` when the first token is a
/// method and a target follows, else the whole line as a `GET` target.
pub fn request_line(line: &[u8]) -> Option<RequestHeader> {
    let mut tokens = line.split(|b| *b == b' ').filter(|t| !t.is_empty());
    let first = tokens.next().unwrap_or(b"");
    let method = Method::from_bytes(first).ok();
    let (method, target, version) = match (method, tokens.next()) {
        (Some(m), Some(target)) => (m, target, tokens.next()),
        _ => (Method::GET, line, None),
    };
    let mut req = request(method, target)?;
    match version {
        Some(b"HTTP/1.0") => req.set_version(Version::HTTP_10),
        Some(b"HTTP/0.9") => req.set_version(Version::HTTP_09),
        Some(b"HTTP/2") | Some(b"HTTP/2.0") => req.set_version(Version::HTTP_2),
        _ => {} // HTTP/1.1, the builder's default
    }
    Some(req)
}

/// `name: value` split at the first colon, value trimmed.
pub fn header_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|b| *b == b':')?;
    let value = &line[colon + 1..];
    let value = trim_ows(value);
    Some((&line[..colon], value))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Appends every valid `name: value` line; returns the values of `vary` lines.
pub fn append_headers<'a>(
    req: &mut RequestHeader,
    header_lines: impl Iterator<Item = &'a [u8]>,
) -> Vec<HeaderValue> {
    let mut vary = Vec::new();
    for line in header_lines {
        let Some((name, value)) = header_line(line) else {
            continue;
        };
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        // A String keeps the name's case, as pingora's parser does; an
        // invalid name (non-UTF-8 bytes become U+FFFD, not a token
        // character) is refused by append_header itself.
        let name_text = String::from_utf8_lossy(name).into_owned();
        let appended = req.append_header(name_text, value.clone()).is_ok();
        if appended && name.eq_ignore_ascii_case(b"vary") {
            vary.push(value);
        }
    }
    vary
}

