//! Cache keys never panic and are deterministic. Input lines: line 0 is the
//! request target, line 1 the host, the rest `name: value` headers. For every
//! request pingora accepts, this builds the primary key
//! (`parapet::cache::key::primary`) with the default policy and with a policy
//! using every key tweak (ignore_query, a header, a cookie), wraps it in a
//! `CacheKey` and hashes it, and computes the `Vary` variance against the
//! input's own `vary` headers. Properties checked:
//! * the same request gives byte-identical primary keys and equal variances;
//! * the host's ASCII case does not change the key;
//! * the variance does not depend on the order of the names in `Vary`, and
//!   is `None` exactly when `Vary` names nothing.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use http::header::{HeaderMap, HeaderName, HeaderValue, VARY};
use libfuzzer_sys::fuzz_target;
use parapet::cache::key::{primary, variance, with_url, KeyPolicy};
use pingora::cache::key::CacheHashKey;

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let target = lines.first().copied().unwrap_or(b"");
    let host = String::from_utf8_lossy(lines.get(1).copied().unwrap_or(b""));
    let port = (data.len() % 65536) as u16;
    let Some(mut req) = common::request(http::Method::GET, target) else {
        return;
    };
    let vary_values = common::append_headers(&mut req, lines.iter().skip(2).copied());

    let tweaks = KeyPolicy {
        ignore_query: true,
        headers: vec![HeaderName::from_static("x-device")],
        cookies: vec!["lang".to_string()],
    };
    for policy in [&KeyPolicy::default(), &tweaks] {
        let a = primary("https", &host, port, &req, policy);
        let b = primary("https", &host, port, &req, policy);
        assert_eq!(a, b, "primary key is not deterministic");
        let upper = primary("https", &host.to_ascii_uppercase(), port, &req, policy);
        assert_eq!(a, upper, "host case changed the primary key");
        let key = with_url(a, String::new());
        let _ = key.combined_bin();
        let _ = key.primary();
    }

    let mut vary_map = HeaderMap::new();
    for v in &vary_values {
        vary_map.append(VARY, v.clone());
    }
    let first = variance(&vary_map, &req.headers);
    assert_eq!(
        first,
        variance(&vary_map, &req.headers),
        "variance is not deterministic"
    );
    let names: Vec<&[u8]> = vary_values
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter(|n| !n.trim_ascii().is_empty())
        .collect();
    assert_eq!(first.is_none(), names.is_empty(), "variance without names");
    // The same names in reverse order, one field.
    let reversed: Vec<u8> = names.iter().rev().copied().collect::<Vec<_>>().join(&b","[..]);
    if let Ok(v) = HeaderValue::from_bytes(&reversed) {
        let mut rev_map = HeaderMap::new();
        if !reversed.is_empty() {
            rev_map.insert(VARY, v);
        }
        assert_eq!(
            first,
            variance(&rev_map, &req.headers),
            "order of Vary names changed the variance"
        );
    }
});
