//! A server-rendered status page: works without JavaScript, refreshes itself.

use crate::lifecycle;
use crate::runtime::Snapshot;
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(snap: &Snapshot) -> String {
    let mut h = String::with_capacity(4096);
    let state = if lifecycle::is_draining() {
        "draining"
    } else {
        "serving"
    };
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>Parapet status</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse;margin-bottom:2em}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}\
         .up{{color:#0a0}}.down{{color:#c00;font-weight:bold}}</style></head><body>\
         <h1>Parapet {} <small>({state}, pid {})</small></h1>",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    h.push_str("<h2>Upstreams</h2><table><tr><th>pool</th><th>backend</th><th>weight</th><th>region</th><th>health</th></tr>");
    for pool in snap.pools.iter() {
        for b in &pool.backends {
            let healthy = pool.is_healthy(b.addr);
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                esc(&pool.name),
                esc(&b.label),
                b.addr,
                b.weight,
                esc(&b.region),
                if healthy { "up" } else { "down" },
                if healthy { "healthy" } else { "unhealthy" },
            );
        }
    }
    h.push_str("</table><h2>Routes</h2><table><tr><th>#</th><th>route</th><th>upstream</th></tr>");
    for (i, r) in snap.router.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{i}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&snap.pools.get(r.upstream).name)
        );
    }
    h.push_str("</table><p><a href=\"/metrics\">metrics</a></p></body></html>\n");
    h
}
