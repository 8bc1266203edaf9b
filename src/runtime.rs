//! The runtime snapshot: everything the hot path needs, built once from a
//! schema-checked config, immutable for the life of the process. A reload is a
//! new process (Pingora's socket handoff), so there is no in-place mutation.

use crate::cache::CacheSettings;
use crate::config::{self, ConfigErrors, RawConfig};
use crate::filters::limits::Limits;
use crate::filters::FilterSet;
use crate::forwarding::Forwarding;
use crate::ratelimit::RateLimiter;
use crate::routing::Router;
use crate::upstream::Pools;
use pingora::server::configuration::ServerConf;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// One public listener.
#[derive(Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub h2c: bool,
    pub tls: Option<Arc<crate::tls::listener::ListenerTls>>,
    /// `Some(port)`: answer every request with a 308 to `https://` (port 443
    /// is left out of the URL).
    pub redirect_https: Option<u16>,
    /// `Strict-Transport-Security` on this (TLS) listener's responses.
    pub hsts: Option<http::HeaderValue>,
}

/// Everything a generation runs with, in typed parts: the process settings
/// Pingora gets, how connections are accepted, what the proxy does with a
/// request, the cache storage, and the admin surface.
pub struct Snapshot {
    pub(crate) process: ProcessSettings,
    pub(crate) connections: ConnectionPolicy,
    pub(crate) edge: EdgePolicy,
    /// Cache storage settings; the storage itself is created by `app::build`.
    pub(crate) cache: CacheSettings,
    pub(crate) admin: AdminSettings,
}

/// The `server:` section, checked: what Pingora's `ServerConf` is made of.
pub(crate) struct ProcessSettings {
    /// Worker threads per service, resolved (the CPU count by default).
    threads: usize,
    section: config::ServerSection,
    /// Where shared TLS session ticket keys live (`None`: OpenSSL's own).
    pub(crate) tickets: Option<crate::tls::tickets::TicketKeys>,
}

impl ProcessSettings {
    /// Pingora's settings for this process, built anew for each server.
    pub(crate) fn server_conf(&self) -> ServerConf {
        let s = &self.section;
        ServerConf {
            threads: self.threads,
            pid_file: s.pid_file.clone(),
            upgrade_sock: s.upgrade_sock.clone(),
            grace_period_seconds: Some(s.grace_period_seconds),
            graceful_shutdown_timeout_seconds: Some(s.graceful_shutdown_timeout_seconds),
            error_log: s.error_log.clone(),
            daemon: s.daemon,
            user: s.user.clone(),
            group: s.group.clone(),
            work_stealing: s.work_stealing,
            upstream_keepalive_pool_size: s.upstream_keepalive_pool_size,
            ..ServerConf::default()
        }
    }

    /// Where OCSP responses are kept between starts.
    pub(crate) fn ocsp_cache(&self) -> std::path::PathBuf {
        self.section
            .ocsp_cache
            .clone()
            .unwrap_or_else(|| format!("{}.ocsp", self.section.upgrade_sock))
            .into()
    }

    /// How many single-threaded runtimes Pingora runs per service (1 with
    /// work stealing: one multi-threaded runtime shares one event loop).
    pub(crate) fn runtimes(&self) -> usize {
        if self.section.work_stealing {
            1
        } else {
            self.threads
        }
    }

    /// The handoff socket shared by the generations of a reload.
    pub(crate) fn upgrade_sock(&self) -> &str {
        &self.section.upgrade_sock
    }

    /// How long a draining generation keeps serving.
    pub(crate) fn grace_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.section.grace_period_seconds)
    }
}

