//! `parapet demo`, what a newcomer runs first: balancing, the origin hidden,
//! a cache miss then a hit on the cached route, a purge, and the metrics.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

#[test]
fn the_demo_balances_caches_purges_and_reports() {
    let (edge, admin) = (free_addr(), free_addr());
    let origins: Vec<String> = (0..3).map(|_| free_addr().to_string()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parapet"))
        .args([
            "demo",
            "--edge",
            &edge.to_string(),
            "--admin",
            &admin.to_string(),
        ])
        .args(["--origins", &origins.join(",")])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn parapet demo");
    let result = std::panic::catch_unwind(|| {
        wait_until(Duration::from_secs(20), "the demo is ready", || {
            request(admin, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
        });
        wait_until(Duration::from_secs(10), "every origin healthy", || {
            (0..8).all(|_| request(edge, "GET", "/hello", &[], b"").is_ok_and(|r| r.status == 200))
        });

        // Round robin, weights 2:1:1, and no origin identity.
        let mut counts = [0; 3];
        for _ in 0..40 {
            let r = get(edge, "/hello", &[]);
            assert!(r.header("server").is_none() && r.header("x-powered-by").is_none());
            let id: usize = r.header("x-origin").unwrap().parse().unwrap();
            counts[id - 1] += 1;
        }
        assert_eq!(counts, [20, 10, 10], "weights 2:1:1");

        // The cached route: a miss that is stored, then a hit.
        // With the Host header curl would send, which the stored URL names.
        let host = edge.to_string();
        let status = |path: &str| {
            get(edge, path, &[("Host", &host)])
                .header("cache-status")
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(status("/static/logo.txt"), "parapet; fwd=miss; stored");
        assert!(status("/static/logo.txt").starts_with("parapet; hit"));
        assert!(
            status("/hello").is_empty(),
            "the plain route does not cache"
        );

        // A purge by prefix, as the demo prints it, empties it again.
        let purge = request(
            admin,
            "POST",
            &format!("/purge?prefix=http://{edge}/static/"),
            &[("Authorization", &format!("Bearer {}", "demo-admin-token"))],
            b"",
        )
        .unwrap();
        assert_eq!(purge.status, 200, "{}", purge.text());
        assert!(purge.text().contains("\"purged\": 1"), "{}", purge.text());
        assert_eq!(status("/static/logo.txt"), "parapet; fwd=miss; stored");

        let metrics = get(admin, "/metrics", &[]).text();
        assert!(
            metrics.contains("parapet_cache_lookups_total{result=\"hit\"} 1"),
            "{metrics}"
        );
    });
    // SIGINT, as Ctrl-C would.
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let exited = (0..250).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert!(exited, "Ctrl-C ends the demo");
}
