//! DNS service discovery for upstream pools (`upstreams.NAME.discovery`),
//! against a real authoritative DNS server (hickory-server, an in-memory
//! zone `test.` the tests change) on a kernel-chosen port of 127.0.0.1, and
//! real origins on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux routes all of
//! 127/8 to the loopback interface) sharing one port, as the addresses of
//! one name do.
//!
//! Records carry a TTL of 600 s, as Docker's DNS hands out: discovery must
//! see changes within its interval anyway.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::dns::*;
use support::*;

/// Origins named `ids` on 127.0.0.1, .2, ... all on one port.
fn origins(ids: &[&str]) -> (u16, Vec<Origin>) {
    let first = Origin::start_on(ids[0], "127.0.0.1:0".parse().unwrap());
    let port = first.addr().port();
    let mut all = vec![first];
    for (i, id) in ids.iter().enumerate().skip(1) {
        all.push(Origin::start_on(
            id,
            SocketAddr::from((ip(i as u8 + 1), port)),
        ));
    }
    (port, all)
}

/// A config with pool `app` over `backends` (YAML flow list items), DNS
/// discovery against `dns` every 200 ms, then `extra` pool keys.
fn config(ports: &Ports, dns: &Dns, backends: &str, extra: &str) -> String {
    base_config(
        ports,
        &format!(
            "upstreams:\n  app:\n    backends: [{backends}]\n    discovery: {{interval: 200ms, resolver: \"{}\"}}\n{extra}routes:\n  - upstream: app\n",
            dns.addr
        ),
    )
}

