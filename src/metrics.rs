//! Every Prometheus metric Parapet exports, in one place.
//!
//! All metrics live in the `prometheus` crate's default registry (the one
//! pingora-prometheus serves too). Labels are bounded by the config: route and
//! upstream names, backend addresses from the config, status classes, and fixed
//! reason words. Never a raw path, host or client address.
//!
//! Request metrics are recorded once per request in the proxy's `logging` hook.

use prometheus::{
    register_gauge_vec, register_histogram, register_histogram_vec, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, GaugeVec, Histogram,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};
use std::sync::LazyLock;

/// Request duration buckets, seconds: from a cache hit on loopback to a slow origin.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Downstream requests answered, by route name (`-` when no route matched) and
/// status class (`1xx`..`5xx`, or `none` when the client went away first).
pub(crate) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_requests_total",
        "Downstream requests answered, by route and status class.",
        &["route", "status_class"]
    )
    .unwrap()
});

/// Time from the request head arriving to the end of the response, by route.
pub(crate) static REQUEST_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "parapet_request_duration_seconds",
        "Time to answer a downstream request, by route.",
        &["route"],
        DURATION_BUCKETS.to_vec()
    )
    .unwrap()
});

/// Requests sent to an upstream pool (each attempt, retries included).
pub(crate) static UPSTREAM_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_upstream_requests_total",
        "Attempts to forward a request to an upstream pool, retries included.",
        &["upstream"]
    )
    .unwrap()
});

/// Failures talking to an upstream pool, by kind: `connect`, `timeout`,
/// `read`, `write`, `no_backend` (nothing healthy to pick), `other`.
pub(crate) static UPSTREAM_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_upstream_errors_total",
        "Failures forwarding to an upstream pool, by kind.",
        &["upstream", "kind"]
    )
    .unwrap()
});

/// Retries onto another backend after a failure.
pub(crate) static UPSTREAM_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_upstream_retries_total",
        "Requests retried on another backend of the pool.",
        &["upstream"]
    )
    .unwrap()
});

/// 1 while the active health check considers a backend healthy, else 0.
pub(crate) static BACKEND_HEALTHY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_backend_healthy",
        "1 if the backend passes its health check, 0 if not.",
        &["upstream", "backend", "region"]
    )
    .unwrap()
});

/// Health transitions seen by the active checks.
pub(crate) static BACKEND_HEALTH_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_backend_health_changes_total",
        "Backends flipping health state, by new state (healthy / unhealthy).",
        &["upstream", "backend", "to"]
    )
    .unwrap()
});

/// Resolutions of a pool's host names that failed or came back empty (DNS
/// service discovery, `upstreams.NAME.discovery`); the pool keeps the
/// name's last good addresses. Counted per name and round, and for names
/// that did not resolve when the config loaded.
pub(crate) static DISCOVERY_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_upstream_discovery_failures_total",
        "Host-name resolutions of a discovery pool that failed or were empty (last good addresses kept).",
        &["upstream"]
    )
    .unwrap()
});

/// Backends a discovery pool currently has: its literal addresses plus every
/// address its host names resolve to.
pub(crate) static DISCOVERED_BACKENDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_upstream_discovered_backends",
        "Backends of a discovery pool after its latest resolution.",
        &["upstream"]
    )
    .unwrap()
});

/// Open downstream (client) connections.
pub(crate) static DOWNSTREAM_CONNECTIONS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "parapet_downstream_connections_active",
        "Client connections currently open."
    )
    .unwrap()
});

/// Downstream connections accepted since start.
pub(crate) static DOWNSTREAM_CONNECTIONS_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_downstream_connections_total",
        "Client connections accepted."
    )
    .unwrap()
});

/// Admin API requests refused for a missing or wrong token.
pub(crate) static ADMIN_AUTH_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_admin_auth_failures_total",
        "Admin API requests refused for a missing or wrong token."
    )
    .unwrap()
});

/// TLS handshakes completed on the public listeners.
pub(crate) static TLS_HANDSHAKES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_tls_handshakes_total",
        "TLS handshakes completed by clients."
    )
    .unwrap()
});

/// Of those, handshakes that resumed a session (ticket or session id).
pub(crate) static TLS_RESUMED_HANDSHAKES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_tls_resumed_handshakes_total",
        "TLS handshakes completed by clients that resumed a session."
    )
    .unwrap()
});

