//! The RFC 9211 `Cache-Status` header, from pingora-cache's phase.

use pingora::cache::{CachePhase, NoCacheReason};
use std::time::SystemTime;

/// Cache name in `Cache-Status`.
pub const NAME: &str = "parapet";

/// Lookup result as a metric label and `Cache-Status` value; `None` when the
/// request never went through the cache (caching off for the route or method).
pub fn describe(
    phase: &CachePhase,
    fresh_until: Option<SystemTime>,
    now: SystemTime,
) -> Option<(&'static str, String)> {
    let ttl = || {
        fresh_until
            .map(|f| match f.duration_since(now) {
                Ok(d) => format!("; ttl={}", d.as_secs()),
                Err(e) => format!("; ttl=-{}", e.duration().as_secs()),
            })
            .unwrap_or_default()
    };
    let v = match phase {
        CachePhase::Hit => ("hit", format!("{NAME}; hit{}", ttl())),
        CachePhase::StaleUpdating => (
            "stale",
            format!("{NAME}; hit{}; detail=stale-while-revalidate", ttl()),
        ),
        CachePhase::Stale => (
            "stale",
            format!("{NAME}; fwd=stale; detail=stale-if-error{}", ttl()),
        ),
        CachePhase::Miss => ("miss", format!("{NAME}; fwd=miss; stored")),
        CachePhase::Expired => (
            "expired",
            format!("{NAME}; fwd=stale; fwd-status=200; stored"),
        ),
        CachePhase::Revalidated => (
            "revalidated",
            format!("{NAME}; fwd=stale; fwd-status=304{}", ttl()),
        ),
        CachePhase::RevalidatedNoCache(_) => {
            ("revalidated", format!("{NAME}; fwd=stale; fwd-status=304"))
        }
        CachePhase::Bypass => ("bypass", format!("{NAME}; fwd=bypass")),
        CachePhase::Disabled(NoCacheReason::NeverEnabled)
        | CachePhase::Uninit
        | CachePhase::CacheKey => return None,
        CachePhase::Disabled(reason) => {
            let (label, detail) = match reason {
                NoCacheReason::CacheLockTimeout
                | NoCacheReason::CacheLockGiveUp
                | NoCacheReason::CacheLockRetryLimit => ("miss", "lock"),
                NoCacheReason::StorageError | NoCacheReason::InternalError => {
                    ("miss", "storage-error")
                }
                NoCacheReason::UpstreamError => ("miss", "upstream-error"),
                NoCacheReason::ResponseTooLarge | NoCacheReason::PredictedResponseTooLarge => {
                    ("miss", "too-large")
                }
                NoCacheReason::Custom(why) => ("uncacheable", *why),
                _ => ("uncacheable", "origin"),
            };
            (label, format!("{NAME}; fwd=miss; detail={detail}"))
        }
    };
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let ttl = Some(now + Duration::from_secs(42));
        assert_eq!(
            describe(&CachePhase::Hit, ttl, now).unwrap().1,
            "parapet; hit; ttl=42"
        );
        assert_eq!(
            describe(&CachePhase::Miss, None, now).unwrap().1,
            "parapet; fwd=miss; stored"
        );
        assert_eq!(
            describe(
                &CachePhase::Disabled(NoCacheReason::Custom("no-store")),
                None,
                now
            )
            .unwrap()
            .1,
            "parapet; fwd=miss; detail=no-store"
        );
        assert_eq!(
            describe(
                &CachePhase::Disabled(NoCacheReason::NeverEnabled),
                None,
                now
            ),
            None
        );
        let stale = Some(now - Duration::from_secs(5));
        assert!(describe(&CachePhase::StaleUpdating, stale, now)
            .unwrap()
            .1
            .contains("ttl=-5"));
    }
}
