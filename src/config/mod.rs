//! Loading the config file: YAML → [`RawConfig`] (schema only, every structural
//! error with its path) → [`crate::runtime::Snapshot::build`] (semantic checks,
//! all errors at once) → immutable runtime snapshot.
//!
//! Sections, list items and map entries are deserialized one by one so that a
//! typo in one route does not hide a bad address in an upstream.

mod errors;
mod features;
mod fleet;
mod geo;
pub mod model;
pub mod units;
mod upstreams;

pub use errors::{ConfigError, ConfigErrors};
pub use features::*;
pub use fleet::*;
pub use geo::*;
pub use model::*;
pub use upstreams::*;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The config file after the schema check, before semantic validation.
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub server: ServerSection,
    pub listeners: Vec<ListenerConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub routes: Vec<RouteConfig>,
    pub forwarding: ForwardingConfig,
    pub cache: Option<CacheConfig>,
    pub admin: Option<AdminConfig>,
    pub security: SecurityConfig,
    pub limits: LimitsConfig,
    pub rate_limit: Option<RateLimitConfig>,
    pub behaviour: Option<BehaviourConfig>,
    pub error_pages: Option<ErrorPagesConfig>,
    pub compression: Option<CompressionConfig>,
    pub access_log: Option<AccessLogConfig>,
    pub fleet: Option<FleetConfig>,
    pub geo: Option<GeoConfig>,
    /// What failed the schema check, so that semantic validation of the rest
    /// does not report follow-on errors ("no listener", "no such upstream").
    pub broken: Broken,
}

/// Entries dropped by the schema check.
#[derive(Debug, Clone, Default)]
pub struct Broken {
    /// Names of upstream entries that failed (routes may still name them).
    pub upstreams: Vec<String>,
    pub listeners: bool,
    pub routes: bool,
}

const SECTIONS: &[&str] = &[
    "server",
    "security",
    "limits",
    "rate_limit",
    "behaviour",
    "listeners",
    "upstreams",
    "routes",
    "forwarding",
    "cache",
    "admin",
    "error_pages",
    "compression",
    "access_log",
    "fleet",
    "geo",
];

/// Reads and schema-checks a config file; see [`parse_partial`].
pub fn read_file(path: &Path) -> (Option<RawConfig>, ConfigErrors) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_partial(&text),
        Err(e) => {
            let mut errs = ConfigErrors::default();
            errs.push(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            );
            (None, errs)
        }
    }
}

/// Schema-checks a config document. Unknown keys are errors.
pub fn parse(text: &str) -> Result<RawConfig, ConfigErrors> {
    match parse_partial(text) {
        (Some(raw), errs) => errs.into_result(raw),
        (None, errs) => Err(errs),
    }
}

/// Schema-checks a config document and returns what did parse (entries with
/// errors left out, noted in [`RawConfig::broken`]) with the errors, so that
/// semantic validation can still report the rest. `None` when the document
/// is not a YAML mapping at all.
pub fn parse_partial(text: &str) -> (Option<RawConfig>, ConfigErrors) {
    let mut errs = ConfigErrors::default();
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            errs.push("", format!("not valid YAML: {e}"));
            return (None, errs);
        }
    };
    let root = match doc {
        Value::Mapping(m) => m,
        Value::Null => Mapping::new(),
        _ => {
            errs.push("", "the config must be a YAML mapping of sections");
            return (None, errs);
        }
    };
    for key in root.keys() {
        match key.as_str() {
            Some(k) if SECTIONS.contains(&k) => {}
            _ => errs.push(
                key_text(key),
                format!("unknown section (expected one of: {})", SECTIONS.join(", ")),
            ),
        }
    }
    let mut broken = Broken::default();
    let n = errs.len();
    let listeners = list(root.get("listeners"), "listeners", &mut errs)
        .into_iter()
        .map(|(position, l)| ListenerConfig { position, ..l })
        .collect();
    broken.listeners = errs.len() != n;
    let upstreams = map(
        root.get("upstreams"),
        "upstreams",
        &mut errs,
        &mut broken.upstreams,
    );
    let n = errs.len();
    let routes = list(root.get("routes"), "routes", &mut errs)
        .into_iter()
        .map(|(position, r)| RouteConfig { position, ..r })
        .collect();
    broken.routes = errs.len() != n;
    let raw = RawConfig {
        server: one(&root, "server", &mut errs).unwrap_or_default(),
        listeners,
        upstreams,
        routes,
        forwarding: one(&root, "forwarding", &mut errs).unwrap_or_default(),
        cache: one(&root, "cache", &mut errs),
        admin: one(&root, "admin", &mut errs),
        security: one(&root, "security", &mut errs).unwrap_or_default(),
        limits: one(&root, "limits", &mut errs).unwrap_or_default(),
        rate_limit: one(&root, "rate_limit", &mut errs),
        behaviour: one(&root, "behaviour", &mut errs),
        error_pages: one(&root, "error_pages", &mut errs),
        compression: one(&root, "compression", &mut errs),
        access_log: one(&root, "access_log", &mut errs),
        fleet: one(&root, "fleet", &mut errs),
        geo: one(&root, "geo", &mut errs),
        broken,
    };
    (Some(raw), errs)
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Deserializes `value` and, on failure, records the error under `path`.
fn item<T: DeserializeOwned>(value: &Value, path: &str, errs: &mut ConfigErrors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = match inner.as_str() {
                "" | "." => path.to_string(),
                i if i.starts_with('[') => format!("{path}{i}"),
                i => format!("{path}.{i}"),
            };
            errs.push(full, e.into_inner());
            None
        }
    }
}

