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

/// Reads from `stream` until `needle` appears or the deadline passes.
fn read_until(
    stream: &mut std::net::TcpStream,
    needle: &str,
    within: std::time::Duration,
) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains(needle) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn connect_is_refused_and_never_tunnelled() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    let answer = String::from_utf8_lossy(&raw(
        p.addr(),
        b"CONNECT internal.example:22 HTTP/1.1\r\nHost: internal.example:22\r\n\r\nSSH-2.0-probe\r\n",
    ))
    .into_owned();
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    assert_eq!(o.hits(), 0, "CONNECT never reaches an origin");
}

#[test]
fn expect_100_continue_is_relayed_and_refused_bodies_are_never_invited() {
    use std::io::Write;
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - upstream: o\nlimits:\n  max_body_size: 1KiB\n",
    );
    // Acceptable body: the client waits for 100 Continue before sending it.
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .unwrap();
    let interim = read_until(&mut s, "\r\n\r\n", std::time::Duration::from_secs(5));
    assert!(
        interim.starts_with("HTTP/1.1 100 "),
        "the client is invited to send its body: {interim:?}"
    );
    s.write_all(b"hello").unwrap();
    let rest = read_until(&mut s, "body_len=", std::time::Duration::from_secs(5));
    let full = interim + &rest;
    let body_at = full.find("origin=").expect("origin echo");
    assert!(full.contains("HTTP/1.1 200 "), "{full}");
    let echo = parse_echo(&full[body_at..]);
    assert_eq!(echo.body_len, 5, "the origin got exactly the body");

    // A declared body over the limit: 413 at once, no 100, origin untouched.
    let before = o.hits();
    let mut s = std::net::TcpStream::connect(p.addr()).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n")
        .unwrap();
    let answer = read_until(&mut s, "\r\n\r\n", std::time::Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer:?}");
    assert_eq!(o.hits(), before, "the origin never saw the refused upload");
}

#[test]
fn bytes_after_an_upgrade_request_are_not_forwarded_before_a_101() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - upstream: o\nsecurity:\n  deny_paths: [/internal]\n",
    );
    // The origin refuses the upgrade (answers 200), so the bytes that follow
    // are not tunnel data: they must be parsed, and filtered, as HTTP.
    let answer = String::from_utf8_lossy(&raw(
        p.addr(),
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /internal/secret HTTP/1.1\r\nHost: a\r\n\r\n",
    ))
    .into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        !answer.contains("path=/internal"),
        "smuggled request reached the origin: {answer}"
    );
    assert_eq!(o.hits(), 1, "only the upgrade request reached the origin");
}
