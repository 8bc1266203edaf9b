//! RFC details of the edge cache that the shared-cache conformance suite
//! (http-tests/cache-tests) checks, each against a real origin that counts
//! its requests: `Set-Cookie`, fields named in `Connection`, `Age` lists,
//! `must-understand`, targeted fields that are not dictionaries,
//! `Surrogate-Control`, lenient `Expires`, `Vary` normalisation and
//! `If-Modified-Since` without `Last-Modified`.

mod support;

use std::time::{Duration, SystemTime};
use support::*;

fn edge(origin: &Origin, routes: &str) -> Parapet {
    Parapet::in_front_of(&origin.address(), routes)
}

fn cached_everywhere(origin: &Origin) -> Parapet {
    edge(
        origin,
        "routes:\n  - upstream: o\n    cache: {enabled: true}\n",
    )
}

/// GETs `path` twice with the same response instructions; the origin count
/// tells whether the second came from the cache.
fn twice(p: &Parapet, o: &Origin, path: &str, respond: &[&str]) -> (Response, bool) {
    let headers: Vec<(&str, &str)> = respond.iter().map(|r| ("X-Respond", *r)).collect();
    let before = o.hits();
    p.get(path, &headers);
    let second = p.get(path, &headers);
    let hit = o.hits() - before == 1;
    (second, hit)
}

fn http_date(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs((-offset_secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

#[test]
fn set_cookie_is_stored_by_default_and_routes_can_strip_or_pass_it() {
    let o = Origin::start("o");
    let p = edge(
        &o,
        "routes:
  - match: {path_prefix: /strip}
    upstream: o
    cache: {enabled: true, set_cookie: strip}
  - match: {path_prefix: /pass}
    upstream: o
    cache: {enabled: true, set_cookie: pass}
  - upstream: o
    cache: {enabled: true}
",
    );
    let respond = ["Cache-Control: max-age=3600", "Set-Cookie: a=c"];
    let (r, hit) = twice(&p, &o, "/store", &respond);
    assert!(hit, "RFC 9111: Set-Cookie does not inhibit caching");
    assert_eq!(
        r.header("set-cookie"),
        Some("a=c"),
        "the stored field is replayed"
    );

    let (r, hit) = twice(&p, &o, "/strip", &respond);
    assert!(hit);
    assert_eq!(r.header("set-cookie"), None, "stored without the cookie");

    let (r, hit) = twice(&p, &o, "/pass", &respond);
    assert!(!hit, "pass: not stored");
    assert_eq!(r.header("set-cookie"), Some("a=c"));
    assert_eq!(
        r.header("cache-status"),
        Some("parapet; fwd=miss; detail=set-cookie")
    );

    let dir = temp_dir("parapet-set-cookie");
    let file = dir.join("c.yaml");
    let yaml = one_pool_config(
        &Ports::new(),
        &o.address(),
        "routes:\n  - upstream: o\n    cache: {enabled: true, set_cookie: sometimes}\n",
    );
    std::fs::write(&file, yaml).unwrap();
    let out = run_parapet(&["-t", "-c", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("routes[0].cache.set_cookie: must be store, strip or pass"),
        "{stderr}"
    );
}

#[test]
fn fields_the_origin_names_in_connection_are_neither_stored_nor_forwarded() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let respond = [
        "Cache-Control: max-age=3600",
        "Connection: a, b",
        "a: 1",
        "b: 2",
        "c: 3",
    ];
    let headers: Vec<(&str, &str)> = respond.iter().map(|r| ("X-Respond", *r)).collect();
    let first = p.get("/conn", &headers);
    let second = p.get("/conn", &headers);
    assert_eq!(o.hits(), 1, "the second is a hit");
    for r in [&first, &second] {
        assert_eq!(r.header("a"), None);
        assert_eq!(r.header("b"), None);
        assert_eq!(r.header("c"), Some("3"));
    }
}

#[test]
fn an_age_list_counts_by_its_first_member() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let date = format!("Date: {}", http_date(0));
    let (_, hit) = twice(
        &p,
        &o,
        "/old-first",
        &["Cache-Control: max-age=3600", &date, "Age: 7200, 0"],
    );
    assert!(!hit, "7200 s old: stale on arrival");
    let (_, hit) = twice(
        &p,
        &o,
        "/young-first",
        &["Cache-Control: max-age=3600", &date, "Age: 0, 7200"],
    );
    assert!(hit);
    let (r, hit) = twice(
        &p,
        &o,
        "/ancient",
        &["Cache-Control: max-age=3600", &date, "Age: 2147483648"],
    );
    assert!(!hit);
    assert_eq!(
        r.header("cache-status"),
        Some("parapet; fwd=miss; detail=no-freshness"),
        "no storage error for an age that would predate 1970"
    );
}

#[test]
fn must_understand_keeps_unknown_statuses_out() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let cc = ["Cache-Control: max-age=3600, no-store, must-understand"];
    let (_, hit) = twice(&p, &o, "/status/599", &cc);
    assert!(!hit, "599 is not understood: not stored");
    let (_, hit) = twice(&p, &o, "/status/200", &cc);
    assert!(hit, "200 is understood: no-store gives way");
}

#[test]
fn a_targeted_field_that_is_not_a_dictionary_is_ignored_whole() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    for (path, cdn) in [
        ("/unknown", "CDN-Cache-Control: max-age=10000, &&&&&"),
        ("/wrong-type", "CDN-Cache-Control: max-age=\"10000\""),
    ] {
        let (_, hit) = twice(&p, &o, path, &[cdn, "Cache-Control: no-store"]);
        assert!(!hit, "{cdn}");
    }
    let (_, hit) = twice(
        &p,
        &o,
        "/valid",
        &[
            "CDN-Cache-Control: max-age=10000",
            "Cache-Control: no-store",
        ],
    );
    assert!(hit);
}

