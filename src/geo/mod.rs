//! Where clients are: a client address becomes a [`Place`] (country,
//! continent, region) from the config's `geo.networks`, then the MaxMind
//! database, then the default region; and which region is nearest which
//! ([`Regions`]), for pools that steer by region.
//!
//! Built once per generation: a reload reads the database file again.

mod database;
mod networks;
mod regions;

pub(crate) use regions::{RegionId, Regions};

use crate::config::{ConfigErrors, GeoConfig};
use crate::metrics;
use database::Database;
use networks::NetworkTable;
use std::net::IpAddr;

/// For the `geo_database` fuzz target: opens the MaxMind DB at `path` as a
/// config load does and looks up every address in `ips`, returning how
/// many found a record (or why the file was refused). Never panics, on any
/// file.
pub fn probe_database(path: &str, ips: &[IpAddr]) -> Result<usize, String> {
    let db = Database::open(path)?;
    Ok(ips
        .iter()
        .filter(|ip| db.lookup(**ip).is_ok_and(|f| f.is_some()))
        .count())
}

/// A two-letter code (ISO 3166 country, or continent), upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Code([u8; 2]);

impl Code {
    pub(crate) fn parse(text: &str) -> Result<Code, String> {
        match text.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok(Code([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => Err(format!("{text:?} is not a two-letter code")),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("XX")
    }
}

/// Where one client is, as far as this node knows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Place {
    pub(crate) country: Option<Code>,
    pub(crate) continent: Option<Code>,
    /// The region its requests go to first.
    pub(crate) region: Option<RegionId>,
}

/// The built `geo:` section, with `server.region`.
#[derive(Default)]
pub(crate) struct Geography {
    pub(crate) regions: Regions,
    networks: NetworkTable,
    database: Option<Database>,
    /// A client nothing places goes here (`geo.default_region`, else
    /// `server.region`).
    default_region: Option<RegionId>,
    /// This node's own region.
    home: Option<RegionId>,
    pub(crate) country_header: Option<http::HeaderName>,
    pub(crate) region_header: Option<http::HeaderName>,
    /// `parapet_geo_lookups_total` by source, resolved once.
    counted: Option<Box<Counted>>,
}

/// How lookups ended: by `geo.networks`, by the database, nowhere, or with
/// a database error.
struct Counted {
    network: prometheus::IntCounter,
    database: prometheus::IntCounter,
    unknown: prometheus::IntCounter,
    error: prometheus::IntCounter,
}

impl Counted {
    fn new() -> Counted {
        let c = |source: &str| metrics::GEO_LOOKUPS.with_label_values(&[source]);
        Counted {
            network: c("network"),
            database: c("database"),
            unknown: c("unknown"),
            error: c("error"),
        }
    }
}

impl Geography {
    /// The geography of a whole config: `geo:`, `server.region`, and the
    /// regions its pools' backends name.
    pub(crate) fn of_config(raw: &crate::config::RawConfig, errs: &mut ConfigErrors) -> Geography {
        let used: Vec<&str> = raw
            .upstreams
            .values()
            .flat_map(|u| u.backends.iter().filter_map(|b| b.region.as_deref()))
            .collect();
        Geography::build(raw.geo.as_ref(), raw.server.region.as_deref(), &used, errs)
    }

    /// `used` are the regions the pools' backends name.
    fn build(
        geo: Option<&GeoConfig>,
        home: Option<&str>,
        used: &[&str],
        errs: &mut ConfigErrors,
    ) -> Geography {
        let empty = GeoConfig::default();
        let cfg = geo.unwrap_or(&empty);
        let regions = Regions::build(&cfg.regions, used, errs);
        let resolve = |name: Option<&str>, at: &str, errs: &mut ConfigErrors| {
            name.and_then(|n| match regions.resolve(n) {
                Ok(id) => Some(id),
                Err(e) => {
                    errs.push(at, e);
                    None
                }
            })
        };
        let home = resolve(home, "server.region", errs);
        let default_region =
            resolve(cfg.default_region.as_deref(), "geo.default_region", errs).or(home);
        let mut entries = Vec::new();
        for (i, n) in cfg.networks.iter().enumerate() {
            let at = |key: &str| format!("geo.networks[{i}].{key}");
            let net = match n.network.parse::<crate::cidr::Cidr>() {
                Ok(net) => net,
                Err(e) => {
                    errs.push(at("network"), e);
                    continue;
                }
            };
            let mut code = |key: &str, text: &Option<String>| {
                text.as_deref().and_then(|t| match Code::parse(t) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        errs.push(at(key), e);
                        None
                    }
                })
            };
            let country = code("country", &n.country);
            let continent = code("continent", &n.continent);
            let coords = regions::coordinates(n.latitude, n.longitude, &at, errs);
            let region = resolve(n.region.as_deref(), &at("region"), errs)
                .or_else(|| regions.of(country, continent, coords));
            if region.is_none() && country.is_none() && continent.is_none() {
                errs.push(
                    at("network"),
                    "places nobody: give a region, a country, a continent or coordinates that fall in a region",
                );
            }
            entries.push((
                at("network"),
                net,
                Place {
                    country,
                    continent,
                    region,
                },
            ));
        }
        let networks = NetworkTable::build(entries, errs);
        let database = cfg
            .database
            .as_deref()
            .and_then(|path| match Database::open(path) {
                Ok(db) => {
                    log::info!("geo: {path} ({}) loaded", db.kind());
                    Some(db)
                }
                Err(e) => {
                    errs.push("geo.database", e);
                    None
                }
            });
        let mut header = |key: &str, name: &Option<String>| {
            name.as_deref()
                .and_then(|n| match http::HeaderName::from_bytes(n.as_bytes()) {
                    Ok(h) => Some(h),
                    Err(_) => {
                        errs.push(
                            format!("geo.{key}"),
                            format!("{n:?} is not a valid header name"),
                        );
                        None
                    }
                })
        };
        Geography {
            country_header: header("country_header", &cfg.country_header),
            region_header: header("region_header", &cfg.region_header),
            counted: (database.is_some() || !networks.is_empty()).then(|| Box::new(Counted::new())),
            regions,
            networks,
            database,
            default_region,
            home,
        }
    }

