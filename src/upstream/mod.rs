//! Upstream pools: named sets of backends, a selection policy (weighted round
//! robin or Ketama consistent hashing), active health checks, timeouts and the
//! retry budget.
//!
//! Selection skips backends the health check marked down and backends this
//! request already failed on, so a retry lands elsewhere; with consistent
//! hashing a key whose backend is down moves to the next point on the ring and
//! returns when the backend recovers. Backend addresses are resolved once, at
//! load time: Pingora's `HttpPeer::new` panics on an address it cannot resolve,
//! so it is only ever handed a `SocketAddr`.

mod hash_key;
mod health;
mod stats;

pub use hash_key::HashKey;
pub use health::{HealthMetrics, HealthPlan};
pub use stats::BackendStats;

use crate::config::units::parse_positive_duration;
use crate::config::{ConfigErrors, Selection, UpstreamConfig};
use crate::metrics;
use futures_now::now_or_never;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora::lb::{discovery, Backend, Backends, LoadBalancer};
use pingora::services::background::GenBackgroundService;
use pingora::services::ServiceWithDependents;
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// One backend as configured, after resolution.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    pub addr: SocketAddr,
    /// The address as written in the config (metrics label).
    pub label: String,
    pub weight: usize,
    pub region: String,
    /// Server name for TLS to this backend (empty without TLS).
    pub sni: String,
    pub stats: Arc<BackendStats>,
}

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Hash(Arc<LoadBalancer<Consistent>>),
}

/// A built upstream pool.
pub struct Pool {
    pub name: String,
    balancer: Balancer,
    hash_key: Option<HashKey>,
    /// Extra attempts on other backends after a failed attempt.
    pub retries: usize,
    /// No retry starts later than this after the request arrived.
    pub retry_deadline: Duration,
    pub timeouts: Timeouts,
    pub backends: Vec<BackendInfo>,
    pub health: Option<HealthPlan>,
    max_iterations: usize,
    /// `parapet_upstream_requests_total` of this pool, resolved once.
    pub requests_metric: prometheus::IntCounter,
    /// `parapet_upstream_retries_total` of this pool, resolved once.
    pub retries_metric: prometheus::IntCounter,
    /// In-flight ceiling (`max_in_flight`).
    pub gate: Option<crate::concurrency::Gate>,
    /// TLS and HTTP version towards the backends.
    pub transport: crate::tls::upstream::UpstreamTransport,
}