fn one<T: DeserializeOwned>(root: &Mapping, key: &str, errs: &mut ConfigErrors) -> Option<T> {
    match root.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => item(v, key, errs),
    }
}

/// The items that parsed, with their index in the file.
fn list<T: DeserializeOwned>(
    value: Option<&Value>,
    path: &str,
    errs: &mut ConfigErrors,
) -> Vec<(usize, T)> {
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| item(v, &format!("{path}[{i}]"), errs).map(|t| (i, t)))
            .collect(),
        Some(_) => {
            errs.push(path, "expected a list");
            Vec::new()
        }
    }
}

fn map<T: DeserializeOwned>(
    value: Option<&Value>,
    path: &str,
    errs: &mut ConfigErrors,
    failed: &mut Vec<String>,
) -> BTreeMap<String, T> {
    match value {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Mapping(entries)) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let Some(name) = k.as_str() else {
                    errs.push(format!("{path}.{}", key_text(k)), "names must be strings");
                    continue;
                };
                match item(v, &format!("{path}.{name}"), errs) {
                    Some(t) => {
                        out.insert(name.to_string(), t);
                    }
                    None => failed.push(name.to_string()),
                }
            }
            out
        }
        Some(_) => {
            errs.push(path, "expected a mapping of names to entries");
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_is_the_defaults() {
        let raw = parse("").unwrap();
        assert!(raw.listeners.is_empty());
        assert_eq!(raw.server.grace_period_seconds, 10);
    }

    #[test]
    fn unknown_keys_are_errors_with_paths_and_all_are_reported() {
        let errs = parse(
            "listners: []\n\
             listeners:\n  - address: 127.0.0.1:1\n    h2: true\n\
             upstreams:\n  app:\n    backends: []\n    selecton: round_robin\n\
             routes:\n  - upstream: app\n    match: {hots: a}\n",
        )
        .unwrap_err();
        let text = errs.to_string();
        assert!(text.contains("listners: unknown section"), "{text}");
        assert!(
            text.contains("listeners[0].h2: unknown field `h2`"),
            "{text}"
        );
        assert!(
            text.contains("upstreams.app.selecton: unknown field `selecton`"),
            "{text}"
        );
        assert!(
            text.contains("routes[0].match.hots: unknown field `hots`"),
            "{text}"
        );
        assert_eq!(errs.len(), 4, "{text}");
    }

    #[test]
    fn wrong_types_are_errors() {
        let errs = parse("server:\n  threads: many\n").unwrap_err();
        assert!(
            errs.to_string().starts_with("server.threads: invalid type"),
            "{errs}"
        );
        let errs = parse("- a\n").unwrap_err();
        assert!(errs.to_string().contains("must be a YAML mapping"));
    }
}
