//! Responses the edge writes itself (no route, no healthy backend, origin
//! failure). They are small, say what happened in general terms, carry the
//! request id so an operator can find the log line, and never name a backend.

use bytes::Bytes;
use http::StatusCode;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

use crate::error_pages::ErrorPages;

/// The status of the edge's answer to a failed request: our own
/// `HTTPStatus` errors keep theirs, upstream timeouts are 504, other
/// upstream failures 502, a client's bad request 400, our own failures
/// 500; 0 when the client went away (an HTTP/2 stream reset, a closed
/// connection) and there is nobody to answer.
pub(super) fn status_for(e: &pingora::Error) -> u16 {
    use pingora::{ErrorSource, ErrorType};
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if e.esource() == &ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError
                | ErrorType::ReadError
                | ErrorType::ConnectionClosed
                | ErrorType::H2Error => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// What every page the edge writes carries, beyond its status.
pub(super) struct Page<'a> {
    pub pages: &'a ErrorPages,
    pub request_id_header: &'a http::HeaderName,
    pub request_id: &'a str,
    /// `Strict-Transport-Security` of the listener, if it sets one.
    pub hsts: Option<&'a http::HeaderValue>,
}

fn build(status: u16, page: &Page) -> Result<(ResponseHeader, Bytes)> {
    let (request_id_header, request_id) = (page.request_id_header, page.request_id);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, body) = page.pages.render(code.as_u16(), request_id);
    let mut resp = ResponseHeader::build(code, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, content_type)?;
    resp.insert_header("content-length", body.len())?;
    resp.insert_header("cache-control", "no-store")?;
    resp.insert_header(request_id_header.clone(), request_id)?;
    if let Some(hsts) = page.hsts {
        resp.insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts)?;
    }
    Ok((resp, body))
}

/// Answers a request the edge will not forward; the connection stays usable
/// unless keep-alive was turned off. `retry_after` adds `Retry-After` (429).
pub(super) async fn respond(
    session: &mut Session,
    status: u16,
    page: &Page<'_>,
    retry_after: Option<std::time::Duration>,
) -> Result<()> {
    let (mut resp, body) = build(status, page)?;
    if let Some(wait) = retry_after {
        // Whole seconds, rounded up: never invite a retry that is still too early.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.insert_header(http::header::RETRY_AFTER, secs.max(1))?;
    }
    let head_only = session.req_header().method == http::Method::HEAD;
    super::compression::off(session);
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Sends a plain-HTTP request to the same URL on `https://` with a 308, which
/// keeps the method and body. A host that is not a plain host name or
/// address gets 400 rather than being echoed into a `Location`.
pub(super) async fn redirect_https(
    session: &mut Session,
    port: u16,
    request_id_header: &http::HeaderName,
    request_id: &str,
) -> Result<()> {
    let req = session.req_header();
    if req.headers.contains_key(http::header::CONTENT_LENGTH)
        || req.headers.contains_key(http::header::TRANSFER_ENCODING)
    {
        // The body is not read: the connection cannot carry another request.
        session.set_keepalive(None);
    }
    let req = session.req_header();
    let host = crate::routing::request_host(req);
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut resp = if plain {
        let port = if port == 443 {
            String::new()
        } else {
            format!(":{port}")
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let mut r = ResponseHeader::build(StatusCode::PERMANENT_REDIRECT, Some(4))?;
        r.insert_header(
            http::header::LOCATION,
            format!("https://{host}{port}{target}"),
        )?;
        r
    } else {
        ResponseHeader::build(StatusCode::BAD_REQUEST, Some(4))?
    };
    resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
    resp.insert_header(request_id_header.clone(), request_id)?;
    super::compression::off(session);
    session.write_response_header(Box::new(resp), true).await
}

/// Answers after a failure; does nothing if a response is already under way.
/// The connection is closed afterwards (its state is unknown).
pub(super) async fn respond_error(
    session: &mut Session,
    status: u16,
    page: &Page<'_>,
) -> Result<()> {
    let (resp, body) = build(status, page)?;
    let body = if session.req_header().method == http::Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    super::compression::off(session);
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
}
