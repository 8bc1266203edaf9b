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

/// Where the demo listens: the edge, its admin listener, three origins.
#[derive(Debug, Clone)]
pub(crate) struct Addrs {
    pub edge: String,
    pub admin: String,
    pub origins: [String; 3],
}

impl Default for Addrs {
    /// 127.0.0.1 ports 8080 (edge), 9901 (admin), 9001–9003 (origins).
    fn default() -> Addrs {
        Addrs {
            edge: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9901".into(),
            origins: [
                "127.0.0.1:9001".into(),
                "127.0.0.1:9002".into(),
                "127.0.0.1:9003".into(),
            ],
        }
    }
}

impl Addrs {
    /// The defaults, with `--edge ADDR`, `--admin ADDR` and
    /// `--origins A,B,C` applied.
    pub(crate) fn from_args(args: &[String]) -> Result<Addrs, String> {
        let mut addrs = Addrs::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            match flag.as_str() {
                "--edge" => addrs.edge = value,
                "--admin" => addrs.admin = value,
                "--origins" => {
                    let list: Vec<String> = value.split(',').map(str::to_string).collect();
                    addrs.origins = list
                        .try_into()
                        .map_err(|_| "--origins takes three addresses, A,B,C".to_string())?;
                }
                other => return Err(format!("unknown demo option {other}")),
            }
        }
        Ok(addrs)
    }
}

/// The admin token of the demo (state-changing admin endpoints: purge).
pub(crate) const ADMIN_TOKEN: &str = "demo-admin-token";

/// The demo's config: one pool over three origins, weighted 2:1:1, with
/// health checks; `/sticky/` hashes on the `X-User` header; `/static/` is
/// cached (the origins say `max-age=60` there).
pub(crate) fn config_yaml(addrs: &Addrs) -> String {
    let dir = std::env::temp_dir();
    let dir = dir.display();
    let [a, b, c] = &addrs.origins;
    let (edge, admin) = (&addrs.edge, &addrs.admin);
    format!(
        r#"
server:
  threads: 2
  pid_file: {dir}/parapet-demo.pid
  upgrade_sock: {dir}/parapet-demo-upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
listeners:
  - address: "{edge}"
admin:
  address: "{admin}"
  token: "{ADMIN_TOKEN}"
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
  - name: static
    match: {{path_prefix: /static/}}
    upstream: web
    cache: {{enabled: true}}
  - name: web
    match: {{path_prefix: /}}
    upstream: web
"#
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
        let cache_control = if req.uri.path().starts_with("/static/") {
            "public, max-age=60"
        } else {
            "no-store"
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain; charset=utf-8")
            .header("cache-control", cache_control)
            .header("content-length", body.len())
            .header("server", "demo-origin/1.0 (should never reach a client)")
            .header("x-powered-by", "demo")
            .header("x-origin", self.id.to_string())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

/// Runs the demo (`args`: the options of [`Addrs::from_args`]); returns
/// only on a startup error.
pub(crate) fn run(args: &[String]) -> i32 {
    let addrs = match Addrs::from_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("parapet demo: {e}");
            return 2;
        }
    };
    for addr in [&addrs.edge, &addrs.admin]
        .into_iter()
        .chain(&addrs.origins)
    {
        if let Err(e) = TcpListener::bind(addr) {
            eprintln!("parapet demo: cannot listen on {addr}: {e} (is another demo running?)");
            return 1;
        }
    }
    let raw = match config::parse(&config_yaml(&addrs)) {
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
    for (i, addr) in addrs.origins.iter().enumerate() {
        let mut origin = Service::new(format!("demo origin {}", i + 1), DemoOrigin { id: i + 1 });
        origin.add_tcp(addr);
        origin.threads = Some(1);
        server.add_service(origin);
    }
    let (edge, admin) = (&addrs.edge, &addrs.admin);
    println!(
        "\nParapet demo: edge on http://{edge}, admin on http://{admin}, origins on {}\n\n\
         Try:\n\
         \x20 for i in 1 2 3 4 5 6 7 8; do curl -s http://{edge}/hello; done   # round robin, weights 2:1:1\n\
         \x20 curl -si http://{edge}/hello                                     # no Server / X-Powered-By from the origin\n\
         \x20 for i in 1 2 3; do curl -s -H 'X-User: alice' http://{edge}/sticky/cart; done   # consistent hash\n\
         \x20 curl -si http://{edge}/static/logo.txt | grep -i cache-status    # parapet; fwd=miss; stored\n\
         \x20 curl -si http://{edge}/static/logo.txt | grep -i cache-status    # parapet; hit; ttl=...\n\
         \x20 curl -s -X POST -H 'Authorization: Bearer {ADMIN_TOKEN}' 'http://{admin}/purge?prefix=http://{edge}/static/'   # purge\n\
         \x20 curl -s http://{admin}/metrics | grep ^parapet_cache             # Prometheus metrics\n\
         \x20 open http://{admin}/                                              # status page\n\
         Stop with Ctrl-C.\n",
        addrs.origins.join(", ")
    );
    crate::app::run(server)
}
