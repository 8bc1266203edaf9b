//! The schema of `fleet:` (several Parapet nodes acting as one cache tier)
//! and of the routes' fleet settings. Key names `node`, `secret`, `peers`
//! (`name`, `address`) are part of the design contract.

use serde::Deserialize;

/// `fleet:`: this node's identity, its peers and how they are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// This node's name, unique in the fleet (default: the host name, which
    /// a container runtime makes unique per container).
    pub node: Option<String>,
    /// Shared by every node: authenticates peer hops (HMAC-SHA256 of each
    /// forwarded request). At least 16 characters.
    pub secret: String,
    /// Every node, this one included (static membership).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Membership from DNS: every A/AAAA record of `dns` (`name:port`) is a
    /// node; this node recognises itself by the name its probe answers with.
    pub discover: Option<FleetDiscoverConfig>,
    /// The `CDN-Loop` token of this fleet (RFC 8586).
    #[serde(default = "default_loop_token")]
    pub loop_token: String,
    /// A request carrying the token more often than this gets 508.
    #[serde(default = "default_max_hops")]
    pub max_hops: usize,
    /// Active checks of the peers (their readiness through the public listener).
    #[serde(default)]
    pub health: FleetHealthConfig,
    /// Timeouts of a hop to a peer; its reads wait as long as the route's pool
    /// would (the owner may be fetching from the origin).
    #[serde(default = "default_peer_connect")]
    pub connect_timeout: String,
}

fn default_loop_token() -> String {
    "parapet".into()
}

fn default_max_hops() -> usize {
    2
}

fn default_peer_connect() -> String {
    "500ms".into()
}

/// One node of a static peer list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub name: String,
    /// The node's public listener, `ip:port` or `host:port`.
    pub address: String,
}

/// `fleet.discover`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetDiscoverConfig {
    /// `name:port`, e.g. the Compose service name or a Kubernetes headless
    /// Service, and the nodes' public port.
    pub dns: String,
    #[serde(default = "default_discover_interval")]
    pub interval: String,
    /// The DNS server asked (`ip:port`, or `ip` for port 53); default: the
    /// system's (`/etc/resolv.conf`, with `/etc/hosts` first).
    pub resolver: Option<String>,
}

fn default_discover_interval() -> String {
    "5s".into()
}

/// `fleet.health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetHealthConfig {
    pub interval: String,
    pub timeout: String,
    /// Consecutive failed probes before a peer leaves the ring.
    pub unhealthy_threshold: usize,
    /// Consecutive good probes before it comes back.
    pub healthy_threshold: usize,
}

impl Default for FleetHealthConfig {
    fn default() -> Self {
        FleetHealthConfig {
            interval: "1s".into(),
            timeout: "500ms".into(),
            unhealthy_threshold: 2,
            healthy_threshold: 1,
        }
    }
}
