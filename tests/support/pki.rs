//! Certificates made at test time with OpenSSL: a CA, and leaf certificates
//! for servers (DNS names) or clients, written as PEM files.

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use std::path::{Path, PathBuf};

fn key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn serial() -> openssl::asn1::Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    bn.to_asn1_integer().unwrap()
}

/// A certificate authority whose files live in `dir`.
pub struct Pki {
    dir: PathBuf,
    cert: X509,
    key: PKey<Private>,
    pub ca_path: PathBuf,
}

/// Paths of an issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = key();
        let mut subject = X509NameBuilder::new().unwrap();
        subject.append_entry_by_text("CN", name).unwrap();
        let subject = subject.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&subject).unwrap();
        b.set_issuer_name(&subject).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, cert.to_pem().unwrap()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            cert,
            key,
            ca_path,
        }
    }

    /// A server certificate for `names` (DNS SANs; the first is also the CN).
    pub fn server(&self, stem: &str, names: &[&str]) -> Issued {
        self.issue(stem, names, false, (0, 30))
    }

    /// A client certificate with subject `CN=<cn>,O=Parapet Tests`.
    pub fn client(&self, stem: &str, cn: &str) -> Issued {
        self.issue(stem, &[cn], true, (0, 30))
    }

    /// A server certificate valid from `days.0` to `days.1` days from now.
    pub fn server_valid(&self, stem: &str, names: &[&str], days: (i64, i64)) -> Issued {
        self.issue(stem, names, false, days)
    }

    fn issue(&self, stem: &str, names: &[&str], client: bool, days: (i64, i64)) -> Issued {
        let key = key();
        let mut subject = X509NameBuilder::new().unwrap();
        subject.append_entry_by_text("O", "Parapet Tests").unwrap();
        subject.append_entry_by_text("CN", names[0]).unwrap();
        let subject = subject.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&subject).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        let when = |d: i64| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            Asn1Time::from_unix(now + d * 86_400).unwrap()
        };
        b.set_not_before(&when(days.0 - 1)).unwrap();
        b.set_not_after(&when(days.1)).unwrap();
        let ctx = b.x509v3_context(Some(&self.cert), None);
        let mut san = SubjectAlternativeName::new();
        for n in names {
            if client {
                san.email(&format!("{n}@example.test"));
            } else {
                san.dns(n);
            }
        }
        let san = san.build(&ctx).unwrap();
        b.append_extension(san).unwrap();
        let mut eku = ExtendedKeyUsage::new();
        if client {
            eku.client_auth();
        } else {
            eku.server_auth();
        }
        b.append_extension(eku.build().unwrap()).unwrap();
        b.sign(&self.key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let issued = Issued {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&issued.cert, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&issued.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        issued
    }
}

/// The DNS names of the certificate a TLS server presented.
pub fn peer_names(ssl: &openssl::ssl::SslRef) -> Vec<String> {
    ssl.peer_certificate()
        .and_then(|c| c.subject_alt_names())
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// How a test TLS client connects.
#[derive(Default, Clone)]
pub struct TlsClient {
    /// CA bundle the server must chain to (None: no verification).
    pub ca: Option<PathBuf>,
    pub sni: Option<String>,
    pub client_cert: Option<Issued>,
    pub max_version: Option<openssl::ssl::SslVersion>,
    /// ALPN protocols offered, e.g. `[b"h2"]`.
    pub alpn: Vec<&'static [u8]>,
}

impl TlsClient {
    pub fn trusting(ca: &Path) -> TlsClient {
        TlsClient {
            ca: Some(ca.to_path_buf()),
            ..TlsClient::default()
        }
    }

    pub fn sni(mut self, name: &str) -> TlsClient {
        self.sni = Some(name.to_string());
        self
    }

    pub fn cert(mut self, issued: &Issued) -> TlsClient {
        self.client_cert = Some(issued.clone());
        self
    }

    pub fn connector(&self) -> openssl::ssl::SslConnector {
        use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        match &self.ca {
            Some(ca) => b.set_ca_file(ca).unwrap(),
            None => b.set_verify(SslVerifyMode::NONE),
        }
        if let Some(c) = &self.client_cert {
            b.set_certificate_chain_file(&c.cert).unwrap();
            b.set_private_key_file(&c.key, SslFiletype::PEM).unwrap();
        }
        if let Some(v) = self.max_version {
            // Old protocol versions are below OpenSSL's default security level.
            b.set_security_level(0);
            b.set_cipher_list("ALL:@SECLEVEL=0").unwrap();
            b.set_min_proto_version(Some(openssl::ssl::SslVersion::TLS1))
                .unwrap();
            b.set_max_proto_version(Some(v)).unwrap();
        }
        if !self.alpn.is_empty() {
            let mut wire = Vec::new();
            for p in &self.alpn {
                wire.push(p.len() as u8);
                wire.extend_from_slice(p);
            }
            b.set_alpn_protos(&wire).unwrap();
        }
        b.build()
    }

    /// Connects and completes the handshake, or says why it failed. (With
    /// TLS 1.3 a refused client certificate shows only on the first read.)
    pub fn connect(
        &self,
        addr: std::net::SocketAddr,
    ) -> Result<openssl::ssl::SslStream<std::net::TcpStream>, String> {
        let tcp = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(super::IO_TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(super::IO_TIMEOUT)).unwrap();
        let mut cfg = self.connector().configure().unwrap();
        let name = self.sni.clone().unwrap_or_default();
        if self.sni.is_none() {
            cfg.set_use_server_name_indication(false);
            cfg.set_verify_hostname(false);
        }
        cfg.connect(&name, tcp).map_err(|e| e.to_string())
    }
}

/// One HTTP/2 GET over TLS (ALPN must pick h2) for `https://host{path}` on a
/// fresh connection: the status and the body. Each of the head and the body
/// must come within a deadline.
pub fn h2_get(
    addr: std::net::SocketAddr,
    client: &TlsClient,
    host: &str,
    path: &str,
) -> (u16, Vec<u8>) {
    let connector = client.connector();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (host, path) = (host.to_string(), path.to_string());
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let ssl = connector.configure().unwrap().into_ssl(&host).unwrap();
        let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        std::pin::Pin::new(&mut tls).connect().await.unwrap();
        assert_eq!(
            tls.ssl().selected_alpn_protocol(),
            Some(&b"h2"[..]),
            "ALPN must select h2"
        );
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("https://{host}{path}"))
            .body(())
            .unwrap();
        let (resp, _) = client.send_request(req, true).unwrap();
        let resp = tokio::time::timeout(super::IO_TIMEOUT, resp)
            .await
            .expect("h2 response head in time")
            .unwrap();
        let status = resp.status().as_u16();
        let body =
            tokio::time::timeout(super::IO_TIMEOUT * 4, super::h2_body(&mut resp.into_body()))
                .await
                .expect("h2 body in time");
        (status, body)
    })
}