/// When each served certificate expires (notAfter, Unix seconds), by DNS
/// name and source (`file` or `acme`). Alert on `... - time() < 14 * 86400`.
pub(crate) static TLS_CERTIFICATE_EXPIRY: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "parapet_tls_certificate_expiry_seconds",
        "Expiry (notAfter) of each served certificate as a Unix time, by name and source.",
        &["name", "source"]
    )
    .unwrap()
});

/// ACME orders by result: `issued`, `failed` (the CA refused, a challenge
/// failed, or the CA could not be reached).
pub(crate) static ACME_ORDERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_acme_orders_total",
        "ACME certificate orders by result (issued, failed).",
        &["result"]
    )
    .unwrap()
});

/// Questions to the CA about when to renew (RFC 9773), by result:
/// `window` (answered), `unsupported` (the directory offers none), `failed`.
pub(crate) static ACME_RENEWAL_INFO: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_acme_renewal_info_total",
        "ACME renewal information requests (RFC 9773) by result (window, unsupported, failed).",
        &["result"]
    )
    .unwrap()
});

/// OCSP responses fetched for stapling, by result (`ok`, `failed`).
pub(crate) static OCSP_FETCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_ocsp_fetches_total",
        "OCSP responses fetched for stapling, by result (ok, failed).",
        &["result"]
    )
    .unwrap()
});

/// Failed client TLS handshakes by reason (`protocol_version`,
/// `no_shared_cipher`, `client_certificate`, `plain_http`, `timeout`,
/// `closed`, `other`).
pub(crate) static TLS_HANDSHAKE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_tls_handshake_failures_total",
        "Client TLS handshakes that failed, by reason.",
        &["reason"]
    )
    .unwrap()
});

/// Responses the edge generated itself, by reason (`no_route`, `bad_gateway`,
/// `gateway_timeout`, `no_backend`, `bad_request`, `internal`).
pub(crate) static EDGE_RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_edge_responses_total",
        "Responses generated by the edge itself rather than an origin, by reason.",
        &["reason"]
    )
    .unwrap()
});

/// 1 once this process has started draining (handoff or shutdown).
pub(crate) static DRAINING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "parapet_draining",
        "1 while this process drains after a handoff or a stop signal."
    )
    .unwrap()
});

/// Constant 1, labelled with the build version.
pub(crate) static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_build_info",
        "Build information; the value is always 1.",
        &["version"]
    )
    .unwrap()
});

/// Cache lookups by result: `hit`, `stale`, `miss`, `expired`, `revalidated`,
/// `uncacheable`, `bypass`.
pub(crate) static CACHE_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_cache_lookups_total",
        "Requests through the cache, by result.",
        &["result"]
    )
    .unwrap()
});

/// Counts one cache lookup with `result`. Every hit counts one, so the
/// `hit` series is resolved once rather than by hashing its label each time.
pub(crate) fn count_cache_lookup(result: &str) {
    static HIT: LazyLock<IntCounter> = LazyLock::new(|| CACHE_LOOKUPS.with_label_values(&["hit"]));
    match result {
        "hit" => HIT.inc(),
        _ => CACHE_LOOKUPS.with_label_values(&[result]).inc(),
    }
}

/// Hits answered before pingora-cache's state machine (`proxy::fast_hit`),
/// also counted in `parapet_cache_lookups_total{result="hit"}`.
pub(crate) static CACHE_FAST_HITS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_cache_fast_hits_total",
        "Plain fresh memory hits answered without pingora-cache's lookup path."
    )
    .unwrap()
});

/// Response body bytes sent to clients, by source (`cache` or `origin`), for
/// routes with caching on.
pub(crate) static CACHE_BODY_BYTES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_cache_served_bytes_total",
        "Response body bytes served on caching routes, by source (cache, origin).",
        &["source"]
    )
    .unwrap()
});

/// Counts body bytes sent on a caching route, from the cache or the origin
/// (both series resolved once: this runs for every response there).
pub(crate) fn count_cache_body_bytes(from_cache: bool, bytes: u64) {
    static CACHE: LazyLock<IntCounter> =
        LazyLock::new(|| CACHE_BODY_BYTES.with_label_values(&["cache"]));
    static ORIGIN: LazyLock<IntCounter> =
        LazyLock::new(|| CACHE_BODY_BYTES.with_label_values(&["origin"]));
    match from_cache {
        true => CACHE.inc_by(bytes),
        false => ORIGIN.inc_by(bytes),
    }
}

