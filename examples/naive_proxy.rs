//! Baseline for benchmarks: the smallest Pingora proxy (no routing, headers,
//! metrics or logging), to tell Pingora's own cost from Parapet's.
//! `cargo run --release --example naive_proxy -- LISTEN ORIGIN`
//! With `NAIVE_TIMEOUTS=1` its peers get Parapet's default upstream timeouts
//! (connect 2 s, read and write 30 s, idle 60 s): Pingora arms a timer for
//! each of them, which the bare proxy does not pay.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::time::Duration;

struct Naive(SocketAddr, bool);

#[async_trait]
impl ProxyHttp for Naive {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.0, false, String::new());
        if self.1 {
            let o = &mut peer.options;
            o.connection_timeout = Some(Duration::from_secs(2));
            o.total_connection_timeout = Some(Duration::from_secs(2));
            o.read_timeout = Some(Duration::from_secs(30));
            o.write_timeout = Some(Duration::from_secs(30));
            o.idle_timeout = Some(Duration::from_secs(60));
        }
        Ok(Box::new(peer))
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
    let mut svc = pingora::proxy::http_proxy_service(
        &server.configuration,
        Naive(
            origin,
            std::env::var("NAIVE_TIMEOUTS").is_ok_and(|v| v == "1"),
        ),
    );
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
