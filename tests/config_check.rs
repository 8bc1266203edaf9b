//! `parapet -t -c FILE`: a good file is OK (exit 0), a bad one lists every
//! error with its YAML path (exit non-zero) and starts nothing.

mod support;

use support::check_config as check;
use support::*;

#[test]
fn shipped_configs_are_valid() {
    for file in ["conf/parapet.yaml", "conf/minimal.yaml"] {
        let out = run_parapet(&["-t", "-c", file]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.lines().count(), 1, "one line of OK: {stdout}");
        assert!(stdout.contains("is OK"), "{stdout}");
    }
}

#[test]
fn every_error_is_listed_with_its_path() {
    let port = free_port();
    let (ok, _, stderr) = check(&format!(
        r#"
listeners:
  - address: "127.0.0.1:{port}"
  - address: "localhost:x"
admin:
  address: "127.0.0.1:{port}"
upstreams:
  app:
    selection: round_robin
    backends:
      - address: "127.0.0.1:9000"
      - address: "10.0.0.x:80"
        weight: 0
    health_check: {{kind: http, interval: soon}}
  typo:
    backend: []
routes:
  - match: {{host: "*.example.com", path_prefix: api}}
    upstream: missing
  - match: {{hots: example.com}}
    upstream: app
  - upstream: typo
forwarding:
  trusted_proxies: ["10.0.0.0/8", "10.0.0.0/40"]
unknown_section: 1
"#
    ));
    assert!(!ok, "a bad file must fail: {stderr}");
    for expected in [
        "listeners[1].address: invalid listen address \"localhost:x\"",
        "admin.address: 127.0.0.1:",
        "upstreams.app.backends[1].address: invalid socket address \"10.0.0.x:80\"",
        "upstreams.app.backends[1].weight: must be 1..=1000",
        "upstreams.app.health_check.interval: invalid duration \"soon\"",
        "upstreams.typo.backend: unknown field `backend`",
        "routes[0].match.path_prefix: must be a path starting with '/'",
        "routes[0].upstream: no upstream named \"missing\"",
        "routes[1].match.hots: unknown field `hots`",
        "forwarding.trusted_proxies[1]: invalid network \"10.0.0.0/40\"",
        "unknown_section: unknown section",
        "11 errors found",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("routes[2]"),
        "a route naming a broken upstream adds no second error:\n{stderr}"
    );
    // Nothing was started on the listener address.
    assert!(is_closed(format!("127.0.0.1:{port}").parse().unwrap()));
}

#[test]
fn unreadable_and_non_yaml_files_are_errors() {
    let out = run_parapet(&["-t", "-c", "/nonexistent/parapet.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
    let (ok, _, stderr) = check("listeners: [\n");
    assert!(!ok);
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    let (ok, _, stderr) = check("listeners: []\n");
    assert!(!ok);
    assert!(
        stderr.contains("listeners: at least one listener is needed"),
        "{stderr}"
    );
}

#[test]
fn a_bad_config_starts_nothing() {
    let port = free_port();
    let dir = temp_dir("parapet-bad");
    let file = dir.join("c.yaml");
    std::fs::write(
        &file,
        format!("listeners:\n  - address: 127.0.0.1:{port}\nroutes:\n  - upstream: nope\n"),
    )
    .unwrap();
    let out = run_parapet(&["-c", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("routes[0].upstream: no upstream named \"nope\""));
    let _ = std::fs::remove_dir_all(&dir);
}
