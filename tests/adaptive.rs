//! Load-aware selection: with one of three backends 10× slower, p2c_ewma and
//! least_connections send it much less than round robin's third.

mod support;

use std::time::Duration;
use support::raw_origin::{Behaviour, RawOrigin};
use support::*;

/// Share of `n` requests (from 6 concurrent clients) the slow backend got.
fn slow_share(selection: &str, n: usize) -> f64 {
    let slow = RawOrigin::start(Behaviour::OkAfter(Duration::from_millis(50)));
    let fast: Vec<RawOrigin> = (0..2)
        .map(|_| RawOrigin::start(Behaviour::OkAfter(Duration::from_millis(5))))
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
    let total = slow.hits() + fast.iter().map(|f| f.hits()).sum::<usize>();
    slow.hits() as f64 / total as f64
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
    let backends: Vec<RawOrigin> = (0..4)
        .map(|_| RawOrigin::start(Behaviour::OkAfter(Duration::from_millis(20))))
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
    let hits: Vec<usize> = backends.iter().map(|b| b.hits()).collect();
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

/// Slow start: a backend back from a failed health check gets a small share
/// at first, its full share once the window has passed.
#[test]
fn a_backend_back_in_service_ramps_up_under_slow_start() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    slow_start: 4s\n    health_check: {{path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}}\n    backends:\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\nroutes:\n  - upstream: app\n",
                a.address(),
                b.address()
            ),
        ),
    );
    let healthy = |o: &Origin| p.backend_healthy("app", &o.address(), "");
    let share_of_b = |n: usize| {
        let to_b = (0..n)
            .filter(|_| p.get("/", &[]).echo().origin == "b")
            .count();
        to_b as f64 / n as f64
    };
    // There from the start: warm, an even split.
    assert_eq!(share_of_b(40), 0.5);
    b.set_healthy(false);
    wait_until(Duration::from_secs(10), "b down", || {
        healthy(&b) == Some(0.0)
    });
    b.set_healthy(true);
    wait_until(Duration::from_secs(10), "b up", || healthy(&b) == Some(1.0));
    let early = share_of_b(40);
    assert!(
        early < 0.35,
        "b got {early} of the traffic right after coming back"
    );
    wait_until(Duration::from_secs(15), "b back to its full share", || {
        share_of_b(40) == 0.5
    });
}
