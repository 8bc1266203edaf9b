//! Who is in the fleet and who owns what: the members (from the static list
//! or DNS), their health (active probes through each node's public listener,
//! plus passive marking when a hop fails), and the consistent-hash ring over
//! the live ones. Every node builds the same ring from the same inputs, so no
//! node asks another who owns a key.
//!
//! The ring is Ketama (pingora-ketama, the ring Pingora's consistent-hash
//! selection uses) over the members' addresses, fed with the cache's primary
//! key bytes.

use pingora_ketama::{Bucket, Continuum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

/// One node as this node sees it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) addr: SocketAddr,
    /// Its name: from the static list, or from its probe answer.
    pub(crate) name: Option<String>,
    pub(crate) up: bool,
    pub(crate) is_self: bool,
    /// Consecutive good and failed probes.
    pub(crate) oks: usize,
    pub(crate) fails: usize,
    /// When `up` last changed.
    pub(crate) since: SystemTime,
    /// The last probe's failure, for the status page.
    pub(crate) last_error: Option<String>,
}

/// An immutable picture of the fleet: swapped whole when anything changes.
pub(crate) struct View {
    pub(crate) members: Vec<Member>,
    ring: Option<Continuum>,
    /// Live members on the ring (this node included).
    pub(crate) ring_size: usize,
    pub(crate) self_addr: Option<SocketAddr>,
}

/// Where a key's requests go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// This node owns the key (or the ring is empty).
    Local,
    /// Another node owns it: the owner, then the next owner on the ring
    /// (never this node; the caller falls back to the origin after them).
    Peers(Vec<SocketAddr>),
}

/// How many distinct owners a key's request tries before the origin.
pub(crate) const MAX_PEER_TRIES: usize = 2;

impl View {
    pub(crate) fn new(members: BTreeMap<SocketAddr, Member>) -> View {
        let members: Vec<Member> = members.into_values().collect();
        let live: Vec<Bucket> = members
            .iter()
            .filter(|m| m.up)
            .map(|m| Bucket::new(m.addr, 1))
            .collect();
        let self_addr = members.iter().find(|m| m.is_self).map(|m| m.addr);
        View {
            ring_size: live.len(),
            ring: (!live.is_empty()).then(|| Continuum::new(&live)),
            members,
            self_addr,
        }
    }

    /// The owners of `key` in ring order.
    pub(crate) fn owner(&self, key: &[u8]) -> Owner {
        let Some(ring) = &self.ring else {
            return Owner::Local;
        };
        let mut peers: Vec<SocketAddr> = Vec::with_capacity(MAX_PEER_TRIES);
        // Each node has many points; a bounded walk finds the distinct ones.
        for addr in ring.node_iter(key).take(64 * self.ring_size.max(1)) {
            if Some(*addr) == self.self_addr {
                break;
            }
            if !peers.contains(addr) {
                peers.push(*addr);
                if peers.len() == MAX_PEER_TRIES {
                    break;
                }
            }
        }
        if peers.is_empty() {
            Owner::Local
        } else {
            Owner::Peers(peers)
        }
    }

    /// The live peers (this node excluded).
    pub(crate) fn live_peers(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| m.up && !m.is_self)
    }

    pub(crate) fn member(&self, addr: SocketAddr) -> Option<&Member> {
        self.members.iter().find(|m| m.addr == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(port: u16, up: bool, is_self: bool) -> (SocketAddr, Member) {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        (
            addr,
            Member {
                addr,
                name: Some(format!("n{port}")),
                up,
                is_self,
                oks: 0,
                fails: 0,
                since: SystemTime::UNIX_EPOCH,
                last_error: None,
            },
        )
    }

    fn view(members: &[(u16, bool, bool)]) -> View {
        View::new(members.iter().map(|&(p, up, s)| member(p, up, s)).collect())
    }

    #[test]
    fn every_node_agrees_on_owners_and_a_lost_node_moves_only_its_share() {
        let keys: Vec<Vec<u8>> = (0..3000).map(|i| format!("key-{i}").into_bytes()).collect();
        let owner_as_seen_by = |me: u16, down: Option<u16>| -> Vec<u16> {
            let v = view(&[1, 2, 3].map(|p| (p, Some(p) != down, p == me)));
            keys.iter()
                .map(|k| match v.owner(k) {
                    Owner::Local => me,
                    Owner::Peers(p) => p[0].port(),
                })
                .collect()
        };
        let a = owner_as_seen_by(1, None);
        assert_eq!(a, owner_as_seen_by(2, None), "nodes agree");
        assert_eq!(a, owner_as_seen_by(3, None), "nodes agree");
        let share = |o: &[u16], n: u16| o.iter().filter(|x| **x == n).count();
        for n in 1..=3 {
            assert!(
                (700..1300).contains(&share(&a, n)),
                "balanced: {}",
                share(&a, n)
            );
        }
        let b = owner_as_seen_by(1, Some(3));
        let moved = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(moved, share(&a, 3), "only the lost node's keys move");
    }

    #[test]
    fn the_next_owner_never_is_this_node_and_an_empty_ring_is_local() {
        let v = view(&[(1, true, true), (2, true, false), (3, true, false)]);
        for i in 0..500 {
            if let Owner::Peers(p) = v.owner(format!("k{i}").as_bytes()) {
                assert!(!p.contains(&"127.0.0.1:1".parse().unwrap()));
                assert!(p.len() <= MAX_PEER_TRIES);
            }
        }
        assert_eq!(view(&[]).owner(b"x"), Owner::Local);
        assert_eq!(view(&[(1, true, true)]).owner(b"x"), Owner::Local);
    }
}
