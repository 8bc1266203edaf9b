//! The edge cache: policy (pure, RFC 9111), keys, the memory storage tier,
//! and the glue the proxy hooks call.
//!
//! | hook                     | what the cache does                                     |
//! |--------------------------|---------------------------------------------------------|
//! | `request_cache_filter`   | enable for GET/HEAD on caching routes                   |
//! | `cache_key_callback`     | [`key::primary`]: scheme, host, port, target, tweaks    |
//! | `cache_hit_filter`       | request `no-cache`, `max-age`, `min-fresh`              |
//! | `proxy_upstream_filter`  | `only-if-cached` → 504                                  |
//! | `response_cache_filter`  | [`policy::evaluate`] → `CacheMeta` with RFC ages         |
//! | `cache_vary_filter`      | [`key::variance`]                                       |
//! | `should_serve_stale`     | stale-while-revalidate, stale-if-error windows          |
//! | `response_filter`        | `Cache-Status` ([`status`]); invalidation after unsafe methods |
//! | `logging`                | metrics                                                 |

pub mod directives;
mod disk;
mod head_room;
pub(crate) mod http_date;
pub mod key;
mod memory;
mod meta_fields;
pub mod policy;
pub(crate) mod purge;
pub(crate) mod purge_log;
mod sf_dictionary;
pub(crate) mod status;

pub(crate) use status::NAME;
mod tiered;

use crate::config::units::{parse_positive_duration, parse_size};
use crate::config::{CacheConfig, ConfigErrors, RouteCacheConfig};
use http::header::HeaderName;
use memory::MemoryTier;
use pingora::cache::eviction::lru::Manager as LruManager;
use pingora::cache::key::CacheKey;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::{CacheOptionOverrides, HttpCache};
use pingora::http::ResponseHeader;
use policy::{RoutePolicy, SetCookie};
use std::path::PathBuf;
use std::time::Duration;
use tiered::Tiered;

/// Validated cache settings (storage), from the `cache:` section.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub memory_max: usize,
    /// Disk tier directory and byte budget.
    pub disk: Option<(PathBuf, u64)>,
    pub max_object: usize,
    pub lock_timeout: Duration,
}

/// A route's cache policy: freshness overrides and key tweaks.
#[derive(Debug, Clone)]
pub struct RouteCache {
    pub policy: RoutePolicy,
    pub key: key::KeyPolicy,
    /// `fleet: shard`: the object's owner on the fleet's ring serves it.
    pub(crate) shard: Option<Shard>,
    /// `parent: POOL`: misses go to a shield node of that pool.
    pub(crate) parent: Option<Parent>,
}

/// How a sharded route treats objects another node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    /// `also_local`: keep a copy here too (`owner_only`: the owner's is the
    /// fleet's one copy).
    pub(crate) also_local: bool,
}

/// A route's shield tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parent {
    /// Index of the shield pool in [`crate::upstream::Pools`].
    pub(crate) pool: usize,
    /// When every parent is down: go to the origin (`true`) or answer 502.
    pub(crate) fallback_to_origin: bool,
}

impl CacheSettings {
    pub fn build(cfg: Option<&CacheConfig>, errs: &mut ConfigErrors) -> CacheSettings {
        let default = CacheConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let size = |path: &str, text: Option<&str>, dflt: usize, errs: &mut ConfigErrors| match text
        {
            None => dflt,
            Some(t) => match parse_size(t) {
                Ok(n) if n > 0 => n as usize,
                Ok(_) => {
                    errs.push(path, "must be greater than zero");
                    dflt
                }
                Err(e) => {
                    errs.push(path, e);
                    dflt
                }
            },
        };
        let memory_max = size(
            "cache.memory.max_size",
            cfg.memory.as_ref().map(|m| m.max_size.as_str()),
            256 << 20,
            errs,
        );
        let max_object = size(
            "cache.max_object_size",
            cfg.max_object_size.as_deref(),
            16 << 20,
            errs,
        );
        let disk = cfg.disk.as_ref().map(|d| {
            if d.path.is_empty() {
                errs.push("cache.disk.path", "must not be empty");
            }
            let max = size("cache.disk.max_size", Some(&d.max_size), 1 << 30, errs);
            (PathBuf::from(&d.path), max as u64)
        });
        let lock_timeout = parse_positive_duration(&cfg.lock_timeout).unwrap_or_else(|e| {
            errs.push("cache.lock_timeout", e);
            Duration::from_secs(5)
        });
        CacheSettings {
            memory_max,
            disk,
            max_object,
            lock_timeout,
        }
    }
}

