//! The memory tier: a sharded, byte-bounded `Storage` for pingora-cache.
//!
//! * 64 shards, each a `RwLock<HashMap>` keyed by the entry's combined key
//!   hash, so concurrent hits on different objects never share a lock.
//! * Entries are immutable `Arc`s; a hit clones the `Arc` and hands out the
//!   body as `Bytes` slices: no copy per hit.
//! * A fill is invisible until `HandleMiss::finish`, which also checks the
//!   byte count against `Content-Length`: a truncated body is never stored.
//!   A fill larger than the object limit is dropped and the response streams
//!   through uncached.
//! * Eviction is pingora-cache's sharded LRU manager, weighted by bytes; it
//!   hands victims back to `purge`, which only removes the exact generation
//!   (entry id) that was admitted.

use super::meta_fields::MetaFields;
use crate::metrics;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::{CacheHashKey, CacheKey, CompactCacheKey};
use pingora::cache::storage::{
    HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler, PurgeOutcome, PurgeTarget,
    PurgeType,
};
use pingora::cache::trace::SpanHandle;
#[cfg(test)]
use pingora::cache::CacheEntryKey;
use pingora::cache::{CacheEntryId, CacheMeta, Storage};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::SystemTime;

const SHARDS: usize = 64;
/// Bookkeeping bytes counted per entry on top of body and headers.
const ENTRY_OVERHEAD: usize = 256;

/// What purges need to know about a stored object besides its key.
#[derive(Debug, Default, Clone)]
pub(crate) struct EntryTags {
    /// The key as the eviction manager knows it.
    pub key: CompactCacheKey,
    /// The URL the entry was stored for (`scheme://host:port/path?query`).
    pub url: Box<str>,
    /// `Surrogate-Key` values.
    pub surrogate_keys: Box<[Box<str>]>,
}

struct Entry {
    id: u64,
    /// `CacheMeta` internals (msgpack), the stable serialized form.
    internal: Vec<u8>,
    /// The same, unpacked, when a hit can rebuild the meta from them.
    fields: Option<MetaFields>,
    header: ResponseHeader,
    /// `header` as the fast path prepares it for its hits, made at the
    /// first of them ([`MemoryTier::fresh_hit`]).
    prepared: OnceLock<ResponseHeader>,
    body: Bytes,
    weight: usize,
    tags: EntryTags,
}

type Shard = RwLock<HashMap<u128, Arc<Entry>>>;

/// What [`MemoryTier::fresh_hit`] found.
pub(crate) struct FreshHit {
    /// The stored head, as `CacheMeta::response_header_copy` gives it, after
    /// the caller's `prepare`.
    pub header: ResponseHeader,
    pub body: Bytes,
    pub fresh_until: SystemTime,
    /// As `CacheMeta::age`.
    pub age: std::time::Duration,
    /// For the eviction manager, as a `HitHandler` would report them.
    pub id: u64,
    pub weight: usize,
}

pub(super) struct MemoryTier {
    shards: Box<[Shard]>,
    next_id: AtomicU64,
    bytes: AtomicUsize,
    max_object: usize,
}

/// A serialized minimal header: hits rebuild `CacheMeta` from the stored
/// internals plus this, then put the stored `ResponseHeader` in, which skips
/// decompressing and parsing the full header on every hit.
static TINY_HEADER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let header = ResponseHeader::build(200, Some(0)).expect("static status");
    let now = SystemTime::now();
    CacheMeta::new(now, now, 0, 0, header)
        .serialize()
        .map(|(_, h)| h)
        .unwrap_or_default()
});

fn slot(key: &impl CacheHashKey) -> u128 {
    u128::from_be_bytes(key.combined_bin())
}

/// What an entry's head weighs: twice its fields, for the stored head and
/// the copy the fast path prepares from it (counted from the start, so an
/// entry's weight never changes under the eviction manager).
fn head_weight(h: &ResponseHeader) -> usize {
    2 * h
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 32)
        .sum::<usize>()
}

impl MemoryTier {
    pub(super) fn new(max_object: usize) -> MemoryTier {
        LazyLock::force(&TINY_HEADER);
        MemoryTier {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(1),
            bytes: AtomicUsize::new(0),
            max_object,
        }
    }

