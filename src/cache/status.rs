//! The RFC 9211 `Cache-Status` header, from pingora-cache's phase.

use pingora::cache::{CachePhase, NoCacheReason};
use std::time::SystemTime;

/// Cache name in `Cache-Status`.
pub(crate) const NAME: &str = "parapet";

/// Lookup result as a metric label and `Cache-Status` value; `None` when the
/// request never went through the cache (caching off for the route or method).
/// Built by appending, without the formatting machinery: it runs on every hit.
pub(crate) fn describe(
    name: &str,
    phase: &CachePhase,
    fresh_until: Option<SystemTime>,
    now: SystemTime,
) -> Option<(&'static str, String)> {
    let (label, text, ttl): (&'static str, &str, bool) = match phase {
        CachePhase::Hit => ("hit", "; hit", true),
        CachePhase::StaleUpdating => ("stale", "; hit", true),
        CachePhase::Stale => ("stale", "; fwd=stale; detail=stale-if-error", true),
        CachePhase::Miss => ("miss", "; fwd=miss; stored", false),
        CachePhase::Expired => ("expired", "; fwd=stale; fwd-status=200; stored", false),
        CachePhase::Revalidated => ("revalidated", "; fwd=stale; fwd-status=304", true),
        CachePhase::RevalidatedNoCache(_) => ("revalidated", "; fwd=stale; fwd-status=304", false),
        CachePhase::Bypass => ("bypass", "; fwd=bypass", false),
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
            let mut v = String::with_capacity(name.len() + 20 + detail.len());
            v.push_str(name);
            v.push_str("; fwd=miss; detail=");
            v.push_str(detail);
            return Some((label, v));
        }
    };
    let mut v = String::with_capacity(64);
    v.push_str(name);
    v.push_str(text);
    if ttl {
        if let Some(f) = fresh_until {
            v.push_str("; ttl=");
            let mut digits = itoa::Buffer::new();
            match f.duration_since(now) {
                Ok(d) => v.push_str(digits.format(d.as_secs())),
                Err(e) => {
                    v.push('-');
                    v.push_str(digits.format(e.duration().as_secs()));
                }
            }
        }
    }
    if matches!(phase, CachePhase::StaleUpdating) {
        v.push_str("; detail=stale-while-revalidate");
    }
    Some((label, v))
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
            describe(NAME, &CachePhase::Hit, ttl, now).unwrap().1,
            "parapet; hit; ttl=42"
        );
        assert_eq!(
            describe(NAME, &CachePhase::Miss, None, now).unwrap().1,
            "parapet; fwd=miss; stored"
        );
        assert_eq!(
            describe(
                NAME,
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
                NAME,
                &CachePhase::Disabled(NoCacheReason::NeverEnabled),
                None,
                now
            ),
            None
        );
        let stale = Some(now - Duration::from_secs(5));
        assert!(describe(NAME, &CachePhase::StaleUpdating, stale, now)
            .unwrap()
            .1
            .contains("ttl=-5"));
    }
}
