//! Header rules: refuse a request whose header value matches a pattern, or
//! that lacks a required header (403).

use super::EdgeReason;
use super::Rejection;
use crate::config::{ConfigErrors, HeaderPatternConfig};
use http::header::HeaderName;
use pingora::http::RequestHeader;
use regex::Regex;

#[derive(Debug, Default)]
pub(super) struct HeaderFilter {
    deny: Vec<(HeaderName, Regex)>,
    require: Vec<HeaderName>,
}

impl HeaderFilter {
    pub(super) fn build(
        deny: &[HeaderPatternConfig],
        require: &[String],
        path: &str,
        errs: &mut ConfigErrors,
    ) -> HeaderFilter {
        let mut f = HeaderFilter::default();
        for (i, rule) in deny.iter().enumerate() {
            let name = HeaderName::from_bytes(rule.name.as_bytes());
            let re = Regex::new(&rule.pattern);
            match (name, re) {
                (Ok(n), Ok(r)) => f.deny.push((n, r)),
                (Err(_), _) => errs.push(
                    format!("{path}.deny_headers[{i}].name"),
                    format!("invalid header name {:?}", rule.name),
                ),
                (_, Err(e)) => errs.push(
                    format!("{path}.deny_headers[{i}].pattern"),
                    format!("invalid regex: {e}"),
                ),
            }
        }
        for (i, name) in require.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => f.require.push(n),
                Err(_) => errs.push(
                    format!("{path}.require_headers[{i}]"),
                    format!("invalid header name {name:?}"),
                ),
            }
        }
        f
    }

    pub(super) fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.require.is_empty()
    }

    pub(super) fn check(&self, req: &RequestHeader) -> Result<(), Rejection> {
        for (name, re) in &self.deny {
            let hit = req
                .headers
                .get_all(name)
                .iter()
                .any(|v| re.is_match(&String::from_utf8_lossy(v.as_bytes())));
            if hit {
                return Err(Rejection {
                    status: 403,
                    reason: EdgeReason::HeaderDenied,
                });
            }
        }
        if self.require.iter().any(|n| !req.headers.contains_key(n)) {
            return Err(Rejection {
                status: 403,
                reason: EdgeReason::HeaderRequired,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_and_require() {
        let mut errs = ConfigErrors::default();
        let f = HeaderFilter::build(
            &[HeaderPatternConfig {
                name: "User-Agent".into(),
                pattern: "(?i)sqlmap|nikto".into(),
            }],
            &["X-Api-Key".into()],
            "security",
            &mut errs,
        );
        assert!(errs.is_empty());
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(
            f.check(&req).unwrap_err().reason,
            EdgeReason::HeaderRequired
        );
        req.append_header("x-api-key", "k").unwrap();
        assert!(f.check(&req).is_ok());
        req.append_header("user-agent", "SQLMap/1.0").unwrap();
        assert_eq!(f.check(&req).unwrap_err().reason, EdgeReason::HeaderDenied);
    }
}
