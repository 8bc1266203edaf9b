//! The admin API and the status page: token required (401, counted) on
//! every API endpoint; pools with health and per-backend numbers; cache
//! stats; the running config with secrets redacted; a reload that checks the
//! file first; and the server-rendered status page's content.

mod support;

use std::time::Duration;
use support::*;

const TOKEN: &str = "s3cret-token";

fn config(ports: &Ports, o: &Origin, generation: u32) -> String {
    one_pool_config(
        ports,
        &o.address(),
        &format!(
            "routes:\n  - {{name: cached, match: {{path_prefix: /c}}, upstream: o, cache: {{enabled: true}}}}\n  - {{name: main, upstream: o, response_headers: {{set: {{X-Gen: \"{generation}\"}}}}}}\n\
             cache:\n  memory: {{max_size: 8MiB}}\n\
             admin:\n  address: \"127.0.0.1:{}\"\n  token: \"{TOKEN}\"\n",
            ports.admin
        ),
    )
    // base_config already has an admin section; the one above replaces it.
    .replacen(&format!("admin:\n  address: \"127.0.0.1:{}\"\n", ports.admin), "", 1)
}

fn api(p: &Parapet, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    request(p.admin_addr(), method, path, &headers, b"").unwrap()
}

#[test]
fn api_needs_the_token_and_reports_pools_cache_and_config() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let mut p = Parapet::supervise_with(&ports, &config(&ports, &o, 1));
    for path in ["/api/pools", "/api/cache", "/api/config", "/api/status"] {
        let r = api(&p, "GET", path, None);
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(api(&p, "GET", path, Some("s3cret-tokeN")).status, 401);
    }
    assert_eq!(api(&p, "POST", "/api/reload", Some("nope")).status, 401);
    assert!(p.metrics().contains("parapet_admin_auth_failures_total 9"));

    for _ in 0..5 {
        assert_eq!(p.get("/x", &[]).status, 200);
    }
    p.get("/c/obj", &[("X-Respond", "Cache-Control: max-age=60")]);
    p.get("/c/obj", &[("X-Respond", "Cache-Control: max-age=60")]);

    let pools: serde_json::Value =
        serde_json::from_slice(&api(&p, "GET", "/api/pools", Some(TOKEN)).body).unwrap();
    let pool = &pools[0];
    assert_eq!(pool["name"], "o");
    assert_eq!(pool["healthy"], 1);
    let backend = &pool["backends"][0];
    assert_eq!(backend["healthy"], true);
    assert_eq!(backend["backend"], o.address().as_str());
    assert_eq!(
        backend["requests"], 6,
        "5 passes and one cache miss: {pools}"
    );
    assert_eq!(backend["errors"], 0);
    assert!(backend["latency_ms"].as_f64().unwrap() > 0.0);

    // Lookups are counted as the request is logged, just after the client
    // has its response.
    let cache_stats = || -> serde_json::Value {
        serde_json::from_slice(&api(&p, "GET", "/api/cache", Some(TOKEN)).body).unwrap()
    };
    wait_until(Duration::from_secs(5), "both lookups counted", || {
        let c = cache_stats();
        c["lookups"]["hit"] == 1 && c["lookups"]["miss"] == 1
    });
    let cache = cache_stats();
    assert_eq!(cache["lookups"]["hit"], 1, "{cache}");
    assert_eq!(cache["lookups"]["miss"], 1, "{cache}");
    assert_eq!(cache["hit_ratio"], 0.5);
    assert!(cache["stored_bytes"]["memory"].as_i64().unwrap() > 0);
    assert_eq!(cache["memory_capacity_bytes"], 8 << 20);

    let conf = api(&p, "GET", "/api/config", Some(TOKEN));
    assert_eq!(conf.status, 200);
    let text = conf.text();
    assert!(text.contains("<redacted>"), "{text}");
    assert!(!text.contains(TOKEN), "the token never leaves: {text}");
    assert!(text.contains("routes:"), "{text}");

    // Reload: a broken file is refused with its errors, nothing changes.
    p.write_config(&config(&ports, &o, 2).replace("upstream: o,", "upstream: ghost,"));
    let r = api(&p, "POST", "/api/reload", Some(TOKEN));
    assert_eq!(r.status, 422);
    assert!(
        r.text()
            .contains("routes[0].upstream: no upstream named \"ghost\""),
        "{}",
        r.text()
    );
    assert_eq!(p.get("/x", &[]).header("x-gen"), Some("1"));
    // The same file by SIGHUP: the supervisor refuses it, and the serving
    // generation's status shows that.
    p.signal(SIGHUP);
    wait_until(Duration::from_secs(10), "the refusal in the status", || {
        String::from_utf8_lossy(&api(&p, "GET", "/api/status", Some(TOKEN)).body)
            .contains("reload refused: ")
    });
    assert_eq!(p.get("/x", &[]).header("x-gen"), Some("1"));
    // A good file: accepted, and the next generation takes over.
    p.write_config(&config(&ports, &o, 2));
    let r = api(&p, "POST", "/api/reload", Some(TOKEN));
    assert_eq!(r.status, 202, "{}", r.text());
    wait_until(Duration::from_secs(20), "generation 2 answers", || {
        (0..10).all(|_| p.get("/x", &[]).header("x-gen") == Some("2"))
    });
    // The new generation's status knows about the reload.
    let status: serde_json::Value =
        serde_json::from_slice(&api(&p, "GET", "/api/status", Some(TOKEN)).body).unwrap();
    let events = status["reloads"].to_string();
    assert!(events.contains("supervisor started"), "{events}");
    assert!(events.contains("reload: config valid"), "{events}");
}

#[test]
fn without_a_token_the_api_is_off() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(&o.address(), "routes:\n  - upstream: o\n");
    assert_eq!(api(&p, "GET", "/api/pools", Some("anything")).status, 403);
    assert_eq!(api(&p, "POST", "/api/reload", None).status, 403);
}

#[test]
fn status_page_shows_pools_traffic_and_cache() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let p = Parapet::start_with(&ports, &config(&ports, &o, 1));
    p.get("/c/page", &[("X-Respond", "Cache-Control: max-age=60")]);
    let r = request(p.admin_addr(), "GET", "/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let html = r.text();
    for expected in [
        "<meta http-equiv=\"refresh\"",
        "id=\"pools\"",
        &o.address(),
        "1/1 healthy",
        "Cache hit ratio",
        "Cache memory",
        "of 8.0 MiB",
        "id=\"routes\"",
        ">cached<",
        "this generation (pid",
    ] {
        assert!(html.contains(expected), "missing {expected:?} in:\n{html}");
    }
    assert!(!html.contains("<script"), "works without JavaScript");
}
