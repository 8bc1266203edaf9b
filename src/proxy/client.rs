//! Who sent a request: the TCP peer, TLS and a verified client certificate,
//! a signed fleet hop, and from those the client's address (trusted proxies
//! and peers may name it) and the request id.

use super::{fleet, RequestCtx};
use crate::runtime::Snapshot;
use pingora::proxy::Session;
use pingora::Result;
use std::net::{IpAddr, Ipv4Addr};

/// `request_filter`, first: fills `ctx.listener`, `ctx.client` and
/// `ctx.request_id`; a client's forged certificate or fleet header is
/// removed. What the fleet check found, for [`fleet::arrive`].
pub(super) fn identify(
    snap: &Snapshot,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<fleet::Arrival> {
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    ctx.listener = session
        .server_addr()
        .and_then(|a| a.as_inet())
        .and_then(|local| snap.connections.listener_for(*local));
    let subject = crate::tls::listener::info(session)
        .and_then(|i| i.client.as_ref())
        .map(|c| c.subject.clone());
    let arrival = match &snap.edge.fleet {
        Some(f) => fleet::identify(f, session, ctx),
        None => fleet::Arrival::Continue,
    };
    let fwd = &snap.edge.forwarding;
    fwd.client_certificate(session.req_header_mut(), subject.as_deref())?;
    let from_peer = ctx.fleet.from_peer.is_some();
    let client = fwd.client_info(peer, session.req_header(), tls, from_peer);
    ctx.request_id = fwd.request_id(&client, session.req_header());
    ctx.client = Some(client);
    Ok(arrival)
}
