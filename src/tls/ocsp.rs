//! OCSP stapling for the certificates the TLS listeners serve, file and
//! ACME alike.
//!
//! A background service asks each certificate's OCSP responder (the URL in
//! its Authority Information Access extension; the issuer must be the next
//! certificate in the chain) for a response, checks it (signed by the
//! issuer or its delegated responder, for this certificate, inside its
//! validity window), keeps it in memory for the handshakes and on disk for
//! the next start, and asks again halfway to its `nextUpdate`. A responder
//! that is down or answers garbage keeps the last good response stapled
//! until its `nextUpdate`; after that nothing is stapled (never a stale or
//! unchecked response). A certificate without an OCSP URL (Let's Encrypt
//! stopped including one in 2025) is simply not stapled, without a log line.

use super::certs::{unix_now, unix_time, CertKey};
use crate::metrics;
use foreign_types::ForeignTypeRef;
use openssl::asn1::Asn1TimeRef;
use openssl::hash::MessageDigest;
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
};
use openssl::ssl::{SslContextBuilder, SslRef};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// A checked response, ready to staple until `next_update`.
#[derive(Clone)]
struct Staple {
    der: Arc<Vec<u8>>,
    this_update: i64,
    next_update: i64,
}

/// Responses by the SHA-256 of the leaf certificate they are for.
static STAPLES: LazyLock<RwLock<HashMap<Vec<u8>, Staple>>> = LazyLock::new(Default::default);

fn fingerprint(cert: &openssl::x509::X509Ref) -> Option<Vec<u8>> {
    cert.digest(MessageDigest::sha256())
        .ok()
        .map(|d| d.to_vec())
}

/// Staples the response for the certificate chosen for this handshake, if
/// the client asked for one and a current response is held.
pub(crate) fn install(ctx: &mut SslContextBuilder) -> Result<(), openssl::error::ErrorStack> {
    ctx.set_status_callback(staple)
}

