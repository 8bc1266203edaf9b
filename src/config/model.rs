//! The config file's schema: what an operator writes, as serde types.
//!
//! Every struct rejects unknown keys. Values that need checking beyond their
//! YAML type (addresses, durations, sizes, CIDRs, cross-references) stay strings
//! here and are checked when the runtime snapshot is built, so that all such
//! errors are reported together with their paths. conf/parapet.yaml documents
//! every key with its default.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Process settings, a checked subset of Pingora's `ServerConf`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Worker threads per service; default: the number of CPUs.
    pub threads: Option<usize>,
    pub pid_file: String,
    pub upgrade_sock: String,
    /// How long the old generation keeps serving in-flight requests after a handoff
    /// or SIGTERM (Pingora's default is 300 s).
    pub grace_period_seconds: u64,
    /// Hard stop after the grace period.
    pub graceful_shutdown_timeout_seconds: u64,
    pub error_log: Option<String>,
    pub daemon: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    /// Tokio work stealing between a service's threads. Off by default: one
    /// independent runtime per thread measured ~12% more requests per core.
    pub work_stealing: bool,
    /// Idle upstream connections kept per process.
    pub upstream_keepalive_pool_size: usize,
    /// This node's region: pools steered by region serve its clients from
    /// here first when `geo:` does not place them.
    pub region: Option<String>,
    /// TLS session ticket keys shared by every generation of a reload.
    pub session_tickets: SessionTicketsConfig,
    /// Folder for OCSP responses kept between starts; default: the upgrade
    /// socket's path + `.ocsp`.
    pub ocsp_cache: Option<String>,
}

/// `server.session_tickets`: TLS session resumption that survives reloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionTicketsConfig {
    /// Off: OpenSSL's own per-process keys (resumption ends at a reload).
    pub shared: bool,
    /// The key file; default: the upgrade socket's path + `.tickets`. Put it
    /// on a shared volume to share resumption between fleet nodes.
    pub file: Option<String>,
    /// A new key every this long; the previous two are still accepted.
    pub rotate: String,
}

impl Default for SessionTicketsConfig {
    fn default() -> Self {
        SessionTicketsConfig {
            shared: true,
            file: None,
            rotate: "1h".into(),
        }
    }
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            threads: None,
            pid_file: "/tmp/parapet.pid".into(),
            upgrade_sock: "/tmp/parapet_upgrade.sock".into(),
            grace_period_seconds: 10,
            graceful_shutdown_timeout_seconds: 5,
            error_log: None,
            daemon: false,
            user: None,
            group: None,
            work_stealing: false,
            upstream_keepalive_pool_size: 128,
            region: None,
            session_tickets: SessionTicketsConfig::default(),
            ocsp_cache: None,
        }
    }
}

/// One public listening socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Index in the file's `listeners` list (for error paths).
    #[serde(skip)]
    pub position: usize,
    /// `"127.0.0.1:8080"`, `"0.0.0.0:80"`, `"[::]:80"`.
    pub address: String,
    /// Also accept cleartext HTTP/2 with prior knowledge.
    #[serde(default)]
    pub h2c: bool,
    /// Terminate TLS here (certificates by SNI, optional client certificates).
    pub tls: Option<ListenerTlsConfig>,
    /// Answer every request with a 308 to the same URL on `https://`.
    #[serde(default)]
    pub redirect_https: bool,
    /// Port named in those redirects; default 443 (left out of the URL).
    pub https_port: Option<u16>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTlsConfig {
    /// Chosen by SNI among their names (SAN DNS entries, exact or `*.`);
    /// the first is the default for clients without SNI or with an unknown name.
    /// May be empty when `acme` provides the certificate.
    #[serde(default)]
    pub certificates: Vec<CertificateConfig>,
    /// Certificates obtained and renewed automatically (RFC 8555).
    pub acme: Option<AcmeConfig>,
    /// `"1.2"` (default) or `"1.3"`.
    #[serde(default = "default_min_tls")]
    pub min_version: String,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// CA bundle (PEM) client certificates must chain to.
    pub client_ca: Option<String>,
    /// `Strict-Transport-Security` value added to responses on this listener.
    pub hsts: Option<String>,
}

fn default_min_tls() -> String {
    "1.2".into()
}

/// `listeners[].tls.acme`: a certificate for `domains`, ordered from the CA at
/// `directory`, kept under `storage` and renewed before it expires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory URL (Let's Encrypt:
    /// `https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// Contact for the account (`ops@example.com`; `mailto:` is added).
    pub email: Option<String>,
    /// DNS names of the certificate; the first names its storage folder.
    pub domains: Vec<String>,
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Folder for the account, certificates, challenge files and locks;
    /// nodes that share it order once between them.
    pub storage: String,
    /// PEM root that the directory's own HTTPS certificate chains to, for a
    /// private or test CA (pebble); the system roots otherwise.
    pub ca_root: Option<String>,
    /// Renew when this share of the certificate's lifetime has passed.
    #[serde(default = "default_renew_at")]
    pub renew_at: f64,
    /// First wait after a failed order; doubles (with jitter) up to `retry_max`.
    #[serde(default = "default_acme_retry")]
    pub retry: String,
    #[serde(default = "default_acme_retry_max")]
    pub retry_max: String,
}

