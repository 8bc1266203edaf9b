//! Per-route header rules: `set` (replace) and `remove`, applied to requests
//! before they go upstream or to responses before they go to the client.

use crate::config::{ConfigErrors, HeaderRulesConfig};
use http::header::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

#[derive(Debug, Default, Clone)]
pub(crate) struct HeaderRules {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl HeaderRules {
    pub(crate) fn build(
        cfg: &HeaderRulesConfig,
        path: &str,
        errs: &mut ConfigErrors,
    ) -> HeaderRules {
        let mut rules = HeaderRules::default();
        for (name, value) in &cfg.set {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(n), Ok(v)) => rules.set.push((n, v)),
                (Err(_), _) => errs.push(
                    format!("{path}.set.{name}"),
                    format!("invalid header name {name:?}"),
                ),
                (_, Err(_)) => errs.push(
                    format!("{path}.set.{name}"),
                    format!("invalid header value {value:?}"),
                ),
            }
        }
        for (i, name) in cfg.remove.iter().enumerate() {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(n) => rules.remove.push(n),
                Err(_) => errs.push(
                    format!("{path}.remove[{i}]"),
                    format!("invalid header name {name:?}"),
                ),
            }
        }
        rules
    }

    pub(crate) fn apply_request(&self, req: &mut RequestHeader) -> pingora::Result<()> {
        for name in &self.remove {
            req.remove_header(name);
        }
        for (name, value) in &self.set {
            req.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }

    pub(crate) fn apply_response(&self, resp: &mut ResponseHeader) -> pingora::Result<()> {
        for name in &self.remove {
            resp.remove_header(name);
        }
        for (name, value) in &self.set {
            resp.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }
}
