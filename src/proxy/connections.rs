//! Wraps the proxy's `ServerApp` per accepted connection: Pingora runs one
//! `process_new` per connection (an HTTP/1 keep-alive loop or a whole HTTP/2
//! connection), which is exactly a connection's lifetime. Here the connection
//! is counted, and its stream gets the request-head deadline.

use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

pub struct CountConnections<A> {
    pub app: Arc<A>,
    /// `limits.header_timeout`.
    pub header_timeout: std::time::Duration,
}

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
        let stream = super::header_deadline::HeaderDeadline::wrap(stream, self.header_timeout);
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}
