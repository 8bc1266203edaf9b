//! Hostile input never panics: the config parser, Cache-Control parsing, the
//! cache policy, cache keys, request framing checks, CIDR and hash-key
//! parsing get tens of thousands of generated inputs (a fixed-seed
//! generator, so a failure reproduces). A lightweight stand-in for the fuzz
//! targets, run in CI.

use parapet::cache::directives::Directives;
use parapet::cache::{key, policy};
use parapet::filters::framing;
use pingora::http::RequestHeader;
use std::time::{Duration, SystemTime};

/// xorshift64*: deterministic, dependency-free.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    /// A string made of interesting fragments and random bytes.
    fn text(&mut self, fragments: &[&str], max_parts: u64) -> String {
        let mut s = String::new();
        for _ in 0..(self.next() % max_parts) {
            if self.next() % 4 == 0 {
                s.push(char::from((self.next() % 128) as u8));
            } else {
                s.push_str(self.pick(fragments));
            }
        }
        s
    }
}

const CC: &[&str] = &[
    "max-age",
    "s-maxage",
    "=",
    "\"",
    ",",
    " ",
    "no-store",
    "no-cache",
    "private",
    "public",
    "0",
    "60",
    "99999999999999999999",
    "-1",
    "stale-while-revalidate",
    "stale-if-error",
    "must-revalidate",
    "\\",
    "x=y",
    "must-understand",
    "only-if-cached",
    "min-fresh",
    "max-stale",
];

#[test]
fn cache_control_and_policy_never_panic() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for _ in 0..20_000 {
        let line = g.text(CC, 12);
        let _ = Directives::parse([line.as_bytes()]);
        let mut resp = http::HeaderMap::new();
        for name in [
            "cache-control",
            "expires",
            "date",
            "age",
            "vary",
            "last-modified",
            "cdn-cache-control",
            "etag",
        ] {
            if g.next() % 2 == 0 {
                if let Ok(v) = http::HeaderValue::from_str(&g.text(CC, 6)) {
                    resp.append(name, v);
                }
            }
        }
        let status = (g.next() % 700) as u16;
        let ex = policy::Exchange {
            request_time: t + Duration::from_secs(g.next() % 100),
            response_time: t + Duration::from_secs(g.next() % 100),
        };
        let _ = policy::evaluate(
            &http::Method::GET,
            &http::HeaderMap::new(),
            status,
            &resp,
            ex,
            &policy::RoutePolicy::default(),
        );
        let _ = key::variance(&resp, &resp);
    }
}

const CONFIG: &[&str] = &[
    "listeners:",
    "upstreams:",
    "routes:",
    "server:",
    "cache:",
    "security:",
    "limits:",
    "\n",
    "  ",
    "- ",
    "address: 127.0.0.1:80",
    "backends:",
    "{",
    "}",
    "[",
    "]",
    ":",
    "upstream: a",
    "a:",
    "match:",
    "host: *.x",
    "path_prefix: /",
    "weight: 0",
    "selection: consistent_hash",
    "hash_key: cookie:",
    "max_size: 1GiB",
    "interval: 0s",
    "allow: [10.0.0.0/99]",
    "deny_path_patterns: ['(']",
    "rate_limit: {rate: -1, burst: 0}",
    "'",
    "\"",
    "&a",
    "*a",
    "!!binary",
    "~",
    "null",
    "1e999",
];

#[test]
fn config_parser_never_panics() {
    let mut g = Gen(0xdead_beef_cafe_f00d);
    for _ in 0..5_000 {
        let text = g.text(CONFIG, 30);
        if let Ok(raw) = parapet::config::parse(&text) {
            // Building resolves host names: keep to inputs without them.
            if !text.contains("address") {
                let _ = parapet::runtime::Snapshot::build(&raw);
            }
        }
    }
}

const HEAD: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "host",
    "chunked",
    "5",
    "5, 5",
    "+5",
    " ",
    ",",
    "gzip",
    "a.com",
    "http://a.com/x",
    "/",
    "?",
    "%",
    "\t",
];

#[test]
fn framing_keys_cidrs_and_hash_keys_never_panic() {
    let mut g = Gen(0x0123_4567_89ab_cdef);
    for _ in 0..20_000 {
        let target = if g.next() % 3 == 0 {
            "http://a.com/x?y=1"
        } else {
            "/p?q"
        };
        let mut req = RequestHeader::build("POST", target.as_bytes(), None).unwrap();
        for _ in 0..(g.next() % 5) {
            let name = g.pick(&[
                "content-length",
                "transfer-encoding",
                "host",
                "cookie",
                "vary",
            ]);
            if let Ok(v) = http::HeaderValue::from_str(&g.text(HEAD, 5)) {
                let _ = req.append_header(name, v);
            }
        }
        let raw = g.text(HEAD, 20);
        let _ = framing::check(&req, Some(raw.as_bytes()));
        let _ = framing::response_content_length(raw.as_bytes());
        let _ = key::primary(
            "http",
            &g.text(HEAD, 3),
            (g.next() % 65536) as u16,
            &req,
            &key::KeyPolicy::default(),
        );
        let _ = g.text(HEAD, 4).parse::<parapet::cidr::Cidr>();
        let _ = format!("{}:{}", g.pick(&["header", "cookie", "x"]), g.text(HEAD, 2))
            .parse::<parapet::upstream::HashKey>();
    }
}
