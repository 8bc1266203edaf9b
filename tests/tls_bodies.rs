//! Response bodies through the TLS listener, where writes are gathered into
//! records (`src/proxy/write_coalesce.rs`): bodies of sizes around the
//! record size arrive byte for byte over HTTP/1.1 and HTTP/2, from the
//! origin and from the cache; and a body the origin trickles out reaches the
//! client piece by piece, not held back for a fuller record.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::pki::{Pki, TlsClient};
use support::*;

/// Byte `i` of every patterned body: a shifted or dropped byte shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// An origin for this test: `/pattern/N` is N patterned bytes with
/// `Content-Length`, written in uneven pieces; `/drip` is a chunked body
/// whose second chunk waits until the test says the first has arrived.
fn origin(go_on: mpsc::Receiver<()>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let go_on = Arc::new(Mutex::new(go_on));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let go_on = go_on.clone();
            std::thread::spawn(move || serve(conn, &go_on));
        }
    });
    addr
}

fn serve(conn: TcpStream, go_on: &Mutex<mpsc::Receiver<()>>) {
    conn.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split(' ').nth(1).unwrap_or("").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    if let Some(n) = path.strip_prefix("/pattern/") {
        let body = pattern(n.parse().unwrap());
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = w.write_all(head.as_bytes());
        let (mut at, mut piece) = (0, 0);
        let sizes = [700, 3000, 9000, 20_000, 100];
        while at < body.len() {
            let end = (at + sizes[piece % sizes.len()]).min(body.len());
            if w.write_all(&body[at..end]).is_err() {
                return;
            }
            at = end;
            piece += 1;
        }
    } else if path == "/drip" {
        let _ = w.write_all(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n3\r\none\r\n",
        );
        let told = go_on.lock().unwrap().recv_timeout(Duration::from_secs(20));
        let last: &[u8] = if told.is_ok() {
            b"3\r\ntwo\r\n0\r\n\r\n"
        } else {
            b"4\r\nlate\r\n0\r\n\r\n"
        };
        let _ = w.write_all(last);
    }
}

#[test]
fn bodies_around_the_record_size_arrive_whole_and_trickled_ones_on_time() {
    let dir = temp_dir("tls-bodies");
    let pki = Pki::new(&dir, "edge");
    let cert = pki.server("bodies", &["bodies.test"]);
    let (tell_origin, go_on) = mpsc::channel();
    let origin = origin(go_on);
    let ports = Ports::new();
    let tls_addr = free_addr();
    let yaml = with_listeners(
        &one_pool_config(
            &ports,
            &origin.to_string(),
            "routes:\n  - upstream: o\n    cache: {enabled: true}\ncache:\n  memory: {max_size: 64MiB}\n  max_object_size: 4MiB\n",
        ),
        &format!(
            "  - address: \"{tls_addr}\"\n    tls:\n      certificates:\n        - {{cert: \"{}\", key: \"{}\"}}\n",
            cert.cert.display(),
            cert.key.display()
        ),
    );
    let _p = Parapet::start_with(&ports, &yaml);
    let h1 = TlsClient::trusting(&pki.ca_path).sni("bodies.test");
    let mut h2c = h1.clone();
    h2c.alpn = vec![b"h2"];

    for n in [1, 1459, 1461, 16_000, 16_384, 16_385, 40_000, 1_048_583] {
        let want = pattern(n);
        let path = format!("/pattern/{n}");
        // The first fetch streams from the origin, the second is a hit.
        for round in ["origin", "cache"] {
            let s = h1.connect(tls_addr).expect("handshake");
            let r = request_over(s, "GET", &path, &[("host", "bodies.test")], b"")
                .unwrap_or_else(|e| panic!("GET {path} over HTTP/1.1 ({round}): {e}"));
            assert_eq!(r.status, 200, "{path} ({round})");
            assert_eq!(r.body.len(), n, "{path} over HTTP/1.1 ({round}): length");
            assert!(
                r.body == want,
                "{path} over HTTP/1.1 ({round}): bytes differ"
            );
        }
        let (status, body) = support::pki::h2_get(tls_addr, &h2c, "bodies.test", &path);
        assert_eq!(status, 200, "{path} over h2");
        assert_eq!(body.len(), n, "{path} over h2: length");
        assert!(body == want, "{path} over h2: bytes differ");
    }

    // A trickled body: the first chunk must reach the client while the
    // origin still holds the second back (the read times out otherwise).
    let mut s = h1.connect(tls_addr).expect("handshake");
    s.write_all(b"GET /drip HTTP/1.1\r\nHost: bodies.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(5).any(|w| w == b"\r\none") {
        let n = s
            .read(&mut buf)
            .expect("the first chunk arrives while the origin holds the rest");
        assert!(n > 0, "closed before the first chunk: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    tell_origin.send(()).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("two"), "the second chunk follows: {text}");
}
