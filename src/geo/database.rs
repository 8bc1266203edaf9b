//! `geo.database`: a MaxMind DB file read with the `maxminddb` crate,
//! memory-mapped. Only the fields steering needs are decoded (country,
//! continent, coordinates), borrowed from the map: a lookup allocates
//! nothing. A lookup that fails (a corrupt record) places nobody and is
//! counted; it never fails the request.

use super::Code;
use maxminddb::{Mmap, Reader};
use serde::Deserialize;
use std::net::IpAddr;

pub(super) struct Database {
    reader: Reader<Mmap>,
}

/// What a lookup found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Found {
    pub country: Option<Code>,
    pub continent: Option<Code>,
    pub coords: Option<(f64, f64)>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Named<'a>>,
    #[serde(borrow, default)]
    continent: Option<Named<'a>>,
    #[serde(default)]
    location: Option<Location>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

impl Database {
    /// Opens and checks `path`: a file that is missing, unreadable, not a
    /// MaxMind DB, or whose search tree or data section is damaged is an
    /// error, found now rather than on a request.
    pub(super) fn open(path: &str) -> Result<Database, String> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        // SAFETY: the map is read-only and private to this process. A file
        // replaced by rename (how database updates are installed) leaves
        // this map on the old inode; one truncated in place would be a
        // SIGBUS, which is why the docs say to install new files by rename.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map {path}: {e}"))?;
        let reader = Reader::from_source(map)
            .map_err(|e| format!("{path} is not a MaxMind DB file: {e}"))?;
        reader
            .verify()
            .map_err(|e| format!("{path} is damaged: {e}"))?;
        Ok(Database { reader })
    }

    /// The database type from its metadata (`GeoLite2-City`, ...).
    pub(super) fn kind(&self) -> &str {
        &self.reader.metadata().database_type
    }

    pub(super) fn lookup(&self, ip: IpAddr) -> Result<Option<Found>, String> {
        let result = self.reader.lookup(ip).map_err(|e| e.to_string())?;
        let Some(record) = result.decode::<Record>().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let code = |n: Option<Named>| {
            n.and_then(|n| n.iso_code.or(n.code))
                .and_then(|c| Code::parse(c).ok())
        };
        Ok(Some(Found {
            country: code(record.country).or_else(|| code(record.registered_country)),
            continent: code(record.continent),
            coords: record.location.and_then(|l| {
                let (lat, lon) = (l.latitude?, l.longitude?);
                ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
                    .then_some((lat, lon))
            }),
        }))
    }
}

/// The tests' MaxMind DB writer (the integration tests use it too).
#[cfg(test)]
#[path = "../../tests/support/mmdb.rs"]
#[allow(dead_code, unreachable_pub)]
mod mmdb;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        mmdb::build_city(&[
            (
                "192.0.2.0/24",
                mmdb::GeoRecord {
                    country: Some("de"),
                    continent: Some("EU"),
                    location: Some((50.1, 8.7)),
                },
            ),
            (
                "2001:db8::/32",
                mmdb::GeoRecord {
                    country: Some("US"),
                    ..Default::default()
                },
            ),
            (
                "198.51.100.7",
                mmdb::GeoRecord {
                    location: Some((95.0, 0.0)),
                    ..Default::default()
                },
            ),
        ])
    }

    fn open_bytes(bytes: &[u8], name: &str) -> Result<Database, String> {
        let dir = std::env::temp_dir().join(format!("parapet-mmdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let db = Database::open(path.to_str().unwrap());
        let _ = std::fs::remove_file(&path);
        db
    }

    #[test]
    fn reads_country_continent_and_coordinates() {
        let db = open_bytes(&sample(), "sample.mmdb").unwrap();
        assert_eq!(db.kind(), "Parapet-Test-City");
        let found = db.lookup("192.0.2.77".parse().unwrap()).unwrap().unwrap();
        assert_eq!(found.country, Code::parse("DE").ok());
        assert_eq!(found.continent, Code::parse("EU").ok());
        assert_eq!(found.coords, Some((50.1, 8.7)));
        let v6 = db
            .lookup("2001:db8:1::1".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(
            (v6.country, v6.continent, v6.coords),
            (Code::parse("US").ok(), None, None)
        );
        // Coordinates out of range are dropped, not trusted.
        let odd = db.lookup("198.51.100.7".parse().unwrap()).unwrap().unwrap();
        assert_eq!(odd.coords, None);
        assert_eq!(db.lookup("203.0.113.1".parse().unwrap()).unwrap(), None);
    }

    /// Garbage in: truncated and randomly damaged files either fail to open
    /// (a config error) or answer lookups with a result or an error; never
    /// a panic.
    #[test]
    fn damaged_files_never_panic() {
        let good = sample();
        assert!(open_bytes(b"", "empty.mmdb").is_err());
        assert!(open_bytes(b"not a database at all", "text.mmdb").is_err());
        for cut in [1, 10, good.len() / 2, good.len() - 1] {
            let _ = open_bytes(&good[..cut], "cut.mmdb");
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut opened, mut refused) = (0, 0);
        for _ in 0..300 {
            let mut bad = good.clone();
            for _ in 0..(1 + next() % 6) {
                let at = (next() % bad.len() as u64) as usize;
                bad[at] = next() as u8;
            }
            match open_bytes(&bad, "fuzz.mmdb") {
                Err(_) => refused += 1,
                Ok(db) => {
                    opened += 1;
                    for _ in 0..50 {
                        let ip: IpAddr = if next() % 2 == 0 {
                            std::net::Ipv4Addr::from(next() as u32).into()
                        } else {
                            std::net::Ipv6Addr::from(
                                (u128::from(next()) << 64) | u128::from(next()),
                            )
                            .into()
                        };
                        let _ = db.lookup(ip);
                    }
                    let _ = db.lookup("192.0.2.1".parse().unwrap());
                }
            }
        }
        assert!(
            refused > 0 && opened > 0,
            "refused {refused}, opened {opened}"
        );
    }
}
