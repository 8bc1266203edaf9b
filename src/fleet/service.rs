//! The background loop that keeps the membership current: it resolves the
//! DNS name (when membership comes from DNS), probes every member through its
//! public listener, applies the thresholds, and swaps in a new view when
//! anything changed. Changes are logged and counted.

use super::membership::{Member, View};
use super::{client, Fleet, PROBE_PATH};
use crate::metrics;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

pub(crate) struct MembershipService {
    pub(crate) fleet: Arc<Fleet>,
    /// With a disk tier, held off lookups until the purges missed while this
    /// node was down are applied (see [`catch_up`]).
    pub(crate) cache: Option<&'static crate::cache::CacheRuntime>,
}

/// What one probe found.
enum Probe {
    /// Ready; the name it gave.
    Ready(String),
    Failed(String),
}

#[async_trait]
impl BackgroundService for MembershipService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let fleet = &self.fleet;
        metrics::FLEET_RING_MEMBERS.set(fleet.view().ring_size as i64);
        let mut next_resolve = Instant::now();
        let mut discovered: Vec<SocketAddr> = Vec::new();
        let mut resolve_failures = 0u64;
        let mut caught_up = false;
        // Built here, on the runtime that polls its lookups.
        let resolver = fleet.discover.as_ref().map(|d| d.plan.resolver());
        loop {
            if let (Some(d), Some(resolver)) = (&fleet.discover, &resolver) {
                if Instant::now() >= next_resolve {
                    next_resolve = Instant::now() + d.plan.interval;
                    match crate::upstream::lookup(resolver, &d.host).await {
                        Ok(ips) => {
                            discovered = ips
                                .into_iter()
                                .map(|ip| SocketAddr::new(ip, d.port))
                                .collect();
                            resolve_failures = 0;
                        }
                        Err(e) => {
                            resolve_failures += 1;
                            metrics::FLEET_DISCOVERY_FAILURES.inc();
                            if resolve_failures == 1 {
                                log::warn!(
                                    "fleet: cannot resolve {} ({e}); keeping the last members",
                                    d.host
                                );
                            }
                        }
                    }
                }
            }
            self.round(&discovered).await;
            if !caught_up {
                caught_up = true;
                if let Some(cache) = self.cache.filter(|c| c.has_disk()) {
                    catch_up(fleet, cache).await;
                    cache.release_disk();
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(fleet.health.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl MembershipService {
    /// Probes every member once and swaps in the new view if it changed.
    async fn round(&self, discovered: &[SocketAddr]) {
        let fleet = &self.fleet;
        let old = fleet.view();
        let mut members: BTreeMap<SocketAddr, Member> =
            old.members.iter().map(|m| (m.addr, m.clone())).collect();
        let now = SystemTime::now();
        if fleet.discover.is_some() {
            let statics: Vec<SocketAddr> = fleet.statics.iter().map(|(_, a)| *a).collect();
            members.retain(|a, _| discovered.contains(a) || statics.contains(a));
            for addr in discovered {
                members.entry(*addr).or_insert_with(|| Member {
                    addr: *addr,
                    name: None,
                    // A discovered address joins once a probe says it is ready.
                    up: false,
                    is_self: false,
                    oks: 0,
                    fails: 0,
                    since: now,
                    last_error: None,
                });
            }
        }
        // In static mode this node knows itself; DNS members are all probed,
        // and the one answering with this node's name is this node.
        let targets: Vec<SocketAddr> = members
            .values()
            .filter(|m| !(m.is_self && fleet.discover.is_none()))
            .map(|m| m.addr)
            .collect();
        let probes = futures::future::join_all(targets.iter().map(|a| probe(fleet, *a))).await;
        for (addr, result) in targets.iter().zip(probes) {
            let Some(m) = members.get_mut(addr) else {
                continue;
            };
            match result {
                Probe::Ready(name) => {
                    m.is_self = name == fleet.node;
                    m.name = Some(name);
                    m.oks += 1;
                    m.fails = 0;
                    m.last_error = None;
                    if !m.up && m.oks >= fleet.health.healthy_threshold {
                        m.up = true;
                        m.since = now;
                    }
                }
                Probe::Failed(why) => {
                    m.fails += 1;
                    m.oks = 0;
                    m.last_error = Some(why);
                    if m.up && m.fails >= fleet.health.unhealthy_threshold {
                        m.up = false;
                        m.since = now;
                    }
                }
            }
        }
        let changed = members.len() != old.members.len()
            || old.members.iter().any(|o| {
                members
                    .get(&o.addr)
                    .is_none_or(|m| m.up != o.up || m.is_self != o.is_self || m.name != o.name)
            });
        for m in members.values() {
            let before = old.member(m.addr);
            if before.is_none_or(|b| b.up != m.up) {
                let name = m.name.as_deref().unwrap_or("?");
                if m.up {
                    log::info!(
                        "fleet: {name} ({}) is up{}",
                        m.addr,
                        if m.is_self { " (this node)" } else { "" }
                    );
                } else if before.is_some() {
                    log::warn!(
                        "fleet: {name} ({}) is down: {}",
                        m.addr,
                        m.last_error.as_deref().unwrap_or("no answer")
                    );
                }
                metrics::FLEET_MEMBERSHIP_CHANGES
                    .with_label_values(&[if m.up { "up" } else { "down" }])
                    .inc();
            }
        }
        // Swapped every round: the probe counters live in the view.
        let view = View::new(members);
        if changed {
            log::info!(
                "fleet: ring has {} live node(s) of {}",
                view.ring_size,
                view.members.len()
            );
        }
        fleet.replace_view(view);
    }
}

async fn probe(fleet: &Fleet, addr: SocketAddr) -> Probe {
    match client::call(fleet, addr, "GET", PROBE_PATH, fleet.health.timeout).await {
        Ok((200, body)) => {
            let name = String::from_utf8_lossy(&body).trim().to_string();
            if name.is_empty() {
                Probe::Failed("probe answered without a node name".into())
            } else {
                Probe::Ready(name)
            }
        }
        Ok((status, _)) => Probe::Failed(format!("probe answered {status}")),
        Err(e) => Probe::Failed(e),
    }
}

/// A node that comes back with its disk tier asks its live peers for the
/// purges applied since its own last one, and applies those it has not
/// seen, before the disk tier serves anything: an object purged while the
/// node was down is never served again. Peers that cannot answer are
/// skipped (logged); with no live peer there is nothing to catch up on.
async fn catch_up(fleet: &Fleet, cache: &'static crate::cache::CacheRuntime) {
    use crate::cache::purge_log;
    let mine = cache.purges().latest_ms();
    // A minute of slack for clocks and for purges still being fanned out.
    let since = mine.saturating_sub(60_000);
    let target = format!("{}?since={since}", super::PURGES_PATH);
    let view = fleet.view();
    let mut queries: Vec<String> = Vec::new();
    for m in view.live_peers() {
        match client::call(
            fleet,
            m.addr,
            "GET",
            &target,
            std::time::Duration::from_secs(5),
        )
        .await
        {
            Ok((200, body)) => {
                for entry in String::from_utf8_lossy(&body)
                    .lines()
                    .filter_map(purge_log::parse)
                {
                    if entry.at_ms > mine && !queries.contains(&entry.query) {
                        queries.push(entry.query);
                    }
                }
            }
            Ok((status, _)) => {
                log::warn!("fleet: purge catch-up from {}: answered {status}", m.addr)
            }
            Err(e) => log::warn!("fleet: purge catch-up from {}: {e}", m.addr),
        }
    }
    for q in &queries {
        if let Err(e) = cache.purge_query(q).await {
            log::warn!("fleet: purge catch-up: {q:?}: {e}");
        }
    }
    if !queries.is_empty() {
        log::info!(
            "fleet: caught up on {} purge(s) missed while down",
            queries.len()
        );
    }
}
