//! Baseline for benchmarks: the smallest Pingora proxy (no routing, headers,
//! metrics or logging), to tell Pingora's own cost from Parapet's.
//! `cargo run --release --example naive_proxy -- LISTEN ORIGIN`
//! With `NAIVE_TIMEOUTS=1` its peers get Parapet's default upstream timeouts
//! (connect 2 s, read and write 30 s, idle 60 s): Pingora arms a timer for
//! each of them, which the bare proxy does not pay.
//! With `NAIVE_RESPOND=1` it proxies nothing: `request_filter` answers every
//! request with a copy of one prebuilt 1 KiB response (the origin's fields
//! from `bench/instructions.sh`), which is the least a cache hit served
//! through Pingora's HTTP session can cost.

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::time::Duration;

// Parapet's allocator, so that the anchor differs from Parapet only in
// Parapet's own code: with the system allocator every request costs ~5k
// instructions more, most of them in Pingora's allocations.
#[global_allocator]
static GLOBAL: parapet::allocator::Allocator = parapet::allocator::Allocator;

struct Naive(SocketAddr, bool, Option<(ResponseHeader, Bytes)>);

#[async_trait]
impl ProxyHttp for Naive {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn request_filter(&self, session: &mut Session, _c: &mut ()) -> Result<bool> {
        let Some((head, body)) = &self.2 else {
            return Ok(false);
        };
        session
            .write_response_header(Box::new(head.clone()), false)
            .await?;
        session
            .write_response_body(Some(body.clone()), true)
            .await?;
        Ok(true)
    }
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
    let respond = std::env::var("NAIVE_RESPOND").is_ok_and(|v| v == "1");
    let response = respond.then(|| {
        let body = Bytes::from(vec![b'x'; 1024]);
        let mut head = ResponseHeader::build(200, Some(4)).expect("a 200 head");
        for (name, value) in [
            ("Cache-Control", "public, max-age=3600"),
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", "1024"),
        ] {
            head.insert_header(name, value).expect("a valid field");
        }
        (head, body)
    });
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(
        &server.configuration,
        Naive(
            origin,
            std::env::var("NAIVE_TIMEOUTS").is_ok_and(|v| v == "1"),
            response,
        ),
    );
    svc.add_tcp(listen);
    server.add_service(svc);
    server.run_forever();
}