impl Pool {
    fn build(name: &str, cfg: &UpstreamConfig, errs: &mut ConfigErrors) -> Option<Pool> {
        let at = |key: &str| format!("upstreams.{name}.{key}");
        let before = errs.len();
        if cfg.backends.is_empty() {
            errs.push(at("backends"), "needs at least one backend");
        }
        let mut backends = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, b) in cfg.backends.iter().enumerate() {
            let path = at(&format!("backends[{i}]"));
            if b.weight == 0 || b.weight > 1000 {
                errs.push(
                    format!("{path}.weight"),
                    format!("must be 1..=1000 (got {})", b.weight),
                );
            }
            match resolve(&b.address) {
                Ok(addrs) => {
                    for addr in addrs {
                        if let Some(prev) = seen.insert(addr, i) {
                            errs.push(
                                format!("{path}.address"),
                                format!("{addr} is already backends[{prev}]"),
                            );
                        }
                        backends.push(BackendInfo {
                            addr,
                            label: b.address.clone(),
                            weight: b.weight,
                            region: b.region.clone().unwrap_or_default(),
                            sni: String::new(),
                            stats: Arc::default(),
                        });
                    }
                }
                Err(e) => errs.push(format!("{path}.address"), e),
            }
        }
        let hash_key = match (cfg.selection, cfg.hash_key.as_deref()) {
            (Selection::ConsistentHash, None) => Some(HashKey::Uri),
            (Selection::ConsistentHash, Some(k)) => match k.parse() {
                Ok(k) => Some(k),
                Err(e) => {
                    errs.push(at("hash_key"), e);
                    None
                }
            },
            (Selection::RoundRobin, Some(_)) => {
                errs.push(at("hash_key"), "only used with selection: consistent_hash");
                None
            }
            (Selection::RoundRobin, None) => None,
        };
        let health = cfg
            .health_check
            .as_ref()
            .and_then(|h| HealthPlan::build(h, &at("health_check"), errs));
        let mut duration = |key: &str, text: &str| {
            parse_positive_duration(text).unwrap_or_else(|e| {
                errs.push(at(&format!("timeouts.{key}")), e);
                Duration::ZERO
            })
        };
        let timeouts = Timeouts {
            connect: duration("connect", &cfg.timeouts.connect),
            read: duration("read", &cfg.timeouts.read),
            write: duration("write", &cfg.timeouts.write),
            idle: duration("idle", &cfg.timeouts.idle),
        };
        let retry_deadline = parse_positive_duration(&cfg.retry_deadline).unwrap_or_else(|e| {
            errs.push(at("retry_deadline"), e);
            Duration::ZERO
        });
        if cfg.max_in_flight == Some(0) {
            errs.push(at("max_in_flight"), "must be at least 1");
        }
        if cfg.retries > 10 {
            errs.push(at("retries"), format!("at most 10 (got {})", cfg.retries));
        }
        let addresses: Vec<&str> = cfg.backends.iter().map(|b| b.address.as_str()).collect();
        let transport = crate::tls::upstream::UpstreamTransport::build(
            name,
            cfg.tls.as_ref(),
            cfg.protocol,
            &addresses,
            errs,
        );
        if errs.len() != before {
            return None;
        }
        for b in &mut backends {
            b.sni = transport.sni_for(&b.label);
        }
        let set: BTreeSet<Backend> = backends
            .iter()
            .map(|b| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(b.addr),
                weight: b.weight,
                ext: Default::default(),
            })
            .collect();
        // One health check serves the whole pool, with one server name: the
        // first backend's. Backends with other names then get their chain
        // verified but not their name (see health.rs), rather than being
        // marked down for a name they were never meant to have.
        let health_tls = transport.is_tls().then(|| {
            let first = backends.first().map(|b| b.sni.clone()).unwrap_or_default();
            let one_name = backends.iter().all(|b| b.sni == first);
            (&transport, first, one_name)
        });
        let observer = || HealthMetrics {
            upstream: name.to_string(),
            labels: backends
                .iter()
                .map(|b| (b.addr, (b.label.clone(), b.region.clone())))
                .collect(),
        };
        let balancer = match cfg.selection {
            Selection::RoundRobin => Balancer::RoundRobin(Arc::new(load_balancer(
                set,
                health.as_ref(),
                observer(),
                health_tls.clone(),
            ))),
            Selection::ConsistentHash => Balancer::Hash(Arc::new(load_balancer(
                set,
                health.as_ref(),
                observer(),
                health_tls.clone(),
            ))),
        };
        let total_weight: usize = backends.iter().map(|b| b.weight).sum();
        Some(Pool {
            name: name.to_string(),
            balancer,
            hash_key,
            retries: cfg.retries,
            retry_deadline,
            timeouts,
            max_iterations: 256.max(2 * total_weight),
            backends,
            health,
            requests_metric: metrics::UPSTREAM_REQUESTS.with_label_values(&[name]),
            retries_metric: metrics::UPSTREAM_RETRIES.with_label_values(&[name]),
            gate: cfg.max_in_flight.map(crate::concurrency::Gate::new),
            transport,
        })
    }

    /// The hash-key bytes for this request, empty for round robin.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// Picks a healthy backend not in `exclude`.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<SocketAddr> {
        let accept = |b: &Backend, healthy: bool| {
            healthy && b.addr.as_inet().is_some_and(|a| !exclude.contains(a))
        };
        let chosen = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select_with(key, self.max_iterations, accept),
            Balancer::Hash(lb) => lb.select_with(key, self.max_iterations, accept),
        };
        chosen.and_then(|b| b.addr.as_inet().copied())
    }

    /// Starts every backend's `parapet_backend_healthy` at 1 (health checks
    /// only report changes). Called by the process that serves this pool,
    /// never by one that only validates a config.
    pub fn seed_health_metrics(&self) {
        for b in &self.backends {
            metrics::BACKEND_HEALTHY
                .with_label_values(&[&self.name, &b.label, &b.region])
                .set(1);
        }
    }

    /// The counters of backend `addr`.
    pub fn stats(&self, addr: SocketAddr) -> Option<&BackendStats> {
        self.backends
            .iter()
            .find(|b| b.addr == addr)
            .map(|b| &*b.stats)
    }

    /// Whether [`Pool::select`] could still find a backend outside `exclude`.
    pub fn has_candidate(&self, exclude: &[SocketAddr]) -> bool {
        self.backends
            .iter()
            .any(|b| !exclude.contains(&b.addr) && self.is_healthy(b.addr))
    }

    /// Whether the health check currently lets traffic go to `addr`.
    pub fn is_healthy(&self, addr: SocketAddr) -> bool {
        let Some(info) = self.backends.iter().find(|b| b.addr == addr) else {
            return false;
        };
        let backend = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(addr),
            weight: info.weight,
            ext: Default::default(),
        };
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends().ready(&backend),
            Balancer::Hash(lb) => lb.backends().ready(&backend),
        }
    }

    /// The peer to connect to for `addr`, with this pool's timeouts, TLS and
    /// protocol; `upgrade` (a WebSocket handshake) forces HTTP/1.1.
    pub fn peer(&self, addr: SocketAddr, upgrade: bool) -> Box<HttpPeer> {
        let sni = self
            .backends
            .iter()
            .find(|b| b.addr == addr)
            .map(|b| b.sni.clone())
            .unwrap_or_default();
        let mut peer = HttpPeer::new(addr, self.transport.is_tls(), sni);
        self.transport.apply(&mut peer, upgrade);
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeouts.connect);
        o.total_connection_timeout = Some(self.timeouts.connect);
        o.read_timeout = Some(self.timeouts.read);
        o.write_timeout = Some(self.timeouts.write);
        o.idle_timeout = Some(self.timeouts.idle);
        Box::new(peer)
    }

    /// The background service running this pool's health checks, if any.
    pub fn health_service(&self) -> Option<Box<dyn ServiceWithDependents>> {
        self.health.as_ref()?;
        let name = format!("health check: {}", self.name);
        Some(match &self.balancer {
            Balancer::RoundRobin(lb) => Box::new(GenBackgroundService::new(name, lb.clone())),
            Balancer::Hash(lb) => Box::new(GenBackgroundService::new(name, lb.clone())),
        })
    }
}

