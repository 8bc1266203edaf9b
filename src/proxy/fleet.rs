//! The fleet's side of the proxy hooks: who a request came from (a signed
//! peer hop or a client), loop limits, the control plane peers call, and
//! where a sharded request goes (the key's owner on the ring, then the next
//! owner, then the origin).

use super::RequestCtx;
use crate::cache::{CacheRuntime, Shard};
use crate::filters::EdgeReason;
use crate::fleet::{Fleet, Owner, Verdict, CONTROL_PREFIX, PROBE_PATH};
use crate::metrics;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;
use std::net::SocketAddr;
use std::time::SystemTime;

/// Where the current upstream attempt goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Target {
    #[default]
    Origin,
    /// The owner of the key (or the next owner) in this fleet.
    Peer(SocketAddr),
    /// A shield node of the route's parent pool.
    Parent(SocketAddr),
}

/// What the fleet hooks carry between phases.
#[derive(Debug, Default)]
pub(crate) struct FleetCtx {
    /// A signed hop: the peer it came from. Served here, never forwarded again.
    pub(crate) from_peer: Option<String>,
    /// Owners still to try, in ring order, before the origin.
    pub(crate) owners: Vec<SocketAddr>,
    pub(crate) next_owner: usize,
    pub(crate) target: Target,
    /// Every parent failed (or none was healthy): the origin is next.
    pub(crate) parents_done: bool,
}

/// What `arrive` decided.
pub(super) enum Arrival {
    /// Go on with the ordinary request path.
    Continue,
    /// Refuse with this status.
    Refuse(u16, EdgeReason),
    /// A control-plane request, already answered.
    Answered,
}

/// `request_filter`, before the client is identified: checks the
/// `Parapet-Fleet` signature (a signed hop's forwarding headers are then
/// trusted) and removes the header, so that it never reaches an origin.
pub(super) fn identify(fleet: &Fleet, session: &mut Session, ctx: &mut RequestCtx) -> Arrival {
    let verdict = fleet.verify(session.req_header(), SystemTime::now());
    Fleet::strip(session.req_header_mut());
    match verdict {
        Verdict::Invalid => {
            metrics::FLEET_REFUSED
                .with_label_values(&["bad_signature"])
                .inc();
            log::warn!(
                "fleet: a request with an invalid Parapet-Fleet signature refused (wrong fleet.secret on a peer, a clock off by more than 5 minutes, or a forgery)"
            );
            Arrival::Refuse(403, EdgeReason::FleetSignature)
        }
        Verdict::Peer(node) => {
            ctx.fleet.from_peer = Some(node);
            Arrival::Continue
        }
        Verdict::Absent => Arrival::Continue,
    }
}

/// `request_filter`, once the request has an id: a bad signature is refused
/// (403, never an open relay), the `CDN-Loop` hop limit enforced (508), and
/// the control plane answered.
pub(super) async fn arrive(
    fleet: &Fleet,
    identified: Arrival,
    cache: Option<&'static CacheRuntime>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<Arrival> {
    if let Arrival::Refuse(..) = identified {
        return Ok(identified);
    }
    if fleet.hops(session.req_header()) > fleet.max_hops {
        metrics::FLEET_REFUSED.with_label_values(&["loop"]).inc();
        return Ok(Arrival::Refuse(508, EdgeReason::LoopDetected));
    }
    if session.req_header().uri.path().starts_with(CONTROL_PREFIX) {
        if ctx.fleet.from_peer.is_none() {
            return Ok(Arrival::Refuse(403, EdgeReason::FleetSignature));
        }
        control(fleet, cache, session).await?;
        return Ok(Arrival::Answered);
    }
    Ok(Arrival::Continue)
}

/// Peers' calls: the probe, and a purge fanned out from another node.
async fn control(
    fleet: &Fleet,
    cache: Option<&'static CacheRuntime>,
    session: &mut Session,
) -> Result<()> {
    let req = session.req_header();
    let path = req.uri.path();
    let (status, body) = if path == PROBE_PATH {
        if crate::lifecycle::is_stopping() {
            (503, format!("{} stopping\n", fleet.node))
        } else {
            (200, format!("{}\n", fleet.node))
        }
    } else if path == crate::fleet::PURGE_PATH && req.method == http::Method::POST {
        let query = req.uri.query().unwrap_or("").to_string();
        match crate::admin::purge_local(cache, &query).await {
            Ok(n) => (
                200,
                format!("{{\"node\": \"{}\", \"purged\": {n}}}\n", fleet.node),
            ),
            Err((status, why)) => (status.as_u16(), why),
        }
    } else if path == crate::fleet::PURGES_PATH {
        let since = req
            .uri
            .query()
            .and_then(|q| q.strip_prefix("since="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (
            200,
            cache.map(|c| c.purges().since(since)).unwrap_or_default(),
        )
    } else {
        (404, "no such fleet endpoint\n".to_string())
    };
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    super::compression::off(session);
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(body)), true)
        .await?;
    Ok(())
}

/// `request_cache_filter`, on a sharded route for a client's request (a
/// peer's hop is served where it lands): whether this node's cache is used.
/// When another node owns the key, its owners are noted for
/// `upstream_peer`, and the local cache is used only with `also_local`.
pub(super) fn shard(shard: Shard, owner: Owner, ctx: &mut RequestCtx) -> bool {
    match owner {
        Owner::Local => true,
        Owner::Peers(owners) => {
            ctx.fleet.owners = owners;
            shard.also_local
        }
    }
}

