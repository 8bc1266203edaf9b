//! DNS service discovery for upstream pools (`upstreams.NAME.discovery`).
//!
//! With discovery on, every backend entry written as `host:port` is resolved
//! again every `interval`, in the pool's background service (Pingora's
//! `LoadBalancer::update`, through the [`ServiceDiscovery`] trait): every A and
//! AAAA record is a backend with the entry's weight and region. Added and
//! removed addresses take effect without a reload; an address that stays
//! keeps its health (Pingora keys health by address and weight) and its
//! counters.
//!
//! A lookup that fails or finds nothing keeps the name's last good
//! addresses: a DNS hiccup or an origin container being replaced never
//! empties a pool. It is counted in `parapet_upstream_discovery_failures_total`
//! and logged at most once per [`REPEAT_WARNING`] per name. A name that does
//! not resolve when the config loads is a warning, not an error: the pool
//! starts without it and picks it up once it resolves.
//!
//! Lookups use hickory's async resolver on the background service's runtime,
//! never blocking getaddrinfo on a proxy thread. Records are cached for their
//! TTL but never longer than `interval`, so a change is seen within one or two
//! intervals whatever TTL the DNS server hands out (Docker's is 600 s).

use super::members::{BackendInfo, BackendSet, Members};
use crate::config::units::parse_positive_duration;
use crate::config::{ConfigError, ConfigErrors, DiscoveryConfig};
use crate::metrics;
use async_trait::async_trait;
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Shortest `interval` accepted: shorter would only load the DNS server.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait for one DNS answer (the resolver tries twice).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A name that keeps failing is logged again at most this often.
pub(super) const REPEAT_WARNING: Duration = Duration::from_secs(60);

/// A pool's validated `discovery` settings.
#[derive(Debug, Clone)]
pub struct DiscoveryPlan {
    /// How often every host name is resolved again.
    pub interval: Duration,
    config: ResolverConfig,
    opts: ResolverOpts,
}

impl DiscoveryPlan {
    /// Checks `cfg`; `path` is its YAML path (`upstreams.NAME.discovery`).
    pub fn build(cfg: &DiscoveryConfig, path: &str, errs: &mut ConfigErrors) -> Option<Self> {
        let n = errs.len();
        let interval = match parse_positive_duration(&cfg.interval) {
            Ok(d) if d < MIN_INTERVAL => {
                errs.push(
                    format!("{path}.interval"),
                    format!("must be at least {MIN_INTERVAL:?} (got {:?})", cfg.interval),
                );
                d
            }
            Ok(d) => d,
            Err(e) => {
                errs.push(format!("{path}.interval"), e);
                Duration::ZERO
            }
        };
        let (config, mut opts) = match cfg.resolver.as_deref().map(parse_resolver) {
            None => match hickory_resolver::system_conf::read_system_conf() {
                Ok(conf) => conf,
                Err(e) => {
                    errs.push(
                        path,
                        format!("cannot read the system's resolver configuration ({e}); name a `resolver`"),
                    );
                    return None;
                }
            },
            Some(Ok(server)) => {
                let servers =
                    NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
                let mut opts = ResolverOpts::default();
                // The server named is the only source, as with Consul DNS.
                opts.use_hosts_file = ResolveHosts::Never;
                (ResolverConfig::from_parts(None, Vec::new(), servers), opts)
            }
            Some(Err(e)) => {
                errs.push(format!("{path}.resolver"), e);
                return None;
            }
        };
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = opts.timeout.min(LOOKUP_TIMEOUT);
        opts.positive_max_ttl = Some(interval);
        opts.negative_max_ttl = Some(interval);
        (errs.len() == n).then_some(DiscoveryPlan {
            interval,
            config,
            opts,
        })
    }

    /// A resolver for these settings. Building one reads at most the hosts
    /// file (while the config loads); its lookups run on the runtime that
    /// polls them.
    pub(crate) fn resolver(&self) -> TokioResolver {
        TokioResolver::builder_with_config(self.config.clone(), TokioConnectionProvider::default())
            .with_options(self.opts.clone())
            .build()
    }

