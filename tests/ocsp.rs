//! OCSP stapling against a real responder: `openssl ocsp` in responder mode,
//! run by the test for a CA the test makes (with the `openssl` command line,
//! which also writes the AIA extension naming the responder). Stapled
//! responses are read with `openssl s_client -status`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::pki::Pki;
use support::*;

const NAME: &str = "edge.parapet.test";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a leaf for NAME whose AIA names the responder on `port`; the
/// chain file holds the leaf then the CA (the issuer the stapler needs).
struct Ca {
    dir: PathBuf,
}

impl Ca {
    fn new(port: u16) -> Ca {
        let dir = temp_dir("ocsp-ca");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ocsp test ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        ]);
        openssl(&dir, &args);
        let mut args = vec!["req"];
        args.extend(ec);
        args.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=edge.parapet.test",
        ]);
        openssl(&dir, &args);
        std::fs::write(
            dir.join("ext.cnf"),
            format!(
                "subjectAltName=DNS:{NAME}\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{port}\n"
            ),
        )
        .unwrap();
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
        let leaf = std::fs::read_to_string(dir.join("leaf.pem")).unwrap();
        let ca = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        std::fs::write(dir.join("chain.pem"), leaf + &ca).unwrap();
        // The responder's database: this certificate is valid ("V").
        let out = Command::new("openssl")
            .args(["x509", "-in", "leaf.pem", "-noout", "-serial"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let serial = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches("serial=")
            .to_string();
        std::fs::write(
            dir.join("index.txt"),
            format!("V\t301231000000Z\t\t{serial}\tunknown\t/CN={NAME}\n"),
        )
        .unwrap();
        Ca { dir }
    }

    /// `openssl ocsp` answering on `port`; responses valid for one minute.
    /// An error (what it said) if it exited before listening.
    fn responder(&self, port: u16) -> Result<Child, String> {
        let mut child = Command::new("openssl")
            .args([
                "ocsp",
                "-index",
                "index.txt",
                "-port",
                &port.to_string(),
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-nmin",
                "1",
                "-ignore_err",
            ])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join("responder.log")).unwrap())
            .stderr(std::fs::File::create(self.dir.join("responder.err")).unwrap())
            .spawn()
            .expect("openssl ocsp");
        // Not probed with a connection: OpenSSL 3.0's responder hangs on a
        // connection closed without a request. It says when it listens.
        let said = || {
            let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            read("responder.log") + &read("responder.err")
        };
        let mut exited = false;
        wait_until(Duration::from_secs(10), "OCSP responder listening", || {
            exited = matches!(child.try_wait(), Ok(Some(_)));
            exited || said().contains("waiting for OCSP client connections")
        });
        if exited && !said().contains("waiting for OCSP client connections") {
            return Err(said());
        }
        Ok(child)
    }

    /// A CA whose responder listens. The port is chosen free and then
    /// released before `openssl ocsp` binds it, so another test may take it
    /// in between: then the responder exits, and a new port (and a CA
    /// naming it) is tried.
    fn with_responder() -> (Ca, Child) {
        let mut said = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let ca = Ca::new(port);
            match ca.responder(port) {
                Ok(child) => return (ca, child),
                Err(e) => said.push(format!("port {port}: {e}")),
            }
        }
        panic!("openssl ocsp never listened:\n{}", said.join("\n"));
    }
}

/// What `openssl s_client -status` says about the stapled response.
fn status(tls: SocketAddr, ca: &Path) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &tls.to_string(),
            "-servername",
            NAME,
            "-status",
            "-CAfile",
        ])
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn config(ports: &Ports, tls: SocketAddr, origin: &Origin, cert: &Path, key: &Path) -> String {
    let yaml = one_pool_config(ports, &origin.address(), "routes:\n  - upstream: o\n");
    with_listeners(
        &yaml,
        &format!(
            "  - address: \"{tls}\"\n    tls:\n      certificates:\n        - {{cert: \"{}\", key: \"{}\"}}\n",
            cert.display(),
            key.display()
        ),
    )
}

#[test]
fn responses_are_stapled_kept_through_an_outage_and_dropped_when_expired() {
    if external_tool(&["openssl"], "openssl").is_none() {
        return;
    }
    let (ca, mut responder) = Ca::with_responder();
    let origin = Origin::start("o");
    let ports = Ports::new();
    let tls = free_addr();
    let yaml = config(
        &ports,
        tls,
        &origin,
        &ca.dir.join("chain.pem"),
        &ca.dir.join("leaf.key"),
    );
    // Each test process gets its own folder (and upgrade socket, the
    // default place for the cache): name one both starts share.
    let cache = temp_dir("ocsp-cache");
    let yaml = yaml.replacen(
        "server:\n",
        &format!("server:\n  ocsp_cache: \"{}\"\n", cache.display()),
        1,
    );
    let ca_pem = ca.dir.join("ca.pem");
    {
        let p = Parapet::start_with(&ports, &yaml);
        wait_until(Duration::from_secs(20), "a stapled good response", || {
            status(tls, &ca_pem).contains("Cert Status: good")
        });
        let m = p.metrics();
        assert!(metric(&m, "parapet_ocsp_fetches_total", r#"result="ok""#).unwrap() >= 1.0);
        let page = request(p.admin_addr(), "GET", "/status", &[], b"").unwrap();
        assert!(String::from_utf8_lossy(&page.body).contains("<td>stapled</td>"));
    }
    // The responder goes down; a restart staples the response kept on disk.
    let _ = responder.kill();
    let _ = responder.wait();
    let p = Parapet::start_with(&ports, &yaml);
    let text = status(tls, &ca_pem);
    assert!(
        text.contains("Cert Status: good"),
        "from the disk cache at once:\n{text}"
    );
    // The response says nextUpdate one minute after thisUpdate: after that
    // nothing is stapled, and the failures were logged.
    wait_until(
        Duration::from_secs(90),
        "the expired response no longer stapled",
        || status(tls, &ca_pem).contains("OCSP response: no response sent"),
    );
    let logs = p.logs();
    assert!(
        logs.contains("stapling the last good response until its nextUpdate"),
        "{logs}"
    );
    assert!(
        metric(
            &p.metrics(),
            "parapet_ocsp_fetches_total",
            r#"result="failed""#
        )
        .unwrap()
            >= 1.0
    );
    // Handshakes go on without a staple.
    assert!(status(tls, &ca_pem).contains("Verify return code: 0 (ok)"));
}

#[test]
fn a_certificate_without_an_ocsp_url_is_served_without_staple_or_complaint() {
    if external_tool(&["openssl"], "openssl").is_none() {
        return;
    }
    let dir = temp_dir("ocsp-none");
    let pki = Pki::new(&dir, "plain ca");
    let issued = pki.server("edge", &[NAME]);
    let origin = Origin::start("o");
    let ports = Ports::new();
    let tls = free_addr();
    let p = Parapet::start_with(
        &ports,
        &config(&ports, tls, &origin, &issued.cert, &issued.key),
    );
    let text = status(tls, &pki.ca_path);
    assert!(text.contains("OCSP response: no response sent"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(!p.logs().contains("OCSP"), "{}", p.logs());
}
