//! Protocols past plain HTTP/1 to the origin: TLS to origins (a trusted CA,
//! an untrusted one, verification off, a client certificate), a WebSocket
//! echo through the edge, and gRPC-style trailers over HTTP/2 on both sides.

mod support;

use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;
use support::pki::{Issued, Pki};
use support::*;

/// Reads a request head (up to the blank line) from `s`.
fn read_head(s: &mut impl Read) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An HTTPS origin answering every request with the SNI it saw and the
/// client certificate's CN, if it asks for one (`client_ca`).
fn tls_origin(cert: &Issued, client_ca: Option<&std::path::Path>) -> SocketAddr {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    b.set_certificate_chain_file(&cert.cert).unwrap();
    b.set_private_key_file(&cert.key, SslFiletype::PEM).unwrap();
    if let Some(ca) = client_ca {
        b.set_ca_file(ca).unwrap();
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    let acceptor = Arc::new(b.build());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let acceptor = acceptor.clone();
            std::thread::spawn(move || {
                let Ok(mut s) = acceptor.accept(conn) else {
                    return;
                };
                while read_head(&mut s).is_some() {
                    let sni = s
                        .ssl()
                        .servername(openssl::ssl::NameType::HOST_NAME)
                        .unwrap_or("-")
                        .to_string();
                    let client = s
                        .ssl()
                        .peer_certificate()
                        .and_then(|c| {
                            c.subject_name()
                                .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                                .next()
                                .and_then(|e| e.data().to_string().ok())
                        })
                        .unwrap_or_else(|| "-".into());
                    let body = format!("sni={sni} client={client}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tls_to_origins_is_verified_by_default() {
    let dir = temp_dir("upstream-tls");
    let pki = Pki::new(&dir, "origins");
    let other = Pki::new(&dir, "other");
    let edge_clients = Pki::new(&dir, "edge-clients");
    let origin_cert = pki.server("origin", &["origin.test"]);
    let plain = tls_origin(&origin_cert, None);
    let picky = tls_origin(&origin_cert, Some(&edge_clients.ca_path));
    let edge_cert = edge_clients.client("edge", "parapet-edge");
    let ports = Ports::new();
    let yaml = base_config(
        &ports,
        &format!(
            "upstreams:\n\
             \x20 trusted:\n    backends: [{{address: \"{plain}\"}}]\n    tls: {{sni: origin.test, ca: \"{ca}\"}}\n\
             \x20 untrusted:\n    retries: 0\n    backends: [{{address: \"{plain}\"}}]\n    tls: {{sni: origin.test, ca: \"{other_ca}\"}}\n\
             \x20 wrong-name:\n    retries: 0\n    backends: [{{address: \"{plain}\"}}]\n    tls: {{sni: elsewhere.test, ca: \"{ca}\"}}\n\
             \x20 unverified:\n    backends: [{{address: \"{plain}\"}}]\n    tls: {{sni: origin.test, verify: false}}\n\
             \x20 mutual:\n    backends: [{{address: \"{picky}\"}}]\n    tls: {{sni: origin.test, ca: \"{ca}\", client_cert: {{cert: \"{cc}\", key: \"{ck}\"}}}}\n\
             routes:\n\
             \x20 - {{match: {{host: trusted.test}}, upstream: trusted}}\n\
             \x20 - {{match: {{host: untrusted.test}}, upstream: untrusted}}\n\
             \x20 - {{match: {{host: wrong-name.test}}, upstream: wrong-name}}\n\
             \x20 - {{match: {{host: unverified.test}}, upstream: unverified}}\n\
             \x20 - {{match: {{host: mutual.test}}, upstream: mutual}}\n",
            ca = pki.ca_path.display(),
            other_ca = other.ca_path.display(),
            cc = edge_cert.cert.display(),
            ck = edge_cert.key.display(),
        ),
    );
    let p = Parapet::start_with(&ports, &yaml);
    let r = p.get("/", &[("Host", "trusted.test")]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "sni=origin.test client=-")
    );
    for host in ["untrusted.test", "wrong-name.test"] {
        let r = p.get("/", &[("Host", host)]);
        assert_eq!(r.status, 502, "{host}");
        assert!(
            !r.text().contains("certificate"),
            "no reason shown: {}",
            r.text()
        );
    }
    let r = p.get("/", &[("Host", "unverified.test")]);
    assert_eq!(r.status, 200, "verification explicitly off");
    let r = p.get("/", &[("Host", "mutual.test")]);
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "sni=origin.test client=parapet-edge")
    );
    wait_until(Duration::from_secs(5), "the reason is logged", || {
        p.logs().contains("certificate verify failed") || p.logs().contains("InvalidCert")
    });
    assert!(p
        .metrics()
        .contains("parapet_upstream_errors_total{kind=\"tls\",upstream=\"untrusted\"}"));
}

/// A WebSocket origin: answers the handshake with 101, then echoes every
/// text frame back.
fn websocket_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn(move || {
                let Some(head) = read_head(&mut s) else {
                    return;
                };
                let key = head
                    .lines()
                    .find_map(|l| {
                        let (n, v) = l.split_once(':')?;
                        n.eq_ignore_ascii_case("sec-websocket-key")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                let _ = write!(
                    s,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    accept_key(&key)
                );
                while let Some(text) = read_frame(&mut s) {
                    if s.write_all(&frame(&format!("echo: {text}"), None)).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn accept_key(key: &str) -> String {
    let digest =
        openssl::sha::sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    openssl::base64::encode_block(&digest)
}

/// A final text frame, masked with `mask` (clients must mask).
fn frame(text: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    assert!(text.len() < 126);
    let mut f = vec![
        0x81,
        text.len() as u8 | if mask.is_some() { 0x80 } else { 0 },
    ];
    match mask {
        Some(m) => {
            f.extend_from_slice(&m);
            f.extend(text.bytes().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => f.extend_from_slice(text.as_bytes()),
    }
    f
}

fn read_frame(s: &mut impl Read) -> Option<String> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let len = (head[1] & 0x7f) as usize;
    let mask = if head[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        s.read_exact(&mut m).ok()?;
        Some(m)
    } else {
        None
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    String::from_utf8(payload).ok()
}

#[test]
fn websocket_is_proxied_end_to_end() {
    let ws = websocket_origin();
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  ws:\n    backends: [{{address: \"{ws}\"}}]\n    timeouts: {{read: 1s}}\n\
                 routes:\n  - upstream: ws\n    cache: {{enabled: true}}\n"
            ),
        ),
    );
    let mut s = TcpStream::connect(p.addr()).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    write!(
        s,
        "GET /chat HTTP/1.1\r\nHost: chat.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let head = read_head(&mut s).expect("handshake answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("sec-websocket-accept: {}", accept_key(key)).to_ascii_lowercase()),
        "{head}"
    );
    for msg in ["hello", "and again"] {
        s.write_all(&frame(msg, Some([1, 2, 3, 4]))).unwrap();
        assert_eq!(
            read_frame(&mut s).as_deref(),
            Some(format!("echo: {msg}").as_str())
        );
    }
    // The pool's 1 s read timeout does not apply to an upgraded connection:
    // a message after a quiet spell longer than it still gets its echo.
    // (Idling is the behaviour under test here, not a synchronisation.)
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(&frame("after a pause", Some([9, 8, 7, 6])))
        .unwrap();
    assert_eq!(read_frame(&mut s).as_deref(), Some("echo: after a pause"));
}

/// A gRPC-style HTTP/2 origin (cleartext, prior knowledge): echoes the
/// request body length and ends every response with trailers.
fn h2_origin() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        tokio::spawn(async move {
                            let te = req
                                .headers()
                                .get("te")
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .unwrap_or_default();
                            let mut body = req.into_body();
                            let mut n = 0;
                            while let Some(Ok(chunk)) = body.data().await {
                                n += chunk.len();
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            let resp = http::Response::builder()
                                .status(200)
                                .header("content-type", "application/grpc")
                                .body(())
                                .unwrap();
                            let mut send = respond.send_response(resp, false).unwrap();
                            send.send_data(format!("got {n} bytes, te={te}").into(), false)
                                .unwrap();
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            trailers.insert("grpc-message", "all-good".parse().unwrap());
                            send.send_trailers(trailers).unwrap();
                        });
                    }
                });
            }
        });
    });
    addr
}

#[test]
fn grpc_trailers_pass_through_http2_on_both_sides() {
    let origin = h2_origin();
    let ports = Ports::new();
    let h2c = free_addr();
    let yaml = base_config(
        &ports,
        &format!(
            "upstreams:\n  grpc:\n    protocol: h2c\n    backends: [{{address: \"{origin}\"}}]\n\
             routes:\n  - upstream: grpc\n    streaming: true\n"
        ),
    );
    let _p = Parapet::start_with(&ports, &with_h2c_listener(&yaml, h2c));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        for _ in 0..3 {
            let mut client = client.clone().ready().await.unwrap();
            let req = http::Request::post("http://grpc.test/pkg.Echo/Say")
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let (resp, mut send) = client.send_request(req, false).unwrap();
            send.send_data(vec![0u8; 17].into(), true).unwrap();
            let resp = resp.await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut body = resp.into_body();
            let text = h2_body(&mut body).await;
            assert_eq!(String::from_utf8_lossy(&text), "got 17 bytes, te=trailers");
            let trailers = body.trailers().await.unwrap().expect("trailers");
            assert_eq!(trailers["grpc-status"], "0");
            assert_eq!(trailers["grpc-message"], "all-good");
        }
    });
}
