//! Request filters, one per file, built once from config and run in
//! `request_filter`. Order of evaluation (the first refusal wins):
//!
//! 1. [`framing`]: ambiguous HTTP/1 framing and Host → 400, connection closed;
//! 2. [`limits`]: target length 414, header count and size 431, declared body 413;
//! 3. global [`FilterSet`]: [`ip`] allow/deny 403, [`methods`] 405,
//!    [`paths`] 403, [`headers`] 403;
//! 4. the route's [`FilterSet`], same order;
//! 5. rate limits ([`crate::ratelimit`]): global, then the route's → 429.

pub mod framing;
mod headers;
mod ip;
pub mod limits;
mod methods;
mod paths;
mod reason;

pub use reason::EdgeReason;

use crate::config::{ConfigErrors, SecurityConfig};
use pingora::http::RequestHeader;
use std::net::IpAddr;

/// A refusal: the status to answer with and a reason for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: EdgeReason,
}

/// The configurable filters of one scope (global or a route).
#[derive(Debug, Default)]
pub struct FilterSet {
    ip: ip::IpFilter,
    methods: methods::MethodFilter,
    paths: paths::PathFilter,
    headers: headers::HeaderFilter,
}

impl FilterSet {
    pub fn build(cfg: &SecurityConfig, path: &str, errs: &mut ConfigErrors) -> FilterSet {
        FilterSet {
            ip: ip::IpFilter::build(&cfg.allow, &cfg.deny, path, errs),
            methods: methods::MethodFilter::build(&cfg.methods, path, errs),
            paths: paths::PathFilter::build(&cfg.deny_paths, &cfg.deny_path_patterns, path, errs),
            headers: headers::HeaderFilter::build(
                &cfg.deny_headers,
                &cfg.require_headers,
                path,
                errs,
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ip.is_empty()
            && self.methods.is_empty()
            && self.paths.is_empty()
            && self.headers.is_empty()
    }

    pub fn check(&self, req: &RequestHeader, client: IpAddr) -> Result<(), Rejection> {
        self.ip.check(client)?;
        self.methods.check(&req.method)?;
        self.paths.check(req.uri.path())?;
        self.headers.check(req)
    }
}
