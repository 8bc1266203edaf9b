//! The edge cache against real origins that count their requests: storage
//! and freshness rules, Vary, revalidation, stale serving, coalescing,
//! invalidation, bounds. Freshness arithmetic with an injected clock is unit
//! tested in src/cache/policy.rs; here the origin says how old a response is.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;
use support::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn edge(origin: &Origin, cache: &str) -> Parapet {
    Parapet::in_front_of(
        &origin.address(),
        &format!("routes:\n  - upstream: o\n    cache: {{enabled: true}}\n{cache}"),
    )
}

fn status_of(r: &Response) -> String {
    r.header("cache-status").unwrap_or("").to_string()
}

/// GETs `path` with the given response instructions for the origin.
fn fetch(p: &Parapet, path: &str, respond: &[&str], extra: &[(&str, &str)]) -> Response {
    let mut headers: Vec<(&str, &str)> = respond.iter().map(|r| ("X-Respond", *r)).collect();
    headers.extend_from_slice(extra);
    p.get(path, &headers)
}

#[test]
fn miss_then_hits_and_head_shares_the_entry() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let cc = ["Cache-Control: public, max-age=60"];
    let first = fetch(&p, "/a", &cc, &[]);
    assert_eq!(first.status, 200);
    assert_eq!(status_of(&first), "parapet; fwd=miss; stored");
    for _ in 0..5 {
        let r = fetch(&p, "/a", &cc, &[]);
        assert!(
            status_of(&r).starts_with("parapet; hit; ttl="),
            "{}",
            status_of(&r)
        );
        assert_eq!(r.body, first.body);
        assert!(r.header("age").is_some());
    }
    let head = request(p.addr(), "HEAD", "/a", &[], b"").unwrap();
    assert!(
        status_of(&head).contains("hit"),
        "HEAD is served from GET's entry"
    );
    assert_eq!(o.hits(), 1, "one origin fetch for 7 requests");
    // Query strings are part of the key.
    fetch(&p, "/a?x=1", &cc, &[]);
    assert_eq!(o.hits(), 2);
    wait_until(DEADLINE, "lookup metrics", || {
        p.metrics()
            .contains("parapet_cache_lookups_total{result=\"hit\"} 6")
    });
    assert!(p
        .metrics()
        .contains("parapet_cache_stored_objects{tier=\"memory\"} 2"));
}

#[test]
fn responses_the_rfc_forbids_storing_are_not_stored() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    /// (path, origin response headers, request headers, Cache-Status detail)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "/no-store",
            &["Cache-Control: no-store, max-age=60"],
            &[],
            "no-store",
        ),
        (
            "/private",
            &["Cache-Control: private, max-age=60"],
            &[],
            "private",
        ),
        (
            "/auth",
            &["Cache-Control: max-age=60"],
            &[("Authorization", "Bearer x")],
            "authorization",
        ),
        (
            "/vary-star",
            &["Cache-Control: max-age=60", "Vary: *"],
            &[],
            "vary-star",
        ),
        ("/nothing", &[], &[], "no-freshness"),
    ];
    for (path, respond, extra, why) in cases {
        let before = o.hits();
        for _ in 0..3 {
            let r = fetch(&p, path, respond, extra);
            assert_eq!(r.status, 200);
            assert_eq!(
                status_of(&r),
                format!("parapet; fwd=miss; detail={why}"),
                "{path}"
            );
        }
        assert_eq!(o.hits() - before, 3, "{path} must not be served from cache");
    }
    // Authorization with public is storable.
    let before = o.hits();
    for _ in 0..3 {
        fetch(
            &p,
            "/auth-public",
            &["Cache-Control: public, max-age=60"],
            &[("Authorization", "Bearer x")],
        );
    }
    assert_eq!(o.hits() - before, 1);
}

