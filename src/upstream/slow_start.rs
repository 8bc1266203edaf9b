//! Slow start: a backend that enters service (discovery added it, or it
//! passed its health checks again) or comes back from an ejection gets a
//! share of its weight that grows linearly from 10 % to 100 % over the
//! pool's `slow_start` window, so a cold cache or JIT is not hit with a
//! full share at once (Envoy's `slow_start_config`, nginx Plus'
//! `slow_start`). Backends there at start-up are warm.
//!
//! Round robin and the load-aware selections apply it; consistent hashing
//! does not (a key's owner does not change with load).

use super::{outlier, BackendStats};
use crate::config::units::parse_positive_duration;
use crate::config::ConfigErrors;

/// The share a backend gets the moment it enters service.
const MIN_SHARE: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
pub(crate) struct SlowStart {
    window_ms: u64,
}

impl SlowStart {
    pub(super) fn build(text: &str, at: &str, errs: &mut ConfigErrors) -> Option<SlowStart> {
        match parse_positive_duration(text) {
            Ok(d) => Some(SlowStart {
                window_ms: d.as_millis().max(1) as u64,
            }),
            Err(e) => {
                errs.push(at, e);
                None
            }
        }
    }

    /// The share of its weight `stats`' backend gets at `now_ms` (on the
    /// clock of [`outlier::now_ms`]).
    pub(super) fn warmth(&self, stats: &BackendStats, now_ms: u64) -> f64 {
        let start = stats
            .in_service_since_ms()
            .max(outlier::of(stats).ended_by(now_ms));
        if start == 0 || now_ms >= start + self.window_ms {
            return 1.0;
        }
        ((now_ms - start) as f64 / self.window_ms as f64).max(MIN_SHARE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_grows_from_ten_percent_to_all_over_the_window() {
        let s = SlowStart { window_ms: 10_000 };
        let stats = BackendStats::default();
        assert_eq!(s.warmth(&stats, 5_000), 1.0, "there from the start: warm");
        stats.entered_service_at(1_000);
        assert_eq!(s.warmth(&stats, 1_000), MIN_SHARE);
        assert!((s.warmth(&stats, 6_000) - 0.5).abs() < 1e-9);
        assert_eq!(s.warmth(&stats, 11_000), 1.0);
    }
}
