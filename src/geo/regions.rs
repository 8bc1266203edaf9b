//! The regions a config knows, and which is nearest to which: each region's
//! fallback order is fixed when the config loads (its own `fallback` list,
//! then the rest by great-circle distance, then by name), so a request only
//! looks it up.

use super::Code;
use crate::config::{ConfigErrors, RegionConfig};
use std::collections::{BTreeMap, HashMap};

/// A region's index in [`Regions`].
pub(crate) type RegionId = u16;

/// Mean Earth radius in kilometres (great-circle distances).
const EARTH_RADIUS_KM: f64 = 6371.0;

#[derive(Debug, Default)]
pub(crate) struct Regions {
    names: Vec<String>,
    coords: Vec<Option<(f64, f64)>>,
    /// For each region: every region, itself first, nearest next.
    order: Vec<Vec<RegionId>>,
    by_country: HashMap<Code, RegionId>,
    by_continent: HashMap<Code, RegionId>,
    /// Whether the names were declared in `geo.regions` (else they are the
    /// ones the backends use).
    declared: bool,
}

impl Regions {
    /// `declared` is `geo.regions`; without it the regions are `used`, the
    /// names the pools' backends carry.
    pub(crate) fn build(
        declared: &BTreeMap<String, RegionConfig>,
        used: &[&str],
        errs: &mut ConfigErrors,
    ) -> Regions {
        let mut regions = Regions {
            declared: !declared.is_empty(),
            ..Regions::default()
        };
        if declared.is_empty() {
            let mut names: Vec<&str> = used.iter().copied().filter(|n| !n.is_empty()).collect();
            names.sort_unstable();
            names.dedup();
            regions.names = names.into_iter().map(str::to_string).collect();
            regions.coords = vec![None; regions.names.len()];
        } else {
            regions.names = declared.keys().cloned().collect();
            for (name, r) in declared {
                let at = |key: &str| format!("geo.regions.{name}.{key}");
                regions
                    .coords
                    .push(coordinates(r.latitude, r.longitude, &at, errs));
            }
        }
        if regions.names.len() > usize::from(RegionId::MAX) {
            errs.push("geo.regions", "too many regions");
            return Regions::default();
        }
        let mut fallbacks = vec![Vec::new(); regions.names.len()];
        for (name, r) in declared {
            let at = |key: &str| format!("geo.regions.{name}.{key}");
            let me = regions.id(name).unwrap_or_default();
            for (i, f) in r.fallback.iter().enumerate() {
                match regions.id(f) {
                    Some(id) if id != me => fallbacks[usize::from(me)].push(id),
                    Some(_) => errs.push(at(&format!("fallback[{i}]")), "names the region itself"),
                    None => errs.push(at(&format!("fallback[{i}]")), regions.unknown(f)),
                }
            }
            for (key, list, map) in [
                ("countries", &r.countries, &mut regions.by_country),
                ("continents", &r.continents, &mut regions.by_continent),
            ] {
                for (i, code) in list.iter().enumerate() {
                    match Code::parse(code) {
                        Ok(c) => {
                            if let Some(prev) = map.insert(c, me) {
                                if prev != me {
                                    errs.push(
                                        at(&format!("{key}[{i}]")),
                                        format!(
                                            "{code} is already in region {}",
                                            regions.names[usize::from(prev)]
                                        ),
                                    );
                                }
                            }
                        }
                        Err(e) => errs.push(at(&format!("{key}[{i}]")), e),
                    }
                }
            }
        }
        let n = regions.names.len();
        regions.order = (0..n)
            .map(|me| {
                let mut order = vec![me as RegionId];
                for f in &fallbacks[me] {
                    if !order.contains(f) {
                        order.push(*f);
                    }
                }
                let mut rest: Vec<RegionId> =
                    (0..n as RegionId).filter(|r| !order.contains(r)).collect();
                rest.sort_by(|a, b| {
                    let d = |r: &RegionId| regions.distance(me as RegionId, *r);
                    d(a).total_cmp(&d(b)).then(a.cmp(b))
                });
                order.extend(rest);
                order
            })
            .collect();
        regions
    }

    pub(crate) fn id(&self, name: &str) -> Option<RegionId> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| i as RegionId)
    }

    /// The id of `name`, or an error naming the known regions.
    pub(crate) fn resolve(&self, name: &str) -> Result<RegionId, String> {
        self.id(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> String {
        let source = if self.declared {
            "geo.regions has"
        } else {
            "the pools' backends have"
        };
        format!(
            "unknown region {name:?} ({source}: {})",
            if self.names.is_empty() {
                "none".to_string()
            } else {
                self.names.join(", ")
            }
        )
    }

    pub(crate) fn name(&self, id: RegionId) -> &str {
        self.names.get(usize::from(id)).map_or("", String::as_str)
    }

    /// Every region, `from` first, then by preference.
    pub(crate) fn order(&self, from: RegionId) -> &[RegionId] {
        self.order.get(usize::from(from)).map_or(&[], Vec::as_slice)
    }

    /// The region a located client belongs to: by its country, else its
    /// continent, else the region nearest its coordinates.
    pub(crate) fn of(
        &self,
        country: Option<Code>,
        continent: Option<Code>,
        coords: Option<(f64, f64)>,
    ) -> Option<RegionId> {
        country
            .and_then(|c| self.by_country.get(&c).copied())
            .or_else(|| continent.and_then(|c| self.by_continent.get(&c).copied()))
            .or_else(|| {
                let (lat, lon) = coords?;
                (0..self.names.len() as RegionId)
                    .filter_map(|r| Some((r, haversine((lat, lon), self.coords[usize::from(r)]?))))
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(r, _)| r)
            })
    }

    /// Great-circle distance between two regions; infinite when either has
    /// no coordinates.
    fn distance(&self, a: RegionId, b: RegionId) -> f64 {
        match (self.coords[usize::from(a)], self.coords[usize::from(b)]) {
            (Some(x), Some(y)) => haversine(x, y),
            _ => f64::INFINITY,
        }
    }
}

