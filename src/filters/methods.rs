//! Allowed request methods (405 otherwise). Empty list: any method.

use super::EdgeReason;
use super::Rejection;
use crate::config::ConfigErrors;
use http::Method;

#[derive(Debug, Default)]
pub(super) struct MethodFilter {
    allowed: Vec<Method>,
}

impl MethodFilter {
    pub(super) fn build(list: &[String], path: &str, errs: &mut ConfigErrors) -> MethodFilter {
        let mut allowed = Vec::new();
        for (i, m) in list.iter().enumerate() {
            match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => allowed.push(m),
                Err(_) => errs.push(
                    format!("{path}.methods[{i}]"),
                    format!("invalid method {m:?}"),
                ),
            }
        }
        MethodFilter { allowed }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.allowed.is_empty()
    }

    pub(super) fn check(&self, method: &Method) -> Result<(), Rejection> {
        if self.allowed.is_empty() || self.allowed.contains(method) {
            Ok(())
        } else {
            Err(Rejection {
                status: 405,
                reason: EdgeReason::MethodNotAllowed,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_methods() {
        let mut errs = ConfigErrors::default();
        let f = MethodFilter::build(&["get".into(), "HEAD".into()], "security", &mut errs);
        assert!(f.check(&Method::GET).is_ok());
        assert_eq!(f.check(&Method::POST).unwrap_err().status, 405);
        assert!(MethodFilter::default().check(&Method::DELETE).is_ok());
        MethodFilter::build(&["BAD METHOD".into()], "security", &mut errs);
        assert!(errs
            .to_string()
            .contains("security.methods[0]: invalid method"));
    }
}
