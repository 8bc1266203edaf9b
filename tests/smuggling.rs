//! Ambiguous HTTP/1 framing, written byte by byte: the client gets 400 and a
//! closed connection, and the origin receives nothing at all.

mod support;

use support::*;

#[test]
fn ambiguous_requests_never_reach_the_origin() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  o:\n    backends: [{{address: \"{}\"}}]\nroutes:\n  - upstream: o\n",
                o.address()
            ),
        ),
    );
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
