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
//! * `error_pages` entries with `file:` are read from disk (`/dev/zero`,
//!   `/dev/stdin` would hang the fuzzer), so every `file` is replaced by a
//!   path that does not exist: the read-error path is still exercised.

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
    match parapet::runtime::Snapshot::build(&raw) {
        Ok(_snapshot) => {}
        Err(errs) => {
            let _ = errs.to_string();
        }
    }
});
