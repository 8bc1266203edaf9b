//! Upstream pools: named sets of backends, a selection policy (weighted round
//! robin or Ketama consistent hashing), active health checks, timeouts and the
//! retry budget.
//!
//! Selection skips backends the health check marked down and backends this
//! request already failed on, so a retry lands elsewhere; with consistent
//! hashing a key whose backend is down moves to the next point on the ring and
//! returns when the backend recovers.
//!
//! Backend host names are resolved when the config loads (Pingora's
//! `HttpPeer::new` panics on an address it cannot resolve, so it is only ever
//! handed a `SocketAddr`). Without `discovery` that is the only time, and a
//! name that does not resolve is a config error. With it they are resolved
//! again in the background and the pool follows (`discovery.rs`); the
//! pool-side view of its backends (labels, SNI, counters) is a set swapped
//! whole on each change (`members.rs`).

mod adaptive;
mod discovery;
mod hash_key;
mod health;
mod locality;
mod members;
mod outlier;
mod selection;
mod slow_start;
mod stats;

pub(crate) use outlier::Outcome;

pub(crate) use discovery::lookup;
pub use discovery::DiscoveryPlan;
pub use hash_key::HashKey;
pub use health::{HealthMetrics, HealthPlan};
pub use members::{BackendInfo, BackendSet};
pub use stats::BackendStats;
pub(crate) use stats::InFlight;

use crate::config::units::parse_positive_duration;
use crate::config::{ConfigError, ConfigErrors, Selection, UpstreamConfig};
use crate::geo::Geography;
use crate::metrics;
use arc_swap::ArcSwap;
use discovery::{backends_of, DnsDiscovery, Entry};
use futures_now::now_or_never;
use members::Members;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, RoundRobin};
use pingora::lb::{discovery as lb_discovery, Backends, LoadBalancer};
use pingora::services::background::GenBackgroundService;
use pingora::services::ServiceWithDependents;
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

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
    /// Weighted round robin's turns so far.
    turn: std::sync::atomic::AtomicUsize,
    hash_key: Option<HashKey>,
    /// Extra attempts on other backends after a failed attempt.
    pub retries: usize,
    /// No retry starts later than this after the request arrived.
    pub retry_deadline: Duration,
    pub timeouts: Timeouts,
    /// The backends right now (fixed without discovery).
    members: Members,
    pub health: Option<HealthPlan>,
    /// How often host names are resolved again; `None` without discovery
    /// (or with nothing to resolve).
    discovery_interval: Option<Duration>,
    /// Host names that did not resolve when the config loaded.
    failed_at_load: usize,
    /// What the config says that is not an error but should be heard (a
    /// name that does not resolve yet), each with its YAML path.
    warnings: Vec<ConfigError>,
    /// `parapet_upstream_requests_total` of this pool, resolved once.
    pub requests_metric: prometheus::IntCounter,
    /// `parapet_upstream_retries_total` of this pool, resolved once.
    pub retries_metric: prometheus::IntCounter,
    /// In-flight ceiling (`max_in_flight`).
    pub gate: Option<crate::concurrency::Gate>,
    /// TLS and HTTP version towards the backends.
    pub transport: crate::tls::upstream::UpstreamTransport,
    /// Passive health (`outlier_detection`), if configured.
    outlier: Option<outlier::OutlierPolicy>,
    /// `least_connections` or `p2c_ewma`: chosen by load, not by the balancer.
    adaptive: Option<adaptive::Adaptive>,
    /// Bounded-load hashing: no backend above this factor × the mean load.
    balance_factor: Option<f64>,
    /// Steering by region, when the backends have regions and a client's
    /// region can be known.
    locality: Option<locality::Locality>,
    /// Ramping up backends that just entered service.
    slow_start: Option<slow_start::SlowStart>,
}

