//! Requests from this node to a peer (probes, purge fan-out, purge-log
//! catch-up), over Pingora's own HTTP client, signed with the fleet key.

use super::Fleet;
use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

/// One connector for every call to peers (it pools connections).
static CONNECTOR: LazyLock<Connector> = LazyLock::new(|| Connector::new(None));

/// Bodies of control answers are small; anything longer is cut here.
const MAX_BODY: usize = 1 << 20;

/// Sends `method target` to the peer at `addr`, signed; the status and body,
/// or why it failed. The whole exchange is bounded by `timeout`.
pub(crate) async fn call(
    fleet: &Fleet,
    addr: SocketAddr,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(timeout);
        peer.options.total_connection_timeout = Some(timeout);
        peer.options.read_timeout = Some(timeout);
        peer.options.write_timeout = Some(timeout);
        let (mut session, _) = CONNECTOR
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req = RequestHeader::build(method, target.as_bytes(), None)
            .map_err(|e| format!("request: {e}"))?;
        req.insert_header(http::header::HOST, addr.to_string())
            .and_then(|_| {
                req.insert_header(
                    super::auth::HEADER,
                    fleet.sign(method, target, SystemTime::now()),
                )
            })
            .and_then(|_| req.insert_header(http::header::CONTENT_LENGTH, "0"))
            .map_err(|e| format!("request: {e}"))?;
        session
            .write_request_header(Box::new(req))
            .await
            .map_err(|e| format!("write: {e}"))?;
        session
            .finish_request_body()
            .await
            .map_err(|e| format!("write: {e}"))?;
        session
            .read_response_header()
            .await
            .map_err(|e| format!("read: {e}"))?;
        let status = session.response_header().map_or(0, |r| r.status.as_u16());
        let mut body = Vec::new();
        while let Some(chunk) = session
            .read_response_body()
            .await
            .map_err(|e| format!("read: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err("answer too large".to_string());
            }
        }
        CONNECTOR.release_http_session(session, &peer, None).await;
        Ok((status, Bytes::from(body)))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
