//! Automatic certificates against a real ACME server: Debian's `pebble`
//! (the test CA Let's Encrypt publishes) on loopback, validating every
//! challenge against Parapet for real (`PEBBLE_VA_ALWAYS_VALID` off). Names
//! under `parapet.test` resolve to 127.0.0.1 through a DNS server the test
//! runs, which pebble is pointed at.
//!
//! Each test: its own pebble (own ports, own root), its own Parapet(s).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::dns::Dns;
use support::pki::{Pki, TlsClient};
use support::*;

const NAME: &str = "edge.parapet.test";

/// A pebble process and what a test needs of it.
struct Pebble {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    management: SocketAddr,
    /// The HTTPS root pebble's own API is served with.
    api_ca: PathBuf,
}

struct PebbleSetup<'a> {
    dns: &'a Dns,
    http_port: u16,
    tls_port: u16,
    /// Lifetime of issued certificates (pebble's default is five years).
    validity: Option<Duration>,
    /// Listen here (a test that starts the CA late picks the address first).
    addr: Option<SocketAddr>,
    /// The CA of pebble's own HTTPS certificate (made here when None).
    api_pki: Option<&'a Pki>,
}

impl Pebble {
    fn start(setup: PebbleSetup) -> Option<Pebble> {
        let bin = external_tool(&["pebble"], "pebble")?;
        let dir = temp_dir("pebble");
        let own;
        let pki = match setup.api_pki {
            Some(p) => p,
            None => {
                own = Pki::new(&dir, "pebble api ca");
                &own
            }
        };
        let api = pki.server("pebble-api", &["localhost"]);
        let addr = setup.addr.unwrap_or_else(free_addr);
        let management = free_addr();
        let mut cfg = format!(
            r#"{{"pebble": {{"listenAddress": "{addr}", "managementListenAddress": "{management}",
            "certificate": "{}", "privateKey": "{}", "httpPort": {}, "tlsPort": {},
            "ocspResponderURL": "", "externalAccountBindingRequired": false"#,
            api.cert.display(),
            api.key.display(),
            setup.http_port,
            setup.tls_port,
        );
        if let Some(v) = setup.validity {
            cfg.push_str(&format!(
                r#", "certificateValidityPeriod": {}"#,
                v.as_secs()
            ));
        }
        cfg.push_str("}}");
        std::fs::write(dir.join("pebble.json"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = Command::new(bin)
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .arg("-dnsserver")
            .arg(setup.dns.addr.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn pebble");
        let p = Pebble {
            child,
            dir,
            addr,
            management,
            api_ca: pki.ca_path.clone(),
        };
        wait_until(Duration::from_secs(10), "pebble listening", || {
            !is_closed(p.addr) && !is_closed(p.management)
        });
        Some(p)
    }

    fn directory(&self) -> String {
        format!("https://localhost:{}/dir", self.addr.port())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }

    /// Orders pebble accepted since it started.
    fn orders(&self) -> usize {
        self.log().matches("Added order").count()
    }

    /// Whether the directory offers ACME Renewal Information (pebble >= 2.5).
    fn offers_renewal_info(&self) -> bool {
        self.api_get(self.addr, "/dir").contains("renewalInfo")
    }

    /// A GET to pebble's API or management port: the whole response.
    fn api_get(&self, addr: SocketAddr, path: &str) -> String {
        let mut tls = TlsClient::trusting(&self.api_ca)
            .sni("localhost")
            .connect(addr)
            .expect("connect to pebble");
        write!(
            tls,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = tls.read_to_string(&mut text);
        text
    }

    /// Orders pebble accepted as replacing a named certificate (RFC 9773
    /// §5), as its log reports them.
    fn replacements(&self) -> usize {
        self.log().matches("is a replacement of").count()
    }

    /// Revokes the certificate stored in `storage` with the account stored
    /// there, as its owner would (RFC 8555 §7.6).
    fn revoke(&self, storage: &Path) {
        let account = std::fs::read_dir(storage)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("account-")
            })
            .expect("an account in storage");
        let creds: instant_acme::AccountCredentials =
            serde_json::from_str(&std::fs::read_to_string(account).unwrap()).unwrap();
        let dir = std::fs::read_dir(storage.join("certs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let pem = std::fs::read(dir.join("cert.pem")).unwrap();
        let der = openssl::x509::X509::from_pem(&pem)
            .unwrap()
            .to_der()
            .unwrap();
        let ca = self.api_ca.clone();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let account = instant_acme::Account::builder_with_root(&ca)
                    .unwrap()
                    .from_credentials(creds)
                    .await
                    .expect("restore the account");
                account
                    .revoke(&instant_acme::RevocationRequest {
                        certificate: &rustls_pki_types::CertificateDer::from(der),
                        reason: None,
                    })
                    .await
                    .expect("revoke");
            });
    }

    /// The root pebble issues under (made anew at each start), as a PEM file.
    fn issuing_root(&self) -> PathBuf {
        let mut tls = TlsClient::trusting(&self.api_ca)
            .sni("localhost")
            .connect(self.management)
            .expect("connect to pebble's management API");
        tls.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        let _ = tls.read_to_string(&mut text);
        let pem = &text[text.find("-----BEGIN").expect("a PEM root")..];
        let path = self.dir.join("issuing-root.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("pebble log:\n{}", self.log());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Parapet with a plain listener (the base one) and a TLS listener at
/// `tls` whose certificate comes from ACME.
fn config(ports: &Ports, tls: SocketAddr, origin: &str, acme: &str) -> String {
    let yaml = one_pool_config(
        ports,
        origin,
        &format!("routes:\n  - match: {{host: {NAME}}}\n    upstream: o\n"),
    );
    with_listeners(
        &yaml,
        &format!("  - address: \"{tls}\"\n    tls:\n      acme:\n{acme}"),
    )
}

/// The `acme:` block, indented for [`config`].
fn acme_block(
    pebble_dir: &str,
    api_ca: &Path,
    storage: &Path,
    challenge: &str,
    extra: &str,
) -> String {
    format!(
        "        directory: \"{pebble_dir}\"\n        email: ops@parapet.test\n        domains: [{NAME}]\n        challenge: {challenge}\n        storage: \"{}\"\n        ca_root: \"{}\"\n        retry: 200ms\n        retry_max: 1s\n{extra}",
        storage.display(),
        api_ca.display()
    )
}

fn dns() -> Dns {
    let dns = Dns::start();
    dns.set(&format!("{NAME}."), &[std::net::Ipv4Addr::LOCALHOST]);
    dns
}

/// The serial of the certificate served for NAME, if the handshake
/// verifies against `root` (name included).
fn served_serial(tls: SocketAddr, root: &Path) -> Option<Vec<u8>> {
    let s = TlsClient::trusting(root).sni(NAME).connect(tls).ok()?;
    let cert = s.ssl().peer_certificate()?;
    Some(cert.serial_number().to_bn().unwrap().to_vec())
}

/// A GET over TLS to NAME: the status line.
fn https_status(tls: SocketAddr, root: &Path) -> String {
    let mut s = TlsClient::trusting(root)
        .sni(NAME)
        .connect(tls)
        .expect("verified handshake");
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_string()
}

/// One node's surroundings: an origin, DNS for NAME, the node's ports, a
/// pebble validating against them, a storage folder, and pebble's issuing
/// root.
struct Scene {
    origin: Origin,
    _dns: Dns,
    ports: Ports,
    tls: SocketAddr,
    pebble: Pebble,
    storage: PathBuf,
    root: PathBuf,
}

impl Scene {
    /// `None` when pebble is not installed (the test is skipped).
    fn new(validity: Option<Duration>, http_reaches_node: bool) -> Option<Scene> {
        let dns = dns();
        let ports = Ports::new();
        let tls = free_addr();
        let pebble = Pebble::start(PebbleSetup {
            dns: &dns,
            http_port: if http_reaches_node {
                ports.proxy
            } else {
                free_port()
            },
            tls_port: tls.port(),
            validity,
            addr: None,
            api_pki: None,
        })?;
        let root = pebble.issuing_root();
        Some(Scene {
            origin: Origin::start("o1"),
            _dns: dns,
            ports,
            tls,
            pebble,
            storage: temp_dir("acme-storage"),
            root,
        })
    }

    /// The node's config: `challenge` and `extra` lines in its `acme:` block.
    fn yaml(&self, challenge: &str, extra: &str) -> String {
        let block = acme_block(
            &self.pebble.directory(),
            &self.pebble.api_ca,
            &self.storage,
            challenge,
            extra,
        );
        config(
            &self.ports,
            self.tls,
            &self.origin.addr().to_string(),
            &block,
        )
    }

    fn serial(&self) -> Option<Vec<u8>> {
        served_serial(self.tls, &self.root)
    }

    fn wait_for_certificate(&self, what: &str) {
        wait_until(Duration::from_secs(30), what, || self.serial().is_some());
    }
}

#[test]
fn http01_obtains_a_certificate_and_a_restart_reuses_it() {
    let Some(sc) = Scene::new(None, true) else {
        return;
    };
    let (ports, tls, root, storage, pebble) =
        (&sc.ports, sc.tls, &sc.root, &sc.storage, &sc.pebble);
    let yaml = sc.yaml("http-01", "");
    let first = {
        let p = Parapet::start_with(ports, &yaml);
        sc.wait_for_certificate("a certificate from pebble");
        assert_eq!(https_status(tls, root), "HTTP/1.1 200 OK");
        let m = p.metrics();
        assert_eq!(
            metric(&m, "parapet_acme_orders_total", r#"result="issued""#),
            Some(1.0),
            "{m}"
        );
        let expiry = metric(
            &m,
            "parapet_tls_certificate_expiry_seconds",
            &format!(r#"name="{NAME}",source="acme""#),
        )
        .expect("expiry metric");
        assert!(
            expiry
                > (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
                    + 86_400) as f64
        );
        // The status page lists it: names, issuer, source, expiry.
        let page = request(p.admin_addr(), "GET", "/status", &[], b"").unwrap();
        let page = String::from_utf8_lossy(&page.body).into_owned();
        let row = page
            .split("<tr>")
            .find(|r| r.contains(NAME) && r.contains("<td>acme</td>"))
            .unwrap_or_else(|| panic!("no ACME certificate row:\n{page}"));
        assert!(row.contains("Pebble Intermediate"), "{row}");
        assert!(
            pebble.log().contains("acme-challenge"),
            "pebble validated over HTTP"
        );
        // Key and account are private to the owner.
        let key = std::fs::read_dir(storage.join("certs"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("key.pem");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        sc.serial().unwrap()
    };
    assert_eq!(pebble.orders(), 1);
    // A restart serves the stored certificate at once and orders nothing.
    let p = Parapet::start_with(ports, &yaml);
    assert_eq!(
        sc.serial(),
        Some(first),
        "the stored certificate, from the first handshake"
    );
    let m = p.metrics();
    assert_eq!(
        metric(&m, "parapet_acme_orders_total", r#"result="issued""#),
        Some(0.0)
    );
    assert_eq!(pebble.orders(), 1, "no new order at pebble");
}

#[test]
fn tls_alpn01_obtains_a_certificate_without_a_plain_listener_being_asked() {
    // pebble's HTTP-01 port points nowhere: only TLS-ALPN-01 can succeed.
    let Some(sc) = Scene::new(None, false) else {
        return;
    };
    let p = Parapet::start_with(&sc.ports, &sc.yaml("tls-alpn-01", ""));
    sc.wait_for_certificate("a certificate over TLS-ALPN-01");
    assert_eq!(https_status(sc.tls, &sc.root), "HTTP/1.1 200 OK");
    assert!(
        p.logs().contains("answered a TLS-ALPN-01 validation"),
        "{}",
        p.logs()
    );
    // h2 is still negotiated for ordinary clients on this listener.
    let mut client = TlsClient::trusting(&sc.root).sni(NAME);
    client.alpn = vec![b"h2", b"http/1.1"];
    let s = client.connect(sc.tls).unwrap();
    assert_eq!(s.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    // A client asking for acme-tls/1 outside a validation gets no certificate.
    let mut prober = TlsClient::default().sni(NAME);
    prober.alpn = vec![b"acme-tls/1"];
    assert!(prober.connect(sc.tls).is_err());
    assert_eq!(
        metric(
            &p.metrics(),
            "parapet_acme_orders_total",
            r#"result="issued""#
        ),
        Some(1.0)
    );
}

#[test]
fn ca_down_at_start_serves_a_stand_in_and_retries_until_it_is_back() {
    let origin = Origin::start("o1");
    let dns = dns();
    let ports = Ports::new();
    let tls = free_addr();
    let ca_addr = free_addr();
    // The CA's address is known but nothing listens there yet.
    let storage = temp_dir("acme-storage");
    let api_dir = temp_dir("api-ca-holder");
    let Some(_) = external_tool(&["pebble"], "pebble") else {
        return;
    };
    // Parapet trusts this root for the CA's API; pebble, started later,
    // gets its HTTPS certificate from it.
    let api_pki = Pki::new(&api_dir, "late api ca");
    let yaml = config(
        &ports,
        tls,
        &origin.addr().to_string(),
        &acme_block(
            &format!("https://localhost:{}/dir", ca_addr.port()),
            &api_pki.ca_path,
            &storage,
            "http-01",
            "",
        ),
    );
    let p = Parapet::start_with(&ports, &yaml);
    // Served meanwhile: the self-signed stand-in for the name.
    let s = TlsClient::default()
        .sni(NAME)
        .connect(tls)
        .expect("stand-in handshake");
    let cert = s.ssl().peer_certificate().unwrap();
    assert_eq!(support::pki::peer_names(s.ssl()), vec![NAME.to_string()]);
    assert_eq!(
        cert.subject_name().to_der().unwrap(),
        cert.issuer_name().to_der().unwrap(),
        "self-signed"
    );
    let page = request(p.admin_addr(), "GET", "/status", &[], b"").unwrap();
    assert!(
        String::from_utf8_lossy(&page.body).contains("<td>stand-in</td>"),
        "the status page says the stand-in is served"
    );
    wait_until(Duration::from_secs(10), "failed attempts counted", || {
        metric(
            &p.metrics(),
            "parapet_acme_orders_total",
            r#"result="failed""#,
        )
        .unwrap_or(0.0)
            >= 2.0
    });
    let pebble = Pebble::start(PebbleSetup {
        dns: &dns,
        http_port: ports.proxy,
        tls_port: tls.port(),
        validity: None,
        addr: Some(ca_addr),
        api_pki: Some(&api_pki),
    })
    .unwrap();
    let root = pebble.issuing_root();
    wait_until(
        Duration::from_secs(30),
        "a certificate once the CA is back",
        || served_serial(tls, &root).is_some(),
    );
    assert!(p.logs().contains("retrying in"), "failures are logged");
}

#[test]
fn renewal_swaps_the_certificate_without_a_failed_handshake() {
    let Some(sc) = Scene::new(Some(Duration::from_secs(30)), true) else {
        return;
    };
    let (tls, root) = (sc.tls, sc.root.clone());
    // Renew a third into a 30 s lifetime: every ~10 s.
    let p = Parapet::start_with(&sc.ports, &sc.yaml("http-01", "        renew_at: 0.34\n"));
    sc.wait_for_certificate("a first certificate");
    let first = sc.serial().unwrap();
    // Clients keep connecting while the certificate is renewed.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match served_serial(tls, &root) {
                    Some(_) => ok.fetch_add(1, Ordering::Relaxed),
                    None => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    wait_until(Duration::from_secs(40), "a renewed certificate", || {
        sc.serial().is_some_and(|s| s != first)
    });
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "handshakes failed during renewal"
    );
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert!(sc.pebble.orders() >= 2);
    let issued = metric(
        &p.metrics(),
        "parapet_acme_orders_total",
        r#"result="issued""#,
    );
    assert!(issued.unwrap() >= 2.0);
    if sc.pebble.offers_renewal_info() {
        // pebble's window is two days around two thirds of the lifetime:
        // for a 30 s certificate it begins before issuance, so renew_at
        // decides, not an ordering loop.
        assert!(
            p.logs()
                .contains("begins before the certificate was issued"),
            "{}",
            p.logs()
        );
    }
}

#[test]
fn a_revoked_certificate_is_replaced_when_the_ca_says_so() {
    let Some(sc) = Scene::new(None, true) else {
        return;
    };
    if !sc.pebble.offers_renewal_info() {
        let why = "this pebble offers no renewal information (RFC 9773 needs pebble >= 2.5; .ci/run installs one)";
        assert!(std::env::var_os("PARAPET_REQUIRE_TOOLS").is_none(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let yaml = sc.yaml("http-01", "");
    let first = {
        let p = Parapet::start_with(&sc.ports, &yaml);
        sc.wait_for_certificate("a first certificate");
        // Having a certificate, the node asks the CA when to renew it: the
        // window is years away, so nothing more happens.
        wait_until(Duration::from_secs(20), "a renewal window", || {
            metric(
                &p.metrics(),
                "parapet_acme_renewal_info_total",
                r#"result="window""#,
            ) == Some(1.0)
        });
        assert_eq!(sc.pebble.orders(), 1);
        sc.serial().unwrap()
    };
    // While the node is down, the certificate is revoked; pebble's window
    // for it is now in the past ("renew now").
    sc.pebble.revoke(&sc.storage);
    let p = Parapet::start_with(&sc.ports, &yaml);
    wait_until(Duration::from_secs(30), "a replacement certificate", || {
        sc.serial().is_some_and(|s| s != first)
    });
    assert_eq!(sc.pebble.orders(), 2);
    assert!(
        p.logs().contains("when the CA's renewal information says"),
        "{}",
        p.logs()
    );
    // The order named the certificate it replaces (RFC 9773 §5); pebble
    // would refuse a second replacement of the same certificate.
    assert_eq!(sc.pebble.replacements(), 1, "{}", sc.pebble.log());
}

#[test]
fn two_nodes_sharing_storage_order_once() {
    // The CA reaches node A only; whichever node takes the lease, A answers
    // (from memory, or from the answer B shared in storage).
    let Some(a) = Scene::new(None, true) else {
        return;
    };
    let (ports_b, tls_b) = (Ports::new(), free_addr());
    let yaml_b = config(
        &ports_b,
        tls_b,
        &a.origin.addr().to_string(),
        &acme_block(
            &a.pebble.directory(),
            &a.pebble.api_ca,
            &a.storage,
            "http-01",
            "",
        ),
    );
    let node_a = Parapet::start_with(&a.ports, &a.yaml("http-01", ""));
    let node_b = Parapet::start_with(&ports_b, &yaml_b);
    wait_until(
        Duration::from_secs(40),
        "both nodes serving a certificate",
        || a.serial().is_some() && served_serial(tls_b, &a.root).is_some(),
    );
    assert_eq!(a.serial(), served_serial(tls_b, &a.root), "one certificate");
    assert_eq!(a.pebble.orders(), 1, "one order between the two nodes");
    let issued = |p: &Parapet| {
        metric(
            &p.metrics(),
            "parapet_acme_orders_total",
            r#"result="issued""#,
        )
        .unwrap_or(0.0)
    };
    assert_eq!(issued(&node_a) + issued(&node_b), 1.0);
}

#[test]
fn config_errors_name_their_path() {
    let ports = Ports::new();
    let storage = temp_dir("acme-storage");
    let acme = |challenge: &str, domain: &str| {
        format!(
            "        directory: \"https://localhost:1/dir\"\n        domains: [{domain}]\n        challenge: {challenge}\n        storage: \"{}\"\n",
            storage.display()
        )
    };
    // HTTP-01 without a plain listener: the only listener is the TLS one.
    let tls_only = format!(
        "server:\n  threads: 1\nlisteners:\n  - address: \"127.0.0.1:{}\"\n    tls:\n      acme:\n{}upstreams:\n  o:\n    backends: [{{address: \"127.0.0.1:1\"}}]\nroutes:\n  - match: {{host: {NAME}}}\n    upstream: o\n",
        ports.proxy,
        acme("http-01", NAME)
    );
    let (ok, _, err) = check_config(&tls_only);
    assert!(!ok);
    assert!(
        err.contains("listeners[0].tls.acme.challenge: http-01 needs a plain"),
        "{err}"
    );
    // A name no route serves, and a wildcard.
    let yaml = config(
        &ports,
        free_addr(),
        "127.0.0.1:1",
        &acme("http-01", "other.parapet.test"),
    );
    let (ok, _, err) = check_config(&yaml);
    assert!(!ok);
    assert!(
        err.contains("listeners[0].tls.acme.domains[0]: no route serves other.parapet.test"),
        "{err}"
    );
    let yaml = config(
        &ports,
        free_addr(),
        "127.0.0.1:1",
        &acme("http-01", "\"*.parapet.test\""),
    );
    let (ok, _, err) = check_config(&yaml);
    assert!(!ok);
    assert!(
        err.contains("listeners[0].tls.acme.domains[0]: wildcard names need the dns-01"),
        "{err}"
    );
}

#[test]
fn corrupt_stored_files_are_ignored_and_ordered_again() {
    let Some(sc) = Scene::new(None, true) else {
        return;
    };
    let yaml = sc.yaml("http-01", "");
    {
        let _p = Parapet::start_with(&sc.ports, &yaml);
        sc.wait_for_certificate("a certificate");
    }
    // Damage the stored chain.
    let dir = std::fs::read_dir(sc.storage.join("certs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(
        dir.join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    let p = Parapet::start_with(&sc.ports, &yaml);
    sc.wait_for_certificate("a new certificate");
    assert_eq!(sc.pebble.orders(), 2);
    assert!(
        p.logs().contains("ignoring the certificate"),
        "{}",
        p.logs()
    );
}