#[test]
fn origin_age_counts_against_freshness() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    fetch(&p, "/aged", &["Cache-Control: max-age=100", "Age: 40"], &[]);
    let r = fetch(&p, "/aged", &["Cache-Control: max-age=100", "Age: 40"], &[]);
    let ttl: i64 = status_of(&r)
        .rsplit("ttl=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (58..=60).contains(&ttl),
        "100 s lifetime minus 40 s of age: {}",
        status_of(&r)
    );
    let age: u64 = r.header("age").unwrap().parse().unwrap();
    assert!((40..=42).contains(&age), "age {age}");
    // Already as old as its lifetime: stale on arrival, fetched again.
    let before = o.hits();
    fetch(
        &p,
        "/old",
        &["Cache-Control: max-age=100", "Age: 100", "ETag: \"v\""],
        &[],
    );
    let r = fetch(&p, "/old", &["Cache-Control: max-age=100", "Age: 100"], &[]);
    assert_eq!(o.hits() - before, 2, "{}", status_of(&r));
}

#[test]
fn targeted_field_beats_cache_control() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let respond = ["Cache-Control: no-store", "CDN-Cache-Control: max-age=60"];
    for _ in 0..3 {
        fetch(&p, "/cdn", &respond, &[]);
    }
    assert_eq!(o.hits(), 1);
}

#[test]
fn vary_keeps_variants_apart() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let cc = ["Cache-Control: max-age=60", "Vary: Accept-Language"];
    let lang = |l: &'static str| -> Vec<(&str, &str)> {
        if l.is_empty() {
            vec![]
        } else {
            vec![("Accept-Language", l)]
        }
    };
    let mut bodies = std::collections::HashMap::new();
    for l in ["en", "fr", "en", "", "fr", ""] {
        let r = fetch(&p, "/v", &cc, &lang(l));
        let echo = r.echo();
        let sent = echo.header("accept-language").unwrap_or("").to_string();
        assert_eq!(
            sent, l,
            "the variant served was made for this request's language"
        );
        bodies.entry(l).or_insert(r.body.clone());
    }
    assert_eq!(o.hits(), 3, "en, fr and no-language are three variants");
}

#[test]
fn stale_entries_revalidate_with_304_and_keep_the_body() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let respond = ["Cache-Control: max-age=0", "ETag: \"v1\""];
    let first = fetch(&p, "/r", &respond, &[]);
    assert_eq!(status_of(&first), "parapet; fwd=miss; stored");
    let second = fetch(&p, "/r", &respond, &[]);
    assert_eq!(second.status, 200);
    assert!(
        status_of(&second).starts_with("parapet; fwd=stale; fwd-status=304"),
        "{}",
        status_of(&second)
    );
    assert_eq!(
        second.body, first.body,
        "the stored body is served after a 304"
    );
    assert_eq!(o.hits(), 2);
}

#[test]
fn stale_if_error_serves_the_stored_copy_when_the_origin_is_down() {
    let mut o = Origin::start("o");
    let p = edge(&o, "");
    let respond = [
        "Cache-Control: max-age=0, stale-if-error=60",
        "ETag: \"v1\"",
    ];
    let first = fetch(&p, "/sie", &respond, &[]);
    o.stop();
    let r = fetch(&p, "/sie", &respond, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, first.body);
    assert!(
        status_of(&r).contains("stale-if-error"),
        "{}",
        status_of(&r)
    );
    // Without stale-if-error the failure shows.
    let r = fetch(&p, "/no-sie", &[], &[]);
    assert_eq!(r.status, 502);
}

#[test]
fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let respond = [
        "Cache-Control: max-age=0, stale-while-revalidate=60",
        "ETag: \"v1\"",
    ];
    fetch(&p, "/swr", &respond, &[]);
    assert_eq!(o.hits(), 1);
    let r = fetch(&p, "/swr", &respond, &[]);
    assert_eq!(r.status, 200);
    assert!(
        status_of(&r).contains("stale-while-revalidate"),
        "{}",
        status_of(&r)
    );
    wait_until(DEADLINE, "one background revalidation", || o.hits() == 2);
}

#[test]
fn concurrent_misses_make_one_origin_fetch() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let n = 50;
    let barrier = Arc::new(Barrier::new(n));
    let addr = p.addr();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                request(
                    addr,
                    "GET",
                    "/slow/300",
                    &[("X-Respond", "Cache-Control: max-age=60")],
                    b"",
                )
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        o.hits(),
        1,
        "50 concurrent misses for one key coalesce into one fetch"
    );
}

