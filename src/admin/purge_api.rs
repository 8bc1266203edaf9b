//! `POST /purge?url=URL|prefix=URL|tag=KEY[&soft=1]` with
//! `Authorization: Bearer TOKEN`. Answers `{"purged": N}`.

use crate::cache::CacheRuntime;
use http::StatusCode;

/// Compares in time independent of where (or whether) the inputs differ,
/// including their lengths: both are hashed, and the digests compared
/// without an early exit.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (openssl::sha::sha256(a), openssl::sha::sha256(b));
    a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the configured token.
pub(super) fn authorized(
    token: Option<&str>,
    authorization: Option<&[u8]>,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = token else {
        return Err((
            StatusCode::FORBIDDEN,
            "no admin.token configured: state-changing endpoints are off\n",
        ));
    };
    let given = authorization
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if constant_time_eq(given, token.as_bytes()) {
        Ok(())
    } else {
        crate::metrics::ADMIN_AUTH_FAILURES.inc();
        log::warn!("admin API: request with a missing or wrong token refused");
        Err((StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n"))
    }
}

/// Applies a purge to this node's cache (and records it in the purge log);
/// how many objects it touched. Disk work runs on a blocking thread.
pub(crate) async fn purge_local(
    cache: Option<&'static CacheRuntime>,
    query: &str,
) -> Result<usize, (StatusCode, String)> {
    let Some(cache) = cache else {
        return Err((
            StatusCode::NOT_FOUND,
            "no route caches: nothing to purge\n".into(),
        ));
    };
    cache
        .purge_query(query)
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

/// Runs a purge request on this node and, in a fleet, on every live peer;
/// `(status, JSON body)`. The answer lists each node's result; it is `502`
/// when a live peer could not be reached after a few tries.
pub(super) async fn handle(
    cache: Option<&'static CacheRuntime>,
    fleet: Option<&crate::fleet::Fleet>,
    query: &str,
) -> (StatusCode, String) {
    let n = match purge_local(cache, query).await {
        Ok(n) => n,
        Err((status, why)) => return (status, why),
    };
    let Some(fleet) = fleet else {
        return (StatusCode::OK, format!("{{\"purged\": {n}}}\n"));
    };
    let peers = crate::fleet::purge::fan_out(fleet, query).await;
    let mut body = format!(
        "{{\"purged\": {n}, \"nodes\": [{{\"node\": {}, \"purged\": {n}, \"ok\": true}}",
        json_string(&fleet.node)
    );
    let mut all_ok = true;
    for p in &peers {
        all_ok &= p.purged.is_ok();
        body.push_str(&format!(
            ", {{\"node\": {}, \"address\": \"{}\", ",
            json_string(&p.node),
            p.addr
        ));
        match &p.purged {
            Ok(k) => body.push_str(&format!("\"purged\": {k}, \"ok\": true")),
            Err(e) => body.push_str(&format!("\"ok\": false, \"error\": {}", json_string(e))),
        }
        body.push_str(&format!(
            ", \"tries\": {}, \"ms\": {}}}",
            p.tries,
            p.elapsed.as_millis()
        ));
    }
    body.push_str("]}\n");
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    (status, body)
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::purge::{parse_query, Selector};

    #[test]
    fn tokens_and_queries() {
        assert!(authorized(Some("s3cret"), Some(b"Bearer s3cret")).is_ok());
        assert_eq!(
            authorized(Some("s3cret"), Some(b"Bearer s3cre"))
                .unwrap_err()
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorized(Some("s3cret"), None).unwrap_err().0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorized(None, Some(b"Bearer x")).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            parse_query("url=http%3A%2F%2Fa.com%2Fx%3Fy%3D1&soft=1").unwrap(),
            (Selector::Url("http://a.com:80/x?y=1".into()), true)
        );
        assert_eq!(
            parse_query("tag=product-7").unwrap(),
            (Selector::Tag("product-7".into()), false)
        );
        assert!(parse_query("").is_err());
        assert!(parse_query("url=http://a/&tag=x").is_err());
        assert!(parse_query("url=%zz").is_err());
        assert!(parse_query("colour=red").is_err());
    }
}
