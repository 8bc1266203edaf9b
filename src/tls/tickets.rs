//! TLS session tickets that survive reloads (and can be shared by a fleet).
//!
//! OpenSSL's default ticket keys are random per process, so after a
//! zero-downtime reload every returning client does a full handshake. Here
//! the keys live in a file (`server.session_tickets.file`, by default next
//! to the upgrade socket that the generations share), one key per rotation
//! period (`rotate`, 1 h):
//!
//! ```text
//! <period number> <16-byte name, hex> <32-byte HMAC key, hex> <32-byte AES key, hex>
//! ```
//!
//! Every process makes sure the file holds the key of the current period
//! and of the next one (so a process that refreshes late still shares its
//! keys), drops keys more than two periods old (tickets older than that
//! cannot be decrypted by anyone: forward secrecy after the discard), and
//! encrypts new tickets with the current period's key. Tickets under an
//! older key are accepted and re-issued under the current one. Changes to
//! the file are made under a lock file and written by rename; nodes that
//! share the file on a volume share the keys.

use openssl::ssl::SslContextBuilder;
use std::ffi::{c_int, c_uchar};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Periods kept before the current one.
const KEEP_PAST: u64 = 2;

#[derive(Clone, PartialEq, Eq, Debug)]
struct Key {
    period: u64,
    name: [u8; 16],
    hmac: [u8; 32],
    aes: [u8; 32],
}

/// The keys in use by this process, newest last.
static KEYS: LazyLock<RwLock<Arc<Vec<Key>>>> = LazyLock::new(Default::default);

/// Where the keys are kept and how often they rotate.
#[derive(Clone, Debug)]
pub(crate) struct TicketKeys {
    pub(crate) path: PathBuf,
    pub(crate) rotate: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse(text: &str) -> Vec<Key> {
    let mut keys: Vec<Key> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some(Key {
                period: f.next()?.parse().ok()?,
                name: unhex(f.next()?)?,
                hmac: unhex(f.next()?)?,
                aes: unhex(f.next()?)?,
            })
        })
        .collect();
    keys.sort_by_key(|k| k.period);
    keys.dedup_by_key(|k| k.period);
    keys
}

fn render(keys: &[Key]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{} {} {} {}\n",
                k.period,
                hex(&k.name),
                hex(&k.hmac),
                hex(&k.aes)
            )
        })
        .collect()
}

fn random_key(period: u64) -> Result<Key, openssl::error::ErrorStack> {
    let mut k = Key {
        period,
        name: [0; 16],
        hmac: [0; 32],
        aes: [0; 32],
    };
    openssl::rand::rand_bytes(&mut k.name)?;
    openssl::rand::rand_bytes(&mut k.hmac)?;
    openssl::rand::rand_bytes(&mut k.aes)?;
    Ok(k)
}

/// An exclusive lock file beside the key file, taken over when older than
/// a few seconds (a crashed holder).
struct FileLock(PathBuf);

impl FileLock {
    fn take(path: &Path) -> Result<FileLock, String> {
        let lock = path.with_extension("lock");
        for _ in 0..100 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&lock)
            {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(10));
                    if stale {
                        let _ = fs::remove_file(&lock);
                    } else {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(e) => return Err(format!("cannot lock {}: {e}", lock.display())),
            }
        }
        Err(format!("{} stays locked", lock.display()))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

impl TicketKeys {
    /// The period number of a Unix time.
    fn period(&self, secs: u64) -> u64 {
        secs / self.rotate.as_secs().max(1)
    }