    /// Whether client addresses are looked up at all.
    pub(crate) fn locates(&self) -> bool {
        self.database.is_some() || !self.networks.is_empty()
    }

    /// The place of a client at `ip`.
    pub(crate) fn locate(&self, ip: IpAddr) -> Place {
        let Some(counted) = &self.counted else {
            return self.nowhere();
        };
        if let Some(place) = self.networks.find(ip) {
            counted.network.inc();
            return Place {
                region: place.region.or(self.default_region),
                ..place
            };
        }
        let found = self.database.as_ref().and_then(|db| match db.lookup(ip) {
            Ok(found) => found,
            Err(e) => {
                counted.error.inc();
                log::debug!("geo: lookup of {ip} failed: {e}");
                None
            }
        });
        match found {
            Some(f) => {
                counted.database.inc();
                Place {
                    country: f.country,
                    continent: f.continent,
                    region: self
                        .regions
                        .of(f.country, f.continent, f.coords)
                        .or(self.default_region),
                }
            }
            None => {
                counted.unknown.inc();
                self.nowhere()
            }
        }
    }

    /// The place of a client nothing locates: the default region.
    pub(crate) fn nowhere(&self) -> Place {
        Place {
            region: self.default_region,
            ..Place::default()
        }
    }

    /// Tells the origin where the client is (`country_header`,
    /// `region_header`), replacing whatever the client sent in those.
    pub(crate) fn tag_request(
        &self,
        req: &mut pingora::http::RequestHeader,
        place: &Place,
    ) -> pingora::Result<()> {
        if let Some(h) = &self.country_header {
            let code = place.country.as_ref().map_or("XX", Code::as_str);
            req.insert_header(h.clone(), code)?;
        }
        if let Some(h) = &self.region_header {
            match place.region {
                Some(r) => {
                    req.insert_header(h.clone(), self.regions.name(r))?;
                }
                None => {
                    req.remove_header(h);
                }
            }
        }
        Ok(())
    }

    /// This node's own region (`server.region`).
    pub(crate) fn home(&self) -> Option<RegionId> {
        self.home
    }
}