/// Bytes held per storage tier, bookkeeping included.
pub(crate) static CACHE_STORED_BYTES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_cache_stored_bytes",
        "Bytes held by the cache, by tier.",
        &["tier"]
    )
    .unwrap()
});

/// Objects held per storage tier.
pub(crate) static CACHE_STORED_OBJECTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_cache_stored_objects",
        "Objects held by the cache, by tier.",
        &["tier"]
    )
    .unwrap()
});

/// Objects removed to stay within the byte budget.
pub(crate) static CACHE_EVICTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_cache_evictions_total",
        "Objects evicted to stay within the byte budget, by tier.",
        &["tier"]
    )
    .unwrap()
});

/// Time requests spent waiting for another request to fill the same object.
pub(crate) static CACHE_LOCK_WAIT: LazyLock<prometheus::Histogram> = LazyLock::new(|| {
    prometheus::register_histogram!(
        "parapet_cache_lock_wait_seconds",
        "Time spent waiting on the cache lock for a concurrent fill.",
        DURATION_BUCKETS.to_vec()
    )
    .unwrap()
});

/// Objects removed or marked stale by purges and invalidations, by kind.
pub(crate) static CACHE_PURGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_cache_purges_total",
        "Cache entries purged, by kind (invalidation: after an unsafe request).",
        &["kind"]
    )
    .unwrap()
});

/// Disk tier operations that failed (the request goes on without the disk).
pub(crate) static CACHE_DISK_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_cache_disk_errors_total",
        "Disk tier operations that failed, by operation (open, write, remove).",
        &["op"]
    )
    .unwrap()
});

/// Disk objects found corrupt or truncated (removed, never served).
pub(crate) static CACHE_DISK_CORRUPT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_cache_disk_corrupt_total",
        "Disk objects found corrupt or truncated; removed and never served."
    )
    .unwrap()
});

/// Requests refused by a filter before routing, by reason.
pub(crate) static REQUESTS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_requests_refused_total",
        "Requests refused by the edge's filters, by reason.",
        &["reason"]
    )
    .unwrap()
});

/// Connections closed because a request head took longer than
/// `limits.header_timeout` (slowloris).
pub(crate) static SLOW_CLIENTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_slow_clients_total",
        "Connections closed for not completing a request head within limits.header_timeout."
    )
    .unwrap()
});

/// Connections closed at accept for being over a cap, by cap (`total`, `per_ip`).
pub(crate) static CONNECTIONS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_connections_refused_total",
        "Client connections closed at accept for being over a cap, by cap.",
        &["cap"]
    )
    .unwrap()
});

/// Clients blocked by behaviour scoring.
pub(crate) static CLIENT_BLOCKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_clients_blocked_total",
        "Clients blocked for their behaviour score."
    )
    .unwrap()
});

/// Blocked clients whose block ran out.
pub(crate) static CLIENT_UNBLOCKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_clients_unblocked_total",
        "Blocked clients whose block ran out."
    )
    .unwrap()
});

/// Pooled upstream connections that could not be taken for reuse because
/// Pingora's idle watcher still held them (a harmless race: a new connection
/// is made instead). Pingora logs each at error level; Parapet counts them
/// here and logs them at debug.
pub(crate) static UPSTREAM_REUSE_RACES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_upstream_reuse_races_total",
        "Pooled upstream connections not reused because the pool's idle watcher still held them."
    )
    .unwrap()
});

/// Requests the client abandoned before any answer went out (an HTTP/2
/// stream reset, rapid reset included; an HTTP/1 connection closed), by
/// protocol. Logged with status 499, nginx's "client closed request".
pub(crate) static REQUESTS_CANCELLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_requests_cancelled_total",
        "Requests the client abandoned before any answer, by protocol.",
        &["protocol"]
    )
    .unwrap()
});

/// Live nodes on this node's fleet ring (itself included).
pub(crate) static FLEET_RING_MEMBERS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "parapet_fleet_ring_members",
        "Live nodes on this node's fleet ring, itself included."
    )
    .unwrap()
});

/// Fleet members going up or down (probes, or a failed hop).
pub(crate) static FLEET_MEMBERSHIP_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_fleet_membership_changes_total",
        "Fleet members that went up or down, as this node saw it.",
        &["to"]
    )
    .unwrap()
});

/// Failed resolutions of the fleet's DNS name (the last members are kept).
pub(crate) static FLEET_DISCOVERY_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_fleet_discovery_failures_total",
        "Failed or empty resolutions of fleet.discover.dns."
    )
    .unwrap()
});