#[test]
fn a_truncated_origin_body_is_never_cached() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    for _ in 0..2 {
        let r = request(
            p.addr(),
            "GET",
            "/truncate",
            &[("X-Respond", "Cache-Control: max-age=60")],
            b"",
        );
        if let Ok(r) = r {
            assert!(
                !status_of(&r).contains("hit"),
                "a truncated body was served from cache"
            );
        }
    }
    assert_eq!(o.hits(), 2, "the partial object was not stored");
}

#[test]
fn unsafe_requests_invalidate_the_url() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let cc = ["Cache-Control: max-age=60"];
    fetch(&p, "/item", &cc, &[]);
    fetch(&p, "/item", &cc, &[]);
    assert_eq!(o.hits(), 1);
    assert_eq!(
        request(p.addr(), "POST", "/item", &[], b"x=1")
            .unwrap()
            .status,
        200
    );
    // Invalidation runs as the POST's response goes out; wait for it.
    wait_until(DEADLINE, "the POST invalidated the entry", || {
        status_of(&fetch(&p, "/item", &cc, &[])) == "parapet; fwd=miss; stored"
    });
    assert_eq!(o.hits(), 3);
}

#[test]
fn request_directives_are_honoured() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let r = fetch(&p, "/oic", &[], &[("Cache-Control", "only-if-cached")]);
    assert_eq!(r.status, 504, "only-if-cached on a miss");
    assert_eq!(o.hits(), 0);
    let cc = ["Cache-Control: max-age=60"];
    fetch(&p, "/rd", &cc, &[]);
    assert_eq!(
        fetch(&p, "/rd", &cc, &[("Cache-Control", "only-if-cached")]).status,
        200
    );
    fetch(&p, "/rd", &cc, &[("Cache-Control", "no-cache")]);
    assert_eq!(o.hits(), 2, "no-cache goes to the origin");
    fetch(&p, "/rd", &cc, &[("Pragma", "no-cache")]);
    assert_eq!(o.hits(), 3, "so does Pragma: no-cache");
    let aged = ["Cache-Control: max-age=60", "Age: 10"];
    fetch(&p, "/aged", &aged, &[]);
    assert_eq!(o.hits(), 4);
    fetch(&p, "/aged", &aged, &[("Cache-Control", "max-age=30")]);
    assert_eq!(o.hits(), 4, "age 10 is within max-age=30");
    fetch(&p, "/aged", &aged, &[("Cache-Control", "max-age=5")]);
    assert_eq!(o.hits(), 5, "age 10 exceeds max-age=5");
    fetch(&p, "/aged", &aged, &[("Cache-Control", "min-fresh=55")]);
    assert_eq!(o.hits(), 6, "less than 55 s of freshness left");
}

#[test]
fn memory_stays_within_budget_and_large_objects_stream_through() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "cache:\n  memory: {max_size: 64KiB}\n  max_object_size: 2KiB\n",
    );
    let padding = "x".repeat(900);
    for i in 0..200 {
        let r = fetch(
            &p,
            &format!("/churn/{i}"),
            &["Cache-Control: max-age=60"],
            &[("X-Pad", &padding)],
        );
        assert_eq!(r.status, 200);
    }
    let stored = |m: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix("parapet_cache_stored_bytes{tier=\"memory\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::MAX)
    };
    wait_until(
        DEADLINE,
        "evictions bring the tier under its budget",
        || stored(&p.metrics()) <= 64.0 * 1024.0,
    );
    assert!(p
        .metrics()
        .contains("parapet_cache_evictions_total{tier=\"memory\"}"));
    // Over max_object_size: served whole, never stored.
    let big = "y".repeat(3000);
    for _ in 0..2 {
        let r = fetch(
            &p,
            "/big",
            &["Cache-Control: max-age=60"],
            &[("X-Pad", &big)],
        );
        assert_eq!(r.status, 200);
        assert!(r.body.len() > 3000);
        assert!(!status_of(&r).contains("hit"));
    }
}

