//! HTTP/2 floods against the edge's h2c listener: PING and SETTINGS floods
//! (the server must stop reading rather than queue answers without bound),
//! a CONTINUATION flood (cut off long before the header block ends), rapid
//! reset (CVE-2023-44487) and MadeYouReset (server-side resets provoked by
//! the client). Floods are written as raw frames, since client libraries
//! refuse to misbehave; an ordinary client on the real `h2` library must keep
//! getting answers throughout, and the origin must see no flood traffic.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block for `GET http://localhost/` using only the static table,
/// so that blocks can be replayed without tracking the dynamic table.
fn get_block() -> Vec<u8> {
    // :method GET, :scheme http, :path /, then :authority as a literal
    // without indexing (name index 1).
    let mut b = vec![0x82, 0x86, 0x84, 0x01, 9];
    b.extend_from_slice(b"localhost");
    b
}

/// A raw h2c connection that has sent the preface and an empty SETTINGS.
fn raw_h2(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(PREFACE).unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).unwrap();
    s
}

/// Writes `chunk` repeatedly until the peer stops reading (a write makes no
/// progress for `stall`), closes, or `cap` bytes went out. Returns the bytes
/// written and whether the peer stopped us (stalled or closed).
fn flood(s: &mut TcpStream, chunk: &[u8], cap: usize, stall: Duration) -> (usize, bool) {
    s.set_write_timeout(Some(stall)).unwrap();
    let mut written = 0;
    while written < cap {
        match s.write(chunk) {
            Ok(0) => return (written, true),
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return (written, true), // timed out (not reading) or reset
        }
    }
    (written, false)
}

/// Reads frames until one of `kind` arrives, the peer closes, or the
/// deadline passes. Returns the frame's payload if it arrived.
fn await_frame(s: &mut TcpStream, kind: u8, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while buf.len() >= 9 {
            let len = (buf[0] as usize) << 16 | (buf[1] as usize) << 8 | buf[2] as usize;
            if buf.len() < 9 + len {
                break;
            }
            let payload = buf[9..9 + len].to_vec();
            let k = buf[3];
            buf.drain(..9 + len);
            if k == kind {
                return Some(payload);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn goaway_code(payload: &[u8]) -> u32 {
    u32::from_be_bytes(payload[4..8].try_into().unwrap())
}

struct Edge {
    origin: Origin,
    parapet: Parapet,
    h2c: SocketAddr,
}

fn edge(h2_limits: &str) -> Edge {
    let origin = Origin::start("o");
    let ports = Ports::new();
    let h2c = free_addr();
    let yaml = one_pool_config(
        &ports,
        &origin.address(),
        &format!("routes:\n  - upstream: o\nlimits:\n  h2: {{{h2_limits}}}\n"),
    );
    let parapet = Parapet::start_with(&ports, &with_h2c_listener(&yaml, h2c));
    Edge {
        origin,
        parapet,
        h2c,
    }
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `n` sequential GETs on the real `h2` client library; each must succeed
/// within `each`. Returns the slowest.
fn ordinary_client(addr: SocketAddr, n: usize, each: Duration) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut slowest = Duration::ZERO;
        for i in 0..n {
            let started = Instant::now();
            let mut client = client.clone().ready().await.unwrap();
            let req = http::Request::get("http://localhost/ordinary")
                .body(())
                .unwrap();
            let (resp, _) = client.send_request(req, true).unwrap();
            let resp = tokio::time::timeout(each, resp)
                .await
                .unwrap_or_else(|_| panic!("request {i} took longer than {each:?}"))
                .unwrap();
            assert_eq!(resp.status(), 200);
            h2_body(&mut resp.into_body()).await;
            slowest = slowest.max(started.elapsed());
        }
        slowest
    })
}

#[test]
fn ping_and_settings_floods_are_backpressured_and_others_are_served() {
    let e = edge("max_concurrent_streams: 100");
    let baseline = rss_kib(e.parapet.pid());
    let ping: Vec<u8> = (0..256).flat_map(|_| frame(PING, 0, 0, &[7; 8])).collect();
    let settings: Vec<u8> = (0..256)
        // SETTINGS_ENABLE_PUSH = 0, again and again: each one demands an ACK.
        .flat_map(|_| frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0]))
        .collect();
    for (name, chunk) in [("PING", ping), ("SETTINGS", settings)] {
        let mut flooder = raw_h2(e.h2c);
        // Never read: the answers pile up on the edge's side unless it stops
        // reading. 64 MiB is ~4 million frames.
        let (written, stopped) = flood(&mut flooder, &chunk, 64 << 20, Duration::from_secs(2));
        assert!(
            stopped,
            "{name} flood: the edge read {written} bytes without pushing back"
        );
        // With the flooder parked, an ordinary client is unaffected.
        let slowest = ordinary_client(e.h2c, 20, Duration::from_secs(2));
        eprintln!(
            "{name} flood: pushed back after {written} bytes; slowest ordinary request {slowest:?}"
        );
        let grown = rss_kib(e.parapet.pid()).saturating_sub(baseline);
        assert!(
            grown < 64 << 10,
            "{name} flood grew the edge by {grown} KiB"
        );
    }
    assert_eq!(
        e.origin.hits(),
        40,
        "only the ordinary requests reached the origin"
    );
}

