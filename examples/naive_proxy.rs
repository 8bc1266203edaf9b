//! Baseline for benchmarks: the smallest Pingora proxy (no routing, headers,
//! metrics or logging), to tell Pingora's own cost from Parapet's.
//! `cargo run --release --example naive_proxy -- LISTEN ORIGIN`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

struct Naive(SocketAddr);

#[async_trait]
impl ProxyHttp for Naive {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args.get(1).expect("LISTEN address");
    let origin: SocketAddr = args
        .get(2)
        .expect("ORIGIN address")
        .parse()
        .expect("ORIGIN ip:port");
    let conf = ServerConf {
        threads: 1,
        work_stealing: std::env::var("WORK_STEALING").is_ok(),
        pid_file: "/tmp/naive_proxy.pid".into(),
        upgrade_sock: "/tmp/naive_proxy.sock".into(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Naive(origin));
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
