//! The route table: `(host, path)` → route, first match in config order wins.
//!
//! Matching is pure and allocation-free on the request path:
//! * `host`: exact (`example.com`) or wildcard (`*.example.com`: any subdomain at
//!   any depth, not the apex); compared case-insensitively without the port.
//!   Absent: every host.
//! * `path_prefix`: `/api` matches `/api`, `/api/` and `/api/x`, not `/apix`
//!   (segment-aware); a prefix ending in `/` is a plain string prefix.
//! * `path`: the exact path, query excluded.
//! * `headers`: name → regex, each matching one of that header's values
//!   (for example the verified client certificate subject).
//! * `country`, `continent`, `region`: the client's place (see
//!   [`crate::geo`]) is one of those listed.

mod headers;

pub(crate) use headers::HeaderRules;

use crate::cache::RouteCache;
use crate::config::{CacheConfig, ConfigErrors, RouteConfig};
use crate::filters::FilterSet;
use crate::geo::{Code, Geography, Place, RegionId};
use crate::ratelimit::RateLimiter;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    Exact(String),
    /// The suffix including its leading dot: `.example.com`.
    Wildcard(String),
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Any => true,
            HostMatch::Exact(h) => h.eq_ignore_ascii_case(host),
            HostMatch::Wildcard(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// One built route.
#[derive(Debug)]
pub(crate) struct Route {
    /// Label for metrics and logs.
    pub name: String,
    host: HostMatch,
    path_prefix: Option<String>,
    path: Option<String>,
    headers: Vec<(http::HeaderName, regex::Regex)>,
    place: PlaceMatch,
    /// Index of the upstream pool in [`crate::upstream::Pools`].
    pub upstream: usize,
    strip_prefix: bool,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    /// The route's cache policy; `None`: not cached.
    pub cache: Option<RouteCache>,
    /// Filters applied after the global ones.
    pub filters: FilterSet,
    /// A rate limit on top of the global one.
    pub rate_limit: Option<RateLimiter>,
    /// Long-lived streams: no cache, no compression, long reads.
    pub streaming: bool,
    /// Non-idempotent requests may be retried after they were sent.
    pub retry_non_idempotent: bool,
    /// Responses are compressed for clients that accept it.
    pub compression: bool,
    /// Read timeout of streaming requests and upgraded connections.
    pub stream_idle_timeout: std::time::Duration,
}

/// `match.country`, `match.continent`, `match.region`: each, when given,
/// must list the client's.
#[derive(Debug, Default)]
struct PlaceMatch {
    countries: Vec<Code>,
    continents: Vec<Code>,
    regions: Vec<RegionId>,
}

impl PlaceMatch {
    fn build(
        m: &crate::config::MatchConfig,
        geo: &Geography,
        at: &dyn Fn(&str) -> String,
        errs: &mut ConfigErrors,
    ) -> PlaceMatch {
        let mut codes = |key: &str, list: &[String]| -> Vec<Code> {
            if !list.is_empty() && !geo.locates() {
                errs.push(
                    at(&format!("match.{key}")),
                    "needs geo.database or geo.networks to place clients",
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    Code::parse(c)
                        .map_err(|e| errs.push(at(&format!("match.{key}[{i}]")), e))
                        .ok()
                })
                .collect()
        };
        let countries = codes("country", &m.country);
        let continents = codes("continent", &m.continent);
        let regions = m
            .region
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                geo.regions
                    .resolve(r)
                    .map_err(|e| errs.push(at(&format!("match.region[{i}]")), e))
                    .ok()
            })
            .collect();
        PlaceMatch {
            countries,
            continents,
            regions,
        }
    }

    fn matches(&self, place: &Place) -> bool {
        let listed = |list: &[Code], code: Option<Code>| {
            list.is_empty() || code.is_some_and(|c| list.contains(&c))
        };
        listed(&self.countries, place.country)
            && listed(&self.continents, place.continent)
            && (self.regions.is_empty() || place.region.is_some_and(|r| self.regions.contains(&r)))
    }
}

