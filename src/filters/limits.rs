//! Size limits: request target (414), header count and total size (431),
//! declared body size (413; chunked bodies are counted as they stream).

use super::EdgeReason;
use super::Rejection;
use crate::config::units::parse_size;
use crate::config::{ConfigErrors, LimitsConfig};
use http::header::CONTENT_LENGTH;
use pingora::http::RequestHeader;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_uri_length: usize,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub max_body_size: u64,
    pub header_timeout: std::time::Duration,
}

/// HTTP/2 settings for the proxy services, from `limits.h2`.
pub fn h2_options(
    cfg: &crate::config::H2LimitsConfig,
    errs: &mut ConfigErrors,
) -> (
    pingora::protocols::http::v2::server::H2Options,
    std::time::Duration,
) {
    let mut o = pingora::protocols::http::v2::server::H2Options::default();
    if cfg.max_concurrent_streams == 0 {
        errs.push("limits.h2.max_concurrent_streams", "must be at least 1");
    }
    let header_list = parse_size(&cfg.max_header_list_size).unwrap_or_else(|e| {
        errs.push("limits.h2.max_header_list_size", e);
        64 << 10
    });
    o.max_concurrent_streams(cfg.max_concurrent_streams.max(1));
    o.max_header_list_size(header_list.min(u32::MAX as u64) as u32);
    o.max_pending_accept_reset_streams(cfg.max_pending_accept_reset_streams);
    o.max_local_error_reset_streams(Some(cfg.max_local_error_reset_streams));
    let idle =
        crate::config::units::parse_positive_duration(&cfg.idle_timeout).unwrap_or_else(|e| {
            errs.push("limits.h2.idle_timeout", e);
            std::time::Duration::from_secs(300)
        });
    (o, idle)
}

/// The default `limits.max_connections`: half the process's open-file limit
/// (a proxied client connection may hold an upstream connection too), so
/// that a flood of connections is refused at accept instead of exhausting
/// file descriptors, which would also stop health checks, upstream
/// connections and the disk cache. At least 256.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let files = if ok && limit.rlim_cur != libc::RLIM_INFINITY {
        limit.rlim_cur as usize
    } else {
        1 << 20
    };
    (files / 2).max(256)
}

/// Connection caps: total (by default [`default_max_connections`]) and per
/// peer IP (off by default: thousands of clients may share one address
/// behind a carrier-grade NAT or a corporate proxy).
pub fn connection_caps(
    cfg: &LimitsConfig,
    errs: &mut ConfigErrors,
) -> (
    crate::concurrency::Gate,
    Option<crate::concurrency::PerClient>,
) {
    for (key, v) in [
        ("max_connections", cfg.max_connections),
        ("max_connections_per_ip", cfg.max_connections_per_ip),
    ] {
        if v == Some(0) {
            errs.push(format!("limits.{key}"), "must be at least 1");
        }
    }
    (
        crate::concurrency::Gate::new(
            cfg.max_connections
                .filter(|n| *n > 0)
                .unwrap_or_else(default_max_connections),
        ),
        cfg.max_connections_per_ip
            .filter(|n| *n > 0)
            .map(crate::concurrency::PerClient::new),
    )
}

/// The per-client in-flight ceiling, if configured.
pub fn per_client(
    cfg: &LimitsConfig,
    errs: &mut ConfigErrors,
) -> Option<crate::concurrency::PerClient> {
    match cfg.max_in_flight_per_client {
        Some(0) => {
            errs.push("limits.max_in_flight_per_client", "must be at least 1");
            None
        }
        Some(n) => Some(crate::concurrency::PerClient::new(n)),
        None => None,
    }
}

impl Limits {
    pub fn build(cfg: &LimitsConfig, errs: &mut ConfigErrors) -> Limits {
        let mut size = |key: &str, text: &str, dflt: u64| match parse_size(text) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                errs.push(format!("limits.{key}"), "must be greater than zero");
                dflt
            }
            Err(e) => {
                errs.push(format!("limits.{key}"), e);
                dflt
            }
        };
        let limits = Limits {
            max_uri_length: size("max_uri_length", &cfg.max_uri_length, 8192) as usize,
            max_header_count: cfg.max_header_count,
            max_header_bytes: size("max_header_bytes", &cfg.max_header_bytes, 32 << 10) as usize,
            max_body_size: size("max_body_size", &cfg.max_body_size, 10 << 20),
            header_timeout: crate::config::units::parse_positive_duration(&cfg.header_timeout)
                .unwrap_or_else(|e| {
                    errs.push("limits.header_timeout", e);
                    std::time::Duration::from_secs(15)
                }),
        };
        if cfg.max_header_count == 0 {
            errs.push("limits.max_header_count", "must be at least 1");
        }
        limits
    }

    pub fn check(&self, req: &RequestHeader) -> Result<(), Rejection> {
        let target = req.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if target > self.max_uri_length {
            return Err(Rejection {
                status: 414,
                reason: EdgeReason::UriTooLong,
            });
        }
        if req.headers.len() > self.max_header_count {
            return Err(Rejection {
                status: 431,
                reason: EdgeReason::TooManyHeaders,
            });
        }
        // The size of the fields and the declared body length in one pass
        // (a lookup by name would hash it: this runs for every request).
        let (mut bytes, mut length) = (0usize, None);
        for (k, v) in &req.headers {
            bytes += k.as_str().len() + v.len() + 4;
            if length.is_none() && k == CONTENT_LENGTH {
                length = Some(v);
            }
        }
        if bytes > self.max_header_bytes {
            return Err(Rejection {
                status: 431,
                reason: EdgeReason::HeadersTooLarge,
            });
        }
        let declared = length
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_size) {
            return Err(Rejection {
                status: 413,
                reason: EdgeReason::BodyTooLarge,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_has_its_status() {
        let mut errs = ConfigErrors::default();
        let cfg = LimitsConfig {
            max_uri_length: "20".into(),
            max_header_count: 3,
            max_header_bytes: "100".into(),
            max_body_size: "10".into(),
            max_in_flight_per_client: None,
            header_timeout: "15s".into(),
            max_connections: None,
            max_connections_per_ip: None,
            h2: Default::default(),
        };
        let l = Limits::build(&cfg, &mut errs);
        assert!(errs.is_empty());
        let req = |target: &str, headers: &[(&str, &str)]| {
            let mut r = RequestHeader::build("POST", target.as_bytes(), None).unwrap();
            for (k, v) in headers {
                r.append_header(k.to_string(), *v).unwrap();
            }
            r
        };
        assert!(l.check(&req("/ok", &[("content-length", "10")])).is_ok());
        assert_eq!(
            l.check(&req("/a-very-long-path-indeed", &[]))
                .unwrap_err()
                .status,
            414
        );
        assert_eq!(
            l.check(&req("/", &[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")]))
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            l.check(&req("/", &[("a", &"x".repeat(200))]))
                .unwrap_err()
                .status,
            431
        );
        assert_eq!(
            l.check(&req("/", &[("content-length", "11")]))
                .unwrap_err()
                .status,
            413
        );
        Limits::build(
            &LimitsConfig {
                max_body_size: "lots".into(),
                ..LimitsConfig::default()
            },
            &mut errs,
        );
        assert!(errs
            .to_string()
            .contains("limits.max_body_size: invalid size"));
    }
}
