//! Several Parapet processes as one cache tier (`fleet:`), on loopback with
//! a counting origin: each object is fetched from the origin once for the
//! whole fleet and stored on one node; a dead node costs no client an
//! error; hops are signed and loop-limited; a purge reaches every node.

mod support;

use std::time::Duration;
use support::*;

const SECRET: &str = "fleet-secret-for-tests-0123";
const DEADLINE: Duration = Duration::from_secs(15);

/// The `fleet:` and routes of node `me` among `all` (name, ports).
fn node_config(
    me: usize,
    all: &[Ports],
    origin: &Origin,
    copy: &str,
    extra_peer: Option<&str>,
) -> String {
    let mut peers: String = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "    - {{name: edge{i}, address: \"127.0.0.1:{}\"}}\n",
                p.proxy
            )
        })
        .collect();
    if let Some(extra) = extra_peer {
        peers.push_str(extra);
    }
    base_config(
        &all[me],
        &format!(
            "fleet:\n  node: edge{me}\n  secret: \"{SECRET}\"\n  health: {{interval: 100ms, timeout: 500ms}}\n  peers:\n{peers}\
             upstreams:\n  o:\n    backends: [{{address: \"{}\"}}]\n\
             routes:\n  - upstream: o\n    cache: {{enabled: true, fleet: shard, fleet_copy: {copy}}}\n\
             admin:\n  address: \"127.0.0.1:{}\"\n  token: \"admin-token-0123\"\n",
            origin.address(),
            all[me].admin
        ),
    )
    // base_config already has an admin section; the token is added to it.
    .replacen(
        &format!("admin:\n  address: \"127.0.0.1:{}\"\n", all[me].admin),
        "",
        1,
    )
}

fn start_fleet(n: usize, origin: &Origin, copy: &str) -> Vec<Parapet> {
    let ports: Vec<Ports> = (0..n).map(|_| Ports::new()).collect();
    let nodes: Vec<Parapet> = (0..n)
        .map(|i| Parapet::start_with(&ports[i], &node_config(i, &ports, origin, copy, None)))
        .collect();
    for node in &nodes {
        wait_until(DEADLINE, "every node sees the whole ring", || {
            node.metrics()
                .contains(&format!("parapet_fleet_ring_members {n}\n"))
        });
    }
    nodes
}

fn object(p: &Parapet, i: usize) -> Response {
    p.get(
        &format!("/obj/{i}"),
        &[("X-Respond", "Cache-Control: max-age=600")],
    )
}

fn stored(p: &Parapet) -> f64 {
    metric(
        &p.metrics(),
        "parapet_cache_stored_objects",
        "tier=\"memory\"",
    )
    .unwrap_or(-1.0)
}

