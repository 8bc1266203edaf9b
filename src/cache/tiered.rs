//! The `Storage` pingora-cache sees: the memory tier in front of the disk
//! tier (when configured).
//!
//! * lookup: memory first; on a memory miss the disk object is read on a
//!   blocking thread, verified, promoted into memory (through the eviction
//!   manager, so the memory budget holds) and served from there;
//! * fill: written to memory; once committed, also written to disk in the
//!   background (a failing disk only logs and counts: requests go on);
//! * memory evictions leave the disk copy; invalidations, purges, soft purges
//!   and 304 updates reach both tiers.
//!
//! The tiers are private to this type: everything that removes or expires an
//! object ([`Tiered::invalidate`], [`Tiered::purge_matching`], pingora-cache's
//! own `purge`/`expire`/`update_meta`) goes through it, so no caller can
//! remove a memory copy and leave the disk copy behind.

use super::disk::{DiskObject, DiskTier};
use super::memory::{EntryTags, MemoryTier};
use super::purge::Selector;
use async_trait::async_trait;
use bytes::Bytes;
use pingora::cache::eviction::lru::Manager as LruManager;
use pingora::cache::eviction::EvictionManager;
use pingora::cache::key::{CacheHashKey, CacheKey, CompactCacheKey};
use pingora::cache::storage::{
    HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget, PurgeType,
};
use pingora::cache::trace::{Span, SpanHandle};
use pingora::cache::{CacheEntryId, CacheEntryKey, CacheMeta, Storage};
use pingora::http::ResponseHeader;
use pingora::Result;
use std::any::Any;
use std::time::SystemTime;

pub(crate) struct Tiered {
    memory: &'static MemoryTier,
    disk: Option<&'static DiskTier>,
    eviction: &'static LruManager<16>,
    /// While set, lookups do not read the disk tier (a fleet node catching
    /// up on purges it missed while down).
    disk_held: std::sync::atomic::AtomicBool,
}

