//! The parts of a `CacheMeta` that a memory hit needs, kept unpacked.
//!
//! A stored meta is msgpack internals plus a zstd-compressed header; decoding
//! both on every hit cost about 3% of a 1 KiB hit's CPU. Most entries were
//! stored once and never revalidated, and for those `CacheMeta::new` with the
//! same fields rebuilds an identical meta. Entries whose `updated` or
//! `provenance` moved away from `created` (revalidated, or a refreshed
//! variant) cannot be rebuilt through the public API and keep the decoding
//! path.

use pingora::cache::key::HashBinary;
use pingora::cache::CacheMeta;
use pingora::http::ResponseHeader;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetaFields {
    fresh_until: SystemTime,
    created: SystemTime,
    stale_while_revalidate_sec: u32,
    stale_if_error_sec: u32,
    variance: Option<HashBinary>,
    epoch_override: Option<SystemTime>,
}

impl MetaFields {
    /// The fields of `meta`, or `None` when `CacheMeta::new` could not
    /// rebuild it exactly.
    pub(super) fn of(meta: &CacheMeta) -> Option<MetaFields> {
        let created = meta.created();
        (meta.updated() == created && meta.provenance() == created).then(|| MetaFields {
            fresh_until: meta.fresh_until(),
            created,
            stale_while_revalidate_sec: meta.stale_while_revalidate_sec(),
            stale_if_error_sec: meta.stale_if_error_sec(),
            variance: meta.variance(),
            epoch_override: meta.epoch_override(),
        })
    }

    /// For a hit served without a `CacheMeta`: `(fresh_until, age)` as
    /// `CacheMeta::fresh_until` and `CacheMeta::age` would give them, if the
    /// object is fresh at `now` and stored without `Vary`.
    pub(super) fn fresh_without_vary(
        &self,
        now: SystemTime,
    ) -> Option<(SystemTime, std::time::Duration)> {
        if self.variance.is_some() || self.fresh_until < now {
            return None;
        }
        // CacheMeta's epoch: the override, else `updated`, which `of` only
        // admits equal to `created`.
        let epoch = self.epoch_override.unwrap_or(self.created);
        Some((
            self.fresh_until,
            now.duration_since(epoch).unwrap_or_default(),
        ))
    }

    /// A meta equal to the one these fields were taken from, with `header`.
    pub(super) fn rebuild(&self, header: ResponseHeader) -> CacheMeta {
        let mut meta = CacheMeta::new(
            self.fresh_until,
            self.created,
            self.stale_while_revalidate_sec,
            self.stale_if_error_sec,
            header,
        );
        if let Some(v) = self.variance {
            meta.set_variance(v);
        }
        if let Some(e) = self.epoch_override {
            meta.set_epoch_override(e);
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header() -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).unwrap();
        h.insert_header("cache-control", "max-age=60").unwrap();
        h.insert_header("vary", "accept-language").unwrap();
        h
    }

    #[test]
    fn rebuilt_meta_serializes_to_the_same_bytes() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut meta = CacheMeta::new(t + Duration::from_secs(60), t, 30, 600, header());
        meta.set_variance([7; 16]);
        meta.set_epoch_override(t - Duration::from_secs(5));
        let fields = MetaFields::of(&meta).expect("never revalidated");
        let rebuilt = fields.rebuild(header());
        assert_eq!(rebuilt.serialize().unwrap(), meta.serialize().unwrap());

        let plain = CacheMeta::new(t, t, 0, 0, header());
        let rebuilt = MetaFields::of(&plain).unwrap().rebuild(header());
        assert_eq!(rebuilt.serialize().unwrap(), plain.serialize().unwrap());
    }

    #[test]
    fn expiring_keeps_the_fast_path_exact() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut meta = CacheMeta::new(t + Duration::from_secs(60), t, 0, 0, header());
        meta.expire_at(t + Duration::from_secs(1));
        let rebuilt = MetaFields::of(&meta).unwrap().rebuild(header());
        assert_eq!(rebuilt.serialize().unwrap(), meta.serialize().unwrap());
    }
}
