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

/// `d` plus up to a quarter of it at random.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = openssl::rand::rand_bytes(&mut b);
    let share = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) / 4.0;
    d + d.mul_f64(share)
}

impl AcmeService {
    /// One round; returns how long to sleep before the next.
    async fn round(&self, failures: &mut u32) -> Duration {
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
        if let Some(c) = &current {
            let due = due_at(c, renew_at);
            if due > now {
                *failures = 0;
                return Duration::from_secs((due - now) as u64).min(IDLE);
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
            if due_at(&stored, renew_at) > now {
                m.install(stored);
                return WATCH;
            }
        }
        log::info!(
            "ACME: ordering a certificate for {} from {}{}",
            s.domains.join(", "),
            s.directory,
            if current.is_some() { " (renewal)" } else { "" }
        );
        let result = async {
            let issued = issue::order(s).await?;
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
        let mut failures = 0;
        loop {
            let wait = tokio::select! {
                _ = shutdown.changed() => return,
                w = self.round(&mut failures) => w,
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
