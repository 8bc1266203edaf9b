//! Load balancing against real origins: weighted round robin, consistent
//! hashing with failover and return, health checks and their thresholds,
//! retry on connect failure, clean 502/503/504 without backend details.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::*;

const DEADLINE: Duration = Duration::from_secs(15);

fn origin_of(r: &Response) -> String {
    assert_eq!(
        r.status,
        200,
        "unexpected response: {} {}",
        r.status,
        r.text()
    );
    r.header("x-origin-id").expect("x-origin-id").to_string()
}

#[test]
fn weighted_round_robin_spreads_by_weight() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let c = Origin::start("c");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    backends:\n      - {{address: \"{}\", weight: 3}}\n      - {{address: \"{}\", weight: 1}}\n      - {{address: \"{}\", weight: 2}}\nroutes:\n  - upstream: app\n",
                a.address(),
                b.address(),
                c.address()
            ),
        ),
    );
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut client = Client::connect(p.addr());
    for _ in 0..600 {
        *counts.entry(origin_of(&client.get("/x", &[]))).or_default() += 1;
    }
    // Round robin over the weighted ring is exact for one sequential client.
    assert_eq!(counts.get("a"), Some(&300), "{counts:?}");
    assert_eq!(counts.get("b"), Some(&100), "{counts:?}");
    assert_eq!(counts.get("c"), Some(&200), "{counts:?}");
}

#[test]
fn consistent_hash_is_sticky_fails_over_and_returns() {
    let mut origins: Vec<Origin> = ["h1", "h2", "h3"]
        .iter()
        .map(|id| Origin::start(id))
        .collect();
    let ports = Ports::new();
    let backends: String = origins
        .iter()
        .map(|o| format!("      - {{address: \"{}\"}}\n", o.address()))
        .collect();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    selection: consistent_hash\n    hash_key: \"header:X-User\"\n    backends:\n{backends}    health_check: {{kind: http, path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}}\nroutes:\n  - upstream: app\n"
            ),
        ),
    );
    let users: Vec<String> = (0..60).map(|i| format!("user-{i}")).collect();
    let map = |p: &Parapet| -> HashMap<String, String> {
        users
            .iter()
            .map(|u| (u.clone(), origin_of(&p.get("/cart", &[("X-User", u)]))))
            .collect()
    };
    let before = map(&p);
    assert_eq!(
        before,
        map(&p),
        "the same key must land on the same backend"
    );
    let distinct: std::collections::HashSet<_> = before.values().collect();
    assert_eq!(
        distinct.len(),
        3,
        "60 keys should use all three backends: {before:?}"
    );

    // h2 dies: its keys move, the others stay where they were.
    let victim = 1;
    origins[victim].stop();
    wait_until(DEADLINE, "h2 marked unhealthy", || {
        metric(
            &p.metrics(),
            "parapet_backend_healthy",
            &format!(
                "backend=\"{}\",region=\"\",upstream=\"app\"",
                origins[victim].address()
            ),
        ) == Some(0.0)
    });
    let during = map(&p);
    for u in &users {
        if before[u] == "h2" {
            assert_ne!(during[u], "h2", "{u} must move off the dead backend");
        } else {
            assert_eq!(
                during[u], before[u],
                "{u} must not move: its backend is alive"
            );
        }
    }

    // h2 returns: every key goes back to its original backend.
    origins[victim].restart();
    wait_until(DEADLINE, "h2 healthy again", || {
        metric(
            &p.metrics(),
            "parapet_backend_healthy",
            &format!(
                "backend=\"{}\",region=\"\",upstream=\"app\"",
                origins[victim].address()
            ),
        ) == Some(1.0)
    });
    assert_eq!(map(&p), before, "keys return to the recovered backend");
}

#[test]
fn health_check_thresholds_take_a_backend_out_and_bring_it_back() {
    let good = Origin::start("good");
    let flaky = Origin::start("flaky");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    backends:\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\n    health_check: {{kind: http, path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 2, unhealthy_threshold: 3}}\nroutes:\n  - upstream: app\n",
                good.address(),
                flaky.address()
            ),
        ),
    );
    let labels = format!(
        "backend=\"{}\",region=\"\",upstream=\"app\"",
        flaky.address()
    );
    assert_eq!(
        metric(&p.metrics(), "parapet_backend_healthy", &labels),
        Some(1.0)
    );

    let checks_at_failure = flaky.health_hits();
    flaky.set_healthy(false);
    wait_until(DEADLINE, "flaky marked unhealthy", || {
        metric(&p.metrics(), "parapet_backend_healthy", &labels) == Some(0.0)
    });
    let failed_checks = flaky.health_hits() - checks_at_failure;
    assert!(
        failed_checks >= 3,
        "marked down after {failed_checks} failed checks; threshold is 3"
    );

    // Unhealthy: no traffic at all.
    let hits = flaky.hits();
    for _ in 0..40 {
        assert_eq!(origin_of(&p.get("/", &[])), "good");
    }
    assert_eq!(flaky.hits(), hits, "an unhealthy backend got traffic");

    let checks_at_recovery = flaky.health_hits();
    flaky.set_healthy(true);
    wait_until(DEADLINE, "flaky healthy again", || {
        metric(&p.metrics(), "parapet_backend_healthy", &labels) == Some(1.0)
    });
    assert!(
        flaky.health_hits() - checks_at_recovery >= 2,
        "recovered before 2 passing checks"
    );
    wait_until(DEADLINE, "traffic returns to flaky", || {
        origin_of(&p.get("/", &[])) == "flaky"
    });
    assert!(p.metrics().contains(&format!(
        "parapet_backend_health_changes_total{{backend=\"{}\",to=\"unhealthy\",upstream=\"app\"}} 1",
        flaky.address()
    )));
}