impl RouteCache {
    /// The route's policy: its own `cache:` over `cache.defaults`, or `None`
    /// when caching is off for the route.
    pub(crate) fn build(
        route: Option<&RouteCacheConfig>,
        cache: Option<&CacheConfig>,
        path: &str,
        pools: &std::collections::HashMap<String, usize>,
        errs: &mut ConfigErrors,
    ) -> Option<RouteCache> {
        let defaults = cache.map(|c| &c.defaults);
        let pick = |f: fn(&RouteCacheConfig) -> Option<&str>| {
            route.and_then(f).or_else(|| defaults.and_then(f))
        };
        let enabled = route
            .and_then(|r| r.enabled)
            .or_else(|| defaults.and_then(|d| d.enabled))
            .unwrap_or(false);
        let mut duration = |key: &str, text: Option<&str>| {
            text.and_then(|t| {
                parse_positive_duration(t)
                    .map_err(|e| errs.push(format!("{path}.{key}"), e))
                    .ok()
            })
        };
        let default_ttl = duration("default_ttl", pick(|c| c.default_ttl.as_deref()));
        let stale_if_error = duration("stale_if_error", pick(|c| c.stale_if_error.as_deref()));
        let force_ttl = duration("force_ttl", pick(|c| c.force_ttl.as_deref()));
        let key_cfg = route
            .and_then(|r| r.key.as_ref())
            .or_else(|| defaults.and_then(|d| d.key.as_ref()));
        let mut key = key::KeyPolicy::default();
        if let Some(k) = key_cfg {
            key.ignore_query = k.ignore_query;
            key.cookies = k.cookies.clone();
            for (i, h) in k.headers.iter().enumerate() {
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(n) => key.headers.push(n),
                    Err(_) => errs.push(
                        format!("{path}.key.headers[{i}]"),
                        format!("invalid header name {h:?}"),
                    ),
                }
            }
        }
        let targeted = cache.map_or("CDN-Cache-Control", |c| c.targeted_field.as_str());
        let targeted_field = if targeted.is_empty() {
            None
        } else {
            HeaderName::from_bytes(targeted.as_bytes())
                .map_err(|_| {
                    errs.push(
                        "cache.targeted_field",
                        format!("invalid header name {targeted:?}"),
                    )
                })
                .ok()
        };
        let set_cookie = match pick(|c| c.set_cookie.as_deref()) {
            None | Some("store") => SetCookie::Store,
            Some("strip") => SetCookie::Strip,
            Some("pass") => SetCookie::Pass,
            Some(other) => {
                let at = if route.and_then(|r| r.set_cookie.as_deref()).is_some() {
                    format!("{path}.set_cookie")
                } else {
                    "cache.defaults.set_cookie".to_string()
                };
                errs.push(at, format!("must be store, strip or pass, not {other:?}"));
                SetCookie::Store
            }
        };
        let shard = match route.and_then(|r| r.fleet.as_deref()) {
            None => None,
            Some("shard") => Some(Shard {
                also_local: match route.and_then(|r| r.fleet_copy.as_deref()) {
                    None | Some("owner_only") => false,
                    Some("also_local") => true,
                    Some(other) => {
                        errs.push(
                            format!("{path}.fleet_copy"),
                            format!("must be owner_only or also_local, not {other:?}"),
                        );
                        false
                    }
                },
            }),
            Some(other) => {
                errs.push(
                    format!("{path}.fleet"),
                    format!("must be shard, not {other:?}"),
                );
                None
            }
        };
        if shard.is_none() && route.is_some_and(|r| r.fleet_copy.is_some()) {
            errs.push(format!("{path}.fleet_copy"), "only used with fleet: shard");
        }
        let parent = route.and_then(|r| r.parent.as_deref()).and_then(|name| {
            let fallback_to_origin = match route.and_then(|r| r.parent_fallback.as_deref()) {
                None | Some("origin") => true,
                Some("error") => false,
                Some(other) => {
                    errs.push(
                        format!("{path}.parent_fallback"),
                        format!("must be origin or error, not {other:?}"),
                    );
                    true
                }
            };
            match pools.get(name) {
                Some(&pool) => Some(Parent {
                    pool,
                    fallback_to_origin,
                }),
                None => {
                    errs.push(
                        format!("{path}.parent"),
                        format!("no upstream named {name:?}"),
                    );
                    None
                }
            }
        });
        if parent.is_none() && route.is_some_and(|r| r.parent_fallback.is_some()) {
            errs.push(format!("{path}.parent_fallback"), "only used with parent");
        }
        enabled.then_some(RouteCache {
            shard,
            parent,
            policy: RoutePolicy {
                default_ttl,
                stale_if_error,
                force_ttl,
                targeted_field,
                surrogate_control: cache.is_none_or(|c| c.surrogate_control),
                set_cookie,
            },
            key,
        })
    }
}

