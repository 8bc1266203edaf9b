//! Peer hops are authenticated with the fleet's shared secret: the sending
//! node adds `Parapet-Fleet: node=NAME ts=UNIX mac=HEX`, where the MAC is
//! HMAC-SHA256 over the node name, the timestamp, the method and the
//! request target. The receiver recomputes it and compares in constant
//! time, and refuses timestamps more than [`MAX_SKEW`] away from its clock,
//! so a captured header is only good for that one request line for a short
//! while. A client's own `Parapet-Fleet` header never authenticates anything
//! unless it carries a valid MAC, and is removed before any origin sees it.

use http::HeaderName;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) const HEADER: HeaderName = HeaderName::from_static("parapet-fleet");

/// How far a signed timestamp may be from this node's clock.
pub(crate) const MAX_SKEW: Duration = Duration::from_secs(300);

/// The fleet's key.
pub(crate) struct Key(PKey<Private>);

/// What a request's `Parapet-Fleet` header says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No such header: an ordinary client request.
    Absent,
    /// A valid hop from the named peer.
    Peer(String),
    /// A header that does not verify (forged, stale, wrong secret).
    Invalid,
}

impl Key {
    pub(crate) fn new(secret: &str) -> Result<Key, String> {
        PKey::hmac(secret.as_bytes())
            .map(Key)
            .map_err(|e| format!("cannot make an HMAC key: {e}"))
    }

    fn mac(&self, node: &str, ts: u64, method: &str, target: &str) -> Vec<u8> {
        let sign = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
            let mut s = Signer::new(MessageDigest::sha256(), &self.0)?;
            for part in [
                node.as_bytes(),
                b"\n",
                itoa::Buffer::new().format(ts).as_bytes(),
            ] {
                s.update(part)?;
            }
            for part in [b"\n", method.as_bytes(), b"\n", target.as_bytes()] {
                s.update(part)?;
            }
            s.sign_to_vec()
        };
        sign().unwrap_or_default()
    }

    /// The header value for a request from `node`.
    pub(crate) fn sign(&self, node: &str, method: &str, target: &str, now: SystemTime) -> String {
        let ts = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mac = hex(&self.mac(node, ts, method, target));
        format!("node={node} ts={ts} mac={mac}")
    }

    /// Checks a received header value against the request it came with.
    pub(crate) fn verify(
        &self,
        value: Option<&[u8]>,
        method: &str,
        target: &str,
        now: SystemTime,
    ) -> Verdict {
        let Some(value) = value else {
            return Verdict::Absent;
        };
        let Ok(text) = std::str::from_utf8(value) else {
            return Verdict::Invalid;
        };
        let (mut node, mut ts, mut mac) = (None, None, None);
        for part in text.split_ascii_whitespace() {
            match part.split_once('=') {
                Some(("node", v)) => node = Some(v),
                Some(("ts", v)) => ts = v.parse::<u64>().ok(),
                Some(("mac", v)) => mac = unhex(v),
                _ => return Verdict::Invalid,
            }
        }
        let (Some(node), Some(ts), Some(mac)) = (node, ts, mac) else {
            return Verdict::Invalid;
        };
        let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now_s.abs_diff(ts) > MAX_SKEW.as_secs() {
            return Verdict::Invalid;
        }
        let want = self.mac(node, ts, method, target);
        if want.len() == mac.len() && openssl::memcmp::eq(&want, &mac) {
            Verdict::Peer(node.to_string())
        } else {
            Verdict::Invalid
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_hop_verifies_and_nothing_else_does() {
        let key = Key::new("a fleet secret of some length").unwrap();
        let other = Key::new("another fleet's secret value").unwrap();
        let now = SystemTime::now();
        let v = key.sign("edge1", "GET", "/a?b=1", now);
        let check = |k: &Key, v: &str, m: &str, t: &str, at: SystemTime| {
            k.verify(Some(v.as_bytes()), m, t, at)
        };
        assert_eq!(
            check(&key, &v, "GET", "/a?b=1", now),
            Verdict::Peer("edge1".into())
        );
        assert_eq!(
            check(&other, &v, "GET", "/a?b=1", now),
            Verdict::Invalid,
            "wrong secret"
        );
        assert_eq!(
            check(&key, &v, "GET", "/a?b=2", now),
            Verdict::Invalid,
            "other target"
        );
        assert_eq!(
            check(&key, &v, "HEAD", "/a?b=1", now),
            Verdict::Invalid,
            "other method"
        );
        let later = now + MAX_SKEW + Duration::from_secs(2);
        assert_eq!(
            check(&key, &v, "GET", "/a?b=1", later),
            Verdict::Invalid,
            "stale"
        );
        let forged = v.replace("node=edge1", "node=edge2");
        assert_eq!(check(&key, &forged, "GET", "/a?b=1", now), Verdict::Invalid);
        for junk in [
            "",
            "node=x",
            "mac=zz ts=1 node=a",
            "node=a ts=1 mac=00 extra=1",
        ] {
            assert_eq!(
                check(&key, junk, "GET", "/", now),
                Verdict::Invalid,
                "{junk:?}"
            );
        }
        assert_eq!(key.verify(None, "GET", "/", now), Verdict::Absent);
    }
}
