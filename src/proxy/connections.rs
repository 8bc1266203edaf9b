//! Counts downstream connections by wrapping the proxy's `ServerApp`: Pingora
//! runs one `process_new` per accepted connection (an HTTP/1 keep-alive loop or
//! a whole HTTP/2 connection), which is exactly a connection's lifetime.

use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

pub struct CountConnections<A>(pub Arc<A>);

struct Open;

impl Open {
    fn new() -> Open {
        metrics::DOWNSTREAM_CONNECTIONS.inc();
        metrics::DOWNSTREAM_CONNECTIONS_TOTAL.inc();
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::DOWNSTREAM_CONNECTIONS.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open::new();
        self.0.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.0.cleanup().await
    }
}