/// Checks a latitude/longitude pair: both or neither, in range.
pub(super) fn coordinates(
    latitude: Option<f64>,
    longitude: Option<f64>,
    at: &dyn Fn(&str) -> String,
    errs: &mut ConfigErrors,
) -> Option<(f64, f64)> {
    match (latitude, longitude) {
        (None, None) => None,
        (Some(lat), Some(lon)) => {
            let mut ok = true;
            if !(-90.0..=90.0).contains(&lat) {
                errs.push(at("latitude"), format!("must be -90..=90 (got {lat})"));
                ok = false;
            }
            if !(-180.0..=180.0).contains(&lon) {
                errs.push(at("longitude"), format!("must be -180..=180 (got {lon})"));
                ok = false;
            }
            ok.then_some((lat, lon))
        }
        (Some(_), None) => {
            errs.push(at("longitude"), "needed with latitude");
            None
        }
        (None, Some(_)) => {
            errs.push(at("latitude"), "needed with longitude");
            None
        }
    }
}

/// Great-circle distance in kilometres between two (latitude, longitude)
/// points in degrees.
pub(super) fn haversine(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(lat: f64, lon: f64, fallback: &[&str]) -> RegionConfig {
        RegionConfig {
            latitude: Some(lat),
            longitude: Some(lon),
            fallback: fallback.iter().map(|s| s.to_string()).collect(),
            ..RegionConfig::default()
        }
    }

    #[test]
    fn order_is_fallback_list_then_distance() {
        let declared = BTreeMap::from([
            ("eu-west".to_string(), region(53.3, -6.3, &[])), // Dublin
            ("eu-central".to_string(), region(50.1, 8.7, &[])), // Frankfurt
            ("us-east".to_string(), region(39.0, -77.5, &[])), // Virginia
            ("ap-south".to_string(), region(19.1, 72.9, &["us-east"])), // Mumbai
        ]);
        let mut errs = ConfigErrors::default();
        let r = Regions::build(&declared, &[], &mut errs);
        assert!(errs.is_empty(), "{errs}");
        let names = |from: &str| -> Vec<&str> {
            r.order(r.id(from).unwrap())
                .iter()
                .map(|i| r.name(*i))
                .collect()
        };
        assert_eq!(
            names("eu-west"),
            ["eu-west", "eu-central", "us-east", "ap-south"]
        );
        assert_eq!(
            names("ap-south"),
            ["ap-south", "us-east", "eu-central", "eu-west"]
        );
        // A client in Paris is nearest Frankfurt; one in New York, Virginia.
        assert_eq!(r.of(None, None, Some((48.9, 2.35))), r.id("eu-central"));
        assert_eq!(r.of(None, None, Some((40.7, -74.0))), r.id("us-east"));
        assert_eq!(r.of(None, None, None), None);
        assert!((haversine((53.3, -6.3), (50.1, 8.7)) - 1090.0).abs() < 30.0);
    }

    #[test]
    fn bad_regions_are_errors_with_paths() {
        let mut bad = region(95.0, 10.0, &["nowhere", "a"]);
        bad.countries = vec!["DE".into(), "Germany".into()];
        let mut other = region(1.0, 1.0, &[]);
        other.countries = vec!["de".into()];
        let declared = BTreeMap::from([("a".to_string(), bad), ("b".to_string(), other)]);
        let mut errs = ConfigErrors::default();
        let r = Regions::build(&declared, &[], &mut errs);
        let text = errs.to_string();
        for expected in [
            "geo.regions.a.latitude: must be -90..=90",
            "geo.regions.a.fallback[0]: unknown region \"nowhere\" (geo.regions has: a, b)",
            "geo.regions.a.fallback[1]: names the region itself",
            "geo.regions.a.countries[1]:",
            "geo.regions.b.countries[0]: de is already in region a",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(r.resolve("c").is_err());
    }

    #[test]
    fn without_declared_regions_the_backends_names_are_the_regions() {
        let mut errs = ConfigErrors::default();
        let r = Regions::build(&BTreeMap::new(), &["b", "a", "", "b"], &mut errs);
        assert!(errs.is_empty());
        assert_eq!(r.order(r.id("b").unwrap()), [1, 0]);
        assert_eq!(
            r.resolve("c").unwrap_err(),
            "unknown region \"c\" (the pools' backends have: a, b)"
        );
    }
}
