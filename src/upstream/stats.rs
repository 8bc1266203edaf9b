//! Recent behaviour of one backend, for the admin API and the status page:
//! requests, errors, and a moving average of response-header latency. All
//! atomics: recorded on the request path without locks. Also whether the
//! active health check has the backend out of service.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct BackendStats {
    requests: AtomicU64,
    errors: AtomicU64,
    /// Exponentially weighted moving average (weight 1/8) of the time to the
    /// response header, in microseconds; 0 until the first response.
    latency_us: AtomicU64,
    /// Passive health (outlier ejection) state.
    pub(crate) ejection: super::outlier::Ejection,
    /// Requests to this backend in flight now (see [`InFlight`]).
    in_flight: AtomicU64,
    /// When it last entered service (ms on [`super::outlier::now_ms`]'s
    /// clock; 0: there from the start), for slow start.
    in_service_since_ms: AtomicU64,
    /// The active health check's verdict, as its transitions report it
    /// (see [`super::health::HealthMetrics`]): false until a check fails
    /// enough times in a row, as Pingora starts every backend healthy.
    failing_checks: AtomicBool,
}

/// One request in flight to a backend: counted while it lives.
pub(crate) struct InFlight(std::sync::Arc<BackendStats>);

impl InFlight {
    pub(crate) fn start(stats: std::sync::Arc<BackendStats>) -> InFlight {
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(stats)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendStats {
    pub fn response(&self, latency: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let sample = latency.as_micros().min(u128::from(u64::MAX / 8)) as u64;
        // A lost update under a race only skips one sample of an average.
        let old = self.latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 7 + sample) / 8
        };
        self.latency_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Marks the backend as entering service now (slow start).
    pub(crate) fn entered_service(&self) {
        self.entered_service_at(super::outlier::now_ms());
    }

    pub(crate) fn entered_service_at(&self, ms: u64) {
        self.in_service_since_ms.store(ms.max(1), Ordering::Relaxed);
    }

    pub(crate) fn in_service_since_ms(&self) -> u64 {
        self.in_service_since_ms.load(Ordering::Relaxed)
    }

    /// Records a health-check transition.
    pub(crate) fn set_passes_checks(&self, healthy: bool) {
        self.failing_checks.store(!healthy, Ordering::Relaxed);
    }

    /// Whether the active health check lets traffic go here now.
    pub(crate) fn passes_checks(&self) -> bool {
        !self.failing_checks.load(Ordering::Relaxed)
    }

    /// Times passive health ejected this backend.
    pub(crate) fn ejections(&self) -> u32 {
        self.ejection.count()
    }

    /// Requests in flight now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Moving average latency in microseconds (0: none seen yet).
    pub(crate) fn latency_us(&self) -> u64 {
        self.latency_us.load(Ordering::Relaxed)
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Moving average latency in milliseconds, if any response was seen.
    pub fn latency_ms(&self) -> Option<f64> {
        match self.latency_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(us as f64 / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_follows_samples() {
        let s = BackendStats::default();
        assert_eq!(s.latency_ms(), None);
        s.response(Duration::from_millis(8));
        assert_eq!(s.latency_ms(), Some(8.0));
        for _ in 0..100 {
            s.response(Duration::from_millis(1));
        }
        assert!((s.latency_ms().unwrap() - 1.0).abs() < 0.01);
        s.error();
        assert_eq!((s.requests(), s.errors()), (101, 1));
    }
}
