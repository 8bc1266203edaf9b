//! A MaxMind DB file of arbitrary bytes: `parapet::geo::probe_database`
//! opens it as a config load does (map, metadata, `verify`) and, when it is
//! accepted, looks up addresses of both families, among them addresses
//! taken from the input itself. Neither step may panic: a damaged file is a
//! config error, a damaged record a lookup that places nobody.
//!
//! Seeds: `seeds/geo_database/` holds a small valid City-shaped database
//! written by the tests' writer (tests/support/mmdb.rs); libFuzzer mutates
//! its tree, data section and metadata.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("parapet-fuzz-geo-{}.mmdb", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut ips: Vec<IpAddr> = vec![
        Ipv4Addr::new(127, 0, 0, 2).into(),
        Ipv4Addr::new(192, 0, 2, 1).into(),
        Ipv4Addr::UNSPECIFIED.into(),
        Ipv4Addr::BROADCAST.into(),
        Ipv6Addr::LOCALHOST.into(),
        "2001:db8::1".parse().unwrap(),
        Ipv6Addr::from(u128::MAX).into(),
    ];
    for chunk in data.chunks_exact(16).take(8) {
        let bytes: [u8; 16] = chunk.try_into().unwrap();
        ips.push(Ipv6Addr::from(bytes).into());
        ips.push(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into());
    }
    let _ = parapet::geo::probe_database(path.to_str().unwrap_or_default(), &ips);
});
