//! Composition root: turns a runtime snapshot into a Pingora server with its
//! services. Nothing here starts a thread; `run_forever` (which may fork)
//! starts everything.
//!
//! Services:
//! * the proxy, once for plain and TLS listeners and once for `h2c` listeners
//!   (h2c is a property of a Pingora proxy service, not of a listener);
//! * the admin listener;
//! * one background service per pool with a health check or DNS discovery;
//! * one ACME service per listener with `tls.acme`, and the session ticket
//!   key rotation and OCSP stapling when there are TLS listeners;
//! * the phase watcher that flips `/readyz` when draining.

use crate::admin::AdminApp;
use crate::cache::CacheRuntime;
use crate::lifecycle::PhaseWatcher;
use crate::proxy::{CountConnections, Edge};
use crate::runtime::Snapshot;
use pingora::apps::HttpServerOptions;
use pingora::proxy::http_proxy;
use pingora::server::configuration::Opt;
use pingora::server::Server;
use pingora::services::background::GenBackgroundService;
use pingora::services::listening::Service;
use std::sync::Arc;

/// Builds the server. Call only after the config was validated; with `-u`
/// this waits to receive the listening sockets of the previous generation.
pub(crate) fn build(opt: Opt, snap: Snapshot) -> Server {
    let mut server = Server::new_with_opt_and_conf(opt, snap.process.server_conf());
    server.bootstrap();
    let phases = server.watch_execution_phase();
    let conf = server.configuration.clone();
    let cache = snap
        .edge
        .caches()
        .then(|| CacheRuntime::start(snap.cache.clone()));
    let snap = Arc::new(snap);

    for h2c in [false, true] {
        let addrs: Vec<_> = snap
            .connections
            .listeners
            .iter()
            .filter(|l| l.h2c == h2c)
            .collect();
        if addrs.is_empty() {
            continue;
        }
        let mut proxy = http_proxy(&conf, Edge::new(snap.clone(), cache));
        let mut options = HttpServerOptions::default();
        options.h2c = h2c;
        options.h2_idle_timeout = Some(snap.connections.h2_idle_timeout);
        proxy.server_options = Some(options);
        proxy.h2_options = Some(snap.connections.h2.clone());
        let name = if h2c {
            "parapet proxy (h2c)"
        } else {
            "parapet proxy"
        };
        let app = CountConnections {
            app: Arc::new(proxy),
            header_timeout: snap.connections.header_timeout,
            caps: snap.connections.caps.clone(),
            reputation: snap.edge.reputation.clone(),
            hold_cleanup: snap.process.grace_period(),
            rehome: snap.process.runtimes() > 1,
        };
        let mut service = Service::new(name.to_string(), app);
        for l in addrs {
            match &l.tls {
                None => service.add_tcp(&l.addr.to_string()),
                Some(tls) => match tls.settings() {
                    Ok(settings) => {
                        service.add_tls_with_settings(&l.addr.to_string(), None, settings)
                    }
                    // Checked when the config was loaded; this would be an
                    // OpenSSL failure between then and now.
                    Err(e) => {
                        log::error!("listener {}: TLS setup failed: {e}", l.addr);
                        std::process::exit(1);
                    }
                },
            }
        }
        server.add_service(service);
    }

    let has_tls = snap.connections.listeners.iter().any(|l| l.tls.is_some());
    if has_tls {
        let ocsp = crate::tls::ocsp::OcspService {
            listeners: snap
                .connections
                .listeners
                .iter()
                .filter_map(|l| l.tls.clone())
                .collect(),
            cache: snap.process.ocsp_cache(),
        };
        ocsp.preload();
        server.add_service(GenBackgroundService::new(
            "parapet ocsp".to_string(),
            Arc::new(ocsp),
        ));
    }
    if let Some(keys) = snap.process.tickets.as_ref().filter(|_| has_tls) {
        match crate::tls::tickets::start(keys) {
            Ok(()) => {
                server.add_service(GenBackgroundService::new(
                    "parapet session ticket keys".to_string(),
                    Arc::new(crate::tls::tickets::Rotation(keys.clone())),
                ));
            }
            // Handshakes still work; tickets from this process are not
            // issued until the file can be written (the callback has no key).
            Err(e) => log::error!("TLS session tickets: {e}; no tickets will be issued"),
        }
    }
    for tls in snap
        .connections
        .listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
    {
        tls.publish_expiry();
        if let Some(managed) = tls.acme() {
            server.add_service(GenBackgroundService::new(
                format!("parapet acme {}", managed.settings.domains[0]),
                Arc::new(crate::tls::acme::service::AcmeService {
                    managed: managed.clone(),
                }),
            ));
        }
    }

    if let Some(addr) = snap.admin.address {
        let mut admin = Service::new(
            "parapet admin".to_string(),
            AdminApp::new(snap.clone(), cache),
        );
        admin.add_tcp(&addr.to_string());
        admin.threads = Some(1);
        server.add_service(admin);
    }

    for pool in snap.edge.pools.iter() {
        pool.seed_metrics();
        if let Some(service) = pool.background_service() {
            server.add_boxed_service(service);
        }
    }

    if let Some(fleet) = &snap.edge.fleet {
        if let Some(c) = cache.filter(|c| c.has_disk()) {
            // Nothing from disk until the purges missed while down are applied.
            c.hold_disk();
        }
        server.add_service(GenBackgroundService::new(
            "parapet fleet membership".to_string(),
            Arc::new(crate::fleet::MembershipService {
                fleet: fleet.clone(),
                cache,
            }),
        ));
    }
    server.add_service(GenBackgroundService::new(
        "parapet rate sampler".to_string(),
        Arc::new(crate::admin::overview::RateSampler),
    ));
    server.add_service(GenBackgroundService::new(
        "parapet phase watcher".to_string(),
        Arc::new(PhaseWatcher::new(phases)),
    ));
    server
}

/// Runs the server until a stop signal ends it (see
/// [`crate::lifecycle::StopSignals`]: SIGINT at once, SIGTERM and handoffs
/// after draining, each bounded), then exits the process.
pub(crate) fn run(server: Server) -> ! {
    let conf = server.configuration.clone();
    let bound = conf.grace_period_seconds.unwrap_or(0)
        + conf.graceful_shutdown_timeout_seconds.unwrap_or(0);
    server.run(pingora::server::RunArgs {
        shutdown_signal: Box::new(crate::lifecycle::StopSignals {
            bound: std::time::Duration::from_secs(bound),
        }),
    });
    std::process::exit(0)
}
