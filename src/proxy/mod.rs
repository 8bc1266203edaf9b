//! The `ProxyHttp` implementation: a table of contents. Each hook delegates to
//! the module that owns the concern.
//!
//! | phase                     | what happens here                               | module        |
//! |---------------------------|-------------------------------------------------|---------------|
//! | `early_request_filter`    | Accept-Encoding for the compression module      | compression   |
//! | `request_filter`          | client, TLS identity, request id, ACME HTTP-01 answers, fleet hop and loop check, admission, route → 404, HTTPS redirect | client, acme_challenge, fleet, admission |
//! | cache hooks               | enable (or shard to the key's owner), key, hit/stale rules, storability, Vary | caching → cache, fleet |
//! | `upstream_peer`           | the key's owner or a shield, else a healthy, untried backend of the pool | attempts → fleet, upstream |
//! | `fail_to_connect` / `error_while_proxy` | count, and retry elsewhere within the budget | attempts, fleet |
//! | `upstream_request_filter` | path rewrite, X-Forwarded-*, request id, rules  | routing, forwarding |
//! | `upstream_response_filter`| strip origin identity headers                   | forwarding    |
//! | `response_filter`         | route response rules, Cache-Status and invalidation, request id, HSTS, compression, drain close, the response's own `Date` | routing, caching, forwarding, compression, response_date |
//! | `fail_to_proxy`           | edge error page without backend details; a broken-off body ends the connection | edge_response |
//! | `logging`                 | metrics and the access log line                 | metrics, access_log |

mod access_log;
mod acme_challenge;
mod admission;
mod attempts;
mod caching;
mod client;
mod client_stream;
mod compression;
mod connections;
mod context;
mod edge_response;
mod fast_hit;
mod fleet;
mod rehome;
mod response_date;
mod write_coalesce;

use admission::Admission;
pub(crate) use connections::CountConnections;
pub(crate) use context::RequestCtx;

use crate::cache::{CacheRuntime, RouteCache};
use crate::filters::EdgeReason;
use crate::lifecycle;
use crate::metrics::{self, RouteMetrics};
use crate::routing::request_host;
use crate::runtime::Snapshot;
use async_trait::async_trait;
use pingora::cache::key::{CacheKey, HashBinary};
use pingora::cache::{CacheMeta, ForcedFreshness, HitHandler, RespCacheable};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// The status the access log gives a request the client abandoned before
/// any answer (nginx's 499 "client closed request"); never sent, and
/// counted in metrics as status class `none`.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The edge proxy: the runtime snapshot plus pre-resolved per-route metrics.
pub(crate) struct Edge {
    snap: Arc<Snapshot>,
    cache: Option<&'static CacheRuntime>,
    route_metrics: Vec<RouteMetrics>,
    unrouted_metrics: RouteMetrics,
}

impl Edge {
    pub(crate) fn new(snap: Arc<Snapshot>, cache: Option<&'static CacheRuntime>) -> Edge {
        let route_metrics = snap
            .edge
            .router
            .iter()
            .map(|r| RouteMetrics::new(&r.name))
            .collect();
        Edge {
            snap,
            cache,
            route_metrics,
            unrouted_metrics: RouteMetrics::new("-"),
        }
    }

    /// The cache runtime and the matched route's cache policy, if it caches.
    fn caching(&self, ctx: &RequestCtx) -> Option<(&'static CacheRuntime, &RouteCache)> {
        let route = self.snap.edge.router.get(ctx.route?);
        Some((self.cache?, route.cache.as_ref()?))
    }

    /// The route's pool name, for metrics (`-` before routing).
    fn pool_name(&self, ctx: &RequestCtx) -> String {
        ctx.route
            .map(|i| {
                self.snap
                    .edge
                    .pools
                    .get(self.snap.edge.router.get(i).upstream)
                    .name
                    .clone()
            })
            .unwrap_or_else(|| "-".into())
    }

