//! Choosing a backend for a request: the balancer (round robin, consistent
//! hash, bounded load) or the load-aware choices of [`super::adaptive`],
//! among the backends the health checks and passive health allow; and the
//! passive-health bookkeeping of what each attempt came to.

use super::locality::Choice;
use super::members::BackendSet;
use super::{adaptive, outlier, BackendInfo, Balancer, Outcome, Pool};
use crate::geo::RegionId;
use crate::metrics;
use pingora::lb::Backend;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Pool {
    /// Picks a healthy backend not in `exclude`, from any region.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<SocketAddr> {
        self.select_near(key, exclude, &[])
    }

    /// Picks a backend not in `exclude` for a client whose regions, nearest
    /// first, are `order` (empty: no preference). A pool that steers by
    /// region lets [`locality`](super::locality) choose the region, then
    /// its own selection chooses within it.
    pub(crate) fn select_near(
        &self,
        key: &[u8],
        exclude: &[SocketAddr],
        order: &[RegionId],
    ) -> Option<SocketAddr> {
        if let (Some(locality), false) = (&self.locality, order.is_empty()) {
            let members = self.members.load();
            let roll = if self.hash_key.is_some() {
                key_roll(key)
            } else {
                adaptive::random_unit()
            };
            let untried = |b: &BackendInfo| !exclude.contains(&b.addr);
            let usable = |b: &BackendInfo| untried(b) && self.ready(b) && !self.ejected(b);
            if let Some((region, choice)) = locality.plan(&members, order, usable, untried, roll) {
                let panic = choice == Choice::Panic;
                if let Some(addr) = self.select_in(key, exclude, Some(region), panic) {
                    locality.count(region, choice);
                    return Some(addr);
                }
            }
        }
        self.select_in(key, exclude, None, false)
    }

    /// The pool's own selection among backends not in `exclude`, of
    /// `region` if given; `panic` ignores health checks and ejections.
    fn select_in(
        &self,
        key: &[u8],
        exclude: &[SocketAddr],
        region: Option<RegionId>,
        panic: bool,
    ) -> Option<SocketAddr> {
        let members = self.members.load();
        let in_region = |b: &BackendInfo| region.is_none_or(|r| b.region_id == Some(r));
        if let Some(how) = self.adaptive {
            let candidates: Vec<&BackendInfo> = members
                .iter()
                .filter(|b| {
                    !exclude.contains(&b.addr)
                        && in_region(b)
                        && (panic || (self.ready(b) && !self.ejected(b)))
                })
                .collect();
            let now = outlier::now_ms();
            let warmth = |b: &BackendInfo| self.slow_start.map_or(1.0, |s| s.warmth(&b.stats, now));
            return how.choose(&candidates, warmth).map(|b| b.addr);
        }
        // Bounded load (Mirrokni et al.): a backend already carrying its
        // share × the factor is passed over for the next one on the ring.
        let bound = self.balance_factor.map(|factor| {
            let (n, total) = members
                .iter()
                .filter(|b| in_region(b))
                .fold((0u64, 0u64), |(n, t), b| (n + 1, t + b.stats.in_flight()));
            ((total + 1) as f64 * factor / n.max(1) as f64).ceil() as u64
        });
        // Slow start on round robin: a warming backend is passed over with
        // the probability it is still cold (the balancer then moves on).
        let warm_enough = |info: &BackendInfo| {
            self.slow_start
                .is_none_or(|s| adaptive::random_unit() < s.warmth(&info.stats, outlier::now_ms()))
        };
        let accept = |info: &BackendInfo| {
            !exclude.contains(&info.addr)
                && in_region(info)
                && (panic || (self.ready(info) && !self.ejected(info)))
                && bound.is_none_or(|limit| info.stats.in_flight() < limit)
                && (panic || warm_enough(info))
        };
        match &self.balancer {
            Balancer::RoundRobin(_) => self.round_robin(&members, accept),
            Balancer::Hash(lb) => {
                // The ring may still hold a backend discovery just removed:
                // `find` knows those too.
                let on_ring = |b: &Backend, _: bool| {
                    b.addr
                        .as_inet()
                        .and_then(|addr| members.find(*addr))
                        .is_some_and(accept)
                };
                let chosen = lb.select_with(key, members.max_iterations(), on_ring);
                chosen.and_then(|b| b.addr.as_inet().copied())
            }
        }
    }

    /// Weighted round robin over the current backends: the backend whose
    /// turn it is, if `accept` takes it. One it passes over (failing its
    /// health check, ejected, tried already, ...) gives its turn to another
    /// backend `accept` takes, drawn by weight, so its share spreads over
    /// the rest in proportion rather than onto its neighbour in the list.
    ///
    /// Pingora's balancer walks its own copy of the list through an
    /// iterator that hashes every candidate into a fresh set, and looks up
    /// each one's health by two more hashes; here a turn is a counter, an
    /// index and a flag.
    fn round_robin(
        &self,
        members: &BackendSet,
        accept: impl Fn(&BackendInfo) -> bool,
    ) -> Option<SocketAddr> {
        let table = members.weighted();
        if table.is_empty() {
            return None;
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let first = &members[table[turn % table.len()] as usize];
        if accept(first) {
            return Some(first.addr);
        }
        let others: Vec<&BackendInfo> = members
            .iter()
            .filter(|b| b.addr != first.addr && accept(b))
            .collect();
        let total: usize = others.iter().map(|b| b.weight).sum();
        if total == 0 {
            return None;
        }
        // Consecutive turns land far apart (Fibonacci hashing).
        let mut draw = ((turn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % total;
        others
            .into_iter()
            .find(|b| {
                let hit = draw < b.weight;
                draw = draw.wrapping_sub(b.weight);
                hit
            })
            .map(|b| b.addr)
    }

    /// The region of backend `addr` (also of one discovery just removed).
    pub(crate) fn region_of(&self, addr: SocketAddr) -> Option<String> {
        let members = self.members.load();
        members
            .find(addr)
            .filter(|b| !b.region.is_empty())
            .map(|b| b.region.clone())
    }

    /// Whether passive health has this backend out of selection now.
    fn ejected(&self, info: &BackendInfo) -> bool {
        self.outlier.is_some() && outlier::of(&info.stats).is_ejected(std::time::Instant::now())
    }

    /// Passive health: counts what one attempt at `addr` came to, and ejects
    /// the backend from selection when its run of failures reaches the
    /// policy's threshold and the pool's ejected share allows.
    pub(crate) fn observe(&self, addr: SocketAddr, outcome: Outcome) {
        let Some(policy) = &self.outlier else { return };
        let members = self.members.load();
        let Some(info) = members.find(addr) else {
            return;
        };
        let ejection = outlier::of(&info.stats);
        if !policy.observe(ejection, outcome) {
            return;
        }
        let now = std::time::Instant::now();
        let total = members.iter().count();
        let ejected = members
            .iter()
            .filter(|b| outlier::of(&b.stats).is_ejected(now))
            .count();
        if ejected >= policy.max_ejected(total) {
            log::warn!(
                "upstream {}: backend {} would be ejected, but {ejected} of {total} already are (max_ejection_percent)",
                self.name,
                info.label
            );
            return;
        }
        let time = policy.eject(ejection, now);
        metrics::OUTLIER_EJECTIONS
            .with_label_values(&[&self.name])
            .inc();
        log::warn!(
            "upstream {}: backend {} ({addr}) ejected for {time:?} after failing live requests (ejection {})",
            self.name,
            info.label,
            ejection.count()
        );
    }

    /// Whether this pool chooses by load (`least_connections`, `p2c_ewma`),
    /// so requests in flight are counted.
    pub(crate) fn tracks_load(&self) -> bool {
        self.adaptive.is_some() || self.balance_factor.is_some()
    }

    /// The latency a response counts as in this pool's averages: a 5xx
    /// answer or a failed attempt counts as slow when the pool chooses by
    /// latency, so fast errors do not attract traffic.
    pub(crate) fn counted_latency(&self, latency: Duration, failed: bool) -> Duration {
        match self.failure_penalty() {
            Some(penalty) if failed => latency.max(penalty),
            _ => latency,
        }
    }

    /// What a failed attempt counts as in the latency average, when the
    /// pool chooses by latency (`p2c_ewma`).
    pub(crate) fn failure_penalty(&self) -> Option<Duration> {
        (self.adaptive == Some(adaptive::Adaptive::P2cEwma)).then_some(adaptive::FAILURE_PENALTY)
    }

    /// Whether passive health has `addr` out of selection now.
    pub(crate) fn is_ejected(&self, addr: SocketAddr) -> bool {
        self.outlier.is_some()
            && self
                .members
                .load()
                .find(addr)
                .is_some_and(|b| self.ejected(b))
    }

    /// Whether [`Pool::select`] could still find a backend outside `exclude`.
    ///
    /// A pool that steers by region falls into panic mode when nothing
    /// usable is left, and then any untried backend is a candidate (as
    /// [`Self::select_near`] would pick it), so a retry is not refused there.
    pub fn has_candidate(&self, exclude: &[SocketAddr]) -> bool {
        let members = self.members.load();
        let untried = |b: &&BackendInfo| !exclude.contains(&b.addr);
        members
            .iter()
            .filter(untried)
            .any(|b| self.ready(b) && !self.ejected(b))
            || (self.locality.is_some() && members.iter().any(|b| untried(&b)))
    }

    /// Whether the health check currently lets traffic go to `addr`.
    pub fn is_healthy(&self, addr: SocketAddr) -> bool {
        self.members
            .load()
            .find(addr)
            .is_some_and(|b| self.ready(b))
    }

    /// Whether the active health check lets traffic go to this backend.
    fn ready(&self, info: &BackendInfo) -> bool {
        info.stats.passes_checks()
    }
}

/// A number in [0, 1) fixed by the hash key (FNV-1a), so that a key of a
/// hashing pool keeps its region while the regions' health stays the same.
fn key_roll(key: &[u8]) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}
