//! Process lifecycle as the rest of Parapet sees it: is this generation
//! draining (a graceful upgrade handed its sockets to a successor, or a stop
//! signal arrived)?
//!
//! Pingora keeps accepting for 5 s after SIGQUIT and then drains for
//! `grace_period_seconds`. While that happens `/readyz` answers 503, and
//! proxied responses carry `Connection: close` so that keep-alive clients move
//! to the new generation instead of racing the old one's idle-connection close.

use crate::metrics;
use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;

static DRAINING: AtomicBool = AtomicBool::new(false);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether this process is stopping for good (SIGTERM), as opposed to
/// handing its sockets to a successor: a fleet node then leaves its peers'
/// rings before it goes.
pub(crate) fn is_stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// Whether this process has started to drain.
pub(crate) fn is_draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

fn set_draining(why: &str) {
    if !DRAINING.swap(true, Ordering::Relaxed) {
        log::info!("draining: {why}");
        metrics::DRAINING.set(1);
    }
}

/// Whether the public listeners accept connections yet.
///
/// Pingora signals a listening service ready before it binds, so readiness is
/// checked for real: connect to each public listener once; after every one
/// has accepted, the answer is cached.
pub(crate) struct ListenerReadiness {
    probes: Vec<SocketAddr>,
    ready: AtomicBool,
}

impl ListenerReadiness {
    pub(crate) fn new(listeners: impl IntoIterator<Item = SocketAddr>) -> Self {
        let probes = listeners
            .into_iter()
            .map(|mut a| {
                // A wildcard address is reached through loopback.
                match a.ip() {
                    IpAddr::V4(ip) if ip.is_unspecified() => {
                        a.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    }
                    IpAddr::V6(ip) if ip.is_unspecified() => {
                        a.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
                    }
                    _ => {}
                }
                a
            })
            .collect();
        ListenerReadiness {
            probes,
            ready: AtomicBool::new(false),
        }
    }

    /// True once every public listener has accepted a connection.
    pub(crate) async fn listening(&self) -> bool {
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        for addr in &self.probes {
            let probe = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await;
            if !matches!(probe, Ok(Ok(_))) {
                return false;
            }
        }
        self.ready.store(true, Ordering::Relaxed);
        true
    }
}

/// Background service that follows Pingora's execution phases.
pub(crate) struct PhaseWatcher {
    phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

impl PhaseWatcher {
    /// `phases` comes from `Server::watch_execution_phase`, taken before `run_forever`.
    pub(crate) fn new(phases: broadcast::Receiver<ExecutionPhase>) -> Self {
        PhaseWatcher {
            phases: Mutex::new(Some(phases)),
        }
    }
}

#[async_trait]
impl BackgroundService for PhaseWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(mut phases) = self.phases.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        loop {
            tokio::select! {
                phase = phases.recv() => match phase {
                    Ok(ExecutionPhase::GracefulUpgradeTransferringFds)
                    | Ok(ExecutionPhase::GracefulUpgradeCloseTimeout) => set_draining("sockets handed to a new generation"),
                    Ok(ExecutionPhase::GracefulTerminate) => {
                        STOPPING.store(true, Ordering::Relaxed);
                        set_draining("shutting down");
                    }
                    Ok(ExecutionPhase::ShutdownStarted)
                    | Ok(ExecutionPhase::ShutdownGracePeriod) => set_draining("shutting down"),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        set_draining("shutting down");
                        return;
                    }
                }
            }
        }
    }
}

/// How stop signals end this process, in place of Pingora's watcher.
///
/// * `SIGQUIT`: graceful upgrade (sockets to the next generation, then drain).
/// * `SIGTERM`: graceful stop (stop accepting, drain for the grace period).
/// * `SIGINT`: stop now. Pingora's own "fast shutdown" tears the per-thread
///   runtimes down without first stopping the accept loops; an accept loop
///   whose listener lived on a thread already stopped then spins on tokio's
///   "context is being shutdown" error without yielding, and the process
///   never exits (seen in about one stop in seven). Here the process exits at
///   once instead: requests in flight are cut, as with nginx's fast shutdown.
///
/// Every stop is bounded: a watchdog thread, started only once a signal has
/// arrived (long after any fork), ends the process if Pingora's shutdown has
/// not finished by `bound` plus a margin.
pub(crate) struct StopSignals {
    /// The longest a graceful stop may take: grace period plus runtime
    /// shutdown timeout.
    pub bound: Duration,
}

/// Pingora's hard-coded wait between a handoff's SIGQUIT and the stop of the
/// accept loops (`CLOSE_TIMEOUT`).
const HANDOFF_ACCEPT_WINDOW: Duration = Duration::from_secs(5);
/// Slack on top of the configured bounds before the watchdog acts.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);

#[async_trait]
impl pingora::server::ShutdownSignalWatch for StopSignals {
    async fn recv(&self) -> pingora::server::ShutdownSignal {
        use pingora::server::ShutdownSignal;
        use tokio::signal::unix::{signal, SignalKind};
        let (mut quit, mut term, mut int) = match (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(q), Ok(t), Ok(i)) => (q, t, i),
            _ => {
                log::error!("cannot install signal handlers; stopping");
                return ShutdownSignal::GracefulTerminate;
            }
        };
        let (signal, bound) = tokio::select! {
            _ = quit.recv() => (ShutdownSignal::GracefulUpgrade, HANDOFF_ACCEPT_WINDOW + self.bound),
            _ = term.recv() => (ShutdownSignal::GracefulTerminate, self.bound),
            _ = int.recv() => {
                log::info!("SIGINT received, exiting now");
                exit_now(0);
            }
        };
        let bound = bound + WATCHDOG_MARGIN;
        let watchdog = std::thread::Builder::new()
            .name("parapet stop watchdog".into())
            .spawn(move || {
                std::thread::sleep(bound);
                log::error!("shutdown did not finish within {bound:?}; exiting");
                exit_now(1);
            });
        if let Err(e) = watchdog {
            log::warn!("stop watchdog not started: {e}");
        }
        signal
    }
}

/// Ends the process without unwinding or running exit handlers (OpenSSL's
/// would race the threads still running), after flushing the logs.
fn exit_now(code: i32) -> ! {
    log::logger().flush();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit has no preconditions; it ends the process.
    unsafe { libc::_exit(code) }
}
