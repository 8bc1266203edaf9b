//! Routing precedence, the edge 404, prefix stripping, header rules, forwarding
//! hygiene (X-Forwarded-*, request ids, hidden origin headers) and /metrics.

mod support;

use support::*;

fn edge(origins: &[&Origin], extra: &str) -> (Parapet, Ports) {
    let ports = Ports::new();
    let mut ups = String::from("upstreams:\n");
    for o in origins {
        ups.push_str(&format!(
            "  {}:\n    backends: [{{address: \"{}\"}}]\n",
            o.id(),
            o.address()
        ));
    }
    let p = Parapet::start_with(&ports, &base_config(&ports, &format!("{ups}{extra}")));
    (p, ports)
}

#[test]
fn first_matching_route_wins_and_unrouted_requests_get_404() {
    let api = Origin::start("api");
    let www = Origin::start("www");
    let wild = Origin::start("wild");
    let (p, _) = edge(
        &[&api, &www, &wild],
        "routes:\n\
         - {name: ping, match: {host: api.example.com, path: /v1/ping}, upstream: www}\n\
         - {name: api, match: {host: api.example.com, path_prefix: /v1}, upstream: api, strip_prefix: true}\n\
         - {name: wild, match: {host: '*.example.com'}, upstream: wild}\n\
         - {name: www, match: {host: www.example.org}, upstream: www}\n",
    );
    let via = |host: &str, path: &str| {
        let r = p.get(path, &[("Host", host)]);
        (r.status, r.header("x-origin-id").map(str::to_string), r)
    };
    assert_eq!(
        via("api.example.com", "/v1/ping").1.as_deref(),
        Some("www"),
        "exact path beats the prefix below it"
    );
    let (status, origin, r) = via("API.Example.com:8080", "/v1/users?id=7");
    assert_eq!((status, origin.as_deref()), (200, Some("api")));
    assert_eq!(r.echo().path, "/users?id=7", "prefix stripped, query kept");
    assert_eq!(via("api.example.com", "/v1").2.echo().path, "/");
    assert_eq!(
        via("api.example.com", "/v10").1.as_deref(),
        Some("wild"),
        "prefix is segment-aware"
    );
    assert_eq!(via("deep.sub.example.com", "/").1.as_deref(), Some("wild"));
    assert_eq!(via("www.example.org", "/x").1.as_deref(), Some("www"));

    let (status, origin, r) = via("example.com", "/");
    assert_eq!(status, 404, "the wildcard does not match the apex");
    assert_eq!(origin, None);
    assert!(r.header("x-request-id").is_some());
    assert_eq!(via("unknown.test", "/").0, 404);
    // A 404 from the edge keeps the connection usable.
    let mut c = Client::connect(p.addr());
    assert_eq!(c.get("/", &[("Host", "nowhere.test")]).status, 404);
    assert_eq!(c.get("/x", &[("Host", "www.example.org")]).status, 200);

    let m = p.metrics();
    assert!(
        m.contains("parapet_requests_total{route=\"-\",status_class=\"4xx\"}"),
        "{m}"
    );
    assert!(
        m.contains("parapet_requests_total{route=\"api\",status_class=\"2xx\"}"),
        "{m}"
    );
    assert!(
        m.contains("parapet_edge_responses_total{reason=\"no_route\"}"),
        "{m}"
    );
}

#[test]
fn route_header_rules_apply_both_ways() {
    let o = Origin::start("o");
    let (p, _) = edge(
        &[&o],
        "routes:\n\
         - upstream: o\n\
         \x20 request_headers: {set: {X-Edge: parapet, X-Tenant: t1}, remove: [Cookie]}\n\
         \x20 response_headers: {set: {Cache-Control: no-store}, remove: [X-Origin-Id]}\n",
    );
    let r = p.get("/", &[("Cookie", "secret=1"), ("X-Tenant", "forged")]);
    let e = r.echo();
    assert_eq!(e.header("x-edge"), Some("parapet"));
    assert_eq!(
        e.headers_named("x-tenant"),
        vec!["t1"],
        "set replaces the client's value"
    );
    assert_eq!(e.header("cookie"), None);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-origin-id"), None);
}