#[test]
fn surrogate_control_targeted_at_parapet_rules_and_is_removed() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let first = p.get("/announce", &[]);
    assert_eq!(
        first.echo().header("surrogate-capability"),
        Some("parapet=\"Surrogate/1.0\""),
        "origins learn the device name to target"
    );
    let (r, hit) = twice(
        &p,
        &o,
        "/mine",
        &[
            "Cache-Control: no-store",
            "Surrogate-Control: max-age=10000;parapet",
        ],
    );
    assert!(hit);
    assert_eq!(r.header("surrogate-control"), None);
    let (_, hit) = twice(
        &p,
        &o,
        "/theirs",
        &[
            "Cache-Control: no-store",
            "Surrogate-Control: max-age=10000;other",
        ],
    );
    assert!(!hit, "a directive for another device changes nothing");
    let (_, hit) = twice(
        &p,
        &o,
        "/no-store",
        &[
            "Cache-Control: max-age=10000",
            "Surrogate-Control: no-store",
        ],
    );
    assert!(!hit);
}

#[test]
fn expires_is_read_case_insensitively_and_without_checking_the_weekday() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let date = format!("Date: {}", http_date(0));
    for (path, expires) in [
        ("/upper", "Expires: THU, 18 AUG 2050 02:01:18 GMT"),
        ("/asctime", "Expires: Thu Aug  8 02:01:18 2050"),
    ] {
        let (_, hit) = twice(&p, &o, path, &[expires, &date]);
        assert!(hit, "{expires}");
    }
}

#[test]
fn whitespace_in_a_selecting_header_does_not_make_a_new_variant() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let respond = [
        ("X-Respond", "Cache-Control: max-age=3600"),
        ("X-Respond", "Vary: Accept-Language"),
    ];
    let with = |lang: &'static str| {
        let mut h = respond.to_vec();
        h.push(("Accept-Language", lang));
        p.get("/v", &h)
    };
    with("en,de");
    let before = o.hits();
    with(" en ,  De");
    assert_eq!(o.hits(), before, "same variant");
    with("de, en");
    assert_eq!(
        o.hits(),
        before + 1,
        "order can carry preference: a new variant"
    );
}

#[test]
fn if_modified_since_without_last_modified_is_judged_by_date() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let date = http_date(-100);
    let respond = [
        ("X-Respond", "Cache-Control: max-age=3600".to_string()),
        ("X-Respond", format!("Date: {date}")),
    ];
    let h: Vec<(&str, &str)> = respond.iter().map(|(n, v)| (*n, v.as_str())).collect();
    p.get("/ims", &h);
    let mut newer = h.clone();
    let since = http_date(-10);
    newer.push(("If-Modified-Since", &since));
    assert_eq!(p.get("/ims", &newer).status, 304);
    let mut older = h.clone();
    let before = http_date(-1000);
    older.push(("If-Modified-Since", &before));
    assert_eq!(p.get("/ims", &older).status, 200);
    assert_eq!(o.hits(), 1);
}

#[test]
fn responses_keep_their_own_date_on_misses_and_hits() {
    let o = Origin::start("o");
    let p = cached_everywhere(&o);
    let date = http_date(-3600);
    let respond = [
        ("X-Respond", "Cache-Control: max-age=7200".to_string()),
        ("X-Respond", format!("Date: {date}")),
    ];
    let h: Vec<(&str, &str)> = respond.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let miss = p.get("/dated", &h);
    let hit = p.get("/dated", &h);
    assert_eq!(o.hits(), 1);
    assert_eq!(
        miss.header("date"),
        Some(date.as_str()),
        "forwarded as sent"
    );
    assert_eq!(
        hit.header("date"),
        Some(date.as_str()),
        "not updated on a hit"
    );
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!(age >= 3600, "age {age}");
    assert_eq!(hit.headers_named("date").len(), 1);

    // A response without a Date of its own (this origin sends none unless
    // told to) gets the current time.
    let page = p.get("/undated", &[]);
    let own = page
        .header("date")
        .and_then(|d| httpdate::parse_http_date(d).ok());
    let drift = own.and_then(|t| SystemTime::now().duration_since(t).ok());
    assert!(
        drift.is_some_and(|d| d < Duration::from_secs(60)),
        "{:?}",
        page.header("date")
    );
}

#[test]
fn a_route_may_allow_stale_copies_when_the_origin_fails() {
    let mut o = Origin::start("o");
    let p = edge(
        &o,
        "routes:
  - match: {path_prefix: /allowed}
    upstream: o
    cache: {enabled: true, stale_if_error: 10m}
  - upstream: o
    cache: {enabled: true}
",
    );
    let stale_now = ["Cache-Control: max-age=0", "ETag: \"v1\""];
    let strict = ["Cache-Control: max-age=0, must-revalidate", "ETag: \"v1\""];
    let headers = |r: &[&'static str]| r.iter().map(|v| ("X-Respond", *v)).collect::<Vec<_>>();
    let first = p.get("/allowed/a", &headers(&stale_now));
    p.get("/allowed/strict", &headers(&strict));
    p.get("/other", &headers(&stale_now));
    o.stop();

    let r = p.get("/allowed/a", &headers(&stale_now));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, first.body);
    assert!(
        r.header("cache-status")
            .unwrap_or("")
            .contains("stale-if-error"),
        "{:?}",
        r.header("cache-status")
    );
    assert_eq!(
        p.get("/allowed/strict", &headers(&strict)).status,
        502,
        "must-revalidate closes the window"
    );
    assert_eq!(
        p.get("/other", &headers(&stale_now)).status,
        502,
        "off by default"
    );
}
