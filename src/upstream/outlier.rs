//! Passive health (outlier ejection), as Envoy does it: live responses
//! count. A backend with `consecutive_5xx` 5xx answers in a row, or
//! `consecutive_gateway_failure` gateway failures in a row (a connect
//! error, a reset, a timeout, a 502/503/504), is ejected from selection for
//! `base_ejection_time` × the number of times it was ejected (capped at
//! `max_ejection_time`), unless `max_ejection_percent` of the pool is
//! ejected already (at least one backend may always be). It comes back when
//! the time runs out.
//!
//! The state lives in each backend's [`BackendStats`] (atomics, no lock on
//! the request path), outside Pingora's selector, which is rebuilt whenever
//! the backend set changes.

use super::stats::BackendStats;
use crate::config::units::parse_positive_duration;
use crate::config::{ConfigErrors, OutlierConfig};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// What one attempt at a backend came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response header with this status.
    Status(u16),
    /// No usable response: connect error, reset, timeout, garbage.
    GatewayFailure,
}

/// A pool's checked `outlier_detection`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OutlierPolicy {
    consecutive_5xx: u32,
    consecutive_gateway_failure: u32,
    base: Duration,
    max: Duration,
    max_percent: u32,
}

/// One backend's ejection state.
#[derive(Debug, Default)]
pub(crate) struct Ejection {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Ejected until this many ms after [`EPOCH`] (0: not ejected).
    until_ms: AtomicU64,
    /// Times ejected so far.
    count: AtomicU32,
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn ms(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// Now, in ms on the clock ejections are kept on.
pub(crate) fn now_ms() -> u64 {
    ms(Instant::now())
}

impl OutlierPolicy {
    pub(crate) fn build(cfg: &OutlierConfig, path: &str, errs: &mut ConfigErrors) -> OutlierPolicy {
        let mut duration = |key: &str, text: &str, dflt: u64| {
            parse_positive_duration(text).unwrap_or_else(|e| {
                errs.push(format!("{path}.{key}"), e);
                Duration::from_secs(dflt)
            })
        };
        let base = duration("base_ejection_time", &cfg.base_ejection_time, 30);
        let max = duration("max_ejection_time", &cfg.max_ejection_time, 300);
        if cfg.max_ejection_percent > 100 {
            errs.push(
                format!("{path}.max_ejection_percent"),
                "a percentage: 0..=100",
            );
        }
        for (key, v) in [
            ("consecutive_5xx", cfg.consecutive_5xx),
            (
                "consecutive_gateway_failure",
                cfg.consecutive_gateway_failure,
            ),
        ] {
            if v == 0 {
                errs.push(format!("{path}.{key}"), "must be at least 1");
            }
        }
        LazyLock::force(&EPOCH);
        OutlierPolicy {
            consecutive_5xx: cfg.consecutive_5xx.max(1),
            consecutive_gateway_failure: cfg.consecutive_gateway_failure.max(1),
            base,
            max: max.max(base),
            max_percent: cfg.max_ejection_percent.min(100),
        }
    }

    /// Counts an outcome; `true` when the backend's run of failures reached
    /// a threshold (the caller checks the pool's share, then ejects).
    pub(crate) fn observe(&self, e: &Ejection, outcome: Outcome) -> bool {
        let (five, gateway) = match outcome {
            Outcome::Status(s) if (502..=504).contains(&s) => (true, true),
            Outcome::Status(s) if s >= 500 => (true, false),
            Outcome::Status(_) => (false, false),
            Outcome::GatewayFailure => (true, true),
        };
        let bump = |c: &AtomicU32, hit: bool| {
            if hit {
                c.fetch_add(1, Ordering::Relaxed) + 1
            } else {
                c.store(0, Ordering::Relaxed);
                0
            }
        };
        let n5 = bump(&e.consecutive_5xx, five);
        let ngw = bump(&e.consecutive_gateway, gateway);
        n5 >= self.consecutive_5xx || ngw >= self.consecutive_gateway_failure
    }

    /// How many of `total` backends may be ejected at once.
    pub(crate) fn max_ejected(&self, total: usize) -> usize {
        (total * self.max_percent as usize / 100).max(1)
    }

    /// Ejects now; for how long.
    pub(crate) fn eject(&self, e: &Ejection, now: Instant) -> Duration {
        let n = e.count.fetch_add(1, Ordering::Relaxed) + 1;
        let time = self.base.saturating_mul(n).min(self.max);
        e.until_ms.store(ms(now + time).max(1), Ordering::Relaxed);
        e.consecutive_5xx.store(0, Ordering::Relaxed);
        e.consecutive_gateway.store(0, Ordering::Relaxed);
        time
    }
}

impl Ejection {
    /// Whether the backend is ejected at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.until_ms.load(Ordering::Relaxed) > ms(now)
    }

    /// When the latest ejection ended, if it has by `now_ms` (0 if none).
    pub(crate) fn ended_by(&self, now_ms: u64) -> u64 {
        let until = self.until_ms.load(Ordering::Relaxed);
        if until <= now_ms {
            until
        } else {
            0
        }
    }

    /// Ends an ejection early (a passing active health check); whether
    /// there was one.
    pub(crate) fn lift(&self, now: Instant) -> bool {
        let was = self.is_ejected(now);
        if was {
            self.until_ms.store(ms(now).max(1), Ordering::Relaxed);
        }
        was
    }

    /// Times this backend was ejected.
    pub(crate) fn count(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

/// The ejection state of a backend's stats.
pub(crate) fn of(stats: &BackendStats) -> &Ejection {
    &stats.ejection
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        let mut errs = ConfigErrors::default();
        let p = OutlierPolicy::build(&OutlierConfig::default(), "o", &mut errs);
        assert!(errs.is_empty());
        p
    }

    #[test]
    fn five_5xx_in_a_row_eject_and_an_answer_in_between_resets() {
        let p = policy();
        let e = Ejection::default();
        for _ in 0..4 {
            assert!(!p.observe(&e, Outcome::Status(500)));
        }
        assert!(!p.observe(&e, Outcome::Status(200)), "a good answer resets");
        for _ in 0..4 {
            assert!(!p.observe(&e, Outcome::Status(503)));
        }
        assert!(p.observe(&e, Outcome::GatewayFailure));
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_up_to_the_cap() {
        let p = policy();
        let e = Ejection::default();
        let now = Instant::now();
        assert_eq!(p.eject(&e, now), Duration::from_secs(30));
        assert!(e.is_ejected(now + Duration::from_secs(29)));
        assert!(!e.is_ejected(now + Duration::from_secs(31)));
        assert_eq!(p.eject(&e, now), Duration::from_secs(60));
        for _ in 0..20 {
            p.eject(&e, now);
        }
        assert_eq!(p.eject(&e, now), Duration::from_secs(300), "capped");
        assert_eq!(p.max_ejected(3), 1, "10% of 3, but at least one");
        assert_eq!(p.max_ejected(40), 4);
    }
}
