//! The disk tier: objects survive a restart and a graceful upgrade (the new
//! generation rebuilds the index at start-up and starts warm); an unusable
//! disk degrades to memory-only caching.

mod support;

use std::time::Duration;
use support::*;

const DEADLINE: Duration = Duration::from_secs(15);

fn config(ports: &Ports, origin: &Origin, disk: &str, generation: u32) -> String {
    base_config(
        ports,
        &format!(
            "upstreams:\n  o:\n    backends: [{{address: \"{}\"}}]\nroutes:\n  - upstream: o\n    cache: {{enabled: true}}\n    response_headers: {{set: {{X-Generation: \"{generation}\"}}}}\ncache:\n  memory: {{max_size: 8MiB}}\n  disk: {{path: \"{disk}\", max_size: 64MiB}}\n",
            origin.address()
        ),
    )
}

fn gauge(p: &Parapet, name: &str) -> f64 {
    p.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

fn get_object(p: &Parapet, i: usize) -> Response {
    p.get(
        &format!("/obj/{i}"),
        &[("X-Respond", "Cache-Control: max-age=600")],
    )
}

#[test]
fn the_disk_tier_survives_a_restart() {
    let o = Origin::start("o");
    let disk = temp_dir("parapet-disk-restart");
    let disk = disk.to_str().unwrap();
    let bodies: Vec<Vec<u8>> = {
        let ports = Ports::new();
        let p = Parapet::start_with(&ports, &config(&ports, &o, disk, 1));
        let bodies = (0..20).map(|i| get_object(&p, i).body).collect();
        wait_until(DEADLINE, "20 objects written to disk", || {
            gauge(&p, "parapet_cache_stored_objects{tier=\"disk\"}") == 20.0
        });
        bodies
    };
    assert_eq!(o.hits(), 20);
    let ports = Ports::new();
    let p = Parapet::start_with(&ports, &config(&ports, &o, disk, 1));
    assert_eq!(
        gauge(&p, "parapet_cache_stored_objects{tier=\"disk\"}"),
        20.0,
        "index rebuilt at start-up"
    );
    for (i, body) in bodies.iter().enumerate() {
        let r = get_object(&p, i);
        assert!(
            r.header("cache-status").unwrap_or("").contains("hit"),
            "object {i}: {:?}",
            r.header("cache-status")
        );
        assert_eq!(&r.body, body);
    }
    assert_eq!(o.hits(), 20, "no origin fetch after the restart");
    let _ = std::fs::remove_dir_all(disk);
}

#[test]
fn a_graceful_upgrade_starts_warm() {
    let o = Origin::start("o");
    let disk = temp_dir("parapet-disk-upgrade");
    let disk = disk.to_str().unwrap();
    let ports = Ports::new();
    let mut p = Parapet::supervise_with(&ports, &config(&ports, &o, disk, 1));
    let n = 60;
    for i in 0..n {
        assert_eq!(get_object(&p, i).status, 200);
    }
    wait_until(DEADLINE, "objects written to disk", || {
        gauge(&p, "parapet_cache_stored_objects{tier=\"disk\"}") == n as f64
    });
    p.write_config(&config(&ports, &o, disk, 2));
    p.signal(SIGHUP);
    let gen = |p: &Parapet| get_object(p, 0).header("x-generation").map(str::to_string);
    wait_until(Duration::from_secs(30), "only generation 2 answers", || {
        (0..10).all(|_| gen(&p).as_deref() == Some("2"))
    });
    let before = o.hits();
    let hits = (0..n)
        .filter(|i| {
            get_object(&p, *i)
                .header("cache-status")
                .unwrap_or("")
                .contains("hit")
        })
        .count();
    println!(
        "after the handoff: {hits}/{n} hits, {} origin fetches",
        o.hits() - before
    );
    assert!(
        hits * 100 >= n * 95,
        "hit ratio after the upgrade: {hits}/{n}"
    );
    let _ = std::fs::remove_dir_all(disk);
}

#[test]
fn an_unusable_disk_degrades_to_memory_caching() {
    let o = Origin::start("o");
    let ports = Ports::new();
    let p = Parapet::start_with(
        &ports,
        &config(&ports, &o, "/proc/parapet-cannot-create-this", 1),
    );
    for _ in 0..3 {
        assert_eq!(get_object(&p, 1).status, 200);
    }
    assert_eq!(o.hits(), 1, "memory caching still works");
    assert!(p
        .metrics()
        .contains("parapet_cache_disk_errors_total{op=\"open\"} 1"));
}

/// An unsafe method invalidates every tier (RFC 9111 §4.4): with a disk tier
/// the next GET is a miss that refetches, never the old disk copy promoted
/// back into memory.
#[test]
fn a_successful_post_invalidates_the_disk_copy_too() {
    let o = Origin::start("o");
    let disk = temp_dir("parapet-disk-invalidate");
    let disk = disk.to_str().unwrap();
    let ports = Ports::new();
    let p = Parapet::start_with(&ports, &config(&ports, &o, disk, 1));
    let cached = |p: &Parapet| {
        let r = p.get("/a", &[("X-Respond", "Cache-Control: max-age=600")]);
        assert_eq!(r.status, 200);
        r.header("cache-status").unwrap_or("").to_string()
    };
    assert!(cached(&p).contains("stored"));
    wait_until(DEADLINE, "the object written to disk", || {
        gauge(&p, "parapet_cache_stored_objects{tier=\"disk\"}") == 1.0
    });
    assert!(cached(&p).contains("hit"));
    let post = request(p.addr(), "POST", "/a", &[], b"x").unwrap();
    assert_eq!(post.status, 200);
    let after = cached(&p);
    assert!(
        !after.contains("hit"),
        "the invalidated object was served: {after}"
    );
    assert!(cached(&p).contains("hit"), "the refetched copy is stored");
    assert_eq!(o.hits(), 3, "GET, POST, and one refetch after the POST");
    let _ = std::fs::remove_dir_all(disk);
}