/// The process-wide cache, and the one API every caller uses: turn it on
/// for a request, invalidate keys, purge by selector. Its storage reaches
/// every tier; no caller sees a tier on its own.
pub(crate) struct CacheRuntime {
    /// Remembers keys whose responses were not storable, so that later
    /// requests for them skip the lookup and the cache lock (hit-for-pass):
    /// without it, concurrent requests for a hot `no-store` URL queue behind
    /// one another on the lock.
    predictor: &'static pingora::cache::predictor::Predictor<16>,
    /// What pingora-cache uses: memory in front of disk.
    storage: &'static Tiered,
    eviction: &'static LruManager<16>,
    lock: &'static CacheKeyLockImpl,
    settings: CacheSettings,
    /// Purges applied here, for fleet peers that missed them.
    purges: purge_log::PurgeLog,
}

impl CacheRuntime {
    /// Creates the storage once per process (leaked: it lives as long as the
    /// process, as pingora-cache requires).
    pub(crate) fn start(settings: CacheSettings) -> &'static CacheRuntime {
        let memory = Box::leak(Box::new(MemoryTier::new(settings.max_object)));
        // Capacity hint: objects of ~8 KiB on average.
        let eviction = Box::leak(Box::new(LruManager::<16>::with_capacity(
            settings.memory_max,
            (settings.memory_max / 8192).clamp(1024, 1 << 20),
        )));
        let lock: &'static CacheKeyLockImpl =
            Box::leak(CacheLock::new_boxed(settings.lock_timeout));
        let disk =
            settings
                .disk
                .as_ref()
                .and_then(|(path, max)| match disk::DiskTier::open(path, *max) {
                    Ok(d) => Some(&*Box::leak(Box::new(d))),
                    Err(e) => {
                        crate::metrics::CACHE_DISK_ERRORS
                            .with_label_values(&["open"])
                            .inc();
                        log::error!(
                            "cache disk tier at {} unusable ({e}); caching in memory only",
                            path.display()
                        );
                        None
                    }
                });
        let predictor = Box::leak(Box::new(pingora::cache::predictor::Predictor::<16>::new(
            4096, None,
        )));
        let storage = Box::leak(Box::new(Tiered::new(memory, disk, eviction)));
        // Kept on disk beside the objects it concerns, when the disk tier opened.
        let purges =
            purge_log::PurgeLog::open(disk.and(settings.disk.as_ref()).map(|(p, _)| p.clone()));
        Box::leak(Box::new(CacheRuntime {
            predictor,
            storage,
            eviction,
            lock,
            settings,
            purges,
        }))
    }

    /// Turns the cache on for this request.
    pub(crate) fn enable(&'static self, cache: &mut HttpCache) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.settings.lock_timeout);
        cache.enable(
            self.storage,
            Some(self.eviction),
            Some(self.predictor),
            Some(self.lock),
            Some(overrides),
        );
    }

    /// A fresh object of the memory tier stored under `key` without `Vary`,
    /// counted as an access by the eviction manager as pingora-cache counts
    /// a hit: the fast path for plain hits (`proxy::fast_hit`).
    /// `prepare` makes the head hits are answered with from the stored one,
    /// once per stored object; without it, hits get the stored head.
    pub(crate) fn fresh_hit(
        &self,
        key: &CacheKey,
        prepare: Option<&dyn Fn(&ResponseHeader) -> ResponseHeader>,
    ) -> Option<memory::FreshHit> {
        use pingora::cache::eviction::{CacheEntryKey, EvictionManager};
        let hit = self
            .storage
            .fresh_memory_hit(key, std::time::SystemTime::now(), prepare)?;
        let entry = CacheEntryKey::from_entry_id(
            key.to_compact(),
            Some(pingora::cache::CacheEntryId::new(hit.id)),
        );
        self.eviction.access(&entry, hit.weight, hit.fresh_until);
        Some(hit)
    }

    /// The largest body the cache stores (`cache.max_object_size`).
    pub(crate) fn max_object(&self) -> usize {
        self.settings.max_object
    }

    /// Removes the object stored under `key` from every tier (invalidation
    /// after a successful unsafe request, RFC 9111 §4.4).
    pub(crate) async fn invalidate(&'static self, key: &CacheKey) -> bool {
        self.storage.invalidate(&key.to_compact()).await
    }

    /// Whether this cache has a disk tier (objects that outlive the process).
    pub(crate) fn has_disk(&self) -> bool {
        self.settings.disk.is_some()
    }

    /// Keeps lookups off the disk tier until [`CacheRuntime::release_disk`]:
    /// a fleet node catches up on the purges it missed first.
    pub(crate) fn hold_disk(&self) {
        self.storage.hold_disk(true);
    }

    pub(crate) fn release_disk(&self) {
        self.storage.hold_disk(false);
    }

    /// The purge log (see [`purge_log`]).
    pub(crate) fn purges(&self) -> &purge_log::PurgeLog {
        &self.purges
    }

    /// Applies a purge given as the admin API's query (`url=`, `prefix=`,
    /// `tag=`, `soft=1`) and records it in the purge log; how many objects
    /// it touched. Disk work runs on a blocking thread.
    pub(crate) async fn purge_query(&'static self, query: &str) -> Result<usize, String> {
        let (selector, soft) = purge::parse_query(query)?;
        let recorded = query.to_string();
        let n = tokio::task::spawn_blocking(move || {
            let n = self.purge(&selector, soft);
            self.purges.record(&recorded);
            n
        })
        .await
        .map_err(|e| format!("purge failed: {e}"))?;
        log::info!("purge {query:?}: {n} object(s)");
        Ok(n)
    }

    /// An admin purge over every tier; how many objects it touched. Blocking
    /// (disk I/O).
    pub(crate) fn purge(&self, selector: &purge::Selector, soft: bool) -> usize {
        let n = self.storage.purge_matching(selector, soft);
        crate::metrics::CACHE_PURGES
            .with_label_values(&[selector.metric_label(soft)])
            .inc_by(n as u64);
        n
    }
}
