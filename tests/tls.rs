//! TLS termination with certificates made by the test: SNI selection among
//! three certificates plus the default, old protocol versions refused, h2 by
//! ALPN end to end, client certificates (required, optional, forged header,
//! routing on the identity), HTTP→HTTPS redirect and HSTS, and certificate
//! problems reported as config errors with their YAML paths.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::pki::{Pki, TlsClient};
use support::*;

/// A config with one extra TLS listener at `tls_addr` whose settings are
/// `tls_yaml` (indented for the listener's `tls:` mapping).
fn with_tls_listener(base: String, tls_addr: SocketAddr, tls_yaml: &str) -> String {
    with_listeners(
        &base,
        &format!("  - address: \"{tls_addr}\"\n    tls:\n{tls_yaml}"),
    )
}

fn cert_entry(i: &support::pki::Issued) -> String {
    format!(
        "        - {{cert: \"{}\", key: \"{}\"}}\n",
        i.cert.display(),
        i.key.display()
    )
}

#[test]
fn sni_picks_the_certificate_old_versions_are_refused_and_h2_is_negotiated() {
    let dir = temp_dir("tls-sni");
    let pki = Pki::new(&dir, "edge");
    let default = pki.server("default", &["default.test"]);
    let a = pki.server("a", &["a.test"]);
    let wild = pki.server("wild", &["*.wild.test"]);
    let b = pki.server("b", &["b.test", "alt-b.test"]);
    let origin = Origin::start("o");
    let ports = Ports::new();
    let tls_addr = free_addr();
    let yaml = with_tls_listener(
        one_pool_config(&ports, &origin.address(), "routes:\n  - upstream: o\n"),
        tls_addr,
        &format!(
            "      certificates:\n{}{}{}{}      hsts: \"max-age=600; includeSubDomains\"\n",
            cert_entry(&default),
            cert_entry(&a),
            cert_entry(&wild),
            cert_entry(&b)
        ),
    );
    let p = Parapet::start_with(&ports, &yaml);

    let names = |client: TlsClient| {
        let s = client.connect(tls_addr).expect("handshake");
        support::pki::peer_names(s.ssl())
    };
    let verified = TlsClient::trusting(&pki.ca_path);
    assert_eq!(names(verified.clone().sni("a.test")), ["a.test"]);
    assert_eq!(names(verified.clone().sni("x.wild.test")), ["*.wild.test"]);
    assert_eq!(
        names(verified.clone().sni("ALT-B.test")),
        ["b.test", "alt-b.test"]
    );
    // Unknown names and clients without SNI get the default certificate.
    let unverified = TlsClient::default();
    assert_eq!(
        names(unverified.clone().sni("nobody.test")),
        ["default.test"]
    );
    assert_eq!(names(unverified.clone()), ["default.test"]);
    assert_eq!(
        names(unverified.clone().sni("deep.x.wild.test")),
        ["default.test"],
        "a wildcard covers one label only"
    );

    // HTTPS end to end: X-Forwarded-Proto says https; HSTS is added.
    let stream = verified.clone().sni("a.test").connect(tls_addr).unwrap();
    let r = request_over(stream, "GET", "/hello", &[("Host", "a.test")], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=600; includeSubDomains")
    );
    // The edge's own pages on that listener carry it too.
    let stream = verified.clone().sni("a.test").connect(tls_addr).unwrap();
    let r = request_over(
        stream,
        "POST",
        "/",
        &[("Host", "a.test"), ("Content-Length", "5, 5")],
        b"hello",
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.header("strict-transport-security").is_some());
    // ...but not on the plain listener.
    let plain = p.get("/hello", &[]);
    assert_eq!(plain.echo().header("x-forwarded-proto"), Some("http"));
    assert_eq!(plain.header("strict-transport-security"), None);

    // TLS 1.0 and 1.1 are refused, and counted.
    for version in [
        openssl::ssl::SslVersion::TLS1,
        openssl::ssl::SslVersion::TLS1_1,
    ] {
        let old = TlsClient {
            max_version: Some(version),
            ..unverified.clone().sni("a.test")
        };
        assert!(
            old.connect(tls_addr).is_err(),
            "{version:?} must be refused"
        );
    }
    wait_until(Duration::from_secs(5), "failures counted", || {
        p.metrics()
            .contains("parapet_tls_handshake_failures_total{reason=\"protocol_version\"} 2")
    });

    // ALPN offers h2, and a request over it goes end to end.
    let h2 = TlsClient {
        alpn: vec![b"h2", b"http/1.1"],
        ..verified.clone().sni("a.test")
    };
    let (status, echo) = support::pki::h2_get(tls_addr, &h2, "a.test", "/over-h2");
    let echo = String::from_utf8_lossy(&echo).into_owned();
    assert_eq!(status, 200);
    let echo = parse_echo(&echo);
    assert_eq!(echo.path, "/over-h2");
    assert_eq!(echo.header("x-forwarded-proto"), Some("https"));
    assert!(p.metrics().contains("parapet_tls_handshakes_total"));
}

