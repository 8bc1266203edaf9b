//! Whether and for how long a response may be stored: RFC 9111 §3 (storing),
//! §4.2 (freshness, age), RFC 5861 (stale-while-revalidate, stale-if-error)
//! and RFC 9213 (targeted fields such as `CDN-Cache-Control`).
//!
//! Pure: every input, including the clock, is a parameter.

use super::directives::{Directives, Seconds};
use http::header::{
    HeaderMap, HeaderName, AGE, AUTHORIZATION, CACHE_CONTROL, DATE, EXPIRES, LAST_MODIFIED, PRAGMA,
    SET_COOKIE, VARY,
};
use std::time::{Duration, SystemTime};

/// Route settings that bend the origin's word, each only when configured.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    /// Lifetime when the origin gave no freshness information at all.
    pub default_ttl: Option<Duration>,
    /// The `stale-if-error` window when the origin gave none (an operator's
    /// permission to serve stale, RFC 9111 §4.2.4); closed by the same
    /// directives that close the origin's.
    pub stale_if_error: Option<Duration>,
    /// Store for this long whatever the origin said (an explicit override).
    pub force_ttl: Option<Duration>,
    /// The targeted field this cache obeys ahead of `Cache-Control` (RFC 9213).
    pub targeted_field: Option<HeaderName>,
    /// Obey `Surrogate-Control` (after the targeted field, before
    /// `Cache-Control`), as the surrogate named [`SURROGATE_DEVICE`].
    pub surrogate_control: bool,
    pub set_cookie: SetCookie,
}

/// The device name this cache answers to in `Surrogate-Control` targets,
/// announced to origins in `Surrogate-Capability`.
pub const SURROGATE_DEVICE: &str = "parapet";

/// This cache's `Surrogate-Capability` entry (`device="capabilities"`).
pub const SURROGATE_CAPABILITY_VALUE: &str = "parapet=\"Surrogate/1.0\"";

/// What to do with a storable response that sets a cookie.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetCookie {
    /// Store it, cookie included (RFC 9111 §7.3: `Set-Cookie` does not
    /// inhibit caching; origins mark per-user responses `private`).
    #[default]
    Store,
    /// Store it without the `Set-Cookie` field; only the response that
    /// filled the cache carries the cookie.
    Strip,
    /// Do not store it unless it is marked `public` (Varnish's and nginx's
    /// default).
    Pass,
}

/// When the exchange happened, for age arithmetic (RFC 9111 §4.2.3).
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

/// A response that may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    /// `response_time - corrected_initial_age`: the instant the response was
    /// generated as far as this cache can tell; age is `now - epoch`.
    pub epoch: SystemTime,
    pub fresh_until: SystemTime,
    pub stale_while_revalidate: u32,
    pub stale_if_error: u32,
    /// Header fields not to store (`private="…"`, `no-cache="…"`).
    pub strip: Vec<String>,
}

/// Why a response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    Method,
    Status,
    NoStore,
    Private,
    Authorization,
    VaryStar,
    SetCookie,
    /// No freshness information and nothing to revalidate with.
    NoFreshness,
}

impl NotStored {
    pub fn as_str(self) -> &'static str {
        match self {
            NotStored::Method => "method",
            NotStored::Status => "status",
            NotStored::NoStore => "no-store",
            NotStored::Private => "private",
            NotStored::Authorization => "authorization",
            NotStored::VaryStar => "vary-star",
            NotStored::SetCookie => "set-cookie",
            NotStored::NoFreshness => "no-freshness",
        }
    }
}

/// Status codes a cache may store with heuristic freshness (RFC 9110 §15.1).
pub fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Status codes whose semantics (and caching rules) RFC 9110 §15 defines.
pub fn understood(status: u16) -> bool {
    matches!(status, 200..=206 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505)
}

fn header_time(headers: &HeaderMap, name: &HeaderName) -> Option<Result<SystemTime, ()>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    // Several differing values: invalid (treated as stale by the caller).
    if values.any(|v| v != first) {
        return Some(Err(()));
    }
    Some(
        first
            .to_str()
            .ok()
            .and_then(super::http_date::parse)
            .ok_or(()),
    )
}

