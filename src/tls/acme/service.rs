//! The background loop of one ACME listener.
//!
//! Each round: a newer valid certificate in storage (another node's, or a
//! previous generation's) is picked up; if none is served, or the served one
//! is past `renew_at` of its lifetime, this node takes the ordering lease
//! and orders. Nodes without the lease wait and pick the result up from
//! storage. A failed order is retried after `retry`, doubling to
//! `retry_max`, each wait jittered by up to a quarter so that nodes and
//! generations spread out; the failure is logged once per attempt and
//! counted. The certificate being served keeps being served throughout.
//!
//! ACME Renewal Information (RFC 9773): where the CA's directory offers it,
//! the node asks when the served certificate should be renewed (again after
//! the CA's `Retry-After`, clamped to a minute..a day) and renews at a random
//! point of the suggested window when that comes before `renew_at`; a
//! window already over means now (a revoked certificate, say). The new order
//! names the certificate it `replaces`. Two guards keep a CA's odd answer
//! from turning into an ordering loop: a window that begins before the
//! certificate was issued is not about it and is ignored (pebble's fixed
//! two-day window around a 30-second certificate), and the CA can bring a
//! renewal forward at most once an hour.

use super::{challenge, issue, store, Managed};
use crate::metrics;
use crate::tls::certs::{self, CertKey};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct AcmeService {
    pub(crate) managed: Arc<Managed>,
}

/// What the loop carries between rounds.
#[derive(Default)]
struct State {
    /// Failed orders in a row.
    failures: u32,
    ari: Ari,
}

/// Renewal information about the served certificate.
#[derive(Default)]
struct Ari {
    /// The certificate this is about.
    serial: Option<Vec<u8>>,
    /// When to renew by the CA's window (unix seconds), if it is usable.
    renew: Option<i64>,
    /// The CA answered for this certificate (an order may name it in `replaces`).
    answered: bool,
    /// When to ask again.
    next_ask: i64,
    /// The last time a window brought a renewal forward.
    last_forward: Option<i64>,
}

/// Bounds on the CA's `Retry-After` for renewal information.
const ARI_MIN: i64 = 60;
const ARI_MAX: i64 = 86_400;
/// How often a window may bring a renewal forward.
const ARI_FORWARD_EVERY: i64 = 3600;

/// How often a node without work looks at storage for another node's
/// certificate while one is missing or due.
const WATCH: Duration = Duration::from_secs(2);

/// Longest sleep between looks when nothing is due (a renewal date far off
/// is re-checked at least this often, and storage too).
const IDLE: Duration = Duration::from_secs(3600);

/// When the certificate should be renewed: `renew_at` of its lifetime.
fn due_at(cert: &CertKey, renew_at: f64) -> i64 {
    let leaf = &cert.chain[0];
    let start = certs::unix_time(leaf.not_before());
    let end = certs::unix_time(leaf.not_after());
    start + ((end - start) as f64 * renew_at) as i64
}

fn serial(cert: &CertKey) -> Option<Vec<u8>> {
    cert.chain[0]
        .serial_number()
        .to_bn()
        .ok()
        .map(|b| b.to_vec())
}

/// A uniformly random number in [0, 1].
fn unit_random() -> f64 {
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX)
}

/// `d` plus up to a quarter of it at random.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(unit_random() / 4.0)
}

/// When to renew by the CA's suggested window (RFC 9773 §4.2): a random
/// point in it, or now when it is over. `None` when the window begins
/// before the certificate was issued: it is not about this certificate.
fn renew_in_window(start: i64, end: i64, not_before: i64, now: i64) -> Option<i64> {
    if end <= now {
        return Some(now);
    }
    if start < not_before {
        return None;
    }
    Some(start + ((end - start) as f64 * unit_random()) as i64)
}

impl AcmeService {
    /// Asks the CA about `cert` when it is time to; returns when the CA's
    /// window says to renew, if that is usable.
    async fn ask_ca(&self, cert: &CertKey, ari: &mut Ari, now: i64) -> Option<i64> {
        let s = &self.managed.settings;
        let id = serial(cert);
        if ari.serial != id {
            let last_forward = ari.last_forward;
            *ari = Ari {
                serial: id,
                last_forward,
                ..Ari::default()
            };
        }
        if now >= ari.next_ask {
            let leaf = &cert.chain[0];
            match issue::renewal_window(s, leaf).await {
                Ok(Some(w)) => {
                    metrics::ACME_RENEWAL_INFO
                        .with_label_values(&["window"])
                        .inc();
                    let first = !ari.answered;
                    ari.answered = true;
                    ari.next_ask = now + (w.ask_again.as_secs() as i64).clamp(ARI_MIN, ARI_MAX);
                    let not_before = certs::unix_time(leaf.not_before());
                    ari.renew = renew_in_window(w.start, w.end, not_before, now);
                    if ari.renew.is_none() && first {
                        log::info!(
                            "ACME: the CA's renewal window for {} begins before the certificate was issued; renewing at renew_at of its lifetime",
                            s.domains[0]
                        );
                    }
                }
                Ok(None) => {
                    metrics::ACME_RENEWAL_INFO
                        .with_label_values(&["unsupported"])
                        .inc();
                    ari.next_ask = now + ARI_MAX;
                }
                Err(e) => {
                    metrics::ACME_RENEWAL_INFO
                        .with_label_values(&["failed"])
                        .inc();
                    log::warn!(
                        "ACME: asking when to renew {} failed: {e}; renewing at renew_at of its lifetime until an answer",
                        s.domains[0]
                    );
                    ari.next_ask = now + IDLE.as_secs() as i64;
                }
            }
        }
        ari.renew
    }

