//! The backends a pool has right now, as the request path sees them: address,
//! label, weight, region, SNI and counters.
//!
//! A pool without discovery keeps the set it was built with. With discovery
//! every change replaces the whole set ([`ArcSwap`]): a request reads one
//! consistent set without taking a lock, and the counters of addresses that
//! stay are carried over to the new set.

use super::BackendStats;
use arc_swap::ArcSwap;
use pingora::lb::Backend;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

/// One backend: one address of one configured entry.
#[derive(Debug, Clone)]
pub struct BackendInfo {
    pub addr: SocketAddr,
    /// The address as written in the config (metrics label).
    pub label: String,
    pub weight: usize,
    pub region: String,
    /// `region` in the config's regions (see [`crate::geo::Regions`]).
    pub(crate) region_id: Option<crate::geo::RegionId>,
    /// Server name for TLS to this backend (empty without TLS).
    pub sni: String,
    pub stats: Arc<BackendStats>,
}

/// Sets up to this size are searched in order (see [`BackendSet::find`]).
const SCAN_UP_TO: usize = 16;

/// One generation of a pool's backends. Derefs to the current backends.
#[derive(Debug, Default)]
pub struct BackendSet {
    current: Vec<BackendInfo>,
    /// Backends the latest change removed. Pingora rebuilds its selector only
    /// after discovery returned, so a request can still pick one of these in
    /// between, and requests in flight still report to them: [`find`] keeps
    /// knowing their SNI and counters until the next change.
    ///
    /// [`find`]: BackendSet::find
    departed: Vec<BackendInfo>,
    /// Longest walk of one selection over the ring (Pingora's
    /// `max_iterations`): enough to see every backend twice.
    max_iterations: usize,
    /// Weighted round robin's table: each backend's index in `current`,
    /// `weight` times over.
    weighted: Box<[u32]>,
    /// For sets larger than [`SCAN_UP_TO`]: `current`'s indexes ordered by
    /// address (a stable sort: the first of an address listed twice comes
    /// first), for [`BackendSet::find`].
    by_addr: Box<[u32]>,
}

impl Deref for BackendSet {
    type Target = [BackendInfo];

    fn deref(&self) -> &[BackendInfo] {
        &self.current
    }
}

impl BackendSet {
    pub(super) fn new(current: Vec<BackendInfo>) -> BackendSet {
        let total_weight: usize = current.iter().map(|b| b.weight).sum();
        let weighted = (0..current.len() as u32)
            .flat_map(|i| std::iter::repeat_n(i, current[i as usize].weight))
            .collect();
        let mut by_addr: Vec<u32> = Vec::new();
        if current.len() > SCAN_UP_TO {
            by_addr.extend(0..current.len() as u32);
            by_addr.sort_by_key(|&i| current[i as usize].addr);
        }
        BackendSet {
            current,
            departed: Vec::new(),
            max_iterations: 256.max(2 * total_weight),
            weighted,
            by_addr: by_addr.into(),
        }
    }

    /// The backend at `addr`, current or removed by the latest change.
    /// Requests look backends up a few times each: a large set is
    /// searched by halves, a small one in order (cheaper there).
    pub(super) fn find(&self, addr: SocketAddr) -> Option<&BackendInfo> {
        let current = if self.by_addr.is_empty() {
            self.current.iter().find(|b| b.addr == addr)
        } else {
            let at = self
                .by_addr
                .partition_point(|&i| self.current[i as usize].addr < addr);
            self.by_addr
                .get(at)
                .map(|&i| &self.current[i as usize])
                .filter(|b| b.addr == addr)
        };
        current.or_else(|| self.departed.iter().find(|b| b.addr == addr))
    }

    pub(super) fn max_iterations(&self) -> usize {
        self.max_iterations
    }

    /// Weighted round robin's table: indexes into the current backends,
    /// each as many times as its weight, in the set's order.
    pub(super) fn weighted(&self) -> &[u32] {
        &self.weighted
    }

