//! Unit tests of [`super`]: storability, freshness and age arithmetic with
//! an injected clock.

use super::*;
use http::HeaderValue;

const T0: u64 = 1_700_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn date(secs: u64) -> String {
    httpdate::fmt_http_date(at(secs))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn eval_with(
    status: u16,
    req: &[(&str, &str)],
    resp: &[(&str, &str)],
    policy: &RoutePolicy,
) -> Result<Storable, NotStored> {
    let ex = Exchange {
        request_time: at(T0),
        response_time: at(T0),
    };
    evaluate(
        &http::Method::GET,
        &headers(req),
        status,
        &headers(resp),
        ex,
        policy,
    )
}

fn eval(status: u16, resp: &[(&str, &str)]) -> Result<Storable, NotStored> {
    eval_with(status, &[], resp, &RoutePolicy::default())
}

fn ttl(r: Result<Storable, NotStored>) -> u64 {
    let s = r.unwrap();
    s.fresh_until.duration_since(s.epoch).unwrap().as_secs()
}

#[test]
fn explicit_freshness_precedence() {
    assert_eq!(ttl(eval(200, &[("cache-control", "max-age=60")])), 60);
    assert_eq!(
        ttl(eval(200, &[("cache-control", "max-age=60, s-maxage=10")])),
        10
    );
    let d = date(T0);
    let e = date(T0 + 300);
    assert_eq!(ttl(eval(200, &[("date", &d), ("expires", &e)])), 300);
    assert_eq!(
        ttl(eval(
            200,
            &[
                ("date", &d),
                ("expires", &e),
                ("cache-control", "max-age=5")
            ]
        )),
        5
    );
}

#[test]
fn invalid_expires_or_max_age_means_stale_not_default() {
    let p = RoutePolicy {
        default_ttl: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let v = [("etag", "\"x\"")];
    assert_eq!(ttl(eval_with(200, &[], &[v[0], ("expires", "0")], &p)), 0);
    assert_eq!(
        ttl(eval_with(
            200,
            &[],
            &[v[0], ("cache-control", "max-age=soon")],
            &p
        )),
        0
    );
    let (a, b) = (date(T0 + 10), date(T0 + 20));
    assert_eq!(
        ttl(eval_with(
            200,
            &[],
            &[v[0], ("expires", &a), ("expires", &b)],
            &p
        )),
        0
    );
    // Without validators a stale-on-arrival response is not worth storing.
    assert_eq!(eval(200, &[("expires", "0")]), Err(NotStored::NoFreshness));
    // default_ttl only applies without any freshness information.
    assert_eq!(ttl(eval_with(200, &[], &[], &p)), 600);
}

#[test]
fn age_and_date_reduce_remaining_freshness() {
    let ex = Exchange {
        request_time: at(T0),
        response_time: at(T0 + 2),
    };
    // Origin says the response is already 30 s old.
    let resp = headers(&[
        ("cache-control", "max-age=100"),
        ("age", "30"),
        ("date", &date(T0 + 2)),
    ]);
    let s = evaluate(
        &http::Method::GET,
        &HeaderMap::new(),
        200,
        &resp,
        ex,
        &RoutePolicy::default(),
    )
    .unwrap();
    // corrected_initial_age = max(apparent 0, 30 + 2 delay) = 32
    assert_eq!(s.epoch, at(T0 + 2 - 32));
    assert_eq!(s.fresh_until, at(T0 + 2 - 32 + 100));
    // A Date in the past makes the apparent age count.
    let resp = headers(&[("cache-control", "max-age=100"), ("date", &date(T0 - 50))]);
    let s = evaluate(
        &http::Method::GET,
        &HeaderMap::new(),
        200,
        &resp,
        ex,
        &RoutePolicy::default(),
    )
    .unwrap();
    assert_eq!(s.epoch, at(T0 - 50));
}

#[test]
fn age_lists_count_by_their_first_member() {
    let ex = Exchange {
        request_time: at(T0),
        response_time: at(T0),
    };
    let epoch_with = |ages: &[&str]| {
        let mut h = headers(&[("cache-control", "max-age=3600")]);
        for a in ages {
            h.append(AGE, HeaderValue::from_str(a).unwrap());
        }
        epoch(&h, ex)
    };
    assert_eq!(epoch_with(&["7200, 0"]), at(T0 - 7200));
    assert_eq!(epoch_with(&["0, 7200"]), at(T0));
    assert_eq!(epoch_with(&["7200", "0"]), at(T0 - 7200));
    assert_eq!(epoch_with(&["0", "7200"]), at(T0));
    for ignored in ["abc", "-7200", "7200.0", "7200;foo=bar"] {
        assert_eq!(epoch_with(&[ignored]), at(T0), "{ignored}");
    }
    // Huge ages make the response ancient, never a time before 1970.
    assert_eq!(
        epoch_with(&["99999999999999999999999"]),
        SystemTime::UNIX_EPOCH
    );
    assert_eq!(epoch_with(&["2147483648"]), SystemTime::UNIX_EPOCH);
}

#[test]
fn the_routes_stale_if_error_applies_where_the_origin_gave_none() {
    let p = RoutePolicy {
        stale_if_error: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    let sie = |cc: &str| {
        eval_with(200, &[], &[("cache-control", cc), ("etag", "\"x\"")], &p)
            .unwrap()
            .stale_if_error
    };
    assert_eq!(sie("max-age=60"), 600);
    assert_eq!(
        sie("max-age=60, stale-if-error=5"),
        5,
        "the origin's own wins"
    );
    assert_eq!(sie("max-age=60, must-revalidate"), 0);
    assert_eq!(sie("max-age=60, s-maxage=60"), 0);
    assert_eq!(sie("max-age=60, no-cache"), 0);
}

#[test]
fn set_cookie_is_stored_stripped_or_passed_as_the_route_says() {
    let resp = [("cache-control", "max-age=60"), ("set-cookie", "a=b")];
    let with = |set_cookie| {
        let p = RoutePolicy {
            set_cookie,
            ..Default::default()
        };
        eval_with(200, &[], &resp, &p)
    };
    assert_eq!(with(SetCookie::Store).unwrap().strip, Vec::<String>::new());
    assert_eq!(with(SetCookie::Strip).unwrap().strip, vec!["set-cookie"]);
    assert_eq!(with(SetCookie::Pass), Err(NotStored::SetCookie));
    let p = RoutePolicy {
        set_cookie: SetCookie::Pass,
        ..Default::default()
    };
    let public = [
        ("cache-control", "public, max-age=60"),
        ("set-cookie", "a=b"),
    ];
    assert!(eval_with(200, &[], &public, &p).is_ok());
}

#[test]
fn the_announced_capability_names_the_device_obeyed() {
    let (device, _) = SURROGATE_CAPABILITY_VALUE.split_once('=').unwrap();
    assert_eq!(device, SURROGATE_DEVICE);
}

#[test]
fn surrogate_control_rules_after_the_targeted_field() {
    let p = RoutePolicy {
        targeted_field: Some(HeaderName::from_static("cdn-cache-control")),
        surrogate_control: true,
        ..Default::default()
    };
    let ttl_of = |resp: &[(&str, &str)]| eval_with(200, &[], resp, &p).map(|s| ttl(Ok(s)));
    assert_eq!(
        ttl_of(&[
            ("cache-control", "no-store"),
            ("surrogate-control", "max-age=50;parapet")
        ]),
        Ok(50)
    );
    assert_eq!(
        ttl_of(&[
            ("cache-control", "max-age=9"),
            ("surrogate-control", "no-store")
        ]),
        Err(NotStored::NoStore)
    );
    assert_eq!(
        ttl_of(&[
            ("cache-control", "max-age=9"),
            ("surrogate-control", "max-age=1;other")
        ]),
        Ok(9),
        "directives for another device leave Cache-Control in charge"
    );
    assert_eq!(
        ttl_of(&[
            ("cdn-cache-control", "max-age=70"),
            ("surrogate-control", "max-age=50"),
        ]),
        Ok(70)
    );
    assert_eq!(
        ttl_of(&[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=10000, &&&&&"),
        ]),
        Err(NotStored::NoStore),
        "an invalid targeted field is ignored whole"
    );
}

#[test]
fn must_understand_stores_only_understood_statuses() {
    let cc = [("cache-control", "max-age=3600, no-store, must-understand")];
    assert!(eval(200, &cc).is_ok(), "understood: no-store is overridden");
    assert_eq!(eval(599, &cc), Err(NotStored::Status));
    assert_eq!(
        eval(599, &[("cache-control", "max-age=3600, must-understand")]),
        Err(NotStored::Status)
    );
    assert!(eval(599, &[("cache-control", "max-age=3600")]).is_ok());
}

#[test]
fn not_storable_cases() {
    assert_eq!(
        eval(200, &[("cache-control", "no-store, max-age=60")]),
        Err(NotStored::NoStore)
    );
    assert_eq!(
        eval(200, &[("cache-control", "private, max-age=60")]),
        Err(NotStored::Private)
    );
    assert_eq!(
        eval(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept, *")]
        ),
        Err(NotStored::VaryStar)
    );
    assert_eq!(
        eval(206, &[("cache-control", "max-age=60")]),
        Err(NotStored::Status)
    );
    assert_eq!(eval(500, &[]), Err(NotStored::NoFreshness));
    assert_eq!(
        eval(302, &[("last-modified", &date(T0 - 1000))]),
        Err(NotStored::NoFreshness)
    );
    let auth = [("authorization", "Basic x")];
    let p = RoutePolicy::default();
    assert_eq!(
        eval_with(200, &auth, &[("cache-control", "max-age=60")], &p),
        Err(NotStored::Authorization)
    );
    assert!(eval_with(200, &auth, &[("cache-control", "public, max-age=60")], &p).is_ok());
    assert!(eval_with(200, &auth, &[("cache-control", "s-maxage=60")], &p).is_ok());
    assert_eq!(
        eval_with(
            200,
            &[("cache-control", "no-store")],
            &[("cache-control", "max-age=60")],
            &p
        ),
        Err(NotStored::NoStore)
    );
    let post = evaluate(
        &http::Method::POST,
        &HeaderMap::new(),
        200,
        &headers(&[("cache-control", "max-age=60")]),
        Exchange {
            request_time: at(T0),
            response_time: at(T0),
        },
        &p,
    );
    assert_eq!(post, Err(NotStored::Method));
}

#[test]
fn explicit_freshness_makes_any_final_status_storable() {
    assert_eq!(ttl(eval(500, &[("cache-control", "max-age=30")])), 30);
    assert_eq!(ttl(eval(302, &[("cache-control", "max-age=30")])), 30);
}

#[test]
fn heuristic_freshness_only_where_allowed() {
    let lm = date(T0 - 1000);
    let d = date(T0);
    assert_eq!(ttl(eval(200, &[("last-modified", &lm), ("date", &d)])), 100);
    assert_eq!(
        ttl(eval(
            302,
            &[("last-modified", &lm), ("cache-control", "public")]
        )),
        100
    );
}

#[test]
fn stale_extensions_and_their_cancellation() {
    let s = eval(
        200,
        &[(
            "cache-control",
            "max-age=60, stale-while-revalidate=30, stale-if-error=300",
        )],
    )
    .unwrap();
    assert_eq!((s.stale_while_revalidate, s.stale_if_error), (30, 300));
    for cc in [
        "max-age=60, must-revalidate, stale-if-error=300",
        "s-maxage=60, stale-if-error=300",
        "max-age=60, proxy-revalidate, stale-while-revalidate=5",
    ] {
        let s = eval(200, &[("cache-control", cc)]).unwrap();
        assert_eq!((s.stale_while_revalidate, s.stale_if_error), (0, 0), "{cc}");
    }
    let s = eval(
        200,
        &[
            ("cache-control", "no-cache, max-age=60, stale-if-error=60"),
            ("etag", "\"a\""),
        ],
    )
    .unwrap();
    assert_eq!(
        s.fresh_until, s.epoch,
        "no-cache: stored, always revalidated"
    );
    assert_eq!(s.stale_if_error, 0);
}

#[test]
fn targeted_field_takes_precedence() {
    let p = RoutePolicy {
        targeted_field: Some(HeaderName::from_static("cdn-cache-control")),
        ..Default::default()
    };
    let r = eval_with(
        200,
        &[],
        &[
            ("cache-control", "no-store"),
            ("cdn-cache-control", "max-age=90"),
        ],
        &p,
    );
    assert_eq!(ttl(r), 90);
    let r = eval_with(
        200,
        &[],
        &[
            ("cache-control", "max-age=90"),
            ("cdn-cache-control", "no-store"),
        ],
        &p,
    );
    assert_eq!(r, Err(NotStored::NoStore));
    // Without the targeted field, Cache-Control rules.
    assert_eq!(
        ttl(eval_with(200, &[], &[("cache-control", "max-age=7")], &p)),
        7
    );
}

#[test]
fn private_and_no_cache_with_fields_strip_them() {
    let s = eval(
        200,
        &[
            ("cache-control", "max-age=60, private=\"X-User\""),
            ("x-user", "u1"),
        ],
    )
    .unwrap();
    assert_eq!(s.strip, vec!["x-user"]);
}

#[test]
fn force_ttl_overrides_the_origin() {
    let p = RoutePolicy {
        force_ttl: Some(Duration::from_secs(45)),
        ..Default::default()
    };
    assert_eq!(
        ttl(eval_with(
            200,
            &[],
            &[("cache-control", "no-store, private")],
            &p
        )),
        45
    );
}

#[test]
fn request_pragma_no_cache_counts_without_cache_control() {
    assert!(request_directives(&headers(&[("pragma", "no-cache")])).no_cache);
    assert!(
        !request_directives(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=5")
        ]))
        .no_cache
    );
}
