//! Request filters, size limits and rate limits against the real edge: each
//! refusal has its status, a counter, and the origin never sees the request.

mod support;

use support::*;

fn edge(o: &Origin, rest: &str) -> Parapet {
    Parapet::in_front_of(&o.address(), rest)
}

#[test]
fn filters_refuse_with_their_status_and_the_origin_sees_nothing() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "security:\n  deny_paths: [/admin]\n  deny_path_patterns: ['\\.(git|env)(/|$)']\n  deny_headers: [{name: User-Agent, pattern: '(?i)sqlmap'}]\n\
         routes:\n\
         - {name: ro, match: {path_prefix: /ro}, upstream: o, security: {methods: [GET, HEAD]}}\n\
         - {name: private, match: {path_prefix: /private}, upstream: o, security: {deny: [127.0.0.0/8]}}\n\
         - {name: keyed, match: {path_prefix: /keyed}, upstream: o, security: {require_headers: [X-Api-Key]}}\n\
         - {name: rest, upstream: o}\n",
    );
    /// (method, path, request headers, expected status)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("GET", "/admin/users", &[], 403),
        ("GET", "/app/.git/config", &[], 403),
        ("GET", "/x", &[("User-Agent", "sqlmap/1.7")], 403),
        ("POST", "/ro/item", &[], 405),
        ("GET", "/private/x", &[], 403),
        ("GET", "/keyed/x", &[], 403),
    ];
    for (method, path, headers, status) in cases {
        let r = request(p.addr(), method, path, headers, b"").unwrap();
        assert_eq!(r.status, *status, "{method} {path}");
        assert!(r.header("x-request-id").is_some());
    }
    assert_eq!(o.hits(), 0, "no refused request reached the origin");
    for (method, path, headers) in [
        ("GET", "/ro/item", &[][..]),
        ("GET", "/keyed/x", &[("X-Api-Key", "k")][..]),
        ("GET", "/public/admin", &[][..]),
    ] {
        assert_eq!(
            request(p.addr(), method, path, headers, b"")
                .unwrap()
                .status,
            200,
            "{path}"
        );
    }
    let m = p.metrics();
    for reason in [
        "path_denied",
        "header_denied",
        "method_not_allowed",
        "ip_denied",
        "header_required",
    ] {
        assert!(
            m.contains(&format!(
                "parapet_requests_refused_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{m}"
        );
    }
}

#[test]
fn size_limits_have_their_statuses() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "limits: {max_uri_length: \"64\", max_header_count: 20, max_header_bytes: 2KiB, max_body_size: \"100\"}\nroutes:\n  - upstream: o\n",
    );
    let long = format!("/{}", "a".repeat(100));
    assert_eq!(p.get(&long, &[]).status, 414);
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("X-H{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(p.get("/", &many).status, 431);
    let big = "b".repeat(3000);
    assert_eq!(p.get("/", &[("X-Big", &big)]).status, 431);
    assert_eq!(
        request(p.addr(), "POST", "/", &[], &[b'x'; 200])
            .unwrap()
            .status,
        413
    );
    assert_eq!(o.hits(), 0);
    // A chunked body is counted as it streams.
    let chunk = "x".repeat(150);
    let raw_req = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len());
    let answer = String::from_utf8_lossy(&raw(p.addr(), raw_req.as_bytes())).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        request(p.addr(), "POST", "/", &[], &[b'x'; 100])
            .unwrap()
            .status,
        200,
        "at the limit is fine"
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after_per_client() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "rate_limit: {rate: 1000, burst: 1000}\nroutes:\n\
         - {name: api, match: {path_prefix: /api}, upstream: o, rate_limit: {rate: 0.5, burst: 3, key: 'header:X-Client'}}\n\
         - {name: rest, upstream: o}\n",
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| p.get("/api/x", &[("X-Client", "alice")]).status)
        .collect();
    assert_eq!(
        statuses,
        vec![200, 200, 200, 429, 429],
        "burst of 3, then limited"
    );
    let r = p.get("/api/x", &[("X-Client", "alice")]);
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=2).contains(&retry),
        "one token every 2 s: Retry-After {retry}"
    );
    assert_eq!(
        p.get("/api/x", &[("X-Client", "bob")]).status,
        200,
        "another client has its own bucket"
    );
    assert_eq!(
        p.get("/other", &[("X-Client", "alice")]).status,
        200,
        "other routes are not limited"
    );
    assert!(p
        .metrics()
        .contains("parapet_requests_refused_total{reason=\"rate_limited\"} 3"));
}