    /// Whether `next` has the same backends (address, weight, label, region)
    /// in the same order: nothing to swap.
    pub(super) fn same_as(&self, next: &[BackendInfo]) -> bool {
        self.current.len() == next.len()
            && self.current.iter().zip(next).all(|(a, b)| {
                a.addr == b.addr
                    && a.weight == b.weight
                    && a.label == b.label
                    && a.region == b.region
            })
    }

    /// The set that follows this one: `next`'s backends, those that stay
    /// keeping their counters; what this set has and `next` lacks departs.
    pub(super) fn succeeded_by(&self, mut next: Vec<BackendInfo>) -> BackendSet {
        for b in &mut next {
            match self.current.iter().find(|o| o.addr == b.addr) {
                Some(old) => {
                    b.stats = old.stats.clone();
                    // Pingora keeps health per address and weight: with
                    // a new weight it checks the backend afresh, healthy
                    // until its checks fail, and so does selection.
                    if old.weight != b.weight {
                        b.stats.set_passes_checks(true);
                    }
                }
                // A new address enters service now (slow start).
                None => b.stats.entered_service(),
            }
        }
        let departed = self
            .current
            .iter()
            .filter(|o| !next.iter().any(|b| b.addr == o.addr))
            .cloned()
            .collect();
        BackendSet {
            departed,
            ..BackendSet::new(next)
        }
    }

    /// The set as Pingora's load balancer takes it. A backend's health is
    /// keyed by address and weight, so an address that stays keeps its
    /// health across a change.
    pub(super) fn to_pingora(&self) -> BTreeSet<Backend> {
        self.current
            .iter()
            .map(|b| Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(b.addr),
                weight: b.weight,
                ext: Default::default(),
            })
            .collect()
    }
}

/// A pool's backends, shared by the pool (request path, admin pages), its
/// discovery (which replaces them) and its health-check observer (labels).
pub(super) type Members = Arc<ArcSwap<BackendSet>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(addr: &str, label: &str) -> BackendInfo {
        BackendInfo {
            addr: addr.parse().unwrap(),
            label: label.into(),
            weight: 1,
            region: String::new(),
            region_id: None,
            sni: String::new(),
            stats: Arc::default(),
        }
    }

    #[test]
    fn a_successor_keeps_counters_of_addresses_that_stay_and_remembers_departures() {
        let first = BackendSet::new(vec![
            backend("127.0.0.1:1", "a:1"),
            backend("127.0.0.2:1", "a:1"),
        ]);
        first
            .find("127.0.0.1:1".parse().unwrap())
            .unwrap()
            .stats
            .error();
        let next = vec![backend("127.0.0.1:1", "a:1"), backend("127.0.0.3:1", "a:1")];
        assert!(!first.same_as(&next));
        let second = first.succeeded_by(next);
        assert_eq!(second.len(), 2);
        assert_eq!(
            second
                .find("127.0.0.1:1".parse().unwrap())
                .unwrap()
                .stats
                .errors(),
            1
        );
        assert_eq!(
            second
                .find("127.0.0.3:1".parse().unwrap())
                .unwrap()
                .stats
                .errors(),
            0
        );
        // Gone from the set, still found for requests that picked it.
        let gone: SocketAddr = "127.0.0.2:1".parse().unwrap();
        assert!(!second.iter().any(|b| b.addr == gone));
        assert!(second.find(gone).is_some());
        let third = second.succeeded_by(second.to_vec());
        assert!(third.find(gone).is_none());
        assert!(third.same_as(&second));
    }

    #[test]
    fn find_knows_every_backend_and_the_first_of_a_repeated_address() {
        // Addresses out of order, one listed twice.
        let mut list: Vec<BackendInfo> = (0..40u32)
            .map(|i| {
                let port = (i * 7919) % 997 + 1;
                backend(&format!("127.0.0.{}:{port}", i % 3 + 1), &format!("b{i}"))
            })
            .collect();
        list.push(backend(&list[5].addr.to_string(), "again"));
        let set = BackendSet::new(list.clone());
        for b in &list[..40] {
            assert_eq!(
                set.find(b.addr).map(|f| f.label.as_str()),
                Some(b.label.as_str())
            );
        }
        assert!(set.find("127.0.0.9:1".parse().unwrap()).is_none());
    }
}