/// How client connections are accepted and held.
pub(crate) struct ConnectionPolicy {
    pub(crate) listeners: Vec<Listener>,
    /// Connection caps: total, and per peer IP.
    pub(crate) caps: Arc<(
        crate::concurrency::Gate,
        Option<crate::concurrency::PerClient>,
    )>,
    /// Total time for one HTTP/1 request head (`limits.header_timeout`).
    pub(crate) header_timeout: std::time::Duration,
    /// HTTP/2 settings for the proxy services, and their idle timeout.
    pub(crate) h2: pingora::protocols::http::v2::server::H2Options,
    pub(crate) h2_idle_timeout: std::time::Duration,
}

impl ConnectionPolicy {
    /// The index of the listener a connection came in on, by its local
    /// address (a wildcard listener matches any local IP on its port).
    pub(crate) fn listener_for(&self, local: SocketAddr) -> Option<usize> {
        self.listeners
            .iter()
            .position(|l| l.addr == local)
            .or_else(|| {
                self.listeners
                    .iter()
                    .position(|l| l.addr.ip().is_unspecified() && l.addr.port() == local.port())
            })
    }
}

/// What the proxy does with a request, from admission to the log line.
pub(crate) struct EdgePolicy {
    pub(crate) pools: Pools,
    pub(crate) router: Router,
    pub(crate) forwarding: Forwarding,
    /// Global request filters, size limits and rate limit.
    pub(crate) filters: FilterSet,
    pub(crate) limits: Limits,
    pub(crate) rate_limit: Option<RateLimiter>,
    pub(crate) per_client: Option<crate::concurrency::PerClient>,
    /// Behavioural blocking, if configured.
    pub(crate) reputation: Option<Arc<crate::behaviour::Reputation>>,
    /// The edge's own error pages.
    pub(crate) error_pages: crate::error_pages::ErrorPages,
    /// Response compression; `None` when no route compresses.
    pub(crate) compression: Option<crate::compression::Compression>,
    /// `None` when the access log is off.
    pub(crate) access_log: Option<crate::access_log::AccessLog>,
    /// The fleet this node belongs to, if any.
    pub(crate) fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The cache's name in `Cache-Status`: `parapet`, or `parapet-NODE` in a fleet.
    pub(crate) cache_name: String,
    /// Where clients are, and which region is nearest which.
    pub(crate) geo: crate::geo::Geography,
}

impl EdgePolicy {
    /// Whether any route caches.
    pub(crate) fn caches(&self) -> bool {
        self.router.iter().any(|r| r.cache.is_some())
    }
}

/// The admin listener and what it reports about this generation.
pub(crate) struct AdminSettings {
    pub(crate) address: Option<SocketAddr>,
    /// Bearer token of the admin API's state-changing endpoints.
    pub(crate) token: Option<String>,
    /// The file this snapshot was loaded from.
    pub(crate) source: Option<std::path::PathBuf>,
    /// That file's text as loaded (what the admin API shows, redacted).
    pub(crate) source_text: Option<String>,
    /// When this generation started serving.
    pub(crate) started: std::time::SystemTime,
}

