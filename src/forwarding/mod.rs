//! Forwarding hygiene: what the edge tells origins about the client, and what
//! it hides from clients about the origins.
//!
//! * `X-Forwarded-For`: a client's own value is kept (and appended to) only when
//!   the direct peer is a trusted proxy; otherwise it is replaced by the peer.
//! * `X-Forwarded-Proto` / `X-Forwarded-Host`: likewise kept from trusted peers,
//!   otherwise set from what this edge saw.
//! * The request id: kept from a trusted peer if well-formed, otherwise generated.
//! * Origin response headers named in `hide_response_headers` are removed.

pub(crate) mod request_id;

use crate::cidr::{Cidr, CidrSet};
use crate::config::{ConfigErrors, ForwardingConfig};
use http::header::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::OrErr;
use std::net::IpAddr;
use std::str::FromStr;

pub(crate) use request_id::RequestIdGenerator;

// Pre-built names: passing a &str to insert_header parses it on every request.
const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The built forwarding policy.
pub(crate) struct Forwarding {
    trusted: CidrSet,
    pub request_id_header: HeaderName,
    /// The same name as written on the wire, for Pingora's header API.
    request_id_wire: bytes::Bytes,
    hide: Vec<HeaderName>,
    forwarded: bool,
    via: Option<HeaderValue>,
    server_header: Option<HeaderValue>,
    /// Carries a verified client certificate's subject to origins.
    pub client_cert_header: Option<HeaderName>,
    ids: RequestIdGenerator,
}

/// What the edge knows about the client side of one request.
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    /// The direct TCP peer.
    pub peer: IpAddr,
    /// Whether `peer` is a trusted proxy.
    pub peer_trusted: bool,
    /// The client as best known: `peer`, or from a trusted `X-Forwarded-For`.
    pub ip: IpAddr,
    /// `http` or `https` as seen by this edge.
    pub scheme: &'static str,
}

