//! Load-aware selection: with one of three backends 10× slower, p2c_ewma and
//! least_connections send it much less than round robin's third.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// An origin answering `200` after `delay`, counting requests.
struct Delayed {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Delayed {
    fn start(delay: Duration) -> Delayed {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(delay);
                        if conn
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Delayed { addr, hits }
    }
}

/// Share of `n` requests (from 6 concurrent clients) the slow backend got.
fn slow_share(selection: &str, n: usize) -> f64 {
    let slow = Delayed::start(Duration::from_millis(50));
    let fast: Vec<Delayed> = (0..2)
        .map(|_| Delayed::start(Duration::from_millis(5)))
        .collect();
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    selection: {selection}\n    backends:\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\nroutes:\n  - upstream: app\n",
                slow.addr, fast[0].addr, fast[1].addr
            ),
        ),
    );
    let addr = p.addr();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..n / 6 {
                    assert_eq!(get(addr, "/", &[]).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = slow.hits.load(Ordering::SeqCst)
        + fast
            .iter()
            .map(|f| f.hits.load(Ordering::SeqCst))
            .sum::<usize>();
    slow.hits.load(Ordering::SeqCst) as f64 / total as f64
}

#[test]
fn a_slow_backend_gets_less_traffic_under_load_aware_selection() {
    let rr = slow_share("round_robin", 180);
    let lc = slow_share("least_connections", 180);
    let p2c = slow_share("p2c_ewma", 180);
    println!(
        "slow backend's share: round robin {rr:.2}, least_connections {lc:.2}, p2c_ewma {p2c:.2}"
    );
    assert!(
        (0.28..0.39).contains(&rr),
        "round robin gives it a third: {rr}"
    );
    assert!(lc < 0.2, "least_connections: {lc}");
    assert!(p2c < 0.2, "p2c_ewma: {p2c}");
}

/// Shares of 4 backends for one hot key from 8 concurrent clients.
fn hot_key_shares(extra: &str) -> Vec<f64> {
    let backends: Vec<Delayed> = (0..4)
        .map(|_| Delayed::start(Duration::from_millis(20)))
        .collect();
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{address: \"{}\"}}\n", b.addr))
        .collect();
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    selection: consistent_hash\n    hash_key: \"header:X-Key\"\n{extra}    backends:\n{list}routes:\n  - upstream: app\n"
            ),
        ),
    );
    let addr = p.addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    assert_eq!(get(addr, "/", &[("X-Key", "hot")]).status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let hits: Vec<usize> = backends
        .iter()
        .map(|b| b.hits.load(Ordering::SeqCst))
        .collect();
    let total: usize = hits.iter().sum();
    hits.iter().map(|h| *h as f64 / total as f64).collect()
}

#[test]
fn a_hot_key_spills_over_under_bounded_load_hashing() {
    let plain = hot_key_shares("");
    let bounded = hot_key_shares("    hash_balance_factor: 1.25\n");
    println!("hot key shares: plain {plain:.2?}, bounded {bounded:.2?}");
    let max = |s: &[f64]| s.iter().cloned().fold(0.0, f64::max);
    assert_eq!(
        max(&plain),
        1.0,
        "plain consistent hashing sends a key to one backend"
    );
    assert!(max(&bounded) < 0.6, "bounded: {bounded:?}");
    assert!(
        bounded.iter().filter(|s| **s > 0.0).count() >= 3,
        "{bounded:?}"
    );
}