#[test]
fn connect_failure_is_retried_on_another_backend() {
    let live = Origin::start("live");
    let dead = format!("127.0.0.1:{}", free_port());
    let ports = Ports::new();
    // No health check: only the retry protects clients from the dead backend.
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    retries: 1\n    backends:\n      - {{address: \"{dead}\"}}\n      - {{address: \"{}\"}}\nroutes:\n  - upstream: app\n",
                live.address()
            ),
        ),
    );
    for i in 0..50 {
        let r = p.get(&format!("/item/{i}"), &[]);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(origin_of(&r), "live");
    }
    let m = p.metrics();
    let connect_errors = metric(
        &m,
        "parapet_upstream_errors_total",
        "kind=\"connect\",upstream=\"app\"",
    )
    .unwrap_or(0.0);
    let retries = metric(&m, "parapet_upstream_retries_total", "upstream=\"app\"").unwrap_or(0.0);
    assert!(
        connect_errors >= 20.0,
        "round robin sends half the first tries to the dead backend: {connect_errors}"
    );
    assert_eq!(connect_errors, retries, "every connect failure was retried");
    // POST is retried too: nothing was sent before the connect failed.
    for _ in 0..4 {
        let r = request(p.addr(), "POST", "/form", &[], b"a=1").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.echo().body_len, 3);
    }
}

#[test]
fn dead_pool_and_slow_origin_get_clean_edge_errors() {
    let slow = Origin::start("slow");
    let dead = format!("127.0.0.1:{}", free_port());
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  dead:\n    retries: 0\n    backends: [{{address: \"{dead}\"}}]\n  slow:\n    timeouts: {{read: 300ms}}\n    backends: [{{address: \"{}\"}}]\n  gone:\n    backends: [{{address: \"{dead}\"}}]\n    health_check: {{kind: tcp, interval: 100ms, timeout: 200ms, unhealthy_threshold: 1}}\nroutes:\n  - {{match: {{path_prefix: /dead}}, upstream: dead}}\n  - {{match: {{path_prefix: /slow}}, upstream: slow}}\n  - {{match: {{path_prefix: /gone}}, upstream: gone}}\n",
                slow.address()
            ),
        ),
    );
    let r = p.get("/dead/x", &[]);
    assert_eq!(r.status, 502);
    let id = r
        .header("x-request-id")
        .expect("edge errors carry the request id")
        .to_string();
    assert!(r.text().contains(&id));
    let port = dead.rsplit(':').next().unwrap();
    assert!(
        !r.text().contains(port) && !r.text().contains("127.0.0.1"),
        "backend leaked: {}",
        r.text()
    );
    assert!(
        r.headers.iter().all(|(_, v)| !v.contains(port)),
        "backend leaked in headers: {:?}",
        r.headers
    );

    let r = p.get("/slow/2000", &[]);
    assert_eq!(r.status, 504, "{}", r.text());

    wait_until(DEADLINE, "gone pool marked unhealthy", || {
        metric(
            &p.metrics(),
            "parapet_backend_healthy",
            &format!("backend=\"{dead}\",region=\"\",upstream=\"gone\""),
        ) == Some(0.0)
    });
    let r = p.get("/gone/x", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!r.text().contains(port));

    let m = p.metrics();
    assert!(
        metric(
            &m,
            "parapet_upstream_errors_total",
            "kind=\"timeout\",upstream=\"slow\""
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "parapet_upstream_errors_total",
            "kind=\"no_backend\",upstream=\"gone\""
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        metric(
            &m,
            "parapet_edge_responses_total",
            "reason=\"gateway_timeout\""
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    assert!(!p.logs().contains("panicked"), "{}", p.logs());
}

/// An origin that answers every request after `delay`, until `drop` is set;
/// from then on it closes each connection on the next request it receives,
/// without answering. Counts the requests it dropped.
struct DroppingOrigin {
    addr: std::net::SocketAddr,
    drop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DroppingOrigin {
    fn start(delay: Duration) -> DroppingOrigin {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let drop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, n) = (drop.clone(), dropped.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let (d, n) = (d.clone(), n.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    loop {
                        // Read one request head (these requests have no body).
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        if d.load(Ordering::SeqCst) {
                            n.fetch_add(1, Ordering::SeqCst);
                            return; // closes without a response
                        }
                        std::thread::sleep(delay);
                        let body = "ok";
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        DroppingOrigin {
            addr,
            drop,
            dropped,
        }
    }
}

#[test]
fn retries_on_dropped_pooled_connections_stay_within_the_budget() {
    use std::sync::atomic::Ordering;
    let origin = DroppingOrigin::start(Duration::from_millis(300));
    let p = Parapet::in_front_of(&origin.addr.to_string(), "routes:\n  - upstream: o\n");
    // Eight concurrent slow requests leave eight idle connections in the pool.
    let warm: Vec<_> = (0..8)
        .map(|_| {
            let addr = p.addr();
            std::thread::spawn(move || get(addr, "/warm", &[]).status)
        })
        .collect();
    for w in warm {
        assert_eq!(w.join().unwrap(), 200);
    }
    origin.drop.store(true, Ordering::SeqCst);
    let r = p.get("/after", &[]);
    assert_eq!(r.status, 502);
    let attempts = origin.dropped.load(Ordering::SeqCst);
    // The pool's default budget is 2 retries: at most 3 attempts, where
    // Pingora alone would go on to its max_retries (16) or the pool's end.
    assert!(
        (1..=3).contains(&attempts),
        "{attempts} attempts for one request"
    );
}
