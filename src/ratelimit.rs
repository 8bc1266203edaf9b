//! Per-client token buckets, shared by all worker threads of the process.
//!
//! A client is its IP (after trusted-proxy handling), or a header or cookie
//! value. Keys are hashed with a per-process random key, so the table holds
//! 16 bytes per client, in 64 shards of at most `capacity / 64` entries: when
//! a shard is full, buckets that have refilled completely (idle clients) are
//! dropped, and if that frees nothing the shard is cleared. Memory stays
//! bounded whatever an attacker sends; the cost of a flood of new keys is
//! that some buckets restart full.

use crate::config::{ConfigErrors, RateLimitConfig};
use crate::upstream::HashKey;
use pingora::http::RequestHeader;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
/// Clients tracked per limiter, at most.
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 18;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Takes one token at `now`; `Err(wait)` says when one will be available.
/// Pure, so tests pass their own clock.
pub(crate) fn take(
    bucket: &mut Bucket,
    now: Instant,
    rate: f64,
    burst: f64,
) -> Result<(), Duration> {
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
    bucket.last = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        Ok(())
    } else {
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
    }
}

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    key: HashKey,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
    per_shard: usize,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimiter({}/s, burst {})", self.rate, self.burst)
    }
}

impl RateLimiter {
    pub(crate) fn build(
        cfg: &RateLimitConfig,
        path: &str,
        errs: &mut ConfigErrors,
    ) -> Option<RateLimiter> {
        let n = errs.len();
        if !(cfg.rate > 0.0 && cfg.rate.is_finite()) {
            errs.push(
                format!("{path}.rate"),
                "must be a positive number of requests per second",
            );
        }
        if !(cfg.burst >= 1.0 && cfg.burst.is_finite()) {
            errs.push(format!("{path}.burst"), "must be at least 1");
        }
        let key = match cfg.key.as_deref().unwrap_or("client_ip").parse::<HashKey>() {
            Ok(k @ (HashKey::ClientIp | HashKey::Header(_) | HashKey::Cookie(_))) => k,
            Ok(_) => {
                errs.push(
                    format!("{path}.key"),
                    "must be client_ip, header:NAME or cookie:NAME",
                );
                HashKey::ClientIp
            }
            Err(e) => {
                errs.push(format!("{path}.key"), e);
                HashKey::ClientIp
            }
        };
        (errs.len() == n).then(|| RateLimiter::new(cfg.rate, cfg.burst, key, DEFAULT_CAPACITY))
    }

    pub(crate) fn new(rate: f64, burst: f64, key: HashKey, capacity: usize) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            key,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (capacity / SHARDS).max(1),
        }
    }

    /// Takes a token for this request's client at `now`; `Err(retry_after)` when limited.
    pub(crate) fn check(
        &self,
        req: &RequestHeader,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), Duration> {
        let key = self.key.extract(req, client);
        let h = self.hasher.hash_one(&*key);
        let Ok(mut shard) = self.shards[(h as usize) % SHARDS].lock() else {
            return Ok(()); // a poisoned shard fails open rather than refusing everyone
        };
        if shard.len() >= self.per_shard && !shard.contains_key(&h) {
            let (rate, burst) = (self.rate, self.burst);
            shard.retain(|_, b| {
                let refilled =
                    b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate;
                refilled < burst
            });
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        let bucket = shard.entry(h).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        take(bucket, now, self.rate, self.burst)
    }
}

#[cfg(test)]
impl RateLimiter {
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 3.0,
            last: t0,
        };
        for _ in 0..3 {
            assert!(take(&mut b, t0, 2.0, 3.0).is_ok());
        }
        let wait = take(&mut b, t0, 2.0, 3.0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(take(&mut b, t0 + Duration::from_millis(500), 2.0, 3.0).is_ok());
        // A long idle period refills only up to the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert!(take(&mut b, later, 2.0, 3.0).is_ok());
        }
        assert!(take(&mut b, later, 2.0, 3.0).is_err());
    }

    #[test]
    fn clients_are_separate_and_the_table_is_bounded() {
        let l = RateLimiter::new(1.0, 2.0, HashKey::ClientIp, 640);
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check(&req, a, now).is_ok());
        assert!(l.check(&req, a, now).is_ok());
        assert!(l.check(&req, a, now).is_err());
        assert!(
            l.check(&req, b, now).is_ok(),
            "another client has its own bucket"
        );
        for i in 0..100_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = l.check(&req, ip, now);
        }
        assert!(
            l.tracked() <= 640,
            "a million-IP flood cannot grow the table: {}",
            l.tracked()
        );
    }
}
