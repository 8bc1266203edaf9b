//! TLS on a listener: the certificate chosen by SNI in the handshake, the
//! protocol profile, client certificates, and what the handshake learnt
//! (SNI, the verified client identity) handed to the request hooks.

use super::acme::{challenge, Managed};
use super::certs::{self, CertKey};
use crate::config::{AcmeChallenge, ClientAuth, ConfigErrors, ListenerTlsConfig};
use crate::metrics;
use async_trait::async_trait;
use openssl::ssl::{AlpnError, NameType, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// Key exchange groups of Mozilla's "intermediate" profile. OpenSSL's
/// defaults also offer X448 and secp521r1, which the profile leaves out.
const GROUPS: &str = "X25519:P-256:P-384";

/// TLS 1.2 ciphers of Mozilla's "intermediate" profile (TLS 1.3 suites are
/// all acceptable and left at OpenSSL's defaults).
const CIPHERS_TLS12: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:\
DHE-RSA-CHACHA20-POLY1305";

/// The certificates of one listener, by name.
pub(crate) struct SniCerts {
    /// Obtained and renewed by ACME; served for its names once it exists.
    acme: Option<Arc<Managed>>,
    /// `default` is the self-signed stand-in (no certificate files).
    stand_in: bool,
    exact: HashMap<String, Arc<CertKey>>,
    /// `example.com` for a `*.example.com` certificate.
    wildcard: HashMap<String, Arc<CertKey>>,
    default: Arc<CertKey>,
}

impl SniCerts {
    /// The certificate for a server name: exact name, then a wildcard one
    /// label deep (`*.example.com` covers `a.example.com`, not
    /// `a.b.example.com` or `example.com`), then the default.
    ///
    /// An ACME certificate, once obtained, comes first for its names, and is
    /// the default when no certificate files are configured (until then a
    /// self-signed stand-in is).
    pub(crate) fn pick(&self, server_name: Option<&str>) -> Arc<CertKey> {
        let name = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        if let Some(m) = &self.acme {
            let wanted = name.as_deref().is_none_or(|n| m.covers(n));
            if wanted || self.exact.is_empty() && self.wildcard.is_empty() {
                if let Some(c) = m.current() {
                    return c;
                }
            }
        }
        let Some(name) = name else {
            return self.default.clone();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .unwrap_or(&self.default)
            .clone()
    }
}

/// What the handshake learnt, available to every request on the connection
/// through the TLS digest.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsInfo {
    /// A client certificate the handshake verified.
    pub client: Option<ClientIdentity>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ClientIdentity {
    /// `C=..,O=..,CN=..`
    pub subject: String,
}

/// A listener's TLS configuration, built at load.
pub struct ListenerTls {
    certs: Arc<SniCerts>,
    min_version: SslVersion,
    client_auth: ClientAuth,
    client_ca: Vec<X509>,
    /// Session tickets under the keys every generation shares.
    shared_tickets: bool,
}

impl ListenerTls {
    pub fn build(
        cfg: &ListenerTlsConfig,
        path: &str,
        shared_tickets: bool,
        errs: &mut ConfigErrors,
    ) -> Option<ListenerTls> {
        let min_version = match cfg.min_version.as_str() {
            "1.2" => SslVersion::TLS1_2,
            "1.3" => SslVersion::TLS1_3,
            other => {
                errs.push(
                    format!("{path}.min_version"),
                    format!("{other:?} is not offered; use \"1.2\" or \"1.3\""),
                );
                SslVersion::TLS1_2
            }
        };
        if cfg.certificates.is_empty() && cfg.acme.is_none() {
            errs.push(
                format!("{path}.certificates"),
                "at least one certificate is needed (or `acme` to obtain one)",
            );
        }
        let acme = cfg
            .acme
            .as_ref()
            .map(|a| Managed::build(a, &format!("{path}.acme"), errs).map(Arc::new));
        let loaded: Vec<Option<CertKey>> = cfg
            .certificates
            .iter()
            .enumerate()
            .map(|(i, c)| certs::load(c, &format!("{path}.certificates[{i}]"), errs))
            .collect();
        let client_ca = match (cfg.client_auth, &cfg.client_ca) {
            (ClientAuth::Off, None) => Vec::new(),
            (ClientAuth::Off, Some(_)) => {
                errs.push(
                    format!("{path}.client_ca"),
                    "set client_auth to optional or required to use it",
                );
                Vec::new()
            }
            (_, None) => {
                errs.push(
                    format!("{path}.client_ca"),
                    "client certificates need a CA bundle to verify them against",
                );
                Vec::new()
            }
            (_, Some(file)) => {
                certs::load_bundle(file, &format!("{path}.client_ca"), errs).unwrap_or_default()
            }
        };
        if let Some(v) = &cfg.hsts {
            if http::HeaderValue::from_str(v).is_err() {
                errs.push(format!("{path}.hsts"), "not a valid header value");
            }
        }
        if loaded.iter().any(Option::is_none) || matches!(acme, Some(None)) {
            return None;
        }
        let acme = acme.flatten();
        let mut all = loaded.into_iter().flatten().map(Arc::new);
        let default = match (all.next(), &acme) {
            (Some(first), _) => first,
            // Served until the CA has issued: clients see a certificate
            // error, never another site's certificate.
            (None, Some(m)) => match certs::self_signed(&m.settings.domains) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    errs.push(
                        format!("{path}.acme"),
                        format!("cannot make a stand-in certificate: {e}"),
                    );
                    return None;
                }
            },
            (None, None) => return None,
        };
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in std::iter::once(default.clone()).chain(all) {
            for name in &cert.names {
                // The first certificate listed for a name wins.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| cert.clone());
            }
        }
        Some(ListenerTls {
            certs: Arc::new(SniCerts {
                stand_in: cfg.certificates.is_empty(),
                acme,
                exact,
                wildcard,
                default,
            }),
            min_version,
            client_auth: cfg.client_auth,
            client_ca,
            shared_tickets,
        })
    }

    /// The ACME certificate of this listener, if it has one.
    pub(crate) fn acme(&self) -> Option<&Arc<Managed>> {
        self.certs.acme.as_ref()
    }

    /// Every certificate this listener may serve now (files, and the ACME
    /// certificate once obtained).
    pub(crate) fn served(&self) -> Vec<Arc<CertKey>> {
        let mut all: Vec<Arc<CertKey>> = std::iter::once(&self.certs.default)
            .chain(self.certs.exact.values())
            .chain(self.certs.wildcard.values())
            .cloned()
            .collect();
        all.extend(self.acme().and_then(|m| m.current()));
        all.sort_by_key(|c| Arc::as_ptr(c) as usize);
        all.dedup_by_key(|c| Arc::as_ptr(c) as usize);
        all
    }

    /// The certificates for the status page, with where each comes from:
    /// `file`, `acme`, or `stand-in` (the self-signed one served until the
    /// CA has issued).
    pub(crate) fn certificates(&self) -> Vec<(Arc<CertKey>, &'static str)> {
        let acme = self.acme().and_then(|m| m.current());
        let mut out: Vec<(Arc<CertKey>, &'static str)> = Vec::new();
        if let Some(a) = &acme {
            out.push((a.clone(), "acme"));
        }
        for c in self.served() {
            if acme.as_ref().is_some_and(|a| Arc::ptr_eq(a, &c)) {
                continue;
            }
            let stand_in = self.certs.stand_in && Arc::ptr_eq(&c, &self.certs.default);
            if stand_in && acme.is_some() {
                // No longer served: the ACME certificate is the default now.
                continue;
            }
            out.push((c, if stand_in { "stand-in" } else { "file" }));
        }
        out
    }

    /// Sets the expiry metric of the certificates this listener serves.
    pub(crate) fn publish_expiry(&self) {
        let files = self
            .certs
            .exact
            .values()
            .chain(self.certs.wildcard.values());
        for c in files {
            certs::publish_expiry(c, "file");
        }
        if let Some(c) = self.acme().and_then(|m| m.current()) {
            certs::publish_expiry(&c, "acme");
        }
    }

    /// Pingora's TLS settings for this listener: a fresh acceptor each time
    /// (one per service the listener is added to).
    pub fn settings(&self) -> pingora::Result<TlsSettings> {
        let mut tls = TlsSettings::with_callbacks(Box::new(Handshake {
            certs: self.certs.clone(),
        }))?;
        let e = |what: &str, err: openssl::error::ErrorStack| {
            pingora::Error::because(
                pingora::ErrorType::InternalError,
                format!("TLS {what}"),
                err,
            )
        };
        let alpn_challenge = self
            .acme()
            .is_some_and(|m| m.settings.challenge == AcmeChallenge::TlsAlpn01);
        if alpn_challenge {
            tls.set_alpn_select_callback(select_alpn_or_challenge);
        } else {
            tls.enable_h2();
        }
        tls.set_min_proto_version(Some(self.min_version))
            .map_err(|x| e("minimum version", x))?;
        tls.set_cipher_list(CIPHERS_TLS12)
            .map_err(|x| e("ciphers", x))?;
        tls.set_groups_list(GROUPS).map_err(|x| e("groups", x))?;
        if self.shared_tickets {
            super::tickets::install(&mut tls);
        }
        super::ocsp::install(&mut tls).map_err(|x| e("OCSP stapling", x))?;
        if self.client_auth != ClientAuth::Off {
            let mode = match self.client_auth {
                ClientAuth::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                _ => SslVerifyMode::PEER,
            };
            tls.set_verify(mode);
            for ca in &self.client_ca {
                tls.cert_store_mut()
                    .add_cert(ca.clone())
                    .map_err(|x| e("client CA", x))?;
                tls.add_client_ca(ca).map_err(|x| e("client CA list", x))?;
            }
            // Session resumption with client certificates needs a context id.
            tls.set_session_id_context(b"parapet")
                .map_err(|x| e("session id context", x))?;
        }
        Ok(tls)
    }
}

struct Handshake {
    certs: Arc<SniCerts>,
}

#[async_trait]
impl TlsAccept for Handshake {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let name = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        if ssl.selected_alpn_protocol() == Some(challenge::ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation (TLS 1.3 chooses ALPN first); the
            // ALPN callback installed the challenge certificate already.
            return;
        }
        let cert = self.certs.pick(name.as_deref());
        if !install(ssl, &cert) {
            log::error!("TLS: could not install the certificate for {name:?}");
        }
    }

    async fn handshake_complete_callback(
        &self,
        ssl: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        metrics::TLS_HANDSHAKES.inc();
        if ssl.session_reused() {
            metrics::TLS_RESUMED_HANDSHAKES.inc();
        }
        let client = ssl
            .peer_certificate()
            .filter(|_| ssl.verify_result() == openssl::x509::X509VerifyResult::OK)
            .map(|cert| ClientIdentity {
                subject: certs::subject_line(&cert),
            });
        Some(Arc::new(TlsInfo { client }))
    }
}

