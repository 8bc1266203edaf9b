//! What the admin API and the status page report: pools and backends,
//! traffic, cache, and recent reloads, gathered from the snapshot and the
//! metrics. Rates come from a sampler that records the counters every
//! `SAMPLE_EVERY` (a background service, so no thread runs before
//! Pingora's fork).

use crate::metrics;
use crate::runtime::Snapshot;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept: one minute's worth.
const SAMPLES: usize = 13;

/// Cache results that were answered from storage.
const HIT_RESULTS: [&str; 3] = ["hit", "stale", "revalidated"];
/// Cache results that count as lookups of something storable.
const LOOKUP_RESULTS: [&str; 5] = ["hit", "stale", "revalidated", "miss", "expired"];

#[derive(Clone, Copy, Default)]
struct Sample {
    at: Option<Instant>,
    requests: u64,
    errors: u64,
    hits: u64,
    lookups: u64,
}

static SAMPLES_RING: Mutex<VecDeque<Sample>> = Mutex::new(VecDeque::new());

fn now_sample() -> Sample {
    let classes = metrics::sum_by(&metrics::REQUESTS, "status_class");
    let lookups = metrics::sum_by(&metrics::CACHE_LOOKUPS, "result");
    let sum = |keys: &[&str]| {
        keys.iter()
            .map(|k| lookups.get(*k).copied().unwrap_or(0))
            .sum()
    };
    Sample {
        at: Some(Instant::now()),
        requests: classes.values().sum(),
        errors: classes.get("5xx").copied().unwrap_or(0),
        hits: sum(&HIT_RESULTS),
        lookups: sum(&LOOKUP_RESULTS),
    }
}

/// Records the counters every few seconds for the rates.
pub(crate) struct RateSampler;

#[async_trait]
impl BackgroundService for RateSampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tick.tick() => {
                    if let Ok(mut ring) = SAMPLES_RING.lock() {
                        ring.push_back(now_sample());
                        while ring.len() > SAMPLES {
                            ring.pop_front();
                        }
                    }
                }
            }
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Overview {
    pub version: &'static str,
    pub pid: u32,
    pub state: &'static str,
    /// When this generation started (RFC 3339).
    pub started: String,
    pub uptime_seconds: u64,
    /// This node's region (`server.region`).
    pub region: Option<String>,
    pub connections_active: i64,
    pub requests_total: u64,
    pub requests_by_class: BTreeMap<String, u64>,
    /// Over the last minute (or since start), once two samples exist.
    pub rates: Option<Rates>,
    pub pools: Vec<PoolView>,
    pub cache: Option<CacheView>,
    /// Recent supervisor events (starts, reloads), oldest first.
    pub reloads: Vec<String>,
    /// Certificates the TLS listeners serve.
    pub certificates: Vec<CertView>,
}

#[derive(Serialize)]
pub(crate) struct CertView {
    pub listener: String,
    pub names: Vec<String>,
    pub issuer: String,
    /// `file`, `acme`, or `stand-in` (self-signed until ACME delivers).
    pub source: &'static str,
    /// notAfter, as OpenSSL prints it.
    pub expires: String,
    pub expires_in_seconds: i64,
    /// An OCSP response is stapled to handshakes for it.
    pub ocsp_stapled: bool,
}

fn certificates(snap: &Snapshot) -> Vec<CertView> {
    let now = crate::tls::certs::unix_now();
    let mut out = Vec::new();
    for l in &snap.connections.listeners {
        let Some(tls) = &l.tls else { continue };
        for (cert, source) in tls.certificates() {
            let leaf = &cert.chain[0];
            out.push(CertView {
                listener: l.addr.to_string(),
                names: cert.names.clone(),
                issuer: crate::tls::certs::name_line(leaf.issuer_name()),
                source,
                expires: leaf.not_after().to_string(),
                expires_in_seconds: crate::tls::certs::unix_time(leaf.not_after()) - now,
                ocsp_stapled: crate::tls::ocsp::is_stapled(&cert),
            });
        }
    }
    out
}

