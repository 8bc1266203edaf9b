//! The schema of `geo:` (where clients are) and of a pool's `locality:`
//! (how a pool spreads requests over its regions). Key names `geo`,
//! `database`, `networks` and `server.region` are part of the design
//! contract.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `geo:`: maps client addresses to places and places to regions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// A MaxMind DB file (GeoIP2 / GeoLite2 City or Country, or any database
    /// with the same `country`, `continent` and `location` fields),
    /// memory-mapped; read again by each generation, so a reload picks up a
    /// new file.
    pub database: Option<String>,
    /// Networks placed by hand; they win over the database. They must not
    /// overlap.
    #[serde(default)]
    pub networks: Vec<GeoNetworkConfig>,
    /// The regions by name, with what makes one nearer than another.
    #[serde(default)]
    pub regions: BTreeMap<String, RegionConfig>,
    /// The region of a client the networks and the database do not place
    /// (default: `server.region`).
    pub default_region: Option<String>,
    /// Request header that carries the client's country (ISO 3166 alpha-2,
    /// `XX` when unknown) to the origin, like Cloudflare's `CF-IPCountry`.
    /// A client's own copy is always replaced.
    pub country_header: Option<String>,
    /// Request header that carries the client's region to the origin.
    pub region_header: Option<String>,
}

/// `geo.networks[]`: one network and what it says about its clients.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoNetworkConfig {
    /// `10.1.0.0/16`, `2001:db8::/32` or one address.
    pub network: String,
    /// The region of these clients, directly.
    pub region: Option<String>,
    /// ISO 3166 alpha-2 country code.
    pub country: Option<String>,
    /// Continent code (`EU`, `NA`, `AS`, `AF`, `OC`, `SA`, `AN`).
    pub continent: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

/// `geo.regions.NAME`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Where the region is; distances between regions and to clients with
    /// coordinates are great-circle distances.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Clients from these countries belong to this region.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Clients from these continents belong to this region (a country
    /// listed elsewhere wins).
    #[serde(default)]
    pub continents: Vec<String>,
    /// The regions to fall back to, nearest first, when this one cannot
    /// serve (default: by distance, then by name).
    #[serde(default)]
    pub fallback: Vec<String>,
}

/// `upstreams.NAME.locality`: a pool whose backends carry regions sends a
/// request to the client's region first and spills over (Envoy's priority
/// levels).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalityConfig {
    /// Steer by region (default on when the pool's backends have regions and
    /// the client's region can be known: `geo:` or `server.region`).
    pub enabled: bool,
    /// A region keeps all of its traffic while its healthy share × this
    /// factor is at least 100 %; below, the rest spills to the next region.
    pub overprovisioning_factor: f64,
    /// Percent: when the healthy share of the whole pool (× the factor)
    /// falls below this, health is ignored and every backend is used
    /// rather than failing most requests.
    pub panic_threshold: f64,
}

impl Default for LocalityConfig {
    fn default() -> Self {
        LocalityConfig {
            enabled: true,
            overprovisioning_factor: 1.4,
            panic_threshold: 50.0,
        }
    }
}
