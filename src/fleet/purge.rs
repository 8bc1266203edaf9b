//! Fleet-wide purge: a purge given to any node's admin API is applied there
//! and sent, in parallel, to every live peer (signed, on the peer's public
//! listener), with a few tries each; the caller gets each node's result, as
//! Varnish's broadcaster does.

use super::{client, Fleet, PURGE_PATH};
use crate::metrics;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Tries per peer, and the pause before each retry.
const BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];
const TIMEOUT: Duration = Duration::from_secs(5);

/// One peer's answer to a fanned-out purge.
pub(crate) struct PeerPurge {
    pub(crate) node: String,
    pub(crate) addr: SocketAddr,
    /// Objects purged there, or why it failed after every try.
    pub(crate) purged: Result<u64, String>,
    pub(crate) tries: usize,
    pub(crate) elapsed: Duration,
}

/// Sends the purge `query` to every live peer; results in member order.
pub(crate) async fn fan_out(fleet: &Fleet, query: &str) -> Vec<PeerPurge> {
    let view = fleet.view();
    let target = format!("{PURGE_PATH}?{query}");
    let calls = view.live_peers().map(|m| {
        let target = target.clone();
        let node = m.name.clone().unwrap_or_else(|| m.addr.to_string());
        let addr = m.addr;
        async move {
            let started = Instant::now();
            let mut tries = 0;
            let purged = loop {
                tries += 1;
                let result = match client::call(fleet, addr, "POST", &target, TIMEOUT).await {
                    Ok((200, body)) => {
                        purged_count(&body).ok_or_else(|| "unreadable answer".to_string())
                    }
                    Ok((status, body)) => Err(format!(
                        "answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(n) => break Ok(n),
                    Err(e) if tries > BACKOFF.len() => break Err(e),
                    Err(_) => tokio::time::sleep(BACKOFF[tries - 1]).await,
                }
            };
            let elapsed = started.elapsed();
            metrics::FLEET_PURGE_FANOUT
                .with_label_values(&[if purged.is_ok() { "ok" } else { "failed" }])
                .inc();
            metrics::FLEET_PURGE_SECONDS.observe(elapsed.as_secs_f64());
            if let Err(e) = &purged {
                log::warn!("fleet purge: {node} ({addr}) failed after {tries} tries: {e}");
            }
            PeerPurge {
                node,
                addr,
                purged,
                tries,
                elapsed,
            }
        }
    });
    futures::future::join_all(calls).await
}

fn purged_count(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("purged")?.as_u64()
}