    /// Resolves the host names of `entries` (of pool `pool`) once, now. A
    /// name that does not resolve is no error: its entry starts without
    /// addresses, and comes back as its position in `entries` with a
    /// warning that names its YAML path.
    pub(super) fn resolve_at_load(
        &self,
        pool: &str,
        entries: &mut [Entry],
    ) -> Vec<(usize, ConfigError)> {
        let names: Vec<usize> = (0..entries.len())
            .filter(|i| entries[*i].host.is_some())
            .collect();
        let hosts = names
            .iter()
            .filter_map(|i| entries[*i].host.clone())
            .collect();
        let mut unresolved = Vec::new();
        for (i, result) in names.into_iter().zip(self.resolve_now(hosts)) {
            let e = &mut entries[i];
            match result {
                Ok(ips) => e.set_addrs(&ips),
                Err(why) => unresolved.push((
                    i,
                    ConfigError {
                        path: format!("upstreams.{pool}.backends[{}].address", e.index),
                        message: format!(
                            "{:?} does not resolve yet ({why}); discovery keeps trying",
                            e.label
                        ),
                    },
                )),
            }
        }
        unresolved
    }

    /// Resolves `hosts` once, now, each to its addresses or why not. Used
    /// while a config loads: on a thread of its own with a runtime of its
    /// own, both gone before this returns, because loading happens before
    /// Pingora may fork (no thread may outlive it) and also inside a runtime
    /// (the supervisor's and the admin API's reload checks), where a nested
    /// `block_on` would panic.
    fn resolve_now(&self, hosts: Vec<String>) -> Vec<Result<Vec<IpAddr>, String>> {
        let count = hosts.len();
        let resolved = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime for DNS lookups: {e}"))?;
                Ok(rt.block_on(resolve_all(&self.resolver(), hosts)))
            })
            .join()
            .unwrap_or_else(|_| Err("the DNS lookup thread panicked".to_string()))
        });
        resolved.unwrap_or_else(|why: String| vec![Err(why); count])
    }
}

/// `ip:port`, `[v6]:port`, or an IP alone for port 53.
fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            format!(
                "expected a DNS server as ip:port or ip (e.g. \"127.0.0.1:8600\"), got {text:?}"
            )
        })
}

/// Resolves every host concurrently; results in the order of `hosts`.
async fn resolve_all(
    resolver: &TokioResolver,
    hosts: Vec<String>,
) -> Vec<Result<Vec<IpAddr>, String>> {
    let mut results = vec![Err("lookup did not finish".to_string()); hosts.len()];
    // A JoinSet aborts its lookups when dropped: discovery cancelled at
    // shutdown leaves nothing running.
    let mut jobs = tokio::task::JoinSet::new();
    for (i, host) in hosts.into_iter().enumerate() {
        let resolver = resolver.clone();
        jobs.spawn(async move { (i, lookup(&resolver, &host).await) });
    }
    while let Some(joined) = jobs.join_next().await {
        if let Ok((i, result)) = joined {
            results[i] = result;
        }
    }
    results
}

/// Every A and AAAA address of `host`, sorted; an error when there is none.
pub(crate) async fn lookup(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    match resolver.lookup_ip(host).await {
        Ok(found) => {
            let mut ips: Vec<IpAddr> = found.iter().collect();
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                Err("no A or AAAA record".into())
            } else {
                Ok(ips)
            }
        }
        Err(e) if e.is_nx_domain() => Err("no such name".into()),
        Err(e) if e.is_no_records_found() => Err("no A or AAAA record".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// One backend entry of a pool: its address as written and what it
/// currently resolves to.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// Position in `backends` (its YAML path).
    pub(super) index: usize,
    /// The address as written (metrics label).
    pub(super) label: String,
    /// The host name discovery resolves again; `None` for an address that
    /// stays as loaded (an IP, or any entry of a pool without discovery).
    pub(super) host: Option<String>,
    pub(super) port: u16,
    pub(super) weight: usize,
    pub(super) region: String,
    pub(super) region_id: Option<crate::geo::RegionId>,
    pub(super) sni: String,
    /// The addresses of the last good resolution.
    pub(super) addrs: Vec<SocketAddr>,
}

impl Entry {
    fn set_addrs(&mut self, ips: &[IpAddr]) {
        self.addrs = ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.port))
            .collect();
    }
}