#[derive(Serialize)]
pub(crate) struct Rates {
    pub window_seconds: f64,
    pub requests_per_second: f64,
    pub errors_5xx_per_second: f64,
    pub cache_hit_ratio: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct PoolView {
    pub name: String,
    pub healthy: usize,
    pub backends: Vec<BackendView>,
}

#[derive(Serialize)]
pub(crate) struct BackendView {
    /// As written in the config.
    pub backend: String,
    /// The resolved address (the admin API is private and token-protected).
    pub address: String,
    pub region: String,
    pub weight: usize,
    pub healthy: bool,
    /// Out of selection for failing live requests (outlier detection).
    pub ejected: bool,
    /// Times ejected since this generation started.
    pub ejections: u32,
    /// Requests in flight now (counted by pools that choose by load).
    pub in_flight: u64,
    pub requests: u64,
    pub errors: u64,
    pub latency_ms: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct CacheView {
    pub lookups: BTreeMap<String, u64>,
    pub hit_ratio: Option<f64>,
    pub stored_bytes: BTreeMap<String, i64>,
    pub stored_objects: BTreeMap<String, i64>,
    pub evictions: BTreeMap<String, u64>,
    pub memory_capacity_bytes: usize,
    pub disk_capacity_bytes: Option<u64>,
}

fn ratio(hits: u64, total: u64) -> Option<f64> {
    (total > 0).then(|| hits as f64 / total as f64)
}

pub(crate) fn gather(snap: &Snapshot) -> Overview {
    let classes = metrics::sum_by(&metrics::REQUESTS, "status_class");
    let pools = snap
        .edge
        .pools
        .iter()
        .map(|pool| {
            let backends: Vec<BackendView> = pool
                .backends()
                .iter()
                .map(|b| BackendView {
                    backend: b.label.clone(),
                    address: b.addr.to_string(),
                    region: b.region.clone(),
                    weight: b.weight,
                    healthy: pool.is_healthy(b.addr),
                    ejected: pool.is_ejected(b.addr),
                    ejections: b.stats.ejections(),
                    in_flight: b.stats.in_flight(),
                    requests: b.stats.requests(),
                    errors: b.stats.errors(),
                    latency_ms: b.stats.latency_ms(),
                })
                .collect();
            PoolView {
                name: pool.name.clone(),
                healthy: backends.iter().filter(|b| b.healthy).count(),
                backends,
            }
        })
        .collect();
    let cache = snap.edge.caches().then(|| {
        let lookups = metrics::sum_by(&metrics::CACHE_LOOKUPS, "result");
        let sum = |keys: &[&str]| -> u64 {
            keys.iter()
                .map(|k| lookups.get(*k).copied().unwrap_or(0))
                .sum()
        };
        CacheView {
            hit_ratio: ratio(sum(&HIT_RESULTS), sum(&LOOKUP_RESULTS)),
            lookups: lookups.clone(),
            stored_bytes: metrics::gauge_by(&metrics::CACHE_STORED_BYTES, "tier"),
            stored_objects: metrics::gauge_by(&metrics::CACHE_STORED_OBJECTS, "tier"),
            evictions: metrics::sum_by(&metrics::CACHE_EVICTIONS, "tier"),
            memory_capacity_bytes: snap.cache.memory_max,
            disk_capacity_bytes: snap.cache.disk.as_ref().map(|(_, max)| *max),
        }
    });
    let rates = SAMPLES_RING.lock().ok().and_then(|ring| {
        let first = ring.front()?;
        let now = now_sample();
        let secs = first.at?.elapsed().as_secs_f64();
        (secs > 0.5).then(|| Rates {
            window_seconds: secs,
            requests_per_second: (now.requests - first.requests) as f64 / secs,
            errors_5xx_per_second: (now.errors - first.errors) as f64 / secs,
            cache_hit_ratio: ratio(now.hits - first.hits, now.lookups - first.lookups),
        })
    });
    let reloads =
        crate::supervisor::protocol::history(std::path::Path::new(snap.process.upgrade_sock()));
    Overview {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        state: if crate::lifecycle::is_draining() {
            "draining"
        } else {
            "serving"
        },
        started: crate::access_log::rfc3339(snap.admin.started),
        uptime_seconds: snap.admin.started.elapsed().map_or(0, |d| d.as_secs()),
        region: snap
            .edge
            .geo
            .home()
            .map(|r| snap.edge.geo.regions.name(r).to_string()),
        connections_active: metrics::DOWNSTREAM_CONNECTIONS.get(),
        requests_total: classes.values().sum(),
        requests_by_class: classes,
        rates,
        pools,
        cache,
        reloads,
        certificates: certificates(snap),
    }
}
