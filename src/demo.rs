//! `parapet demo`: an edge node in front of three example origins that the
//! same process serves, to try round robin, consistent hashing, health
//! checks and the metrics page in a minute. See the README for the curl lines.

use crate::config;
use crate::runtime::Snapshot;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::Opt;
use pingora::services::listening::Service;
use std::net::TcpListener;

pub const EDGE: &str = "127.0.0.1:8080";
pub const ADMIN: &str = "127.0.0.1:9901";
pub const ORIGINS: [&str; 3] = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"];

/// The demo's config: one pool over three origins, weighted 2:1:1, with
/// health checks; `/sticky/` hashes on the `X-User` header.
pub fn config_yaml() -> String {
    let dir = std::env::temp_dir();
    let dir = dir.display();
    format!(
        r#"
server:
  threads: 2
  pid_file: {dir}/parapet-demo.pid
  upgrade_sock: {dir}/parapet-demo-upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: "{EDGE}"
admin:
  address: "{ADMIN}"
upstreams:
  web:
    selection: round_robin
    backends:
      - {{address: "{a}", weight: 2}}
      - {{address: "{b}"}}
      - {{address: "{c}"}}
    health_check: {{kind: http, path: /healthz, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 2}}
  sticky:
    selection: consistent_hash
    hash_key: "header:X-User"
    backends:
      - {{address: "{a}"}}
      - {{address: "{b}"}}
      - {{address: "{c}"}}
    health_check: {{kind: tcp, interval: 1s, timeout: 500ms}}
routes:
  - name: sticky
    match: {{path_prefix: /sticky}}
    upstream: sticky
    strip_prefix: true
  - name: web
    match: {{path_prefix: /}}
    upstream: web
"#,
        a = ORIGINS[0],
        b = ORIGINS[1],
        c = ORIGINS[2],
    )
}

/// A tiny origin: says who it is, and shows the identity headers the edge hides.
struct DemoOrigin {
    id: usize,
}

#[async_trait]
impl ServeHttp for DemoOrigin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let body = if req.uri.path() == "/healthz" {
            "ok\n".to_string()
        } else {
            let xff = req
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let id = req
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            format!(
                "hello from origin {} — you asked for {} (X-Forwarded-For: {xff}, X-Request-Id: {id})\n",
                self.id, req.uri
            )
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain; charset=utf-8")
            .header("content-length", body.len())
            .header("server", "demo-origin/1.0 (should never reach a client)")
            .header("x-powered-by", "demo")
            .header("x-origin", self.id.to_string())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

/// Runs the demo; returns only on a startup error.
pub fn run() -> i32 {
    for addr in std::iter::once(EDGE).chain([ADMIN]).chain(ORIGINS) {
        if let Err(e) = TcpListener::bind(addr) {
            eprintln!("parapet demo: cannot listen on {addr}: {e} (is another demo running?)");
            return 1;
        }
    }
    let raw = match config::parse(&config_yaml()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("parapet demo: {e}");
            return 1;
        }
    };
    let snap = match Snapshot::build(&raw) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parapet demo: {e}");
            return 1;
        }
    };
    let mut server = crate::app::build(Opt::default(), snap);
    for (i, addr) in ORIGINS.iter().enumerate() {
        let mut origin = Service::new(format!("demo origin {}", i + 1), DemoOrigin { id: i + 1 });
        origin.add_tcp(addr);
        origin.threads = Some(1);
        server.add_service(origin);
    }
    println!(
        "\nParapet demo: edge on http://{EDGE}, admin on http://{ADMIN}, origins on {}\n\n\
         Try:\n\
         \x20 for i in 1 2 3 4 5 6 7 8; do curl -s http://{EDGE}/hello; done   # round robin, weights 2:1:1\n\
         \x20 curl -si http://{EDGE}/hello                                     # no Server / X-Powered-By from the origin\n\
         \x20 for i in 1 2 3; do curl -s -H 'X-User: alice' http://{EDGE}/sticky/cart; done   # consistent hash\n\
         \x20 curl -s http://{ADMIN}/metrics | grep ^parapet_                   # Prometheus metrics\n\
         \x20 open http://{ADMIN}/                                              # status page\n\
         Stop with Ctrl-C.\n",
        ORIGINS.join(", ")
    );
    server.run_forever()
}