#[test]
fn a_cancelled_fill_does_not_strand_waiters() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    let req =
        "GET /slow/400 HTTP/1.1\r\nHost: localhost\r\nX-Respond: Cache-Control: max-age=60\r\n\r\n";
    let mut quitter = std::net::TcpStream::connect(p.addr()).unwrap();
    std::io::Write::write_all(&mut quitter, req.as_bytes()).unwrap();
    wait_until(DEADLINE, "the first request reached the origin", || {
        o.hits() == 1
    });
    // A second request now waits on the first one's fill...
    let addr = p.addr();
    let waiter = thread::spawn(move || {
        request(
            addr,
            "GET",
            "/slow/400",
            &[("X-Respond", "Cache-Control: max-age=60")],
            b"",
        )
    });
    // ...which is abandoned by its client.
    drop(quitter);
    let r = waiter.join().unwrap().expect("the waiter gets an answer");
    assert_eq!(r.status, 200);
    let again = fetch(&p, "/slow/400", &["Cache-Control: max-age=60"], &[]);
    assert_eq!(again.status, 200);
    assert!(!p.logs().contains("panicked"), "{}", p.logs());
}

fn purge(p: &Parapet, query: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request(
        p.admin_addr(),
        "POST",
        &format!("/purge?{query}"),
        &headers,
        b"",
    )
    .unwrap()
}

#[test]
fn purge_by_url_prefix_and_surrogate_key_hard_and_soft() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let yaml = one_pool_config(
        &ports,
        &o.address(),
        "routes:\n  - upstream: o\n    cache: {enabled: true}\n",
    )
    .replace("admin:\n", "admin:\n  token: \"t0k3n-for-tests\"\n");
    let p = Parapet::start_with(&ports, &yaml);
    let cached = |path: &str, tags: &str| {
        let keys = format!("Surrogate-Key: {tags}");
        let r = fetch(
            &p,
            path,
            &["Cache-Control: max-age=60", "ETag: \"e\"", &keys],
            &[],
        );
        assert!(
            r.header("surrogate-key").is_none(),
            "Surrogate-Key is not shown to clients"
        );
        status_of(&r)
    };
    for (path, tags) in [
        ("/p/1", "product-1 all"),
        ("/p/2", "product-2 all"),
        ("/q/1", "other"),
        ("/solo", "x"),
    ] {
        cached(path, tags);
        assert!(cached(path, tags).contains("hit"));
    }

    assert_eq!(purge(&p, "url=http://localhost/solo", None).status, 401);
    assert_eq!(
        purge(&p, "url=http://localhost/solo", Some("wrong")).status,
        401
    );
    assert_eq!(purge(&p, "bogus=1", Some("t0k3n-for-tests")).status, 400);

    let r = purge(
        &p,
        "url=http%3A%2F%2Flocalhost%2Fsolo",
        Some("t0k3n-for-tests"),
    );
    assert_eq!((r.status, r.text().trim()), (200, "{\"purged\": 1}"));
    assert!(cached("/solo", "x").contains("fwd=miss"), "purged by URL");

    let r = purge(&p, "tag=product-2", Some("t0k3n-for-tests"));
    assert_eq!(r.text().trim(), "{\"purged\": 1}");
    assert!(cached("/p/2", "product-2 all").contains("fwd=miss"));
    assert!(
        cached("/p/1", "product-1 all").contains("hit"),
        "other tags untouched"
    );

    let r = purge(&p, "prefix=http://localhost/p/", Some("t0k3n-for-tests"));
    assert_eq!(r.text().trim(), "{\"purged\": 2}");
    assert!(cached("/q/1", "other").contains("hit"));

    // Soft purge: stale, revalidated with the stored validator (304 from origin).
    cached("/p/1", "product-1 all");
    let r = purge(&p, "tag=all&soft=1", Some("t0k3n-for-tests"));
    assert_eq!(
        r.text().trim(),
        "{\"purged\": 1}",
        "only /p/1 is stored with that tag again"
    );
    assert!(
        cached("/p/1", "product-1 all").contains("fwd-status=304"),
        "soft purge revalidates"
    );
    assert!(p
        .metrics()
        .contains("parapet_cache_purges_total{kind=\"soft\"} 1"));
}