#[test]
fn continuation_flood_is_cut_off() {
    let e = edge("max_header_list_size: 16KiB");
    let mut s = raw_h2(e.h2c);
    let mut first = get_block();
    // Then header fields that never end: literal, new name, 1000-byte value.
    let mut field = vec![0x00, 4];
    field.extend_from_slice(b"x-fl");
    field.extend_from_slice(&[0x7f, 0xe9, 0x06]); // 1000 = 127 + 873 (0xe9 0x06)
    field.extend_from_slice(&[b'a'; 1000]);
    first.extend_from_slice(&field);
    s.write_all(&frame(HEADERS, END_STREAM, 1, &first)).unwrap();
    let cont: Vec<u8> = (0..16).flat_map(|_| field.clone()).collect();
    let cont = frame(CONTINUATION, 0, 1, &cont);
    let (written, stopped) = flood(&mut s, &cont, 256 << 20, Duration::from_secs(2));
    assert!(
        stopped,
        "a header block of {written} bytes was accepted without end"
    );
    // The edge says why (GOAWAY) or just closes; either way, well before the
    // flood could do harm.
    if let Some(goaway) = await_frame(&mut s, GOAWAY, Duration::from_secs(5)) {
        eprintln!("GOAWAY code {} after {written} bytes", goaway_code(&goaway));
    }
    assert!(written < 8 << 20, "cut off only after {written} bytes");
    ordinary_client(e.h2c, 5, Duration::from_secs(2));
    assert_eq!(
        e.origin.hits(),
        5,
        "the flooded stream never reached the origin"
    );
}

#[test]
fn rapid_reset_is_answered_with_goaway() {
    let e = edge("max_concurrent_streams: 100, max_pending_accept_reset_streams: 20");
    let mut s = raw_h2(e.h2c);
    // HEADERS then RST_STREAM(CANCEL) for streams 1, 3, 5, ... in big
    // batches, the shape of CVE-2023-44487.
    let block = get_block();
    let mut batch = Vec::new();
    let mut stream = 1u32;
    let mut sent = 0usize;
    let mut goaway = None;
    for _ in 0..50 {
        batch.clear();
        for _ in 0..200 {
            batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
            batch.extend(frame(RST_STREAM, 0, stream, &8u32.to_be_bytes()));
            stream += 2;
        }
        if s.write_all(&batch).is_err() {
            break;
        }
        sent += 200;
        s.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let closed = matches!(s.peek(&mut peek), Ok(0));
        s.set_nonblocking(false).unwrap();
        if closed {
            break;
        }
    }
    if goaway.is_none() {
        goaway = await_frame(&mut s, GOAWAY, Duration::from_secs(5));
    }
    let goaway = goaway.expect("the edge must end a rapid-reset connection with GOAWAY");
    assert_eq!(
        goaway_code(&goaway),
        0xb,
        "ENHANCE_YOUR_CALM (sent {sent} reset streams)"
    );
    eprintln!(
        "rapid reset: {sent} streams sent, origin saw {}",
        e.origin.hits()
    );
    assert!(
        e.origin.hits() < sent / 2,
        "most reset streams never become origin requests: {} of {sent}",
        e.origin.hits()
    );
    ordinary_client(e.h2c, 5, Duration::from_secs(2));
}

#[test]
fn made_you_reset_is_answered_with_goaway() {
    let e = edge("max_local_error_reset_streams: 50");
    let mut s = raw_h2(e.h2c);
    // Each stream is a complete GET followed by a WINDOW_UPDATE that
    // overflows the stream's send window, which the server must answer with
    // RST_STREAM (FLOW_CONTROL_ERROR): the server does the resetting, so
    // rapid-reset accounting alone would miss it (CVE-2025-8671).
    let block = get_block();
    let mut stream = 1u32;
    let mut batch = Vec::new();
    for _ in 0..1000 {
        batch.extend(frame(HEADERS, END_STREAM | END_HEADERS, stream, &block));
        batch.extend(frame(
            WINDOW_UPDATE,
            0,
            stream,
            &0x7fff_ffffu32.to_be_bytes(),
        ));
        stream += 2;
    }
    let _ = s.write_all(&batch);
    let goaway = await_frame(&mut s, GOAWAY, Duration::from_secs(10))
        .expect("the edge must end a MadeYouReset connection with GOAWAY");
    assert_eq!(goaway_code(&goaway), 0xb, "ENHANCE_YOUR_CALM");
    ordinary_client(e.h2c, 5, Duration::from_secs(2));
}

/// A stream the client resets while the origin works on it is counted as a
/// cancellation (and logged as 499), not as a bad request from the edge.
#[test]
fn a_cancelled_stream_is_counted_as_cancelled() {
    let e = edge("max_concurrent_streams: 100");
    let (h2c, origin, parapet) = (e.h2c, &e.origin, &e.parapet);
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
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get("http://localhost/slow/1000")
            .body(())
            .unwrap();
        let (resp, mut stream) = client.send_request(req, true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while origin.hits() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(origin.hits(), 1, "the request reached the origin");
        stream.send_reset(h2::Reason::CANCEL);
        drop(resp);
        // The connection stays open (its task runs) while the edge notices.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !parapet
            .metrics()
            .contains("parapet_requests_cancelled_total{protocol=\"h2\"} 1")
        {
            assert!(
                Instant::now() < deadline,
                "the cancellation was not counted\n{}",
                parapet.metrics()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let metrics = parapet.metrics();
    assert!(!metrics.contains("reason=\"bad_request\""), "{metrics}");
}