#[test]
fn saturated_pools_and_greedy_clients_are_answered_at_once() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "upstreams:\n  slow:\n    max_in_flight: 2\n    backends: [{{address: \"{}\"}}]\n  other:\n    backends: [{{address: \"{}\"}}]\nroutes:\n  - {{match: {{path_prefix: /slow}}, upstream: slow}}\n  - {{match: {{path_prefix: /o}}, upstream: other, strip_prefix: true}}\n  - {{upstream: other}}\nlimits:\n  max_in_flight_per_client: 3\n",
                o.address(),
                o.address()
            ),
        ),
    );
    let addr = p.addr();
    // Two slow requests fill the pool...
    let holders: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || request(addr, "GET", "/slow/1500", &[], b"").unwrap().status)
        })
        .collect();
    wait_until(
        std::time::Duration::from_secs(5),
        "two requests at the origin",
        || o.hits() == 2,
    );
    // ...so a third gets 503 immediately, while other pools still answer.
    let started = std::time::Instant::now();
    assert_eq!(p.get("/slow/1", &[]).status, 503);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "no queueing"
    );
    assert_eq!(p.get("/other", &[]).status, 200);
    // The same client now has 2 in flight; one more is allowed, a fourth is not.
    // A slot is released just after its response reaches the client, so the
    // third request is retried until the /other request's slot is free.
    let mut third: Option<std::thread::JoinHandle<u16>> = None;
    wait_until(
        std::time::Duration::from_secs(5),
        "third request at the origin",
        || {
            if third.as_ref().is_none_or(|t| t.is_finished()) {
                third = Some(std::thread::spawn(move || {
                    request(addr, "GET", "/o/slow/1500", &[], b"")
                        .unwrap()
                        .status
                }));
            }
            o.hits() == 4
        },
    );
    let third = third.unwrap();
    assert_eq!(
        p.get("/other", &[]).status,
        429,
        "a fourth concurrent request from one client"
    );
    for h in holders {
        assert_eq!(h.join().unwrap(), 200);
    }
    assert_eq!(third.join().unwrap(), 200);
    wait_until(
        std::time::Duration::from_secs(5),
        "slots are released",
        || p.get("/slow/1", &[]).status == 200,
    );
    let m = p.metrics();
    assert!(
        m.contains("parapet_requests_refused_total{reason=\"pool_saturated\"}"),
        "{m}"
    );
    assert!(
        m.contains("parapet_requests_refused_total{reason=\"client_concurrency\"}"),
        "{m}"
    );
}

#[test]
fn misbehaving_clients_are_blocked_for_a_while_unless_never_blocked() {
    let o = Origin::start("o");
    let routes = "routes:\n  - {match: {host: ok.test}, upstream: o}\n";
    let p = edge(
        &o,
        &format!("{routes}behaviour: {{threshold: 5, half_life: 60s, block_for: 1s}}\n"),
    );
    // Six 404s: 1 point each, decaying slowly (half-life 60 s), cross 5.
    for _ in 0..6 {
        assert_eq!(p.get("/probe", &[("Host", "nothing.test")]).status, 404);
    }
    // Scores are recorded just after each response goes out.
    let mut blocked = None;
    wait_until(
        std::time::Duration::from_secs(5),
        "a run of 404s blocks the client",
        || {
            let r = p.get("/", &[("Host", "ok.test")]);
            let hit = r.status == 403;
            blocked = Some(r);
            hit
        },
    );
    assert!(
        blocked.unwrap().header("retry-after").is_some(),
        "the 403 says when to retry"
    );
    wait_until(
        std::time::Duration::from_secs(5),
        "the block runs out",
        || p.get("/", &[("Host", "ok.test")]).status == 200,
    );
    let m = p.metrics();
    assert!(m.contains("parapet_clients_blocked_total 1"), "{m}");
    assert!(m.contains("parapet_clients_unblocked_total 1"), "{m}");

    let q = edge(
        &o,
        &format!(
            "{routes}behaviour: {{threshold: 5, block_for: 1m, never_block: [127.0.0.0/8]}}\n"
        ),
    );
    for _ in 0..20 {
        q.get("/probe", &[("Host", "nothing.test")]);
    }
    assert_eq!(
        q.get("/", &[("Host", "ok.test")]).status,
        200,
        "never_block clients are never blocked"
    );
}

#[test]
fn http2_limits_are_advertised_and_enforced_by_the_h2_layer() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let h2c = free_addr();
    let yaml = one_pool_config(&ports, &o.address(), "routes:\n  - upstream: o\nlimits:\n  h2: {max_concurrent_streams: 7, max_header_list_size: 4KiB}\n")
    ;
    let _p = Parapet::start_with(&ports, &with_h2c_listener(&yaml, h2c));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(h2c).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let get = |extra: Option<String>| {
            let mut b = http::Request::builder()
                .uri("http://localhost/")
                .method("GET");
            if let Some(v) = extra {
                b = b.header("x-big", v);
            }
            b.body(()).unwrap()
        };
        let (resp, _) = client.send_request(get(None), true).unwrap();
        assert_eq!(resp.await.unwrap().status(), 200);
        assert_eq!(
            client.current_max_send_streams(),
            7,
            "the configured stream limit is advertised"
        );
        // A header list over the limit is refused by the h2 layer, not forwarded.
        let (resp, _) = client
            .send_request(get(Some("v".repeat(8000))), true)
            .unwrap();
        let refused = match resp.await {
            Ok(r) => r.status() == 431 || r.status() == 400,
            Err(_) => true,
        };
        assert!(refused, "an oversized header list must not be served");
    });
    assert_eq!(o.hits(), 1);
}

/// With no `max_connections` configured, the cap is half the open-file
/// limit: a connection flood is refused at accept instead of exhausting file
/// descriptors, and connections under the cap are still served.
#[test]
fn connections_are_capped_by_default_at_half_the_file_limit() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let yaml = one_pool_config(&ports, &o.address(), "routes:\n  - upstream: o\n");
    let p = Parapet::start_with_file_limit(&ports, &yaml, 600);
    let held: Vec<std::net::TcpStream> = (0..340)
        .filter_map(|_| std::net::TcpStream::connect(p.addr()).ok())
        .collect();
    let refused = |p: &Parapet| {
        metric(
            &p.metrics(),
            "parapet_connections_refused_total",
            "cap=\"total\"",
        )
        .unwrap_or(0.0)
    };
    wait_until(
        std::time::Duration::from_secs(5),
        "connections over 300 refused",
        || refused(&p) >= 30.0,
    );
    drop(held);
    wait_until(
        std::time::Duration::from_secs(5),
        "served again once they are gone",
        || request(p.addr(), "GET", "/", &[], b"").is_ok_and(|r| r.status == 200),
    );
    assert!(
        refused(&p) <= 45.0,
        "only those over the cap: {}",
        refused(&p)
    );
}
