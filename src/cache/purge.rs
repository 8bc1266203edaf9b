//! Purges requested through the admin API: by URL, URL prefix or surrogate
//! key; hard (delete) or soft (mark stale, so revalidation and
//! stale-if-error still have the body).

use super::CacheRuntime;
use crate::metrics;
use pingora::cache::eviction::EvictionManager;
use pingora::cache::storage::PurgeTarget;
use pingora::cache::CacheEntryId;
use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// One URL, normalized by [`normalize_url`].
    Url(String),
    /// Every URL starting with this (normalized) prefix.
    Prefix(String),
    /// Every object whose `Surrogate-Key` lists this key.
    Tag(String),
}

/// `scheme://host:port/path?query` as the cache stores it: scheme defaults
/// to http, host lower-cased, default port made explicit, path defaults to `/`.
pub fn normalize_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|_| format!("not a URL: {text:?}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri
        .host()
        .ok_or_else(|| format!("URL without a host: {text:?}"))?
        .to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target = if target.is_empty() { "/" } else { target };
    Ok(format!("{scheme}://{host}:{port}{target}"))
}

/// Applies a purge to every tier; returns how many objects it touched
/// (an object on both tiers counts once).
pub fn purge(runtime: &CacheRuntime, selector: &Selector, soft: bool) -> usize {
    let pred = |tags: &super::memory::EntryTags| match selector {
        Selector::Url(u) => &*tags.url == u.as_str(),
        Selector::Prefix(p) => tags.url.starts_with(p.as_str()),
        Selector::Tag(t) => tags.surrogate_keys.iter().any(|k| &**k == t.as_str()),
    };
    let hits = runtime.memory.matching(pred);
    let mut on_disk: std::collections::HashSet<u128> = runtime
        .disk
        .map(|d| d.matching(pred).into_iter().collect())
        .unwrap_or_default();
    let now = SystemTime::now();
    let mut n = 0;
    for (slot, key) in hits {
        if on_disk.remove(&slot) {
            disk_purge(runtime, slot, soft);
        }
        if soft {
            if runtime.memory.expire_slot(slot, now).unwrap_or(false) {
                n += 1;
            }
        } else if let Some(id) = runtime.memory.remove_slot(slot) {
            runtime
                .eviction
                .remove(PurgeTarget::Active(&key).removed_entry(Some(CacheEntryId::new(id))));
            n += 1;
        }
    }
    for slot in on_disk {
        disk_purge(runtime, slot, soft);
        n += 1;
    }
    let kind = match (selector, soft) {
        (Selector::Url(_), false) => "url",
        (Selector::Prefix(_), false) => "prefix",
        (Selector::Tag(_), false) => "tag",
        (_, true) => "soft",
    };
    metrics::CACHE_PURGES
        .with_label_values(&[kind])
        .inc_by(n as u64);
    n
}

/// Deletes, or rewrites as expired, the disk copy of `slot`.
fn disk_purge(runtime: &CacheRuntime, slot: u128, soft: bool) {
    let Some(disk) = runtime.disk else { return };
    if !soft {
        disk.remove(slot);
        return;
    }
    super::tiered::rewrite_meta_on_disk(disk, slot, None, SystemTime::now());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_normalize_to_the_stored_form() {
        assert_eq!(
            normalize_url("http://Example.com/a?b=1").unwrap(),
            "http://example.com:80/a?b=1"
        );
        assert_eq!(
            normalize_url("https://example.com").unwrap(),
            "https://example.com:443/"
        );
        assert_eq!(
            normalize_url("http://example.com:8080/x").unwrap(),
            "http://example.com:8080/x"
        );
        assert!(normalize_url("/relative").is_err());
        assert!(normalize_url("not a url").is_err());
    }
}