impl Snapshot {
    /// Reads, schema-checks and builds; every error found, with its YAML path.
    /// Schema errors and semantic errors of the parts that did parse are
    /// reported together.
    pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
        let (raw, mut errs) = config::read_file(path);
        let Some(raw) = raw else {
            return Err(errs);
        };
        match Snapshot::build_from(&raw, Some(path)) {
            Ok(snap) => errs.into_result(snap),
            Err(more) => {
                errs.0.extend(more.0);
                Err(errs)
            }
        }
    }

    /// What the config says that is no error but should be heard, each with
    /// its YAML path: a name of a discovery pool that does not resolve yet.
    pub fn warnings(&self) -> impl Iterator<Item = &config::ConfigError> {
        self.edge.pools.warnings()
    }

    /// Builds from a schema-checked config; every semantic error at once.
    pub fn build(raw: &RawConfig) -> Result<Snapshot, ConfigErrors> {
        Snapshot::build_from(raw, None)
    }

    fn build_from(raw: &RawConfig, source: Option<&Path>) -> Result<Snapshot, ConfigErrors> {
        let mut errs = ConfigErrors::default();
        let process = process_settings(&raw.server, &mut errs);
        let mut listeners = Vec::new();
        let mut seen = BTreeMap::new();
        if raw.listeners.is_empty() && !raw.broken.listeners {
            errs.push("listeners", "at least one listener is needed");
        }
        for l in &raw.listeners {
            let i = l.position;
            match parse_listen_addr(&l.address) {
                Ok(addr) => {
                    match seen.get(&addr) {
                        Some(prev) => errs.push(
                            format!("listeners[{i}].address"),
                            format!("{addr} is already used by {prev}"),
                        ),
                        None => {
                            seen.insert(addr, format!("listeners[{i}]"));
                        }
                    }
                    listeners.push(build_listener(
                        l,
                        addr,
                        process.tickets.is_some(),
                        &mut errs,
                    ));
                }
                Err(e) => errs.push(format!("listeners[{i}].address"), e),
            }
        }
        let admin = raw.admin.as_ref().and_then(|a| match parse_listen_addr(&a.address) {
            Ok(addr) => {
                if let Some(prev) = seen.get(&addr) {
                    errs.push("admin.address", format!("{addr} is already used by {prev}; the admin listener must be separate"));
                }
                Some(addr)
            }
            Err(e) => {
                errs.push("admin.address", e);
                None
            }
        });
        let geo = crate::geo::Geography::of_config(raw, &mut errs);
        let pools = Pools::build(&raw.upstreams, &raw.broken.upstreams, &geo, &mut errs);
        if raw.routes.is_empty() && !raw.broken.routes {
            errs.push(
                "routes",
                "at least one route is needed (without one every request gets 404)",
            );
        }
        let router = Router::build(
            &raw.routes,
            pools.index(),
            raw.cache.as_ref(),
            raw.compression.as_ref(),
            &geo,
            &mut errs,
        );
        acme_checks(raw, &listeners, &router, &mut errs);
        let forwarding = Forwarding::build(&raw.forwarding, &mut errs);
        let filters = FilterSet::build(&raw.security, "security", &mut errs);
        let limits = Limits::build(&raw.limits, &mut errs);
        let per_client = crate::filters::limits::per_client(&raw.limits, &mut errs);
        let (h2, h2_idle_timeout) = crate::filters::limits::h2_options(&raw.limits.h2, &mut errs);
        let reputation = raw
            .behaviour
            .as_ref()
            .and_then(|b| crate::behaviour::Reputation::build(b, &mut errs))
            .map(Arc::new);
        let connection_caps = Arc::new(crate::filters::limits::connection_caps(
            &raw.limits,
            &mut errs,
        ));
        let rate_limit = raw
            .rate_limit
            .as_ref()
            .and_then(|r| RateLimiter::build(r, "rate_limit", &mut errs));
        let cache = CacheSettings::build(raw.cache.as_ref(), &mut errs);
        let admin_token = admin_token(raw.admin.as_ref(), &mut errs);
        let error_pages =
            crate::error_pages::ErrorPages::build(raw.error_pages.as_ref(), &mut errs);
        let compression =
            crate::compression::Compression::build(raw.compression.as_ref(), &mut errs);
        let compression = router.iter().any(|r| r.compression).then_some(compression);
        let access_log = crate::access_log::AccessLog::build(raw.access_log.as_ref(), &mut errs);
        let fleet = raw
            .fleet
            .as_ref()
            .and_then(|f| crate::fleet::Fleet::build(f, &mut errs))
            .map(Arc::new);
        if fleet.is_none() {
            for (i, r) in router.iter().enumerate() {
                if r.cache.as_ref().is_some_and(|c| c.shard.is_some()) {
                    errs.push(
                        format!("routes[{i}].cache.fleet"),
                        "shard needs a fleet: section (the nodes to shard over)",
                    );
                }
            }
        }
        let cache_name = fleet
            .as_ref()
            .map_or_else(|| crate::cache::NAME.to_string(), |f| f.cache_name.clone());
        let connections = ConnectionPolicy {
            listeners,
            caps: connection_caps,
            header_timeout: limits.header_timeout,
            h2,
            h2_idle_timeout,
        };
        errs.into_result(Snapshot {
            process,
            connections,
            edge: EdgePolicy {
                pools,
                router,
                forwarding,
                filters,
                limits,
                rate_limit,
                per_client,
                reputation,
                error_pages,
                compression,
                access_log,
                fleet,
                cache_name,
                geo,
            },
            cache,
            admin: AdminSettings {
                address: admin,
                token: admin_token,
                source: source.map(Path::to_path_buf),
                // Read again right after a successful parse: the file this
                // generation runs, not whatever it is edited into later.
                source_text: source.and_then(|p| std::fs::read_to_string(p).ok()),
                started: std::time::SystemTime::now(),
            },
        })
    }
}

