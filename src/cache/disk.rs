//! The disk tier: one file per object under `<path>/objects/xx/<key>`, an
//! in-memory index rebuilt from the files at start-up (so a new generation
//! after a graceful upgrade starts warm), a byte budget with LRU eviction.
//!
//! File layout (little endian), written to `<path>/tmp/` and renamed into
//! place, so a reader never sees a partial file:
//!
//! ```text
//! "PRPTOBJ1" | slot u128 | internal_len u32 | header_len u32 | url_len u32 |
//! tags_len u32 | body_len u64 | internal | header | url | tags ('\n'-joined) |
//! body | checksum u64 (FNV-1a of everything before)
//! ```
//!
//! A file whose size does not add up is removed at start-up; one whose
//! checksum fails is removed when read. Both are counted, neither is served.
//! All functions here block: callers run them on a blocking thread.

use super::memory::EntryTags;
use crate::metrics;
use bytes::Bytes;
use pingora::cache::key::CompactCacheKey;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MAGIC: &[u8; 8] = b"PRPTOBJ1";
const FIXED: usize = 8 + 16 + 4 * 4 + 8;

/// One object as stored on disk.
pub(super) struct DiskObject {
    pub internal: Vec<u8>,
    pub header: Vec<u8>,
    pub url: String,
    pub surrogate_keys: Vec<String>,
    pub body: Bytes,
}

struct IndexEntry {
    size: u64,
    seq: u64,
    url: Box<str>,
    surrogate_keys: Box<[Box<str>]>,
}

struct Index {
    entries: HashMap<u128, IndexEntry>,
    /// Access order: seq → slot; the first is the least recently used.
    lru: BTreeMap<u64, u128>,
    bytes: u64,
}

pub(super) struct DiskTier {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    seq: AtomicU64,
}

fn fnv1a(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn gauge(bytes: u64, objects: usize) {
    metrics::CACHE_STORED_BYTES
        .with_label_values(&["disk"])
        .set(bytes as i64);
    metrics::CACHE_STORED_OBJECTS
        .with_label_values(&["disk"])
        .set(objects as i64);
}

/// Counts every failure; logs at most one line per 10 s, so a full disk
/// cannot flood the log.
fn error(op: &str, e: &dyn std::fmt::Display) {
    static LAST_LOG: AtomicU64 = AtomicU64::new(0);
    metrics::CACHE_DISK_ERRORS.with_label_values(&[op]).inc();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LOG.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST_LOG
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        log::warn!("cache disk tier: {op} failed: {e} (more such errors are counted in parapet_cache_disk_errors_total)");
    }
}