/// Sends a GET over a client that may be refused during or just after the
/// handshake (TLS 1.3 reports a refused client certificate on first read).
fn try_get(
    client: &TlsClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let stream = client.connect(addr)?;
    request_over(stream, "GET", path, headers, b"").map_err(|e| e.to_string())
}

#[test]
fn client_certificates_required_optional_forged_and_routed() {
    let dir = temp_dir("tls-mtls");
    let pki = Pki::new(&dir, "edge");
    let clients = Pki::new(&dir, "clients");
    let strangers = Pki::new(&dir, "strangers");
    let server = pki.server("server", &["edge.test"]);
    let alice = clients.client("alice", "alice");
    let admin = clients.client("admin", "admin");
    let mallory = strangers.client("mallory", "admin");
    let app = Origin::start("app");
    let admin_origin = Origin::start("admin-app");
    let ports = Ports::new();
    let required = free_addr();
    let optional = free_addr();
    let listener = |addr: SocketAddr, mode: &str| {
        format!(
            "  - address: \"{addr}\"\n    tls:\n      certificates: [{{cert: \"{}\", key: \"{}\"}}]\n      client_auth: {mode}\n      client_ca: \"{}\"\n",
            server.cert.display(),
            server.key.display(),
            clients.ca_path.display()
        )
    };
    let yaml = base_config(
        &ports,
        &format!(
            "upstreams:\n  app:\n    backends: [{{address: \"{}\"}}]\n  admin:\n    backends: [{{address: \"{}\"}}]\n\
             routes:\n  - match: {{path_prefix: /admin, headers: {{X-Client-Subject: \"CN=admin$\"}}}}\n    upstream: admin\n  - upstream: app\n\
             forwarding:\n  client_cert_header: X-Client-Subject\n",
            app.address(),
            admin_origin.address()
        ),
    );
    let yaml = with_listeners(
        &yaml,
        &format!(
            "{}{}",
            listener(required, "required"),
            listener(optional, "optional")
        ),
    );
    let p = Parapet::start_with(&ports, &yaml);
    let trusting = TlsClient::trusting(&pki.ca_path).sni("edge.test");

    // Required: no certificate, or one from another CA, is refused.
    assert!(try_get(&trusting, required, "/", &[]).is_err());
    assert!(try_get(&trusting.clone().cert(&mallory), required, "/", &[]).is_err());
    assert_eq!(app.hits() + admin_origin.hits(), 0);
    // A verified certificate's subject reaches the origin, replacing what
    // the client claimed.
    let r = try_get(
        &trusting.clone().cert(&alice),
        required,
        "/",
        &[("X-Client-Subject", "CN=admin")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echo().headers_named("x-client-subject"),
        ["O=Parapet Tests,CN=alice"]
    );
    // Routing on the identity: only admin's certificate reaches the admin pool.
    let r = try_get(&trusting.clone().cert(&alice), required, "/admin/x", &[]).unwrap();
    assert_eq!(r.header("x-origin-id"), Some("app"));
    let r = try_get(&trusting.clone().cert(&admin), required, "/admin/x", &[]).unwrap();
    assert_eq!(r.header("x-origin-id"), Some("admin-app"));

    // Optional: no certificate is fine, and a forged identity is stripped.
    let r = try_get(
        &trusting,
        optional,
        "/admin/x",
        &[("X-Client-Subject", "O=Parapet Tests,CN=admin")],
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-origin-id"),
        Some("app"),
        "a forged header routes nowhere"
    );
    assert!(r.echo().headers_named("x-client-subject").is_empty());
    // The same forgery on the plain listener is stripped too.
    let r = p.get(
        "/",
        &[
            ("X-Client-Subject", "CN=admin"),
            ("X_Client_Subject", "CN=admin"),
        ],
    );
    assert!(r.echo().headers_named("x-client-subject").is_empty());
    assert!(
        r.echo().headers_named("x_client_subject").is_empty(),
        "the underscore spelling, which CGI-style servers merge, is stripped too"
    );
    // A bad certificate is refused even where certificates are optional.
    assert!(try_get(&trusting.clone().cert(&mallory), optional, "/", &[]).is_err());
    wait_until(
        Duration::from_secs(5),
        "client certificate failures counted",
        || {
            p.metrics()
                .contains("parapet_tls_handshake_failures_total{reason=\"client_certificate\"}")
        },
    );
}

#[test]
fn plain_http_is_redirected_to_https() {
    let origin = Origin::start("o");
    let ports = Ports::new();
    let redirecting = free_addr();
    let yaml = with_listeners(
        &one_pool_config(&ports, &origin.address(), "routes:\n  - upstream: o\n"),
        &format!(
            "  - address: \"{redirecting}\"\n    redirect_https: true\n    https_port: 8443\n"
        ),
    );
    let _p = Parapet::start_with(&ports, &yaml);
    let r = request(
        redirecting,
        "GET",
        "/shop/cart?item=7&q=a%20b",
        &[("Host", "Shop.Test:8080")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://Shop.Test:8443/shop/cart?item=7&q=a%20b")
    );
    let r = request(
        redirecting,
        "POST",
        "/form",
        &[("Host", "shop.test")],
        b"a=1",
    )
    .unwrap();
    assert_eq!(
        r.status, 308,
        "308 keeps the method: POST is redirected too"
    );
    // A host that is not a host name is not echoed into a Location.
    let r = request(redirecting, "GET", "/", &[("Host", "evil\"<x>")], b"").unwrap();
    assert_ne!(r.status, 308);
    assert_eq!(
        origin.hits(),
        0,
        "redirected requests never reach the origin"
    );
}

#[test]
fn certificate_problems_are_config_errors_with_paths() {
    let dir = temp_dir("tls-config");
    let pki = Pki::new(&dir, "edge");
    let good = pki.server("good", &["good.test"]);
    let other = pki.server("other", &["other.test"]);
    let expired = pki.server_valid("expired", &["old.test"], (-30, -1));
    let config = dir.join("parapet.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  - address: \"127.0.0.1:1\"\n    tls:\n      certificates:\n        - {{cert: \"{}\", key: \"{}\"}}\n        - {{cert: \"{}\", key: \"{}\"}}\n        - {{cert: /nonexistent/cert.pem, key: \"{}\"}}\n      min_version: \"1.0\"\n      client_auth: required\n\
             upstreams:\n  o:\n    backends: [{{address: \"127.0.0.1:2\"}}]\n    tls: {{}}\n    protocol: h2c\n\
             routes:\n  - upstream: o\n",
            good.cert.display(),
            other.key.display(),
            expired.cert.display(),
            expired.key.display(),
            good.key.display(),
        ),
    )
    .unwrap();
    let out = run_parapet(&["-t", "-c", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "listeners[0].tls.certificates[0].key: ",
        "is not the private key of",
        "listeners[0].tls.certificates[1].cert: ",
        "expired on",
        "listeners[0].tls.certificates[2].cert: cannot read /nonexistent/cert.pem",
        "listeners[0].tls.min_version: \"1.0\" is not offered",
        "listeners[0].tls.client_ca: client certificates need a CA bundle",
        "upstreams.o.backends[0].address: an IP address cannot be verified",
        "upstreams.o.protocol: h2c is cleartext",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn a_reload_picks_up_renewed_certificates_without_dropping_requests() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = temp_dir("tls-renew");
    let pki = Pki::new(&dir, "edge");
    let first = pki.server("first", &["renew.test"]);
    let renewed = pki.server("renewed", &["renew.test"]);
    let serial = |path: &std::path::Path| {
        let pem = std::fs::read(path).unwrap();
        let cert = openssl::x509::X509::from_pem(&pem).unwrap();
        cert.serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string()
    };
    let live = dir.join("live.pem");
    let live_key = dir.join("live.key");
    std::fs::copy(&first.cert, &live).unwrap();
    std::fs::copy(&first.key, &live_key).unwrap();
    let origin = Origin::start("o");
    let ports = Ports::new();
    let tls_addr = free_addr();
    let yaml = with_tls_listener(
        one_pool_config(&ports, &origin.address(), "routes:\n  - upstream: o\n"),
        tls_addr,
        &format!(
            "      certificates: [{{cert: \"{}\", key: \"{}\"}}]\n",
            live.display(),
            live_key.display()
        ),
    );
    let mut p = Parapet::supervise_with(&ports, &yaml);
    let client = TlsClient::trusting(&pki.ca_path).sni("renew.test");
    let presented = |client: &TlsClient| {
        let s = client.connect(tls_addr).expect("handshake");
        let cert = s.ssl().peer_certificate().unwrap();
        cert.serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(presented(&client), serial(&first.cert));

    // Load over fresh TLS connections throughout the renewal.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (stop, ok, failures, client) =
            (stop.clone(), ok.clone(), failures.clone(), client.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match try_get(&client, tls_addr, "/", &[("Host", "renew.test")]) {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("status {}", r.status)),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        })
    };
    wait_until(Duration::from_secs(10), "load running", || {
        ok.load(Ordering::Relaxed) > 20
    });
    // Renew in place, as certbot would, and reload.
    std::fs::copy(&renewed.cert, &live).unwrap();
    std::fs::copy(&renewed.key, &live_key).unwrap();
    p.signal(SIGHUP);
    wait_until(
        Duration::from_secs(20),
        "the renewed certificate is served",
        || presented(&client) == serial(&renewed.cert),
    );
    let before = ok.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(10), "load continues", || {
        ok.load(Ordering::Relaxed) > before + 20
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed: {:?}",
        failures.len(),
        ok.load(Ordering::Relaxed),
        &failures[..failures.len().min(5)]
    );
}