impl Pool {
    fn build(
        name: &str,
        cfg: &UpstreamConfig,
        geo: &Geography,
        errs: &mut ConfigErrors,
    ) -> Option<Pool> {
        let at = |key: &str| format!("upstreams.{name}.{key}");
        let before = errs.len();
        if cfg.backends.is_empty() {
            errs.push(at("backends"), "needs at least one backend");
        }
        let discovery = cfg
            .discovery
            .as_ref()
            .and_then(|d| DiscoveryPlan::build(d, &at("discovery"), errs));
        // Steering by region needs a region on every backend, and a way to
        // know a client's: `geo:` placing clients, or a default region.
        let steers = cfg.locality.enabled
            && cfg.backends.iter().any(|b| b.region.is_some())
            && (geo.locates() || geo.nowhere().region.is_some());
        let mut entries = Vec::new();
        for (i, b) in cfg.backends.iter().enumerate() {
            let path = at(&format!("backends[{i}]"));
            let region_id = match b.region.as_deref() {
                Some(r) => match geo.regions.resolve(r) {
                    Ok(id) => Some(id),
                    Err(e) => {
                        errs.push(format!("{path}.region"), e);
                        None
                    }
                },
                None if steers => {
                    errs.push(
                        format!("{path}.region"),
                        "needed: the pool's other backends have regions, and it steers by region (set locality.enabled: false to use them as labels only)",
                    );
                    None
                }
                None => None,
            };
            if b.weight == 0 || b.weight > 1000 {
                errs.push(
                    format!("{path}.weight"),
                    format!("must be 1..=1000 (got {})", b.weight),
                );
            }
            let (host, port, addrs) = match parse_address(&b.address) {
                Err(e) => {
                    errs.push(format!("{path}.address"), e);
                    continue;
                }
                Ok(Address::Ip(addr)) => (None, addr.port(), vec![addr]),
                // Resolved below, all names of the pool at once.
                Ok(Address::Name { host, port }) if cfg.discovery.is_some() => {
                    (Some(host), port, Vec::new())
                }
                Ok(Address::Name { host, port }) => match resolve_once(&b.address, &host) {
                    Ok(addrs) => (None, port, addrs),
                    Err(e) => {
                        errs.push(format!("{path}.address"), e);
                        continue;
                    }
                },
            };
            entries.push(Entry {
                index: i,
                label: b.address.clone(),
                host,
                port,
                weight: b.weight,
                region: b.region.clone().unwrap_or_default(),
                region_id,
                sni: String::new(),
                addrs,
            });
        }
        // Addresses fixed at load must be distinct; a discovered address that
        // another entry has too goes to the first entry (see `backends_of`).
        let mut seen = BTreeMap::new();
        for e in entries.iter().filter(|e| e.host.is_none()) {
            for addr in &e.addrs {
                if let Some(prev) = seen.insert(*addr, e.index) {
                    errs.push(
                        at(&format!("backends[{}].address", e.index)),
                        format!("{addr} is already backends[{prev}]"),
                    );
                }
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
            (_, Some(_)) => {
                errs.push(at("hash_key"), "only used with selection: consistent_hash");
                None
            }
            (_, None) => None,
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
        let outlier = cfg
            .outlier_detection
            .as_ref()
            .map(|o| outlier::OutlierPolicy::build(o, &at("outlier_detection"), errs));
        let slow_start = cfg.slow_start.as_deref().and_then(|t| {
            if cfg.selection == Selection::ConsistentHash {
                errs.push(
                    at("slow_start"),
                    "not used with consistent_hash (a key's owner does not change with load)",
                );
                return None;
            }
            slow_start::SlowStart::build(t, &at("slow_start"), errs)
        });
        let locality =
            steers.then(|| locality::Locality::build(&cfg.locality, name, &geo.regions, &at, errs));
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
        for e in &mut entries {
            e.sni = transport.sni_for(&e.label);
        }
        // Names are looked up only for a config without errors: a file being
        // fixed is not held up by DNS. A pool with nothing to look up needs
        // no discovery.
        let discovery = discovery.filter(|_| entries.iter().any(|e| e.host.is_some()));
        let unresolved = match &discovery {
            Some(plan) => plan.resolve_at_load(name, &mut entries),
            None => Vec::new(),
        };
        let failed: Vec<usize> = unresolved.iter().map(|(i, _)| *i).collect();
        let warnings = unresolved.into_iter().map(|(_, w)| w).collect();
        let members: Members = Arc::new(ArcSwap::from_pointee(BackendSet::new(backends_of(
            &entries,
        ))));
        // One health check serves the whole pool, with one server name: the
        // first backend's. Backends with other names then get their chain
        // verified but not their name (see health.rs), rather than being
        // marked down for a name they were never meant to have.
        let health_tls = transport.is_tls().then(|| {
            let first = entries.first().map(|e| e.sni.clone()).unwrap_or_default();
            let one_name = entries.iter().all(|e| e.sni == first);
            (&transport, first, one_name)
        });
        let discovery_interval = discovery.as_ref().map(|d| d.interval);
        let failed_at_load = failed.len();
        let source = || -> Box<dyn lb_discovery::ServiceDiscovery + Send + Sync> {
            match &discovery {
                Some(plan) => Box::new(DnsDiscovery::new(
                    name,
                    plan,
                    entries.clone(),
                    &failed,
                    members.clone(),
                )),
                None => lb_discovery::Static::new(members.load().to_pingora()),
            }
        };
        let setup = LoadBalancerSetup {
            health: health.as_ref(),
            observer: HealthMetrics {
                upstream: name.to_string(),
                members: members.clone(),
            },
            tls: health_tls,
            update_every: discovery_interval,
        };
        // Round robin and the adaptive selections choose among the members
        // themselves (see `selection`, `adaptive`); Pingora's balancer
        // still runs their health checks and discovery. Consistent hashing
        // walks its Ketama ring.
        let balancer = match cfg.selection {
            Selection::ConsistentHash => Balancer::Hash(Arc::new(load_balancer(source(), setup))),
            _ => Balancer::RoundRobin(Arc::new(load_balancer(source(), setup))),
        };
        let balance_factor = cfg.hash_balance_factor.and_then(|f| {
            if cfg.selection != Selection::ConsistentHash {
                errs.push(
                    at("hash_balance_factor"),
                    "only used with selection: consistent_hash",
                );
                None
            } else if !(f > 1.0 && f.is_finite()) {
                errs.push(
                    at("hash_balance_factor"),
                    format!("must be more than 1 (got {f})"),
                );
                None
            } else {
                Some(f)
            }
        });
        let adaptive = match cfg.selection {
            Selection::LeastConnections => Some(adaptive::Adaptive::LeastConnections),
            Selection::P2cEwma => Some(adaptive::Adaptive::P2cEwma),
            _ => None,
        };
        Some(Pool {
            name: name.to_string(),
            balancer,
            turn: Default::default(),
            hash_key,
            retries: cfg.retries,
            retry_deadline,
            timeouts,
            members,
            health,
            discovery_interval,
            failed_at_load,
            warnings,
            requests_metric: metrics::UPSTREAM_REQUESTS.with_label_values(&[name]),
            retries_metric: metrics::UPSTREAM_RETRIES.with_label_values(&[name]),
            gate: cfg.max_in_flight.map(crate::concurrency::Gate::new),
            transport,
            outlier,
            adaptive,
            balance_factor,
            locality,
            slow_start,
        })
    }

    /// The hash-key bytes for this request, empty for round robin.
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// The backends right now: fixed without discovery, the latest
    /// resolution with it. For the admin pages; the request path uses
    /// [`Pool::select`], [`Pool::peer`] and [`Pool::stats`].
    pub fn backends(&self) -> Arc<BackendSet> {
        self.members.load_full()
    }

    /// Warnings about this pool's config (names that do not resolve yet),
    /// each with its YAML path.
    pub fn warnings(&self) -> &[ConfigError] {
        &self.warnings
    }

    /// Starts this pool's metrics: every backend's `parapet_backend_healthy`
    /// at 1 (health checks only report changes) and, with discovery, the
    /// backend count and the names that did not resolve at load. Called by
    /// the process that serves this pool, never by one that only validates
    /// a config.
    pub fn seed_metrics(&self) {
        let backends = self.members.load();
        for b in backends.iter() {
            metrics::BACKEND_HEALTHY
                .with_label_values(&[&self.name, &b.label, &b.region])
                .set(1);
        }
        if self.discovery_interval.is_some() {
            metrics::DISCOVERED_BACKENDS
                .with_label_values(&[&self.name])
                .set(backends.len() as i64);
            metrics::DISCOVERY_FAILURES
                .with_label_values(&[&self.name])
                .inc_by(self.failed_at_load as u64);
        }
    }

    /// The counters of backend `addr` (also of one that discovery removed
    /// while a request was on it).
    pub fn stats(&self, addr: SocketAddr) -> Option<Arc<BackendStats>> {
        self.members.load().find(addr).map(|b| b.stats.clone())
    }

    /// The peer to connect to for `addr`, with this pool's timeouts, TLS and
    /// protocol; `upgrade` (a WebSocket handshake) forces HTTP/1.1.
    pub fn peer(&self, addr: SocketAddr, upgrade: bool) -> Box<HttpPeer> {
        let sni = self
            .members
            .load()
            .find(addr)
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

    /// The background service of this pool, if it needs one: its health
    /// checks every `health_check.interval` and its DNS discovery every
    /// `discovery.interval` (Pingora's load balancer runs both).
    pub fn background_service(&self) -> Option<Box<dyn ServiceWithDependents>> {
        let what = match (self.health.is_some(), self.discovery_interval.is_some()) {
            (false, false) => return None,
            (true, false) => "health checks",
            (false, true) => "discovery",
            (true, true) => "health checks and discovery",
        };
        let name = format!("upstream {}: {what}", self.name);
        Some(match &self.balancer {
            Balancer::RoundRobin(lb) => Box::new(GenBackgroundService::new(name, lb.clone())),
            Balancer::Hash(lb) => Box::new(GenBackgroundService::new(name, lb.clone())),
        })
    }
}

/// How a pool's load balancer checks and updates its backends.
struct LoadBalancerSetup<'a> {
    health: Option<&'a HealthPlan>,
    observer: HealthMetrics,
    tls: Option<(&'a crate::tls::upstream::UpstreamTransport, String, bool)>,
    /// Discovery's interval: how often Pingora calls `update`.
    update_every: Option<Duration>,
}

fn load_balancer<S>(
    source: Box<dyn lb_discovery::ServiceDiscovery + Send + Sync>,
    setup: LoadBalancerSetup<'_>,
) -> LoadBalancer<S>
where
    S: BackendSelection + 'static,
    S::Iter: BackendIter,
{
    let mut backends = Backends::new(source);
    if let Some(plan) = setup.health {
        backends.set_health_check(plan.check(setup.observer, setup.tls));
    }
    let mut lb = LoadBalancer::from_backends(backends);
    lb.health_check_frequency = setup.health.map(|h| h.interval);
    lb.update_frequency = setup.update_every;
    lb.parallel_health_check = true;
    // Neither static discovery nor the first DNS discovery (the set resolved
    // at load) waits; without this first update the balancer selects
    // nothing and the first requests would fail.
    if let Some(Err(e)) = now_or_never(lb.update()) {
        log::error!("backend discovery failed: {e}");
    }
    lb
}

/// A backend address as written: an IP, or a host name to resolve.
enum Address {
    Ip(SocketAddr),
    Name { host: String, port: u16 },
}

/// Checks `host:port` (or `ip:port`, `[v6]:port`) without resolving it.
fn parse_address(address: &str) -> Result<Address, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(Address::Ip(addr));
    }
    let invalid = || format!("invalid socket address {address:?}: expected host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    let name_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || !host.chars().all(name_chars) {
        return Err(invalid());
    }
    Ok(Address::Name {
        host: host.to_string(),
        port,
    })
}

/// Resolves `host` of `address` once, with the system resolver. Only while
/// the config loads, before any runtime serves: getaddrinfo blocks.
fn resolve_once(address: &str, host: &str) -> Result<Vec<SocketAddr>, String> {
    let invalid = |why: String| format!("invalid socket address {address:?}: {why}");
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
    pub(crate) fn build(
        configs: &BTreeMap<String, UpstreamConfig>,
        broken: &[String],
        geo: &Geography,
        errs: &mut ConfigErrors,
    ) -> Pools {
        let mut pools = Pools::default();
        for name in broken {
            pools.by_name.insert(name.clone(), usize::MAX);
        }
        for (name, cfg) in configs {
            match Pool::build(name, cfg, geo, errs) {
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

    /// Sets the per-backend gauges that are read from the backends'
    /// counters (in flight, latency average, ejected): called before a
    /// scrape, so the request path never touches a gauge.
    pub(crate) fn refresh_gauges(&self) {
        for pool in &self.pools {
            for b in pool.backends().iter() {
                let labels = [pool.name.as_str(), b.label.as_str()];
                metrics::BACKEND_IN_FLIGHT
                    .with_label_values(&labels)
                    .set(b.stats.in_flight() as i64);
                metrics::BACKEND_LATENCY_EWMA
                    .with_label_values(&labels)
                    .set(b.stats.latency_ms().unwrap_or(0.0) / 1000.0);
                metrics::BACKEND_EJECTED
                    .with_label_values(&labels)
                    .set(pool.is_ejected(b.addr) as i64);
            }
        }
    }

    /// Every pool's config warnings, each with its YAML path.
    pub fn warnings(&self) -> impl Iterator<Item = &ConfigError> {
        self.pools.iter().flat_map(|p| p.warnings())
    }
}

/// Polls a future once; enough for futures known never to wait (static
/// discovery, and DNS discovery's first round, which returns the set resolved
/// at load).
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
mod tests;
