//! Builds the access log entry of a request (see [`crate::access_log`]).
//! `RUST_LOG=...,parapet::access=off` still turns the log off, as before
//! the log had its own writer.

use super::RequestCtx;
use crate::access_log::Entry;
use crate::routing::{request_host, Route};
use crate::runtime::EdgePolicy;
use pingora::proxy::Session;
use pingora::Error;
use std::time::Duration;

pub(super) fn write(
    edge: &EdgePolicy,
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    elapsed: Duration,
    route: Option<&Route>,
    error: Option<&Error>,
) {
    let Some(log) = &edge.access_log else { return };
    if !log.wants(status) || !log::log_enabled!(target: "parapet::access", log::Level::Info) {
        return;
    }
    let pool = route.map(|r| edge.pools.get(r.upstream));
    let served_region = pool
        .zip(ctx.upstream.current())
        .and_then(|(p, addr)| p.region_of(addr));
    let req = session.req_header();
    let header = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
    let client = ctx
        .client
        .as_ref()
        .map_or(String::from("-"), |c| c.ip.to_string());
    log.write(&Entry {
        time: std::time::SystemTime::now(),
        client,
        method: req.method.as_str(),
        host: request_host(req),
        path: req.uri.path(),
        query: req.uri.query(),
        protocol: match req.version {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        status,
        bytes: session.body_bytes_sent(),
        duration: elapsed,
        route: route.map_or("-", |r| r.name.as_str()),
        upstream: pool.map_or("-", |p| p.name.as_str()),
        backend: ctx.upstream.current(),
        country: ctx.place.country.as_ref().map(crate::geo::Code::as_str),
        client_region: ctx.place.region.map(|r| edge.geo.regions.name(r)),
        region: served_region.as_deref().filter(|r| !r.is_empty()),
        tries: ctx.upstream.tried.len(),
        cache: ctx.cache.result.unwrap_or("-"),
        request_id: &ctx.request_id,
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        tls: ctx.client.as_ref().is_some_and(|c| c.scheme == "https"),
        error: error.map(|e| e.etype().as_str()),
        truncated: ctx.truncated,
    });
}
