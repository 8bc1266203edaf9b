//! Pools built from config: selection, exclusion, panic mode, errors.

use super::*;
use crate::config;

fn pools(yaml: &str) -> Result<Pools, ConfigErrors> {
    let raw = config::parse(yaml).unwrap();
    let mut errs = ConfigErrors::default();
    let geo = Geography::of_config(&raw, &mut errs);
    let p = Pools::build(&raw.upstreams, &[], &geo, &mut errs);
    errs.into_result(p)
}

#[test]
fn weighted_round_robin_spreads_by_weight() {
    let p = pools("upstreams:\n  a:\n    backends:\n      - {address: 127.0.0.1:1, weight: 3}\n      - {address: 127.0.0.1:2}\n").unwrap();
    let pool = p.get(0);
    let mut counts = HashMap::new();
    for _ in 0..400 {
        *counts
            .entry(pool.select(b"", &[]).unwrap().port())
            .or_insert(0) += 1;
    }
    assert_eq!(counts[&1], 300, "{counts:?}");
    assert_eq!(counts[&2], 100, "{counts:?}");
}

#[test]
fn a_backend_out_of_service_gives_its_turns_to_the_rest_by_weight() {
    let p = pools("upstreams:\n  a:\n    backends:\n      - {address: 127.0.0.1:1}\n      - {address: 127.0.0.1:2}\n      - {address: 127.0.0.1:3, weight: 2}\n").unwrap();
    let pool = p.get(0);
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    pool.stats(addr(1)).unwrap().set_passes_checks(false);
    let mut counts = HashMap::new();
    for _ in 0..4000 {
        *counts
            .entry(pool.select(b"", &[]).unwrap().port())
            .or_insert(0) += 1;
    }
    assert!(!counts.contains_key(&1), "{counts:?}");
    // 1's quarter goes 1:2 to the others, as their weights: a third and
    // two thirds in all (onto its neighbour alone it would be 1:1).
    assert!((1250..1420).contains(&counts[&2]), "{counts:?}");
    assert_eq!(counts[&2] + counts[&3], 4000);
    // Back in service, it has its turns again.
    pool.stats(addr(1)).unwrap().set_passes_checks(true);
    let back = (0..400)
        .filter(|_| pool.select(b"", &[]) == Some(addr(1)))
        .count();
    assert_eq!(back, 100);
}

#[test]
fn exclusion_moves_selection_and_hash_is_sticky() {
    let p = pools("upstreams:\n  h:\n    selection: consistent_hash\n    hash_key: path\n    backends:\n      - {address: 127.0.0.1:1}\n      - {address: 127.0.0.1:2}\n      - {address: 127.0.0.1:3}\n").unwrap();
    let pool = p.get(0);
    let first = pool.select(b"/x", &[]).unwrap();
    assert_eq!(pool.select(b"/x", &[]).unwrap(), first);
    let second = pool.select(b"/x", &[first]).unwrap();
    assert_ne!(second, first);
    assert!(pool.select(b"/x", &[first, second]).is_some());
    let all: Vec<SocketAddr> = pool.backends().iter().map(|b| b.addr).collect();
    assert_eq!(pool.select(b"/x", &all), None);
}

#[test]
fn a_retry_in_panic_mode_still_has_a_candidate() {
    let yaml = "geo:\n  default_region: eu\n  regions:\n    eu: {latitude: 50, longitude: 8}\n    us: {latitude: 40, longitude: -75}\nupstreams:\n  app:\n    locality: {enabled: true}\n    backends:\n      - {address: 127.0.0.1:1, region: eu}\n      - {address: 127.0.0.1:2, region: eu}\n      - {address: 127.0.0.1:3, region: us}\n";
    let raw = config::parse(yaml).unwrap();
    let mut errs = ConfigErrors::default();
    let geo = Geography::of_config(&raw, &mut errs);
    let p = Pools::build(&raw.upstreams, &[], &geo, &mut errs);
    assert!(errs.is_empty(), "{errs}");
    let pool = p.get(0);
    let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    // Backend 1 failed this request; 2 and 3 fail their health checks.
    for port in [2, 3] {
        pool.stats(addr(port)).unwrap().set_passes_checks(false);
    }
    let failed = [addr(1)];
    let order = geo.regions.order(geo.regions.id("eu").unwrap());
    let picked = pool.select_near(b"", &failed, order);
    assert!(matches!(picked, Some(a) if a != addr(1)), "{picked:?}");
    assert!(
        pool.has_candidate(&failed),
        "panic mode has somewhere to go"
    );
    let all = [addr(1), addr(2), addr(3)];
    assert!(!pool.has_candidate(&all));
}

#[test]
fn all_pool_errors_are_reported_with_paths() {
    let errs = pools(
        "upstreams:\n  app:\n    selection: round_robin\n    hash_key: uri\n    backends:\n      - {address: 127.0.0.1:80, weight: 0}\n      - {address: \"10.0.0.x:80\"}\n      - {address: nohost.invalid:80}\n      - {address: 127.0.0.1}\n    timeouts: {connect: \"5\"}\n    health_check: {interval: 0s, healthy_threshold: 0}\n",
    )
    .err()
    .unwrap();
    let text = errs.to_string();
    for expected in [
        "upstreams.app.backends[0].weight: must be 1..=1000",
        "upstreams.app.backends[1].address: invalid socket address \"10.0.0.x:80\"",
        "upstreams.app.backends[2].address: invalid socket address \"nohost.invalid:80\": cannot resolve",
        "upstreams.app.backends[3].address: invalid socket address \"127.0.0.1\"",
        "upstreams.app.hash_key: only used with selection: consistent_hash",
        "upstreams.app.timeouts.connect: invalid duration",
        "upstreams.app.health_check.interval: must be greater than zero",
        "upstreams.app.health_check.healthy_threshold: must be at least 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