fn load_balancer<S>(
    set: BTreeSet<Backend>,
    health: Option<&HealthPlan>,
    observer: HealthMetrics,
    tls: Option<(&crate::tls::upstream::UpstreamTransport, String, bool)>,
) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let mut backends = Backends::new(discovery::Static::new(set));
    if let Some(plan) = health {
        backends.set_health_check(plan.check(observer, tls));
    }
    let mut lb = LoadBalancer::from_backends(backends);
    lb.health_check_frequency = health.map(|h| h.interval);
    lb.parallel_health_check = true;
    // Static discovery never blocks; without this first update the balancer
    // selects nothing and the first requests would fail.
    if let Some(Err(e)) = now_or_never(lb.update()) {
        log::error!("static backend discovery failed: {e}");
    }
    lb
}

/// Resolves `host:port` (or `ip:port`, `[v6]:port`) to addresses.
fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let invalid = |why: String| format!("invalid socket address {address:?}: {why}");
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected host:port".into()))?;
    if host.is_empty() || port.parse::<u16>().is_err() || host.contains(['/', ' ']) {
        return Err(invalid("expected host:port".into()));
    }
    let mut addrs: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| invalid(format!("cannot resolve host {host:?} ({e})")))?
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(invalid(format!("host {host:?} resolves to no address")));
    }
    Ok(addrs)
}

/// Every pool, indexed by name.
#[derive(Default)]
pub struct Pools {
    pools: Vec<Pool>,
    by_name: HashMap<String, usize>,
}