    /// Makes sure the file holds this period's and the next period's keys,
    /// drops old ones, and loads the result for the handshakes.
    pub(crate) fn refresh(&self) -> Result<(), String> {
        let current = self.period(now_secs());
        let _lock = FileLock::take(&self.path)?;
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", self.path.display())),
        };
        let mut keys = parse(&text);
        let before = keys.clone();
        keys.retain(|k| k.period + KEEP_PAST >= current);
        for period in [current, current + 1] {
            if !keys.iter().any(|k| k.period == period) {
                keys.push(random_key(period).map_err(|e| format!("random key: {e}"))?);
            }
        }
        keys.sort_by_key(|k| k.period);
        if keys != before {
            let tmp = self
                .path
                .with_extension(format!("tmp-{}", std::process::id()));
            let written = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(render(&keys).as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| fs::rename(&tmp, &self.path));
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(format!("cannot write {}: {e}", self.path.display()));
            }
        }
        keys.retain(|k| k.period <= current + 1);
        *KEYS.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    /// How long until the next refresh is due: the next period boundary,
    /// at most a minute (so a key file changed by another node is read).
    pub(crate) fn next_refresh(&self) -> Duration {
        let r = self.rotate.as_secs().max(1);
        let left = r - now_secs() % r;
        Duration::from_secs(left.min(60))
    }
}

/// The key new tickets are encrypted with: the current period's, or the
/// newest not in the future.
fn encrypting(keys: &[Key], current: u64) -> Option<&Key> {
    keys.iter().rev().find(|k| k.period <= current)
}

extern "C" {
    /// OpenSSL 3's ticket key callback with an `EVP_MAC_CTX` (openssl-sys
    /// does not declare it). The older `HMAC_CTX` form goes through
    /// OpenSSL 3's compatibility layer, which fetched the cipher and digest
    /// on every ticket: full handshakes measured 1.9k/s against 2.7k/s
    /// without a callback (wrk, one core).
    fn SSL_CTX_set_tlsext_ticket_key_evp_cb(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: unsafe extern "C" fn(
            *mut openssl_sys::SSL,
            *mut c_uchar,
            *mut c_uchar,
            *mut openssl_sys::EVP_CIPHER_CTX,
            *mut openssl_sys::EVP_MAC_CTX,
            c_int,
        ) -> c_int,
    ) -> c_int;
}

/// AES-256-CBC, fetched once (as a pointer: `EVP_CIPHER` is shared,
/// reference-counted and immutable once fetched).
static CIPHER: LazyLock<usize> = LazyLock::new(|| {
    // SAFETY: a NUL-terminated algorithm name; default library context.
    unsafe {
        openssl_sys::EVP_CIPHER_fetch(
            std::ptr::null_mut(),
            c"AES-256-CBC".as_ptr(),
            std::ptr::null(),
        ) as usize
    }
});

/// Makes the acceptor encrypt and decrypt tickets with the shared keys.
pub(crate) fn install(ctx: &mut SslContextBuilder) {
    LazyLock::force(&CIPHER);
    // SAFETY: the callback has the signature OpenSSL documents for
    // SSL_CTX_set_tlsext_ticket_key_evp_cb; the keys it reads are static.
    unsafe {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx.as_ptr(), ticket_key_cb);
    }
}

/// Keys the MAC context: HMAC-SHA256 with `key`.
unsafe fn mac_init(mac: *mut openssl_sys::EVP_MAC_CTX, key: &[u8; 32]) -> bool {
    let params = [
        openssl_sys::OSSL_PARAM {
            key: c"digest".as_ptr(),
            data_type: 4, // OSSL_PARAM_UTF8_STRING
            data: c"SHA256".as_ptr() as *mut std::ffi::c_void,
            data_size: 6,
            return_size: usize::MAX, // OSSL_PARAM_UNMODIFIED
        },
        openssl_sys::OSSL_PARAM {
            key: std::ptr::null(),
            data_type: 0,
            data: std::ptr::null_mut(),
            data_size: 0,
            return_size: 0,
        },
    ];
    // SAFETY: a MAC context from OpenSSL, a 32-byte key, terminated params.
    unsafe { openssl_sys::EVP_MAC_init(mac, key.as_ptr(), key.len(), params.as_ptr()) == 1 }
}

