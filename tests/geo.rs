//! Steering by geography: clients placed by a real MaxMind DB file (built
//! by the test, read by Parapet with the `maxminddb` crate) and by the
//! config's networks go to the backends of their nearest region; a region
//! whose backends fail their health checks hands its traffic to the next
//! one, in the proportions of Envoy's overprovisioning model, and a pool
//! with too few healthy backends anywhere panics into using them all.
//!
//! Clients are told apart by their source address: each request binds a
//! different 127.0.0.x before connecting.

mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use support::mmdb::{write_city, GeoRecord};
use support::*;

/// A GET from source address `from` (any 127.0.0.x works on Linux loopback).
fn get_from(from: Ipv4Addr, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = rt
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((from, 0)))?;
            socket.connect(addr).await
        })
        .and_then(|s| s.into_std())
        .unwrap_or_else(|e| panic!("connect {addr} from {from}: {e}"));
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    request_over(stream, "GET", path, headers, b"")
        .unwrap_or_else(|e| panic!("GET {path} from {from}: {e}"))
}

const DE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const US: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const JP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const HAND_PLACED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const NOWHERE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

fn city_db(path: &Path, de_is_in_germany: bool) {
    let germany = GeoRecord {
        country: Some("DE"),
        continent: Some("EU"),
        location: Some((50.1, 8.7)),
    };
    let usa = GeoRecord {
        country: Some("US"),
        continent: Some("NA"),
        location: Some((40.7, -74.0)),
    };
    write_city(
        path,
        &[
            (
                "127.0.0.2/32",
                if de_is_in_germany {
                    germany.clone()
                } else {
                    usa.clone()
                },
            ),
            ("127.0.0.3/32", usa.clone()),
            // Tokyo: no region lists Japan; Frankfurt is nearer than Virginia.
            (
                "127.0.0.4/32",
                GeoRecord {
                    country: Some("JP"),
                    continent: Some("AS"),
                    location: Some((35.7, 139.7)),
                },
            ),
            // The config's networks win over this.
            ("127.0.0.5/32", germany),
            ("2001:db8::/32", usa),
        ],
    );
}

/// `geo:` with two regions; `pool` is the rest of the `app` pool's YAML.
fn config(ports: &Ports, db: &Path, pool: &str, backends: &[(&Origin, &str)]) -> String {
    let list: String = backends
        .iter()
        .map(|(o, region)| {
            format!(
                "      - {{address: \"{}\", region: {region}}}\n",
                o.address()
            )
        })
        .collect();
    base_config(
        ports,
        &format!(
            "geo:\n  database: \"{}\"\n  default_region: us\n  country_header: CF-IPCountry\n  region_header: X-Client-Region\n  networks:\n    - {{network: 127.0.0.5/32, region: us}}\n  regions:\n    eu: {{latitude: 50.1, longitude: 8.7}}\n    us: {{latitude: 39.0, longitude: -77.5}}\naccess_log:\n  path: \"{{dir}}/access.log\"\nupstreams:\n  app:\n    health_check: {{path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1}}\n{pool}    backends:\n{list}routes:\n  - upstream: app\n",
            db.display()
        ),
    )
}