/// Requests sent to the owning peer, by result: `ok` (it answered),
/// `failed` (connect error, reset, timeout: the next owner or the origin
/// was tried).
pub(crate) static FLEET_FORWARDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_fleet_forwards_total",
        "Requests forwarded to the owning peer, by result.",
        &["result"]
    )
    .unwrap()
});

/// Requests that fell back to the origin after every owner failed.
pub(crate) static FLEET_FALLBACKS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_fleet_origin_fallbacks_total",
        "Sharded requests served from the origin because every owner failed."
    )
    .unwrap()
});

/// Requests this node served for its peers (signed hops).
pub(crate) static FLEET_SERVED_FOR_PEERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "parapet_fleet_served_for_peers_total",
        "Requests this node served for peers."
    )
    .unwrap()
});

/// Peer-signed requests that did not verify (403) and hop-limit refusals (508).
pub(crate) static FLEET_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_fleet_refused_total",
        "Requests refused at the fleet boundary, by reason (bad_signature, loop).",
        &["reason"]
    )
    .unwrap()
});

/// Purges sent to peers, by result (after retries).
pub(crate) static FLEET_PURGE_FANOUT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_fleet_purge_fanout_total",
        "Purges fanned out to peers, by result (after retries).",
        &["result"]
    )
    .unwrap()
});

/// How long a peer took to apply a fanned-out purge, tries included.
pub(crate) static FLEET_PURGE_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "parapet_fleet_purge_seconds",
        "Time for a peer to apply a fanned-out purge, retries included.",
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .unwrap()
});

/// Requests in flight to each backend, read at scrape time (counted by
/// pools that choose by load: `least_connections`, `p2c_ewma`,
/// `hash_balance_factor`; 0 elsewhere).
pub(crate) static BACKEND_IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_backend_in_flight",
        "Requests in flight to the backend (pools that choose by load).",
        &["upstream", "backend"]
    )
    .unwrap()
});

/// The moving average of each backend's response-header latency (the
/// `p2c_ewma` input), read at scrape time.
pub(crate) static BACKEND_LATENCY_EWMA: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "parapet_backend_latency_ewma_seconds",
        "Moving average (1/8) of the backend's response-header latency; failures count as 1 s on p2c_ewma pools.",
        &["upstream", "backend"]
    )
    .unwrap()
});

/// 1 while passive health has a backend ejected, read at scrape time.
pub(crate) static BACKEND_EJECTED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "parapet_backend_ejected",
        "1 while outlier detection has the backend out of selection.",
        &["upstream", "backend"]
    )
    .unwrap()
});

/// Client address lookups of `geo:`, by what placed the client: `network`
/// (`geo.networks`), `database`, `unknown` (the default region), `error`
/// (a damaged database record).
pub(crate) static GEO_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_geo_lookups_total",
        "Client address lookups, by what placed the client.",
        &["source"]
    )
    .unwrap()
});

/// Requests a pool steered by region sent to a backend, by the backend's
/// region and how it was chosen: `local` (the client's region), `spill`
/// (another region took a share: the client's had too few healthy
/// backends), `panic` (too few healthy anywhere: health ignored).
pub(crate) static REGION_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_upstream_region_requests_total",
        "Requests a region-steered pool sent, by backend region and how it was chosen.",
        &["upstream", "region", "choice"]
    )
    .unwrap()
});

/// Backends ejected from selection by passive health (outlier detection).
pub(crate) static OUTLIER_EJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "parapet_outlier_ejections_total",
        "Backends ejected from selection after failing live requests, by upstream.",
        &["upstream"]
    )
    .unwrap()
});

