//! Why the edge answered a request itself: one vocabulary for the filters
//! that refuse, the admission steps after them, and the proxy's own error
//! pages. The words are the `reason` labels of
//! `parapet_requests_refused_total` and `parapet_edge_responses_total`.

use super::framing;

/// Why the edge answered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeReason {
    /// The client is blocked by behavioural scoring.
    Blocked,
    /// Ambiguous or invalid HTTP/1 framing or Host.
    Framing(framing::Refusal),
    UriTooLong,
    TooManyHeaders,
    HeadersTooLarge,
    BodyTooLarge,
    IpDenied,
    PathDenied,
    HeaderDenied,
    HeaderRequired,
    MethodNotAllowed,
    /// No route matched (404).
    NoRoute,
    RateLimited,
    /// Too many requests in flight from one client.
    ClientConcurrency,
    /// The pool's `max_in_flight` is reached.
    PoolSaturated,
    /// A plain listener redirecting to HTTPS.
    HttpsRedirect,
    /// An ACME HTTP-01 challenge answered by the edge itself.
    AcmeChallenge,
    /// A `Parapet-Fleet` header that does not verify, or a fleet control
    /// path without one (403).
    FleetSignature,
    /// More `CDN-Loop` hops of this fleet than `fleet.max_hops` (508).
    LoopDetected,
    /// The edge's error pages after routing, by status.
    BadRequest,
    Forbidden,
    BadGateway,
    NoBackend,
    GatewayTimeout,
    Internal,
    Other,
}

impl EdgeReason {
    /// The metric label and log word.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeReason::Blocked => "blocked",
            EdgeReason::Framing(r) => r.as_str(),
            EdgeReason::UriTooLong => "uri_too_long",
            EdgeReason::TooManyHeaders => "too_many_headers",
            EdgeReason::HeadersTooLarge => "headers_too_large",
            EdgeReason::BodyTooLarge => "body_too_large",
            EdgeReason::IpDenied => "ip_denied",
            EdgeReason::PathDenied => "path_denied",
            EdgeReason::HeaderDenied => "header_denied",
            EdgeReason::HeaderRequired => "header_required",
            EdgeReason::MethodNotAllowed => "method_not_allowed",
            EdgeReason::NoRoute => "no_route",
            EdgeReason::RateLimited => "rate_limited",
            EdgeReason::ClientConcurrency => "client_concurrency",
            EdgeReason::PoolSaturated => "pool_saturated",
            EdgeReason::HttpsRedirect => "https_redirect",
            EdgeReason::AcmeChallenge => "acme_challenge",
            EdgeReason::FleetSignature => "fleet_signature",
            EdgeReason::LoopDetected => "loop_detected",
            EdgeReason::BadRequest => "bad_request",
            EdgeReason::Forbidden => "forbidden",
            EdgeReason::BadGateway => "bad_gateway",
            EdgeReason::NoBackend => "no_backend",
            EdgeReason::GatewayTimeout => "gateway_timeout",
            EdgeReason::Internal => "internal",
            EdgeReason::Other => "other",
        }
    }

    /// The reason of an edge page answered with `status` when nothing more
    /// specific is known (an error after routing).
    pub fn for_status(status: u16) -> EdgeReason {
        match status {
            400 => EdgeReason::BadRequest,
            403 => EdgeReason::Forbidden,
            404 => EdgeReason::NoRoute,
            405 => EdgeReason::MethodNotAllowed,
            413 => EdgeReason::BodyTooLarge,
            414 => EdgeReason::UriTooLong,
            429 => EdgeReason::RateLimited,
            431 => EdgeReason::HeadersTooLarge,
            502 => EdgeReason::BadGateway,
            503 => EdgeReason::NoBackend,
            504 => EdgeReason::GatewayTimeout,
            508 => EdgeReason::LoopDetected,
            _ if status >= 500 => EdgeReason::Internal,
            _ => EdgeReason::Other,
        }
    }
}
