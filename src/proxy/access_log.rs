//! The access log line, one per request, on the `parapet::access` log target
//! (`RUST_LOG=info,parapet::access=off` turns it off). Names the pool, never
//! the backend address.

use super::RequestCtx;
use crate::routing::request_host;
use pingora::proxy::Session;
use pingora::Error;
use std::time::Duration;

pub fn write(
    session: &Session,
    ctx: &RequestCtx,
    status: u16,
    elapsed: Duration,
    route: &str,
    upstream: &str,
    error: Option<&Error>,
) {
    if !log::log_enabled!(target: "parapet::access", log::Level::Info) {
        return;
    }
    let req = session.req_header();
    log::info!(
        target: "parapet::access",
        "{client} \"{method} {host}{path}\" {status} {ms:.3}ms route={route} upstream={upstream} tries={tries} cache={cache} request_id={id}{error}",
        client = ctx.client.as_ref().map_or(String::from("-"), |c| c.ip.to_string()),
        method = req.method,
        host = request_host(req),
        path = req.uri.path(),
        ms = elapsed.as_secs_f64() * 1000.0,
        tries = ctx.upstream.tried.len(),
        cache = ctx.cache.result.unwrap_or("-"),
        id = ctx.request_id,
        error = error.map(|e| format!(" error=\"{}\"", e.etype().as_str())).unwrap_or_default(),
    );
}
