//! The schema of the feature sections: `error_pages:`, `compression:`,
//! `behaviour:` and `access_log:`. Each feature module builds its runtime
//! form from these; the schema imports no feature.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `error_pages:` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorPagesConfig {
    /// Content type of every page (default `text/plain; charset=utf-8`).
    pub content_type: Option<String>,
    /// The page for statuses without their own.
    pub default: Option<PageConfig>,
    /// Pages by status code (`"502": {file: /etc/parapet/502.html}`).
    #[serde(default)]
    pub pages: BTreeMap<String, PageConfig>,
}

/// One page: inline text or a file, exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageConfig {
    pub body: Option<String>,
    pub file: Option<String>,
}

/// `compression:` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Routes compress unless they say `compression: false` (default off:
    /// routes opt in with `compression: true`).
    pub enabled: bool,
    /// Preference order among `zstd`, `br`, `gzip`.
    pub algorithms: Vec<String>,
    /// 1 (fast) to 9 (small), for every algorithm.
    pub level: u32,
    /// Responses with a smaller `Content-Length` are sent as they are.
    pub min_size: String,
    /// `Content-Type` prefixes that are compressed.
    pub content_types: Vec<String>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            enabled: false,
            algorithms: vec!["zstd".into(), "br".into(), "gzip".into()],
            level: 5,
            min_size: "1KiB".into(),
            content_types: [
                "text/",
                "application/json",
                "application/javascript",
                "application/xml",
                "application/xhtml+xml",
                "application/wasm",
                "image/svg+xml",
                "font/ttf",
                "font/otf",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// `behaviour:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BehaviourConfig {
    pub threshold: f64,
    pub half_life: String,
    pub block_for: String,
    /// Networks never blocked (monitoring, partners, your office).
    pub never_block: Vec<String>,
    pub weights: Weights,
}

/// Score added per event.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    /// A 4xx answer (404 included) other than the ones below.
    pub client_error: f64,
    /// A request refused by a filter (403/405/413/414/431).
    pub refused: f64,
    /// A malformed request (framing, 400).
    pub malformed: f64,
    /// A rate-limit or concurrency refusal (429).
    pub rate_limited: f64,
    /// A connection cut for a slow request head.
    pub slow: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            client_error: 1.0,
            refused: 5.0,
            malformed: 10.0,
            rate_limited: 2.0,
            slow: 10.0,
        }
    }
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            threshold: 100.0,
            half_life: "60s".into(),
            block_for: "10m".into(),
            never_block: Vec::new(),
            weights: Weights::default(),
        }
    }
}

/// `access_log:` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// `json` or `combined`.
    pub format: String,
    /// `stdout`, `stderr` or a file path.
    pub path: String,
    /// Fraction of requests logged, 0 to 1; 5xx responses are always logged.
    pub sample: f64,
    /// Also log the backend address (hidden by default).
    pub include_backend: bool,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        AccessLogConfig {
            enabled: true,
            format: "json".into(),
            path: "stdout".into(),
            sample: 1.0,
            include_backend: false,
        }
    }
}
