//! HTTP/1 cases a client depends on: pipelined requests are answered in
//! order (RFC 9112 §9.3.2), and an origin body that breaks off reaches the
//! client as a short body and a close (never as nothing), logged as such.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

/// Everything the edge sends on one connection until it closes it (or
/// `limit` passes).
fn read_until_close(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < end {
        stream
            .set_read_timeout(Some(
                end.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    let mut s = TcpStream::connect(p.addr()).unwrap();
    // Three requests in one write, the last one closing; a body on the first.
    s.write_all(
        b"POST /p1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET /p2 HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let out = read_until_close(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out);
    assert_eq!(count(&out, b"HTTP/1.1 200"), 3, "three answers: {text}");
    let at = |path: &[u8]| {
        position(&out, path)
            .unwrap_or_else(|| panic!("no answer for {}: {text}", String::from_utf8_lossy(path)))
    };
    assert!(
        at(b"path=/p1") < at(b"path=/p2") && at(b"path=/p2") < at(b"path=/p3"),
        "in order: {text}"
    );
    assert!(
        text.contains("body_len=3"),
        "the first request's body went with it: {text}"
    );
    assert_eq!(
        o.hits(),
        3,
        "each pipelined request reached the origin once"
    );
}

#[test]
fn a_request_sent_before_the_previous_answer_is_served() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    let mut s = TcpStream::connect(p.addr()).unwrap();
    // The second request follows while the first is still at the origin.
    s.write_all(b"GET /slow/200 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the first request at the origin",
        || o.hits() == 1,
    );
    s.write_all(b"GET /second HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = read_until_close(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out);
    assert_eq!(count(&out, b"HTTP/1.1 200"), 2, "two answers: {text}");
    assert!(
        position(&out, b"path=/slow/200") < position(&out, b"path=/second"),
        "{text}"
    );
}

/// The origin announces 100 bytes more than it sends, then closes.
fn truncated_body(route: &str) {
    let o = Origin::start("o");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &one_pool_config(
            &ports,
            &o.address(),
            &format!("routes:\n  - {route}\naccess_log:\n  path: \"{{dir}}/access.log\"\n"),
        ),
    );
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.write_all(
        b"GET /truncate HTTP/1.1\r\nHost: a\r\nX-Respond: Cache-Control: max-age=60\r\n\r\n",
    )
    .unwrap();
    let out = read_until_close(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "the head reaches the client: {text:?}"
    );
    let head_end = position(&out, b"\r\n\r\n").expect("a whole head") + 4;
    let announced: usize = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("Content-Length");
    let got = out.len() - head_end;
    assert!(got > 0, "the bytes that arrived are sent: {text:?}");
    assert_eq!(
        got + 100,
        announced,
        "exactly what the origin sent, then a close"
    );
    let log = p.dir().join("access.log");
    wait_until(Duration::from_secs(5), "the access log line", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("/truncate"))
    });
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.contains("\"status\":200"), "{line}");
    assert!(
        line.contains("\"truncated\":true"),
        "the log says the body broke off: {line}"
    );
}

#[test]
fn a_truncated_origin_body_reaches_the_client_short() {
    truncated_body("upstream: o");
}

#[test]
fn a_truncated_origin_body_on_a_caching_route_reaches_the_client_short() {
    truncated_body("{upstream: o, cache: {enabled: true}}");
}
