//! The schema of `upstreams:`: pools, their backends, health checks,
//! timeouts, retries and TLS towards the origins.

use super::model::CertificateConfig;
use serde::Deserialize;

/// `upstreams.NAME.tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// Name sent as SNI and verified against the certificate; default the
    /// host part of the backend address (required when that is an IP).
    pub sni: Option<String>,
    /// Verify the origin's certificate (default true).
    #[serde(default = "yes")]
    pub verify: bool,
    /// CA bundle to verify against instead of the system roots.
    pub ca: Option<String>,
    /// Client certificate presented to the origin.
    pub client_cert: Option<CertificateConfig>,
}

fn yes() -> bool {
    true
}

/// HTTP version spoken to a pool's backends.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 over TLS (by ALPN, falling back to HTTP/1.1); needs `tls`.
    Http2,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
}

/// A named pool of origin servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub selection: Selection,
    /// Only for `consistent_hash`: no backend takes more than this factor ×
    /// the mean requests in flight; a hot key spills to the next backend on
    /// the ring (bounded-load hashing). More than 1, e.g. 1.25.
    pub hash_balance_factor: Option<f64>,
    /// Only for `consistent_hash`: `uri`, `path`, `client_ip`, `header:NAME`, `cookie:NAME`.
    pub hash_key: Option<String>,
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// Extra attempts on other backends after a failed attempt (see the
    /// README for which failures are retried).
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// No retry starts later than this after the request arrived; a retry's
    /// connect and read timeouts are cut to what is left.
    #[serde(default = "default_retry_deadline")]
    pub retry_deadline: String,
    /// Requests in flight to this pool at most; more get 503 at once.
    pub max_in_flight: Option<usize>,
    /// TLS to the backends.
    pub tls: Option<UpstreamTlsConfig>,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    /// Re-resolve host-name backends in the background (off: names are
    /// resolved once, when the config loads).
    pub discovery: Option<DiscoveryConfig>,
    /// Passive health: eject backends that fail live requests (off
    /// without this section).
    pub outlier_detection: Option<OutlierConfig>,
    /// Spreading requests over the backends' regions.
    #[serde(default)]
    pub locality: super::LocalityConfig,
    /// A backend that joins (or comes back from a failed health check or an
    /// ejection) gets a growing share of its traffic over this time.
    pub slow_start: Option<String>,
}

/// `upstreams.NAME.discovery`: DNS service discovery for the pool's
/// host-name backends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// How often every host name is resolved again; also the longest time a
    /// record is cached, whatever its TTL.
    pub interval: String,
    /// The DNS server asked (`ip:port`, or `ip` for port 53); default: the
    /// system's (`/etc/resolv.conf`, with `/etc/hosts` first).
    pub resolver: Option<String>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            interval: "5s".into(),
            resolver: None,
        }
    }
}

fn default_retries() -> usize {
    2
}

fn default_retry_deadline() -> String {
    "60s".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    RoundRobin,
    ConsistentHash,
    /// The backend with the fewest requests in flight per unit of weight.
    LeastConnections,
    /// Power of two choices over a peak-sensitive moving average of
    /// response-header latency × (requests in flight + 1).
    P2cEwma,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port`; a host name is resolved when the config is loaded, and
    /// again every `discovery.interval` when the pool has `discovery`.
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: usize,
    /// The region the backend is in (a data centre, a zone): reported in
    /// metrics, and the unit of steering by region (see `locality`).
    pub region: Option<String>,
}

fn default_weight() -> usize {
    1
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckKind {
    #[default]
    Http,
    Tcp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub kind: HealthCheckKind,
    /// HTTP only: the path requested.
    pub path: String,
    /// HTTP only: the status that counts as healthy.
    pub expect_status: u16,
    /// HTTP only: the Host header sent; default: the backend address.
    pub host: Option<String>,
    pub interval: String,
    pub timeout: String,
    /// Consecutive successes that bring an unhealthy backend back.
    pub healthy_threshold: usize,
    /// Consecutive failures that take a healthy backend out.
    pub unhealthy_threshold: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            kind: HealthCheckKind::Http,
            path: "/".into(),
            expect_status: 200,
            host: None,
            interval: "5s".into(),
            timeout: "1s".into(),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    pub connect: String,
    /// Longest wait for any one read from the origin (headers or a body chunk).
    pub read: String,
    pub write: String,
    /// How long an idle upstream connection is kept for reuse.
    pub idle: String,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            connect: "2s".into(),
            read: "30s".into(),
            write: "30s".into(),
            idle: "60s".into(),
        }
    }
}

/// `upstreams.NAME.outlier_detection` (defaults close to Envoy's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierConfig {
    /// 5xx answers in a row (gateway failures included) that eject.
    pub consecutive_5xx: u32,
    /// Gateway failures in a row (connect error, reset, timeout, 502/503/504).
    pub consecutive_gateway_failure: u32,
    /// Ejection time, multiplied by the number of ejections so far.
    pub base_ejection_time: String,
    /// The longest one ejection lasts.
    pub max_ejection_time: String,
    /// At most this share of the pool is ejected at once (one backend always may be).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            base_ejection_time: "30s".into(),
            max_ejection_time: "300s".into(),
            max_ejection_percent: 10,
        }
    }
}