#[test]
fn each_object_is_fetched_once_per_fleet_and_stored_once() {
    let origin = Origin::start("o");
    let nodes = start_fleet(3, &origin, "owner_only");
    let n = 200;
    // Every object through every node, in a scrambled order.
    let mut order: Vec<(usize, usize)> = (0..n).flat_map(|i| (0..3).map(move |k| (i, k))).collect();
    let mut x = 0x2545f491u64;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut served_by_peer = 0;
    for (i, k) in order {
        let r = object(&nodes[k], i);
        assert_eq!(r.status, 200, "object {i} via edge{k}: {}", r.text());
        assert_eq!(r.echo().path, format!("/obj/{i}"));
        let cs = r.header("cache-status").unwrap_or("").to_string();
        assert!(
            cs.starts_with("parapet-edge"),
            "names the node that served it: {cs:?}"
        );
        if !cs.starts_with(&format!("parapet-edge{k};")) {
            served_by_peer += 1;
        }
    }
    assert_eq!(
        origin.hits(),
        n,
        "each object fetched from the origin once for the fleet"
    );
    let per_node: Vec<f64> = nodes.iter().map(stored).collect();
    assert_eq!(
        per_node.iter().sum::<f64>(),
        n as f64,
        "stored once in the fleet: {per_node:?}"
    );
    for s in &per_node {
        assert!(*s > 30.0, "every node owns a share: {per_node:?}");
    }
    assert!(
        served_by_peer > n,
        "most requests were served by their owner: {served_by_peer}"
    );
    let forwards: f64 = nodes
        .iter()
        .map(|p| {
            metric(
                &p.metrics(),
                "parapet_fleet_forwards_total",
                "result=\"ok\"",
            )
            .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(forwards as usize, served_by_peer);
}

#[test]
fn also_local_keeps_a_copy_where_the_client_asked() {
    let origin = Origin::start("o");
    let nodes = start_fleet(2, &origin, "also_local");
    for i in 0..40 {
        for node in &nodes {
            assert_eq!(object(node, i).status, 200);
        }
    }
    assert_eq!(origin.hits(), 40, "still one origin fetch per object");
    // Asked through both nodes: both keep a copy of every object.
    for node in &nodes {
        assert_eq!(stored(node), 40.0);
        for i in 0..40 {
            let cs = object(node, i)
                .header("cache-status")
                .unwrap_or("")
                .to_string();
            assert!(cs.contains("hit"), "{cs}");
        }
    }
}

#[test]
fn a_dead_node_costs_no_client_an_error() {
    let origin = Origin::start("o");
    let mut nodes = start_fleet(3, &origin, "owner_only");
    let n = 90;
    for i in 0..n {
        assert_eq!(object(&nodes[0], i).status, 200);
    }
    assert_eq!(origin.hits(), n);
    let dead_share = stored(&nodes[2]) as usize;
    // Node 2 dies without warning; the others still think it is up until a
    // hop to it fails or a probe notices.
    nodes[2].signal(SIGKILL);
    assert!(nodes[2].wait_exit(DEADLINE).is_some());
    for round in 0..2 {
        for i in 0..n {
            for node in &nodes[..2] {
                let r = object(node, i);
                assert_eq!(r.status, 200, "round {round}, object {i}: {}", r.text());
            }
        }
    }
    let refetched = origin.hits() - n;
    // A request whose hop failed before its node marked the peer down went
    // to the origin uncached (at most one per surviving node here, as the
    // first failed hop takes the peer out of the ring at once).
    let fallbacks: f64 = nodes[..2]
        .iter()
        .map(|p| metric(&p.metrics(), "parapet_fleet_origin_fallbacks_total", "").unwrap_or(0.0))
        .sum();
    assert!(
        fallbacks <= 2.0,
        "one failed hop per node at most: {fallbacks}"
    );
    assert!(
        refetched <= dead_share + fallbacks as usize,
        "only the dead node's share is refetched: {refetched} of its {dead_share} (+{fallbacks} fallbacks)"
    );
    for node in &nodes[..2] {
        wait_until(DEADLINE, "the ring drops the dead node", || {
            node.metrics().contains("parapet_fleet_ring_members 2")
        });
    }
    // The admin API and the status page say so.
    let auth = [("Authorization", "Bearer admin-token-0123")];
    let api: serde_json::Value =
        serde_json::from_str(&get(nodes[0].admin_addr(), "/api/fleet", &auth).text()).unwrap();
    assert_eq!(api["node"], "edge0");
    assert_eq!(api["ring_size"], 2);
    let edge2 = api["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "edge2")
        .cloned()
        .unwrap();
    assert_eq!(edge2["up"], false, "{api}");
    let page = get(nodes[0].admin_addr(), "/", &[]).text();
    assert!(
        page.contains("id=\"fleet\"") && page.contains("down"),
        "{page}"
    );
}

#[test]
fn hops_are_signed_and_loop_limited() {
    let origin = Origin::start("o");
    let nodes = start_fleet(2, &origin, "owner_only");
    let p = &nodes[0];
    // A forged signature is refused and never reaches the origin.
    let r = p.get("/obj/1", &[("Parapet-Fleet", "node=edge1 ts=1 mac=00")]);
    assert_eq!(r.status, 403);
    let r = p.get("/.well-known/parapet/fleet", &[]);
    assert_eq!(r.status, 403, "the control plane is for signed peers only");
    assert_eq!(origin.hits(), 0);
    // More CDN-Loop hops of this fleet than max_hops (2): 508.
    let r = p.get(
        "/obj/2",
        &[("CDN-Loop", "parapet, other-cdn, parapet; x=1, parapet")],
    );
    assert_eq!(r.status, 508);
    // Within the limit, and other CDNs' tokens, pass; the origin sees the hop.
    let r = p.get("/obj/3", &[("CDN-Loop", "other-cdn, parapet")]);
    assert_eq!(r.status, 200);
    assert!(
        r.echo().header("parapet-fleet").is_none(),
        "the signature never reaches an origin"
    );
    assert!(
        metric(
            &p.metrics(),
            "parapet_fleet_refused_total",
            "reason=\"bad_signature\""
        ) >= Some(1.0)
    );
}

#[test]
fn nodes_that_disagree_on_the_owner_serve_rather_than_loop() {
    // Node 1 knows a third node that node 0 does not: for some keys each
    // thinks the other is the owner. A signed hop is served where it lands.
    let origin = Origin::start("o");
    let ports: Vec<Ports> = (0..2).map(|_| Ports::new()).collect();
    let ghost = format!("    - {{name: ghost, address: \"{}\"}}\n", free_addr());
    let a = Parapet::start_with(
        &ports[0],
        &node_config(0, &ports, &origin, "owner_only", None),
    );
    let b = Parapet::start_with(
        &ports[1],
        &node_config(1, &ports, &origin, "owner_only", Some(&ghost)),
    );
    for i in 0..60 {
        for p in [&a, &b] {
            let r = object(p, i);
            assert_eq!(r.status, 200, "object {i}: {}", r.text());
        }
    }
    assert!(origin.hits() >= 60);
}

#[test]
fn a_purge_reaches_every_node() {
    let origin = Origin::start("o");
    let nodes = start_fleet(3, &origin, "also_local");
    for node in &nodes {
        assert_eq!(object(node, 7).status, 200);
    }
    assert_eq!(origin.hits(), 1);
    let admin = nodes[1].admin_addr();
    let r = request(
        admin,
        "POST",
        "/purge?prefix=http://localhost/obj/",
        &[("Authorization", "Bearer admin-token-0123")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    let nodes_json = v["nodes"].as_array().unwrap();
    assert_eq!(nodes_json.len(), 3, "{v}");
    assert!(nodes_json.iter().all(|n| n["ok"] == true), "{v}");
    for node in &nodes {
        assert_eq!(stored(node), 0.0, "purged everywhere");
    }
    assert_eq!(object(&nodes[0], 7).status, 200);
    assert_eq!(origin.hits(), 2, "refetched once after the purge");
}

/// A shield node in front of the origin: the edges' misses go to it, so the
/// origin sees one fetch for several edges; when the shield is down, the
/// edges go to the origin themselves, or answer 502 if told to protect it.
#[test]
fn a_parent_shield_takes_the_misses_and_the_origin_is_the_fallback() {
    let origin = Origin::start("o");
    let shield_ports = Ports::new();
    let mut shield = Parapet::start_with(
        &shield_ports,
        &one_pool_config(
            &shield_ports,
            &origin.address(),
            "routes:\n  - upstream: o\n    cache: {enabled: true}\n",
        ),
    );
    let edge = |fallback: &str| {
        let ports = Ports::new();
        Parapet::start_with(
            &ports,
            &base_config(
                &ports,
                &format!(
                    "upstreams:\n  o:\n    backends: [{{address: \"{}\"}}]\n  shield:\n    selection: consistent_hash\n    backends: [{{address: \"127.0.0.1:{}\"}}]\n\
                     routes:\n  - upstream: o\n    cache: {{enabled: true, parent: shield, parent_fallback: {fallback}}}\n",
                    origin.address(),
                    shield_ports.proxy
                ),
            ),
        )
    };
    let (a, b, strict) = (edge("origin"), edge("origin"), edge("error"));
    for p in [&a, &b] {
        let r = object(p, 1);
        assert_eq!(r.status, 200);
        let cs = r.header("cache-status").unwrap_or("").to_string();
        assert!(
            cs.contains(", parapet; fwd=miss"),
            "the shield's member first: {cs}"
        );
    }
    assert_eq!(
        origin.hits(),
        1,
        "two edges, one origin fetch through the shield"
    );
    shield.signal(SIGKILL);
    assert!(shield.wait_exit(DEADLINE).is_some());
    let r = object(&a, 2);
    assert_eq!(r.status, 200, "the origin is the fallback");
    assert_eq!(origin.hits(), 2);
    let r = object(&strict, 3);
    assert_eq!(r.status, 502, "parent_fallback: error protects the origin");
    assert_eq!(origin.hits(), 2);
}

/// A node that was down during a purge catches up when it comes back, before
/// its disk tier serves anything: the purged object is never served again.
#[test]
fn a_node_down_during_a_purge_does_not_serve_the_purged_object() {
    let origin = Origin::start("o");
    let ports: Vec<Ports> = (0..3).map(|_| Ports::new()).collect();
    let disks: Vec<std::path::PathBuf> = (0..3)
        .map(|i| temp_dir(&format!("parapet-fleet-disk{i}")))
        .collect();
    let config = |i: usize| {
        format!(
            "{}cache:\n  disk: {{path: \"{}\", max_size: 64MiB}}\n",
            node_config(i, &ports, &origin, "also_local", None),
            disks[i].display()
        )
    };
    let mut nodes: Vec<Parapet> = (0..3)
        .map(|i| Parapet::start_with(&ports[i], &config(i)))
        .collect();
    let versioned = |p: &Parapet, v: &str| {
        p.get(
            "/doc",
            &[
                ("X-Respond", "Cache-Control: max-age=600"),
                ("X-Version", v),
            ],
        )
    };
    for p in &nodes {
        assert_eq!(versioned(p, "1").status, 200);
    }
    let on_disk = |p: &Parapet| {
        metric(
            &p.metrics(),
            "parapet_cache_stored_objects",
            "tier=\"disk\"",
        )
    };
    wait_until(DEADLINE, "node 2 keeps the object on disk", || {
        on_disk(&nodes[2]) == Some(1.0)
    });
    nodes[2].signal(SIGTERM);
    assert!(nodes[2].wait_exit(DEADLINE).is_some());
    for p in &nodes[..2] {
        wait_until(DEADLINE, "node 2 left the ring", || {
            p.metrics().contains("parapet_fleet_ring_members 2\n")
        });
    }
    let r = request(
        nodes[0].admin_addr(),
        "POST",
        "/purge?url=http://localhost/doc",
        &[("Authorization", "Bearer admin-token-0123")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"nodes\""), "{}", r.text());
    // Node 2 comes back with its disk, which still holds the object.
    nodes[2] = Parapet::start_with(&ports[2], &config(2));
    let r = versioned(&nodes[2], "2");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("h:x-version=2"),
        "the purged copy was served: {}\n{:?}",
        r.text(),
        r.header("cache-status")
    );
    for d in disks {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Membership from DNS: every A record of the name is a node (a Compose
/// service, a headless Service); each node recognises itself by its probe's
/// answer; a node whose record goes away leaves the ring.
#[test]
fn members_come_from_dns() {
    use support::dns::{ip, Dns};
    let dns = Dns::start();
    dns.set("edges.test.", &[ip(1), ip(2)]);
    let origin = Origin::start("o");
    let port = free_port();
    let node = |i: u8| {
        let admin = free_addr();
        Parapet::start(&format!(
            "server:\n  threads: 2\n  pid_file: \"{{dir}}/p.pid\"\n  upgrade_sock: \"{{dir}}/u.sock\"\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\n\
             listeners:\n  - address: \"127.0.0.{i}:{port}\"\nadmin:\n  address: \"{admin}\"\n\
             fleet:\n  node: dns{i}\n  secret: \"{SECRET}\"\n  health: {{interval: 100ms}}\n  discover: {{dns: \"edges.test:{port}\", interval: 200ms, resolver: \"{}\"}}\n\
             upstreams:\n  o:\n    backends: [{{address: \"{}\"}}]\n\
             routes:\n  - upstream: o\n    cache: {{enabled: true, fleet: shard}}\n",
            dns.addr,
            origin.address()
        ))
    };
    let (a, b) = (node(1), node(2));
    for p in [&a, &b] {
        wait_until(DEADLINE, "both nodes on the ring", || {
            p.metrics().contains("parapet_fleet_ring_members 2\n")
        });
    }
    for i in 0..60 {
        for p in [&a, &b] {
            assert_eq!(object(p, i).status, 200);
        }
    }
    assert_eq!(origin.hits(), 60, "one ring from DNS: one fetch per object");
    dns.set("edges.test.", &[ip(1)]);
    wait_until(
        DEADLINE,
        "the node whose record went away left the ring",
        || a.metrics().contains("parapet_fleet_ring_members 1\n"),
    );
}

/// A peer that accepts connections and never answers costs the requests it
/// owns one read timeout, then the next owner or the origin serves them; it
/// leaves the ring (passively at the first timeout, and by its probes).
#[test]
fn a_blackholed_peer_costs_a_timeout_not_an_error() {
    let hole = support::raw_origin::RawOrigin::start(support::raw_origin::Behaviour::Blackhole);
    let hole_addr = hole.addr;
    let origin = Origin::start("o");
    let ports = vec![Ports::new()];
    let ghost = format!("    - {{name: hole, address: \"{hole_addr}\"}}\n");
    let yaml = node_config(0, &ports, &origin, "owner_only", Some(&ghost)).replace(
        "    backends: [",
        "    timeouts: {read: 300ms}\n    backends: [",
    );
    let p = Parapet::start_with(&ports[0], &yaml);
    for i in 0..30 {
        let r = object(&p, i);
        assert_eq!(r.status, 200, "object {i}: {}", r.text());
    }
    assert_eq!(origin.hits(), 30);
    wait_until(DEADLINE, "the blackhole left the ring", || {
        p.metrics().contains("parapet_fleet_ring_members 1\n")
    });
}

#[test]
fn fleet_config_errors_name_their_path() {
    let origin = Origin::start("o");
    let ports = vec![Ports::new(), Ports::new()];
    let yaml = node_config(0, &ports, &origin, "owner_only", None);
    for (bad, path) in [
        (
            yaml.replace("node: edge0", "node: nobody"),
            "fleet.peers: no entry named \"nobody\"",
        ),
        (yaml.replace(SECRET, "short"), "fleet.secret"),
        (
            yaml.replace("fleet_copy: owner_only", "fleet_copy: twice"),
            "routes[0].cache.fleet_copy",
        ),
        (
            yaml.replace("fleet: shard", "fleet: mirror"),
            "routes[0].cache.fleet",
        ),
        (
            yaml.replace("fleet: shard", "fleet: shard, parent: nowhere"),
            "routes[0].cache.parent: no upstream named \"nowhere\"",
        ),
    ] {
        let (ok, _, err) = check_config(&bad);
        assert!(!ok && err.contains(path), "{path}: {err}");
    }
    let no_fleet = yaml[..yaml.find("fleet:\n").unwrap()].to_string()
        + &yaml[yaml.find("upstreams:").unwrap()..];
    let (ok, _, err) = check_config(&no_fleet);
    assert!(
        !ok && err.contains("routes[0].cache.fleet: shard needs a fleet: section"),
        "{err}"
    );
}
