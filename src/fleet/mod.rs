//! Many Parapet nodes as one cache tier.
//!
//! | piece                          | module          |
//! |--------------------------------|-----------------|
//! | signing and checking peer hops | [`auth`]        |
//! | members, health, the ring      | [`membership`]  |
//! | probing peers in the background| [`service`]     |
//! | calls to peers                 | [`client`]      |
//!
//! A route with `cache.fleet: shard` sends each GET/HEAD to the node that
//! owns the object's cache key on the ring; that node serves it from its
//! cache or fetches it from the origin once for the whole fleet (its cache
//! lock collapses concurrent misses from every node). A hop carries
//! `CDN-Loop` and a signed `Parapet-Fleet` header; a node serves a signed hop
//! itself and never forwards it again.

mod auth;
pub(crate) mod client;
pub(crate) mod membership;
pub(crate) mod purge;
mod service;

pub(crate) use auth::Verdict;
pub(crate) use membership::Owner;
pub(crate) use service::MembershipService;

use crate::config::units::parse_positive_duration;
use crate::config::{ConfigErrors, FleetConfig};
use http::HeaderValue;
use membership::{Member, View};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Paths under this prefix are the fleet's control plane, answered only to
/// signed peer requests (never routed to an origin).
pub(crate) const CONTROL_PREFIX: &str = "/.well-known/parapet/";
/// The probe: `200` and the node's name, or `503` while it is stopping.
pub(crate) const PROBE_PATH: &str = "/.well-known/parapet/fleet";
/// `POST` with the admin purge query: a purge fanned out by another node.
pub(crate) const PURGE_PATH: &str = "/.well-known/parapet/purge";
/// `GET ?since=MS`: the purges this node applied since then, one `MS QUERY`
/// a line, for a peer catching up after it was down.
pub(crate) const PURGES_PATH: &str = "/.well-known/parapet/purges";

const CDN_LOOP: http::HeaderName = http::HeaderName::from_static("cdn-loop");

/// Shortest fleet secret accepted.
const MIN_SECRET: usize = 16;

/// Active checking of the peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) unhealthy_threshold: usize,
    pub(crate) healthy_threshold: usize,
}

/// Membership from DNS.
pub(crate) struct Discover {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) plan: crate::upstream::DiscoveryPlan,
}

/// The fleet as this node runs it.
pub(crate) struct Fleet {
    pub(crate) node: String,
    key: auth::Key,
    pub(crate) loop_token: String,
    loop_value: HeaderValue,
    pub(crate) max_hops: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) health: Health,
    /// Static members: name and address (this node included).
    statics: Vec<(String, SocketAddr)>,
    /// DNS membership: the name, the nodes' port, and how to resolve it.
    discover: Option<Discover>,
    view: RwLock<Arc<View>>,
    /// `parapet-NODE`: the cache's name in `Cache-Status`.
    pub(crate) cache_name: String,
}

