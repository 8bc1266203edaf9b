//! Attempts against a route's upstream pool: which backend to try (healthy,
//! not failed already for this request), what a failure costs (metrics, the
//! backend's counters, the retry budget), and long reads for upgraded and
//! streaming requests.

use super::RequestCtx;
use crate::metrics;
use crate::runtime::Snapshot;
use crate::upstream::Pool;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType, Result, RetryType};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// `upstream_peer`: picks a healthy backend of the route's pool that this
/// request has not failed on yet. No candidate left → 503 (before any
/// attempt) or the previous failure's 502.
pub(super) fn pick(
    snap: &Snapshot,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Box<HttpPeer>> {
    let route = ctx
        .route
        .map(|i| snap.edge.router.get(i))
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "upstream_peer without a route"))?;
    let pool = snap.edge.pools.get(route.upstream);
    if let Some(fleet) = &snap.edge.fleet {
        // A sharded request: the key's owners first, then the origin.
        if let Some(peer) = super::fleet::next_owner(fleet, pool, ctx) {
            return Ok(peer);
        }
    }
    // A shielded route: a parent, then the origin.
    if let Some(peer) = super::fleet::next_parent(snap, session, route, ctx)? {
        return Ok(peer);
    }
    let client_ip = ctx
        .client
        .as_ref()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.ip);
    let key = pool
        .hash_key()
        .map(|k| k.extract(session.req_header(), client_ip))
        .unwrap_or_default();
    let order = ctx
        .place
        .region
        .map_or(&[][..], |r| snap.edge.geo.regions.order(r));
    match pool.select_near(&key, &ctx.upstream.failed, order) {
        Some(addr) => {
            ctx.upstream.tried.push(addr);
            // Replacing the previous attempt's count ends it.
            ctx.upstream.in_flight = if pool.tracks_load() {
                pool.stats(addr).map(crate::upstream::InFlight::start)
            } else {
                None
            };
            ctx.upstream.started = Some(std::time::Instant::now());
            pool.requests_metric.inc();
            let upgrade = session.is_upgrade_req();
            let mut peer = pool.peer(addr, upgrade);
            // A retry replays the body through `request_body_filter`.
            ctx.body_bytes = 0;
            if ctx.upstream.tried.len() > 1 {
                // A retry gets what is left of the deadline, at most.
                let left = pool
                    .retry_deadline
                    .saturating_sub(ctx.started.elapsed())
                    .max(Duration::from_millis(1));
                let o = &mut peer.options;
                for t in [
                    &mut o.connection_timeout,
                    &mut o.total_connection_timeout,
                    &mut o.read_timeout,
                ] {
                    *t = t.map(|d| d.min(left));
                }
            }
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
/// the response header goes into its counters, and from now on nothing is
/// retried.
pub(super) fn answered(snap: &Snapshot, ctx: &mut RequestCtx, status: u16) {
    ctx.upstream.answered = true;
    if ctx.fleet.target != super::fleet::Target::Origin {
        return;
    }
    if let (Some(pool), Some(addr)) = (pool_of(snap, ctx), ctx.upstream.current()) {
        if let (Some(stats), Some(started)) = (pool.stats(addr), ctx.upstream.started) {
            stats.response(pool.counted_latency(started.elapsed(), status >= 500));
        }
        if !(100..200).contains(&status) {
            pool.observe(addr, crate::upstream::Outcome::Status(status));
        }
    }
}

fn pool_of<'a>(snap: &'a Snapshot, ctx: &RequestCtx) -> Option<&'a Pool> {
    ctx.route
        .map(|i| snap.edge.pools.get(snap.edge.router.get(i).upstream))
}

/// A failed attempt, counted for the pool and for the backend tried.
fn count_failure(pool: &Pool, ctx: &RequestCtx, kind: &str) {
    metrics::UPSTREAM_ERRORS
        .with_label_values(&[&pool.name, kind])
        .inc();
    if let Some(addr) = ctx.upstream.current() {
        if let Some(stats) = pool.stats(addr) {
            stats.error();
            // With p2c_ewma a failed attempt counts as a slow answer.
            if let Some(penalty) = pool.failure_penalty() {
                stats.response(penalty);
            }
        }
        pool.observe(addr, crate::upstream::Outcome::GatewayFailure);
    }
}

/// `fail_to_connect`: nothing was sent, so any method may be retried on
/// another backend while the pool's retry budget lasts.
pub(super) fn failed_to_connect(
    snap: &Snapshot,
    ctx: &mut RequestCtx,
    mut e: Box<Error>,
) -> Box<Error> {
    if super::fleet::attempt_failed(snap, ctx, &e) {
        // The next owner or parent, or the origin: nothing was sent.
        e.set_retry(true);
        return e;
    }
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
    let retry = may_retry(pool, ctx);
    if retry {
        pool.retries_metric.inc();
    }
    e.set_retry(retry);
    e
}

/// Within the pool's retry budget and deadline, with a backend left to try.
fn may_retry(pool: &Pool, ctx: &RequestCtx) -> bool {
    ctx.upstream.tried.len() <= pool.retries
        && ctx.started.elapsed() < pool.retry_deadline
        && pool.has_candidate(&ctx.upstream.failed)
}

/// `error_while_proxy`: a failure after the connection was made. Counted;
/// retried on another backend when no response header has arrived (so the
/// client has received nothing), the method is idempotent (or the route
/// allows others), the body still fits the replay buffer, and the pool's
/// budget and deadline allow: a reset, a closed connection, no answer within
/// the read timeout, an unparseable answer. The backend is not picked again
/// for this request, except after a pooled keep-alive connection the origin
/// had closed (or an HTTP/2 stream Pingora knows went unprocessed): the
/// connection's fault, not the backend's.
pub(super) fn failed_after_sending(
    snap: &Snapshot,
    peer: &HttpPeer,
    session: &mut Session,
    e: Box<Error>,
    ctx: &mut RequestCtx,
    client_reused: bool,
) -> Box<Error> {
    let mut e = e.more_context(format!("Peer: {peer}"));
    let Some(route) = ctx.route.map(|i| snap.edge.router.get(i)) else {
        e.set_retry(false);
        return e;
    };
    if e.esource() == &ErrorSource::Upstream
        && !ctx.upstream.answered
        && super::fleet::attempt_failed(snap, ctx, &e)
    {
        // Only GET and HEAD are sharded or shielded: the next owner or
        // parent, or the origin.
        e.set_retry(true);
        return e;
    }
    let pool = snap.edge.pools.get(route.upstream);
    let from_origin = e.esource() == &ErrorSource::Upstream;
    if from_origin {
        count_failure(pool, ctx, error_kind(&e));
        let connection_fault = match e.retry {
            RetryType::Decided(b) => b,
            RetryType::ReusedOnly => client_reused,
        };
        if !connection_fault {
            if let Some(addr) = ctx.upstream.current() {
                ctx.upstream.failed.push(addr);
            }
        }
    }
    let retry = from_origin
        && !ctx.upstream.answered
        && session.response_written().is_none()
        && (session.req_header().method.is_idempotent() || route.retry_non_idempotent)
        && !session.as_ref().retry_buffer_truncated()
        && may_retry(pool, ctx);
    if retry {
        pool.retries_metric.inc();
    }
    // Always decided: Pingora panics on an undecided `ReusedOnly`.
    e.set_retry(retry);
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