fn served_by(edge: SocketAddr, from: Ipv4Addr, path: &str) -> String {
    let r = get_from(from, edge, path, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    r.echo().origin
}

/// An edge in front of `n` origins in eu (`eu1`..) and `n` in us, with the
/// test database; `pool` is more of the pool's YAML.
struct TwoRegions {
    p: Parapet,
    eu: Vec<Origin>,
    us: Vec<Origin>,
    _dir: std::path::PathBuf,
}

fn two_regions(name: &str, n: usize, pool: &str) -> TwoRegions {
    let dir = temp_dir(name);
    let db = dir.join("city.mmdb");
    city_db(&db, true);
    let start = |region: &str| -> Vec<Origin> {
        (1..=n)
            .map(|i| Origin::start(&format!("{region}{i}")))
            .collect()
    };
    let (eu, us) = (start("eu"), start("us"));
    let backends: Vec<(&Origin, &str)> = eu
        .iter()
        .map(|o| (o, "eu"))
        .chain(us.iter().map(|o| (o, "us")))
        .collect();
    let ports = Ports::new();
    let p = Parapet::start_with(&ports, &config(&ports, &db, pool, &backends));
    TwoRegions {
        p,
        eu,
        us,
        _dir: dir,
    }
}

#[test]
fn clients_go_to_the_backends_of_their_nearest_region() {
    let world = two_regions("geo-nearest", 2, "");
    let p = &world.p;
    for (from, region) in [
        (DE, "eu"),
        (JP, "eu"),
        (US, "us"),
        (HAND_PLACED, "us"),
        (NOWHERE, "us"),
    ] {
        let mut seen: Vec<String> = (0..8).map(|_| served_by(p.addr(), from, "/")).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(
            seen,
            [format!("{region}1"), format!("{region}2")],
            "{from} is served by both backends of {region}, and only by them"
        );
    }
    // The origin learns where the client is; a client's own claim is replaced.
    let echo = get_from(
        DE,
        p.addr(),
        "/",
        &[("CF-IPCountry", "FR"), ("X-Client-Region", "us")],
    )
    .echo();
    assert_eq!(echo.headers_named("cf-ipcountry"), ["DE"]);
    assert_eq!(echo.headers_named("x-client-region"), ["eu"]);
    let echo = get_from(NOWHERE, p.addr(), "/", &[]).echo();
    assert_eq!(echo.header("cf-ipcountry"), Some("XX"), "unknown country");
    assert_eq!(
        echo.header("x-client-region"),
        Some("us"),
        "the default region"
    );
    // The access log names the client's country and region and the region served.
    wait_until(Duration::from_secs(5), "access log lines", || {
        std::fs::read_to_string(p.dir().join("access.log")).is_ok_and(|l| {
            l.contains("\"country\":\"DE\",\"client_region\":\"eu\",\"region\":\"eu\"")
        })
    });
    let m = p.metrics();
    assert!(
        metric(&m, "parapet_geo_lookups_total", "source=\"database\"").unwrap_or(0.0) >= 24.0,
        "{m}"
    );
    assert!(metric(&m, "parapet_geo_lookups_total", "source=\"network\"").unwrap_or(0.0) >= 8.0);
    assert!(metric(&m, "parapet_geo_lookups_total", "source=\"unknown\"").unwrap_or(0.0) >= 8.0);
    assert!(
        metric(
            &m,
            "parapet_upstream_region_requests_total",
            "choice=\"local\",region=\"eu\",upstream=\"app\""
        )
        .unwrap_or(0.0)
            >= 16.0,
        "{m}"
    );
}

#[test]
fn routes_match_on_the_clients_country_and_continent() {
    let dir = temp_dir("geo-routes");
    let db = dir.join("city.mmdb");
    city_db(&db, true);
    let (eu, us, jp) = (
        Origin::start("eu"),
        Origin::start("us"),
        Origin::start("jp"),
    );
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &base_config(
            &ports,
            &format!(
                "geo:\n  database: \"{}\"\nupstreams:\n  eu: {{backends: [{{address: \"{}\"}}]}}\n  us: {{backends: [{{address: \"{}\"}}]}}\n  jp: {{backends: [{{address: \"{}\"}}]}}\nroutes:\n  - {{match: {{country: [jp]}}, upstream: jp}}\n  - {{match: {{continent: [EU]}}, upstream: eu}}\n  - {{upstream: us}}\n",
                db.display(),
                eu.address(),
                us.address(),
                jp.address()
            ),
        ),
    );
    assert_eq!(served_by(p.addr(), JP, "/"), "jp");
    assert_eq!(served_by(p.addr(), DE, "/"), "eu");
    assert_eq!(served_by(p.addr(), US, "/"), "us");
    assert_eq!(served_by(p.addr(), NOWHERE, "/"), "us");
}

