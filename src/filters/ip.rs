//! IP/CIDR allow and deny lists (IPv4 and IPv6). An entry that does not parse
//! is a config error, never a skipped rule.

use super::EdgeReason;
use super::Rejection;
use crate::cidr::{Cidr, CidrSet};
use crate::config::ConfigErrors;
use std::net::IpAddr;

#[derive(Debug, Default)]
pub(super) struct IpFilter {
    allow: CidrSet,
    deny: CidrSet,
}

fn parse(list: &[String], path: &str, errs: &mut ConfigErrors) -> CidrSet {
    let mut nets = Vec::new();
    for (i, text) in list.iter().enumerate() {
        match text.parse::<Cidr>() {
            Ok(n) => nets.push(n),
            Err(e) => errs.push(format!("{path}[{i}]"), e),
        }
    }
    CidrSet::new(nets)
}

impl IpFilter {
    pub(super) fn build(
        allow: &[String],
        deny: &[String],
        path: &str,
        errs: &mut ConfigErrors,
    ) -> IpFilter {
        IpFilter {
            allow: parse(allow, &format!("{path}.allow"), errs),
            deny: parse(deny, &format!("{path}.deny"), errs),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Deny wins over allow; a non-empty allow list admits only its members.
    pub(super) fn check(&self, client: IpAddr) -> Result<(), Rejection> {
        if self.deny.contains(client) || (!self.allow.is_empty() && !self.allow.contains(client)) {
            return Err(Rejection {
                status: 403,
                reason: EdgeReason::IpDenied,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_deny_and_bad_entries() {
        let mut errs = ConfigErrors::default();
        let f = IpFilter::build(
            &["10.0.0.0/8".into(), "2001:db8::/32".into()],
            &["10.9.0.0/16".into()],
            "security",
            &mut errs,
        );
        assert!(errs.is_empty());
        assert!(f.check("10.1.2.3".parse().unwrap()).is_ok());
        assert!(f.check("2001:db8::1".parse().unwrap()).is_ok());
        assert_eq!(
            f.check("10.9.1.1".parse().unwrap()).unwrap_err().status,
            403
        );
        assert!(f.check("192.0.2.1".parse().unwrap()).is_err());
        IpFilter::build(
            &["10.0.0.0/33".into()],
            &["nope".into()],
            "routes[0].security",
            &mut errs,
        );
        let text = errs.to_string();
        assert!(
            text.contains("routes[0].security.allow[0]: invalid network"),
            "{text}"
        );
        assert!(
            text.contains("routes[0].security.deny[0]: invalid network"),
            "{text}"
        );
    }
}