impl Forwarding {
    pub(crate) fn build(cfg: &ForwardingConfig, errs: &mut ConfigErrors) -> Forwarding {
        let mut nets = Vec::new();
        for (i, text) in cfg.trusted_proxies.iter().enumerate() {
            match Cidr::from_str(text) {
                Ok(n) => nets.push(n),
                Err(e) => errs.push(format!("forwarding.trusted_proxies[{i}]"), e),
            }
        }
        let header_name = |path: String, name: &str, errs: &mut ConfigErrors| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| errs.push(path, format!("invalid header name {name:?}")))
                .ok()
        };
        let request_id_header = header_name(
            "forwarding.request_id_header".into(),
            &cfg.request_id_header,
            errs,
        )
        .unwrap_or(HeaderName::from_static("x-request-id"));
        let hide = cfg
            .hide_response_headers
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                header_name(format!("forwarding.hide_response_headers[{i}]"), n, errs)
            })
            .collect();
        let value = |path: &str, v: &Option<String>, errs: &mut ConfigErrors| {
            v.as_ref().and_then(|v| {
                HeaderValue::from_str(v)
                    .map_err(|_| errs.push(path, format!("invalid header value {v:?}")))
                    .ok()
            })
        };
        let via = value(
            "forwarding.via",
            &cfg.via.as_ref().map(|v| format!("1.1 {v}")),
            errs,
        );
        let server_header = value("forwarding.server_header", &cfg.server_header, errs);
        let client_cert_header = cfg
            .client_cert_header
            .as_ref()
            .and_then(|n| header_name("forwarding.client_cert_header".into(), n, errs));
        Forwarding {
            trusted: CidrSet::new(nets),
            // As configured (e.g. `X-Request-Id`), when valid: origins and
            // clients see the usual spelling.
            request_id_wire: bytes::Bytes::from(
                if HeaderName::from_bytes(cfg.request_id_header.as_bytes()).is_ok() {
                    cfg.request_id_header.clone()
                } else {
                    request_id_header.as_str().to_owned()
                },
            ),
            request_id_header,
            hide,
            forwarded: cfg.forwarded,
            via,
            server_header,
            client_cert_header,
            ids: RequestIdGenerator::new(),
        }
    }

    /// Works out who the client is. With a trusted peer, the client is the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
    /// `fleet_hop`: the request is a signed hop from a fleet peer, trusted
    /// like a configured proxy.
    pub(crate) fn client_info(
        &self,
        peer: IpAddr,
        req: &RequestHeader,
        tls: bool,
        fleet_hop: bool,
    ) -> ClientInfo {
        let peer_trusted = fleet_hop || (!self.trusted.is_empty() && self.trusted.contains(peer));
        let mut ip = peer;
        if peer_trusted {
            let hops = req
                .headers
                .get_all(&XFF)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| IpAddr::from_str(s.trim()).ok())
                .collect::<Vec<_>>();
            for hop in hops.iter().rev() {
                ip = *hop;
                if !self.trusted.contains(*hop) {
                    break;
                }
            }
        }
        ClientInfo {
            peer,
            peer_trusted,
            ip,
            // A fleet hop carries the scheme the first node saw, so every
            // node keys the object the same way.
            scheme: if tls
                || (fleet_hop
                    && req
                        .headers
                        .get(&XFP)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")))
            {
                "https"
            } else {
                "http"
            },
        }
    }

    /// Replaces whatever the client sent in `client_cert_header` with the
    /// subject of the certificate the TLS handshake verified, if any.
    pub(crate) fn client_certificate(
        &self,
        req: &mut RequestHeader,
        verified_subject: Option<&str>,
    ) -> pingora::Result<()> {
        let Some(name) = &self.client_cert_header else {
            return Ok(());
        };
        // Also the same name with `_` for `-`: many application servers
        // (CGI-style HTTP_X_...) read both as one header.
        let forged: Vec<http::HeaderName> = req
            .headers
            .keys()
            .filter(|k| {
                k.as_str().len() == name.as_str().len()
                    && k.as_str()
                        .bytes()
                        .zip(name.as_str().bytes())
                        .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
            })
            .cloned()
            .collect();
        for k in forged {
            req.remove_header(&k);
        }
        if let Some(subject) = verified_subject {
            req.insert_header(name.clone(), subject)?;
        }
        Ok(())
    }

    /// The id for this request: a trusted peer's well-formed id, or a new one.
    pub(crate) fn request_id(&self, client: &ClientInfo, req: &RequestHeader) -> String {
        if client.peer_trusted {
            if let Some(v) = req.headers.get(&self.request_id_header) {
                if request_id::is_acceptable(v.as_bytes()) {
                    // is_acceptable admits only ASCII, so this cannot fail
                    return String::from_utf8_lossy(v.as_bytes()).into_owned();
                }
            }
        }
        self.ids.next_id()
    }

    /// Sets the forwarding headers on the request sent to the origin.
    /// `host` is the host the client asked for.
    ///
    /// This runs for every proxied request, so it avoids what Pingora's
    /// header API makes costly: names go in as `&'static str` (a
    /// `HeaderName` would be copied into a title-case name first), values
    /// are made without the formatting machinery, and the client's own
    /// `Host` value is shared rather than copied when it is the host.
    pub(crate) fn upstream_request(
        &self,
        req: &mut RequestHeader,
        client: &ClientInfo,
        host: &str,
        request_id: &str,
    ) -> pingora::Result<()> {
        let xff = match (client.peer_trusted, joined(req, &XFF)) {
            (true, Some(prev)) => HeaderValue::from_maybe_shared(bytes::Bytes::from(format!(
                "{prev}, {}",
                client.peer
            ))),
            _ => Ok(ip_value(client.peer)),
        }
        .or_err(pingora::ErrorType::InvalidHTTPHeader, "X-Forwarded-For")?;
        req.insert_header("X-Forwarded-For", xff)?;
        if !(client.peer_trusted && req.headers.contains_key(&XFP)) {
            req.insert_header("X-Forwarded-Proto", HeaderValue::from_static(client.scheme))?;
        }
        let keep_host = client.peer_trusted && req.headers.contains_key(&XFH);
        if !keep_host && !host.is_empty() {
            let value = match req.headers.get(http::header::HOST) {
                Some(v) if v.as_bytes() == host.as_bytes() => v.clone(),
                _ => HeaderValue::from_str(host)
                    .or_err(pingora::ErrorType::InvalidHTTPHeader, "X-Forwarded-Host")?,
            };
            req.insert_header("X-Forwarded-Host", value)?;
        }
        if self.forwarded {
            let this = format!(
                "for={};proto={}{}",
                forwarded_node(client.peer),
                client.scheme,
                if host.is_empty() {
                    String::new()
                } else {
                    format!(";host=\"{host}\"")
                }
            );
            let value = match (client.peer_trusted, joined(req, &FORWARDED)) {
                (true, Some(prev)) => format!("{prev}, {this}"),
                _ => this,
            };
            req.insert_header(FORWARDED, value)?;
        }
        req.insert_header(self.request_id_wire.clone(), request_id)?;
        if let Some(via) = &self.via {
            req.append_header(http::header::VIA, via.clone())?;
        }
        Ok(())
    }

    /// Removes origin-identifying headers from an origin response, and the
    /// fields its `Connection` header names: they were meant for the hop
    /// between origin and edge (RFC 9110 §7.6.1), so they are neither
    /// forwarded nor stored. A 101 keeps `Upgrade`, which the switch needs.
    pub(crate) fn upstream_response(&self, resp: &mut ResponseHeader) {
        // A removal costs two hashed lookups (values and case-preserved
        // names) even for a name that is absent, and most are: comparing
        // against the response's few names first is cheaper.
        let has = |resp: &ResponseHeader, name: &HeaderName| resp.headers.keys().any(|k| k == name);
        for name in &self.hide {
            if has(resp, name) {
                resp.remove_header(name);
            }
        }
        if !has(resp, &http::header::CONNECTION) {
            return;
        }
        let listed: Vec<HeaderName> = resp
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .filter(|n| !(resp.status == 101 && n == http::header::UPGRADE))
            .collect();
        for name in listed {
            resp.remove_header(&name);
        }
    }

    /// The fields [`Forwarding::downstream_response`] sets (not the `Via` it
    /// appends), with empty values: a head prepared once with them takes the
    /// real values in place, without its maps growing (`proxy::fast_hit`).
    pub(crate) fn reserve_downstream(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        resp.insert_header(self.request_id_wire.clone(), HeaderValue::from_static(""))?;
        if self.server_header.is_some() {
            resp.insert_header(http::header::SERVER, HeaderValue::from_static(""))?;
        }
        Ok(())
    }

    /// Headers the edge adds to every response it sends, proxied or its own.
    pub(crate) fn downstream_response(
        &self,
        resp: &mut ResponseHeader,
        request_id: &str,
    ) -> pingora::Result<()> {
        resp.insert_header(self.request_id_wire.clone(), request_id)?;
        if let Some(via) = &self.via {
            resp.append_header(http::header::VIA, via.clone())?;
        }
        if let Some(server) = &self.server_header {
            resp.insert_header(http::header::SERVER, server.clone())?;
        }
        Ok(())
    }
}