fn staple(ssl: &mut SslRef) -> Result<bool, openssl::error::ErrorStack> {
    let Some(fp) = ssl.certificate().and_then(fingerprint) else {
        return Ok(false);
    };
    let found = STAPLES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&fp)
        .filter(|s| s.next_update > unix_now())
        .map(|s| s.der.clone());
    match found {
        Some(der) => {
            ssl.set_ocsp_status(&der)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Whether a current response is held for this certificate.
pub(crate) fn is_stapled(cert: &CertKey) -> bool {
    fingerprint(&cert.chain[0]).is_some_and(|fp| {
        STAPLES
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fp)
            .is_some_and(|s| s.next_update > unix_now())
    })
}

/// GeneralizedTime as a Unix time (the two ASN.1 time types share one C
/// representation, which `ASN1_TIME_diff` accepts).
fn generalized_unix(t: &openssl::asn1::Asn1GeneralizedTimeRef) -> i64 {
    // SAFETY: ASN1_GENERALIZEDTIME and ASN1_TIME are both ASN1_STRING.
    let t = unsafe { Asn1TimeRef::from_ptr(t.as_ptr().cast()) };
    unix_time(t)
}

/// One certificate to staple for.
struct Target {
    cert: Arc<CertKey>,
    url: String,
    fp: Vec<u8>,
}

fn target(cert: &Arc<CertKey>) -> Option<Target> {
    let leaf = &cert.chain[0];
    let url = leaf
        .ocsp_responders()
        .ok()?
        .iter()
        .map(|u| u.to_string())
        .find(|u| u.starts_with("http://"))?;
    if cert.chain.len() < 2 {
        log::info!(
            "OCSP: {:?} names a responder but its file has no issuer certificate after it; not stapling",
            cert.names
        );
        return None;
    }
    Some(Target {
        fp: fingerprint(leaf)?,
        cert: cert.clone(),
        url,
    })
}

/// Checks a DER response for `t`: successful, signed by the issuer (or a
/// responder it delegated to), about this certificate, current, not
/// `unknown`.
fn check(t: &Target, der: &[u8]) -> Result<Staple, String> {
    fn e(what: &'static str) -> impl Fn(openssl::error::ErrorStack) -> String {
        move |err| format!("{what}: {err}")
    }
    let (leaf, issuer) = (&t.cert.chain[0], &t.cert.chain[1]);
    let resp = OcspResponse::from_der(der).map_err(e("not an OCSP response"))?;
    if resp.status() != OcspResponseStatus::SUCCESSFUL {
        return Err(format!("responder status {:?}", resp.status()));
    }
    let basic = resp.basic().map_err(e("no basic response"))?;
    let mut store = X509StoreBuilder::new().map_err(e("store"))?;
    store.add_cert(issuer.clone()).map_err(e("store"))?;
    // The issuer comes from our own chain file: trust it as an anchor even
    // when it is an intermediate.
    store
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(e("store"))?;
    let store = store.build();
    let mut certs = Stack::new().map_err(e("stack"))?;
    certs.push(issuer.clone()).map_err(e("stack"))?;
    basic
        .verify(&certs, &store, OcspFlag::TRUST_OTHER)
        .map_err(e("signature does not verify"))?;
    let id = OcspCertId::from_cert(MessageDigest::sha1(), leaf, issuer).map_err(e("cert id"))?;
    let status = basic
        .find_status(&id)
        .ok_or("the response is not about this certificate")?;
    status
        .check_validity(300, None)
        .map_err(e("outside its validity window"))?;
    if status.status == OcspCertStatus::UNKNOWN {
        return Err("the responder does not know this certificate".into());
    }
    if status.status == OcspCertStatus::REVOKED {
        log::error!("OCSP: the certificate for {:?} is REVOKED", t.cert.names);
    }
    let this_update = generalized_unix(status.this_update);
    // Without nextUpdate a response is "fresh at any time" (RFC 6960);
    // treat it as good for a day and ask again after half of that.
    let next_update = status
        .next_update()
        .map_or(this_update + 86_400, generalized_unix);
    Ok(Staple {
        der: Arc::new(der.to_vec()),
        this_update,
        next_update,
    })
}

fn request_der(t: &Target) -> Result<Vec<u8>, openssl::error::ErrorStack> {
    let id = OcspCertId::from_cert(MessageDigest::sha1(), &t.cert.chain[0], &t.cert.chain[1])?;
    let mut req = OcspRequest::new()?;
    req.add_id(id)?;
    req.to_der()
}

/// Largest response body accepted.
const MAX_RESPONSE: usize = 64 * 1024;

async fn fetch(url: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Full, Limited};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
    let req = http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("HTTP {}", resp.status()));
    }
    let body = tokio::time::timeout(
        Duration::from_secs(10),
        Limited::new(resp.into_body(), MAX_RESPONSE).collect(),
    )
    .await
    .map_err(|_| "body timed out".to_string())?
    .map_err(|e| format!("body: {e}"))?;
    Ok(body.to_bytes().to_vec())
}

/// Per-certificate fetch state kept by the service.
#[derive(Default)]
struct Attempts {
    /// Unix time of the next fetch.
    next: i64,
    failures: u32,
}

/// The background service: collects the certificates being served (ACME
/// ones change), keeps their responses current.
pub(crate) struct OcspService {
    pub(crate) listeners: Vec<Arc<super::listener::ListenerTls>>,
    /// Where responses are kept between starts.
    pub(crate) cache: PathBuf,
}

impl OcspService {
    fn cache_file(&self, t: &Target) -> PathBuf {
        let hex: String = t.fp.iter().take(16).map(|b| format!("{b:02x}")).collect();
        self.cache.join(format!("{hex}.der"))
    }