fn default_renew_at() -> f64 {
    2.0 / 3.0
}

fn default_acme_retry() -> String {
    "1m".into()
}

fn default_acme_retry_max() -> String {
    "6h".into()
}

/// How the CA checks that we control a name.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A file under `/.well-known/acme-challenge/` on a plain listener (port 80).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A special certificate in a TLS handshake on this listener (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// A certificate chain (leaf first) and its private key, PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    pub cert: String,
    pub key: String,
}

/// Client certificates on a TLS listener.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Off,
    /// Asked for; a client without one is served, a bad one is refused.
    Optional,
    /// The handshake fails without a valid client certificate.
    Required,
}

/// Request filters; global under `security:`, and per route. Both apply
/// (global first).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// If non-empty, only clients in these networks are served (403 otherwise).
    pub allow: Vec<String>,
    /// Clients in these networks get 403.
    pub deny: Vec<String>,
    /// Allowed methods; empty allows any (405 otherwise).
    pub methods: Vec<String>,
    /// Path prefixes refused with 403.
    pub deny_paths: Vec<String>,
    /// Path regular expressions refused with 403.
    pub deny_path_patterns: Vec<String>,
    /// Requests whose header matches a pattern get 403.
    pub deny_headers: Vec<HeaderPatternConfig>,
    /// Headers that must be present (403 otherwise).
    pub require_headers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderPatternConfig {
    pub name: String,
    /// Regular expression matched against each value.
    pub pattern: String,
}

/// Size limits on requests (global).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest request target (414).
    pub max_uri_length: String,
    /// Most header fields (431).
    pub max_header_count: usize,
    /// Largest total of header names and values (431).
    pub max_header_bytes: String,
    /// Largest request body (413).
    pub max_body_size: String,
    /// Requests in flight per client IP at most; more get 429.
    pub max_in_flight_per_client: Option<usize>,
    /// Total time a client gets to send one request head (slowloris).
    pub header_timeout: String,
    /// Open client connections at most; more are closed at once.
    pub max_connections: Option<usize>,
    /// Open connections per client IP (the TCP peer) at most.
    pub max_connections_per_ip: Option<usize>,
    /// HTTP/2 limits per connection.
    pub h2: H2LimitsConfig,
}

/// HTTP/2 limits (defaults bounded; the h2 library enforces them).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H2LimitsConfig {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: String,
    /// Streams a client may open and reset before they are accepted
    /// (rapid reset, CVE-2023-44487).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset because of client errors
    /// (MadeYouReset, CVE-2025-8671).
    pub max_local_error_reset_streams: usize,
    /// Close an HTTP/2 connection idle this long.
    pub idle_timeout: String,
}

impl Default for H2LimitsConfig {
    fn default() -> Self {
        H2LimitsConfig {
            max_concurrent_streams: 100,
            max_header_list_size: "64KiB".into(),
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 200,
            idle_timeout: "5m".into(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_uri_length: "8KiB".into(),
            max_header_count: 100,
            max_header_bytes: "32KiB".into(),
            max_body_size: "10MiB".into(),
            max_in_flight_per_client: None,
            header_timeout: "15s".into(),
            max_connections: None,
            max_connections_per_ip: None,
            h2: H2LimitsConfig::default(),
        }
    }
}

/// A per-client token bucket (global under `rate_limit:`, or per route).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub rate: f64,
    /// Requests allowed in a burst above the rate.
    pub burst: f64,
    /// Who a client is: `client_ip` (default), `header:NAME`, `cookie:NAME`.
    #[serde(default)]
    pub key: Option<String>,
}