/// The `Age` value in seconds: a list (on one line or several) counts by its
/// first member (RFC 9111 §5.1); anything but digits is ignored.
fn age_value(headers: &HeaderMap) -> u64 {
    headers
        .get(AGE)
        .and_then(|v| v.as_bytes().split(|b| *b == b',').next())
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
        .map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(2_147_483_648)
                .min(2_147_483_648)
        })
        .unwrap_or(0)
}

/// Request directives (`Cache-Control`, or `Pragma: no-cache` without it).
pub fn request_directives(req: &HeaderMap) -> Directives {
    Directives::parse(req.get_all(CACHE_CONTROL).iter().map(|v| v.as_bytes())).unwrap_or_else(
        || {
            let pragma_no_cache = req
                .get_all(PRAGMA)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"));
            Directives {
                no_cache: pragma_no_cache,
                ..Default::default()
            }
        },
    )
}

/// `Surrogate-Control`, for [`response_directives`] and to be removed
/// before a response leaves the edge.
pub const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// The directives the cache obeys: a valid targeted field replaces
/// `Cache-Control` and `Expires` entirely (RFC 9213 §2.2), and so does a
/// `Surrogate-Control` with directives for this cache; the flag says so.
pub fn response_directives(resp: &HeaderMap, policy: &RoutePolicy) -> (Directives, bool) {
    if let Some(field) = &policy.targeted_field {
        if let Some(d) =
            Directives::parse_targeted(resp.get_all(field).iter().map(|v| v.as_bytes()))
        {
            return (d, true);
        }
    }
    if policy.surrogate_control {
        let lines = resp.get_all(SURROGATE_CONTROL).iter().map(|v| v.as_bytes());
        if let Some(d) = Directives::parse_surrogate(lines, SURROGATE_DEVICE) {
            return (d, true);
        }
    }
    (
        Directives::parse(resp.get_all(CACHE_CONTROL).iter().map(|v| v.as_bytes()))
            .unwrap_or_default(),
        false,
    )
}