fn slot(key: &impl CacheHashKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

impl Tiered {
    pub(crate) fn new(
        memory: &'static MemoryTier,
        disk: Option<&'static DiskTier>,
        eviction: &'static LruManager<16>,
    ) -> Tiered {
        Tiered {
            memory,
            disk,
            eviction,
            disk_held: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Removes the object stored under `key` from every tier and from the
    /// eviction manager (invalidation after an unsafe method, RFC 9111 §4.4).
    /// Whether anything was removed.
    pub(crate) async fn invalidate(&'static self, key: &CompactCacheKey) -> bool {
        let span = Span::inactive().handle();
        match self
            .purge(PurgeTarget::Active(key), PurgeType::Invalidation, &span)
            .await
        {
            Ok(PurgeOutcome::Purged(id)) => {
                if id.is_some() {
                    self.eviction
                        .remove(PurgeTarget::Active(key).removed_entry(id));
                }
                true
            }
            Ok(_) => false,
            Err(e) => {
                log::warn!("cache invalidation failed: {e}");
                false
            }
        }
    }

    /// Applies an admin purge to every tier; how many objects it touched (an
    /// object on both tiers counts once). Hard purges delete; soft ones mark
    /// the object stale, so revalidation and stale-if-error keep the body.
    /// Blocking (disk I/O): call from a thread that may block.
    pub(crate) fn purge_matching(&self, selector: &Selector, soft: bool) -> usize {
        let pred = |tags: &EntryTags| selector.matches(tags);
        let hits = self.memory.matching(pred);
        let mut on_disk: std::collections::HashSet<u128> = self
            .disk
            .map(|d| d.matching(pred).into_iter().collect())
            .unwrap_or_default();
        let now = SystemTime::now();
        let mut n = 0;
        for (slot, key) in hits {
            if on_disk.remove(&slot) {
                self.purge_disk_copy(slot, soft, now);
            }
            if soft {
                if self.memory.expire_slot(slot, now).unwrap_or(false) {
                    n += 1;
                }
            } else if let Some(id) = self.memory.remove_slot(slot) {
                self.eviction
                    .remove(PurgeTarget::Active(&key).removed_entry(Some(CacheEntryId::new(id))));
                n += 1;
            }
        }
        for slot in on_disk {
            self.purge_disk_copy(slot, soft, now);
            n += 1;
        }
        n
    }

    /// Deletes, or rewrites as expired, the disk copy of `slot`. Blocking.
    fn purge_disk_copy(&self, slot: u128, soft: bool, now: SystemTime) {
        let Some(disk) = self.disk else { return };
        if soft {
            rewrite_meta_on_disk(disk, slot, None, now);
        } else {
            disk.remove(slot);
        }
    }

    /// Reads `slot` from disk and promotes it into memory.
    /// A fresh object in the memory tier ([`MemoryTier::fresh_hit`]).
    pub(crate) fn fresh_memory_hit(
        &self,
        key: &pingora::cache::key::CacheKey,
        now: SystemTime,
        prepare: Option<&dyn Fn(&ResponseHeader) -> ResponseHeader>,
    ) -> Option<super::memory::FreshHit> {
        self.memory.fresh_hit(key, now, prepare)
    }

    /// Keeps lookups off the disk tier (`true`) or lets them read it.
    pub(crate) fn hold_disk(&self, held: bool) {
        self.disk_held
            .store(held, std::sync::atomic::Ordering::Release);
    }

    async fn promote(&'static self, key: &CacheKey, trace: &SpanHandle) -> Result<bool> {
        let Some(disk) = self.disk else {
            return Ok(false);
        };
        if self.disk_held.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(false);
        }
        let slot = slot(key);
        if !disk.contains(slot) {
            return Ok(false);
        }
        let obj = tokio::task::spawn_blocking(move || disk.read(slot))
            .await
            .ok()
            .flatten();
        let Some(obj) = obj else { return Ok(false) };
        let meta = CacheMeta::deserialize(&obj.internal, &obj.header)?;
        let tags = EntryTags {
            key: key.to_compact(),
            url: obj.url.into(),
            surrogate_keys: obj.surrogate_keys.into_iter().map(Box::from).collect(),
        };
        let (id, weight) = self
            .memory
            .insert_complete(slot, obj.internal, &meta, obj.body, tags);
        let victims = self.eviction.admit(
            CacheEntryKey::identified(key.to_compact(), CacheEntryId::new(id)),
            weight,
            meta.fresh_until(),
        );
        for victim in victims {
            self.memory
                .purge(PurgeTarget::Exact(&victim), PurgeType::Eviction, trace)
                .await?;
        }
        Ok(true)
    }

    /// Rewrites the disk copy with a new meta (soft purge, 304 update).
    fn rewrite_disk_meta(&'static self, slot: u128, meta: Option<&CacheMeta>) {
        let Some(disk) = self.disk else { return };
        let new = meta.and_then(|m| m.serialize().ok());
        tokio::task::spawn_blocking(move || {
            rewrite_meta_on_disk(disk, slot, new, SystemTime::now())
        });
    }
}

/// Rewrites the disk copy of `slot` with a new serialized meta, or, given
/// `None`, with its stored meta expired at `now` (soft purge). Blocking.
fn rewrite_meta_on_disk(
    disk: &DiskTier,
    slot: u128,
    new: Option<(Vec<u8>, Vec<u8>)>,
    now: SystemTime,
) {
    let Some(mut obj) = disk.read(slot) else {
        return;
    };
    let pair = new.or_else(|| {
        let mut meta = CacheMeta::deserialize(&obj.internal, &obj.header).ok()?;
        meta.expire_at(now);
        meta.serialize().ok()
    });
    if let Some((internal, header)) = pair {
        obj.internal = internal;
        obj.header = header;
        disk.write(slot, &obj);
    }
}

#[async_trait]
impl Storage for Tiered {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        if let Some(hit) = self.memory.lookup(key, trace).await? {
            return Ok(Some(hit));
        }
        if self.promote(key, trace).await? {
            return self.memory.lookup(key, trace).await;
        }
        Ok(None)
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let inner = self.memory.get_miss_handler(key, meta, trace).await?;
        let disk = match self.disk {
            Some(disk) => {
                let (internal, header) = meta.serialize()?;
                Some(PendingDisk {
                    disk,
                    slot: slot(key),
                    internal,
                    header,
                    url: key.user_tag.clone(),
                    surrogate_keys: super::memory::surrogate_keys(meta.response_header())
                        .iter()
                        .map(|k| k.to_string())
                        .collect(),
                    chunks: Vec::new(),
                })
            }
            None => None,
        };
        Ok(Box::new(TieredMiss { inner, disk }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let outcome = self.memory.purge(target, purge_type, trace).await?;
        if let (Some(disk), PurgeType::Invalidation) = (self.disk, purge_type) {
            let slot = slot(target.key());
            let removed = tokio::task::spawn_blocking(move || disk.remove(slot))
                .await
                .unwrap_or(false);
            if removed && outcome == PurgeOutcome::NotFound {
                return Ok(PurgeOutcome::Purged(None));
            }
        }
        Ok(outcome)
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let outcome = self.memory.expire(target, trace).await?;
        self.rewrite_disk_meta(slot(target.key()), None);
        Ok(outcome)
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        trace: &SpanHandle,
    ) -> Result<bool> {
        let updated = self.memory.update_meta(key, meta, trace).await?;
        self.rewrite_disk_meta(slot(key), Some(meta));
        Ok(updated)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

/// What the disk copy of a fill needs once the fill commits.
struct PendingDisk {
    disk: &'static DiskTier,
    slot: u128,
    internal: Vec<u8>,
    header: Vec<u8>,
    url: String,
    surrogate_keys: Vec<String>,
    chunks: Vec<Bytes>,
}

struct TieredMiss {
    inner: MissHandler,
    disk: Option<PendingDisk>,
}

#[async_trait]
impl HandleMiss for TieredMiss {
    async fn write_body(&mut self, data: Bytes, eof: bool) -> Result<()> {
        if let Some(d) = &mut self.disk {
            d.chunks.push(data.clone());
        }
        self.inner.write_body(data, eof).await
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        let TieredMiss { inner, disk } = *self;
        // The memory tier checks completeness and size; only then does disk get it.
        let done = inner.finish().await?;
        if let Some(d) = disk {
            let body: Bytes = match d.chunks.len() {
                1 => d.chunks[0].clone(),
                _ => d.chunks.concat().into(),
            };
            let obj = DiskObject {
                internal: d.internal,
                header: d.header,
                url: d.url,
                surrogate_keys: d.surrogate_keys,
                body,
            };
            let (disk, slot) = (d.disk, d.slot);
            tokio::task::spawn_blocking(move || disk.write(slot, &obj));
        }
        Ok(done)
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        self.inner.entry_id()
    }
}
