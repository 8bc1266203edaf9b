//! Request filters never panic. Line 0 of the input is a request line
//! (`METHOD TARGET [VERSION]`; when the first token is not a method the whole
//! line is a `GET` target), the other lines `name: value` headers, and the
//! whole input is also the "raw head" pingora would have received. For every
//! request pingora accepts this runs, in the order `request_filter` does:
//! * `parapet::filters::framing::check` (smuggling-safe framing, Host);
//! * `parapet::filters::limits::Limits::check` with the default limits;
//! * a global `parapet::filters::FilterSet` (methods, deny paths and path
//!   regexes, header patterns, required headers, IP allow/deny) for a client
//!   address taken from the input;
//! and `framing::response_content_length` on every line. It also checks that
//! a framing refusal is stable (same request, same answer) and that a value
//! `response_content_length` normalizes is a plain number that itself
//! normalizes to "leave it alone".

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use parapet::config::{ConfigErrors, LimitsConfig, SecurityConfig};
use parapet::filters::framing;
use parapet::filters::limits::Limits;
use parapet::filters::FilterSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;

/// The `security:` section the filters are built from (parsed by parapet's
/// own loader, so a schema change shows up here as a startup failure).
const SECURITY: &str = r#"
security:
  allow: []
  deny: [192.0.2.0/24, "2001:db8::/32"]
  methods: [GET, HEAD, POST]
  deny_paths: [/.git, /admin]
  deny_path_patterns: ["(?i)\\.php$", "^/wp-"]
  deny_headers:
    - {name: User-Agent, pattern: "(?i)sqlmap"}
    - {name: X-Forwarded-Host, pattern: "[<>]"}
  require_headers: [Host]
"#;

struct Filters {
    set: FilterSet,
    limits: Limits,
}

fn filters() -> &'static Filters {
    static FILTERS: OnceLock<Filters> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let raw = parapet::config::parse(SECURITY)
            .unwrap_or_else(|e| panic!("fuzz security config: {e}"));
        let cfg: &SecurityConfig = &raw.security;
        let mut errs = ConfigErrors::default();
        let set = FilterSet::build(cfg, "security", &mut errs);
        let limits = Limits::build(&LimitsConfig::default(), &mut errs);
        assert!(errs.is_empty(), "fuzz filter config: {errs}");
        Filters { set, limits }
    })
}

fn client(data: &[u8]) -> IpAddr {
    // The last bytes pick a client, so deny-listed ones come up too.
    let b = |i: usize| data.get(data.len().wrapping_sub(i + 1)).copied().unwrap_or(0);
    match b(0) % 3 {
        0 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, b(1))),
        1 => IpAddr::V4(Ipv4Addr::new(b(1), b(2), b(3), b(4))),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8 + u16::from(b(1) & 1), 0, 0, 0, 0, 0, u16::from(b(2)))),
    }
}

fuzz_target!(|data: &[u8]| {
    let f = filters();
    let lines = common::lines(data);
    for line in &lines {
        if let Ok(Some(n)) = framing::response_content_length(line) {
            let plain = n.to_string();
            assert_eq!(
                framing::response_content_length(plain.as_bytes()),
                Ok(None),
                "normalized Content-Length {n} is not a plain number"
            );
        }
    }
    let Some(mut req) = common::request_line(lines.first().copied().unwrap_or(b"")) else {
        return;
    };
    common::append_headers(&mut req, lines.iter().skip(1).copied());

    let framing = framing::check(&req, Some(data));
    assert_eq!(framing, framing::check(&req, Some(data)), "framing check is not stable");
    let _ = framing::check(&req, None);
    let _ = framing::raw_has_content_length(data);
    if let Err(refusal) = framing {
        let _ = refusal.as_str();
        return; // 400 and the connection is closed: nothing else runs
    }
    if f.limits.check(&req).is_err() {
        return;
    }
    let _ = f.set.check(&req, client(data));
});
