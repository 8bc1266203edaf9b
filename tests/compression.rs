//! Response compression with the cache in front: the origin is asked for
//! identity, one stored copy serves a gzip client and an identity client
//! alike, q-values and the edge's preference order pick the coding, and
//! `no-transform`, HEAD, ranges and non-compressing routes are left alone.

mod support;

use std::io::Read;
use support::*;

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

const CACHED: (&str, &str) = ("X-Respond", "Cache-Control: max-age=60");

#[test]
fn clients_get_their_coding_from_one_stored_copy() {
    let o = Origin::start("o");
    let p = Parapet::in_front_of(
        &o.address(),
        "routes:\n  - {match: {path_prefix: /plain}, upstream: o}\n  - {match: {path_prefix: /vary}, upstream: o, cache: {enabled: true}}\n  - {upstream: o, compression: true, cache: {enabled: true}}\n\
         compression:\n  min_size: 100B\n",
    );
    // Padding makes the echoed body comfortably over min_size.
    let pad = ("X-Pad", "p".repeat(300));
    let gzip = p.get(
        "/page",
        &[CACHED, ("Accept-Encoding", "gzip"), (pad.0, &pad.1)],
    );
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert!(
        gzip.headers_named("vary")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("accept-encoding")),
        "{:?}",
        gzip.headers
    );
    let echo = parse_echo(&gunzip(&gzip.body));
    assert_eq!(
        echo.headers_named("accept-encoding"),
        ["identity"],
        "the origin is asked for identity"
    );
    // The identity client is served from the same stored copy.
    let plain = p.get("/page", &[CACHED, (pad.0, &pad.1)]);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.header("cache-status").unwrap().contains("hit"));
    assert_eq!(plain.echo(), echo, "identical content");
    assert_eq!(o.hits(), 1);

    // Preference order and q-values: zstd over br over gzip, q=0 refuses.
    let coding = |ae: &str| {
        p.get("/page", &[CACHED, ("Accept-Encoding", ae)])
            .header("content-encoding")
            .map(str::to_string)
    };
    assert_eq!(coding("gzip, deflate, br, zstd").as_deref(), Some("zstd"));
    assert_eq!(coding("gzip, br").as_deref(), Some("br"));
    assert_eq!(coding("br;q=0, gzip;q=0.8").as_deref(), Some("gzip"));
    assert_eq!(coding("gzip;q=0"), None);
    assert_eq!(coding("identity"), None);
    assert_eq!(o.hits(), 1, "all of them from the one stored copy");

    // no-transform, HEAD and range responses are left alone.
    let r = p.get(
        "/no-transform",
        &[
            ("X-Respond", "Cache-Control: max-age=60, no-transform"),
            ("Accept-Encoding", "gzip"),
            (pad.0, &pad.1),
        ],
    );
    assert_eq!(r.header("content-encoding"), None);
    let r = request(
        p.addr(),
        "HEAD",
        "/page",
        &[CACHED, ("Accept-Encoding", "gzip")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("content-encoding"), None);
    let r = p.get(
        "/page",
        &[CACHED, ("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body.len(), 10);

    // A route that does not compress passes the client's header through.
    let r = p.get(
        "/plain/x",
        &[("Accept-Encoding", "gzip;q=0.5, br"), (pad.0, &pad.1)],
    );
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(
        r.echo().headers_named("accept-encoding"),
        ["gzip;q=0.5, br"]
    );
    // ...and its cache varies on what the client sent, not on the edge's
    // normalised form: `deflate` (which the edge cannot produce) and no
    // header at all are different variants.
    let vary = ("X-Respond", "Vary: Accept-Encoding");
    let before = o.hits();
    p.get("/vary/x", &[CACHED, vary, ("Accept-Encoding", "deflate")]);
    let r = p.get("/vary/x", &[CACHED, vary]);
    assert_eq!(o.hits(), before + 2, "{:?}", r.header("cache-status"));
    let r = p.get("/vary/x", &[CACHED, vary, ("Accept-Encoding", "deflate")]);
    assert!(r.header("cache-status").unwrap().contains("hit"));
}