impl Fleet {
    pub(crate) fn build(cfg: &FleetConfig, errs: &mut ConfigErrors) -> Option<Fleet> {
        let before = errs.len();
        let node = cfg.node.clone().unwrap_or_else(hostname);
        if node.is_empty()
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errs.push(
                "fleet.node",
                format!("{node:?}: use letters, digits, '-', '_' and '.'"),
            );
        }
        if cfg.secret.len() < MIN_SECRET {
            errs.push(
                "fleet.secret",
                format!("must be at least {MIN_SECRET} characters"),
            );
        }
        if cfg.loop_token.is_empty()
            || !cfg
                .loop_token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errs.push(
                "fleet.loop_token",
                "a token: letters, digits, '-', '_', '.'",
            );
        }
        if cfg.max_hops == 0 || cfg.max_hops > 16 {
            errs.push("fleet.max_hops", "must be 1..=16");
        }
        let duration = |path: &str, text: &str, errs: &mut ConfigErrors| {
            parse_positive_duration(text).unwrap_or_else(|e| {
                errs.push(path, e);
                Duration::from_secs(1)
            })
        };
        let connect_timeout = duration("fleet.connect_timeout", &cfg.connect_timeout, errs);
        let health = Health {
            interval: duration("fleet.health.interval", &cfg.health.interval, errs),
            timeout: duration("fleet.health.timeout", &cfg.health.timeout, errs),
            unhealthy_threshold: cfg.health.unhealthy_threshold.max(1),
            healthy_threshold: cfg.health.healthy_threshold.max(1),
        };
        let discover = cfg.discover.as_ref().and_then(|d| {
            let plan = crate::upstream::DiscoveryPlan::build(
                &crate::config::DiscoveryConfig {
                    interval: d.interval.clone(),
                    resolver: d.resolver.clone(),
                },
                "fleet.discover",
                errs,
            );
            match d.dns.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>())) {
                Some((host, Ok(port))) if !host.is_empty() => Some(Discover {
                    host: host.to_string(),
                    port,
                    plan: plan?,
                }),
                _ => {
                    errs.push(
                        "fleet.discover.dns",
                        format!("{:?}: expected name:port", d.dns),
                    );
                    None
                }
            }
        });
        let mut statics = Vec::new();
        let mut names = BTreeMap::new();
        for (i, p) in cfg.peers.iter().enumerate() {
            if names.insert(p.name.clone(), i).is_some() {
                errs.push(
                    format!("fleet.peers[{i}].name"),
                    format!("{:?} is listed twice", p.name),
                );
            }
            match p.address.to_socket_addrs().map(|mut a| a.next()) {
                Ok(Some(addr)) => statics.push((p.name.clone(), addr)),
                _ => errs.push(
                    format!("fleet.peers[{i}].address"),
                    format!(
                        "{:?} is not an address that resolves (ip:port or host:port)",
                        p.address
                    ),
                ),
            }
        }
        if cfg.peers.is_empty() && discover.is_none() {
            errs.push("fleet.peers", "give the peers, or fleet.discover");
        }
        if !cfg.peers.is_empty() && discover.is_none() && !names.contains_key(&node) {
            errs.push(
                "fleet.peers",
                format!("no entry named {node:?}: list every node, this one (fleet.node) included"),
            );
        }
        let key = auth::Key::new(&cfg.secret)
            .map_err(|e| errs.push("fleet.secret", e))
            .ok();
        let loop_value = HeaderValue::from_str(&cfg.loop_token).ok();
        if errs.len() != before {
            return None;
        }
        let now = SystemTime::now();
        let members = statics
            .iter()
            .map(|(name, addr)| {
                (
                    *addr,
                    Member {
                        addr: *addr,
                        name: Some(name.clone()),
                        // Optimistic: a peer that is down costs one failed
                        // hop, then it is marked down.
                        up: true,
                        is_self: *name == node,
                        oks: 0,
                        fails: 0,
                        since: now,
                        last_error: None,
                    },
                )
            })
            .collect();
        Some(Fleet {
            cache_name: format!("parapet-{node}"),
            node,
            key: key?,
            loop_token: cfg.loop_token.clone(),
            loop_value: loop_value?,
            max_hops: cfg.max_hops,
            connect_timeout,
            health,
            statics,
            discover,
            view: RwLock::new(Arc::new(View::new(members))),
        })
    }

    /// The current picture of the fleet.
    pub(crate) fn view(&self) -> Arc<View> {
        self.view
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn replace_view(&self, view: View) {
        let size = view.ring_size;
        match self.view.write() {
            Ok(mut v) => *v = Arc::new(view),
            Err(p) => *p.into_inner() = Arc::new(view),
        }
        crate::metrics::FLEET_RING_MEMBERS.set(size as i64);
    }

    /// Where a request for the object with primary key bytes `key` goes.
    pub(crate) fn owner(&self, key: &[u8]) -> Owner {
        self.view().owner(key)
    }

    /// A hop to `addr` failed: it leaves the ring now, until a probe brings
    /// it back (passive health).
    pub(crate) fn mark_failed(&self, addr: SocketAddr, why: &str) {
        let view = self.view();
        let Some(m) = view.member(addr) else { return };
        if !m.up {
            return;
        }
        let mut members: BTreeMap<SocketAddr, Member> =
            view.members.iter().map(|m| (m.addr, m.clone())).collect();
        if let Some(m) = members.get_mut(&addr) {
            m.up = false;
            m.oks = 0;
            m.fails = self.health.unhealthy_threshold;
            m.since = SystemTime::now();
            m.last_error = Some(why.to_string());
            log::warn!(
                "fleet: peer {} ({addr}) marked down after a failed hop: {why}",
                m.name.as_deref().unwrap_or("?")
            );
        }
        crate::metrics::FLEET_MEMBERSHIP_CHANGES
            .with_label_values(&["down"])
            .inc();
        self.replace_view(View::new(members));
    }

    /// The `Parapet-Fleet` value for a request this node sends.
    pub(crate) fn sign(&self, method: &str, target: &str, now: SystemTime) -> String {
        self.key.sign(&self.node, method, target, now)
    }

    /// Whether a request is a signed hop from a peer.
    pub(crate) fn verify(&self, req: &pingora::http::RequestHeader, now: SystemTime) -> Verdict {
        let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        self.key.verify(
            req.headers.get(&auth::HEADER).map(|v| v.as_bytes()),
            req.method.as_str(),
            target,
            now,
        )
    }

    /// How many times this fleet's token appears in `CDN-Loop`.
    pub(crate) fn hops(&self, req: &pingora::http::RequestHeader) -> usize {
        req.headers
            .get_all(&CDN_LOOP)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter(|member| {
                let token = member.split(|b| *b == b';').next().unwrap_or_default();
                token
                    .trim_ascii()
                    .eq_ignore_ascii_case(self.loop_token.as_bytes())
            })
            .count()
    }

    /// Marks a request this node forwards to a peer: signed, and with this
    /// fleet's token added to `CDN-Loop` (RFC 8586).
    pub(crate) fn mark_hop(
        &self,
        req: &mut pingora::http::RequestHeader,
        now: SystemTime,
    ) -> pingora::Result<()> {
        let target = req
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string();
        let signed = self.sign(req.method.as_str(), &target, now);
        req.insert_header(auth::HEADER, signed)?;
        req.append_header(CDN_LOOP, self.loop_value.clone())?;
        Ok(())
    }

    /// Removes a client's `Parapet-Fleet` header (it authenticated nothing).
    pub(crate) fn strip(req: &mut pingora::http::RequestHeader) {
        req.remove_header(&auth::HEADER);
    }
}

/// The host name (the container id under Docker), the default node name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::from("parapet");
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
