//! Plain fresh hits answered from `request_filter`, before pingora-cache's
//! state machine (lookup phases, hit handler, range and conditional filters:
//! about a third of a hit's instructions).
//!
//! Only what needs none of that machinery takes this path: a GET on a
//! caching route of a node outside a fleet, without a body, `Range`, conditions,
//! request cache directives, `Authorization` or an upgrade, on a route that
//! does not compress, for an object in the memory tier that is fresh, stored
//! without `Vary`, and a 200 with a `Content-Length` matching its body.
//! Anything else returns `false` and goes the usual way, so the behaviour a
//! client sees is that of pingora-cache's hit path: the stored head with
//! `Age` (pingora-proxy's `cache_hit_header`), `Accept-Ranges`, then the same
//! `response_filter` (Cache-Status, request id, HSTS, the stored `Date`),
//! the same downstream modules, the same eviction-manager access.

use super::{Edge, RequestCtx};
use crate::cache::{CacheRuntime, RouteCache};
use http::header;
use http::{Method, StatusCode, Version};
use pingora::http::ResponseHeader;
use pingora::proxy::{ProxyHttp, Session};
use pingora::Result;

/// Request fields that need pingora-cache's handling of a hit.
const NEEDS_FULL_PATH: [header::HeaderName; 11] = [
    // A GET with a body: Pingora's path deals with the body on the wire.
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::RANGE,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::AUTHORIZATION,
];

/// Answers the request from the memory tier if it is a plain fresh hit;
/// `Ok(true)` when the response went out.
pub(super) async fn serve(
    edge: &Edge,
    session: &mut Session,
    ctx: &mut Box<RequestCtx>,
    runtime: &'static CacheRuntime,
    route: &RouteCache,
    route_compresses: bool,
) -> Result<bool> {
    if edge.snap.edge.fleet.is_some()
        || (route_compresses && edge.snap.edge.compression.is_some())
        || session.is_upgrade_req()
    {
        return Ok(false);
    }
    let req = session.req_header();
    // One pass over the request's few fields: comparing standard names is
    // an enum compare, where a lookup per listed name hashes each of them.
    if req.method != Method::GET || req.headers.keys().any(|h| NEEDS_FULL_PATH.contains(h)) {
        return Ok(false);
    }
    let key = super::caching::cache_key(session, ctx, route);
    // HTTP/2 heads go out with none of Pingora's HTTP/1 fields: the stored
    // head as it is costs less there than a prepared one (see `prepared`).
    let prepare = |stored: &ResponseHeader| prepared(edge, stored);
    let prepare: Option<&dyn Fn(&ResponseHeader) -> ResponseHeader> =
        (!session.is_http2()).then_some(&prepare);
    let Some(hit) = runtime.fresh_hit(&key, prepare) else {
        // pingora-cache asks for the key next: it is computed already.
        ctx.cache.key = Some(key);
        return Ok(false);
    };
    let stored = &hit.header;
    let length_matches = stored
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        == Some(hit.body.len());
    if stored.status != StatusCode::OK || !length_matches {
        ctx.cache.key = Some(key);
        return Ok(false);
    }
    // As pingora-proxy's cache_hit_header: the stored head, its Age, HTTP/1.1.
    let mut head = Box::new(hit.header);
    head.insert_header("Age", hit.age.as_secs())?;
    head.set_version(Version::HTTP_11);
    // The memory tier's hits can seek, so pingora-proxy runs its range
    // filter, which for a GET without `Range` and a 200 with a valid
    // `Content-Length` (both checked above) only announces ranges.
    head.insert_header("Accept-Ranges", header::HeaderValue::from_static("bytes"))?;
    ctx.cache.fast_hit = Some(hit.fresh_until);
    edge.response_filter(session, &mut head, ctx).await?;
    session.write_response_header(head, false).await?;
    session.write_response_body(Some(hit.body), true).await?;
    Ok(true)
}

/// The stored head with the fields every HTTP/1 fast hit sets (`Age`,
/// `Accept-Ranges` above; `Cache-Status`, the request id and `Server` in
/// `response_filter`; `Connection` in Pingora's HTTP/1 writer), holding
/// empty values until a hit sets them in place. A copy of a header map has
/// no spare room, so the first new field reallocated both of Pingora's maps
/// on every hit; made once per stored object, the copies take every value
/// where it stands. Fields only some hits add (a route's, `Via`, HSTS, a
/// `Date` the origin did not send) are appended, so they may come in
/// another order than on the full path: fields of different names have no
/// order in HTTP (RFC 9110 §5.3); a name's own lines keep theirs. HTTP/2
/// hits do not use it: that writer removes `Connection`, which costs more
/// than the reallocation saves. Should an insert fail, the stored head is
/// used as it is.
fn prepared(edge: &Edge, stored: &ResponseHeader) -> ResponseHeader {
    let mut head = stored.clone();
    let empty = || header::HeaderValue::from_static("");
    let reserved = head
        .insert_header("Age", empty())
        .and_then(|()| head.insert_header("Accept-Ranges", empty()))
        .and_then(|()| head.insert_header("Cache-Status", empty()))
        .and_then(|()| edge.snap.edge.forwarding.reserve_downstream(&mut head))
        .and_then(|()| head.insert_header("Connection", empty()));
    match reserved {
        Ok(()) => head,
        Err(_) => stored.clone(),
    }
}