/// Registers every metric so that the first scrape already lists them all.
pub(crate) fn init() {
    BUILD_INFO
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&UPSTREAM_REQUESTS);
    LazyLock::force(&UPSTREAM_ERRORS);
    LazyLock::force(&UPSTREAM_RETRIES);
    LazyLock::force(&BACKEND_HEALTHY);
    LazyLock::force(&BACKEND_HEALTH_CHANGES);
    LazyLock::force(&DISCOVERY_FAILURES);
    LazyLock::force(&DISCOVERED_BACKENDS);
    LazyLock::force(&DOWNSTREAM_CONNECTIONS);
    LazyLock::force(&DOWNSTREAM_CONNECTIONS_TOTAL);
    LazyLock::force(&TLS_HANDSHAKES);
    LazyLock::force(&TLS_CERTIFICATE_EXPIRY);
    LazyLock::force(&TLS_RESUMED_HANDSHAKES);
    LazyLock::force(&ACME_ORDERS);
    LazyLock::force(&ACME_RENEWAL_INFO);
    LazyLock::force(&OCSP_FETCHES);
    LazyLock::force(&ADMIN_AUTH_FAILURES);
    LazyLock::force(&TLS_HANDSHAKE_FAILURES);
    LazyLock::force(&EDGE_RESPONSES);
    LazyLock::force(&DRAINING);
    LazyLock::force(&CACHE_LOOKUPS);
    LazyLock::force(&CACHE_BODY_BYTES);
    LazyLock::force(&CACHE_FAST_HITS);
    LazyLock::force(&CACHE_STORED_BYTES);
    LazyLock::force(&CACHE_STORED_OBJECTS);
    LazyLock::force(&CACHE_EVICTIONS);
    LazyLock::force(&CACHE_LOCK_WAIT);
    LazyLock::force(&CACHE_PURGES);
    LazyLock::force(&CACHE_DISK_ERRORS);
    LazyLock::force(&CACHE_DISK_CORRUPT);
    LazyLock::force(&REQUESTS_REFUSED);
    LazyLock::force(&SLOW_CLIENTS);
    LazyLock::force(&CONNECTIONS_REFUSED);
    LazyLock::force(&UPSTREAM_REUSE_RACES);
    LazyLock::force(&REQUESTS_CANCELLED);
    LazyLock::force(&FLEET_RING_MEMBERS);
    LazyLock::force(&FLEET_MEMBERSHIP_CHANGES);
    LazyLock::force(&FLEET_DISCOVERY_FAILURES);
    LazyLock::force(&FLEET_FORWARDS);
    LazyLock::force(&FLEET_FALLBACKS);
    LazyLock::force(&FLEET_SERVED_FOR_PEERS);
    LazyLock::force(&FLEET_REFUSED);
    LazyLock::force(&FLEET_PURGE_FANOUT);
    LazyLock::force(&FLEET_PURGE_SECONDS);
    LazyLock::force(&OUTLIER_EJECTIONS);
    LazyLock::force(&GEO_LOOKUPS);
    LazyLock::force(&BACKEND_IN_FLIGHT);
    LazyLock::force(&BACKEND_LATENCY_EWMA);
    LazyLock::force(&BACKEND_EJECTED);
    LazyLock::force(&REGION_REQUESTS);
    LazyLock::force(&CLIENT_BLOCKS);
    LazyLock::force(&CLIENT_UNBLOCKS);
}

/// Current values of a metric vector summed by one label's values.
fn by_label(
    collector: &dyn prometheus::core::Collector,
    label: &str,
    value: fn(&prometheus::proto::Metric) -> f64,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for family in collector.collect() {
        for m in family.get_metric() {
            let key = m
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            *out.entry(key).or_insert(0.0) += value(m);
        }
    }
    out
}

/// A counter vector's current values summed by one label's values.
pub(crate) fn sum_by(vec: &IntCounterVec, label: &str) -> std::collections::BTreeMap<String, u64> {
    by_label(vec, label, |m| m.get_counter().value())
        .into_iter()
        .map(|(k, v)| (k, v as u64))
        .collect()
}

/// A gauge vector's current values summed by one label's values.
pub(crate) fn gauge_by(vec: &IntGaugeVec, label: &str) -> std::collections::BTreeMap<String, i64> {
    by_label(vec, label, |m| m.get_gauge().value())
        .into_iter()
        .map(|(k, v)| (k, v as i64))
        .collect()
}

/// Renders the default registry in the Prometheus text format.
pub(crate) fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut out) {
        log::error!("cannot encode metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Pre-resolved request metrics of one route, so the hot path does no label
/// lookup.
pub(crate) struct RouteMetrics {
    duration: prometheus::Histogram,
    /// `1xx`..`5xx`, then `none`.
    classes: [IntCounter; 6],
}

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> RouteMetrics {
        let class = |c: &str| REQUESTS.with_label_values(&[route, c]);
        RouteMetrics {
            duration: REQUEST_DURATION.with_label_values(&[route]),
            classes: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
                class("none"),
            ],
        }
    }

    pub(crate) fn record(&self, status: u16, seconds: f64) {
        let i = match status {
            100..=599 => (status / 100 - 1) as usize,
            _ => 5,
        };
        self.classes[i].inc();
        self.duration.observe(seconds);
    }
}
