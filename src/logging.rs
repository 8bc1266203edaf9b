//! Logging setup: env_logger behind a per-target rate limit, so that nothing
//! a client can trigger (Pingora logs every malformed or timed-out request
//! at error level) can flood the log and fill a disk. The access log target
//! (`parapet::access`) is exempt: its volume is the request rate by design,
//! and `RUST_LOG` turns it off.
//!
//! Each target may write `LINES_PER_SECOND` lines per second; the rest are
//! counted and reported in one line when the next second's first line for
//! that target is written.

use log::{Log, Metadata, Record};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LINES_PER_SECOND: u32 = 20;
const ACCESS_TARGET: &str = "parapet::access";
/// Where Pingora logs failed TLS handshakes of clients.
const HANDSHAKE_TARGET: &str = "pingora_core::services::listening";
/// Where Pingora logs, at error level, a pooled connection it could not
/// take for reuse: a race with the pool's idle watcher that costs one new
/// connection, nothing an operator must act on.
const CONNECTOR_TARGET: &str = "pingora_core::connectors";
const REUSE_RACE: &str = "failed to acquire reusable stream";

struct Window {
    start: Instant,
    written: u32,
    suppressed: u64,
}

struct RateLimited {
    inner: env_logger::Logger,
    windows: Mutex<HashMap<String, Window>>,
}

/// Whether a line may be written now; `Some(n)` also reports `n` lines
/// suppressed in the previous window.
fn admit(w: &mut Window, now: Instant) -> (bool, u64) {
    let mut report = 0;
    if now.duration_since(w.start) >= Duration::from_secs(1) {
        report = std::mem::take(&mut w.suppressed);
        w.start = now;
        w.written = 0;
    }
    if w.written < LINES_PER_SECOND {
        w.written += 1;
        (true, report)
    } else {
        w.suppressed += 1;
        (false, report)
    }
}

impl Log for RateLimited {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.target() == HANDSHAKE_TARGET {
            // Pingora reports failed client handshakes only in this log line.
            let message = record.args().to_string();
            if message.starts_with("Downstream handshake") {
                crate::metrics::TLS_HANDSHAKE_FAILURES
                    .with_label_values(&[crate::tls::listener::failure_reason(&message)])
                    .inc();
            }
        }
        if record.target() == CONNECTOR_TARGET
            && record.level() == log::Level::Error
            && record.args().as_str() == Some(REUSE_RACE)
        {
            crate::metrics::UPSTREAM_REUSE_RACES.inc();
            let demoted = Record::builder()
                .level(log::Level::Debug)
                .target(record.target())
                .args(*record.args())
                .build();
            if self.inner.matches(&demoted) {
                self.inner.log(&demoted);
            }
            return;
        }
        if !self.inner.matches(record) {
            return;
        }
        if record.target() == ACCESS_TARGET {
            self.inner.log(record);
            return;
        }
        let now = Instant::now();
        let (write, suppressed) = match self.windows.lock() {
            Ok(mut map) => {
                let w = map.entry(record.target().to_string()).or_insert(Window {
                    start: now,
                    written: 0,
                    suppressed: 0,
                });
                admit(w, now)
            }
            Err(_) => (true, 0),
        };
        if suppressed > 0 {
            self.inner.log(
                &Record::builder()
                    .level(log::Level::Warn)
                    .target(record.target())
                    .args(format_args!(
                        "{suppressed} log lines from this target suppressed in the last second"
                    ))
                    .build(),
            );
        }
        if write {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// Installs the rate-limited logger (`RUST_LOG`, default `info`).
pub(crate) fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .build();
    let max = inner.filter();
    let logger = RateLimited {
        inner,
        windows: Mutex::new(HashMap::new()),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_cut_to_the_limit_and_reported_next_second() {
        let t0 = Instant::now();
        let mut w = Window {
            start: t0,
            written: 0,
            suppressed: 0,
        };
        let written = (0..1000).filter(|_| admit(&mut w, t0).0).count();
        assert_eq!(written, LINES_PER_SECOND as usize);
        let (ok, report) = admit(&mut w, t0 + Duration::from_secs(1));
        assert!(ok);
        assert_eq!(report, 1000 - LINES_PER_SECOND as u64);
    }

    #[test]
    fn the_pool_reuse_race_is_counted_not_logged_as_an_error() {
        let logger = RateLimited {
            inner: env_logger::Builder::new()
                .filter_level(log::LevelFilter::Info)
                .build(),
            windows: Mutex::new(HashMap::new()),
        };
        let before = crate::metrics::UPSTREAM_REUSE_RACES.get();
        logger.log(
            &Record::builder()
                .level(log::Level::Error)
                .target(CONNECTOR_TARGET)
                .args(format_args!("failed to acquire reusable stream"))
                .build(),
        );
        assert_eq!(crate::metrics::UPSTREAM_REUSE_RACES.get(), before + 1);
        assert!(
            logger.windows.lock().unwrap().is_empty(),
            "nothing reached the error log"
        );
    }
}
