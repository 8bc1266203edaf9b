//! Answers the CA's validation while an order is open.
//!
//! * HTTP-01: `GET /.well-known/acme-challenge/<token>` on a plain listener
//!   answers the key authorization. The answer is also written under
//!   `storage/challenges/`, so a node sharing the folder answers for the
//!   node that ordered (the CA may reach any node behind the name).
//! * TLS-ALPN-01 (RFC 8737): a handshake that offers only the `acme-tls/1`
//!   protocol gets a self-signed certificate for the name carrying the
//!   digest of the key authorization in a critical `acmeIdentifier`
//!   extension; nothing else is served on such a connection.

use crate::tls::certs::CertKey;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, RwLock};

/// The ALPN protocol of TLS-ALPN-01, as it appears on the wire.
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01.
pub(crate) const HTTP_PREFIX: &str = "/.well-known/acme-challenge/";

/// HTTP-01 answers by token.
static HTTP: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);

/// TLS-ALPN-01 certificates by name.
static ALPN: LazyLock<RwLock<HashMap<String, Arc<CertKey>>>> = LazyLock::new(Default::default);

/// The storage folders of this generation's ACME listeners, where other
/// nodes' HTTP-01 answers may be.
static SHARED: LazyLock<RwLock<Vec<PathBuf>>> = LazyLock::new(Default::default);

pub(super) fn share_storage(dir: PathBuf) {
    let mut dirs = SHARED.write().unwrap_or_else(|e| e.into_inner());
    if !dirs.contains(&dir) {
        dirs.push(dir);
    }
}

/// The HTTP-01 answer for a request path, if it asks for a known token.
pub(crate) fn http_answer(path: &str) -> Option<String> {
    let token = path.strip_prefix(HTTP_PREFIX)?;
    if let Some(a) = HTTP.read().unwrap_or_else(|e| e.into_inner()).get(token) {
        return Some(a.clone());
    }
    SHARED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find_map(|dir| super::store::shared_challenge(dir, token))
}

pub(super) fn publish_http(token: &str, answer: &str) {
    HTTP.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(token.to_string(), answer.to_string());
}

pub(super) fn withdraw_http(token: &str) {
    HTTP.write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(token);
}

/// Builds and publishes the TLS-ALPN-01 certificate for `name`.
pub(super) fn publish_alpn(name: &str, digest: &[u8]) -> Result<(), openssl::error::ErrorStack> {
    use openssl::asn1::{Asn1Object, Asn1OctetString};
    use openssl::x509::X509Extension;
    let mut cert = crate::tls::certs::self_signed(&[name.to_string()])?;
    // id-pe-acmeIdentifier; its value is the DER of an OCTET STRING (SIZE 32).
    let oid = Asn1Object::from_str("1.3.6.1.5.5.7.1.31")?;
    let mut der = vec![0x04, digest.len() as u8];
    der.extend_from_slice(digest);
    let value = Asn1OctetString::new_from_bytes(&der)?;
    let ext = X509Extension::new_from_der(&oid, true, &value)?;
    // Rebuild with the extension: self_signed gives the key and names.
    let leaf = &cert.chain[0];
    let mut b = openssl::x509::X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(leaf.serial_number())?;
    b.set_subject_name(leaf.subject_name())?;
    b.set_issuer_name(leaf.issuer_name())?;
    b.set_pubkey(&cert.key)?;
    b.set_not_before(leaf.not_before())?;
    b.set_not_after(leaf.not_after())?;
    let mut san = openssl::x509::extension::SubjectAlternativeName::new();
    san.dns(name);
    let san = san.build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.append_extension(ext)?;
    b.sign(&cert.key, openssl::hash::MessageDigest::sha256())?;
    cert.chain = vec![b.build()];
    ALPN.write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), Arc::new(cert));
    Ok(())
}

pub(super) fn withdraw_alpn(name: &str) {
    ALPN.write().unwrap_or_else(|e| e.into_inner()).remove(name);
}

/// The TLS-ALPN-01 certificate for a name being validated now.
pub(crate) fn alpn_certificate(name: &str) -> Option<Arc<CertKey>> {
    ALPN.read()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .cloned()
}

/// Whether a client's ALPN list (wire format) is exactly `acme-tls/1`, as
/// RFC 8737 §3 requires of the validator.
pub(crate) fn is_validation(alpn_wire: &[u8]) -> bool {
    alpn_wire.first() == Some(&(ACME_TLS_ALPN.len() as u8)) && &alpn_wire[1..] == ACME_TLS_ALPN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_alpn_is_only_acme_tls() {
        assert!(is_validation(b"\x0aacme-tls/1"));
        assert!(!is_validation(b"\x02h2\x0aacme-tls/1"));
        assert!(!is_validation(b""));
    }

    #[test]
    fn alpn_certificate_carries_the_digest_in_a_critical_extension() {
        let digest = [7u8; 32];
        publish_alpn("alpn.example.test", &digest).unwrap();
        let cert = alpn_certificate("alpn.example.test").unwrap();
        let der = cert.chain[0].to_der().unwrap();
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        // id-pe-acmeIdentifier, critical (BOOLEAN TRUE), then extnValue: an
        // OCTET STRING holding the DER OCTET STRING (04 20) of the digest.
        let mut ext = vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f];
        ext.extend_from_slice(&[0x01, 0x01, 0xff, 0x04, 0x22, 0x04, 0x20]);
        ext.extend_from_slice(&digest);
        assert!(has(&ext), "acmeIdentifier extension missing or malformed");
        assert_eq!(cert.names, vec!["alpn.example.test".to_string()]);
        withdraw_alpn("alpn.example.test");
        assert!(alpn_certificate("alpn.example.test").is_none());
    }
}
