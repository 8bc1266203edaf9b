//! The cache's side of the proxy hooks: each function is called from one hook
//! of [`super::Edge`] and delegates the decisions to [`crate::cache`].

use super::RequestCtx;
use crate::cache::directives::Seconds;
use crate::cache::policy::{self, Exchange};
use crate::cache::{http_date, key, status, CacheRuntime, RouteCache};
use crate::metrics;
use crate::routing::{request_authority, request_host};
use http::header::{HeaderName, AGE, CONTENT_LENGTH};
use http::Method;
use pingora::cache::key::CacheKey;
use pingora::cache::{CacheMeta, CachePhase, ForcedFreshness, NoCacheReason, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType, OrErr, Result};
use std::borrow::Cow;
use std::time::SystemTime;

const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const SURROGATE_CAPABILITY: HeaderName = HeaderName::from_static("surrogate-capability");

/// `request_cache_filter`: GET and HEAD on a caching route use the cache;
/// unsafe methods there are remembered for invalidation.
pub(super) fn enable(session: &mut Session, ctx: &mut RequestCtx, runtime: &'static CacheRuntime) {
    let method = &session.req_header().method;
    if method == Method::GET || method == Method::HEAD {
        runtime.enable(&mut session.cache);
    } else if !method.is_safe() {
        ctx.cache.invalidate = true;
    }
}

/// The host (lower case) and port the client addressed, from the URI
/// authority or the `Host` header; the scheme's port when none is named.
fn host_and_port<'r>(req: &'r RequestHeader, scheme: &str) -> (Cow<'r, str>, u16) {
    let (host, port) = request_authority(req);
    let host = match host.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(host.to_ascii_lowercase()),
        false => Cow::Borrowed(host),
    };
    (host, port.unwrap_or_else(|| key::default_port(scheme)))
}

/// The key and the URL it is for, for `target` (a path and query) on this request's origin.
/// `primary`: the primary key bytes, when already computed for this request.
fn key_for(
    req: &RequestHeader,
    scheme: &str,
    route: &RouteCache,
    primary: Option<Vec<u8>>,
) -> CacheKey {
    let (host, port) = host_and_port(req, scheme);
    let target = req
        .uri
        .path_and_query()
        .map_or(req.uri.path(), |pq| pq.as_str());
    let url = key::stored_url(scheme, &host, port, target);
    let primary = primary.unwrap_or_else(|| key::primary(scheme, &host, port, req, &route.key));
    key::with_url(primary, url)
}

/// The primary key bytes of this request on `route`: what the fleet's ring
/// and a shield pool are fed, so that the owner of an object is the node
/// whose cache keys it. Computed once; the cache key takes them over.
pub(super) fn primary_key<'a>(
    session: &Session,
    ctx: &'a mut RequestCtx,
    route: &RouteCache,
) -> &'a [u8] {
    if ctx.cache.primary.is_none() {
        let scheme = ctx.client.as_ref().map_or("http", |c| c.scheme);
        let req = session.req_header();
        let (host, port) = host_and_port(req, scheme);
        ctx.cache.primary = Some(key::primary(scheme, &host, port, req, &route.key));
    }
    ctx.cache.primary.as_deref().unwrap_or_default()
}

/// `cache_key_callback`.
pub(super) fn cache_key(session: &Session, ctx: &mut RequestCtx, route: &RouteCache) -> CacheKey {
    let scheme = ctx.client.as_ref().map_or("http", |c| c.scheme);
    key_for(
        session.req_header(),
        scheme,
        route,
        ctx.cache.primary.take(),
    )
}

