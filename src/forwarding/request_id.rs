//! Request ids: 32 hex digits, unique per request.
//!
//! The first 16 digits are random per process; the last 16 are a bijective mix
//! of a per-process counter, so ids never repeat within a process and collide
//! across processes only if their random prefixes do.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) struct RequestIdGenerator {
    prefix: u64,
    key: u64,
    counter: AtomicU64,
}

impl Default for RequestIdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdGenerator {
    pub(crate) fn new() -> Self {
        let random = |salt: u64| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(salt);
            h.write_u32(std::process::id());
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            h.write_u64(nanos);
            h.finish()
        };
        RequestIdGenerator {
            prefix: random(1),
            key: random(2),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(32);
        push_hex(&mut id, self.prefix);
        push_hex(&mut id, splitmix64(n ^ self.key));
        id
    }
}

/// Appends the 16 lowercase hex digits of `v` (every request makes an id:
/// this skips the formatting machinery).
fn push_hex(out: &mut String, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize] as char);
    }
}

/// The splitmix64 finalizer: a bijection on u64 that scatters neighbours.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Whether a client-supplied request id is safe to pass on and log: 1 to 128
/// characters of `[A-Za-z0-9._:-]`.
pub(crate) fn is_acceptable(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_well_formed() {
        let g = RequestIdGenerator::new();
        let ids: HashSet<String> = (0..10_000).map(|_| g.next_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids
            .iter()
            .all(|id| id.len() == 32 && is_acceptable(id.as_bytes())));
        let other = RequestIdGenerator::new();
        assert_ne!(g.next_id()[..16], other.next_id()[..16]);
    }

    #[test]
    fn hex_digits_are_fixed_width_lowercase() {
        let mut s = String::new();
        push_hex(&mut s, 0xab);
        push_hex(&mut s, u64::MAX - 1);
        assert_eq!(s, format!("{:016x}{:016x}", 0xab, u64::MAX - 1));
    }

    #[test]
    fn hostile_ids_are_refused() {
        assert!(is_acceptable(b"abc-123_x.y:z"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"a b"));
        assert!(!is_acceptable(b"a\r\nX-Evil: 1"));
        assert!(!is_acceptable(&[b'a'; 129]));
    }
}