    /// What the edge's own pages for this request carry.
    fn page<'a>(&'a self, ctx: &'a RequestCtx) -> edge_response::Page<'a> {
        edge_response::Page {
            pages: &self.snap.edge.error_pages,
            request_id_header: &self.snap.edge.forwarding.request_id_header,
            request_id: &ctx.request_id,
            hsts: ctx
                .listener
                .and_then(|i| self.snap.connections.listeners[i].hsts.as_ref()),
        }
    }

    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
    ) -> Result<bool> {
        ctx.edge_reason = Some(EdgeReason::for_status(status));
        edge_response::respond(session, status, &self.page(ctx), None).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    /// Boxed: Pingora moves every request's whole proxy future into a box,
    /// and the context is in that future twice (argument and local of
    /// `process_request`); a pointer there instead of 576 bytes cut ~1.8k
    /// instructions per hit (bench/instructions.sh).
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new())
    }

    /// Pipelined HTTP/1 requests are answered in order (RFC 9112 §9.3.2;
    /// Pingora's default closes the connection after the first and drops
    /// the rest). Compression negotiates before Pingora's module reads the
    /// request.
    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        session.as_downstream_mut().set_pipelining_enabled(true);
        if let Some(c) = &self.snap.edge.compression {
            compression::on_request(session, ctx, c)?;
        }
        Ok(())
    }

    /// Identifies the client and the request, then routes it. Answers 404 itself
    /// when no route matches. While draining, asks for the connection to close.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let fleet_arrival = client::identify(&self.snap, session, ctx)?;
        if acme_challenge::answer(session, ctx).await? {
            return Ok(true);
        }
        let from_peer = ctx.fleet.from_peer.is_some();
        if lifecycle::is_draining() {
            session.set_keepalive(None);
        }
        if let Some(f) = &self.snap.edge.fleet {
            match fleet::arrive(f, fleet_arrival, self.cache, session, ctx).await? {
                fleet::Arrival::Continue => {}
                fleet::Arrival::Answered => return Ok(true),
                fleet::Arrival::Refuse(status, reason) => {
                    ctx.edge_reason = Some(reason);
                    session.set_keepalive(None);
                    edge_response::respond(session, status, &self.page(ctx), None).await?;
                    return Ok(true);
                }
            }
        }
        let raw_head = match session.as_downstream() {
            pingora::protocols::http::ServerSession::H1(h1)
                if session
                    .req_header()
                    .headers
                    .contains_key(http::header::TRANSFER_ENCODING) =>
            {
                Some(h1.get_headers_raw_bytes())
            }
            _ => None,
        };
        let client_ip = ctx
            .client
            .as_ref()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.ip);
        ctx.place = self.snap.edge.geo.locate(client_ip);
        match admission::admit(
            &self.snap,
            session.req_header(),
            raw_head.as_deref(),
            client_ip,
            &ctx.place,
            from_peer,
            std::time::Instant::now(),
        ) {
            Admission::Route(index, slots) => {
                ctx.route = Some(index);
                ctx.slots = slots;
                compression::routed(session, ctx, self.snap.edge.router.get(index).compression)?;
                if let Some(port) = ctx
                    .listener
                    .and_then(|i| self.snap.connections.listeners[i].redirect_https)
                {
                    ctx.edge_reason = Some(EdgeReason::HttpsRedirect);
                    edge_response::redirect_https(
                        session,
                        port,
                        &self.snap.edge.forwarding.request_id_header,
                        &ctx.request_id,
                    )
                    .await?;
                    return Ok(true);
                }
                if let Some((runtime, route_cache)) = self.caching(ctx) {
                    let compresses = self.snap.edge.router.get(index).compression;
                    if fast_hit::serve(self, session, ctx, runtime, route_cache, compresses).await?
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Admission::Refuse {
                rejection,
                close,
                retry_after,
            } => {
                if rejection.status != 404 {
                    metrics::REQUESTS_REFUSED
                        .with_label_values(&[rejection.reason.as_str()])
                        .inc();
                    log::debug!(
                        "request {}: refused ({}): {}",
                        ctx.request_id,
                        rejection.status,
                        rejection.reason.as_str()
                    );
                }
                if close {
                    session.set_keepalive(None);
                }
                ctx.edge_reason = Some(rejection.reason);
                edge_response::respond(session, rejection.status, &self.page(ctx), retry_after)
                    .await?;
                Ok(true)
            }
        }
    }

    /// Counts streamed body bytes: a chunked body over `limits.max_body_size`
    /// ends the request with 413 (a declared one was refused up front).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > self.snap.edge.limits.max_body_size {
                metrics::REQUESTS_REFUSED
                    .with_label_values(&[EdgeReason::BodyTooLarge.as_str()])
                    .inc();
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over limits.max_body_size",
                );
            }
        }
        Ok(())
    }

    /// Caching routes use the cache for GET/HEAD; see [`caching::enable`].
    /// An upgrade (WebSocket) handshake never touches the cache.
    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        if session.is_upgrade_req() {
            return Ok(());
        }
        if let Some((runtime, route)) = self.caching(ctx) {
            let local = match (&self.snap.edge.fleet, route.shard) {
                (Some(f), Some(shard)) if ctx.fleet.from_peer.is_none() => {
                    let owner = f.owner(caching::primary_key(session, ctx, route));
                    fleet::shard(shard, owner, ctx)
                }
                _ => true,
            };
            if local {
                caching::enable(session, ctx, runtime);
            }
        }
        Ok(())
    }

    /// Only called with the cache enabled, i.e. on a caching route.
    fn cache_key_callback(&self, session: &Session, ctx: &mut Self::CTX) -> Result<CacheKey> {
        let (_, route) = self.caching(ctx).ok_or_else(|| {
            Error::explain(
                ErrorType::InternalError,
                "cache key asked for a non-caching route",
            )
        })?;
        Ok(match ctx.cache.key.take() {
            Some(key) => key,
            None => caching::cache_key(session, ctx, route),
        })
    }

    async fn cache_hit_filter(
        &self,
        session: &mut Session,
        meta: &CacheMeta,
        _hit_handler: &mut HitHandler,
        is_fresh: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<ForcedFreshness>> {
        Ok(self
            .caching(ctx)
            .and_then(|(_, route)| caching::hit_filter(session, meta, is_fresh, route)))
    }

    /// Pingora's conditional rules, plus `If-Modified-Since` against a stored
    /// response without `Last-Modified`, judged by its `Date` (RFC 9111 §4.3.2).
    fn cache_not_modified_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        _ctx: &mut Self::CTX,
    ) -> Result<bool> {
        Ok(caching::not_modified(session.req_header(), resp))
    }

    /// `Cache-Control: only-if-cached` that missed: 504, never the origin.
    async fn proxy_upstream_filter(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<bool> {
        if self.caching(ctx).is_some() && caching::only_if_cached(session) {
            self.answer(session, ctx, 504).await?;
            return Ok(false);
        }
        Ok(true)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<RespCacheable> {
        match self.caching(ctx) {
            Some((runtime, route)) => Ok(caching::response_cacheable(
                session, resp, ctx, route, runtime,
            )),
            None => Ok(RespCacheable::Uncacheable(
                pingora::cache::NoCacheReason::NeverEnabled,
            )),
        }
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        _ctx: &mut Self::CTX,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        caching::vary(meta, req)
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
        error: Option<&Error>,
    ) -> bool {
        caching::serve_stale(error)
    }

    /// Picks a healthy backend of the route's pool that this request has not
    /// failed on yet. No candidate left → 503 (before any attempt) or the
    /// previous failure's 502.
    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        attempts::pick(&self.snap, session, ctx)
    }

    /// Connection to a backend failed: nothing was sent, so any method may be
    /// retried on another backend while the pool's retry budget lasts.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        e: Box<Error>,
    ) -> Box<Error> {
        attempts::failed_to_connect(&self.snap, ctx, e)
    }

    /// A failure after the request went out: counted; retried (by Pingora's
    /// default rule) only for idempotent requests on a reused connection.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        attempts::failed_after_sending(&self.snap, peer, session, e, ctx, client_reused)
    }

    /// Rewrites the target if the route strips its prefix, then sets the
    /// forwarding headers and the route's request header rules.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.cache.request_time = Some(std::time::SystemTime::now());
        let Some(route) = ctx.route.map(|i| self.snap.edge.router.get(i)) else {
            return Ok(());
        };
        // A hop to the owner or a shield keeps the target: that node routes,
        // rewrites and filters the request itself.
        let to_origin = ctx.fleet.target == fleet::Target::Origin;
        let target = upstream_request
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str());
        if let Some(new_target) = route.rewrite_target(target).filter(|_| to_origin) {
            let uri = new_target.parse::<http::Uri>().map_err(|e| {
                Error::because(ErrorType::InternalError, "rewritten target is not a URI", e)
            })?;
            upstream_request.set_uri(uri);
        }
        if let Some(client) = &ctx.client {
            let host = request_host(session.req_header());
            self.snap.edge.forwarding.upstream_request(
                upstream_request,
                client,
                host,
                &ctx.request_id,
            )?;
        }
        self.snap
            .edge
            .geo
            .tag_request(upstream_request, &ctx.place)?;
        // As from an origin: one identity copy, encoded per client here.
        compression::upstream_request(upstream_request, route.compression)?;
        if !to_origin {
            return fleet::mark_hop(self.snap.edge.fleet.as_deref(), upstream_request);
        }
        if let Some(route_cache) = &route.cache {
            caching::upstream_request(upstream_request, route_cache)?;
        }
        route.request_headers.apply_request(upstream_request)
    }

    /// Origin identity headers go before anything else sees the response.
    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.cache.response_time = Some(std::time::SystemTime::now());
        attempts::answered(&self.snap, ctx, upstream_response.status.as_u16());
        fleet::answered(ctx);
        if let Some(cl) = upstream_response.headers.get(http::header::CONTENT_LENGTH) {
            match crate::filters::framing::response_content_length(cl.as_bytes()) {
                Ok(None) => {}
                Ok(Some(n)) => upstream_response.insert_header(http::header::CONTENT_LENGTH, n)?,
                Err(_) => {
                    metrics::UPSTREAM_ERRORS
                        .with_label_values(&[&self.pool_name(ctx), "bad_framing"])
                        .inc();
                    return Error::e_explain(
                        ErrorType::HTTPStatus(502),
                        "origin sent an invalid Content-Length",
                    );
                }
            }
        }
        self.snap
            .edge
            .forwarding
            .upstream_response(upstream_response);
        if upstream_response.status == http::StatusCode::NOT_MODIFIED && self.caching(ctx).is_some()
        {
            ctx.cache.not_modified = Some(Box::new(upstream_response.clone()));
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let route = ctx.route.map(|i| self.snap.edge.router.get(i));
        if let Some(route) = route {
            route.response_headers.apply_response(upstream_response)?;
            if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
                session.set_read_timeout(Some(route.stream_idle_timeout));
            }
        }
        if let Some(c) = &self.snap.edge.compression {
            let on = route.is_some_and(|r| r.compression);
            compression::on_response(session, upstream_response, on, c);
        }
        if let Some((runtime, route_cache)) = self.caching(ctx) {
            caching::response_headers(
                session,
                upstream_response,
                ctx,
                route_cache,
                &self.snap.edge.cache_name,
            )?;
            if ctx.cache.invalidate {
                caching::invalidate(session, upstream_response, ctx, runtime, route_cache).await;
            }
        }
        self.snap
            .edge
            .forwarding
            .downstream_response(upstream_response, &ctx.request_id)?;
        if let Some(hsts) = ctx
            .listener
            .and_then(|i| self.snap.connections.listeners[i].hsts.as_ref())
        {
            upstream_response.insert_header("Strict-Transport-Security", hsts)?;
        }
        if lifecycle::is_draining() {
            session.set_keepalive(None);
        }
        response_date::keep(session, upstream_response);
        Ok(())
    }

    /// The request failed: answer with a small edge page. Timeouts → 504, other
    /// upstream failures → 502, our own HTTPStatus errors keep their status.
    /// When the response head already went out (the origin's body broke off),
    /// no page can follow: what arrived is sent and the connection closed,
    /// so the client sees a short body, not a complete-looking one.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        if let Some(sent) = session.response_written().map(|r| r.status) {
            if !sent.is_informational() || sent == http::StatusCode::SWITCHING_PROTOCOLS {
                ctx.truncated = true;
                // Never finish the body: a chunked one would get its last
                // chunk and look complete.
                session.as_downstream_mut().shutdown().await;
                return FailToProxy {
                    error_code: sent.as_u16(),
                    can_reuse_downstream: false,
                };
            }
        }
        let code = edge_response::status_for(e);
        if code == 0 {
            ctx.cancelled = true;
            let protocol = if session.is_http2() { "h2" } else { "h1" };
            metrics::REQUESTS_CANCELLED
                .with_label_values(&[protocol])
                .inc();
        }
        if code > 0 {
            ctx.edge_reason = Some(EdgeReason::for_status(code));
            if let Err(err) = edge_response::respond_error(session, code, &self.page(ctx)).await {
                log::debug!(
                    "request {}: could not send the error page: {err}",
                    ctx.request_id
                );
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Records metrics and writes the access log line.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let route = ctx.route.map(|i| self.snap.edge.router.get(i));
        let route_metrics = ctx
            .route
            .map_or(&self.unrouted_metrics, |i| &self.route_metrics[i]);
        route_metrics.record(status, elapsed.as_secs_f64());
        fleet::finished(ctx);
        if let Some(reason) = ctx.edge_reason {
            metrics::EDGE_RESPONSES
                .with_label_values(&[reason.as_str()])
                .inc();
        }
        if self.caching(ctx).is_some() {
            caching::after_response(session, ctx);
        }
        if let (Some(rep), Some(client)) = (&self.snap.edge.reputation, &ctx.client) {
            if let Some(event) = crate::behaviour::Event::from_outcome(status, ctx.edge_reason) {
                rep.record(client.ip, event, std::time::Instant::now());
            }
        }
        access_log::write(
            &self.snap.edge,
            session,
            ctx,
            if ctx.cancelled {
                CLIENT_CLOSED_REQUEST
            } else {
                status
            },
            elapsed,
            route,
            e,
        );
    }
}