/// Sends `n` requests through `edge`; each must succeed.
fn traffic(edge: &Parapet, n: usize) {
    for _ in 0..n {
        let r = edge.get("/", &[]);
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// Keeps sending requests until `origin` gets one.
fn until_reached(edge: &Parapet, origin: &Origin) {
    wait_until(DEADLINE, &format!("{} gets traffic", origin.id()), || {
        traffic(edge, 3);
        origin.hits() > 0
    });
}

/// Keeps sending requests until a round of them misses `origin`.
fn until_avoided(edge: &Parapet, origin: &Origin) {
    wait_until(
        DEADLINE,
        &format!("{} gets no traffic", origin.id()),
        || {
            let before = origin.hits();
            traffic(edge, 6);
            origin.hits() == before
        },
    );
}

/// `parapet_upstream_discovered_backends` of pool `app`.
fn discovered(edge: &Parapet) -> f64 {
    metric(
        &edge.metrics(),
        "parapet_upstream_discovered_backends",
        "upstream=\"app\"",
    )
    .unwrap_or(0.0)
}

/// `parapet_upstream_discovery_failures_total` of pool `app`.
fn failures(edge: &Parapet) -> f64 {
    metric(
        &edge.metrics(),
        "parapet_upstream_discovery_failures_total",
        "upstream=\"app\"",
    )
    .unwrap_or(0.0)
}

/// Waits until two more lookups failed than now.
fn until_two_more_failures(edge: &Parapet, what: &str) {
    let before = failures(edge);
    wait_until(DEADLINE, &format!("{what} is counted"), || {
        failures(edge) >= before + 2.0
    });
}

/// Hits per origin since `before` (from [`hits`]).
fn hits_since(o: &[Origin], before: &[usize]) -> Vec<usize> {
    o.iter().zip(before).map(|(o, b)| o.hits() - b).collect()
}

fn hits(o: &[Origin]) -> Vec<usize> {
    o.iter().map(Origin::hits).collect()
}

/// A started edge with pool `app` over the one entry `app.test:PORT`.
fn edge_over_app_test(dns: &Dns, port: u16, extra: &str) -> Parapet {
    let ports = Ports::new();
    let backends = format!("{{address: \"app.test:{port}\"}}");
    Parapet::start_with(&ports, &config(&ports, dns, &backends, extra))
}

const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn every_record_is_a_backend_and_changes_apply_without_reload() {
    let dns = Dns::start();
    let (port, o) = origins(&["one", "two", "three"]);
    dns.set("app.test.", &[ip(1), ip(2)]);
    let edge = edge_over_app_test(&dns, port, "");
    let pid = edge.pid();

    traffic(&edge, 10);
    assert_eq!(hits(&o), [5, 5, 0]);
    assert_eq!(discovered(&edge), 2.0);

    // A record added: traffic reaches it, same process.
    dns.set("app.test.", &[ip(1), ip(2), ip(3)]);
    until_reached(&edge, &o[2]);
    assert_eq!(discovered(&edge), 3.0);

    // A record removed: no more traffic to it.
    dns.set("app.test.", &[ip(2), ip(3)]);
    until_avoided(&edge, &o[0]);
    let before = hits(&o);
    traffic(&edge, 10);
    assert_eq!(hits_since(&o, &before), [0, 5, 5]);
    assert_eq!(discovered(&edge), 2.0);
    assert_eq!(failures(&edge), 0.0);
    assert_eq!(edge.pid(), pid);
    let logs = edge.logs();
    assert!(logs.contains("now resolves to"), "{logs}");
}

#[test]
fn a_failing_dns_server_leaves_the_last_good_set_serving() {
    let dns = Dns::start();
    let (port, o) = origins(&["one", "two"]);
    dns.set("app.test.", &[ip(1), ip(2)]);
    let mut edge = edge_over_app_test(&dns, port, "");
    traffic(&edge, 4);
    assert_eq!(hits(&o), [2, 2]);

    for (mode, what) in [(Mode::ServFail, "SERVFAIL"), (Mode::Silent, "no answer")] {
        dns.set_mode(mode);
        until_two_more_failures(&edge, what);
        let before = hits(&o);
        traffic(&edge, 10);
        assert_eq!(hits_since(&o, &before), [5, 5], "{what}");
        assert_eq!(discovered(&edge), 2.0);
    }

    // The name gone (NXDOMAIN) is a failed lookup too, not "no backends".
    dns.set("app.test.", &[]);
    dns.set_mode(Mode::Answer);
    until_two_more_failures(&edge, "NXDOMAIN");
    let before = hits(&o);
    traffic(&edge, 10);
    assert_eq!(hits_since(&o, &before), [5, 5]);

    // Logged when the failures began, then at most once a minute, not
    // once per lookup (there were six or more).
    let logs = edge.logs();
    assert_eq!(logs.matches("does not resolve").count(), 1, "{logs}");
    assert!(edge.try_wait().is_none());
    assert!(dns.queries() > 0);
}

#[test]
fn a_name_that_does_not_resolve_yet_is_a_warning_and_joins_when_it_does() {
    let dns = Dns::start();
    let (port, o) = origins(&["one", "late"]);
    let ports = Ports::new();
    let backends = format!("{{address: \"127.0.0.1:{port}\"}}, {{address: \"late.test:{port}\"}}");
    let yaml = config(&ports, &dns, &backends, "");

    // -t: a warning with the YAML path, exit 0.
    let (ok, stdout, stderr) = check_config(&yaml);
    assert!(ok, "{stderr}");
    let expected = format!(
        "warning: upstreams.app.backends[1].address: \"late.test:{port}\" does not resolve yet"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("discovery keeps trying"), "{stderr}");
    assert!(stdout.contains("is OK"), "{stdout}");

    // Without discovery the same name is an error, as before.
    let strict = yaml.replace(
        &format!(
            "    discovery: {{interval: 200ms, resolver: \"{}\"}}\n",
            dns.addr
        ),
        "",
    );
    assert_ne!(strict, yaml);
    let (ok, _, stderr) = check_config(&strict);
    assert!(!ok);
    assert!(
        stderr.contains("upstreams.app.backends[1].address: invalid socket address"),
        "{stderr}"
    );

    // It starts with what resolves, counts the name that did not...
    let edge = Parapet::start_with(&ports, &yaml);
    traffic(&edge, 4);
    assert_eq!(hits(&o), [4, 0]);
    assert!(failures(&edge) >= 1.0);
    assert_eq!(discovered(&edge), 1.0);
    let logs = edge.logs();
    assert!(logs.contains("does not resolve yet"), "{logs}");

    // ...and takes it in once it resolves.
    dns.set("late.test.", &[ip(2)]);
    until_reached(&edge, &o[1]);
    assert_eq!(discovered(&edge), 2.0);
    let logs = edge.logs();
    assert!(logs.contains("resolves again"), "{logs}");
}

#[test]
fn an_address_that_stays_keeps_its_health_across_a_change() {
    let dns = Dns::start();
    let (port, o) = origins(&["one", "two", "three"]);
    dns.set("app.test.", &[ip(1), ip(2)]);
    // Down after one failed check, back only after 1000 passes: once down,
    // `two` stays down for this test unless its health is forgotten.
    let health = "    health_check: {kind: http, path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1000, unhealthy_threshold: 1}\n";
    let edge = edge_over_app_test(&dns, port, health);
    o[1].set_healthy(false);
    until_avoided(&edge, &o[1]);
    o[1].set_healthy(true);
    let checks = o[1].health_hits();
    wait_until(DEADLINE, "two passes checks again", || {
        o[1].health_hits() >= checks + 3
    });

    // A change that still lists `two`.
    dns.set("app.test.", &[ip(1), ip(2), ip(3)]);
    until_reached(&edge, &o[2]);
    let before = hits(&o);
    traffic(&edge, 20);
    let since = hits_since(&o, &before);
    assert_eq!(since[1], 0, "two got traffic: its health was reset");
    assert_eq!(since[0] + since[2], 20);
}

#[test]
fn without_a_resolver_the_system_configuration_is_used() {
    // `localhost` comes from /etc/hosts, which the system configuration
    // reads first, as getaddrinfo does.
    let ports = Ports::new();
    let yaml = base_config(
        &ports,
        "upstreams:\n  app:\n    backends: [{address: \"localhost:9\"}]\n    discovery: {interval: 1s}\nroutes:\n  - upstream: app\n",
    );
    let (ok, _, stderr) = check_config(&yaml);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

#[test]
fn a_name_that_does_not_resolve_does_not_stop_a_reload() {
    // The supervisor checks a config inside its runtime before handing over:
    // lookups at load must work there too.
    let dns = Dns::start();
    let (port, _o) = origins(&["one"]);
    let ports = Ports::new();
    let backends = format!("{{address: \"127.0.0.1:{port}\"}}, {{address: \"late.test:{port}\"}}");
    let yaml = |n: usize| {
        config(&ports, &dns, &backends, "").replace(
            "  - upstream: app\n",
            &format!(
                "  - upstream: app\n    response_headers: {{set: {{X-Generation: \"{n}\"}}}}\n"
            ),
        )
    };
    let generation = |edge: &Parapet| {
        request(edge.addr(), "GET", "/", &[], b"")
            .ok()
            .and_then(|r| r.header("x-generation").map(str::to_string))
    };
    let mut edge = Parapet::supervise_with(&ports, &yaml(1));
    assert_eq!(generation(&edge).as_deref(), Some("1"));
    edge.write_config(&yaml(2));
    edge.signal(SIGHUP);
    wait_until(DEADLINE, "generation 2 serving", || {
        generation(&edge).as_deref() == Some("2")
    });
    let logs = edge.logs();
    assert!(!logs.contains("reload refused"), "{logs}");
    assert!(logs.contains("does not resolve yet"), "{logs}");
}
