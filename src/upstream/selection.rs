//! Choosing a backend for a request: the balancer (round robin, consistent
//! hash, bounded load) or the load-aware choices of [`super::adaptive`],
//! among the backends the health checks and passive health allow; and the
//! passive-health bookkeeping of what each attempt came to.

use super::{adaptive, outlier, BackendInfo, Balancer, Outcome, Pool};
use crate::metrics;
use pingora::lb::Backend;
use std::net::SocketAddr;
use std::time::Duration;

impl Pool {
    /// Picks a healthy backend not in `exclude`.
    pub fn select(&self, key: &[u8], exclude: &[SocketAddr]) -> Option<SocketAddr> {
        if let Some(how) = self.adaptive {
            let members = self.members.load();
            let candidates: Vec<&BackendInfo> = members
                .iter()
                .filter(|b| !exclude.contains(&b.addr) && self.ready(b) && !self.is_ejected(b.addr))
                .collect();
            return how.choose(&candidates).map(|b| b.addr);
        }
        // Bounded load (Mirrokni et al.): a backend already carrying its
        // share × the factor is passed over for the next one on the ring.
        let bound = self.balance_factor.map(|factor| {
            let members = self.members.load();
            let (n, total) = members
                .iter()
                .fold((0u64, 0u64), |(n, t), b| (n + 1, t + b.stats.in_flight()));
            ((total + 1) as f64 * factor / n.max(1) as f64).ceil() as u64
        });
        let accept = |b: &Backend, healthy: bool| {
            healthy
                && b.addr.as_inet().is_some_and(|a| {
                    !exclude.contains(a)
                        && !self.is_ejected(*a)
                        && bound.is_none_or(|limit| {
                            self.stats(*a).is_none_or(|s| s.in_flight() < limit)
                        })
                })
        };
        let max_iterations = self.members.load().max_iterations();
        let chosen = match &self.balancer {
            Balancer::RoundRobin(lb) => lb.select_with(key, max_iterations, accept),
            Balancer::Hash(lb) => lb.select_with(key, max_iterations, accept),
        };
        chosen.and_then(|b| b.addr.as_inet().copied())
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
                .is_some_and(|b| outlier::of(&b.stats).is_ejected(std::time::Instant::now()))
    }

    /// Whether [`Pool::select`] could still find a backend outside `exclude`.
    pub fn has_candidate(&self, exclude: &[SocketAddr]) -> bool {
        self.members
            .load()
            .iter()
            .any(|b| !exclude.contains(&b.addr) && self.ready(b) && !self.is_ejected(b.addr))
    }

    /// Whether the health check currently lets traffic go to `addr`.
    pub fn is_healthy(&self, addr: SocketAddr) -> bool {
        self.members
            .load()
            .find(addr)
            .is_some_and(|b| self.ready(b))
    }

    fn ready(&self, info: &BackendInfo) -> bool {
        let backend = Backend {
            addr: pingora::protocols::l4::socket::SocketAddr::Inet(info.addr),
            weight: info.weight,
            ext: Default::default(),
        };
        match &self.balancer {
            Balancer::RoundRobin(lb) => lb.backends().ready(&backend),
            Balancer::Hash(lb) => lb.backends().ready(&backend),
        }
    }
}