/// The pool's backends for `entries`, in entry order. An address that two
/// entries resolve to belongs to the first.
pub(super) fn backends_of(entries: &[Entry]) -> Vec<BackendInfo> {
    let mut out: Vec<BackendInfo> = Vec::new();
    for e in entries {
        for addr in &e.addrs {
            if out.iter().any(|b| b.addr == *addr) {
                continue;
            }
            out.push(BackendInfo {
                addr: *addr,
                label: e.label.clone(),
                weight: e.weight,
                region: e.region.clone(),
                region_id: e.region_id,
                sni: e.sni.clone(),
                stats: Arc::default(),
            });
        }
    }
    out
}

/// A name whose resolution keeps failing.
#[derive(Debug, Clone, Copy)]
struct Failing {
    /// Rounds failed in a row.
    rounds: u64,
    /// When it was last logged.
    warned: Option<Instant>,
}

/// Whether a name failing again at `now`, last logged at `warned`, is
/// logged again: at most once per [`REPEAT_WARNING`].
fn warn_again(warned: Option<Instant>, now: Instant) -> bool {
    warned.is_none_or(|at| now.saturating_duration_since(at) >= REPEAT_WARNING)
}

struct State {
    entries: Vec<Entry>,
    /// By entry position in `entries`.
    failing: HashMap<usize, Failing>,
}

/// The [`ServiceDiscovery`] of a pool with `discovery` on.
pub(super) struct DnsDiscovery {
    pool: String,
    resolver: TokioResolver,
    state: Mutex<State>,
    members: Members,
    /// Set until the first `discover`, which returns the set resolved at
    /// load without asking DNS again: the pool's load balancer is updated
    /// once while it is built, so that it selects from the first request on.
    from_load: AtomicBool,
}

impl DnsDiscovery {
    /// `entries` as resolved at load; `failed_at_load` holds the positions
    /// (in `entries`) of names that did not resolve then (already logged).
    pub(super) fn new(
        pool: &str,
        plan: &DiscoveryPlan,
        entries: Vec<Entry>,
        failed_at_load: &[usize],
        members: Members,
    ) -> Self {
        let now = Instant::now();
        let failing = failed_at_load
            .iter()
            .map(|i| {
                let f = Failing {
                    rounds: 1,
                    warned: Some(now),
                };
                (*i, f)
            })
            .collect();
        DnsDiscovery {
            pool: pool.to_string(),
            resolver: plan.resolver(),
            state: Mutex::new(State { entries, failing }),
            members,
            from_load: AtomicBool::new(true),
        }
    }

