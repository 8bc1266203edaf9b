//! Path deny rules: plain string prefixes (`/admin` also refuses
//! `/administrator`: a deny list errs on the side of refusing) and regular
//! expressions (403). The path is
//! matched as received (percent-encoding not decoded), so a rule for
//! `/admin` also needs `/%61dmin`-style variants if origins decode paths;
//! regexes can cover those.

use super::EdgeReason;
use super::Rejection;
use crate::config::ConfigErrors;
use regex::RegexSet;

#[derive(Debug, Default)]
pub(super) struct PathFilter {
    prefixes: Vec<String>,
    patterns: Option<RegexSet>,
}

impl PathFilter {
    pub(super) fn build(
        prefixes: &[String],
        patterns: &[String],
        path: &str,
        errs: &mut ConfigErrors,
    ) -> PathFilter {
        for (i, p) in prefixes.iter().enumerate() {
            if !p.starts_with('/') {
                errs.push(
                    format!("{path}.deny_paths[{i}]"),
                    format!("must start with '/' (got {p:?})"),
                );
            }
        }
        let mut ok = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            match regex::Regex::new(p) {
                Ok(_) => ok.push(p.as_str()),
                Err(e) => errs.push(
                    format!("{path}.deny_path_patterns[{i}]"),
                    format!("invalid regex: {e}"),
                ),
            }
        }
        PathFilter {
            prefixes: prefixes.to_vec(),
            patterns: (!ok.is_empty()).then(|| RegexSet::new(ok).ok()).flatten(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.prefixes.is_empty() && self.patterns.is_none()
    }

    pub(super) fn check(&self, path: &str) -> Result<(), Rejection> {
        let denied = self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
            || self.patterns.as_ref().is_some_and(|set| set.is_match(path));
        if denied {
            Err(Rejection {
                status: 403,
                reason: EdgeReason::PathDenied,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_patterns() {
        let mut errs = ConfigErrors::default();
        let f = PathFilter::build(
            &["/admin".into()],
            &[r"\.(git|env)(/|$)".into(), r"(?i)/wp-login".into()],
            "security",
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs}");
        assert!(f.check("/admin/x").is_err());
        assert!(f.check("/app/.git/config").is_err());
        assert!(f.check("/WP-LOGIN.php").is_err());
        assert!(f.check("/public/index.html").is_ok());
        PathFilter::build(
            &["admin".into()],
            &["(unclosed".into()],
            "security",
            &mut errs,
        );
        let text = errs.to_string();
        assert!(
            text.contains("security.deny_paths[0]: must start with '/'"),
            "{text}"
        );
        assert!(
            text.contains("security.deny_path_patterns[0]: invalid regex"),
            "{text}"
        );
    }
}
