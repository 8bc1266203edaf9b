//! Every stop signal ends the process within its bounds: `SIGINT` at once
//! (during and after a slowloris run against a per-IP connection cap, where
//! Pingora's own fast shutdown could spin forever), `SIGTERM` after the
//! grace period, and the supervisor with its generations.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn config(ports: &Ports, origin: &Origin) -> String {
    one_pool_config(
        ports,
        &origin.address(),
        "routes:\n  - upstream: o\nlimits:\n  header_timeout: 1s\n  max_connections_per_ip: 50\n",
    )
}

/// Connections that send half a request head and wait; some are refused by
/// the per-IP cap.
fn slowloris(p: &Parapet, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| {
            let mut s = TcpStream::connect(p.addr()).ok()?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").ok()?;
            Some(s)
        })
        .collect()
}

fn stops_within(p: &mut Parapet, sig: i32, bound: Duration) -> Duration {
    let t = Instant::now();
    p.signal(sig);
    match p.wait_exit(bound) {
        Some(_) => t.elapsed(),
        None => panic!("signal {sig}: still running after {bound:?}\n{}", p.logs()),
    }
}

#[test]
fn sigint_ends_the_process_at_once_during_and_after_slowloris() {
    let o = Origin::start("o");
    let mut worst = Duration::ZERO;
    for round in 0..12 {
        let ports = Ports::new();
        let mut p = Parapet::start_with(&ports, &config(&ports, &o));
        // More than the per-IP cap: some are refused at accept.
        let slow = slowloris(&p, 80);
        if round % 2 == 1 {
            // After the run: the slow connections are gone, traffic is back.
            drop(slow);
            wait_until(Duration::from_secs(5), "slow connections gone", || {
                p.metrics()
                    .contains("parapet_downstream_connections_active 0")
            });
            // Connections the kernel queued before they were closed are
            // still accepted (and counted under the cap) for a moment.
            wait_until(Duration::from_secs(5), "served again", || {
                request(p.addr(), "GET", "/", &[], b"").is_ok_and(|r| r.status == 200)
            });
        } else {
            std::mem::forget(slow);
        }
        worst = worst.max(stops_within(&mut p, SIGINT, Duration::from_secs(3)));
    }
    println!("SIGINT: slowest exit {worst:?} over 12 stops");
}

#[test]
fn sigterm_drains_then_exits_within_the_grace_period() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let mut p = Parapet::start_with(&ports, &config(&ports, &o));
    let _slow = slowloris(&p, 80);
    // grace_period_seconds 1 + graceful_shutdown_timeout_seconds 1, plus start-up slack.
    let took = stops_within(&mut p, SIGTERM, Duration::from_secs(6));
    assert!(
        took >= Duration::from_millis(900),
        "SIGTERM drains for the grace period: {took:?}"
    );
}

#[test]
fn sigint_to_the_supervisor_ends_every_generation() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let mut p = Parapet::supervise_with(&ports, &config(&ports, &o));
    let _slow = slowloris(&p, 40);
    stops_within(&mut p, SIGINT, Duration::from_secs(5));
    assert!(
        is_closed(ports.proxy_addr()),
        "no generation is left listening"
    );
}