#[test]
fn a_region_failing_its_health_checks_hands_over_and_takes_back_its_traffic() {
    let world = two_regions(
        "geo-failover",
        2,
        "    selection: consistent_hash\n    hash_key: path\n",
    );
    let (p, eu) = (&world.p, &world.eu);
    // Each key has one owner in the client's region.
    let keys: Vec<String> = (0..12).map(|i| format!("/k{i}")).collect();
    let owners = |from| -> HashMap<String, String> {
        keys.iter()
            .map(|k| (k.clone(), served_by(p.addr(), from, k)))
            .collect()
    };
    let home = owners(DE);
    assert!(home.values().all(|o| o.starts_with("eu")), "{home:?}");
    assert_eq!(owners(DE), home, "keys are sticky");

    for o in eu {
        o.set_healthy(false);
    }
    wait_until(Duration::from_secs(10), "eu clients served from us", || {
        served_by(p.addr(), DE, "/k0").starts_with("us")
    });
    // Every key moved to the same owner a us client has for it.
    let moved = owners(DE);
    assert_eq!(
        moved,
        owners(US),
        "a key's next owner is its owner in the next region"
    );
    assert!(moved.values().all(|o| o.starts_with("us")), "{moved:?}");
    assert!(
        metric(
            &p.metrics(),
            "parapet_upstream_region_requests_total",
            "choice=\"spill\",region=\"us\",upstream=\"app\""
        )
        .unwrap_or(0.0)
            >= 12.0
    );

    for o in eu {
        o.set_healthy(true);
    }
    wait_until(Duration::from_secs(10), "eu clients back in eu", || {
        owners(DE) == home
    });
}

#[test]
fn spill_over_follows_the_overprovisioning_model_and_panic_uses_everything() {
    let world = two_regions("geo-spill", 5, "");
    let (p, eu, us) = (&world.p, &world.eu, &world.us);
    let edge = p.addr();
    let share_in_eu = |n: usize| -> f64 {
        let in_eu = (0..n)
            .filter(|_| served_by(edge, DE, "/").starts_with("eu"))
            .count();
        in_eu as f64 / n as f64
    };
    assert_eq!(share_in_eu(40), 1.0);

    // 4 of 5 healthy: 80 % × 1.4 ≥ 100 %, the region keeps everything.
    let down = |origins: &[&Origin]| {
        wait_until(
            Duration::from_secs(10),
            "health checks see backends down",
            || {
                origins
                    .iter()
                    .all(|o| p.backend_healthy("app", &o.address(), &o.id()[..2]) == Some(0.0))
            },
        )
    };
    eu[0].set_healthy(false);
    down(&[&eu[0]]);
    assert_eq!(share_in_eu(40), 1.0);

    // 2 of 5 healthy: 40 % × 1.4 = 56 % stays, 44 % spills to us.
    eu[1].set_healthy(false);
    eu[2].set_healthy(false);
    down(&[&eu[1], &eu[2]]);
    let share = share_in_eu(400);
    assert!(
        (0.46..=0.66).contains(&share),
        "eu kept {share}, expected about 0.56"
    );

    // Panic: 1 of 5 in eu and none in us healthy: 28 % < 50 %. Health is
    // ignored and the client's region serves, unhealthy backends included.
    eu[3].set_healthy(false);
    for o in us {
        o.set_healthy(false);
    }
    down(&eu[..4].iter().chain(us).collect::<Vec<_>>());
    for o in eu {
        o.reset_counters();
    }
    for _ in 0..50 {
        assert!(served_by(edge, DE, "/").starts_with("eu"));
    }
    let unhealthy_hits: usize = eu[..4].iter().map(|o| o.hits()).sum();
    assert!(
        unhealthy_hits > 0,
        "panic mode uses backends that fail their health check"
    );
    assert!(
        metric(
            &p.metrics(),
            "parapet_upstream_region_requests_total",
            "choice=\"panic\",region=\"eu\",upstream=\"app\""
        )
        .unwrap_or(0.0)
            >= 50.0
    );
}