#[test]
fn a_304_updates_the_stored_header_fields() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    fetch(
        &p,
        "/u",
        &["Cache-Control: max-age=0", "ETag: \"v1\"", "X-Version: 1"],
        &[],
    );
    // The origin's 304 carries new field values and new freshness.
    let r = fetch(
        &p,
        "/u",
        &["Cache-Control: max-age=60", "ETag: \"v1\"", "X-Version: 2"],
        &[],
    );
    assert!(
        status_of(&r).contains("fwd-status=304"),
        "{}",
        status_of(&r)
    );
    assert_eq!(r.header("x-version"), Some("2"));
    let r = fetch(&p, "/u", &[], &[]);
    assert!(
        status_of(&r).contains("hit"),
        "the 304's max-age=60 made it fresh: {}",
        status_of(&r)
    );
    assert_eq!(r.header("x-version"), Some("2"), "the update was stored");
    assert_eq!(o.hits(), 2);
}

/// One HTTP/2 (prior knowledge) GET; returns (status, cache-status, body).
fn h2_get(addr: std::net::SocketAddr, path: &str, respond: &str) -> (u16, String, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::builder()
            .method("GET")
            .uri(format!("http://localhost{path}"))
            .header("x-respond", respond)
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), resp)
            .await
            .unwrap()
            .unwrap();
        let status = resp.status().as_u16();
        let cs = resp
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let out = h2_body(&mut resp.into_body()).await;
        (status, cs, out)
    })
}