fn install(ssl: &mut SslRef, cert: &CertKey) -> bool {
    pingora::tls::ext::ssl_use_certificate(ssl, &cert.chain[0]).is_ok()
        && pingora::tls::ext::ssl_use_private_key(ssl, &cert.key).is_ok()
        && cert.chain[1..]
            .iter()
            .all(|c| pingora::tls::ext::ssl_add_chain_cert(ssl, c).is_ok())
}

/// ALPN on a listener answering TLS-ALPN-01: a client offering only
/// `acme-tls/1` for a name being validated gets that protocol and the
/// challenge certificate (RFC 8737 §3); anyone else gets h2 or HTTP/1.1 as
/// usual. The certificate is installed here as well as skipped in the
/// certificate callback, because OpenSSL runs ALPN before that callback in
/// TLS 1.3 and after it in TLS 1.2.
fn select_alpn_or_challenge<'a>(
    ssl: &mut SslRef,
    offered: &'a [u8],
) -> Result<&'a [u8], AlpnError> {
    if challenge::is_validation(offered) {
        let name = ssl
            .servername(NameType::HOST_NAME)
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
        let cert = name.as_deref().and_then(challenge::alpn_certificate);
        return match cert {
            Some(c) if install(ssl, &c) => {
                log::info!("ACME: answered a TLS-ALPN-01 validation for {name:?}");
                Ok(&offered[1..])
            }
            _ => Err(AlpnError::ALERT_FATAL),
        };
    }
    openssl::ssl::select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
}