/// All values of a header joined by `, ` (how HTTP defines repeated fields).
fn joined(req: &RequestHeader, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = req
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// An address as a header value, IPv4 without the formatting machinery
/// (every proxied request carries its client's in `X-Forwarded-For`).
pub(crate) fn ip_value(ip: IpAddr) -> HeaderValue {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let mut digits = itoa::Buffer::new();
                let d = digits.format(octet).as_bytes();
                buf[n..n + d.len()].copy_from_slice(d);
                n += d.len();
            }
            HeaderValue::from_bytes(&buf[..n]).unwrap_or(HeaderValue::from_static("0.0.0.0"))
        }
        IpAddr::V6(v6) => {
            HeaderValue::from_str(&v6.to_string()).unwrap_or(HeaderValue::from_static("::"))
        }
    }
}

/// RFC 7239 node: IPv6 addresses are quoted and bracketed.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(trusted: &[&str]) -> Forwarding {
        let cfg = ForwardingConfig {
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            forwarded: true,
            ..Default::default()
        };
        let mut errs = ConfigErrors::default();
        let f = Forwarding::build(&cfg, &mut errs);
        assert!(errs.is_empty(), "{errs}");
        f
    }

    #[test]
    fn ip_values_read_as_the_address() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(parsed).to_str().unwrap(), ip);
        }
    }

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn untrusted_peer_cannot_spoof_client_ip_or_request_id() {
        let f = fwd(&["10.0.0.0/8"]);
        let mut r = req(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-request-id", "forged"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = f.client_info("192.0.2.9".parse().unwrap(), &r, false, false);
        assert_eq!(c.ip.to_string(), "192.0.2.9");
        let id = f.request_id(&c, &r);
        assert_ne!(id, "forged");
        f.upstream_request(&mut r, &c, "example.com", &id).unwrap();
        assert_eq!(r.headers["x-forwarded-for"], "192.0.2.9");
        assert_eq!(r.headers["x-forwarded-proto"], "http");
        assert_eq!(r.headers["x-forwarded-host"], "example.com");
        assert_eq!(
            r.headers["forwarded"],
            "for=192.0.2.9;proto=http;host=\"example.com\""
        );
        assert_eq!(r.headers["x-request-id"], id.as_str());
    }

    #[test]
    fn trusted_peer_chain_is_kept_and_client_is_rightmost_untrusted() {
        let f = fwd(&["10.0.0.0/8"]);
        let mut r = req(&[
            ("x-forwarded-for", "6.6.6.6, 1.2.3.4"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-request-id", "abc-1"),
        ]);
        let c = f.client_info("10.0.0.1".parse().unwrap(), &r, true, false);
        assert_eq!(c.ip.to_string(), "1.2.3.4");
        assert_eq!(f.request_id(&c, &r), "abc-1");
        f.upstream_request(&mut r, &c, "h", "abc-1").unwrap();
        assert_eq!(
            r.headers["x-forwarded-for"],
            "6.6.6.6, 1.2.3.4, 10.0.0.2, 10.0.0.1"
        );
        assert_eq!(r.headers["x-forwarded-proto"], "https");
    }

    fn response(status: u16, fields: &[(&str, &str)]) -> ResponseHeader {
        let mut resp = ResponseHeader::build(status, None).unwrap();
        for (k, v) in fields {
            resp.append_header(k.to_string(), *v).unwrap();
        }
        resp
    }

    #[test]
    fn fields_named_in_the_origins_connection_header_are_dropped() {
        let f = fwd(&[]);
        let mut resp = response(
            200,
            &[
                ("connection", "a, B ,keep-alive"),
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("keep-alive", "timeout=5"),
            ],
        );
        f.upstream_response(&mut resp);
        for gone in ["a", "b", "keep-alive"] {
            assert!(!resp.headers.contains_key(gone), "{gone} was forwarded");
        }
        assert_eq!(resp.headers["c"], "3");

        let mut switch = response(101, &[("connection", "upgrade"), ("upgrade", "websocket")]);
        f.upstream_response(&mut switch);
        assert_eq!(switch.headers["upgrade"], "websocket");
    }

    #[test]
    fn hidden_origin_fields_go_and_the_rest_stay() {
        // Sorted: a removal moves the last field into the gap (HeaderMap).
        let names = |r: &ResponseHeader| -> Vec<String> {
            let mut names: Vec<String> = r.headers.keys().map(|k| k.to_string()).collect();
            names.sort();
            names
        };
        let f = fwd(&[]); // hides Server and X-Powered-By by default
        let fields = [
            ("Server", "o/1"),
            ("A", "1"),
            ("x-powered-by", "p"),
            ("B", "2"),
        ];
        let mut resp = response(200, &fields);
        f.upstream_response(&mut resp);
        assert_eq!(names(&resp), ["a", "b"]);
        let mut none_hidden = response(200, &[("A", "1")]);
        f.upstream_response(&mut none_hidden);
        assert_eq!(names(&none_hidden), ["a"]);

        // Hiding Connection itself drops it before it names anything.
        let cfg = ForwardingConfig {
            hide_response_headers: vec!["Connection".into()],
            ..Default::default()
        };
        let f = Forwarding::build(&cfg, &mut ConfigErrors::default());
        let mut resp = response(200, &[("Connection", "a"), ("A", "1"), ("Server", "o/1")]);
        f.upstream_response(&mut resp);
        assert_eq!(names(&resp), ["a", "server"]);
    }

    #[test]
    fn bad_trusted_network_is_a_config_error() {
        let cfg = ForwardingConfig {
            trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.0/99".into()],
            ..Default::default()
        };
        let mut errs = ConfigErrors::default();
        Forwarding::build(&cfg, &mut errs);
        assert_eq!(errs.len(), 1);
        assert!(errs
            .to_string()
            .starts_with("forwarding.trusted_proxies[1]: invalid network"));
    }
}
