//! Whether a request gets in, and on which route: a behaviour block first,
//! then the filters of
//! [`crate::filters`] in their documented order, routing, then the rate
//! limits. Decides only; the caller writes the answer.

use crate::filters::{framing, EdgeReason, Rejection};
use crate::runtime::Snapshot;
use pingora::http::RequestHeader;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub(super) enum Admission {
    /// Admitted on this route, holding these concurrency slots.
    Route(usize, Vec<crate::concurrency::Slot>),
    Refuse {
        rejection: Rejection,
        /// Close the connection after answering (the rest of the bytes
        /// cannot be trusted or are not wanted).
        close: bool,
        retry_after: Option<Duration>,
    },
}

fn refuse(rejection: Rejection, close: bool) -> Admission {
    Admission::Refuse {
        rejection,
        close,
        retry_after: None,
    }
}

pub(super) fn admit(
    snap: &Snapshot,
    req: &RequestHeader,
    raw_head: Option<&[u8]>,
    client: IpAddr,
    place: &crate::geo::Place,
    from_peer: bool,
    now: Instant,
) -> Admission {
    let block = snap.edge.reputation.as_ref().filter(|_| !from_peer);
    if let Some(Err(left)) = block.map(|r| r.check(client, now)) {
        return Admission::Refuse {
            rejection: Rejection {
                status: 403,
                reason: EdgeReason::Blocked,
            },
            close: false,
            retry_after: Some(left),
        };
    }
    if let Err(r) = framing::check(req, raw_head) {
        return refuse(
            Rejection {
                status: 400,
                reason: EdgeReason::Framing(r),
            },
            true,
        );
    }
    if let Err(r) = snap.edge.limits.check(req) {
        return refuse(r, true);
    }
    // A signed hop from a fleet peer passed the filters, rate limits and
    // behaviour checks at the node the client reached; only framing, size
    // limits, routing and the pool's own ceiling apply again.
    if !from_peer {
        if let Err(r) = snap.edge.filters.check(req, client) {
            return refuse(r, false);
        }
    }
    let Some((index, route)) = snap.edge.router.find(
        crate::routing::request_host(req),
        req.uri.path(),
        &req.headers,
        place,
    ) else {
        return refuse(
            Rejection {
                status: 404,
                reason: EdgeReason::NoRoute,
            },
            false,
        );
    };
    if from_peer {
        return pool_slot(snap, route, index, Vec::new());
    }
    if let Err(r) = route.filters.check(req, client) {
        return refuse(r, false);
    }
    for limiter in [snap.edge.rate_limit.as_ref(), route.rate_limit.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Err(wait) = limiter.check(req, client, now) {
            return Admission::Refuse {
                rejection: Rejection {
                    status: 429,
                    reason: EdgeReason::RateLimited,
                },
                close: false,
                retry_after: Some(wait),
            };
        }
    }
    let mut slots = Vec::new();
    if let Some(per_client) = &snap.edge.per_client {
        match per_client.try_acquire(client) {
            Some(slot) => slots.push(slot),
            None => {
                return refuse(
                    Rejection {
                        status: 429,
                        reason: EdgeReason::ClientConcurrency,
                    },
                    false,
                )
            }
        }
    }
    pool_slot(snap, route, index, slots)
}

/// The pool's in-flight ceiling (`max_in_flight`): a slot, or 503 at once.
fn pool_slot(
    snap: &Snapshot,
    route: &crate::routing::Route,
    index: usize,
    mut slots: Vec<crate::concurrency::Slot>,
) -> Admission {
    if let Some(gate) = &snap.edge.pools.get(route.upstream).gate {
        match gate.try_acquire() {
            Some(slot) => slots.push(slot),
            None => {
                return refuse(
                    Rejection {
                        status: 503,
                        reason: EdgeReason::PoolSaturated,
                    },
                    false,
                )
            }
        }
    }
    Admission::Route(index, slots)
}
