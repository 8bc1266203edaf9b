//! Response compression settings and `Accept-Encoding` negotiation.
//!
//! Pingora's compression module does the encoding at the moment the
//! response is written to the client, after the cache: the cache stores the
//! origin's bytes, and every client gets the coding it asked for. To keep
//! one stored variant, a compressing route asks its origin for `identity`
//! (an origin that encodes anyway is decoded for clients that cannot take
//! its coding). The module itself picks the first coding a client lists and
//! ignores q-values, so the client's header is first rewritten here: the
//! codings it accepts (q > 0), in the edge's order of preference.

use crate::config::units::parse_size;
use crate::config::{CompressionConfig, ConfigErrors};

/// A coding the edge can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Zstd,
    Brotli,
    Gzip,
}

impl Coding {
    pub(crate) fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// Built settings.
#[derive(Debug, Clone)]
pub(crate) struct Compression {
    pub order: Vec<Coding>,
    pub level: u32,
    pub min_size: u64,
    content_types: Vec<String>,
}

impl Compression {
    pub(crate) fn build(cfg: Option<&CompressionConfig>, errs: &mut ConfigErrors) -> Compression {
        let default = CompressionConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let mut order = Vec::new();
        for (i, a) in cfg.algorithms.iter().enumerate() {
            let coding = match a.as_str() {
                "zstd" => Coding::Zstd,
                "br" => Coding::Brotli,
                "gzip" => Coding::Gzip,
                other => {
                    errs.push(
                        format!("compression.algorithms[{i}]"),
                        format!("{other:?} is not one of zstd, br, gzip"),
                    );
                    continue;
                }
            };
            if !order.contains(&coding) {
                order.push(coding);
            }
        }
        if order.is_empty() {
            errs.push(
                "compression.algorithms",
                "name at least one of zstd, br, gzip",
            );
        }
        if !(1..=9).contains(&cfg.level) {
            errs.push(
                "compression.level",
                format!("must be 1..=9 (got {})", cfg.level),
            );
        }
        let min_size = parse_size(&cfg.min_size).unwrap_or_else(|e| {
            errs.push("compression.min_size", e);
            0
        });
        Compression {
            order,
            level: cfg.level.clamp(1, 9),
            min_size,
            content_types: cfg
                .content_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The codings a client accepts (`Accept-Encoding` values), in the
    /// edge's order. A coding counts if listed (or matched by `*`) with
    /// q > 0; `identity` needs nothing from us.
    pub(crate) fn negotiate<'a>(&self, accept: impl Iterator<Item = &'a str>) -> Vec<Coding> {
        let mut listed: Vec<(String, f32)> = Vec::new();
        for value in accept {
            for item in value.split(',') {
                let mut parts = item.split(';');
                let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                if token.is_empty() {
                    continue;
                }
                let mut q = 1.0f32;
                for p in parts {
                    if let Some((k, v)) = p.split_once('=') {
                        if k.trim().eq_ignore_ascii_case("q") {
                            // A malformed weight refuses the coding.
                            q = v.trim().parse().unwrap_or(0.0);
                        }
                    }
                }
                listed.push((token, q));
            }
        }
        let weight = |token: &str| {
            listed
                .iter()
                .find(|(t, _)| t == token)
                .or_else(|| listed.iter().find(|(t, _)| t == "*"))
                .map(|(_, q)| *q)
        };
        self.order
            .iter()
            .copied()
            .filter(|c| weight(c.token()).is_some_and(|q| q > 0.0))
            .collect()
    }

    /// Whether a response with this `Content-Type` and length is worth it.
    pub(crate) fn suits(&self, content_type: Option<&str>, length: Option<u64>) -> bool {
        let Some(ct) = content_type else {
            return false;
        };
        let ct = ct.trim().to_ascii_lowercase();
        length.is_none_or(|n| n >= self.min_size)
            && self
                .content_types
                .iter()
                .any(|p| ct.starts_with(p.as_str()))
            && !ct.starts_with("application/grpc")
            && !ct.starts_with("text/event-stream")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Compression {
        let mut errs = ConfigErrors::default();
        let c = Compression::build(None, &mut errs);
        assert!(errs.is_empty());
        c
    }

    #[test]
    fn negotiation_honours_q_values_and_the_edge_order() {
        let c = settings();
        let n = |v: &str| c.negotiate(std::iter::once(v));
        use Coding::*;
        assert_eq!(n("gzip, deflate, br, zstd"), [Zstd, Brotli, Gzip]);
        assert_eq!(n("gzip"), [Gzip]);
        assert_eq!(n("br;q=0, gzip;q=0.5"), [Gzip]);
        assert_eq!(n("*;q=0.1, zstd;q=0"), [Brotli, Gzip]);
        assert_eq!(n("identity"), []);
        assert_eq!(n("gzip;q=bogus"), []);
        assert_eq!(n(""), []);
    }

    #[test]
    fn content_types_and_sizes() {
        let c = settings();
        assert!(c.suits(Some("text/html; charset=utf-8"), Some(5000)));
        assert!(c.suits(Some("Application/JSON"), None));
        assert!(!c.suits(Some("text/html"), Some(100)), "under min_size");
        assert!(!c.suits(Some("image/png"), Some(50_000)));
        assert!(!c.suits(Some("application/grpc+proto"), None));
        assert!(!c.suits(Some("text/event-stream"), None));
        assert!(!c.suits(None, Some(50_000)));
    }

    #[test]
    fn bad_settings_are_errors_with_paths() {
        let cfg: CompressionConfig =
            serde_yaml::from_str("algorithms: [gzip, lzma]\nlevel: 12\nmin_size: lots\n").unwrap();
        let mut errs = ConfigErrors::default();
        Compression::build(Some(&cfg), &mut errs);
        let text = errs.to_string();
        for expected in [
            "compression.algorithms[1]: \"lzma\"",
            "compression.level: must be 1..=9",
            "compression.min_size",
        ] {
            assert!(text.contains(expected), "{expected} in {text}");
        }
    }
}
