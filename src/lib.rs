//! Parapet: an edge reverse proxy and CDN node on Cloudflare's Pingora.
//!
//! One request through the modules:
//!
//! | phase                        | module                                   |
//! |------------------------------|------------------------------------------|
//! | config file → checked schema | [`config`]                               |
//! | schema → immutable snapshot  | [`runtime`]                              |
//! | client identity, request id  | [`forwarding`] (trusted proxies: [`cidr`]) |
//! | client address → place, region | [`geo`]                                |
//! | refuse ambiguous requests    | [`filters`]                              |
//! | `(host, path)` → route       | [`routing`]                              |
//! | route → healthy backend      | [`upstream`] (selection, regions, health, DNS discovery, retry) |
//! | cache policy, key, storage   | [`cache`]                                |
//! | the `ProxyHttp` hooks        | [`proxy`] (orchestration only)           |
//! | metrics                      | [`metrics`]                              |
//! | `/metrics`, `/healthz`, `/readyz`, status | [`admin`]                   |
//! | draining after a handoff     | [`lifecycle`]                            |
//! | services → Pingora server    | [`app`]                                  |
//! | `parapet run`: reloads keeping one PID | [`supervisor`]                 |
//! | several nodes as one cache   | [`fleet`]                                |
//! | `parapet demo`               | [`demo`]                                 |
//! | the command line             | [`cli`]                                  |
//!
//! The public items are what the binary ([`cli::main`]), the integration
//! tests and the fuzz targets need (config parsing, the snapshot build, the
//! pure functions they exercise); everything else is `pub(crate)`, checked
//! by `unreachable_pub`.
//!
//! Dependencies point inward: `app → proxy → {routing, upstream, forwarding,
//! metrics} → config`. Nothing imports `proxy` or `app`.

#![warn(unreachable_pub)]

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod allocator;
pub(crate) mod app;
pub(crate) mod behaviour;
pub mod cache;
pub mod cidr;
pub mod cli;
pub(crate) mod compression;
pub(crate) mod concurrency;
pub mod config;
pub(crate) mod demo;
pub(crate) mod error_pages;
pub mod filters;
pub(crate) mod fleet;
pub(crate) mod forwarding;
pub mod geo;
pub(crate) mod lifecycle;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub(crate) mod ratelimit;
pub(crate) mod routing;
pub mod runtime;
pub(crate) mod supervisor;
pub(crate) mod tls;
pub mod upstream;