/// Decides whether a response to `method` may be stored, and its freshness.
pub fn evaluate(
    method: &http::Method,
    req: &HeaderMap,
    status: u16,
    resp: &HeaderMap,
    exchange: Exchange,
    policy: &RoutePolicy,
) -> Result<Storable, NotStored> {
    if method != http::Method::GET && method != http::Method::HEAD {
        return Err(NotStored::Method);
    }
    // Final, understood, and a complete representation.
    if !(200..=599).contains(&status) || status == 206 || status == 304 {
        return Err(NotStored::Status);
    }
    if let Some(ttl) = policy.force_ttl {
        return Ok(Storable {
            epoch: exchange.response_time,
            fresh_until: exchange.response_time + ttl,
            stale_while_revalidate: 0,
            stale_if_error: 0,
            strip: vec![SET_COOKIE.as_str().to_string()],
        });
    }
    let (cc, targeted) = response_directives(resp, policy);
    let req_cc = request_directives(req);
    // must-understand (RFC 9111 §5.2.2.3): store only statuses whose caching
    // rules this cache implements, and then no-store may be ignored.
    if cc.must_understand && !understood(status) {
        return Err(NotStored::Status);
    }
    if (cc.no_store && !cc.must_understand) || req_cc.no_store {
        return Err(NotStored::NoStore);
    }
    if cc.private && cc.private_fields.is_empty() {
        return Err(NotStored::Private);
    }
    if req.contains_key(AUTHORIZATION)
        && !(cc.public || cc.must_revalidate || cc.s_maxage.is_some())
    {
        return Err(NotStored::Authorization);
    }
    if resp.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|f| f.trim_ascii() == b"*")
    }) {
        return Err(NotStored::VaryStar);
    }
    let sets_cookie = resp.contains_key(SET_COOKIE);
    if sets_cookie && policy.set_cookie == SetCookie::Pass && !cc.public {
        return Err(NotStored::SetCookie);
    }

    // Freshness lifetime, RFC 9111 §4.2.1: s-maxage, max-age, Expires - Date.
    let explicit: Option<Duration> = match (cc.s_maxage, cc.max_age) {
        (Some(Seconds::Valid(s)), _) => Some(Duration::from_secs(s.into())),
        (Some(Seconds::Invalid), _) => Some(Duration::ZERO),
        (None, Some(Seconds::Valid(s))) => Some(Duration::from_secs(s.into())),
        (None, Some(Seconds::Invalid)) => Some(Duration::ZERO),
        (None, None) if !targeted => match header_time(resp, &EXPIRES) {
            Some(Ok(expires)) => {
                let date = match header_time(resp, &DATE) {
                    Some(Ok(d)) => d,
                    _ => exchange.response_time,
                };
                Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
            }
            Some(Err(())) => Some(Duration::ZERO),
            None => None,
        },
        (None, None) => None,
    };
    let lifetime = match explicit {
        Some(l) => l,
        None => match policy.default_ttl {
            Some(ttl) => ttl,
            None if heuristically_cacheable(status) || cc.public => heuristic(resp, exchange),
            None => return Err(NotStored::NoFreshness),
        },
    };
    let lifetime = if cc.no_cache && cc.no_cache_fields.is_empty() {
        Duration::ZERO
    } else {
        lifetime
    };
    // Stale on arrival and nothing to revalidate with: storing it would
    // only ever cost a lookup.
    let has_validator = resp.contains_key(http::header::ETAG) || resp.contains_key(LAST_MODIFIED);
    // Only now, with storing still possible: parsing `Date` is the dearest
    // step here, and most refusals (no-store, private) do not need it.
    let epoch = epoch(resp, exchange);
    let fresh_until = epoch.checked_add(lifetime).unwrap_or(epoch);
    if fresh_until <= exchange.response_time && !has_validator {
        return Err(NotStored::NoFreshness);
    }
    // RFC 9111 §5.2.2: must-revalidate / proxy-revalidate / s-maxage (shared)
    // and no-cache forbid serving stale without validation.
    let no_stale =
        cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some() || cc.no_cache;
    let stale = |s: Option<Seconds>| match s {
        Some(Seconds::Valid(n)) if !no_stale => n,
        _ => 0,
    };
    let mut strip = cc.private_fields.clone();
    strip.extend(cc.no_cache_fields.iter().cloned());
    if sets_cookie && policy.set_cookie == SetCookie::Strip {
        strip.push(SET_COOKIE.as_str().to_string());
    }
    Ok(Storable {
        epoch,
        fresh_until,
        stale_while_revalidate: stale(cc.stale_while_revalidate),
        stale_if_error: stale(
            cc.stale_if_error.or(policy
                .stale_if_error
                .map(|d| Seconds::Valid(d.as_secs().min(u64::from(u32::MAX)) as u32))),
        ),
        strip,
    })
}

/// `response_time - corrected_initial_age` (RFC 9111 §4.2.3).
pub fn epoch(resp: &HeaderMap, exchange: Exchange) -> SystemTime {
    let apparent_age = match header_time(resp, &DATE) {
        Some(Ok(date)) => exchange
            .response_time
            .duration_since(date)
            .unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    };
    let response_delay = exchange
        .response_time
        .duration_since(exchange.request_time)
        .unwrap_or(Duration::ZERO);
    let corrected_age_value = Duration::from_secs(age_value(resp)) + response_delay;
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    // Never before 1970: stored metas cannot encode earlier times.
    exchange
        .response_time
        .checked_sub(corrected_initial_age)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// 10% of the time since Last-Modified, at most a day (RFC 9111 §4.2.2).
fn heuristic(resp: &HeaderMap, exchange: Exchange) -> Duration {
    let Some(Ok(last_modified)) = header_time(resp, &LAST_MODIFIED) else {
        return Duration::ZERO;
    };
    let date = match header_time(resp, &DATE) {
        Some(Ok(d)) => d,
        _ => exchange.response_time,
    };
    (date.duration_since(last_modified).unwrap_or(Duration::ZERO) / 10)
        .min(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests;
