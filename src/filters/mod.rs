//! Request filters, one per file, run in `request_filter` before routing.
//!
//! Order of evaluation:
//! 1. [`framing`]: HTTP/1 message framing and Host (smuggling safety).

pub mod framing;
