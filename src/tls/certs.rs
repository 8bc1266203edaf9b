//! Certificates and keys from PEM files, checked when the config is loaded:
//! unreadable files, a key that does not belong to the certificate, and a
//! certificate outside its validity period are config errors naming the
//! YAML path, so a bad renewal is refused by `-t` and by a reload instead of
//! breaking handshakes.

use crate::config::{CertificateConfig, ConfigErrors};
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

/// A leaf certificate with its chain and key, and the names it serves.
pub(crate) struct CertKey {
    /// Leaf first, then intermediates.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// Lowercase DNS names from the SAN extension (the subject CN only when
    /// there is no SAN); `*.example.com` for wildcards.
    pub names: Vec<String>,
}

fn read(path: &str, yaml_path: &str, errs: &mut ConfigErrors) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            errs.push(yaml_path, format!("cannot read {path}: {e}"));
            None
        }
    }
}

/// Reads every certificate of a PEM bundle (a CA file).
pub(crate) fn load_bundle(
    path: &str,
    yaml_path: &str,
    errs: &mut ConfigErrors,
) -> Option<Vec<X509>> {
    let pem = read(path, yaml_path, errs)?;
    match X509::stack_from_pem(&pem) {
        Ok(certs) if !certs.is_empty() => Some(certs),
        Ok(_) => {
            errs.push(yaml_path, format!("{path} holds no PEM certificate"));
            None
        }
        Err(e) => {
            errs.push(
                yaml_path,
                format!("{path} is not a PEM certificate bundle: {e}"),
            );
            None
        }
    }
}

/// Loads and checks one `{cert, key}` pair; `yaml_path` names it in errors.
pub(crate) fn load(
    cfg: &CertificateConfig,
    yaml_path: &str,
    errs: &mut ConfigErrors,
) -> Option<CertKey> {
    let cert_path = format!("{yaml_path}.cert");
    let key_path = format!("{yaml_path}.key");
    let chain = load_bundle(&cfg.cert, &cert_path, errs);
    let key = read(&cfg.key, &key_path, errs).and_then(|pem| {
        PKey::private_key_from_pem(&pem)
            .map_err(|e| {
                errs.push(
                    &key_path,
                    format!("{} is not a PEM private key: {e}", cfg.key),
                )
            })
            .ok()
    });
    let (chain, key) = (chain?, key?);
    let leaf = &chain[0];
    match leaf.public_key() {
        Ok(public) if public.public_eq(&key) => {}
        _ => {
            errs.push(
                &key_path,
                format!("{} is not the private key of {}", cfg.key, cfg.cert),
            );
            return None;
        }
    }
    let Ok(now) = Asn1Time::days_from_now(0) else {
        errs.push(
            &cert_path,
            "cannot read the clock to check the validity period",
        );
        return None;
    };
    if leaf.not_after() < now {
        errs.push(
            &cert_path,
            format!("{} expired on {}", cfg.cert, leaf.not_after()),
        );
        return None;
    }
    if leaf.not_before() > now {
        errs.push(
            &cert_path,
            format!("{} is not valid before {}", cfg.cert, leaf.not_before()),
        );
        return None;
    }
    let names = names(leaf);
    Some(CertKey { chain, key, names })
}

fn names(cert: &X509) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| {
                    n.dnsname()
                        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
            .collect();
    }
    names
}

/// A certificate's subject as `C=NL,O=Example,CN=alice`: its entries in
/// certificate order, commas in values escaped, control characters dropped.
pub(crate) fn subject_line(cert: &openssl::x509::X509Ref) -> String {
    let mut parts = Vec::new();
    for entry in cert.subject_name().entries() {
        let key = entry.object().nid().short_name().unwrap_or("?");
        let value = entry.data().to_string().unwrap_or_default();
        // Header-safe: no control characters, commas in values escaped.
        let value: String = value
            .chars()
            .filter(|c| !c.is_control())
            .flat_map(|c| {
                if c == ',' || c == '\\' {
                    vec!['\\', c]
                } else {
                    vec![c]
                }
            })
            .collect();
        parts.push(format!("{key}={value}"));
    }
    parts.join(",")
}