fn build_listener(
    l: &config::ListenerConfig,
    addr: SocketAddr,
    shared_tickets: bool,
    errs: &mut ConfigErrors,
) -> Listener {
    let at = |key: &str| format!("listeners[{}].{key}", l.position);
    let before = errs.len();
    let tls = l.tls.as_ref().and_then(|t| {
        let built = crate::tls::listener::ListenerTls::build(t, &at("tls"), shared_tickets, errs)?;
        // Build the acceptor once now, so that anything OpenSSL refuses is a
        // config error rather than a failure at start-up.
        match built.settings() {
            Ok(_) => Some(Arc::new(built)),
            Err(e) => {
                errs.push(at("tls"), format!("TLS setup failed: {e}"));
                None
            }
        }
    });
    if l.tls.is_some() && tls.is_none() && errs.len() == before {
        // Never fall back to plaintext on a port meant for TLS.
        errs.push(at("tls"), "TLS could not be set up");
    }
    if l.tls.is_some() && l.h2c {
        errs.push(
            at("h2c"),
            "a TLS listener offers HTTP/2 by ALPN; h2c is for cleartext listeners",
        );
    }
    if l.tls.is_some() && l.redirect_https {
        errs.push(at("redirect_https"), "this listener already serves HTTPS");
    }
    if l.https_port.is_some() && !l.redirect_https {
        errs.push(at("https_port"), "only used with redirect_https: true");
    }
    let hsts = l
        .tls
        .as_ref()
        .and_then(|t| t.hsts.as_deref())
        .and_then(|v| http::HeaderValue::from_str(v).ok());
    Listener {
        addr,
        h2c: l.h2c,
        tls,
        redirect_https: l.redirect_https.then(|| l.https_port.unwrap_or(443)),
        hsts,
    }
}

/// What an ACME listener needs from the rest of the config: a plain
/// listener for HTTP-01 (the CA connects to port 80), and a route for each
/// name (a name nothing serves is a typo, or a certificate nobody needs).
fn acme_checks(raw: &RawConfig, listeners: &[Listener], router: &Router, errs: &mut ConfigErrors) {
    for l in &raw.listeners {
        let Some(acme) = l.tls.as_ref().and_then(|t| t.acme.as_ref()) else {
            continue;
        };
        let at = format!("listeners[{}].tls.acme", l.position);
        if acme.challenge == config::AcmeChallenge::Http01
            && !listeners.iter().any(|l| l.tls.is_none())
        {
            errs.push(
                format!("{at}.challenge"),
                "http-01 needs a plain (non-TLS) listener for the CA to reach, usually on port 80; add one or use tls-alpn-01",
            );
        }
        for (i, d) in acme.domains.iter().enumerate() {
            if !router.serves_host(d.trim_end_matches('.')) {
                errs.push(format!("{at}.domains[{i}]"), format!("no route serves {d}"));
            }
        }
    }
}

