//! The admin listener, on its own address and never the public one:
//!
//! | path       | answer                                                    |
//! |------------|-----------------------------------------------------------|
//! | `/metrics` | Prometheus text format (the default registry)             |
//! | `/healthz` | 200 while the process is alive                            |
//! | `/readyz`  | 200 once the public listeners accept, 503 once draining   |
//! | `/`        | a status page for people: pools, backend health, routes   |
//! | `POST /purge` | cache purge by url, prefix or surrogate key (token)    |
//!
//! | `/api/...` | the admin API, see [`api`]                                |
//!
//! The API and purge need `Authorization: Bearer <admin.token>` (401
//! without it, counted in `parapet_admin_auth_failures_total`; 403 while no
//! token is configured).

mod api;
pub(crate) mod overview;
mod purge_api;
mod status_page;

pub(crate) use purge_api::purge_local;

use crate::cache::CacheRuntime;
use crate::lifecycle::{self, ListenerReadiness};
use crate::metrics;
use crate::runtime::Snapshot;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub(crate) struct AdminApp {
    snap: Arc<Snapshot>,
    listeners: ListenerReadiness,
    cache: Option<&'static CacheRuntime>,
}

impl AdminApp {
    pub(crate) fn new(snap: Arc<Snapshot>, cache: Option<&'static CacheRuntime>) -> AdminApp {
        let listeners = ListenerReadiness::new(snap.connections.listeners.iter().map(|l| l.addr));
        AdminApp {
            snap,
            listeners,
            cache,
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path();
        let post = req.method == http::Method::POST;
        if post && path == "/purge" || path.starts_with("/api/") {
            let auth = req
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if let Err((status, why)) =
                purge_api::authorized(self.snap.admin.token.as_deref(), auth)
            {
                let mut r = reply(status, "text/plain", why);
                if status == StatusCode::UNAUTHORIZED {
                    r.headers_mut().insert(
                        http::header::WWW_AUTHENTICATE,
                        http::HeaderValue::from_static("Bearer"),
                    );
                }
                return r;
            }
            if post && (path == "/purge" || path == "/api/purge") {
                let query = req.uri.query().unwrap_or("").to_string();
                let fleet = self.snap.edge.fleet.as_deref();
                let (status, body) = purge_api::handle(self.cache, fleet, &query).await;
                return reply(status, "application/json", body);
            }
            if post && path == "/api/reload" {
                let a = api::reload(&self.snap);
                return reply(a.status, a.content_type, a.body);
            }
            if req.method == http::Method::GET {
                if let Some(a) = api::get(&self.snap, path) {
                    return reply(a.status, a.content_type, a.body);
                }
            }
            return reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no such API endpoint\n",
            );
        }
        let head = req.method == http::Method::HEAD;
        if req.method != http::Method::GET && !head {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n",
            );
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let mut resp = match req.uri.path() {
            "/metrics" => {
                self.snap.edge.pools.refresh_gauges();
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    metrics::render(),
                )
            }
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" if lifecycle::is_draining() => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n")
            }
            "/readyz" if !self.listeners.listening().await => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "starting\n")
            }
            "/readyz" => reply(StatusCode::OK, "text/plain", "ready\n"),
            "/" | "/status" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status_page::render(&self.snap),
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        };
        if head {
            resp.body_mut().clear();
        }
        resp
    }
}
