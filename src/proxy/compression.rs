//! Wiring of [`crate::compression`] into Pingora's downstream compression
//! module. The module reads `Accept-Encoding` between `early_request_filter`
//! and `request_filter`, so it is enabled (and the header normalised) for
//! every request before routing; routes that do not compress, and responses
//! that must not be transformed, switch it off in `response_filter`, which
//! runs before the module looks at the response.

use super::RequestCtx;
use crate::compression::Compression;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::compression::ResponseCompression;
use pingora::proxy::Session;
use pingora::Result;

/// Normalises the client's `Accept-Encoding` for the module (the codings
/// it accepts, in the edge's order) and enables the module. The original
/// values are kept for routes that do not compress.
pub(super) fn on_request(
    session: &mut Session,
    ctx: &mut RequestCtx,
    c: &Compression,
) -> Result<()> {
    let original: Vec<http::HeaderValue> = session
        .req_header()
        .headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .cloned()
        .collect();
    let accepted = c.negotiate(original.iter().filter_map(|v| v.to_str().ok()));
    let value = if accepted.is_empty() {
        "identity".to_string()
    } else {
        accepted
            .iter()
            .map(|c| c.token())
            .collect::<Vec<_>>()
            .join(", ")
    };
    session
        .req_header_mut()
        .insert_header(ACCEPT_ENCODING, value)?;
    ctx.accept_encoding = Some(original);
    if let Some(m) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        m.adjust_level(c.level);
        // An origin that encodes anyway is decoded for clients that cannot
        // take its coding.
        m.adjust_decompression(true);
    }
    Ok(())
}

/// Once routed (`request_filter`, after the module has read the normalised
/// header): a route that does not compress gets the client's own
/// `Accept-Encoding` back, so that the origin and the cache's Vary handling
/// see exactly what the client sent.
pub(super) fn routed(
    session: &mut Session,
    ctx: &mut RequestCtx,
    route_compresses: bool,
) -> Result<()> {
    if route_compresses {
        return Ok(());
    }
    let Some(original) = ctx.accept_encoding.take() else {
        return Ok(());
    };
    let req = session.req_header_mut();
    req.remove_header(&ACCEPT_ENCODING);
    for v in original {
        req.append_header(ACCEPT_ENCODING, v)?;
    }
    Ok(())
}

/// What the origin of a compressing route is asked for: `identity` (one
/// stored variant, encoded per client on the way out).
pub(super) fn upstream_request(req: &mut RequestHeader, route_compresses: bool) -> Result<()> {
    if route_compresses {
        req.insert_header(ACCEPT_ENCODING, "identity")?;
    }
    Ok(())
}

/// Switches the module off for this response unless it should compress:
/// a compressing route, a full response (not 206, not to HEAD), no
/// `Cache-Control: no-transform`, and a suitable type and size (or an
/// encoded body the client may need decoded).
pub(super) fn on_response(
    session: &mut Session,
    resp: &ResponseHeader,
    route_compresses: bool,
    c: &Compression,
) {
    if resp.status.is_informational() {
        // 100 Continue, 103 Early Hints: the final response decides.
        return;
    }
    let header = |name| resp.headers.get(name).and_then(|v| v.to_str().ok());
    let no_transform = resp
        .headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| d.trim().eq_ignore_ascii_case("no-transform"));
    let encoded = header(CONTENT_ENCODING).is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
    let length = header(CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let keep = route_compresses
        && resp.status.as_u16() == 200
        && session.req_header().method != http::Method::HEAD
        && !no_transform
        && (encoded || c.suits(header(CONTENT_TYPE), length));
    if !keep {
        off(session);
    }
}

/// No compression or decompression for this response.
pub(super) fn off(session: &mut Session) {
    if let Some(m) = session
        .downstream_modules_ctx
        .get_mut::<ResponseCompression>()
    {
        if m.is_header_phase() {
            m.adjust_level(0);
            m.adjust_decompression(false);
        }
    }
}
