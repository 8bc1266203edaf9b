//! Failover after the request was sent: a backend that resets the
//! connection, never answers, or answers garbage costs an idempotent request
//! nothing (it goes to the other backend), while a POST is never sent twice
//! unless its route says so; bodies over the 64 KiB replay buffer are never
//! retried; the pool's `retry_deadline` stops retries.

mod support;

use support::raw_origin::{Behaviour, RawOrigin};
use support::*;

/// A counter with exactly these labels from /metrics text (0 if absent).
fn counter(text: &str, name: &str, labels: &str) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

/// The faulty backend first, so round robin's first pick hits it.
fn two_backends(faulty: &RawOrigin, good: &Origin, extra_pool: &str) -> (Ports, String) {
    let ports = Ports::new();
    let yaml = base_config(
        &ports,
        &format!(
            "upstreams:\n  app:\n    timeouts: {{read: 300ms}}\n{extra_pool}    backends:\n      - {{address: \"{}\"}}\n      - {{address: \"{}\"}}\n\
             routes:\n  - {{match: {{path_prefix: /unsafe}}, upstream: app, retry_non_idempotent: true}}\n  - upstream: app\n\
             limits: {{max_body_size: 100KiB}}\n",
            faulty.address(),
            good.address()
        ),
    );
    (ports, yaml)
}

fn check_failover(fault: Behaviour, gets: usize) {
    let faulty = RawOrigin::start(fault);
    let good = Origin::start("good");
    let (ports, yaml) = two_backends(&faulty, &good, "");
    let p = Parapet::start_with(&ports, &yaml);
    let failed_status = if fault == Behaviour::Blackhole {
        504
    } else {
        502
    };
    let kind = if fault == Behaviour::Blackhole {
        "timeout"
    } else {
        "read"
    };

    // 1. Every GET succeeds, on the good backend.
    for i in 0..gets {
        let r = request(p.addr(), "GET", &format!("/item/{i}"), &[], b"").unwrap();
        assert_eq!(r.status, 200, "{fault:?} GET {i}: {}", r.text());
        assert_eq!(r.header("x-origin-id"), Some("good"));
        assert!(!r.text().contains("secret"), "origin bytes leaked");
    }
    let tried = faulty.hits();
    assert!(
        tried >= gets / 2,
        "{fault:?}: round robin sent only {tried} of {gets} first tries to the faulty backend"
    );
    let m = p.metrics();
    assert_eq!(
        counter(&m, "parapet_upstream_retries_total", "upstream=\"app\"") as usize,
        tried,
        "{fault:?}: every failed attempt was retried\n{m}"
    );
    assert_eq!(
        counter(
            &m,
            "parapet_upstream_errors_total",
            &format!("kind=\"{kind}\",upstream=\"app\"")
        ) as usize,
        tried,
        "{fault:?}: every failed attempt was counted\n{m}"
    );

    // 2. Other idempotent methods, bodies within the replay buffer included
    //    (60 KiB: replayed through the body-size limit without counting twice).
    let medium = vec![b'm'; 60 * 1024];
    for i in 0..4 {
        for (method, body) in [
            ("HEAD", &b""[..]),
            ("OPTIONS", &b""[..]),
            ("DELETE", &b""[..]),
            ("PUT", &b"x=1"[..]),
            ("PUT", &medium[..]),
        ] {
            let r = request(p.addr(), method, &format!("/m/{i}"), &[], body).unwrap();
            assert_eq!(r.status, 200, "{fault:?} {method} {i}: {}", r.text());
            assert_eq!(r.header("x-origin-id"), Some("good"));
            if method == "PUT" {
                assert_eq!(
                    r.echo().body_len,
                    body.len(),
                    "{fault:?}: body replayed whole"
                );
            }
        }
    }

    // 3. POST: never sent twice. One in two goes to the faulty backend and
    //    fails there; the good backend never sees that request.
    let mut failures = 0;
    for i in 0..4 {
        let (good_before, faulty_before) = (good.hits(), faulty.hits());
        let r = request(p.addr(), "POST", &format!("/form/{i}"), &[], b"a=1").unwrap();
        if r.status == 200 {
            assert_eq!(r.echo().body_len, 3);
            assert_eq!(good.hits(), good_before + 1);
        } else {
            assert_eq!(r.status, failed_status, "{fault:?} POST {i}: {}", r.text());
            assert_eq!(
                good.hits(),
                good_before,
                "{fault:?}: a failed POST was retried"
            );
            assert_eq!(faulty.hits(), faulty_before + 1);
            failures += 1;
        }
    }
    assert!(
        failures >= 1,
        "{fault:?}: no POST reached the faulty backend"
    );

    // 4. ... unless the route allows it.
    for i in 0..4 {
        let r = request(p.addr(), "POST", &format!("/unsafe/{i}"), &[], b"a=1").unwrap();
        assert_eq!(r.status, 200, "{fault:?} unsafe POST {i}: {}", r.text());
        assert_eq!(r.echo().body_len, 3);
    }

    // 5. A body over the 64 KiB replay buffer is never retried (and never
    //    arrives short).
    let large = vec![b'l'; 90 * 1024];
    let mut failures = 0;
    for i in 0..4 {
        let good_before = good.hits();
        let r = request(p.addr(), "PUT", &format!("/large/{i}"), &[], &large).unwrap();
        if r.status == 200 {
            assert_eq!(r.echo().body_len, large.len());
        } else {
            assert_eq!(
                r.status,
                failed_status,
                "{fault:?} large PUT {i}: {}",
                r.text()
            );
            assert_eq!(
                good.hits(),
                good_before,
                "{fault:?}: a truncated body was retried"
            );
            failures += 1;
        }
    }
    assert!(
        failures >= 1,
        "{fault:?}: no large PUT reached the faulty backend"
    );
    assert!(!p.logs().contains("panicked"), "{}", p.logs());
}

