//! Ambiguous HTTP/1 framing, written byte by byte: the client gets 400 and a
//! closed connection, and the origin receives nothing at all.

mod support;

use support::*;

#[test]
fn ambiguous_requests_never_reach_the_origin() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    let cases: &[(&str, &str)] = &[
        ("content-length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("two content-lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        ("content-length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("obfuscated transfer-encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("coding list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("chunked on HTTP/1.0", "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("missing host", "GET / HTTP/1.1\r\n\r\n"),
        ("two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"),
        ("space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n"),
        ("signed content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello"),
    ];
    for (name, bytes) in cases {
        let answer = String::from_utf8_lossy(&raw(p.addr(), bytes.as_bytes())).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{name}: {answer}");
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "{name}: exactly one response, then close: {answer}"
        );
    }
    assert_eq!(
        o.hits(),
        0,
        "the origin must never see an ambiguous request"
    );
    // And a well-formed request still goes through.
    let ok = String::from_utf8_lossy(&raw(
        p.addr(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    ))
    .into_owned();
    assert!(ok.starts_with("HTTP/1.1 200 "), "{ok}");
    assert_eq!(o.hits(), 1);
    // Refusals made by the edge's own filter are counted (Pingora's parser
    // refuses some of the cases above before any filter runs).
    wait_until(
        std::time::Duration::from_secs(5),
        "refusals counted",
        || {
            let m = p.metrics();
            m.contains("parapet_requests_refused_total{reason=\"bad_content_length\"}")
            && m.contains("parapet_requests_refused_total{reason=\"content_length_with_transfer_encoding\"} 1")
            && m.contains("parapet_requests_refused_total{reason=\"missing_host\"} 1")
        },
    );
}

/// An origin that answers every request with fixed bytes chosen by path.
fn faulty_origin() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let answer: &[u8] = if head.starts_with("GET /two-lengths") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nsecret"
                } else if head.starts_with("GET /garbage") {
                    b"GARBAGE secret\r\n\r\nsecret"
                } else if head.starts_with("GET /length-list") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"
                } else if head.starts_with("GET /bad-length") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nsecret"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                let _ = conn.write_all(answer);
            });
        }
    });
    addr
}

#[test]
fn origin_framing_faults_become_502_never_raw_bytes() {
    let origin = faulty_origin();
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(&ports, &format!("upstreams:\n  o:\n    retries: 0\n    backends: [{{address: \"{origin}\"}}]\nroutes:\n  - upstream: o\n")),
    );
    for path in ["/two-lengths", "/garbage", "/bad-length"] {
        let r = p.get(path, &[]);
        assert_eq!(r.status, 502, "{path}");
        assert!(
            !r.text().contains("secret"),
            "{path}: origin bytes leaked: {}",
            r.text()
        );
    }
    let r = p.get("/length-list", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("2"),
        "a repeated value is normalized"
    );
    assert_eq!(r.text(), "ok");
}