    /// One round; returns how long to sleep before the next.
    async fn round(&self, state: &mut State) -> Duration {
        let State { failures, ari } = state;
        let m = &self.managed;
        let s = &m.settings;
        let now = certs::unix_now();
        let renew_at = s.renew_at;
        let current = m.current();
        // Storage first: a certificate another node (or generation) stored.
        if let Some(stored) = store::load_certificate(s) {
            let newer = current.as_ref().is_none_or(|c| {
                serial(c) != serial(&stored) && due_at(&stored, renew_at) > due_at(c, renew_at)
            });
            if newer {
                log::info!(
                    "ACME: serving the certificate for {} found in storage (expires {})",
                    s.domains.join(", "),
                    stored.chain[0].not_after()
                );
                m.install(stored);
            }
        }
        let current = m.current();
        let mut by_ca = false;
        if let Some(c) = &current {
            let mut due = due_at(c, renew_at);
            if due > now {
                if let Some(at) = self.ask_ca(c, ari, now).await {
                    // At most one renewal an hour brought forward by the CA.
                    let at = at.max(ari.last_forward.map_or(0, |t| t + ARI_FORWARD_EVERY));
                    if at < due {
                        due = at;
                        by_ca = true;
                    }
                }
            }
            if due > now {
                *failures = 0;
                let ask = Duration::from_secs((ari.next_ask - now).max(1) as u64);
                return Duration::from_secs((due - now) as u64).min(IDLE).min(ask);
            }
        }
        let Some(_lease) = store::Lease::try_take(s) else {
            log::debug!(
                "ACME: another node holds the ordering lease for {}",
                s.domains[0]
            );
            return WATCH;
        };
        // Someone may have finished between our look and the lease.
        if let Some(stored) = store::load_certificate(s) {
            let other = current
                .as_ref()
                .is_none_or(|c| serial(c) != serial(&stored));
            if other && due_at(&stored, renew_at) > now {
                m.install(stored);
                return WATCH;
            }
        }
        log::info!(
            "ACME: ordering a certificate for {} from {}{}",
            s.domains.join(", "),
            s.directory,
            match (&current, by_ca) {
                (None, _) => "",
                (Some(_), false) => " (renewal)",
                (Some(_), true) => " (renewal, when the CA's renewal information says)",
            }
        );
        if by_ca {
            ari.last_forward = Some(now);
        }
        // A retry goes without `replaces`: the CA may refuse it for a
        // certificate an order that failed midway already replaced.
        let replaces = current
            .as_ref()
            .filter(|c| ari.answered && ari.serial == serial(c) && *failures == 0)
            .and_then(|c| issue::certificate_id(&c.chain[0]).ok());
        let result = async {
            let issued = issue::order(s, replaces).await?;
            let cert = certs::from_pem(issued.chain_pem.as_bytes(), &issued.key_pem)
                .map_err(|e| format!("the issued certificate is unusable: {e}"))?;
            store::save_certificate(s, issued.chain_pem.as_bytes(), &issued.key_pem)
                .map_err(|e| format!("storing the certificate: {e}"))?;
            Ok::<_, String>(cert)
        }
        .await;
        match result {
            Ok(cert) => {
                metrics::ACME_ORDERS.with_label_values(&["issued"]).inc();
                log::info!(
                    "ACME: obtained a certificate for {} (expires {})",
                    s.domains.join(", "),
                    cert.chain[0].not_after()
                );
                m.install(cert);
                *failures = 0;
                Duration::ZERO
            }
            Err(e) => {
                metrics::ACME_ORDERS.with_label_values(&["failed"]).inc();
                let wait = s
                    .retry
                    .saturating_mul(1u32 << (*failures).min(20))
                    .min(s.retry_max);
                *failures += 1;
                let wait = jitter(wait);
                log::warn!(
                    "ACME: order for {} failed ({} in a row): {e}; retrying in {:.1}s{}",
                    s.domains.join(", "),
                    failures,
                    wait.as_secs_f64(),
                    if current.is_some() {
                        "; the current certificate is still served"
                    } else {
                        ""
                    }
                );
                wait
            }
        }
    }
}

#[async_trait]
impl BackgroundService for AcmeService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        challenge::share_storage(self.managed.settings.storage.clone());
        // Both series exist from the start, so rates and alerts see zeros.
        for result in ["issued", "failed"] {
            metrics::ACME_ORDERS.with_label_values(&[result]);
        }
        let mut state = State::default();
        loop {
            let wait = tokio::select! {
                _ = shutdown.changed() => return,
                w = self.round(&mut state) => w,
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_is_the_configured_share_of_the_lifetime() {
        let cert = certs::self_signed(&["a.example.test".into()]).unwrap();
        let leaf = &cert.chain[0];
        let start = certs::unix_time(leaf.not_before());
        let end = certs::unix_time(leaf.not_after());
        assert_eq!(end - start, 7 * 86_400);
        assert_eq!(due_at(&cert, 2.0 / 3.0) - start, 7 * 86_400 * 2 / 3);
    }

    #[test]
    fn a_window_is_used_when_it_is_about_the_certificate() {
        let (issued, now) = (1_000, 5_000);
        for _ in 0..100 {
            let at = renew_in_window(6_000, 7_000, issued, now).unwrap();
            assert!((6_000..=7_000).contains(&at), "{at}");
        }
        // Over already (a revoked certificate): now.
        assert_eq!(renew_in_window(1_500, 4_000, issued, now), Some(now));
        // Begins before issuance (pebble's ±24 h around a short lifetime).
        assert_eq!(renew_in_window(500, 90_000, issued, now), None);
    }

    #[test]
    fn jitter_adds_at_most_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(100));
            assert!(
                j >= Duration::from_secs(100) && j <= Duration::from_secs(125),
                "{j:?}"
            );
        }
    }
}