#[test]
fn a_reset_after_the_request_is_retried_on_another_backend() {
    check_failover(Behaviour::Reset, 40);
}

#[test]
fn an_unparseable_response_is_retried_on_another_backend() {
    check_failover(Behaviour::Garbage, 40);
}

#[test]
fn a_backend_that_never_answers_is_retried_after_the_read_timeout() {
    // Each faulty attempt costs the 300 ms read timeout.
    check_failover(Behaviour::Blackhole, 20);
}

#[test]
fn no_retry_starts_after_the_retry_deadline() {
    let faulty = RawOrigin::start(Behaviour::Blackhole);
    let good = Origin::start("good");
    // The read timeout (300 ms) outlasts the deadline (100 ms).
    let (ports, yaml) = two_backends(&faulty, &good, "    retry_deadline: 100ms\n");
    let p = Parapet::start_with(&ports, &yaml);
    let mut timeouts = 0;
    for i in 0..4 {
        let good_before = good.hits();
        let r = request(p.addr(), "GET", &format!("/d/{i}"), &[], b"").unwrap();
        if r.status == 504 {
            assert_eq!(good.hits(), good_before, "retried past the deadline");
            timeouts += 1;
        } else {
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
    assert!(timeouts >= 1, "no request reached the blackhole");
    assert_eq!(
        counter(
            &p.metrics(),
            "parapet_upstream_retries_total",
            "upstream=\"app\""
        ),
        0.0
    );
}

#[test]
fn a_lone_backend_that_times_out_still_gets_504() {
    // Nothing to fail over to: the timeout itself is the answer, not a
    // "no usable backend" 502.
    let faulty = RawOrigin::start(Behaviour::Blackhole);
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  app:\n    timeouts: {{read: 200ms}}\n    backends: [{{address: \"{}\"}}]\nroutes:\n  - upstream: app\n",
                faulty.address()
            ),
        ),
    );
    let r = request(p.addr(), "GET", "/", &[], b"").unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(faulty.hits(), 1);
}