/// `cache_hit_filter`: request directives that refuse what is stored
/// (`no-cache`, `max-age`, `min-fresh`), or accept it stale (`max-stale`,
/// RFC 9111 §5.2.1.2: not when the stored response, by the directives the
/// cache obeys, says `no-cache`, `must-revalidate`, `proxy-revalidate` or
/// `s-maxage`).
pub(super) fn hit_filter(
    session: &Session,
    meta: &CacheMeta,
    is_fresh: bool,
    route: &RouteCache,
) -> Option<ForcedFreshness> {
    let cc = policy::request_directives(&session.req_header().headers);
    if !is_fresh {
        let now = SystemTime::now();
        return accept_stale(&cc, meta, now, route).then_some(ForcedFreshness::ForceFresh);
    }
    if cc.no_cache {
        return Some(ForcedFreshness::ForceExpired);
    }
    if cc.max_age.is_none() && cc.min_fresh.is_none() {
        return None;
    }
    let now = SystemTime::now();
    let age = meta.age().as_secs();
    let remaining = meta
        .fresh_until()
        .duration_since(now)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let too_old = cc
        .max_age
        .is_some_and(|s| !seconds_allow(s, |max| age <= max));
    let too_close = cc
        .min_fresh
        .is_some_and(|s| !seconds_allow(s, |min| remaining >= min));
    (too_old || too_close).then_some(ForcedFreshness::ForceExpired)
}

fn accept_stale(
    cc: &crate::cache::directives::Directives,
    meta: &CacheMeta,
    now: SystemTime,
    route: &RouteCache,
) -> bool {
    let Some(max_stale) = cc.max_stale else {
        return false;
    };
    if cc.no_cache {
        return false;
    }
    let (stored, _) = policy::response_directives(meta.headers(), &route.policy);
    if stored.no_cache
        || stored.must_revalidate
        || stored.proxy_revalidate
        || stored.s_maxage.is_some()
    {
        return false;
    }
    let stale_for = now
        .duration_since(meta.fresh_until())
        .map_or(0, |d| d.as_secs());
    match max_stale {
        None => true,
        Some(s) => seconds_allow(s, |max| stale_for <= max),
    }
}

fn seconds_allow(s: Seconds, ok: impl Fn(u64) -> bool) -> bool {
    match s {
        Seconds::Valid(n) => ok(n.into()),
        Seconds::Invalid => false,
    }
}

/// `upstream_request_filter`: announce this cache as a surrogate (Edge
/// Architecture 1.0 §2.1) so origins can target `Surrogate-Control` at it.
pub(super) fn upstream_request(req: &mut RequestHeader, route: &RouteCache) -> Result<()> {
    if route.policy.surrogate_control {
        req.append_header(
            SURROGATE_CAPABILITY,
            http::HeaderValue::from_static(policy::SURROGATE_CAPABILITY_VALUE),
        )?;
    }
    Ok(())
}

/// `cache_not_modified_filter`: whether a stored response satisfies the
/// request's condition, so a 304 can answer it.
pub(super) fn not_modified(req: &RequestHeader, stored: &ResponseHeader) -> bool {
    use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
    if pingora::protocols::http::conditional_filter::not_modified_filter(req, stored) {
        return true;
    }
    if stored.status != http::StatusCode::OK
        || req.headers.contains_key(IF_NONE_MATCH)
        || stored.headers.contains_key(LAST_MODIFIED)
    {
        return false;
    }
    let date = |h: &http::HeaderMap, name| {
        h.get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .and_then(http_date::parse)
    };
    match (
        date(&req.headers, IF_MODIFIED_SINCE),
        date(&stored.headers, http::header::DATE),
    ) {
        (Some(since), Some(generated)) => since >= generated,
        _ => false,
    }
}

/// `proxy_upstream_filter`: `only-if-cached` must not reach the origin.
pub(super) fn only_if_cached(session: &Session) -> bool {
    policy::request_directives(&session.req_header().headers).only_if_cached
}

