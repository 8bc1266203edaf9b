//! Automatic certificates (ACME, RFC 8555) for a TLS listener.
//!
//! * [`Managed`]: the checked `tls.acme` settings and the certificate being
//!   served, swapped in place when a new one arrives (handshakes read it
//!   lock-free; no reload, no dropped connection).
//! * [`store`]: the files under `storage` — account, certificates,
//!   challenge answers for nodes sharing the folder, and the ordering lease.
//! * [`challenge`]: answers for HTTP-01 (`/.well-known/acme-challenge/`)
//!   and TLS-ALPN-01 (RFC 8737) while an order is validated.
//! * [`issue`]: one order through `instant-acme`.
//! * [`service`]: the background loop: pick up stored certificates, order
//!   when missing or due, back off on failure.

pub(crate) mod challenge;
mod issue;
pub(crate) mod service;
mod store;

use super::certs::CertKey;
use crate::config::{AcmeChallenge, AcmeConfig, ConfigErrors};
use arc_swap::ArcSwapOption;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `tls.acme`, checked.
pub(crate) struct Settings {
    pub directory: String,
    /// `mailto:` URIs.
    pub contact: Vec<String>,
    /// Lowercase, as ordered; the first names the storage folder.
    pub domains: Vec<String>,
    pub challenge: AcmeChallenge,
    pub storage: PathBuf,
    pub ca_root: Option<PathBuf>,
    pub renew_at: f64,
    pub retry: Duration,
    pub retry_max: Duration,
}

/// One listener's ACME certificate: settings and what is served now.
pub(crate) struct Managed {
    pub(crate) settings: Settings,
    current: ArcSwapOption<CertKey>,
}

impl Managed {
    /// Checks `cfg` (at `path`, `listeners[i].tls.acme`) and picks up a valid
    /// certificate already in storage, so a restart or reload serves it at
    /// once and never orders again while it is valid.
    pub(crate) fn build(cfg: &AcmeConfig, path: &str, errs: &mut ConfigErrors) -> Option<Managed> {
        let before = errs.len();
        let at = |key: &str| format!("{path}.{key}");
        if !(cfg.directory.starts_with("https://") || cfg.directory.starts_with("http://")) {
            errs.push(at("directory"), "must be an https:// URL");
        }
        if cfg.domains.is_empty() {
            errs.push(at("domains"), "at least one name is needed");
        }
        let mut domains = Vec::new();
        for (i, d) in cfg.domains.iter().enumerate() {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d.starts_with("*.") {
                errs.push(
                    format!("{path}.domains[{i}]"),
                    "wildcard names need the dns-01 challenge, which Parapet does not answer",
                );
            } else if !valid_dns_name(&d) {
                errs.push(format!("{path}.domains[{i}]"), "not a DNS name");
            } else if domains.contains(&d) {
                errs.push(
                    format!("{path}.domains[{i}]"),
                    format!("{d} is listed twice"),
                );
            } else {
                domains.push(d);
            }
        }
        let contact = match &cfg.email {
            Some(e) if !e.contains('@') || e.contains(char::is_whitespace) => {
                errs.push(at("email"), "not an email address");
                Vec::new()
            }
            Some(e) => vec![format!("mailto:{}", e.trim_start_matches("mailto:"))],
            None => Vec::new(),
        };
        if !(cfg.renew_at > 0.0 && cfg.renew_at < 1.0) {
            errs.push(
                at("renew_at"),
                "a share of the lifetime between 0 and 1, e.g. 0.66",
            );
        }
        let duration = |key: &str, text: &str, errs: &mut ConfigErrors| {
            crate::config::units::parse_positive_duration(text)
                .map_err(|e| errs.push(at(key), e))
                .ok()
        };
        let retry = duration("retry", &cfg.retry, errs);
        let retry_max = duration("retry_max", &cfg.retry_max, errs);
        if let (Some(r), Some(m)) = (retry, retry_max) {
            if m < r {
                errs.push(at("retry_max"), "shorter than retry");
            }
        }
        if let Some(root) = &cfg.ca_root {
            if let Err(e) = std::fs::read(root) {
                errs.push(at("ca_root"), format!("cannot read {root}: {e}"));
            }
        }
        let storage = PathBuf::from(&cfg.storage);
        if let Err(e) = store::prepare(&storage) {
            errs.push(at("storage"), e);
        }
        if errs.len() > before {
            return None;
        }
        let settings = Settings {
            directory: cfg.directory.clone(),
            contact,
            domains,
            challenge: cfg.challenge,
            storage,
            ca_root: cfg.ca_root.as_ref().map(PathBuf::from),
            renew_at: cfg.renew_at,
            retry: retry?,
            retry_max: retry_max?,
        };
        let managed = Managed {
            current: ArcSwapOption::empty(),
            settings,
        };
        if let Some(stored) = store::load_certificate(&managed.settings) {
            managed.current.store(Some(Arc::new(stored)));
        }
        Some(managed)
    }

    /// The certificate served now, if one was obtained.
    pub(crate) fn current(&self) -> Option<Arc<CertKey>> {
        self.current.load_full()
    }

    /// Whether this certificate is meant for `name` (lowercase, no dot at
    /// the end).
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.settings.domains.iter().any(|d| d == name)
    }

    /// Serves `cert` from the next handshake on.
    fn install(&self, cert: CertKey) {
        super::certs::publish_expiry(&cert, "acme");
        self.current.store(Some(Arc::new(cert)));
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1..=63, at least
/// two labels, 253 bytes in all.
fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::valid_dns_name;

    #[test]
    fn dns_names() {
        for good in ["example.com", "a-b.example.com", "edge.parapet.test"] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in [
            "localhost",
            "-a.example.com",
            "a..b",
            "a_b.example.com",
            "ex ample.com",
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }
}
