//! ACME HTTP-01 answers: `GET /.well-known/acme-challenge/<token>` for a
//! token of an open order (this node's, or one shared through ACME
//! storage) is answered by the edge before any filter or route; every other
//! path under that prefix goes on as a normal request (an origin may run
//! its own ACME client).

use super::RequestCtx;
use crate::filters::EdgeReason;
use crate::tls::acme::challenge;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

pub(super) async fn answer(session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
    let path = session.req_header().uri.path();
    if !path.starts_with(challenge::HTTP_PREFIX) {
        return Ok(false);
    }
    let Some(answer) = challenge::http_answer(path) else {
        return Ok(false);
    };
    log::info!("ACME: answered the HTTP-01 challenge at {path}");
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header("Content-Type", "application/octet-stream")?;
    resp.insert_header("Content-Length", answer.len())?;
    resp.insert_header("Cache-Control", "no-store")?;
    ctx.edge_reason = Some(EdgeReason::AcmeChallenge);
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(bytes::Bytes::from(answer)), true)
        .await?;
    Ok(true)
}