/// Shortest admin token accepted: an empty one would let every request in.
const MIN_TOKEN: usize = 12;

fn admin_token(admin: Option<&config::AdminConfig>, errs: &mut ConfigErrors) -> Option<String> {
    let token = admin?.token.clone()?;
    if token.len() < MIN_TOKEN || token.trim() != token {
        errs.push(
            "admin.token",
            format!("must be at least {MIN_TOKEN} characters, without surrounding spaces"),
        );
        return None;
    }
    Some(token)
}

fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>().map_err(|_| {
        format!("invalid listen address {text:?} (expected ip:port, e.g. \"0.0.0.0:80\" or \"[::]:80\")")
    })
}

fn process_settings(s: &config::ServerSection, errs: &mut ConfigErrors) -> ProcessSettings {
    let threads = s.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    if threads == 0 || threads > 1024 {
        errs.push(
            "server.threads",
            format!("must be 1..=1024 (got {threads})"),
        );
    }
    for (key, value) in [("pid_file", &s.pid_file), ("upgrade_sock", &s.upgrade_sock)] {
        if value.is_empty() {
            errs.push(format!("server.{key}"), "must not be empty");
        }
    }
    if s.pid_file == s.upgrade_sock {
        errs.push("server.upgrade_sock", "must differ from server.pid_file");
    }
    let t = &s.session_tickets;
    let rotate = crate::config::units::parse_positive_duration(&t.rotate)
        .map_err(|e| errs.push("server.session_tickets.rotate", e))
        .ok();
    if rotate.is_some_and(|r| r < std::time::Duration::from_secs(1)) {
        errs.push("server.session_tickets.rotate", "at least 1s");
    }
    let tickets = rotate.filter(|_| t.shared).map(|rotate| {
        let path = t
            .file
            .clone()
            .unwrap_or_else(|| format!("{}.tickets", s.upgrade_sock));
        crate::tls::tickets::TicketKeys {
            path: path.into(),
            rotate,
        }
    });
    ProcessSettings {
        threads: threads.max(1),
        section: s.clone(),
        tickets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_references_and_listeners_are_checked() {
        let raw = config::parse(
            "listeners:\n  - address: 127.0.0.1:8080\n  - address: 127.0.0.1:8080\n  - address: localhost:80\n\
             admin: {address: 127.0.0.1:8080}\n\
             upstreams:\n  app:\n    backends: [{address: 127.0.0.1:9000}]\n\
             routes:\n  - upstream: ghost\n",
        )
        .unwrap();
        let text = Snapshot::build(&raw).err().unwrap().to_string();
        for expected in [
            "listeners[1].address: 127.0.0.1:8080 is already used by listeners[0]",
            "listeners[2].address: invalid listen address",
            "admin.address: 127.0.0.1:8080 is already used by listeners[0]",
            "routes[0].upstream: no upstream named \"ghost\"",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn admin_tokens_must_not_be_guessable_by_omission() {
        for token in ["\"\"", "short", "\" padded-but-long-enough \""] {
            let raw = config::parse(&format!(
                "listeners: [{{address: 127.0.0.1:8080}}]\nadmin: {{address: 127.0.0.1:9901, token: {token}}}\n\
                 upstreams: {{app: {{backends: [{{address: 127.0.0.1:9000}}]}}}}\nroutes: [{{upstream: app}}]\n"
            ))
            .unwrap();
            let text = Snapshot::build(&raw).err().unwrap().to_string();
            assert!(
                text.contains("admin.token: must be at least"),
                "{token}: {text}"
            );
        }
    }

    #[test]
    fn minimal_config_builds_with_safe_defaults() {
        let raw = config::parse(include_str!("../conf/minimal.yaml")).unwrap();
        let snap = Snapshot::build(&raw).unwrap();
        assert_eq!(snap.process.server_conf().grace_period_seconds, Some(10));
        assert_eq!(snap.connections.listeners.len(), 1);
    }
}