    fn shard(&self, slot: u128) -> &Shard {
        &self.shards[(slot as usize) % SHARDS]
    }

    fn account_insert(&self, new: &Entry, old: Option<Arc<Entry>>) {
        self.bytes.fetch_add(new.weight, Ordering::Relaxed);
        metrics::CACHE_STORED_BYTES
            .with_label_values(&["memory"])
            .add(new.weight as i64);
        match old {
            Some(old) => {
                self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
                metrics::CACHE_STORED_BYTES
                    .with_label_values(&["memory"])
                    .sub(old.weight as i64);
            }
            None => metrics::CACHE_STORED_OBJECTS
                .with_label_values(&["memory"])
                .inc(),
        }
    }

    fn account_remove(&self, old: &Entry) {
        self.bytes.fetch_sub(old.weight, Ordering::Relaxed);
        metrics::CACHE_STORED_BYTES
            .with_label_values(&["memory"])
            .sub(old.weight as i64);
        metrics::CACHE_STORED_OBJECTS
            .with_label_values(&["memory"])
            .dec();
    }

    fn meta_of(entry: &Entry) -> Result<CacheMeta> {
        if let Some(fields) = &entry.fields {
            return Ok(fields.rebuild(entry.header.clone()));
        }
        let mut meta = CacheMeta::deserialize(&entry.internal, &TINY_HEADER)?;
        *meta.response_header_mut() = entry.header.clone();
        Ok(meta)
    }

    /// Replaces an entry's meta, keeping its body; `false` if it is gone.
    fn replace_meta(&self, slot: u128, meta: &CacheMeta) -> Result<bool> {
        let (internal, _) = meta.serialize()?;
        let mut shard = self.shard(slot).write().map_err(|_| poisoned())?;
        let Some(old) = shard.get(&slot).cloned() else {
            return Ok(false);
        };
        let header = super::head_room::with_room(meta.response_header());
        let weight = old.body.len() + internal.len() + head_weight(&header) + ENTRY_OVERHEAD;
        let new = Entry {
            id: old.id,
            internal,
            fields: MetaFields::of(meta),
            header,
            prepared: OnceLock::new(),
            body: old.body.clone(),
            weight,
            tags: old.tags.clone(),
        };
        self.account_insert(&new, Some(old));
        shard.insert(slot, Arc::new(new));
        Ok(true)
    }