    /// Takes one round of lookup results (by entry position) into the
    /// entries: new addresses for names that resolved, the last good ones
    /// kept (counted, logged) for names that did not.
    fn apply(&self, state: &mut State, results: Vec<(usize, Result<Vec<IpAddr>, String>)>) {
        let now = Instant::now();
        let pool = &self.pool;
        for (i, result) in results {
            let entry = &mut state.entries[i];
            match result {
                Ok(ips) => {
                    let before = std::mem::take(&mut entry.addrs);
                    entry.set_addrs(&ips);
                    if let Some(f) = state.failing.remove(&i) {
                        log::info!(
                            "upstream {pool}: {:?} resolves again after {} failed lookup(s): {}",
                            entry.label,
                            f.rounds,
                            list(&entry.addrs)
                        );
                    } else if before != entry.addrs {
                        log::info!(
                            "upstream {pool}: {:?} now resolves to {} (was {})",
                            entry.label,
                            list(&entry.addrs),
                            list(&before)
                        );
                    }
                }
                Err(why) => {
                    metrics::DISCOVERY_FAILURES.with_label_values(&[pool]).inc();
                    let keeping = if entry.addrs.is_empty() {
                        "no address yet".to_string()
                    } else {
                        format!("keeping {}", list(&entry.addrs))
                    };
                    let f = state.failing.entry(i).or_insert(Failing {
                        rounds: 0,
                        warned: None,
                    });
                    f.rounds += 1;
                    if warn_again(f.warned, now) {
                        f.warned = Some(now);
                        log::warn!(
                            "upstream {pool}: {:?} does not resolve ({why}; {} failed lookup(s) in a row); {keeping}",
                            entry.label,
                            f.rounds
                        );
                    }
                }
            }
        }
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "nothing".into();
    }
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    /// Resolves every host name of the pool and returns the pool's backends
    /// (Pingora then rebuilds its selector if they changed). Never fails: a
    /// name that does not resolve keeps its last good addresses. The
    /// pool-side set (SNI, labels, counters) is swapped before returning, so
    /// that it already knows every backend the new selector can pick.
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        if self.from_load.swap(false, Ordering::Relaxed) {
            return Ok((self.members.load().to_pingora(), HashMap::new()));
        }
        let names: Vec<(usize, String)> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| e.host.clone().map(|h| (i, h)))
                .collect()
        };
        let (positions, hosts): (Vec<usize>, Vec<String>) = names.into_iter().unzip();
        let results = resolve_all(&self.resolver, hosts).await;
        // Nothing awaits from here on: a shutdown that drops this future
        // either finds the round not applied at all or fully applied.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.apply(&mut state, positions.into_iter().zip(results).collect());
        let next = backends_of(&state.entries);
        let current = self.members.load_full();
        if !current.same_as(&next) {
            for b in &next {
                if !current.iter().any(|c| c.label == b.label) {
                    // The entry's first addresses: its health gauge starts
                    // as every backend's does (health checks report changes).
                    metrics::BACKEND_HEALTHY
                        .with_label_values(&[&self.pool, &b.label, &b.region])
                        .set(1);
                }
            }
            self.members.store(Arc::new(current.succeeded_by(next)));
        }
        let set: Arc<BackendSet> = self.members.load_full();
        metrics::DISCOVERED_BACKENDS
            .with_label_values(&[&self.pool])
            .set(set.len() as i64);
        Ok((set.to_pingora(), HashMap::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_name_is_logged_once_per_period() {
        let t0 = Instant::now();
        assert!(warn_again(None, t0));
        assert!(!warn_again(Some(t0), t0 + Duration::from_secs(5)));
        assert!(!warn_again(
            Some(t0),
            t0 + REPEAT_WARNING - Duration::from_millis(1)
        ));
        assert!(warn_again(Some(t0), t0 + REPEAT_WARNING));
    }

    #[test]
    fn resolver_addresses_default_to_port_53() {
        assert_eq!(
            parse_resolver("10.0.0.2").unwrap(),
            "10.0.0.2:53".parse().unwrap()
        );
        assert_eq!(
            parse_resolver("127.0.0.1:8600").unwrap(),
            "127.0.0.1:8600".parse().unwrap()
        );
        assert_eq!(
            parse_resolver("[::1]:53").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_resolver("dns.internal:53").is_err());
    }

    #[test]
    fn bad_settings_name_their_paths() {
        let mut errs = ConfigErrors::default();
        let cfg = DiscoveryConfig {
            interval: "10ms".into(),
            resolver: Some("nowhere".into()),
        };
        assert!(DiscoveryPlan::build(&cfg, "upstreams.app.discovery", &mut errs).is_none());
        let text = errs.to_string();
        assert!(
            text.contains("upstreams.app.discovery.interval: must be at least 100ms"),
            "{text}"
        );
        assert!(
            text.contains("upstreams.app.discovery.resolver: expected a DNS server"),
            "{text}"
        );
    }

    #[test]
    fn an_address_two_entries_resolve_to_belongs_to_the_first() {
        let entry = |index: usize, label: &str, addrs: &[&str]| Entry {
            index,
            label: label.into(),
            host: Some(label.into()),
            port: 80,
            weight: index + 1,
            region: String::new(),
            region_id: None,
            sni: String::new(),
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let backends = backends_of(&[
            entry(0, "a", &["127.0.0.1:80", "127.0.0.2:80"]),
            entry(1, "b", &["127.0.0.2:80", "127.0.0.3:80"]),
        ]);
        let got: Vec<(String, &str)> = backends
            .iter()
            .map(|b| (b.addr.to_string(), b.label.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1:80".to_string(), "a"),
                ("127.0.0.2:80".to_string(), "a"),
                ("127.0.0.3:80".to_string(), "b")
            ]
        );
    }
}
