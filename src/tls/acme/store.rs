//! The `storage` folder of an ACME listener, shareable by several nodes:
//!
//! ```text
//! account-<directory hash>.json      ACME account key and URL (0600)
//! certs/<first name>-<hash>/         one folder per directory and name set
//!     cert.pem  key.pem              chain and key (0600), replaced by rename
//! challenges/<token>                 HTTP-01 answers, for whichever node the CA asks
//! locks/<first name>-<hash>.lock     the ordering lease
//! ```
//!
//! Files are written to a temporary name and renamed, so a reader never sees
//! half a certificate. Anything unreadable or inconsistent is ignored with
//! a log line (and ordered again), never served.

use super::Settings;
use crate::tls::certs::{self, CertKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an ordering lease lasts without being renewed: a crashed
/// holder blocks the others at most this long.
pub(super) const LEASE: Duration = Duration::from_secs(10 * 60);

/// Creates the folder layout (0700) and checks it can be written.
pub(super) fn prepare(dir: &Path) -> Result<(), String> {
    for sub in ["", "certs", "challenges", "locks"] {
        let path = dir.join(sub);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    write_private(&probe, b"").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// FNV-1a, 64 bits: a stable short name for a directory URL (std's hasher
/// may change between Rust versions, and these names live on disk).
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `<first name>-<hash of directory and all names>`.
fn slot(s: &Settings) -> String {
    let all = format!("{} {}", s.directory, s.domains.join(","));
    format!("{}-{:08x}", s.domains[0], fnv(&all) as u32)
}

fn cert_dir(s: &Settings) -> PathBuf {
    s.storage.join("certs").join(slot(s))
}

pub(super) fn account_path(s: &Settings) -> PathBuf {
    s.storage
        .join(format!("account-{:016x}.json", fnv(&s.directory)))
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file and a
/// rename.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// The stored certificate, if it is whole, valid now and covers every
/// configured name.
pub(super) fn load_certificate(s: &Settings) -> Option<CertKey> {
    let dir = cert_dir(s);
    let chain = fs::read(dir.join("cert.pem")).ok()?;
    let key = match fs::read(dir.join("key.pem")) {
        Ok(k) => k,
        Err(e) => {
            log::warn!(
                "ACME: {} has a certificate but no key ({e}); ordering again",
                dir.display()
            );
            return None;
        }
    };
    match certs::from_pem(&chain, &key) {
        Ok(cert) if s.domains.iter().all(|d| cert.names.contains(d)) => Some(cert),
        Ok(_) => {
            log::warn!(
                "ACME: the certificate in {} does not cover every configured name; ordering again",
                dir.display()
            );
            None
        }
        Err(e) => {
            log::warn!(
                "ACME: ignoring the certificate in {}: {e}; ordering again",
                dir.display()
            );
            None
        }
    }
}

/// Stores a new chain and key: key first, so a reader that sees the new
/// chain finds its key (a reader between the two renames sees the old chain
/// with the new key, fails the key check and retries later).
pub(super) fn save_certificate(
    s: &Settings,
    chain_pem: &[u8],
    key_pem: &[u8],
) -> std::io::Result<()> {
    let dir = cert_dir(s);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    write_private(&dir.join("key.pem"), key_pem)?;
    write_private(&dir.join("cert.pem"), chain_pem)
}

/// Challenge tokens are base64url: nothing else may name a file.
fn token_ok(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn put_challenge(s: &Settings, token: &str, answer: &str) {
    if token_ok(token) {
        let path = s.storage.join("challenges").join(token);
        if let Err(e) = write_private(&path, answer.as_bytes()) {
            log::warn!(
                "ACME: cannot share the challenge answer in {}: {e}",
                path.display()
            );
        }
    }
}

pub(super) fn drop_challenge(s: &Settings, token: &str) {
    if token_ok(token) {
        let _ = fs::remove_file(s.storage.join("challenges").join(token));
    }
}

/// An HTTP-01 answer another node sharing `storage` published.
pub(crate) fn shared_challenge(storage: &Path, token: &str) -> Option<String> {
    if !token_ok(token) {
        return None;
    }
    fs::read_to_string(storage.join("challenges").join(token)).ok()
}

/// The ordering lease: a file created exclusively, holding its expiry.
/// A lease past its expiry (a crashed holder) is taken over by renaming it
/// away first, so of two nodes taking it over only one succeeds.
pub(super) struct Lease {
    path: PathBuf,
}

impl Lease {
    pub(super) fn try_take(s: &Settings) -> Option<Lease> {
        let path = s.storage.join("locks").join(format!("{}.lock", slot(s)));
        for _ in 0..2 {
            let expires = certs::unix_now() + LEASE.as_secs() as i64;
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(mut f) => {
                    let _ = writeln!(f, "{expires} pid {}", std::process::id());
                    return Some(Lease { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let held_until = fs::read_to_string(&path)
                        .ok()
                        .and_then(|t| t.split_whitespace().next()?.parse::<i64>().ok())
                        .unwrap_or(0);
                    if held_until > certs::unix_now() {
                        return None;
                    }
                    let stale = path.with_extension(format!("stale-{}", std::process::id()));
                    if fs::rename(&path, &stale).is_err() {
                        return None;
                    }
                    let _ = fs::remove_file(stale);
                    log::warn!(
                        "ACME: took over an expired ordering lease ({})",
                        path.display()
                    );
                }
                Err(e) => {
                    log::warn!(
                        "ACME: cannot take the ordering lease {}: {e}",
                        path.display()
                    );
                    return None;
                }
            }
        }
        None
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