/// `response_cache_filter`: RFC 9111 storability and freshness.
pub(super) fn response_cacheable(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &RequestCtx,
    route: &RouteCache,
    runtime: &CacheRuntime,
) -> RespCacheable {
    let now = SystemTime::now();
    let exchange = Exchange {
        request_time: ctx.cache.request_time.unwrap_or(now),
        response_time: ctx.cache.response_time.unwrap_or(now),
    };
    let too_large = resp
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| n > runtime.max_object());
    if too_large {
        return RespCacheable::Uncacheable(NoCacheReason::ResponseTooLarge);
    }
    // After a 304, pingora merges only a few fields into the stored header;
    // RFC 9111 §3.2 wants every field of the 304 (bar a few) to replace them.
    let merged = ctx
        .cache
        .not_modified
        .as_deref()
        .map(|nm| merge_not_modified(resp, nm));
    let resp = merged.as_ref().unwrap_or(resp);
    let req = session.req_header();
    match policy::evaluate(
        &req.method,
        &req.headers,
        resp.status.as_u16(),
        &resp.headers,
        exchange,
        &route.policy,
    ) {
        Ok(s) => {
            let mut header = resp.clone();
            header.remove_header(&AGE);
            // A hit says what this cache did; an upstream cache's status
            // (a fleet owner's, say) is not stored with the object.
            header.remove_header(&CACHE_STATUS);
            for name in &s.strip {
                header.remove_header(name.as_str());
            }
            let mut meta = CacheMeta::new(
                s.fresh_until,
                exchange.response_time,
                s.stale_while_revalidate,
                s.stale_if_error,
                header,
            );
            meta.set_epoch_override(s.epoch);
            RespCacheable::Cacheable(meta)
        }
        Err(why) => RespCacheable::Uncacheable(NoCacheReason::Custom(why.as_str())),
    }
}

/// The stored header updated with a 304's fields (RFC 9111 §3.2): every field
/// of the 304 replaces the stored one, except framing and hop-by-hop fields.
fn merge_not_modified(stored: &ResponseHeader, not_modified: &ResponseHeader) -> ResponseHeader {
    const KEEP: &[&str] = &[
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "age",
        "content-encoding",
        "content-range",
    ];
    let mut merged = stored.clone();
    let names: Vec<HeaderName> = not_modified
        .headers
        .keys()
        .filter(|n| !KEEP.contains(&n.as_str()))
        .cloned()
        .collect();
    for name in names {
        merged.remove_header(&name);
        for value in not_modified.headers.get_all(&name) {
            let _ = merged.append_header(name.clone(), value.clone());
        }
    }
    merged
}

/// `cache_vary_filter`.
pub(super) fn vary(
    meta: &CacheMeta,
    req: &RequestHeader,
) -> Option<pingora::cache::key::HashBinary> {
    key::variance(meta.headers(), &req.headers)
}

/// `should_serve_stale`: inside the stored windows (pingora checks them),
/// stale-while-revalidate always; stale-if-error for connection failures and
/// 500/502/503/504 (RFC 5861 §4).
pub(super) fn serve_stale(error: Option<&Error>) -> bool {
    match error {
        None => true,
        Some(e) => match e.etype() {
            ErrorType::HTTPStatus(code) => matches!(code, 500 | 502 | 503 | 504),
            _ => e.esource() == &ErrorSource::Upstream,
        },
    }
}

/// `response_filter`: the `Cache-Status` header; `Surrogate-Key` stays
/// inside, and so does `Surrogate-Control` when this cache obeys it (it was
/// for the surrogate, Edge Architecture 1.0 §2.2).
pub(super) fn response_headers(
    session: &Session,
    resp: &mut ResponseHeader,
    ctx: &mut RequestCtx,
    route: &RouteCache,
    cache_name: &str,
) -> Result<()> {
    resp.remove_header(&SURROGATE_KEY);
    if route.policy.surrogate_control {
        resp.remove_header(&policy::SURROGATE_CONTROL);
    }
    let (phase, fresh_until) = match ctx.cache.fast_hit {
        Some(fresh_until) => (CachePhase::Hit, Some(fresh_until)),
        None => (
            session.cache.phase(),
            session.cache.maybe_cache_meta().map(|m| m.fresh_until()),
        ),
    };
    if let Some((label, mut value)) =
        status::describe(cache_name, &phase, fresh_until, SystemTime::now())
    {
        ctx.cache.result = Some(label);
        // Forwarded by the owner in the fleet: its member comes first, the
        // cache nearer the origin (RFC 9211 §2).
        if ctx.fleet.target != super::fleet::Target::Origin {
            if let Some(owner) = resp
                .headers
                .get(&CACHE_STATUS)
                .and_then(|v| v.to_str().ok())
            {
                value = format!("{owner}, {value}");
            }
        }
        // A &'static str name and the String's own buffer: Pingora's
        // insert would otherwise copy both (this runs on every hit).
        let value = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
            .or_err(ErrorType::InternalError, "Cache-Status value")?;
        resp.insert_header("Cache-Status", value)?;
    }
    Ok(())
}