/// One entry of the ordered route table; the first match wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Index in the file's `routes` list (for error paths and default names).
    #[serde(skip)]
    pub position: usize,
    /// Label in metrics and logs; default `route<index>`.
    pub name: Option<String>,
    #[serde(rename = "match", default)]
    pub matcher: MatchConfig,
    pub upstream: String,
    /// Remove the matched `path_prefix` before forwarding.
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub request_headers: HeaderRulesConfig,
    #[serde(default)]
    pub response_headers: HeaderRulesConfig,
    pub cache: Option<RouteCacheConfig>,
    /// Filters for this route, applied after the global ones.
    pub security: Option<SecurityConfig>,
    /// A rate limit for this route, on top of the global one.
    pub rate_limit: Option<RateLimitConfig>,
    /// Long-lived streams (server-sent events, gRPC streams, long polls):
    /// never cached or compressed, and reads wait up to `stream_idle_timeout`.
    #[serde(default)]
    pub streaming: bool,
    /// Retry POST, PATCH and other non-idempotent requests after they were
    /// sent, like idempotent ones (off: an origin may have acted on them).
    #[serde(default)]
    pub retry_non_idempotent: bool,
    /// Compress responses (see `compression:`); default `compression.enabled`.
    pub compression: Option<bool>,
    /// Idle limit of streaming routes and of upgraded (WebSocket)
    /// connections on any route; default 1h.
    pub stream_idle_timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `example.com` or `*.example.com`; absent matches every host.
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    /// Exact path (query excluded).
    pub path: Option<String>,
    /// Header name → regex; every one must match a value of its header.
    /// (With mTLS, `forwarding.client_cert_header` can be matched here.)
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The client's country is one of these (ISO 3166 alpha-2; needs `geo:`).
    #[serde(default)]
    pub country: Vec<String>,
    /// The client's continent is one of these (needs `geo:`).
    #[serde(default)]
    pub continent: Vec<String>,
    /// The client's region is one of these.
    #[serde(default)]
    pub region: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesConfig {
    /// Headers set (replacing any value already there).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Header names removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Per-route cache policy; every key falls back to `cache.defaults`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// Cache this route's GET/HEAD responses (as the origin allows).
    pub enabled: Option<bool>,
    /// Lifetime used only when the origin sent no freshness information.
    pub default_ttl: Option<String>,
    /// How long past freshness a stored response may answer when the origin
    /// fails, where the origin gave no `stale-if-error` of its own.
    pub stale_if_error: Option<String>,
    /// Store for this long whatever the origin says (explicit override of
    /// `no-store`/`private`; use with care).
    pub force_ttl: Option<String>,
    pub key: Option<CacheKeyConfig>,
    /// Storable responses that set a cookie: `store` (RFC 9111, default),
    /// `strip` (store without `Set-Cookie`) or `pass` (store only if `public`).
    pub set_cookie: Option<String>,
    /// `shard`: the node that owns the object's key on the fleet's ring
    /// serves it (fetching it from the origin once for the whole fleet).
    pub fleet: Option<String>,
    /// With `fleet: shard`, whether the node a client asked also keeps a
    /// copy: `owner_only` (default: each object stored once in the fleet) or
    /// `also_local` (hot objects served without the extra hop).
    pub fleet_copy: Option<String>,
    /// A pool of shield nodes (`cache.parent: shield`) that misses go to
    /// instead of the origin, chosen by consistent hash on the cache key.
    pub parent: Option<String>,
    /// When every parent is down: `origin` (default: go to the origin) or
    /// `error` (502: protect the origin).
    pub parent_fallback: Option<String>,
}

/// Cache key tweaks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheKeyConfig {
    #[serde(default)]
    pub ignore_query: bool,
    /// Request headers that become part of the key.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Cookies that become part of the key.
    #[serde(default)]
    pub cookies: Vec<String>,
}

/// Cache storage and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub memory: Option<MemoryCacheConfig>,
    /// A disk tier behind memory; its index is rebuilt at start-up, so a new
    /// generation after a reload starts warm.
    pub disk: Option<DiskCacheConfig>,
    /// Larger responses stream through and are not stored.
    pub max_object_size: Option<String>,
    /// How long requests wait for another request filling the same object
    /// before going to the origin themselves.
    pub lock_timeout: String,
    /// The RFC 9213 targeted field obeyed ahead of Cache-Control ("" = none).
    pub targeted_field: String,
    /// Obey `Surrogate-Control` (targeted at device `parapet`, announced in
    /// `Surrogate-Capability`), after the targeted field and before
    /// Cache-Control; it is removed from responses.
    pub surrogate_control: bool,
    /// Route cache settings used where a route does not set its own.
    pub defaults: RouteCacheConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            memory: None,
            disk: None,
            max_object_size: None,
            lock_timeout: "5s".into(),
            targeted_field: "CDN-Cache-Control".into(),
            surrogate_control: true,
            defaults: RouteCacheConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryCacheConfig {
    pub max_size: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskCacheConfig {
    pub path: String,
    pub max_size: String,
}

/// What the edge adds to and removes from proxied messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    /// Peers (CIDRs) whose `X-Forwarded-For` and request id are believed.
    pub trusted_proxies: Vec<String>,
    /// Name of the request id header sent to origins and returned to clients.
    pub request_id_header: String,
    /// Origin response headers removed before the client sees them.
    pub hide_response_headers: Vec<String>,
    /// Add an RFC 7239 `Forwarded` header too.
    pub forwarded: bool,
    /// Value of a `Via` header added both ways (`1.1 <via>`); none by default.
    pub via: Option<String>,
    /// `Server` header on responses; none by default.
    pub server_header: Option<String>,
    /// Header carrying a verified client certificate's subject to origins.
    /// Always removed from what clients send.
    pub client_cert_header: Option<String>,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        ForwardingConfig {
            trusted_proxies: Vec::new(),
            request_id_header: "X-Request-Id".into(),
            hide_response_headers: vec!["Server".into(), "X-Powered-By".into()],
            forwarded: false,
            via: None,
            server_header: None,
            client_cert_header: None,
        }
    }
}

/// The admin listener: metrics, health, status.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: String,
    /// Bearer token required by state-changing endpoints (purge). Without
    /// one they answer 403.
    pub token: Option<String>,
}