impl Route {
    fn matches(&self, host: &str, path: &str, headers: &http::HeaderMap, place: &Place) -> bool {
        self.host.matches(host)
            && self.place.matches(place)
            && self.path.as_deref().is_none_or(|p| p == path)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| prefix_matches(prefix, path))
            && self.headers.iter().all(|(name, re)| {
                headers
                    .get_all(name)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| re.is_match(v)))
            })
    }

    /// The request target to send upstream, when the route rewrites it.
    /// `target` is the path plus an optional `?query`.
    pub(crate) fn rewrite_target(&self, target: &str) -> Option<String> {
        let prefix = self.path_prefix.as_deref().filter(|_| self.strip_prefix)?;
        let rest = target.strip_prefix(prefix.trim_end_matches('/'))?;
        Some(if rest.is_empty() || rest.starts_with('?') {
            format!("/{rest}")
        } else if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        })
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The ordered route table.
#[derive(Debug, Default)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Builds the table; `upstreams` maps pool names to their index.
    pub(crate) fn build(
        configs: &[RouteConfig],
        upstreams: &HashMap<String, usize>,
        cache: Option<&CacheConfig>,
        compression: Option<&crate::config::CompressionConfig>,
        geo: &Geography,
        errs: &mut ConfigErrors,
    ) -> Router {
        let mut routes = Vec::with_capacity(configs.len());
        let mut names = HashMap::new();
        for rc in configs {
            let i = rc.position;
            let at = |key: &str| format!("routes[{i}].{key}");
            let name = rc.name.clone().unwrap_or_else(|| format!("route{i}"));
            if let Some(prev) = names.insert(name.clone(), i) {
                errs.push(
                    at("name"),
                    format!("duplicate route name {name:?} (also routes[{prev}])"),
                );
            }
            let host = match rc.matcher.host.as_deref() {
                None => HostMatch::Any,
                Some(h) => match parse_host(h) {
                    Ok(m) => m,
                    Err(e) => {
                        errs.push(at("match.host"), e);
                        HostMatch::Any
                    }
                },
            };
            for (key, value) in [
                ("match.path_prefix", &rc.matcher.path_prefix),
                ("match.path", &rc.matcher.path),
            ] {
                if let Some(p) = value {
                    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
                        errs.push(
                            at(key),
                            format!("must be a path starting with '/' (got {p:?})"),
                        );
                    }
                }
            }
            let mut header_match = Vec::new();
            for (name, pattern) in &rc.matcher.headers {
                let key = at(&format!("match.headers.{name}"));
                match (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    regex::Regex::new(pattern),
                ) {
                    (Ok(n), Ok(re)) => header_match.push((n, re)),
                    (Err(_), _) => errs.push(key, "not a valid header name"),
                    (_, Err(e)) => errs.push(key, format!("invalid regex: {e}")),
                }
            }
            if rc.strip_prefix && rc.matcher.path_prefix.is_none() {
                errs.push(at("strip_prefix"), "needs match.path_prefix");
            }
            let upstream = match upstreams.get(&rc.upstream) {
                Some(idx) => *idx,
                None => {
                    errs.push(
                        at("upstream"),
                        format!("no upstream named {:?}", rc.upstream),
                    );
                    0
                }
            };
            routes.push(Route {
                name,
                host,
                path_prefix: rc.matcher.path_prefix.clone(),
                path: rc.matcher.path.clone(),
                headers: header_match,
                place: PlaceMatch::build(&rc.matcher, geo, &at, errs),
                upstream,
                strip_prefix: rc.strip_prefix,
                request_headers: HeaderRules::build(
                    &rc.request_headers,
                    &at("request_headers"),
                    errs,
                ),
                response_headers: HeaderRules::build(
                    &rc.response_headers,
                    &at("response_headers"),
                    errs,
                ),
                cache: if rc.streaming {
                    if rc.compression == Some(true) {
                        errs.push(at("compression"), "a streaming route is never compressed");
                    }
                    if rc.cache.as_ref().is_some_and(|c| c.enabled == Some(true)) {
                        errs.push(at("cache.enabled"), "a streaming route is never cached");
                    }
                    None
                } else {
                    RouteCache::build(rc.cache.as_ref(), cache, &at("cache"), upstreams, errs)
                },
                streaming: rc.streaming,
                retry_non_idempotent: rc.retry_non_idempotent,
                compression: !rc.streaming
                    && rc
                        .compression
                        .unwrap_or_else(|| compression.is_some_and(|c| c.enabled)),
                stream_idle_timeout: match rc.stream_idle_timeout.as_deref() {
                    None => std::time::Duration::from_secs(3600),
                    Some(t) => {
                        crate::config::units::parse_positive_duration(t).unwrap_or_else(|e| {
                            errs.push(at("stream_idle_timeout"), e);
                            std::time::Duration::from_secs(3600)
                        })
                    }
                },
                filters: rc
                    .security
                    .as_ref()
                    .map(|s| FilterSet::build(s, &format!("routes[{i}].security"), errs))
                    .unwrap_or_default(),
                rate_limit: rc
                    .rate_limit
                    .as_ref()
                    .and_then(|r| RateLimiter::build(r, &format!("routes[{i}].rate_limit"), errs)),
            });
        }
        Router { routes }
    }

    /// The first route matching `host` (already without port), `path`,
    /// the request's headers and the client's place.
    pub(crate) fn find(
        &self,
        host: &str,
        path: &str,
        headers: &http::HeaderMap,
        place: &Place,
    ) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(host, path, headers, place))
    }

    /// Whether any route takes requests for `host` (whatever else it
    /// matches on).
    pub(crate) fn serves_host(&self, host: &str) -> bool {
        self.routes.iter().any(|r| r.host.matches(host))
    }

    pub(crate) fn get(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }
}

