//! TLS and the HTTP version towards a pool's backends. Verification is on
//! by default, against the system roots or a configured CA bundle, with the
//! backend's name as SNI. Pingora skips verification entirely when the SNI
//! is empty, so a pool whose backends are IP addresses must name the SNI
//! unless verification is explicitly off.

use super::certs;
use crate::config::{ConfigErrors, UpstreamProtocol, UpstreamTlsConfig};
use openssl::x509::X509;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::CertKey;
use std::net::IpAddr;
use std::sync::Arc;

/// HTTP/2 streams multiplexed on one origin connection.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// How a pool's backends are spoken to.
pub struct UpstreamTransport {
    tls: Option<Tls>,
    protocol: UpstreamProtocol,
    /// Keeps connections of pools with different TLS settings apart in
    /// Pingora's connection pool, whose key ignores the CA and the ALPN.
    group_key: u64,
}

struct Tls {
    sni: Option<String>,
    verify: bool,
    ca: Option<Arc<Box<[X509]>>>,
    client: Option<Arc<CertKey>>,
}

impl UpstreamTransport {
    /// `addresses` are the backends as written (for the default SNI).
    pub fn build(
        pool: &str,
        tls: Option<&UpstreamTlsConfig>,
        protocol: UpstreamProtocol,
        addresses: &[&str],
        errs: &mut ConfigErrors,
    ) -> UpstreamTransport {
        let at = |key: &str| format!("upstreams.{pool}.{key}");
        if protocol == UpstreamProtocol::Http2 && tls.is_none() {
            errs.push(
                at("protocol"),
                "http2 is negotiated over TLS; add `tls`, or use h2c for cleartext HTTP/2",
            );
        }
        if protocol == UpstreamProtocol::H2c && tls.is_some() {
            errs.push(at("protocol"), "h2c is cleartext; with `tls` use http2");
        }
        let tls = tls.map(|cfg| {
            if cfg.verify && cfg.sni.as_deref().is_some_and(|s| s.trim().is_empty()) {
                // Pingora would skip verification entirely for an empty SNI.
                errs.push(
                    at("tls.sni"),
                    "an empty name cannot be verified; name the certificate (or tls.verify: false)",
                );
            }
            if cfg.verify && cfg.sni.is_none() {
                for (i, a) in addresses.iter().enumerate() {
                    if host_of(a).parse::<IpAddr>().is_ok() {
                        errs.push(
                            at(&format!("backends[{i}].address")),
                            "an IP address cannot be verified; set tls.sni to the certificate's name (or tls.verify: false)",
                        );
                    }
                }
            }
            let ca = cfg.ca.as_ref().and_then(|file| {
                certs::load_bundle(file, &at("tls.ca"), errs)
                    .map(|v| Arc::new(v.into_boxed_slice()))
            });
            let client = cfg.client_cert.as_ref().and_then(|c| {
                certs::load(c, &at("tls.client_cert"), errs)
                    .map(|ck| Arc::new(CertKey::new(ck.chain, ck.key)))
            });
            Tls {
                sni: cfg.sni.clone(),
                verify: cfg.verify,
                ca,
                client,
            }
        });
        let group_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            pool.hash(&mut h);
            h.finish()
        };
        UpstreamTransport {
            tls,
            protocol,
            group_key,
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The SNI for a backend written as `address`.
    pub fn sni_for(&self, address: &str) -> String {
        match &self.tls {
            Some(t) => t
                .sni
                .clone()
                .unwrap_or_else(|| host_of(address).to_string()),
            None => String::new(),
        }
    }

    /// Applies TLS and the protocol to a peer; `upgrade` forces HTTP/1.1
    /// (WebSocket and other upgrades exist only there).
    pub fn apply(&self, peer: &mut HttpPeer, upgrade: bool) {
        peer.group_key = self.group_key;
        let o = &mut peer.options;
        if let Some(t) = &self.tls {
            o.verify_cert = t.verify;
            o.verify_hostname = t.verify;
            o.ca = t.ca.clone();
            peer.client_cert_key = t.client.clone();
        }
        o.alpn = match (self.protocol, upgrade) {
            (_, true) | (UpstreamProtocol::Http1, _) => ALPN::H1,
            (UpstreamProtocol::Http2, false) => ALPN::H2H1,
            (UpstreamProtocol::H2c, false) => ALPN::H2,
        };
        if o.alpn != ALPN::H1 {
            o.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
    }
}

/// `example.com` of `example.com:443`, `::1` of `[::1]:443`.
fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part_of_addresses() {
        assert_eq!(host_of("origin.example:8443"), "origin.example");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("10.0.0.1:443"), "10.0.0.1");
    }

    #[test]
    fn ip_backends_need_an_sni_to_verify() {
        let cfg: UpstreamTlsConfig = serde_yaml::from_str("{}").unwrap();
        let mut errs = ConfigErrors::default();
        UpstreamTransport::build(
            "p",
            Some(&cfg),
            UpstreamProtocol::Http1,
            &["10.0.0.1:443", "origin.example:443"],
            &mut errs,
        );
        assert_eq!(errs.len(), 1, "{errs}");
        assert!(errs
            .to_string()
            .starts_with("upstreams.p.backends[0].address: an IP address cannot be verified"));
        let mut errs = ConfigErrors::default();
        let t = UpstreamTransport::build(
            "p",
            None,
            UpstreamProtocol::Http2,
            &["origin.example:443"],
            &mut errs,
        );
        assert!(errs.to_string().contains("upstreams.p.protocol"), "{errs}");
        assert_eq!(t.sni_for("origin.example:443"), "");
    }
}