/// `logging`: cache metrics.
pub(super) fn after_response(session: &Session, ctx: &RequestCtx) {
    if let Some(result) = ctx.cache.result {
        metrics::count_cache_lookup(result);
        if ctx.cache.fast_hit.is_some() {
            metrics::CACHE_FAST_HITS.inc();
        }
        let from_cache = ctx.cache.fast_hit.is_some()
            || matches!(
                session.cache.phase(),
                CachePhase::Hit | CachePhase::StaleUpdating | CachePhase::Stale
            );
        metrics::count_cache_body_bytes(from_cache, session.body_bytes_sent() as u64);
        if let Some(wait) = session.cache.lock_duration() {
            metrics::CACHE_LOCK_WAIT.observe(wait.as_secs_f64());
        }
    }
}

/// `response_filter` of an unsafe request on a caching route: a non-error
/// answer invalidates its URL and same-origin `Location` /
/// `Content-Location` (RFC 9111 §4.4) before the answer goes out, so a
/// client that sends its next request as soon as it has this one's head
/// never gets the old copy.
pub(super) async fn invalidate(
    session: &Session,
    resp: &ResponseHeader,
    ctx: &RequestCtx,
    runtime: &'static CacheRuntime,
    route: &RouteCache,
) {
    if !(200..400).contains(&resp.status.as_u16()) {
        return;
    }
    let scheme = ctx.client.as_ref().map_or("http", |c| c.scheme);
    let req = session.req_header();
    let mut targets = vec![key_for(req, scheme, route, None)];
    for name in [http::header::LOCATION, http::header::CONTENT_LOCATION] {
        let Some(v) = resp.headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if let Some(path) = same_origin_path(v, request_host(req)) {
            let mut other = req.clone();
            if let Ok(uri) = path.parse::<http::Uri>() {
                other.set_uri(uri);
                targets.push(key_for(&other, scheme, route, None));
            }
        }
    }
    for key in targets {
        runtime.invalidate(&key).await;
    }
}

/// The path of a same-origin `Location`-style value, if it is one.
fn same_origin_path(value: &str, host: &str) -> Option<String> {
    if value.starts_with('/') && !value.starts_with("//") {
        return Some(value.to_string());
    }
    let uri: http::Uri = value.parse().ok()?;
    let same = uri.host().is_some_and(|h| h.eq_ignore_ascii_case(host));
    same.then(|| {
        uri.path_and_query()
            .map_or("/".to_string(), |pq| pq.as_str().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, host: Option<&str>) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        // As an HTTP/2 request carries `:authority`; HTTP/1's absolute form
        // leaves Pingora's URI without one.
        req.set_uri(target.parse().unwrap());
        if let Some(host) = host {
            req.insert_header("Host", host).unwrap();
        }
        req
    }

    #[test]
    fn the_key_host_is_lower_case_and_the_port_comes_with_it() {
        let cases = [
            (
                request("/a", Some("Example.COM:8080")),
                "http",
                ("example.com", 8080),
            ),
            (
                request("/a", Some("example.com")),
                "https",
                ("example.com", 443),
            ),
            (request("/a", Some("[::1]:81")), "http", ("[::1]", 81)),
            // The URI's authority names host and port, when it has one.
            (
                request("http://a.test/x", Some("b.test:8080")),
                "http",
                ("a.test", 80),
            ),
            (
                request("http://A.test:8081/x", None),
                "http",
                ("a.test", 8081),
            ),
            (request("/a", None), "http", ("", 80)),
        ];
        for (req, scheme, (host, port)) in cases {
            let (h, p) = host_and_port(&req, scheme);
            assert_eq!((h.as_ref(), p), (host, port), "{:?}", req.uri);
        }
        let lower = request("/a", Some("lower.test"));
        let (h, _) = host_and_port(&lower, "http");
        assert!(
            matches!(h, Cow::Borrowed(_)),
            "no copy when already lower case"
        );
    }
}
