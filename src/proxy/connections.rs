//! Wraps the proxy's `ServerApp` per accepted connection: Pingora runs one
//! `process_new` per connection (an HTTP/1 keep-alive loop or a whole HTTP/2
//! connection), which is exactly a connection's lifetime. Here the connection
//! is counted, and its stream gets the request-head deadline and coalesced
//! writes ([`super::client_stream`]).

use crate::concurrency::{Gate, PerClient};
use crate::metrics;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

pub(crate) struct CountConnections<A> {
    pub app: Arc<A>,
    /// `limits.header_timeout`.
    pub header_timeout: std::time::Duration,
    /// `limits.max_connections` and `limits.max_connections_per_ip`.
    pub caps: Arc<(Gate, Option<PerClient>)>,
    /// Told about slow-client kills.
    pub reputation: Option<Arc<crate::behaviour::Reputation>>,
    /// How long the proxy's cleanup waits after the accept loops stop: the
    /// grace period (`server.grace_period_seconds`), which Pingora waits
    /// anyway before it tears the runtimes down.
    pub hold_cleanup: std::time::Duration,
    /// Register each plain TCP connection with the runtime that serves it
    /// ([`super::rehome`]): several single-threaded runtimes.
    pub rehome: bool,
}

/// An admitted connection: counted, holding its cap slots. The slots are
/// released before the gauge goes down, so a connection counted as gone
/// has also freed its place under the caps.
struct Open {
    slots: Vec<crate::concurrency::Slot>,
}

impl Open {
    fn new(slots: Vec<crate::concurrency::Slot>) -> Open {
        metrics::DOWNSTREAM_CONNECTIONS.inc();
        metrics::DOWNSTREAM_CONNECTIONS_TOTAL.inc();
        Open { slots }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.slots.clear();
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
        // Over a cap: close at once, before reading anything.
        let mut slots = Vec::new();
        match self.caps.0.try_acquire() {
            Some(s) => slots.push(s),
            None => {
                metrics::CONNECTIONS_REFUSED
                    .with_label_values(&["total"])
                    .inc();
                return None;
            }
        }
        let peer_ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        if let Some(per_ip) = &self.caps.1 {
            if let Some(ip) = peer_ip {
                match per_ip.try_acquire(ip) {
                    Some(s) => slots.push(s),
                    None => {
                        metrics::CONNECTIONS_REFUSED
                            .with_label_values(&["per_ip"])
                            .inc();
                        return None;
                    }
                }
            }
        }
        let _open = Open::new(slots);
        let stream = if self.rehome {
            super::rehome::rehome(stream)
        } else {
            stream
        };
        let on_slow = match (&self.reputation, peer_ip) {
            (Some(rep), Some(ip)) => Some((rep.clone(), ip)),
            _ => None,
        };
        let stream = super::client_stream::ClientStream::wrap(stream, self.header_timeout, on_slow);
        self.app.process_new(stream, shutdown).await
    }

    /// Pingora calls this the moment the accept loops stop (5 s after a
    /// handoff's SIGQUIT, or at SIGTERM). The proxy's own cleanup then drops,
    /// unanswered, every HTTP/1 connection waiting for a request head: one
    /// accepted in the last instant whose request is still on the wire, a TLS
    /// handshake finishing later, an idle keep-alive connection whose client
    /// is sending right now. Held for the grace period instead, each of them
    /// gets its request served, with `Connection: close` since the process is
    /// draining; what is still idle when the grace period ends is closed by
    /// the runtime teardown, as before.
    async fn cleanup(&self) {
        tokio::time::sleep(self.hold_cleanup).await;
        self.app.cleanup().await
    }
}