fn parse_host(h: &str) -> Result<HostMatch, String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    let lower = h.trim_end_matches('.').to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        if valid(suffix) {
            return Ok(HostMatch::Wildcard(format!(".{suffix}")));
        }
    } else if valid(&lower) {
        return Ok(HostMatch::Exact(lower));
    }
    Err(format!(
        "invalid host pattern {h:?} (expected \"example.com\" or \"*.example.com\")"
    ))
}

/// The host a request is for, without port or trailing dot: from the `Host`
/// header, or the URI authority (HTTP/2 and absolute-form requests).
pub(crate) fn request_host(req: &pingora::http::RequestHeader) -> &str {
    split_authority(raw_authority(req)).0
}

/// [`request_host`] and the port the same authority names, if it names one.
pub(crate) fn request_authority(req: &pingora::http::RequestHeader) -> (&str, Option<u16>) {
    split_authority(raw_authority(req))
}

fn raw_authority(req: &pingora::http::RequestHeader) -> &str {
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or("")
}

/// The host of an authority and its port: no userinfo (after the last
/// `@`), no trailing dot; an IPv6 literal keeps its brackets. One pass over
/// the bytes: this runs for every request, and the `str` searchers' set-up
/// cost more than the search of a `Host` value.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let bytes = authority.as_bytes();
    let mut start = 0;
    let mut end = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'@' => (start, end) = (i + 1, None),
            b':' if end.is_none() && bytes[start] != b'[' => end = Some(i),
            b']' if end.is_none() && bytes[start] == b'[' => end = Some(i + 1),
            _ => {}
        }
    }
    let end = end.unwrap_or(bytes.len());
    let host = &authority[start..end];
    let port = authority[end..]
        .strip_prefix(':')
        .and_then(|p| p.parse().ok());
    (host.strip_suffix('.').unwrap_or(host), port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn router(yaml: &str) -> Router {
        let raw = config::parse(yaml).unwrap();
        let ups = HashMap::from([("a".to_string(), 0), ("b".to_string(), 1)]);
        let mut errs = ConfigErrors::default();
        let r = Router::build(
            &raw.routes,
            &ups,
            None,
            None,
            &Geography::default(),
            &mut errs,
        );
        assert!(errs.is_empty(), "{errs}");
        r
    }

    #[test]
    fn first_match_wins_with_hosts_wildcards_and_prefixes() {
        let r = router(
            "routes:\n\
             - {name: exact, match: {host: api.example.com, path: /v1/ping}, upstream: a}\n\
             - {name: api, match: {host: api.example.com, path_prefix: /v1}, upstream: b}\n\
             - {name: wild, match: {host: '*.example.com'}, upstream: a}\n\
             - {name: static, match: {path_prefix: /static/}, upstream: b}\n",
        );
        let none = http::HeaderMap::new();
        let name = |h: &str, p: &str| {
            r.find(h, p, &none, &Place::default())
                .map(|(_, r)| r.name.as_str())
        };
        assert_eq!(name("api.example.com", "/v1/ping"), Some("exact"));
        assert_eq!(name("API.example.com", "/v1/pong"), Some("api"));
        assert_eq!(name("api.example.com", "/v1"), Some("api"));
        assert_eq!(name("api.example.com", "/v10"), Some("wild"));
        assert_eq!(name("a.b.example.com", "/"), Some("wild"));
        assert_eq!(
            name("example.com", "/"),
            None,
            "wildcard does not match the apex"
        );
        assert_eq!(name("other.org", "/static/x.css"), Some("static"));
        assert_eq!(name("other.org", "/staticx"), None);
    }

    #[test]
    fn strip_prefix_rewrites_target() {
        let r =
            router("routes:\n- {match: {path_prefix: /api}, strip_prefix: true, upstream: a}\n");
        let route = r.get(0);
        assert_eq!(
            route.rewrite_target("/api/users?x=1").as_deref(),
            Some("/users?x=1")
        );
        assert_eq!(route.rewrite_target("/api").as_deref(), Some("/"));
        assert_eq!(route.rewrite_target("/api?q").as_deref(), Some("/?q"));
    }

    #[test]
    fn config_errors_name_their_route() {
        let raw = config::parse(
            "routes:\n- {match: {host: 'bad host'}, upstream: nope}\n- {match: {path_prefix: api}, strip_prefix: false, upstream: a}\n",
        )
        .unwrap();
        let mut errs = ConfigErrors::default();
        Router::build(
            &raw.routes,
            &HashMap::from([("a".into(), 0)]),
            None,
            None,
            &Geography::default(),
            &mut errs,
        );
        let text = errs.to_string();
        assert!(
            text.contains("routes[0].match.host: invalid host pattern"),
            "{text}"
        );
        assert!(
            text.contains("routes[0].upstream: no upstream named \"nope\""),
            "{text}"
        );
        assert!(
            text.contains("routes[1].match.path_prefix: must be a path"),
            "{text}"
        );
    }

    #[test]
    fn host_port_is_stripped() {
        assert_eq!(split_authority("example.com:8080").0, "example.com");
        assert_eq!(split_authority("[::1]:80").0, "[::1]");
        assert_eq!(split_authority("example.com.").0, "example.com");
        assert_eq!(split_authority("example.com.:443").0, "example.com");
        assert_eq!(split_authority("[::1").0, "[::1");
        assert_eq!(split_authority("user:pw@example.com:81").0, "example.com");
        assert_eq!(split_authority("a@b@[::1]:80").0, "[::1]");
        assert_eq!(split_authority("user@").0, "");
        assert_eq!(split_authority("example.com").0, "example.com");
        assert_eq!(split_authority("").0, "");
        assert_eq!(
            split_authority("example.com:8080"),
            ("example.com", Some(8080))
        );
        assert_eq!(split_authority("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_authority("[::1]"), ("[::1]", None));
        assert_eq!(split_authority("u:1@example.com"), ("example.com", None));
        assert_eq!(split_authority("example.com:"), ("example.com", None));
        assert_eq!(split_authority("example.com:99999"), ("example.com", None));
        assert_eq!(
            split_authority("example.com.:81"),
            ("example.com", Some(81))
        );
    }
}