/// `upstream_peer`: the next owner to try, if any is left.
pub(super) fn next_owner(
    fleet: &Fleet,
    pool: &crate::upstream::Pool,
    ctx: &mut RequestCtx,
) -> Option<Box<HttpPeer>> {
    let addr = *ctx.fleet.owners.get(ctx.fleet.next_owner)?;
    ctx.fleet.next_owner += 1;
    ctx.fleet.target = Target::Peer(addr);
    let mut peer = HttpPeer::new(addr, false, String::new());
    let o = &mut peer.options;
    o.connection_timeout = Some(fleet.connect_timeout);
    o.total_connection_timeout = Some(fleet.connect_timeout);
    // The owner may be fetching from the origin: wait as long as the pool would.
    o.read_timeout = Some(pool.timeouts.read);
    o.write_timeout = Some(pool.timeouts.write);
    o.idle_timeout = Some(pool.timeouts.idle);
    Some(Box::new(peer))
}

/// `upstream_peer`, on a route with `cache.parent`: a shield node chosen by
/// consistent hash on the cache key (GET and HEAD only), until every parent
/// failed; then the origin, or 502 with `parent_fallback: error`.
pub(super) fn next_parent(
    snap: &crate::runtime::Snapshot,
    session: &Session,
    route: &crate::routing::Route,
    ctx: &mut RequestCtx,
) -> Result<Option<Box<HttpPeer>>> {
    let Some(route_cache) = &route.cache else {
        return Ok(None);
    };
    let Some(parent) = route_cache.parent else {
        return Ok(None);
    };
    let method = &session.req_header().method;
    if ctx.fleet.parents_done || !(method == http::Method::GET || method == http::Method::HEAD) {
        return Ok(None);
    }
    let pool = snap.edge.pools.get(parent.pool);
    super::caching::primary_key(session, ctx, route_cache);
    let key = ctx.cache.primary.as_deref().unwrap_or_default();
    let order = ctx
        .place
        .region
        .map_or(&[][..], |r| snap.edge.geo.regions.order(r));
    match pool.select_near(key, &ctx.upstream.failed, order) {
        Some(addr) => {
            ctx.fleet.target = Target::Parent(addr);
            pool.requests_metric.inc();
            Ok(Some(pool.peer(addr, false)))
        }
        None => {
            ctx.fleet.parents_done = true;
            ctx.fleet.target = Target::Origin;
            metrics::UPSTREAM_ERRORS
                .with_label_values(&[&pool.name, "no_backend"])
                .inc();
            if parent.fallback_to_origin {
                Ok(None)
            } else {
                pingora::Error::e_explain(
                    pingora::ErrorType::HTTPStatus(502),
                    format!("every parent in upstream {} is down", pool.name),
                )
            }
        }
    }
}

/// A failed attempt at a peer or a parent: handled here (the caller
/// retries) when it was one. `true` then.
pub(super) fn attempt_failed(
    snap: &crate::runtime::Snapshot,
    ctx: &mut RequestCtx,
    e: &pingora::Error,
) -> bool {
    let hop = snap
        .edge
        .fleet
        .as_deref()
        .is_some_and(|f| hop_failed(f, ctx, &e.to_string()));
    hop || parent_failed(snap, ctx)
}

/// An attempt at a shield node failed: it is not tried again for this
/// request; the next parent, or the origin, is. `true` when it was a parent.
fn parent_failed(snap: &crate::runtime::Snapshot, ctx: &mut RequestCtx) -> bool {
    let Target::Parent(addr) = ctx.fleet.target else {
        return false;
    };
    ctx.upstream.failed.push(addr);
    ctx.fleet.target = Target::Origin;
    if let Some(parent) = ctx
        .route
        .and_then(|i| snap.edge.router.get(i).cache.as_ref())
        .and_then(|c| c.parent)
    {
        let pool = snap.edge.pools.get(parent.pool);
        metrics::UPSTREAM_ERRORS
            .with_label_values(&[&pool.name, "parent"])
            .inc();
        if let Some(stats) = pool.stats(addr) {
            stats.error();
        }
    }
    true
}

/// An attempt at a peer failed (connect error, reset, timeout, garbage):
/// the peer leaves the ring until a probe brings it back, and the request
/// goes on to the next owner or the origin. `true` when it was a peer.
fn hop_failed(fleet: &Fleet, ctx: &mut RequestCtx, why: &str) -> bool {
    let Target::Peer(addr) = ctx.fleet.target else {
        return false;
    };
    metrics::FLEET_FORWARDS.with_label_values(&["failed"]).inc();
    fleet.mark_failed(addr, why);
    ctx.fleet.target = Target::Origin;
    if ctx.fleet.next_owner >= ctx.fleet.owners.len() {
        metrics::FLEET_FALLBACKS.inc();
    }
    true
}

/// `upstream_response_filter`: the owner answered.
pub(super) fn answered(ctx: &RequestCtx) {
    if let Target::Peer(_) = ctx.fleet.target {
        metrics::FLEET_FORWARDS.with_label_values(&["ok"]).inc();
    }
}

/// `logging`: a request served for a peer.
pub(super) fn finished(ctx: &RequestCtx) {
    if ctx.fleet.from_peer.is_some() {
        metrics::FLEET_SERVED_FOR_PEERS.inc();
    }
}

/// `upstream_request_filter` for a hop to a peer or a parent: the target
/// stays as the client sent it (that node routes it itself); in a fleet the
/// hop is signed and marked in `CDN-Loop`.
pub(super) fn mark_hop(
    fleet: Option<&Fleet>,
    req: &mut pingora::http::RequestHeader,
) -> Result<()> {
    match fleet {
        Some(f) => f.mark_hop(req, SystemTime::now()),
        None => Ok(()),
    }
}
