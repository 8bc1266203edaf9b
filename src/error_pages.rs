//! The edge's own error pages: small, with no backend named, and replaceable
//! by the operator (`error_pages:`). A page is a template where `{status}`,
//! `{reason}` and `{request_id}` are substituted; files are read once at load,
//! so a missing file is a config error with its path, never a failure while
//! answering.

use crate::config::{ConfigErrors, ErrorPagesConfig, PageConfig};
use bytes::Bytes;
use http::HeaderValue;
use std::collections::HashMap;

/// Largest page accepted: error pages are for people, not for assets.
const MAX_PAGE: usize = 64 * 1024;

const DEFAULT_TEMPLATE: &str = "{status} {reason}\nrequest id: {request_id}\n";
const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Status,
    Reason,
    RequestId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Part>);

impl Template {
    fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next = [
                ("{status}", Part::Status),
                ("{reason}", Part::Reason),
                ("{request_id}", Part::RequestId),
            ]
            .into_iter()
            .filter_map(|(tag, part)| rest.find(tag).map(|at| (at, tag.len(), part)))
            .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, len, part)) => {
                    if at > 0 {
                        parts.push(Part::Text(rest[..at].to_string()));
                    }
                    parts.push(part);
                    rest = &rest[at + len..];
                }
                None => {
                    parts.push(Part::Text(rest.to_string()));
                    rest = "";
                }
            }
        }
        Template(parts)
    }

    fn render(&self, status: u16, reason: &str, request_id: &str) -> Bytes {
        let mut out = String::with_capacity(64);
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Status => out.push_str(&status.to_string()),
                Part::Reason => out.push_str(reason),
                // Request ids are generated or validated tokens; escape anyway
                // so that a page in HTML can never carry markup from a client.
                Part::RequestId => out.extend(
                    request_id
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c)),
                ),
            }
        }
        Bytes::from(out)
    }
}

/// The built pages, shared by every request.
#[derive(Debug, Clone)]
pub(crate) struct ErrorPages {
    content_type: HeaderValue,
    default: Template,
    by_status: HashMap<u16, Template>,
}

impl Default for ErrorPages {
    fn default() -> Self {
        ErrorPages {
            content_type: HeaderValue::from_static(DEFAULT_CONTENT_TYPE),
            default: Template::parse(DEFAULT_TEMPLATE),
            by_status: HashMap::new(),
        }
    }
}

impl ErrorPages {
    pub(crate) fn build(cfg: Option<&ErrorPagesConfig>, errs: &mut ConfigErrors) -> ErrorPages {
        let mut pages = ErrorPages::default();
        let Some(cfg) = cfg else {
            return pages;
        };
        if let Some(ct) = &cfg.content_type {
            match HeaderValue::from_str(ct) {
                Ok(v) if !ct.is_empty() => pages.content_type = v,
                _ => errs.push(
                    "error_pages.content_type",
                    "not a valid header value".to_string(),
                ),
            }
        }
        if let Some(page) = &cfg.default {
            if let Some(t) = load(page, "error_pages.default", errs) {
                pages.default = t;
            }
        }
        for (code, page) in &cfg.pages {
            let path = format!("error_pages.pages.{code}");
            match code.parse::<u16>() {
                Ok(c) if (400..=599).contains(&c) => {
                    if let Some(t) = load(page, &path, errs) {
                        pages.by_status.insert(c, t);
                    }
                }
                _ => errs.push(path, "expected an error status code, 400 to 599"),
            }
        }
        pages
    }

    /// Content type and body of the page for `status`.
    pub(crate) fn render(&self, status: u16, request_id: &str) -> (HeaderValue, Bytes) {
        let reason = http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let template = self.by_status.get(&status).unwrap_or(&self.default);
        (
            self.content_type.clone(),
            template.render(status, reason, request_id),
        )
    }
}

fn load(page: &PageConfig, path: &str, errs: &mut ConfigErrors) -> Option<Template> {
    let text = match (&page.body, &page.file) {
        (Some(body), None) => body.clone(),
        (None, Some(file)) => match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                errs.push(format!("{path}.file"), format!("cannot read {file}: {e}"));
                return None;
            }
        },
        _ => {
            errs.push(path, "give exactly one of `body` or `file`");
            return None;
        }
    };
    if text.len() > MAX_PAGE {
        errs.push(
            path,
            format!("page is {} bytes; at most {MAX_PAGE}", text.len()),
        );
        return None;
    }
    Some(Template::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_page_names_status_and_request_id() {
        let (ct, body) = ErrorPages::default().render(502, "abc-1");
        assert_eq!(ct, DEFAULT_CONTENT_TYPE);
        assert_eq!(&body[..], b"502 Bad Gateway\nrequest id: abc-1\n");
    }

    #[test]
    fn configured_pages_replace_per_status_and_escape_ids() {
        let cfg: ErrorPagesConfig = serde_yaml::from_str(
            "content_type: text/html\ndefault: {body: \"<p>{status}</p>\"}\npages:\n  \"503\": {body: \"busy {request_id} {reason}{\"}\n",
        )
        .unwrap();
        let mut errs = ConfigErrors::default();
        let pages = ErrorPages::build(Some(&cfg), &mut errs);
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(&pages.render(404, "x").1[..], b"<p>404</p>");
        assert_eq!(
            &pages.render(503, "id<script>").1[..],
            b"busy idscript Service Unavailable{"
        );
    }

    #[test]
    fn bad_entries_are_errors_with_paths() {
        let cfg: ErrorPagesConfig = serde_yaml::from_str(
            "content_type: \"bad\\nvalue\"\npages:\n  \"200\": {body: x}\n  \"502\": {file: /nonexistent/502.html}\n  \"504\": {}\n",
        )
        .unwrap();
        let mut errs = ConfigErrors::default();
        ErrorPages::build(Some(&cfg), &mut errs);
        let text = errs.to_string();
        for expected in [
            "error_pages.content_type:",
            "error_pages.pages.200: expected an error status",
            "error_pages.pages.502.file: cannot read /nonexistent/502.html",
            "error_pages.pages.504: give exactly one",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