/// The handshake's findings for a request's connection, if it came over TLS.
pub(crate) fn info(session: &pingora::proxy::Session) -> Option<&TlsInfo> {
    session
        .digest()?
        .ssl_digest
        .as_ref()?
        .extension
        .get::<TlsInfo>()
}

/// Classifies a failed downstream handshake from Pingora's log message (the
/// only place the reason surfaces) for `parapet_tls_handshake_failures_total`.
pub(crate) fn failure_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("timeout") {
        "timeout"
    } else if m.contains("unsupported protocol")
        || m.contains("wrong version")
        || m.contains("version too low")
    {
        "protocol_version"
    } else if m.contains("http request") {
        "plain_http"
    } else if m.contains("no shared cipher")
        || m.contains("no suitable")
        || m.contains("no shared group")
    {
        "no_shared_cipher"
    } else if m.contains("certificate") {
        "client_certificate"
    } else if m.contains("eof")
        || m.contains("reset")
        || m.contains("broken pipe")
        || m.contains("unexpected eof")
    {
        "closed"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::failure_reason;

    #[test]
    fn openssl_messages_map_to_reasons() {
        for (msg, reason) in [
            ("TLS accept() failed: error:0A000102:SSL routines:tls_early_post_process_client_hello:unsupported protocol", "protocol_version"),
            ("TLS accept() failed: error:0A0000C1:SSL routines:tls_post_process_client_hello:no shared cipher", "no_shared_cipher"),
            ("TLS accept() failed: error:0A0000C7:SSL routines:tls_process_client_certificate:peer did not return a certificate", "client_certificate"),
            ("TLS accept() failed: error:0A000086:SSL routines:tls_post_process_client_certificate:certificate verify failed", "client_certificate"),
            ("TLS accept() failed: error:0A00009C:SSL routines:ssl3_get_record:http request", "plain_http"),
            ("Downstream handshake timeout", "timeout"),
            ("something else", "other"),
        ] {
            assert_eq!(failure_reason(msg), reason, "{msg}");
        }
    }
}
