//! Slowloris: hundreds of connections that never finish their request head
//! are cut after `limits.header_timeout` in total (not per read), while an
//! ordinary client keeps getting quick answers.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

#[test]
fn slow_heads_are_cut_and_normal_clients_are_served() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - upstream: o\nlimits:\n  header_timeout: 1s\n",
    );
    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(p.addr()).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            s
        })
        .collect();
    // A trickler: one more header line every 300 ms, never finishing.
    let mut trickler = TcpStream::connect(p.addr()).unwrap();
    trickler
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();

    // An ordinary client is served promptly while they hang on.
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        assert_eq!(p.get(&format!("/ok/{i}"), &[]).status, 200);
        worst = worst.max(t.elapsed());
        let _ = trickler.write_all(format!("X-Line-{i}: v\r\n").as_bytes());
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest ordinary request took {worst:?}"
    );

    // Every slow connection is closed by the edge, within a bounded time.
    let mut buf = [0u8; 256];
    wait_until(
        Duration::from_secs(10),
        "all slow connections closed",
        || {
            slow.retain_mut(|s| match s.read(&mut buf) {
                Ok(0) => false,
                Ok(_) => false,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    true
                }
                Err(_) => false,
            });
            slow.is_empty()
        },
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "not before the deadline"
    );
    let trickler_closed = loop {
        match trickler.read(&mut buf) {
            Ok(_) => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if opened.elapsed() > Duration::from_secs(10) {
                    break false;
                }
                let _ = trickler.write_all(b"X-More: v\r\n");
            }
            Err(_) => break true,
        }
    };
    assert!(
        trickler_closed,
        "a head trickled one line at a time is cut too (total deadline, not per read)"
    );
    assert_eq!(o.hits(), 20, "no slow request reached the origin");
    // 300 kills in about a second must not become 300 log lines.
    let logs = p.logs();
    let error_lines = logs.lines().filter(|l| l.contains(" ERROR ")).count();
    assert!(
        error_lines <= 60,
        "{error_lines} error lines: the log is not rate limited\n{logs}"
    );
    wait_until(Duration::from_secs(5), "slow clients counted", || {
        p.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("parapet_slow_clients_total "))
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 300.0)
    });
}

#[test]
fn connections_over_the_per_ip_cap_are_closed_at_once() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - upstream: o\nlimits:\n  max_connections_per_ip: 5\n",
    );
    // /readyz answered once a probe connection reached the listener; that
    // connection holds a slot of 127.0.0.1 until the proxy reads its close.
    wait_until(Duration::from_secs(5), "the readiness probe closed", || {
        metric(&p.metrics(), "parapet_downstream_connections_active", "") == Some(0.0)
    });
    let held: Vec<Client> = (0..5).map(|_| Client::connect(p.addr())).collect();
    // The held connections are open (and accepted) once each has been served.
    let mut held = held;
    for c in held.iter_mut() {
        assert_eq!(c.get("/", &[]).status, 200);
    }
    let refused = request(p.addr(), "GET", "/", &[], b"");
    assert!(
        refused.is_err(),
        "a sixth connection from the same IP is closed: {:?}",
        refused.map(|r| r.status)
    );
    drop(held);
    wait_until(Duration::from_secs(5), "slots released", || {
        request(p.addr(), "GET", "/", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert!(p
        .metrics()
        .contains("parapet_connections_refused_total{cap=\"per_ip\"}"));
}
