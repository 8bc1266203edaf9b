//! Steering by region: which of a pool's regions takes a request, modelled
//! on Envoy's priority levels.
//!
//! The client's regions, nearest first, are the levels. Each level's
//! *availability* is its usable share (weight of backends that pass their
//! health check, are not ejected and have not failed this request, over
//! the weight of all its backends) × the overprovisioning factor, capped at
//! 100 %. The nearest level takes min(its availability, 100 %) of the
//! traffic, the next takes as much of the rest as its availability allows,
//! and so on; when the levels together have less than 100 %, the shares are
//! scaled up to fill it. With the default factor of 1.4 a region keeps all
//! of its traffic until fewer than 1/1.4 ≈ 71 % of it is usable.
//!
//! When the pool as a whole falls below the panic threshold (the sum of the
//! availabilities, capped at 100 %, under `panic_threshold`), health is
//! ignored: the nearest region with any backend not yet failed by this
//! request serves, as Envoy's panic mode does, rather than a few survivors
//! taking everything or every request failing.

use super::BackendInfo;
use crate::config::{ConfigErrors, LocalityConfig};
use crate::geo::RegionId;

/// How the region of a request was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// The client's nearest region of the pool.
    Local = 0,
    /// A farther region taking a share the nearer ones could not.
    Spill = 1,
    /// Too few usable backends anywhere: health ignored.
    Panic = 2,
}

/// A pool's locality settings.
pub(crate) struct Locality {
    factor: f64,
    /// As a fraction (0..=1).
    panic_threshold: f64,
    /// `parapet_upstream_region_requests_total` by region id and choice.
    counters: Vec<[prometheus::IntCounter; 3]>,
}

impl Locality {
    pub(super) fn build(
        cfg: &LocalityConfig,
        pool: &str,
        regions: &crate::geo::Regions,
        at: &dyn Fn(&str) -> String,
        errs: &mut ConfigErrors,
    ) -> Locality {
        if !(cfg.overprovisioning_factor >= 1.0 && cfg.overprovisioning_factor <= 100.0) {
            errs.push(
                at("locality.overprovisioning_factor"),
                format!("must be 1..=100 (got {})", cfg.overprovisioning_factor),
            );
        }
        if !(0.0..=100.0).contains(&cfg.panic_threshold) {
            errs.push(
                at("locality.panic_threshold"),
                format!("must be a percentage 0..=100 (got {})", cfg.panic_threshold),
            );
        }
        let n = regions.order(0).len();
        let counters = (0..n as RegionId)
            .map(|r| {
                let c = |choice: &str| {
                    crate::metrics::REGION_REQUESTS.with_label_values(&[
                        pool,
                        regions.name(r),
                        choice,
                    ])
                };
                [c("local"), c("spill"), c("panic")]
            })
            .collect();
        Locality {
            factor: cfg.overprovisioning_factor,
            panic_threshold: cfg.panic_threshold / 100.0,
            counters,
        }
    }

    /// The region a request goes to: `order` is the client's regions,
    /// nearest first; `usable` says whether a backend may take it (health,
    /// ejection, not failed yet), `untried` whether it has not failed this
    /// request; `roll` is uniform in [0, 1) (from the hash key on hashing
    /// pools, so a key keeps its region).
    pub(super) fn plan(
        &self,
        members: &[BackendInfo],
        order: &[RegionId],
        usable: impl Fn(&BackendInfo) -> bool,
        untried: impl Fn(&BackendInfo) -> bool,
        roll: f64,
    ) -> Option<(RegionId, Choice)> {
        // (region, availability) of each level the pool has backends in.
        let mut levels: Vec<(RegionId, f64)> = Vec::with_capacity(order.len());
        for &region in order {
            let (mut total, mut up) = (0usize, 0usize);
            for b in members.iter().filter(|b| b.region_id == Some(region)) {
                total += b.weight;
                if usable(b) {
                    up += b.weight;
                }
            }
            if total > 0 {
                levels.push((region, (up as f64 / total as f64 * self.factor).min(1.0)));
            }
        }
        let sum: f64 = levels.iter().map(|l| l.1).sum();
        if sum.min(1.0) < self.panic_threshold || sum == 0.0 {
            let region = order.iter().copied().find(|r| {
                members
                    .iter()
                    .any(|b| b.region_id == Some(*r) && untried(b))
            })?;
            return Some((region, Choice::Panic));
        }
        let mut left = 1.0;
        let mut shares: Vec<f64> = levels
            .iter()
            .map(|l| {
                let share = l.1.min(left);
                left -= share;
                share
            })
            .collect();
        let total: f64 = shares.iter().sum();
        for s in &mut shares {
            *s /= total;
        }
        let mut acc = 0.0;
        let nearest = levels.first().map(|l| l.0);
        for (i, share) in shares.iter().enumerate() {
            acc += share;
            if *share > 0.0 && (roll < acc || i == shares.len() - 1) {
                let region = levels[i].0;
                let choice = if Some(region) == nearest {
                    Choice::Local
                } else {
                    Choice::Spill
                };
                return Some((region, choice));
            }
        }
        // Rounding left the roll past the last share: the last level with one.
        let i = shares.iter().rposition(|s| *s > 0.0)?;
        Some((levels[i].0, Choice::Spill))
    }

