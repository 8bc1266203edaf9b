//! Passive health (`outlier_detection`): a backend that fails live requests
//! is ejected from selection after a run of failures, for a time that grows
//! with each ejection; `max_ejection_percent` keeps the pool from being
//! emptied; the backend comes back when its time runs out.

mod support;

use std::time::Duration;
use support::raw_origin::{Behaviour, RawOrigin};
use support::*;

fn edge(backends: &[String], outlier: &str, retries: usize) -> Parapet {
    let list: String = backends
        .iter()
        .map(|b| format!("      - {{address: \"{b}\"}}\n"))
        .collect();
    let ports = Ports::new();
    Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    retries: {retries}\n    outlier_detection: {{{outlier}}}\n    backends:\n{list}routes:\n  - upstream: app\n"
            ),
        ),
    )
}

#[test]
fn a_backend_answering_503_is_ejected_and_comes_back_later() {
    let sick = RawOrigin::start(Behaviour::ServiceUnavailable);
    let good = Origin::start("good");
    let p = edge(
        &[sick.addr.to_string(), good.address()],
        "consecutive_5xx: 3, base_ejection_time: 1s, max_ejection_percent: 50",
        0,
    );
    let mut failures = 0;
    for _ in 0..40 {
        let r = p.get("/", &[]);
        if r.status == 503 {
            failures += 1;
        } else {
            assert_eq!(r.status, 200);
        }
    }
    assert_eq!(sick.hits(), 3, "ejected after 3 failures in a row");
    assert_eq!(failures, 3);
    assert_eq!(
        metric(
            &p.metrics(),
            "parapet_outlier_ejections_total",
            "upstream=\"app\""
        ),
        Some(1.0)
    );
    // Back after its ejection time: it gets traffic again (and, still sick,
    // is ejected again, for twice as long).
    wait_until(
        Duration::from_secs(10),
        "the ejected backend back in rotation",
        || {
            let _ = p.get("/", &[]);
            sick.hits() > 3
        },
    );
    for _ in 0..10 {
        let _ = p.get("/", &[]);
    }
    assert_eq!(sick.hits(), 6, "ejected again after 3 more");
    assert_eq!(
        metric(
            &p.metrics(),
            "parapet_outlier_ejections_total",
            "upstream=\"app\""
        ),
        Some(2.0)
    );
}

#[test]
fn max_ejection_percent_never_empties_the_pool() {
    let (a, b) = (
        RawOrigin::start(Behaviour::ServiceUnavailable),
        RawOrigin::start(Behaviour::ServiceUnavailable),
    );
    let good = Origin::start("good");
    // 34% of 3: one backend may be out at a time.
    let p = edge(
        &[a.addr.to_string(), b.addr.to_string(), good.address()],
        "consecutive_5xx: 2, base_ejection_time: 30s, max_ejection_percent: 34",
        0,
    );
    for _ in 0..60 {
        let _ = p.get("/", &[]);
    }
    assert_eq!(
        metric(
            &p.metrics(),
            "parapet_outlier_ejections_total",
            "upstream=\"app\""
        ),
        Some(1.0),
        "only one of the two sick backends is ejected"
    );
    let still_served = a.hits().max(b.hits());
    assert!(
        still_served > 10,
        "the other keeps its share: {}/{}",
        a.hits(),
        b.hits()
    );
}

#[test]
fn gateway_failures_count_too() {
    let dead = free_addr();
    let good = Origin::start("good");
    let p = edge(
        &[dead.to_string(), good.address()],
        "consecutive_gateway_failure: 2, base_ejection_time: 30s, max_ejection_percent: 50",
        2,
    );
    for _ in 0..20 {
        // A refused connection is retried on the good backend.
        assert_eq!(p.get("/", &[]).status, 200);
    }
    assert_eq!(
        metric(
            &p.metrics(),
            "parapet_outlier_ejections_total",
            "upstream=\"app\""
        ),
        Some(1.0)
    );
}

#[test]
fn steering_config_errors_name_their_path() {
    let o = Origin::start("o");
    for (pool, path) in [
        (
            "    outlier_detection: {max_ejection_percent: 150}\n",
            "upstreams.o.outlier_detection.max_ejection_percent",
        ),
        (
            "    outlier_detection: {consecutive_5xx: 0}\n",
            "upstreams.o.outlier_detection.consecutive_5xx",
        ),
        (
            "    selection: consistent_hash\n    hash_balance_factor: 1.0\n",
            "upstreams.o.hash_balance_factor: must be more than 1",
        ),
        (
            "    hash_balance_factor: 1.5\n",
            "upstreams.o.hash_balance_factor: only used with selection: consistent_hash",
        ),
        ("    selection: p2c_fancy\n", "upstreams.o.selection"),
    ] {
        let ports = Ports::new();
        let yaml = base_config(
            &ports,
            &format!(
                "upstreams:\n  o:\n{pool}    backends: [{{address: \"{}\"}}]\nroutes:\n  - upstream: o\n",
                o.address()
            ),
        );
        let (ok, _, err) = check_config(&yaml);
        assert!(!ok && err.contains(path), "{path}: {err}");
    }
}

/// An ejection ends early when the active health check, having failed,
/// passes again: the backend does not wait out its ejection time.
#[test]
fn a_passing_health_check_ends_an_ejection_early() {
    let mut flaky = Origin::start("flaky");
    let good = Origin::start("good");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    retries: 1\n    outlier_detection: {{consecutive_gateway_failure: 2, base_ejection_time: 300s, max_ejection_percent: 50}}\n    health_check: {{path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}\n    backends:\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\nroutes:\n  - upstream: app\n",
                flaky.address(),
                good.address()
            ),
        ),
    );
    flaky.stop();
    // Live requests find it refusing connections before the health check
    // does: ejected (the retry answers the client).
    for _ in 0..6 {
        assert_eq!(p.get("/", &[]).status, 200);
    }
    let labels = format!("backend=\"{}\",upstream=\"app\"", flaky.address());
    assert_eq!(
        metric(&p.metrics(), "parapet_backend_ejected", &labels),
        Some(1.0)
    );
    let address = flaky.address();
    let healthy = || p.backend_healthy("app", &address, "");
    wait_until(Duration::from_secs(10), "health check sees it down", || {
        healthy() == Some(0.0)
    });
    flaky.restart();
    wait_until(Duration::from_secs(10), "health check sees it up", || {
        healthy() == Some(1.0)
    });
    assert_eq!(
        metric(&p.metrics(), "parapet_backend_ejected", &labels),
        Some(0.0)
    );
    wait_until(Duration::from_secs(5), "traffic back on it", || {
        p.get("/", &[]).echo().origin == "flaky"
    });
}