impl DiskTier {
    /// Opens (creating) the directory and rebuilds the index from the files.
    pub(super) fn open(dir: &Path, max_bytes: u64) -> io::Result<DiskTier> {
        fs::create_dir_all(dir.join("objects"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        for leftover in fs::read_dir(dir.join("tmp"))?.flatten() {
            let _ = fs::remove_file(leftover.path());
        }
        let tier = DiskTier {
            dir: dir.to_path_buf(),
            max_bytes,
            index: Mutex::new(Index {
                entries: HashMap::new(),
                lru: BTreeMap::new(),
                bytes: 0,
            }),
            seq: AtomicU64::new(1),
        };
        tier.scan()?;
        Ok(tier)
    }

    fn path_of(&self, slot: u128) -> PathBuf {
        let hex = format!("{slot:032x}");
        self.dir.join("objects").join(&hex[..2]).join(hex)
    }

    /// Reads each object's head; files that do not add up are removed.
    fn scan(&self) -> io::Result<()> {
        let mut found: Vec<(std::time::SystemTime, u128, IndexEntry)> = Vec::new();
        for sub in fs::read_dir(self.dir.join("objects"))?.flatten() {
            let Ok(files) = fs::read_dir(sub.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                match read_head(&path) {
                    Ok((slot, url, keys, size)) => {
                        let mtime = f
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        found.push((
                            mtime,
                            slot,
                            IndexEntry {
                                size,
                                seq: 0,
                                url,
                                surrogate_keys: keys,
                            },
                        ));
                    }
                    Err(e) => {
                        metrics::CACHE_DISK_CORRUPT.inc();
                        log::warn!("cache disk tier: removing unusable {}: {e}", path.display());
                        let _ = fs::remove_file(&path);
                    }
                }
            }
        }
        found.sort_by_key(|(t, _, _)| *t);
        let mut index = self
            .index
            .lock()
            .map_err(|_| io::Error::other("index lock poisoned"))?;
        for (_, slot, mut entry) in found {
            entry.seq = self.seq.fetch_add(1, Ordering::Relaxed);
            index.bytes += entry.size;
            index.lru.insert(entry.seq, slot);
            index.entries.insert(slot, entry);
        }
        log::info!(
            "cache disk tier: {} objects, {} bytes in {}",
            index.entries.len(),
            index.bytes,
            self.dir.display()
        );
        gauge(index.bytes, index.entries.len());
        drop(index);
        self.evict();
        Ok(())
    }

    pub(super) fn contains(&self, slot: u128) -> bool {
        self.index
            .lock()
            .is_ok_and(|i| i.entries.contains_key(&slot))
    }

    /// Reads and verifies an object; a corrupt one is removed and counted.
    pub(super) fn read(&self, slot: u128) -> Option<DiskObject> {
        if !self.contains(slot) {
            return None;
        }
        let path = self.path_of(slot);
        let result = fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|data| decode(&data, slot));
        match result {
            Ok(obj) => {
                self.touch(slot);
                Some(obj)
            }
            Err(e) => {
                metrics::CACHE_DISK_CORRUPT.inc();
                log::warn!(
                    "cache disk tier: removing unreadable {}: {e}",
                    path.display()
                );
                self.remove(slot);
                None
            }
        }
    }

    fn touch(&self, slot: u128) {
        if let Ok(mut index) = self.index.lock() {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            if let Some(e) = index.entries.get_mut(&slot) {
                let old = std::mem::replace(&mut e.seq, seq);
                index.lru.remove(&old);
                index.lru.insert(seq, slot);
            }
        }
    }

    /// Writes an object atomically (temp file, then rename) and indexes it.
    pub(super) fn write(&self, slot: u128, obj: &DiskObject) {
        let bytes = encode(slot, obj);
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return;
        }
        let tmp = self.dir.join("tmp").join(format!(
            "{slot:032x}.{}",
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let path = self.path_of(slot);
        let written = (|| -> io::Result<()> {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            error("write", &e);
            return;
        }
        if let Ok(mut index) = self.index.lock() {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let entry = IndexEntry {
                size,
                seq,
                url: obj.url.as_str().into(),
                surrogate_keys: obj
                    .surrogate_keys
                    .iter()
                    .map(|k| Box::from(k.as_str()))
                    .collect(),
            };
            if let Some(old) = index.entries.insert(slot, entry) {
                index.lru.remove(&old.seq);
                index.bytes -= old.size;
            }
            index.lru.insert(seq, slot);
            index.bytes += size;
            gauge(index.bytes, index.entries.len());
        }
        self.evict();
    }

    /// Removes an object; whether it was there.
    pub(super) fn remove(&self, slot: u128) -> bool {
        let removed = self.index.lock().ok().and_then(|mut index| {
            let e = index.entries.remove(&slot)?;
            index.lru.remove(&e.seq);
            index.bytes -= e.size;
            gauge(index.bytes, index.entries.len());
            Some(e)
        });
        if removed.is_some() {
            if let Err(e) = fs::remove_file(self.path_of(slot)) {
                if e.kind() != io::ErrorKind::NotFound {
                    error("remove", &e);
                }
            }
        }
        removed.is_some()
    }

    fn evict(&self) {
        loop {
            let victim = match self.index.lock() {
                Ok(index) if index.bytes > self.max_bytes => {
                    index.lru.first_key_value().map(|(_, s)| *s)
                }
                _ => None,
            };
            let Some(slot) = victim else { break };
            if self.remove(slot) {
                metrics::CACHE_EVICTIONS.with_label_values(&["disk"]).inc();
            } else {
                break;
            }
        }
    }

    /// Slots whose URL or surrogate keys match, for purges.
    pub(super) fn matching(&self, pred: impl Fn(&EntryTags) -> bool) -> Vec<u128> {
        let Ok(index) = self.index.lock() else {
            return Vec::new();
        };
        index
            .entries
            .iter()
            .filter(|(_, e)| {
                pred(&EntryTags {
                    key: CompactCacheKey::default(),
                    url: e.url.clone(),
                    surrogate_keys: e.surrogate_keys.clone(),
                })
            })
            .map(|(s, _)| *s)
            .collect()
    }
}

#[cfg(test)]
impl DiskTier {
    fn bytes(&self) -> u64 {
        self.index.lock().map_or(0, |i| i.bytes)
    }
}

fn encode(slot: u128, obj: &DiskObject) -> Vec<u8> {
    let tags = obj.surrogate_keys.join("\n");
    let mut out = Vec::with_capacity(
        FIXED
            + obj.internal.len()
            + obj.header.len()
            + obj.url.len()
            + tags.len()
            + obj.body.len()
            + 8,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&slot.to_le_bytes());
    for len in [
        obj.internal.len(),
        obj.header.len(),
        obj.url.len(),
        tags.len(),
    ] {
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(&(obj.body.len() as u64).to_le_bytes());
    out.extend_from_slice(&obj.internal);
    out.extend_from_slice(&obj.header);
    out.extend_from_slice(obj.url.as_bytes());
    out.extend_from_slice(tags.as_bytes());
    out.extend_from_slice(&obj.body);
    let sum = fnv1a(&out, FNV_START);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

struct Lens {
    slot: u128,
    internal: usize,
    header: usize,
    url: usize,
    tags: usize,
    body: usize,
}

impl Lens {
    fn total(&self) -> usize {
        FIXED + self.internal + self.header + self.url + self.tags + self.body + 8
    }
}

fn parse_fixed(head: &[u8]) -> Result<Lens, String> {
    if head.len() < FIXED || &head[..8] != MAGIC {
        return Err("not a cache object (bad magic)".into());
    }
    let u32_at =
        |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap_or_default()) as usize;
    Ok(Lens {
        slot: u128::from_le_bytes(head[8..24].try_into().unwrap_or_default()),
        internal: u32_at(24),
        header: u32_at(28),
        url: u32_at(32),
        tags: u32_at(36),
        body: u64::from_le_bytes(head[40..48].try_into().unwrap_or_default()) as usize,
    })
}

fn decode(data: &[u8], slot: u128) -> Result<DiskObject, String> {
    let l = parse_fixed(data)?;
    if l.slot != slot || l.total() != data.len() {
        return Err(format!(
            "length or key mismatch ({} bytes, expected {})",
            data.len(),
            l.total()
        ));
    }
    let (payload, sum) = data.split_at(data.len() - 8);
    if fnv1a(payload, FNV_START).to_le_bytes() != sum {
        return Err("checksum mismatch".into());
    }
    let mut at = FIXED;
    let mut take = |n: usize| {
        let s = &payload[at..at + n];
        at += n;
        s
    };
    let internal = take(l.internal).to_vec();
    let header = take(l.header).to_vec();
    let url = String::from_utf8_lossy(take(l.url)).into_owned();
    let tags = String::from_utf8_lossy(take(l.tags)).into_owned();
    let body = Bytes::copy_from_slice(take(l.body));
    Ok(DiskObject {
        internal,
        header,
        url,
        surrogate_keys: tags
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        body,
    })
}

/// Slot, URL, tags and size from a file's head, checking that the size adds up.
#[allow(clippy::type_complexity)]
fn read_head(path: &Path) -> Result<(u128, Box<str>, Box<[Box<str>]>, u64), String> {
    let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    let mut head = [0u8; FIXED];
    f.read_exact(&mut head).map_err(|e| e.to_string())?;
    let l = parse_fixed(&head)?;
    if l.total() as u64 != size {
        return Err(format!("truncated: {size} bytes, expected {}", l.total()));
    }
    let name_ok =
        path.file_name().and_then(|n| n.to_str()) == Some(format!("{:032x}", l.slot).as_str());
    if !name_ok {
        return Err("file name does not match its key".into());
    }
    let mut skip = vec![0u8; l.internal + l.header];
    f.read_exact(&mut skip).map_err(|e| e.to_string())?;
    let mut url = vec![0u8; l.url];
    f.read_exact(&mut url).map_err(|e| e.to_string())?;
    let mut tags = vec![0u8; l.tags];
    f.read_exact(&mut tags).map_err(|e| e.to_string())?;
    let tags = String::from_utf8_lossy(&tags);
    Ok((
        l.slot,
        String::from_utf8_lossy(&url).into(),
        tags.split('\n')
            .filter(|t| !t.is_empty())
            .map(Box::from)
            .collect(),
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(body: &[u8]) -> DiskObject {
        DiskObject {
            internal: b"meta".to_vec(),
            header: b"hdr".to_vec(),
            url: "http://h:80/x".into(),
            surrogate_keys: vec!["a".into(), "b".into()],
            body: Bytes::copy_from_slice(body),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("parapet-disk-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn objects_survive_reopening_and_corruption_is_never_served() {
        let d = dir("reopen");
        let t = DiskTier::open(&d, 1 << 20).unwrap();
        t.write(1, &obj(b"one"));
        t.write(2, &obj(b"two"));
        drop(t);
        let t = DiskTier::open(&d, 1 << 20).unwrap();
        let o = t.read(1).unwrap();
        assert_eq!(&o.body[..], b"one");
        assert_eq!(o.surrogate_keys, vec!["a", "b"]);
        // Flip a body byte of object 2: the checksum catches it on read.
        let p = t.path_of(2);
        let mut data = fs::read(&p).unwrap();
        let n = data.len();
        data[n - 9] ^= 0xff;
        fs::write(&p, &data).unwrap();
        assert!(t.read(2).is_none());
        assert!(!p.exists(), "a corrupt object is removed");
        // Truncate object 1: removed at the next start-up scan.
        let p = t.path_of(1);
        let data = fs::read(&p).unwrap();
        fs::write(&p, &data[..data.len() - 5]).unwrap();
        fs::write(d.join("tmp").join("half-written"), b"x").unwrap();
        drop(t);
        let t = DiskTier::open(&d, 1 << 20).unwrap();
        assert!(!t.contains(1));
        assert!(!p.exists());
        assert_eq!(
            fs::read_dir(d.join("tmp")).unwrap().count(),
            0,
            "temp leftovers are cleared"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_byte_budget_evicts_least_recently_used() {
        let d = dir("lru");
        let one = encode(0, &obj(&[0u8; 1000])).len() as u64;
        let t = DiskTier::open(&d, one * 3).unwrap();
        for slot in 1..=3 {
            t.write(slot, &obj(&[slot as u8; 1000]));
        }
        assert!(t.read(1).is_some()); // 1 is now the most recently used
        t.write(4, &obj(&[4; 1000]));
        assert!(t.contains(1) && !t.contains(2) && t.contains(3) && t.contains(4));
        assert!(t.bytes() <= one * 3);
        let _ = fs::remove_dir_all(&d);
    }
}
