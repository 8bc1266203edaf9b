//! Parapet: an edge reverse proxy and CDN node on Cloudflare's Pingora.
//!
//! One request through the modules:
//!
//! | phase                        | module                                   |
//! |------------------------------|------------------------------------------|
//! | config file → checked schema | [`config`]                               |
//! | schema → immutable snapshot  | [`runtime`]                              |
//! | client identity, request id  | [`forwarding`] (trusted proxies: [`cidr`]) |
//! | refuse ambiguous requests    | [`filters`]                              |
//! | `(host, path)` → route       | [`routing`]                              |
//! | route → healthy backend      | [`upstream`] (selection, health, retry)  |
//! | cache policy, key, storage   | [`cache`]                                |
//! | the `ProxyHttp` hooks        | [`proxy`] (orchestration only)           |
//! | metrics                      | [`metrics`]                              |
//! | `/metrics`, `/healthz`, `/readyz`, status | [`admin`]                   |
//! | draining after a handoff     | [`lifecycle`]                            |
//! | services → Pingora server    | [`app`]                                  |
//! | `parapet run`: reloads keeping one PID | [`supervisor`]                 |
//! | `parapet demo`               | [`demo`]                                 |
//!
//! Dependencies point inward: `app → proxy → {routing, upstream, forwarding,
//! metrics} → config`. Nothing imports `proxy` or `app`.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod behaviour;
pub mod cache;
pub mod cidr;
pub mod compression;
pub mod concurrency;
pub mod config;
pub mod demo;
pub mod error_pages;
pub mod filters;
pub mod forwarding;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod routing;
pub mod runtime;
pub mod supervisor;
pub mod tls;
pub mod upstream;