/// OpenSSL's ticket key callback: `enc == 1` to encrypt a new ticket (name
/// and IV written here), else to decrypt one named `name`. Returns 1 (use
/// the key), 2 (decrypted with an old key: issue a new ticket), 0 (unknown
/// key: full handshake) or -1 (error).
unsafe extern "C" fn ticket_key_cb(
    _ssl: *mut openssl_sys::SSL,
    name: *mut c_uchar,
    iv: *mut c_uchar,
    cipher: *mut openssl_sys::EVP_CIPHER_CTX,
    mac: *mut openssl_sys::EVP_MAC_CTX,
    enc: c_int,
) -> c_int {
    let keys = KEYS.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(period_secs) = TICKET_PERIOD.get() else {
        return -1;
    };
    let aes = *CIPHER as *const openssl_sys::EVP_CIPHER;
    if aes.is_null() {
        return -1;
    }
    let current = now_secs() / period_secs.max(&1);
    let newest = encrypting(&keys, current);
    // SAFETY (all below): pointers from OpenSSL; name is 16 bytes, iv has
    // room for EVP_MAX_IV_LENGTH (16) bytes, AES-256-CBC's IV is 16.
    unsafe {
        if enc == 1 {
            let Some(k) = newest else { return -1 };
            if openssl_sys::RAND_bytes(iv, 16) != 1 {
                return -1;
            }
            std::ptr::copy_nonoverlapping(k.name.as_ptr(), name, 16);
            let ok = openssl_sys::EVP_EncryptInit_ex(
                cipher,
                aes,
                std::ptr::null_mut(),
                k.aes.as_ptr(),
                iv,
            ) == 1
                && mac_init(mac, &k.hmac);
            return if ok { 1 } else { -1 };
        }
        let wanted = std::slice::from_raw_parts(name, 16);
        let Some(k) = keys.iter().find(|k| k.name == wanted) else {
            return 0;
        };
        let ok = mac_init(mac, &k.hmac)
            && openssl_sys::EVP_DecryptInit_ex(
                cipher,
                aes,
                std::ptr::null_mut(),
                k.aes.as_ptr(),
                iv,
            ) == 1;
        // 2 ("renew") even for the current key: OpenSSL 3 sends TLS 1.3
        // tickets on a resumed handshake only when the callback asks for
        // renewal, and a client that resumes without a new ticket in hand
        // does a full handshake next time (wrk: every other connection).
        if ok {
            2
        } else {
            -1
        }
    }
}

/// The rotation period, in seconds, for the callback (set once per process).
static TICKET_PERIOD: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Loads the keys for this process and remembers the rotation period.
pub(crate) fn start(keys: &TicketKeys) -> Result<(), String> {
    let _ = TICKET_PERIOD.set(keys.rotate.as_secs().max(1));
    keys.refresh()
}

/// Keeps the key file current: at each period boundary (and every minute,
/// to read keys another node added).
pub(crate) struct Rotation(pub(crate) TicketKeys);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Rotation {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.0.next_refresh()) => {}
            }
            if let Err(e) = self.0.refresh() {
                log::warn!("TLS session tickets: {e}; keeping the keys in use");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_skips_garbage() {
        let a = random_key(7).unwrap();
        let b = random_key(8).unwrap();
        let text = format!(
            "garbage line\n{}{}",
            render(std::slice::from_ref(&b)),
            render(std::slice::from_ref(&a))
        );
        assert_eq!(parse(&text), vec![a, b]);
    }

    #[test]
    fn refresh_keeps_current_next_and_two_past_periods() {
        let dir = std::env::temp_dir().join(format!("parapet-tickets-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let keys = TicketKeys {
            path: dir.join("keys"),
            rotate: Duration::from_secs(3600),
        };
        let now = keys.period(now_secs());
        let old: Vec<Key> = (now - 5..now).map(|p| random_key(p).unwrap()).collect();
        fs::write(&keys.path, render(&old)).unwrap();
        keys.refresh().unwrap();
        let stored = parse(&fs::read_to_string(&keys.path).unwrap());
        let periods: Vec<u64> = stored.iter().map(|k| k.period).collect();
        assert_eq!(periods, vec![now - 2, now - 1, now, now + 1]);
        // Kept keys are the same bytes as before (shared, not regenerated).
        assert_eq!(stored[0], old[3]);
        // A second refresh changes nothing.
        keys.refresh().unwrap();
        assert_eq!(parse(&fs::read_to_string(&keys.path).unwrap()), stored);
        assert_eq!(encrypting(&stored, now).unwrap().period, now);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&keys.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