impl Pools {
    /// `broken` names pools that failed the schema check: routes may name them
    /// without a second, misleading "no upstream named" error.
    pub fn build(
        configs: &BTreeMap<String, UpstreamConfig>,
        broken: &[String],
        errs: &mut ConfigErrors,
    ) -> Pools {
        let mut pools = Pools::default();
        for name in broken {
            pools.by_name.insert(name.clone(), usize::MAX);
        }
        for (name, cfg) in configs {
            match Pool::build(name, cfg, errs) {
                Some(pool) => {
                    pools.by_name.insert(name.clone(), pools.pools.len());
                    pools.pools.push(pool);
                }
                None => {
                    pools.by_name.insert(name.clone(), usize::MAX);
                }
            }
        }
        pools
    }

    pub fn index(&self) -> &HashMap<String, usize> {
        &self.by_name
    }

    pub fn get(&self, index: usize) -> &Pool {
        &self.pools[index]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter()
    }
}

/// Polls a future once; enough for futures known never to wait (static discovery).
mod futures_now {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    pub(super) fn now_or_never<F: Future>(fut: F) -> Option<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(fut).poll(&mut cx) {
            Poll::Ready(v) => Some(v),
            Poll::Pending => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn pools(yaml: &str) -> Result<Pools, ConfigErrors> {
        let raw = config::parse(yaml).unwrap();
        let mut errs = ConfigErrors::default();
        let p = Pools::build(&raw.upstreams, &[], &mut errs);
        errs.into_result(p)
    }

    #[test]
    fn weighted_round_robin_spreads_by_weight() {
        let p = pools("upstreams:\n  a:\n    backends:\n      - {address: 127.0.0.1:1, weight: 3}\n      - {address: 127.0.0.1:2}\n").unwrap();
        let pool = p.get(0);
        let mut counts = HashMap::new();
        for _ in 0..400 {
            *counts
                .entry(pool.select(b"", &[]).unwrap().port())
                .or_insert(0) += 1;
        }
        assert_eq!(counts[&1], 300, "{counts:?}");
        assert_eq!(counts[&2], 100, "{counts:?}");
    }

    #[test]
    fn exclusion_moves_selection_and_hash_is_sticky() {
        let p = pools("upstreams:\n  h:\n    selection: consistent_hash\n    hash_key: path\n    backends:\n      - {address: 127.0.0.1:1}\n      - {address: 127.0.0.1:2}\n      - {address: 127.0.0.1:3}\n").unwrap();
        let pool = p.get(0);
        let first = pool.select(b"/x", &[]).unwrap();
        assert_eq!(pool.select(b"/x", &[]).unwrap(), first);
        let second = pool.select(b"/x", &[first]).unwrap();
        assert_ne!(second, first);
        assert!(pool.select(b"/x", &[first, second]).is_some());
        let all: Vec<SocketAddr> = pool.backends.iter().map(|b| b.addr).collect();
        assert_eq!(pool.select(b"/x", &all), None);
    }

    #[test]
    fn all_pool_errors_are_reported_with_paths() {
        let errs = pools(
            "upstreams:\n  app:\n    selection: round_robin\n    hash_key: uri\n    backends:\n      - {address: 127.0.0.1:80, weight: 0}\n      - {address: \"10.0.0.x:80\"}\n      - {address: nohost.invalid:80}\n      - {address: 127.0.0.1}\n    timeouts: {connect: \"5\"}\n    health_check: {interval: 0s, healthy_threshold: 0}\n",
        )
        .err()
        .unwrap();
        let text = errs.to_string();
        for expected in [
            "upstreams.app.backends[0].weight: must be 1..=1000",
            "upstreams.app.backends[1].address: invalid socket address \"10.0.0.x:80\"",
            "upstreams.app.backends[2].address: invalid socket address \"nohost.invalid:80\": cannot resolve",
            "upstreams.app.backends[3].address: invalid socket address \"127.0.0.1\"",
            "upstreams.app.hash_key: only used with selection: consistent_hash",
            "upstreams.app.timeouts.connect: invalid duration",
            "upstreams.app.health_check.interval: must be greater than zero",
            "upstreams.app.health_check.healthy_threshold: must be at least 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
