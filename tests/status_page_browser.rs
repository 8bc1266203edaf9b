//! The status page in a real browser: headless Chromium (Debian's
//! `chromium`, installed by .ci/run) loads it from the admin listener,
//! renders it (the DOM it built is checked) and saves a screenshot as a test
//! artifact: `target/tmp/status-page.png`.

mod support;

use std::process::Command;
use support::*;

fn run_browser(chromium: &str, args: &[String]) -> std::process::Output {
    let profile = temp_dir("chromium-profile");
    Command::new("timeout")
        .arg("90")
        .arg(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("run chromium")
}

#[test]
fn status_page_renders_in_a_real_browser() {
    let Some(chromium) = external_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "chromium",
    ) else {
        return;
    };
    let a = Origin::start("a");
    let b = Origin::start("b");
    let ports = Ports::new();
    let yaml = base_config(
        &ports,
        &format!(
            "upstreams:\n  web:\n    backends:\n      - {{address: \"{}\", region: eu-west}}\n      - {{address: \"{}\", region: eu-west, weight: 2}}\n\
             \x20 api:\n    backends: [{{address: \"127.0.0.1:9\"}}]\n    retries: 0\n\
             routes:\n  - {{name: api, match: {{path_prefix: /api}}, upstream: api}}\n  - {{name: site, upstream: web, cache: {{enabled: true}}, compression: true}}\n\
             cache:\n  memory: {{max_size: 64MiB}}\n",
            a.address(),
            b.address()
        ),
    );
    let p = Parapet::start_with(&ports, &yaml);
    for i in 0..20 {
        p.get(
            &format!("/page/{}", i % 5),
            &[("X-Respond", "Cache-Control: max-age=60")],
        );
    }
    p.get("/api/down", &[]);
    let url = format!("http://{}/", p.admin_addr());

    let dom = run_browser(&chromium, &["--dump-dom".to_string(), url.clone()]);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    for expected in [
        "Parapet",
        "Upstream pools",
        &a.address(),
        &b.address(),
        "eu-west",
        "2/2 healthy",
        "Cache hit ratio",
        "Recent starts and reloads",
    ] {
        assert!(
            html.contains(expected),
            "rendered page lacks {expected:?}:\n{html}"
        );
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_browser(
        &chromium,
        &[format!("--screenshot={}", shot.display()), url],
    );
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    // A blank page compresses to almost nothing; a rendered one does not.
    assert!(
        png.len() > 20_000,
        "screenshot looks empty: {} bytes",
        png.len()
    );
    println!("status page screenshot: {}", shot.display());
}