    /// Every stored entry whose tags match `pred` (slot, eviction key), for
    /// purges by URL, prefix or surrogate key. A scan: purges are rare.
    pub(super) fn matching(
        &self,
        pred: impl Fn(&EntryTags) -> bool,
    ) -> Vec<(u128, CompactCacheKey)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            if let Ok(map) = shard.read() {
                out.extend(
                    map.iter()
                        .filter(|(_, e)| pred(&e.tags))
                        .map(|(k, e)| (*k, e.tags.key.clone())),
                );
            }
        }
        out
    }

    /// Removes by slot (admin purges); the removed entry's id, if any.
    pub(super) fn remove_slot(&self, slot: u128) -> Option<u64> {
        let removed = self
            .shard(slot)
            .write()
            .ok()
            .and_then(|mut m| m.remove(&slot));
        if let Some(old) = &removed {
            self.account_remove(old);
        }
        removed.map(|e| e.id)
    }

    /// Stores a complete object read from a lower tier (promotion): `meta`
    /// decoded from `internal` by the caller; returns the entry id and weight
    /// for the eviction manager.
    pub(super) fn insert_complete(
        &self,
        slot: u128,
        internal: Vec<u8>,
        meta: &CacheMeta,
        body: Bytes,
        tags: EntryTags,
    ) -> (u64, usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let header = super::head_room::with_room(meta.response_header());
        let weight = body.len() + internal.len() + head_weight(&header) + ENTRY_OVERHEAD;
        let entry = Arc::new(Entry {
            id,
            internal,
            fields: MetaFields::of(meta),
            header,
            prepared: OnceLock::new(),
            body,
            weight,
            tags,
        });
        if let Ok(mut shard) = self.shard(slot).write() {
            let old = shard.insert(slot, entry.clone());
            drop(shard);
            self.account_insert(&entry, old);
        }
        (id, weight)
    }

    /// The entry stored in `slot`, if any.
    fn entry(&self, slot: u128) -> Result<Option<Arc<Entry>>> {
        Ok(self
            .shard(slot)
            .read()
            .map_err(|_| poisoned())?
            .get(&slot)
            .cloned())
    }

    /// A fresh, complete object stored under `key` itself (no `Vary`: its
    /// variants live under other slots), for answering without
    /// pingora-cache's state machine. `None` sends the request the usual way.
    /// `prepare` makes the head the hit is answered with from the stored one,
    /// once per entry; hits get copies of what it made (without it, copies
    /// of the stored head).
    pub(super) fn fresh_hit(
        &self,
        key: &CacheKey,
        now: SystemTime,
        prepare: Option<&dyn Fn(&ResponseHeader) -> ResponseHeader>,
    ) -> Option<FreshHit> {
        let entry = self.entry(slot(key)).ok()??;
        let (fresh_until, age) = match &entry.fields {
            Some(fields) => fields.fresh_without_vary(now)?,
            None => {
                let meta = Self::meta_of(&entry).ok()?;
                if !meta.is_fresh(now) || meta.variance().is_some() {
                    return None;
                }
                (meta.fresh_until(), meta.age())
            }
        };
        Some(FreshHit {
            header: match prepare {
                Some(prepare) => entry
                    .prepared
                    .get_or_init(|| prepare(&entry.header))
                    .clone(),
                None => entry.header.clone(),
            },
            body: entry.body.clone(),
            fresh_until,
            age,
            id: entry.id,
            weight: entry.weight,
        })
    }

    /// Marks an entry stale by slot, keeping it for revalidation and stale-if-error.
    pub(super) fn expire_slot(&self, slot: u128, now: SystemTime) -> Result<bool> {
        let entry = self.entry(slot)?;
        let Some(entry) = entry else {
            return Ok(false);
        };
        let mut meta = Self::meta_of(&entry)?;
        meta.expire_at(now);
        self.replace_meta(slot, &meta)
    }
}