#[test]
fn forwarding_headers_request_ids_and_origin_hiding() {
    let o = Origin::start("o");
    let (p, _) = edge(&[&o], "routes:\n  - upstream: o\n");

    // An untrusted client cannot spoof its address, protocol or request id.
    let r = p.get(
        "/a",
        &[
            ("Host", "shop.example.com"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.test"),
            ("X-Request-Id", "forged-id"),
        ],
    );
    let e = r.echo();
    assert_eq!(e.headers_named("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(e.header("x-forwarded-proto"), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some("shop.example.com"));
    let id = e
        .header("x-request-id")
        .expect("request id sent upstream")
        .to_string();
    assert_ne!(id, "forged-id");
    assert_eq!(
        r.header("x-request-id"),
        Some(id.as_str()),
        "same id returned to the client"
    );
    wait_until(
        std::time::Duration::from_secs(5),
        "request id in the access log",
        || p.logs().contains(&format!("\"request_id\":\"{id}\"")),
    );

    // Origin identity stays behind the edge; the edge adds none of its own.
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("via"), None);

    // Ids are unique per request.
    let ids: std::collections::HashSet<String> = (0..50)
        .map(|_| p.get("/", &[]).header("x-request-id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50);
}

#[test]
fn trusted_proxies_keep_the_chain_and_the_request_id() {
    let o = Origin::start("o");
    let (p, _) = edge(
        &[&o],
        "routes:\n  - upstream: o\nforwarding:\n  trusted_proxies: [127.0.0.0/8]\n  request_id_header: X-Trace\n  forwarded: true\n  via: edge-1\n  server_header: parapet\n",
    );
    let r = p.get(
        "/",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Trace", "lb-42"),
        ],
    );
    let e = r.echo();
    assert_eq!(
        e.headers_named("x-forwarded-for"),
        vec!["203.0.113.9, 127.0.0.1"]
    );
    assert_eq!(e.header("x-forwarded-proto"), Some("https"));
    assert_eq!(e.header("x-trace"), Some("lb-42"));
    assert_eq!(
        e.header("x-request-id"),
        None,
        "the configured name replaces X-Request-Id"
    );
    assert_eq!(
        e.header("forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"localhost\"")
    );
    assert_eq!(e.header("via"), Some("1.1 edge-1"));
    assert_eq!(r.header("x-trace"), Some("lb-42"));
    assert_eq!(r.header("server"), Some("parapet"));
    assert_eq!(r.header("via"), Some("1.1 edge-1"));
    // A malformed id from a trusted peer is replaced, not passed on.
    let r = p.get("/", &[("X-Trace", "bad id with spaces")]);
    assert_ne!(r.echo().header("x-trace"), Some("bad id with spaces"));
}

#[test]
fn metrics_endpoint_has_the_core_series() {
    let o = Origin::start("o");
    let (p, ports) = edge(&[&o], "routes:\n  - {name: main, upstream: o}\n");
    let mut c = Client::connect(p.addr());
    for _ in 0..5 {
        assert_eq!(c.get("/", &[]).status, 200);
    }
    // Request metrics are recorded just after the response is sent.
    wait_until(
        std::time::Duration::from_secs(5),
        "5 requests counted",
        || {
            p.metrics()
                .contains("parapet_requests_total{route=\"main\",status_class=\"2xx\"} 5")
        },
    );
    let m = p.metrics();
    for series in [
        "parapet_request_duration_seconds_bucket{route=\"main\",le=\"+Inf\"} 5",
        "parapet_request_duration_seconds_count{route=\"main\"} 5",
        "parapet_upstream_requests_total{upstream=\"o\"} 5",
        &format!(
            "parapet_backend_healthy{{backend=\"{}\",region=\"\",upstream=\"o\"}} 1",
            o.address()
        ),
        "parapet_downstream_connections_active 1",
        "parapet_draining 0",
    ] {
        assert!(m.contains(series), "missing {series:?} in:\n{m}");
    }
    assert!(m.contains("# TYPE parapet_request_duration_seconds histogram"));
    drop(c);
    wait_until(
        std::time::Duration::from_secs(5),
        "connection gauge back to 0",
        || {
            p.metrics()
                .contains("parapet_downstream_connections_active 0")
        },
    );
    // Admin endpoints, and nothing of them on the public listener.
    assert_eq!(get(ports.admin_addr(), "/healthz", &[]).status, 200);
    assert_eq!(get(ports.admin_addr(), "/readyz", &[]).status, 200);
    let status = get(ports.admin_addr(), "/", &[]);
    assert!(status.text().contains(&o.address()) && status.text().contains("healthy"));
    assert_eq!(
        request(ports.admin_addr(), "POST", "/metrics", &[], b"")
            .unwrap()
            .status,
        405
    );
    assert_eq!(
        p.get("/metrics", &[]).echo().path,
        "/metrics",
        "public /metrics goes to the origin"
    );
}

#[test]
fn hop_by_hop_fields_and_connection_named_fields_are_not_forwarded() {
    let o = Origin::start("o");
    let (p, _) = edge(&[&o], "routes:\n  - upstream: o\n");
    let r = p.get(
        "/",
        &[
            ("Connection", "X-Secret, keep-alive"),
            ("X-Secret", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("X-Kept", "yes"),
        ],
    );
    let e = r.echo();
    for name in ["x-secret", "keep-alive", "proxy-connection", "te"] {
        assert_eq!(e.header(name), None, "{name} was forwarded");
    }
    assert_eq!(e.header("x-kept"), Some("yes"));
}

#[test]
fn edge_error_pages_are_configurable_and_name_no_backend() {
    let api = Origin::start("api");
    let page_dir = temp_dir("pages");
    let page = page_dir.join("502.html");
    std::fs::write(&page, "<h1>{status} {reason}</h1><p>ref {request_id}</p>\n").unwrap();
    // A pool whose only backend refuses connections: every request is a 502.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (p, _) = edge(
        &[&api],
        &format!(
            "  dead:\n    retries: 0\n    backends: [{{address: \"{dead_addr}\"}}]\n\
             routes:\n  - {{match: {{host: dead.test}}, upstream: dead}}\n  - {{match: {{host: api.test}}, upstream: api}}\n\
             error_pages:\n  content_type: text/html; charset=utf-8\n  default: {{body: \"edge says {{status}}\"}}\n  pages:\n    \"502\": {{file: \"{}\"}}\n",
            page.display()
        ),
    );
    let r = p.get("/", &[("Host", "dead.test")]);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let id = r.header("x-request-id").expect("request id").to_string();
    assert_eq!(
        r.text(),
        format!("<h1>502 Bad Gateway</h1><p>ref {id}</p>\n"),
        "the configured page, with the request id filled in"
    );
    assert!(!r.text().contains(&dead_addr.port().to_string()));
    let r = p.get("/", &[("Host", "nowhere.test")]);
    assert_eq!((r.status, r.text().as_str()), (404, "edge says 404"));
}
