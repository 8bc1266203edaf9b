//! Per-request state shared across the proxy hooks, split by concern.

use crate::forwarding::ClientInfo;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

/// Everything one request carries from hook to hook.
pub(crate) struct RequestCtx {
    pub started: Instant,
    /// Set in `request_filter`; every later hook can rely on it.
    pub client: Option<ClientInfo>,
    pub request_id: String,
    /// Index of the listener the request came in on.
    pub listener: Option<usize>,
    /// Index of the matched route; `None` if none matched (edge 404).
    pub route: Option<usize>,
    pub upstream: UpstreamAttempts,
    /// Why the edge answered itself, for metrics and the access log.
    pub edge_reason: Option<crate::filters::EdgeReason>,
    pub cache: CacheCtx,
    /// Request body bytes received so far (for `limits.max_body_size`).
    pub body_bytes: u64,
    /// Concurrency slots held until the request ends.
    pub slots: Vec<crate::concurrency::Slot>,
    /// The client's `Accept-Encoding`, kept when compression rewrote it.
    pub accept_encoding: Option<Vec<http::HeaderValue>>,
    /// The response head went out but its body could not be completed (the
    /// origin's broke off): the client got a short body and a close.
    pub truncated: bool,
    /// The client abandoned the request before any answer went out.
    pub cancelled: bool,
    /// Peer hops and owners on a fleet's ring.
    pub fleet: super::fleet::FleetCtx,
    /// Where the client is (set in `request_filter`).
    pub place: crate::geo::Place,
}

/// What the cache hooks carry between phases.
#[derive(Default)]
pub(crate) struct CacheCtx {
    /// When the request went upstream and the response came back (RFC 9111 §4.2.3).
    pub request_time: Option<SystemTime>,
    pub response_time: Option<SystemTime>,
    /// Lookup result label, set with `Cache-Status`.
    pub result: Option<&'static str>,
    /// An unsafe request on a caching route: invalidate its URL if it succeeds.
    pub invalidate: bool,
    /// The primary key bytes, when computed before the cache key (fleet
    /// sharding): the cache key takes them over.
    pub primary: Option<Vec<u8>>,
    /// The cache key, when [`super::fast_hit`] computed it and passed.
    pub key: Option<pingora::cache::key::CacheKey>,
    /// Answered by [`super::fast_hit`]: a hit fresh until then.
    pub fast_hit: Option<SystemTime>,
    /// The origin's 304 to a revalidation: its fields update the stored ones.
    pub not_modified: Option<Box<pingora::http::ResponseHeader>>,
}

/// Bookkeeping of the tries against the route's upstream pool.
#[derive(Default)]
pub(crate) struct UpstreamAttempts {
    /// Backends tried so far, in order.
    pub tried: Vec<SocketAddr>,
    /// Backends that failed this request (a connection refused or timed
    /// out, a reset, no answer, an unparseable answer): never picked again
    /// for it.
    pub failed: Vec<SocketAddr>,
    /// A response header arrived: nothing is retried from now on.
    pub answered: bool,
    /// The current attempt, counted in its backend's requests in flight
    /// (pools that choose by load).
    pub in_flight: Option<crate::upstream::InFlight>,
    /// When the current attempt started (for the backend's latency).
    pub started: Option<std::time::Instant>,
}

impl UpstreamAttempts {
    pub(crate) fn current(&self) -> Option<SocketAddr> {
        self.tried.last().copied()
    }
}

impl RequestCtx {
    pub(crate) fn new() -> Self {
        RequestCtx {
            started: Instant::now(),
            client: None,
            request_id: String::new(),
            listener: None,
            route: None,
            upstream: UpstreamAttempts::default(),
            edge_reason: None,
            cache: CacheCtx::default(),
            body_bytes: 0,
            slots: Vec::new(),
            accept_encoding: None,
            truncated: false,
            cancelled: false,
            fleet: Default::default(),
            place: Default::default(),
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        Self::new()
    }
}