#[cfg(test)]
impl MemoryTier {
    /// Bytes held, bookkeeping included.
    fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    fn objects(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

fn poisoned() -> Box<Error> {
    Error::explain(ErrorType::InternalError, "memory cache shard lock poisoned")
}

/// Parses `Surrogate-Key: a b c` (space separated).
pub(super) fn surrogate_keys(header: &ResponseHeader) -> Box<[Box<str>]> {
    header
        .headers
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split_ascii_whitespace())
        .map(Box::from)
        .collect()
}

#[async_trait]
impl Storage for MemoryTier {
    async fn lookup(
        &'static self,
        key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<Option<(CacheMeta, HitHandler)>> {
        let slot = slot(key);
        let entry = self.entry(slot)?;
        let Some(entry) = entry else {
            return Ok(None);
        };
        let meta = Self::meta_of(&entry)?;
        let end = entry.body.len();
        Ok(Some((
            meta,
            Box::new(MemoryHit {
                entry,
                start: 0,
                end,
                done: false,
            }),
        )))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        let (internal, _) = meta.serialize()?;
        let header = super::head_room::with_room(meta.response_header());
        let expected_len = header
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let tags = EntryTags {
            key: key.to_compact(),
            url: key.user_tag.as_str().into(),
            surrogate_keys: surrogate_keys(&header),
        };
        Ok(Box::new(MemoryMiss {
            tier: self,
            slot: slot(key),
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            internal,
            fields: MetaFields::of(meta),
            header,
            chunks: Vec::new(),
            len: 0,
            expected_len,
            too_large: false,
            tags,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        purge_type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let key: &CompactCacheKey = target.key();
        let slot = slot(key);
        let want = match target {
            PurgeTarget::Exact(entry) => entry.entry_id(),
            PurgeTarget::Active(_) => None,
        };
        let mut shard = self.shard(slot).write().map_err(|_| poisoned())?;
        let matches = shard
            .get(&slot)
            .is_some_and(|e| want.is_none_or(|id| id.get() == e.id));
        if !matches {
            return Ok(PurgeOutcome::NotFound);
        }
        let Some(old) = shard.remove(&slot) else {
            return Ok(PurgeOutcome::NotFound);
        };
        drop(shard);
        self.account_remove(&old);
        let kind = match purge_type {
            PurgeType::Eviction => {
                metrics::CACHE_EVICTIONS
                    .with_label_values(&["memory"])
                    .inc();
                None
            }
            PurgeType::Invalidation => Some("invalidation"),
        };
        if let Some(kind) = kind {
            metrics::CACHE_PURGES.with_label_values(&[kind]).inc();
        }
        Ok(PurgeOutcome::Purged(Some(CacheEntryId::new(old.id))))
    }

    async fn expire(
        &'static self,
        target: PurgeTarget<'_>,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        if self.expire_slot(slot(target.key()), SystemTime::now())? {
            Ok(PurgeOutcome::Expired)
        } else {
            Ok(PurgeOutcome::NotFound)
        }
    }

    async fn update_meta(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<bool> {
        self.replace_meta(slot(key), meta)
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync + 'static) {
        self
    }
}

struct MemoryHit {
    entry: Arc<Entry>,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for MemoryHit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.entry.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    /// `end` is exclusive.
    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        let len = self.entry.body.len();
        let end = end.unwrap_or(len).min(len);
        if start >= len || start > end {
            return Error::e_explain(
                ErrorType::InternalError,
                format!("seek {start}..{end} outside body of {len} bytes"),
            );
        }
        self.start = start;
        self.end = end;
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.entry.weight
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(CacheEntryId::new(self.entry.id))
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn Any + Send + Sync) {
        self
    }
}

struct MemoryMiss {
    tier: &'static MemoryTier,
    slot: u128,
    id: u64,
    internal: Vec<u8>,
    fields: Option<MetaFields>,
    header: ResponseHeader,
    chunks: Vec<Bytes>,
    len: usize,
    expected_len: Option<usize>,
    too_large: bool,
    tags: EntryTags,
}

#[async_trait]
impl HandleMiss for MemoryMiss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        if self.too_large {
            return Ok(());
        }
        self.len += data.len();
        if self.len > self.tier.max_object {
            // Keep streaming to the client; this object just is not stored.
            self.too_large = true;
            self.chunks = Vec::new();
            return Ok(());
        }
        if !data.is_empty() {
            self.chunks.push(data);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        if self.too_large {
            return Error::e_explain(
                ErrorType::InternalError,
                "object larger than cache.max_object_size: not stored",
            );
        }
        if let Some(expected) = self.expected_len {
            if expected != self.len {
                return Error::e_explain(
                    ErrorType::InternalError,
                    format!(
                        "body has {} bytes, Content-Length says {expected}: not stored",
                        self.len
                    ),
                );
            }
        }
        let body = match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks[0].clone(),
            _ => {
                let mut b = BytesMut::with_capacity(self.len);
                for c in &self.chunks {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        };
        let weight = body.len() + self.internal.len() + head_weight(&self.header) + ENTRY_OVERHEAD;
        let entry = Entry {
            id: self.id,
            internal: self.internal,
            fields: self.fields,
            header: self.header,
            prepared: OnceLock::new(),
            body,
            weight,
            tags: self.tags,
        };
        let mut shard = self.tier.shard(self.slot).write().map_err(|_| poisoned())?;
        let old = shard.insert(self.slot, Arc::new(entry));
        let new = shard.get(&self.slot).cloned();
        drop(shard);
        if let Some(new) = new {
            self.tier.account_insert(&new, old);
        }
        Ok(MissFinishType::Created(weight))
    }

    fn entry_id(&self) -> Option<CacheEntryId> {
        Some(CacheEntryId::new(self.id))
    }
}

/// Eviction targets come back as `CacheEntryKey`s; this names one for tests.
#[cfg(test)]
fn exact(key: &CacheKey, id: u64) -> CacheEntryKey {
    CacheEntryKey::identified(key.to_compact(), CacheEntryId::new(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span() -> SpanHandle {
        pingora::cache::trace::Span::inactive().handle()
    }

    fn tier() -> &'static MemoryTier {
        Box::leak(Box::new(MemoryTier::new(1 << 20)))
    }

    fn meta(body_len: Option<usize>) -> CacheMeta {
        let mut h = ResponseHeader::build(200, None).unwrap();
        if let Some(n) = body_len {
            h.insert_header("content-length", n).unwrap();
        }
        h.insert_header("x-test", "1").unwrap();
        let now = SystemTime::now();
        CacheMeta::new(now + std::time::Duration::from_secs(60), now, 0, 0, h)
    }

    async fn fill(
        t: &'static MemoryTier,
        key: &CacheKey,
        parts: &[&[u8]],
        cl: Option<usize>,
    ) -> Result<MissFinishType> {
        let mut miss = t.get_miss_handler(key, &meta(cl), &span()).await?;
        for p in parts {
            miss.write_body(Bytes::copy_from_slice(p), false).await?;
        }
        miss.finish().await
    }

    async fn read_all(hit: &mut HitHandler) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = hit.read_body().await.unwrap() {
            out.extend_from_slice(&b);
        }
        out
    }

    #[tokio::test]
    async fn fill_then_hit_with_ranges() {
        let t = tier();
        let key = CacheKey::new("k1", "http://h/k1");
        assert!(t.lookup(&key, &span()).await.unwrap().is_none());
        fill(t, &key, &[b"hello ", b"world"], Some(11))
            .await
            .unwrap();
        let (meta, mut hit) = t.lookup(&key, &span()).await.unwrap().unwrap();
        assert_eq!(meta.response_header().headers["x-test"], "1");
        assert_eq!(read_all(&mut hit).await, b"hello world");
        hit.seek(6, Some(11)).unwrap();
        assert_eq!(read_all(&mut hit).await, b"world");
        assert!(hit.seek(11, None).is_err());
        assert_eq!(t.objects(), 1);
    }

    #[tokio::test]
    async fn truncated_oversized_and_abandoned_fills_are_not_stored() {
        let t: &'static MemoryTier = Box::leak(Box::new(MemoryTier::new(8)));
        let key = CacheKey::new("k2", "");
        assert!(
            fill(t, &key, &[b"abc"], Some(10)).await.is_err(),
            "truncated"
        );
        assert!(
            fill(t, &key, &[b"0123456789"], None).await.is_err(),
            "over the object limit"
        );
        let mut miss = t
            .get_miss_handler(&key, &meta(None), &span())
            .await
            .unwrap();
        miss.write_body(Bytes::from_static(b"x"), false)
            .await
            .unwrap();
        drop(miss); // the request went away before finish
        assert!(t.lookup(&key, &span()).await.unwrap().is_none());
        assert_eq!(t.bytes(), 0);
    }

    #[tokio::test]
    async fn purge_exact_only_removes_its_generation() {
        let t = tier();
        let key = CacheKey::new("k3", "");
        fill(t, &key, &[b"v1"], None).await.unwrap();
        let (_, hit) = t.lookup(&key, &span()).await.unwrap().unwrap();
        let old_id = hit.entry_id().unwrap().get();
        fill(t, &key, &[b"v2"], None).await.unwrap();
        let stale_victim = exact(&key, old_id);
        let out = t
            .purge(
                PurgeTarget::Exact(&stale_victim),
                PurgeType::Eviction,
                &span(),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            PurgeOutcome::NotFound,
            "a newer generation survives an old eviction"
        );
        let out = t
            .purge(
                PurgeTarget::Active(&key.to_compact()),
                PurgeType::Invalidation,
                &span(),
            )
            .await
            .unwrap();
        assert!(matches!(out, PurgeOutcome::Purged(Some(_))));
        assert_eq!(t.bytes(), 0);
    }

    #[tokio::test]
    async fn expire_keeps_the_body_but_not_freshness() {
        let t = tier();
        let key = CacheKey::new("k4", "");
        fill(t, &key, &[b"body"], None).await.unwrap();
        let out = t
            .expire(PurgeTarget::Active(&key.to_compact()), &span())
            .await
            .unwrap();
        assert_eq!(out, PurgeOutcome::Expired);
        let (meta, mut hit) = t.lookup(&key, &span()).await.unwrap().unwrap();
        assert!(!meta.is_fresh(SystemTime::now()));
        assert_eq!(read_all(&mut hit).await, b"body");
    }
}
