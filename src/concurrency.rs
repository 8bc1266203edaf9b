//! Concurrency limits: requests in flight per upstream pool and per client.
//! A request over a limit is answered at once (503 for a saturated pool,
//! 429 for a client) instead of queueing. Slots are RAII guards held in the
//! request context, so every way out of a request releases them.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A counter with a ceiling.
#[derive(Debug)]
pub struct Gate {
    max: usize,
    current: Arc<AtomicUsize>,
}

/// A held slot of a [`Gate`] or [`PerClient`]; released on drop.
pub enum Slot {
    Gate(Arc<AtomicUsize>),
    Client(Arc<PerClientInner>, u64),
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self {
            Slot::Gate(c) => {
                c.fetch_sub(1, Ordering::AcqRel);
            }
            Slot::Client(inner, key) => inner.release(*key),
        }
    }
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        Gate {
            max,
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A slot, or `None` when `max` are already taken.
    pub fn try_acquire(&self) -> Option<Slot> {
        let mut now = self.current.load(Ordering::Acquire);
        loop {
            if now >= self.max {
                return None;
            }
            match self.current.compare_exchange_weak(
                now,
                now + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Slot::Gate(self.current.clone())),
                Err(actual) => now = actual,
            }
        }
    }

    pub fn in_use(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }
}

const SHARDS: usize = 32;

pub struct PerClientInner {
    max: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<u64, usize>>>,
}

impl PerClientInner {
    fn release(&self, key: u64) {
        if let Ok(mut shard) = self.shards[(key as usize) % SHARDS].lock() {
            if let Some(n) = shard.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    shard.remove(&key);
                }
            }
        }
    }
}

/// In-flight requests per client IP. Entries exist only while a client has
/// requests in flight, so the table is bounded by concurrent requests.
pub struct PerClient(Arc<PerClientInner>);

impl std::fmt::Debug for PerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PerClient(max {})", self.0.max)
    }
}

impl PerClient {
    pub fn new(max: usize) -> PerClient {
        PerClient(Arc::new(PerClientInner {
            max,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }))
    }

    pub fn try_acquire(&self, client: IpAddr) -> Option<Slot> {
        let key = self.0.hasher.hash_one(client);
        let mut shard = self.0.shards[(key as usize) % SHARDS].lock().ok()?;
        let n = shard.entry(key).or_insert(0);
        if *n >= self.0.max {
            return None;
        }
        *n += 1;
        Some(Slot::Client(self.0.clone(), key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_and_clients_release_on_drop() {
        let g = Gate::new(2);
        let a = g.try_acquire().unwrap();
        let _b = g.try_acquire().unwrap();
        assert!(g.try_acquire().is_none());
        drop(a);
        assert!(g.try_acquire().is_some());

        let c = PerClient::new(1);
        let x: IpAddr = "192.0.2.1".parse().unwrap();
        let y: IpAddr = "192.0.2.2".parse().unwrap();
        let s = c.try_acquire(x).unwrap();
        assert!(c.try_acquire(x).is_none());
        assert!(c.try_acquire(y).is_some());
        drop(s);
        assert!(c.try_acquire(x).is_some());
        assert!(
            c.0.shards.iter().all(|s| s.lock().unwrap().is_empty()),
            "no entries left behind"
        );
    }
}
