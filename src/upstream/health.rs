//! Active health checks: HTTP (path, expected status, Host) or TCP connect,
//! with consecutive success/failure thresholds, run by Pingora's load balancer
//! background service. Transitions set the verdict selection reads (in the
//! backend's counters), update `parapet_backend_healthy` and are logged.

use crate::config::units::parse_positive_duration;
use crate::config::{ConfigErrors, HealthCheckConfig, HealthCheckKind};
use crate::metrics;
use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck, HealthObserve, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::{Error, ErrorType};
use std::time::Duration;

/// A validated health-check plan for one pool.
#[derive(Debug, Clone)]
pub struct HealthPlan {
    pub kind: HealthCheckKind,
    pub path: String,
    pub expect_status: u16,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: usize,
    pub unhealthy_threshold: usize,
}

impl HealthPlan {
    pub fn build(
        cfg: &HealthCheckConfig,
        path: &str,
        errs: &mut ConfigErrors,
    ) -> Option<HealthPlan> {
        let n = errs.len();
        let mut duration = |key: &str, text: &str| {
            parse_positive_duration(text).unwrap_or_else(|e| {
                errs.push(format!("{path}.{key}"), e);
                Duration::ZERO
            })
        };
        let interval = duration("interval", &cfg.interval);
        let timeout = duration("timeout", &cfg.timeout);
        if cfg.kind == HealthCheckKind::Http {
            if !cfg.path.starts_with('/') {
                errs.push(
                    format!("{path}.path"),
                    format!("must start with '/' (got {:?})", cfg.path),
                );
            }
            if !(100..=599).contains(&cfg.expect_status) {
                errs.push(
                    format!("{path}.expect_status"),
                    format!("not an HTTP status: {}", cfg.expect_status),
                );
            }
        }
        for (key, v) in [
            ("healthy_threshold", cfg.healthy_threshold),
            ("unhealthy_threshold", cfg.unhealthy_threshold),
        ] {
            if v == 0 {
                errs.push(format!("{path}.{key}"), "must be at least 1");
            }
        }
        (errs.len() == n).then(|| HealthPlan {
            kind: cfg.kind,
            path: cfg.path.clone(),
            expect_status: cfg.expect_status,
            host: cfg.host.clone(),
            interval,
            timeout,
            healthy_threshold: cfg.healthy_threshold,
            unhealthy_threshold: cfg.unhealthy_threshold,
        })
    }

    /// The Pingora health check for this plan, reporting to `observer`.
    pub fn check(
        &self,
        observer: HealthMetrics,
        tls: Option<(&crate::tls::upstream::UpstreamTransport, String, bool)>,
    ) -> Box<dyn HealthCheck + Send + Sync> {
        match self.kind {
            HealthCheckKind::Tcp => {
                let mut hc = TcpHealthCheck::new();
                hc.consecutive_success = self.healthy_threshold;
                hc.consecutive_failure = self.unhealthy_threshold;
                hc.peer_template.options.connection_timeout = Some(self.timeout);
                hc.peer_template.options.total_connection_timeout = Some(self.timeout);
                hc.health_changed_callback = Some(Box::new(observer));
                hc
            }
            HealthCheckKind::Http => {
                let host = self.host.clone().unwrap_or_else(|| "localhost".into());
                let mut hc = HttpHealthCheck::new(&host, tls.is_some());
                if let Some((transport, sni, one_name)) = tls {
                    hc.peer_template.sni = sni;
                    transport.apply(&mut hc.peer_template, false);
                    if !one_name {
                        hc.peer_template.options.verify_hostname = false;
                    }
                }
                // A path that passed validation always builds a request.
                if let Ok(mut req) = RequestHeader::build("GET", self.path.as_bytes(), None) {
                    let _ = req.append_header("host", host.as_str());
                    let _ = req.append_header("user-agent", "parapet-health-check");
                    hc.req = req;
                }
                hc.consecutive_success = self.healthy_threshold;
                hc.consecutive_failure = self.unhealthy_threshold;
                hc.peer_template.options.connection_timeout = Some(self.timeout);
                hc.peer_template.options.total_connection_timeout = Some(self.timeout);
                hc.peer_template.options.read_timeout = Some(self.timeout);
                hc.peer_template.options.write_timeout = Some(self.timeout);
                let expect = self.expect_status;
                hc.validator = Some(Box::new(move |resp| {
                    if resp.status.as_u16() == expect {
                        Ok(())
                    } else {
                        Error::e_explain(
                            ErrorType::CustomCode("unexpected status", resp.status.as_u16()),
                            format!("health check expected {expect}"),
                        )
                    }
                }));
                hc.health_changed_callback = Some(Box::new(observer));
                Box::new(hc)
            }
        }
    }
}

/// Reports health transitions of one pool's backends to metrics and the log.
pub struct HealthMetrics {
    pub upstream: String,
    /// The pool's backends, for each address's label and region (they
    /// change with discovery).
    pub(super) members: super::members::Members,
}

#[async_trait]
impl HealthObserve for HealthMetrics {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let Some(addr) = target.addr.as_inet().copied() else {
            return;
        };
        // A backend discovery just removed is still found. An address the
        // pool does not know is left unreported rather than labelled with
        // something that is not in the config (labels stay bounded).
        let Some((label, region, stats)) = self
            .members
            .load()
            .find(addr)
            .map(|b| (b.label.clone(), b.region.clone(), b.stats.clone()))
        else {
            return;
        };
        // Selection reads the verdict from the backend's counters: one
        // load, where Pingora's readiness map hashes the backend twice.
        stats.set_passes_checks(healthy);
        if healthy {
            // Back in service: slow start ramps it up, and a passing
            // health check ends an ejection for live failures early.
            stats.entered_service();
            if super::outlier::of(&stats).lift(std::time::Instant::now()) {
                log::info!(
                    "upstream {}: backend {label} passed its health check: ejection ended",
                    self.upstream
                );
            }
        }
        metrics::BACKEND_HEALTHY
            .with_label_values(&[&self.upstream, &label, &region])
            .set(healthy as i64);
        let to = if healthy { "healthy" } else { "unhealthy" };
        metrics::BACKEND_HEALTH_CHANGES
            .with_label_values(&[&self.upstream, &label, to])
            .inc();
        if healthy {
            log::info!(
                "upstream {}: backend {label} is healthy again",
                self.upstream
            );
        } else {
            log::warn!("upstream {}: backend {label} is unhealthy", self.upstream);
        }
    }
}
