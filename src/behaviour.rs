//! Behavioural blocking: a decaying per-client score built from what the edge
//! already sees (client errors, refused and malformed requests, rate-limit
//! hits, slow-client kills). A client whose score reaches the threshold is
//! blocked (403) for a while; clients in `never_block` never are.
//!
//! The score halves every `half_life`, so occasional mistakes fade and only a
//! sustained pattern blocks. Scores are pure functions of the `Instant`s the
//! callers pass in. The table is bounded like the rate limiter's: hashed
//! keys, 64 shards with a fixed capacity, idle entries dropped first.

use crate::cidr::{Cidr, CidrSet};
use crate::config::units::parse_positive_duration;
use crate::config::{BehaviourConfig, ConfigErrors, Weights};
use crate::filters::EdgeReason;
use crate::metrics;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 64;
const CAPACITY: usize = 1 << 18;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Event {
    ClientError,
    Refused,
    Malformed,
    RateLimited,
    Slow,
}

impl Event {
    /// The event a finished request counts as: by its status, and whether
    /// the edge answered it itself (`edge_reason`). Requests refused because
    /// the client is already blocked count as nothing.
    pub(crate) fn from_outcome(status: u16, edge_reason: Option<EdgeReason>) -> Option<Event> {
        match (status, edge_reason) {
            (_, Some(EdgeReason::Blocked)) => None,
            (400, _) => Some(Event::Malformed),
            (429, _) => Some(Event::RateLimited),
            (403 | 405 | 413 | 414 | 431, Some(_)) => Some(Event::Refused),
            (400..=499, _) => Some(Event::ClientError),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Score {
    value: f64,
    at: Instant,
    blocked_until: Option<Instant>,
}

/// Exponential decay of `value` from `from` to `to`.
pub(crate) fn decay(value: f64, from: Instant, to: Instant, half_life: Duration) -> f64 {
    let dt = to.saturating_duration_since(from).as_secs_f64();
    value * 0.5f64.powf(dt / half_life.as_secs_f64())
}

pub(crate) struct Reputation {
    threshold: f64,
    half_life: Duration,
    block_for: Duration,
    never: CidrSet,
    weights: Weights,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<u64, Score>>>,
}

impl std::fmt::Debug for Reputation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reputation(threshold {})", self.threshold)
    }
}

impl Reputation {
    pub(crate) fn build(cfg: &BehaviourConfig, errs: &mut ConfigErrors) -> Option<Reputation> {
        let n = errs.len();
        if !(cfg.threshold > 0.0 && cfg.threshold.is_finite()) {
            errs.push("behaviour.threshold", "must be a positive number");
        }
        let mut dur = |key: &str, text: &str| {
            parse_positive_duration(text).unwrap_or_else(|e| {
                errs.push(format!("behaviour.{key}"), e);
                Duration::from_secs(1)
            })
        };
        let half_life = dur("half_life", &cfg.half_life);
        let block_for = dur("block_for", &cfg.block_for);
        let mut nets = Vec::new();
        for (i, text) in cfg.never_block.iter().enumerate() {
            match text.parse::<Cidr>() {
                Ok(c) => nets.push(c),
                Err(e) => errs.push(format!("behaviour.never_block[{i}]"), e),
            }
        }
        (errs.len() == n).then(|| Reputation {
            threshold: cfg.threshold,
            half_life,
            block_for,
            never: CidrSet::new(nets),
            weights: cfg.weights,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn shard(&self, ip: IpAddr) -> (u64, &Mutex<HashMap<u64, Score>>) {
        let h = self.hasher.hash_one(ip);
        (h, &self.shards[(h as usize) % SHARDS])
    }

    /// `Err(remaining)` while the client is blocked.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let (h, shard) = self.shard(ip);
        let Ok(mut shard) = shard.lock() else {
            return Ok(());
        };
        let Some(score) = shard.get_mut(&h) else {
            return Ok(());
        };
        match score.blocked_until {
            Some(until) if now < until => Err(until - now),
            Some(_) => {
                score.blocked_until = None;
                score.value = 0.0;
                metrics::CLIENT_UNBLOCKS.inc();
                log::info!("behaviour: client {ip} unblocked");
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Adds an event's weight; blocks the client when it crosses the threshold.
    pub(crate) fn record(&self, ip: IpAddr, event: Event, now: Instant) {
        let w = match event {
            Event::ClientError => self.weights.client_error,
            Event::Refused => self.weights.refused,
            Event::Malformed => self.weights.malformed,
            Event::RateLimited => self.weights.rate_limited,
            Event::Slow => self.weights.slow,
        };
        if w <= 0.0 || self.never.contains(ip) {
            return;
        }
        let (h, shard) = self.shard(ip);
        let Ok(mut shard) = shard.lock() else { return };
        if shard.len() >= CAPACITY / SHARDS && !shard.contains_key(&h) {
            let half_life = self.half_life;
            shard.retain(|_, s| {
                s.blocked_until.is_some() || decay(s.value, s.at, now, half_life) >= 1.0
            });
            if shard.len() >= CAPACITY / SHARDS {
                return; // full of active offenders: do not grow
            }
        }
        let score = shard.entry(h).or_insert(Score {
            value: 0.0,
            at: now,
            blocked_until: None,
        });
        if score.blocked_until.is_some() {
            return;
        }
        score.value = decay(score.value, score.at, now, self.half_life) + w;
        score.at = now;
        if score.value >= self.threshold {
            score.blocked_until = Some(now + self.block_for);
            metrics::CLIENT_BLOCKS.inc();
            log::warn!(
                "behaviour: client {ip} blocked for {:?} (score {:.0} >= {})",
                self.block_for,
                score.value,
                self.threshold
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(threshold: f64, never: &[&str]) -> Reputation {
        let cfg = BehaviourConfig {
            threshold,
            half_life: "10s".into(),
            block_for: "60s".into(),
            never_block: never.iter().map(|s| s.to_string()).collect(),
            weights: Weights::default(),
        };
        Reputation::build(&cfg, &mut ConfigErrors::default()).unwrap()
    }

    #[test]
    fn scores_decay_block_and_unblock() {
        let r = rep(10.0, &[]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..9 {
            r.record(ip, Event::ClientError, t0);
        }
        assert!(r.check(ip, t0).is_ok(), "9 < 10");
        // Twenty seconds later the score has quartered: still not blocked.
        r.record(ip, Event::ClientError, t0 + Duration::from_secs(20));
        assert!(r.check(ip, t0 + Duration::from_secs(20)).is_ok());
        r.record(ip, Event::Malformed, t0 + Duration::from_secs(20));
        let left = r.check(ip, t0 + Duration::from_secs(21)).unwrap_err();
        assert_eq!(left, Duration::from_secs(59));
        assert!(
            r.check(ip, t0 + Duration::from_secs(81)).is_ok(),
            "unblocked after block_for"
        );
    }

    #[test]
    fn outcomes_map_to_events() {
        assert_eq!(
            Event::from_outcome(404, Some(EdgeReason::NoRoute)),
            Some(Event::ClientError)
        );
        assert_eq!(
            Event::from_outcome(404, None),
            Some(Event::ClientError),
            "origin 404s count too"
        );
        assert_eq!(
            Event::from_outcome(403, Some(EdgeReason::PathDenied)),
            Some(Event::Refused)
        );
        assert_eq!(
            Event::from_outcome(403, None),
            Some(Event::ClientError),
            "an origin 403 is not an edge refusal"
        );
        assert_eq!(Event::from_outcome(403, Some(EdgeReason::Blocked)), None);
        assert_eq!(
            Event::from_outcome(
                400,
                Some(EdgeReason::Framing(
                    crate::filters::framing::Refusal::ContentLength
                ))
            ),
            Some(Event::Malformed)
        );
        assert_eq!(
            Event::from_outcome(429, Some(EdgeReason::RateLimited)),
            Some(Event::RateLimited)
        );
        assert_eq!(Event::from_outcome(200, None), None);
        assert_eq!(Event::from_outcome(502, Some(EdgeReason::BadGateway)), None);
    }

    #[test]
    fn never_block_and_bad_config() {
        let r = rep(1.0, &["192.0.2.0/24"]);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            r.record(ip, Event::Malformed, now);
        }
        assert!(r.check(ip, now).is_ok());
        let mut errs = ConfigErrors::default();
        let cfg = BehaviourConfig {
            threshold: -1.0,
            never_block: vec!["nope".into()],
            half_life: "0s".into(),
            ..Default::default()
        };
        assert!(Reputation::build(&cfg, &mut errs).is_none());
        let text = errs.to_string();
        assert!(
            text.contains("behaviour.threshold")
                && text.contains("behaviour.never_block[0]")
                && text.contains("behaviour.half_life"),
            "{text}"
        );
    }
}
