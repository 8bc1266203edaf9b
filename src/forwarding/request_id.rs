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
    /// The random half, in hex once for all ids.
    prefix: [u8; 16],
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
            prefix: hex(random(1)),
            key: random(2),
            counter: AtomicU64::new(0),
        }
    }

    pub(crate) fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 32];
        digits[..16].copy_from_slice(&self.prefix);
        digits[16..].copy_from_slice(&hex(splitmix64(n ^ self.key)));
        // Hex digits are ASCII: the check cannot fail.
        std::str::from_utf8(&digits).unwrap_or_default().to_owned()
    }
}

/// The 16 lowercase hex digits of `v` (every request makes an id: this
/// skips the formatting machinery, and `String::push`'s check per digit).
fn hex(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
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
        for v in [0, 0xab, 0x0123_4567_89ab_cdef, u64::MAX - 1] {
            assert_eq!(hex(v), format!("{v:016x}").as_bytes());
        }
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
