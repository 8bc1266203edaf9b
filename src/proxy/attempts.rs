//! Attempts against a route's upstream pool: which backend to try (healthy,
//! not failed already for this request), what a failure costs (metrics, the
//! backend's counters, the retry budget), and long reads for upgraded and
//! streaming requests.

use super::RequestCtx;
use crate::metrics;
use crate::runtime::Snapshot;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::net::{IpAddr, Ipv4Addr};

/// `upstream_peer`: picks a healthy backend of the route's pool that this
/// request has not failed on yet. No candidate left → 503 (before any
/// attempt) or the previous failure's 502.
pub fn pick(snap: &Snapshot, session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let route = ctx
        .route
        .map(|i| snap.router.get(i))
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream_peer without a route"))?;
    let pool = snap.pools.get(route.upstream);
    let client_ip = ctx
        .client
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.ip);
    let key = pool
        .hash_key()
        .map(|k| k.extract(session.req_header(), client_ip))
        .unwrap_or_default();
    match pool.select(&key, &ctx.upstream.failed) {
        Some(addr) => {
            ctx.upstream.tried.push(addr);
            ctx.upstream.started = Some(std::time::Instant::now());
            pool.requests_metric.inc();
            let upgrade = session.is_upgrade_req();
            let mut peer = pool.peer(addr, upgrade);
            if upgrade || route.streaming {
                // Long-lived: reads from the origin may legitimately wait
                // this long. The client side gets it for a streaming route
                // now, for an upgrade only once the origin has agreed (101,
                // in `response_filter`): an `Upgrade` header alone must not
                // buy a client an hour to trickle a body.
                peer.options.read_timeout = Some(route.stream_idle_timeout);
                if route.streaming {
                    session.set_read_timeout(Some(route.stream_idle_timeout));
                }
            }
            Ok(peer)
        }
        None => {
            metrics::UPSTREAM_ERRORS
                .with_label_values(&[&pool.name, "no_backend"])
                .inc();
            let status = if ctx.upstream.failed.is_empty() {
                503
            } else {
                502
            };
            Error::e_explain(
                ErrorType::HTTPStatus(status),
                format!("no usable backend in upstream {}", pool.name),
            )
        }
    }
}

/// `upstream_response_filter`: the backend tried answered; its latency to
/// the response header goes into its counters.
pub fn answered(snap: &Snapshot, ctx: &RequestCtx) {
    if let (Some(pool), Some(started)) = (pool_of(snap, ctx), ctx.upstream.started) {
        if let Some(stats) = ctx.upstream.current().and_then(|a| pool.stats(a)) {
            stats.response(started.elapsed());
        }
    }
}

fn pool_of<'a>(snap: &'a Snapshot, ctx: &RequestCtx) -> Option<&'a crate::upstream::Pool> {
    ctx.route
        .map(|i| snap.pools.get(snap.router.get(i).upstream))
}

/// A failed attempt, counted for the pool and for the backend tried.
fn count_failure(pool: &crate::upstream::Pool, ctx: &RequestCtx, kind: &str) {
    metrics::UPSTREAM_ERRORS
        .with_label_values(&[&pool.name, kind])
        .inc();
    if let Some(stats) = ctx.upstream.current().and_then(|a| pool.stats(a)) {
        stats.error();
    }
}

/// `fail_to_connect`: nothing was sent, so any method may be retried on
/// another backend while the pool's retry budget lasts.
pub fn failed_to_connect(snap: &Snapshot, ctx: &mut RequestCtx, mut e: Box<Error>) -> Box<Error> {
    let Some(pool) = pool_of(snap, ctx) else {
        return e;
    };
    let kind = error_kind(&e);
    count_failure(pool, ctx, kind);
    if kind == "tls" {
        // The client only ever sees a 502; the reason is for the operator.
        log::warn!(
            "request {}: TLS to a backend of upstream {} failed: {e}",
            ctx.request_id,
            pool.name
        );
    }
    if let Some(addr) = ctx.upstream.current() {
        ctx.upstream.failed.push(addr);
    }
    if ctx.upstream.tried.len() <= pool.retries {
        pool.retries_metric.inc();
        e.set_retry(true);
    } else {
        e.set_retry(false);
    }
    e
}

/// `error_while_proxy`: counted; retried (by Pingora's default rule) only for
/// idempotent requests on a reused connection, and only within the pool's
/// retry budget: an origin that drops every pooled connection would otherwise
/// see up to Pingora's `max_retries` (16) attempts per request.
pub fn failed_after_sending(
    snap: &Snapshot,
    peer: &HttpPeer,
    session: &mut Session,
    e: Box<Error>,
    ctx: &mut RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    let pool = pool_of(snap, ctx);
    if let Some(pool) = pool {
        if e.esource() == &ErrorSource::Upstream {
            count_failure(pool, ctx, error_kind(&e));
        }
    }
    let mut e = e.more_context(format!("Peer: {peer}"));
    let budget_left = pool.is_some_and(|p| ctx.upstream.tried.len() <= p.retries);
    if !budget_left
        || !session.req_header().method.is_idempotent()
        || session.as_ref().retry_buffer_truncated()
    {
        e.set_retry(false);
    } else {
        e.retry.decide_reuse(client_reused);
        if e.retry() {
            if let Some(pool) = pool {
                pool.retries_metric.inc();
            }
        }
    }
    e
}

/// Metric label for an upstream failure.
fn error_kind(e: &Error) -> &'static str {
    use ErrorType::*;
    match e.etype() {
        ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => "timeout",
        ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError => "connect",
        TLSHandshakeFailure | HandshakeError | InvalidCert => "tls",
        ReadError | ConnectionClosed | InvalidHTTPHeader | H1Error | H2Error | InvalidH2 => "read",
        WriteError => "write",
        _ => "other",
    }
}
