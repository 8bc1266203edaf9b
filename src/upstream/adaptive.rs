//! Load-aware selection: `least_connections` and `p2c_ewma`. Both choose
//! among the pool's ready, not-ejected, not-yet-failed backends, from state
//! kept in each backend's stats (requests in flight, a moving average of
//! latency), which survives Pingora's rebuilds of its selector.
//!
//! * `least_connections`: the fewest requests in flight per unit of weight
//!   (ties broken at random, so equal backends share the load).
//! * `p2c_ewma`: two backends at random, the one with the lower moving
//!   average of response-header latency × (requests in flight + 1) wins
//!   (linkerd2-proxy's and Finagle's peak EWMA). A 5xx answer counts as a
//!   slow one ([`FAILURE_PENALTY`]), so a backend answering fast errors does
//!   not attract traffic; a backend never measured yet counts as fast, so a
//!   new one gets tried.

use super::BackendInfo;
use std::cell::Cell;

/// The latency a 5xx answer is recorded as.
pub(crate) const FAILURE_PENALTY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adaptive {
    LeastConnections,
    P2cEwma,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(0x9e37_79b9_7f4a_7c15 ^ (std::process::id() as u64));
}

/// A cheap pseudo-random number (xorshift), per thread.
fn next_random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// A pseudo-random number in [0, 1).
pub(crate) fn random_unit() -> f64 {
    (next_random() >> 11) as f64 / (1u64 << 53) as f64
}

impl Adaptive {
    /// `warmth` scales a backend's weight (slow start: 0.1..=1).
    pub(crate) fn choose<'a>(
        self,
        candidates: &[&'a BackendInfo],
        warmth: impl Fn(&BackendInfo) -> f64,
    ) -> Option<&'a BackendInfo> {
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => match self {
                Adaptive::LeastConnections => {
                    let load = |b: &BackendInfo| {
                        // (in flight + 1) / weight, in integers so ties are exact.
                        let weight = (b.weight.max(1) as f64 * warmth(b) * 1000.0).max(1.0);
                        (b.stats.in_flight() + 1) as u128 * 1_000_000_000 / weight as u128
                    };
                    // Each load read once: other threads change the counts
                    // meanwhile, and a second reading could leave no backend
                    // at the minimum of the first.
                    let loads: Vec<u128> = candidates.iter().map(|b| load(b)).collect();
                    let best = *loads.iter().min()?;
                    let tied: Vec<&BackendInfo> = candidates
                        .iter()
                        .zip(&loads)
                        .filter(|(_, l)| **l == best)
                        .map(|(b, _)| *b)
                        .collect();
                    tied.get((next_random() % tied.len().max(1) as u64) as usize)
                        .copied()
                }
                Adaptive::P2cEwma => {
                    let i = (next_random() % n as u64) as usize;
                    let mut j = (next_random() % (n as u64 - 1)) as usize;
                    if j >= i {
                        j += 1;
                    }
                    let cost = |b: &BackendInfo| {
                        let weight = (b.weight.max(1) as f64 * warmth(b) * 1000.0).max(1.0);
                        b.stats.latency_us() as u128 * (b.stats.in_flight() + 1) as u128 * 1000
                            / weight as u128
                    };
                    let (a, b) = (candidates[i], candidates[j]);
                    Some(if cost(b) < cost(a) { b } else { a })
                }
            },
        }
    }
}