    async fn round(&self, attempts: &mut HashMap<Vec<u8>, Attempts>) -> Duration {
        let now = unix_now();
        let mut targets: Vec<Target> = self
            .listeners
            .iter()
            .flat_map(|l| l.served())
            .filter_map(|c| target(&c))
            .collect();
        targets.sort_by(|a, b| a.fp.cmp(&b.fp));
        targets.dedup_by(|a, b| a.fp == b.fp);
        let mut sleep = 60;
        for t in &targets {
            let held = STAPLES
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&t.fp)
                .cloned();
            let held = match held {
                Some(h) => Some(h),
                None => self.load_cached(t),
            };
            let a = attempts.entry(t.fp.clone()).or_default();
            let refresh_at = held
                .as_ref()
                .map_or(now, |h| h.this_update + (h.next_update - h.this_update) / 2);
            if now >= refresh_at.max(a.next) {
                match self.fetch_checked(t).await {
                    Ok(staple) => {
                        metrics::OCSP_FETCHES.with_label_values(&["ok"]).inc();
                        let _ = std::fs::write(self.cache_file(t), staple.der.as_slice());
                        a.failures = 0;
                        a.next = 0;
                        STAPLES
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(t.fp.clone(), staple);
                    }
                    Err(e) => {
                        metrics::OCSP_FETCHES.with_label_values(&["failed"]).inc();
                        a.failures += 1;
                        let wait = (30i64 << a.failures.min(7)).min(3600);
                        a.next = now + wait;
                        log::warn!(
                            "OCSP: {} for {:?}: {e}; {}; next try in {wait}s",
                            t.url,
                            t.cert.names,
                            match &held {
                                Some(h) if h.next_update > now =>
                                    "stapling the last good response until its nextUpdate",
                                _ => "stapling nothing",
                            }
                        );
                    }
                }
            }
            // Past nextUpdate: stop stapling what we hold.
            let mut staples = STAPLES.write().unwrap_or_else(|e| e.into_inner());
            if staples.get(&t.fp).is_some_and(|s| s.next_update <= now) {
                staples.remove(&t.fp);
                log::warn!(
                    "OCSP: the response for {:?} expired; stapling nothing",
                    t.cert.names
                );
            }
            if let Some(s) = staples.get(&t.fp) {
                let half = s.this_update + (s.next_update - s.this_update) / 2;
                sleep = sleep
                    .min((half.max(a.next) - now).max(1))
                    .min((s.next_update - now).max(1));
            } else {
                sleep = sleep.min((a.next - now).max(1));
            }
        }
        Duration::from_secs(sleep as u64)
    }

    /// Loads the responses kept by a previous start, so that the first
    /// handshakes of this one are stapled (called before the server runs).
    pub(crate) fn preload(&self) {
        for l in &self.listeners {
            for c in l.served() {
                if let Some(t) = target(&c) {
                    self.load_cached(&t);
                }
            }
        }
    }

    /// A cached response from a previous start, checked like a fetched one.
    fn load_cached(&self, t: &Target) -> Option<Staple> {
        let der = std::fs::read(self.cache_file(t)).ok()?;
        match check(t, &der) {
            Ok(s) if s.next_update > unix_now() => {
                STAPLES
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(t.fp.clone(), s.clone());
                Some(s)
            }
            _ => None,
        }
    }

    async fn fetch_checked(&self, t: &Target) -> Result<Staple, String> {
        let der = request_der(t).map_err(|e| format!("request: {e}"))?;
        let body = fetch(&t.url, der).await?;
        check(t, &body)
    }
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for OcspService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        for result in ["ok", "failed"] {
            metrics::OCSP_FETCHES.with_label_values(&[result]);
        }
        if let Err(e) = std::fs::create_dir_all(&self.cache) {
            log::warn!(
                "OCSP: cannot create {}: {e}; responses are not kept between starts",
                self.cache.display()
            );
        }
        let mut attempts = HashMap::new();
        loop {
            let wait = tokio::select! {
                _ = shutdown.changed() => return,
                w = self.round(&mut attempts) => w,
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