    pub(super) fn count(&self, region: RegionId, choice: Choice) {
        if let Some(c) = self.counters.get(usize::from(region)) {
            c[choice as usize].inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pool(regions: &[(RegionId, usize)]) -> Vec<BackendInfo> {
        let mut out = Vec::new();
        for (i, (region, n)) in regions.iter().enumerate() {
            for j in 0..*n {
                out.push(BackendInfo {
                    addr: format!("127.0.{i}.{j}:80").parse().unwrap(),
                    label: String::new(),
                    weight: 1,
                    region: String::new(),
                    region_id: Some(*region),
                    sni: String::new(),
                    stats: Arc::default(),
                });
            }
        }
        out
    }

    fn locality() -> Locality {
        Locality {
            factor: 1.4,
            panic_threshold: 0.5,
            counters: Vec::new(),
        }
    }

    /// Share of 10,000 evenly spread rolls each region gets, with `down`
    /// backends (by index) unusable.
    fn shares(
        members: &[BackendInfo],
        order: &[RegionId],
        down: &[usize],
    ) -> Vec<(RegionId, f64, Choice)> {
        let l = locality();
        let mut counts: Vec<(RegionId, usize, Choice)> = Vec::new();
        for i in 0..10_000 {
            let roll = i as f64 / 10_000.0;
            let usable = |b: &BackendInfo| {
                !down.contains(&members.iter().position(|m| m.addr == b.addr).unwrap())
            };
            let (r, c) = l.plan(members, order, usable, |_| true, roll).unwrap();
            match counts.iter_mut().find(|e| e.0 == r) {
                Some(e) => e.1 += 1,
                None => counts.push((r, 1, c)),
            }
        }
        counts
            .into_iter()
            .map(|(r, n, c)| (r, n as f64 / 10_000.0, c))
            .collect()
    }

    #[test]
    fn local_region_keeps_traffic_until_overprovisioning_runs_out() {
        // Region 0 has 10 backends, region 1 has 10.
        let m = pool(&[(0, 10), (1, 10)]);
        assert_eq!(shares(&m, &[0, 1], &[]), [(0, 1.0, Choice::Local)]);
        // 8 of 10 up: 0.8 × 1.4 ≥ 1, still all local.
        assert_eq!(shares(&m, &[0, 1], &[0, 1]), [(0, 1.0, Choice::Local)]);
        // 5 of 10 up: 0.5 × 1.4 = 70 % local, 30 % spills.
        let s = shares(&m, &[0, 1], &[0, 1, 2, 3, 4]);
        assert_eq!(s.len(), 2);
        assert!(
            (s[0].1 - 0.7).abs() < 0.001 && s[0].2 == Choice::Local,
            "{s:?}"
        );
        assert!(
            (s[1].1 - 0.3).abs() < 0.001 && s[1].2 == Choice::Spill,
            "{s:?}"
        );
        // The other client's view: region 1 first.
        assert_eq!(
            shares(&m, &[1, 0], &[0, 1, 2, 3, 4]),
            [(1, 1.0, Choice::Local)]
        );
    }

    #[test]
    fn a_dead_region_fails_over_whole_and_low_health_is_normalised() {
        let m = pool(&[(0, 2), (1, 2), (2, 2)]);
        // Region 0 entirely down: region 1 takes everything.
        assert_eq!(shares(&m, &[0, 1, 2], &[0, 1]), [(1, 1.0, Choice::Spill)]);
        // Regions 0 and 1 half up (70 % each), 2 down: 70/30, as Envoy.
        let s = shares(&m, &[0, 1, 2], &[0, 2, 4, 5]);
        assert!(
            (s[0].1 - 0.7).abs() < 0.001 && (s[1].1 - 0.3).abs() < 0.001,
            "{s:?}"
        );
        // Only region 0 has anything left (1 of 2: 70 %): scaled up to all.
        assert_eq!(
            shares(&m, &[0, 1, 2], &[1, 2, 3, 4, 5]),
            [(0, 1.0, Choice::Local)]
        );
        // A region the pool has no backend in is skipped.
        assert_eq!(shares(&m, &[7, 2, 0], &[]), [(2, 1.0, Choice::Local)]);
    }

    #[test]
    fn panic_ignores_health_below_the_threshold() {
        let m = pool(&[(0, 4), (1, 4)]);
        // 1 of 8 up: 0.25 × 1.4 = 35 % < 50 %: panic, nearest region.
        let s = shares(&m, &[0, 1], &[0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(s, [(0, 1.0, Choice::Panic)]);
        // Everything down and everything already tried: nothing.
        let l = locality();
        assert_eq!(l.plan(&m, &[0, 1], |_| false, |_| false, 0.5), None);
        // Nearest region all tried: the next one with an untried backend.
        let r = l.plan(&m, &[0, 1], |_| false, |b| b.region_id == Some(1), 0.5);
        assert_eq!(r, Some((1, Choice::Panic)));
    }
}