#[test]
fn http1_and_http2_share_one_entry() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let h2c = free_addr();
    let yaml = one_pool_config(
        &ports,
        &o.address(),
        "routes:\n  - upstream: o\n    cache: {enabled: true}\n",
    );
    let p = Parapet::start_with(&ports, &with_h2c_listener(&yaml, h2c));
    let cc = "Cache-Control: max-age=60";
    let (status, cs, body) = h2_get(h2c, "/shared", cc);
    assert_eq!((status, cs.as_str()), (200, "parapet; fwd=miss; stored"));
    let r = fetch(&p, "/shared", &[cc], &[]);
    assert!(
        status_of(&r).contains("hit"),
        "HTTP/1.1 hits what HTTP/2 stored: {}",
        status_of(&r)
    );
    assert_eq!(r.body, body);
    let (_, cs, _) = h2_get(h2c, "/shared", cc);
    assert!(cs.contains("hit"), "{cs}");
    assert_eq!(o.hits(), 1);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn memory_and_rss_stay_bounded_under_churn() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "cache:\n  memory: {max_size: 4MiB}\n  max_object_size: 1MiB\n",
    );
    // Warm up allocator pools before the baseline.
    for i in 0..20 {
        fetch(
            &p,
            &format!("/size/102400/warm{i}"),
            &["Cache-Control: max-age=600"],
            &[],
        );
    }
    let baseline = rss_kib(p.pid());
    // 10x the budget in distinct 100 KiB objects.
    for i in 0..400 {
        let r = fetch(
            &p,
            &format!("/size/102400/{i}"),
            &["Cache-Control: max-age=600"],
            &[],
        );
        assert_eq!(r.body.len(), 102_400);
    }
    let stored = || {
        p.metrics()
            .lines()
            .find_map(|l| l.strip_prefix("parapet_cache_stored_bytes{tier=\"memory\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::MAX)
    };
    wait_until(DEADLINE, "stored bytes within the 4 MiB budget", || {
        stored() <= 4.0 * 1024.0 * 1024.0
    });
    let grown = rss_kib(p.pid()).saturating_sub(baseline);
    println!("RSS grew {grown} KiB while 40000 KiB went through a 4096 KiB cache");
    assert!(
        grown < 20 * 1024,
        "RSS grew {grown} KiB: memory is not bounded"
    );
}

#[test]
fn request_max_stale_accepts_stale_copies_unless_the_origin_forbids() {
    let o = Origin::start("o");
    let p = edge(&o, "");
    // Stored already 90 s stale (max-age 10, Age 100; the validator makes
    // a stale-on-arrival response worth storing).
    let stale = ["Cache-Control: max-age=10", "Age: 100", "ETag: \"v1\""];
    fetch(&p, "/s", &stale, &[]);
    assert_eq!(o.hits(), 1);
    let r = fetch(&p, "/s", &stale, &[("Cache-Control", "max-stale=120")]);
    assert!(status_of(&r).contains("hit"), "{}", status_of(&r));
    let r = fetch(&p, "/s", &stale, &[("Cache-Control", "max-stale")]);
    assert!(status_of(&r).contains("hit"), "no limit: {}", status_of(&r));
    assert_eq!(o.hits(), 1, "both served stale from the cache");
    fetch(&p, "/s", &stale, &[("Cache-Control", "max-stale=30")]);
    assert_eq!(o.hits(), 2, "90 s stale is more than 30");
    // must-revalidate: a stale copy is never served without the origin.
    let strict = [
        "Cache-Control: max-age=10, must-revalidate",
        "Age: 100",
        "ETag: \"v1\"",
    ];
    fetch(&p, "/m", &strict, &[]);
    fetch(&p, "/m", &strict, &[("Cache-Control", "max-stale")]);
    assert_eq!(o.hits(), 4);
    // Nor a response stored with no-cache (it must always be revalidated).
    let no_cache = ["Cache-Control: no-cache", "ETag: \"v1\""];
    fetch(&p, "/n", &no_cache, &[]);
    fetch(&p, "/n", &no_cache, &[("Cache-Control", "max-stale")]);
    assert_eq!(o.hits(), 6);
}

/// A plain fresh hit is answered before pingora-cache's lookup path
/// (src/proxy/fast_hit.rs); a condition that does not match sends the same
/// hit through the full path. Both answers must be the same, field by field
/// (the fast path answers from a head prepared with the fields a hit sets),
/// with and without the fields a configuration adds, with and without a
/// `Date` from the origin, and no field may be left empty.
#[test]
fn a_plain_hit_answers_as_the_full_hit_path_does() {
    plain_and_full_hits_agree("", "x-request-id", None);
    let date = format!(
        "Date: {}",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    plain_and_full_hits_agree(
        "forwarding: {request_id_header: X-Trace-Id, server_header: edge-test, via: edge1}\n",
        "x-trace-id",
        Some(&date),
    );
}

fn plain_and_full_hits_agree(config: &str, request_id: &str, date: Option<&str>) {
    let o = Origin::start("o");
    let p = edge(&o, config);
    let mut respond = vec![
        "Cache-Control: public, max-age=60",
        "ETag: \"v1\"",
        "X-Origin-Field: kept",
    ];
    respond.extend(date);
    fetch(&p, "/same", &respond, &[]);
    let fast_hits = || metric(&p.metrics(), "parapet_cache_fast_hits_total", "").unwrap_or(0.0);
    let hits = || {
        metric(
            &p.metrics(),
            "parapet_cache_lookups_total",
            "result=\"hit\"",
        )
        .unwrap_or(0.0)
    };
    let (hits_before, fast_before) = (hits(), fast_hits());
    // Twice each way: the second fast hit uses the head the first prepared.
    let fast = [(); 2].map(|()| fetch(&p, "/same", &respond, &[]));
    let full = fetch(&p, "/same", &respond, &[("If-None-Match", "\"other\"")]);
    // Metrics are recorded after the answer: wait for the hits to count.
    wait_until(DEADLINE, "the hits counted", || hits() == hits_before + 3.0);
    assert_eq!(
        fast_hits(),
        fast_before + 2.0,
        "the plain hits took the fast path, the conditional one the full path"
    );
    assert_eq!(o.hits(), 1);
    let per_request = ["age", "cache-status", request_id];
    // Fields of different names have no order in HTTP (RFC 9110 §5.3); the
    // lines of one name do, and a stable sort by name keeps it.
    let fields = |r: &Response| -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| {
                let k = k.to_ascii_lowercase();
                let v = if per_request.contains(&k.as_str()) {
                    String::new()
                } else {
                    v.clone()
                };
                (k, v)
            })
            .collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields
    };
    for r in fast.iter().chain([&full]) {
        assert_eq!((r.status, &r.body), (200, &full.body));
        assert!(
            status_of(r).starts_with("parapet; hit; ttl="),
            "{}",
            status_of(r)
        );
        for (k, v) in &r.headers {
            assert!(!v.is_empty(), "{k} is empty in {:?}", r.headers);
        }
        for name in per_request {
            assert!(r.header(name).is_some(), "no {name} in {:?}", r.headers);
        }
        assert_eq!(fields(r), fields(&full), "fast and full hit heads differ");
    }
}
