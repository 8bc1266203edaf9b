//! A response keeps its own `Date` on HTTP/1.
//!
//! Pingora's HTTP/1 writer stamps `Date` with the current time on every
//! response, and has no switch for it. For a proxy that is wrong twice: a
//! forwarded response should carry its origin's `Date` (RFC 9110 §6.6.1),
//! and a cache hit must not have its `Date` updated (RFC 9111 §4; the
//! shared-cache conformance suite checks it). So `response_filter` leaves
//! the response's `Date` with the connection's [`super::client_stream`]
//! ([`keep`]), and that stream puts it back into the head as the head is
//! written ([`with_date`]). Responses without a `Date` (the edge's own
//! pages) keep Pingora's.
//!
//! HTTP/2 heads are HPACK-encoded by the time they reach the stream, so an
//! HTTP/2 response still carries the time it was sent.

use super::client_stream::ClientStream;
use http::HeaderValue;
use memchr::memmem::Finder;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use std::sync::{LazyLock, Mutex};

/// The `Date` the next response head should carry, if it has its own.
#[derive(Debug, Default)]
pub(super) struct DateSlot(Mutex<Option<HeaderValue>>);

impl DateSlot {
    pub(super) fn set(&self, date: Option<HeaderValue>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = date;
        }
    }

    pub(super) fn take(&self) -> Option<HeaderValue> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// `response_filter`: hands the response's `Date` (or its absence) to the
/// HTTP/1 client stream that will write the head.
pub(super) fn keep(session: &Session, resp: &ResponseHeader) {
    let ServerSession::H1(h1) = session.as_downstream() else {
        return;
    };
    let stream = h1.stream();
    if let Some(client) = (**stream).as_any().downcast_ref::<ClientStream>() {
        client
            .date
            .set(resp.headers.get(http::header::DATE).cloned());
    }
}

/// Whether `data` is a final (non-1xx) HTTP/1 response head.
pub(super) fn is_final_head(data: &[u8]) -> bool {
    data.starts_with(b"HTTP/1.") && data.get(9).is_some_and(|b| *b != b'1')
}

// Built once: constructing a searcher costs more than a search of a head.
static HEAD_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));
static DATE_LINE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\nDate: "));
static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n"));

/// `head` with the value of its `Date` line replaced by `date`; bytes after
/// the head are kept. `None` if the head has no `Date` line. Runs on every
/// HTTP/1 response: SIMD searches, with Pingora's own spelling (`Date: `)
/// looked for first and any other case as the fallback.
pub(super) fn with_date(head: &[u8], date: &[u8]) -> Option<Vec<u8>> {
    // The status line and fields, each ending in CRLF; the body is not searched.
    let fields = &head[..HEAD_END.find(head)? + 2];
    let start = DATE_LINE.find(fields).or_else(|| {
        CRLF.find_iter(fields).find(|&at| {
            fields[at + 2..]
                .get(..5)
                .is_some_and(|n| n.eq_ignore_ascii_case(b"date:"))
        })
    })? + 2;
    let line_end = start + CRLF.find(&fields[start..])?;
    let mut out = Vec::with_capacity(head.len() + date.len());
    out.extend_from_slice(&head[..start]);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(&head[line_end..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_date_line_is_replaced_and_nothing_else() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\ndate: Mon, 30 Nov 2026 23:00:00 GMT\r\nX-A: b\r\n\r\nabc";
        let out = with_date(head, b"Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-A: b\r\n\r\nabc"
        );
        assert_eq!(
            with_date(b"HTTP/1.1 200 OK\r\nX-Date: a\r\n\r\n", b"x"),
            None
        );
        assert_eq!(
            with_date(b"HTTP/1.1 200 OK\r\n\r\nDate: in the body\r\n\r\n", b"x"),
            None,
            "only the head is searched"
        );
        assert_eq!(
            with_date(b"HTTP/1.1 200 OK\r\nDate: x", b"y"),
            None,
            "incomplete head"
        );
    }

    #[test]
    fn interim_heads_are_not_final() {
        assert!(is_final_head(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert!(is_final_head(b"HTTP/1.1 304 Not Modified\r\n\r\n"));
        assert!(!is_final_head(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(!is_final_head(b"body bytes"));
        assert!(!is_final_head(b"HTTP/1."));
    }
}
