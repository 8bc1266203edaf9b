//! Config loading never panics: arbitrary bytes (lossily decoded as UTF-8)
//! go through `parapet::config::parse_partial` (YAML → schema-checked
//! `RawConfig`, errors collected) and, when that yields a config, through
//! `parapet::runtime::Snapshot::build` (semantic checks: addresses, regexes,
//! sizes, durations, routes, cache, rate limits, error pages...).
//!
//! Two side effects of `Snapshot::build` are kept out of the fuzz loop:
//! * a backend address that is not a literal `ip:port` is resolved with DNS,
//!   so `build` is skipped when any backend address does not parse as a
//!   `SocketAddr` (a text check for "address" would let YAML escapes such as
//!   `"\x61ddress"` through, and would skip every config with a listener);
//! * files named by the config are read (`/dev/zero`, `/dev/stdin` would hang
//!   the fuzzer): every error page `file`, listener certificate, key and
//!   client CA, and upstream CA and client certificate, is replaced by a path
//!   that does not exist, so the read-error paths are still exercised;
//! * the access log `path` is opened for appending (it would create files
//!   anywhere), so it is replaced by `stderr`;
//! * `geo.database` is mapped (the `geo_database` target fuzzes that file),
//!   so it is replaced by a missing file. `geo.networks` (the CIDR table,
//!   overlap checks) and `geo.regions` are built as given.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

const NO_SUCH_FILE: &str = "/nonexistent/parapet-fuzz/error-page.html";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (raw, errs) = parapet::config::parse_partial(&text);
    let _ = errs.to_string();
    let Some(mut raw) = raw else {
        return;
    };
    let resolves_names = raw
        .upstreams
        .values()
        .flat_map(|u| &u.backends)
        .any(|b| b.address.parse::<SocketAddr>().is_err());
    if resolves_names {
        return;
    }
    if let Some(pages) = raw.error_pages.as_mut() {
        for page in pages.default.iter_mut().chain(pages.pages.values_mut()) {
            if page.file.is_some() {
                page.file = Some(NO_SUCH_FILE.to_string());
            }
        }
    }
    for l in &mut raw.listeners {
        if let Some(tls) = l.tls.as_mut() {
            for c in &mut tls.certificates {
                c.cert = NO_SUCH_FILE.to_string();
                c.key = NO_SUCH_FILE.to_string();
            }
            if tls.client_ca.is_some() {
                tls.client_ca = Some(NO_SUCH_FILE.to_string());
            }
        }
    }
    for u in raw.upstreams.values_mut() {
        if let Some(tls) = u.tls.as_mut() {
            if tls.ca.is_some() {
                tls.ca = Some(NO_SUCH_FILE.to_string());
            }
            if let Some(c) = tls.client_cert.as_mut() {
                c.cert = NO_SUCH_FILE.to_string();
                c.key = NO_SUCH_FILE.to_string();
            }
        }
    }
    if let Some(log) = raw.access_log.as_mut() {
        log.path = "stderr".to_string();
    }
    if let Some(geo) = raw.geo.as_mut() {
        if geo.database.is_some() {
            geo.database = Some(NO_SUCH_FILE.to_string());
        }
    }
    match parapet::runtime::Snapshot::build(&raw) {
        Ok(_snapshot) => {}
        Err(errs) => {
            let _ = errs.to_string();
        }
    }
});