#[test]
fn a_reload_reads_the_database_again_and_a_damaged_one_is_refused() {
    let dir = temp_dir("geo-reload");
    let db = dir.join("city.mmdb");
    city_db(&db, true);
    let (eu1, us1) = (Origin::start("eu1"), Origin::start("us1"));
    let ports = Ports::new();
    let yaml = config(&ports, &db, "", &[(&eu1, "eu"), (&us1, "us")]);
    let mut p = Parapet::supervise_with(&ports, &yaml);
    assert_eq!(served_by(p.addr(), DE, "/"), "eu1");

    // A damaged file: the reload is refused, the old generation serves on.
    let good = std::fs::read(&db).unwrap();
    let mut bad = good.clone();
    let tree = bad.len() / 3;
    for b in &mut bad[..tree] {
        *b = 0xff;
    }
    std::fs::write(dir.join("bad.mmdb"), &bad).unwrap();
    std::fs::rename(dir.join("bad.mmdb"), &db).unwrap();
    p.signal(SIGHUP);
    wait_until(Duration::from_secs(15), "reload refused", || {
        p.logs().contains("reload refused")
    });
    assert!(p.logs().contains("geo.database"), "{}", p.logs());
    assert_eq!(served_by(p.addr(), DE, "/"), "eu1");

    // A new good file (127.0.0.2 moved to the US) takes effect on reload.
    city_db(&dir.join("new.mmdb"), false);
    std::fs::rename(dir.join("new.mmdb"), &db).unwrap();
    p.signal(SIGHUP);
    wait_until(Duration::from_secs(20), "127.0.0.2 served from us", || {
        served_by(p.addr(), DE, "/") == "us1"
    });
}

#[test]
fn bad_geo_config_is_reported_with_paths() {
    let dir = temp_dir("geo-bad");
    std::fs::write(dir.join("garbage.mmdb"), b"this is not a maxmind database").unwrap();
    let origin = "127.0.0.1:9";
    let yaml = |geo: &str, pool: &str| {
        format!(
            "listeners: [{{address: \"127.0.0.1:0\"}}]\n{geo}upstreams:\n  app:\n{pool}    backends:\n      - {{address: \"{origin}\", region: eu}}\nroutes: [{{upstream: app}}]\n"
        )
    };
    for (geo, pool, expected) in [
        (
            format!("geo: {{database: \"{}\"}}\n", dir.join("missing.mmdb").display()),
            "",
            "geo.database: cannot open",
        ),
        (
            format!("geo: {{database: \"{}\"}}\n", dir.join("garbage.mmdb").display()),
            "",
            "geo.database:",
        ),
        (
            "geo:\n  regions: {us: {latitude: 1, longitude: 2}}\n".to_string(),
            "",
            "upstreams.app.backends[0].region: unknown region \"eu\" (geo.regions has: us)",
        ),
        (
            "server: {region: mars}\n".to_string(),
            "",
            "server.region: unknown region \"mars\" (the pools' backends have: eu)",
        ),
        (
            "geo:\n  networks:\n    - {network: 10.0.0.0/8, country: DE}\n    - {network: 10.1.0.0/16, country: FR}\n".to_string(),
            "",
            "geo.networks[1].network: 10.1.0.0/16 overlaps 10.0.0.0/8",
        ),
        (
            "geo:\n  networks:\n    - {network: 10.0.0.0/33, country: DE}\n".to_string(),
            "",
            "geo.networks[0].network: invalid network",
        ),
        (
            "server: {region: eu}\n".to_string(),
            "    locality: {overprovisioning_factor: 0.5}\n",
            "upstreams.app.locality.overprovisioning_factor: must be 1..=100",
        ),
        (
            String::new(),
            "    selection: consistent_hash\n    hash_balance_factor: 1.0\n",
            "upstreams.app.hash_balance_factor: must be more than 1",
        ),
    ] {
        let (ok, _, stderr) = check_config(&yaml(&geo, pool));
        assert!(!ok, "accepted:\n{geo}{pool}");
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}
