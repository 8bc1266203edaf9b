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

/// A chain and key from PEM bytes (ACME storage), with the checks [`load`]
/// makes: the key belongs to the leaf, and the leaf is inside its validity.
pub(crate) fn from_pem(chain: &[u8], key: &[u8]) -> Result<CertKey, String> {
    let chain = X509::stack_from_pem(chain).map_err(|e| format!("not a PEM chain: {e}"))?;
    let key = PKey::private_key_from_pem(key).map_err(|e| format!("not a PEM key: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the chain")?;
    if !leaf.public_key().is_ok_and(|p| p.public_eq(&key)) {
        return Err("the key does not belong to the certificate".into());
    }
    let now = unix_now();
    if unix_time(leaf.not_after()) <= now {
        return Err(format!("expired on {}", leaf.not_after()));
    }
    if unix_time(leaf.not_before()) > now + 300 {
        return Err(format!("not valid before {}", leaf.not_before()));
    }
    let names = names(leaf);
    Ok(CertKey { chain, key, names })
}

/// Seconds since the Unix epoch of an ASN.1 time.
pub(crate) fn unix_time(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let epoch = Asn1Time::from_unix(0).expect("the epoch is a valid time");
    epoch
        .diff(t)
        .map(|d| i64::from(d.days) * 86_400 + i64::from(d.secs))
        .unwrap_or(0)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Sets `parapet_tls_certificate_expiry_seconds` (the leaf's notAfter as a
/// Unix time) for each of the certificate's names.
pub(crate) fn publish_expiry(cert: &CertKey, source: &str) {
    let expiry = unix_time(cert.chain[0].not_after()) as f64;
    for name in &cert.names {
        crate::metrics::TLS_CERTIFICATE_EXPIRY
            .with_label_values(&[name, source])
            .set(expiry);
    }
}

/// A self-signed certificate for `names` (P-256, valid a week), served by an
/// ACME listener until the CA has issued its certificate.
pub(crate) fn self_signed(names: &[String]) -> Result<CertKey, openssl::error::ErrorStack> {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::X509NameBuilder;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, names.first().map_or("parapet", |n| n))?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = openssl::bn::BigNum::new()?;
    serial.rand(120, openssl::bn::MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(7)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    if !names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for n in names {
            san.dns(n);
        }
        let ext = san.build(&b.x509v3_context(None, None))?;
        b.append_extension(ext)?;
    }
    b.sign(&key, MessageDigest::sha256())?;
    Ok(CertKey {
        chain: vec![b.build()],
        key,
        names: names.to_vec(),
    })
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
    name_line(cert.subject_name())
}

/// A distinguished name as [`subject_line`] writes it.
pub(crate) fn name_line(name: &openssl::x509::X509NameRef) -> String {
    let mut parts = Vec::new();
    for entry in name.entries() {
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
