//! The status page for people (like HAProxy's stats page): pools and backend
//! health, request and error rates, cache hit ratio and storage use, and
//! recent reloads. Rendered on the server (works without JavaScript) and
//! refreshed by the browser every few seconds.

use super::overview::{self, Overview};
use crate::runtime::Snapshot;
use std::fmt::Write;

const REFRESH_SECONDS: u32 = 5;

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

fn bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn percent(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{:.1}%", r * 100.0))
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h {}m", s / 3600, s / 60 % 60),
        s => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

const STYLE: &str = "\
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--ok:#12805c;--bad:#c4320a;--warn:#b54708;--accent:#3056d3}\
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:var(--fg);background:var(--bg)}\
header{display:flex;align-items:center;gap:1em;padding:14px 28px;background:#101828;color:#fff}\
header h1{font-size:18px;margin:0;font-weight:600}header .meta{color:#cbd2e1;font-size:13px;margin-left:auto}\
.badge{display:inline-block;padding:2px 9px;border-radius:10px;font-size:12px;font-weight:600}\
.b-ok{background:#d1fadf;color:var(--ok)}.b-bad{background:#fee4e2;color:var(--bad)}.b-warn{background:#fef0c7;color:var(--warn)}\
main{max-width:1200px;margin:0 auto;padding:20px 28px}\
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin-bottom:22px}\
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px}\
.card .label{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}\
.card .value{font-size:24px;font-weight:600;margin-top:4px}.card .sub{color:var(--muted);font-size:12px}\
section{background:var(--card);border:1px solid var(--line);border-radius:10px;margin-bottom:22px;overflow:hidden}\
section h2{font-size:15px;margin:0;padding:12px 16px;border-bottom:1px solid var(--line)}\
table{width:100%;border-collapse:collapse}th,td{padding:8px 16px;text-align:left;border-bottom:1px solid var(--line);white-space:nowrap}\
th{color:var(--muted);font-weight:500;font-size:12px;text-transform:uppercase;letter-spacing:.04em}\
tr:last-child td{border-bottom:0}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
.pool td{background:#f9fafb;font-weight:600}.bar{height:6px;background:var(--line);border-radius:3px;margin-top:6px}\
.bar span{display:block;height:6px;border-radius:3px;background:var(--accent)}\
ul.events{margin:0;padding:10px 16px 12px 34px;font-family:ui-monospace,monospace;font-size:12.5px}\
footer{color:var(--muted);font-size:12px;text-align:center;padding:0 0 24px}a{color:var(--accent)}";

fn card(h: &mut String, label: &str, value: &str, sub: &str, bar: Option<f64>) {
    let _ = write!(
        h,
        "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div><div class=\"sub\">{}</div>",
        esc(label),
        esc(value),
        esc(sub)
    );
    if let Some(fraction) = bar {
        let _ = write!(
            h,
            "<div class=\"bar\"><span style=\"width:{:.1}%\"></span></div>",
            (fraction * 100.0).clamp(0.0, 100.0)
        );
    }
    h.push_str("</div>");
}

pub(super) fn render(snap: &Snapshot) -> String {
    let o = overview::gather(snap);
    let mut h = String::with_capacity(8192);
    let state_badge = if o.state == "serving" {
        "b-ok"
    } else {
        "b-warn"
    };
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Parapet status</title><style>{STYLE}</style></head><body>\
         <header><h1>Parapet {}</h1><span class=\"badge {state_badge}\" id=\"state\">{}</span>\
         <span class=\"meta\">pid {} · up {} (since {}) · refreshes every {REFRESH_SECONDS}s</span></header><main>",
        esc(o.version),
        esc(o.state),
        o.pid,
        duration(o.uptime_seconds),
        esc(&o.started),
    );
    summary(&mut h, &o);
    pools(&mut h, &o);
    routes(&mut h, snap);
    if let Some(f) = &snap.edge.fleet {
        fleet(&mut h, f);
    }
    if !o.certificates.is_empty() {
        certificates(&mut h, &o);
    }
    reloads(&mut h, &o);
    h.push_str(
        "<footer><a href=\"/metrics\">/metrics</a> · <a href=\"/readyz\">/readyz</a> · \
         JSON at /api/status (token)</footer></main></body></html>\n",
    );
    h
}

fn summary(h: &mut String, o: &Overview) {
    h.push_str("<div class=\"cards\" id=\"summary\">");
    let (rps, eps, window) =
        o.rates
            .as_ref()
            .map_or(("–".into(), "–".into(), String::new()), |r| {
                (
                    format!("{:.1}/s", r.requests_per_second),
                    format!("{:.2}/s", r.errors_5xx_per_second),
                    format!("last {:.0}s", r.window_seconds),
                )
            });
    card(
        h,
        "Requests",
        &rps,
        &format!("{} total · {window}", o.requests_total),
        None,
    );
    let errors_total = o.requests_by_class.get("5xx").copied().unwrap_or(0);
    card(
        h,
        "5xx errors",
        &eps,
        &format!("{errors_total} total"),
        None,
    );
    card(
        h,
        "Connections",
        &o.connections_active.to_string(),
        "open client connections",
        None,
    );
    if let Some(c) = &o.cache {
        let recent = o.rates.as_ref().and_then(|r| r.cache_hit_ratio);
        card(
            h,
            "Cache hit ratio",
            &percent(recent.or(c.hit_ratio)),
            &format!("{} since start", percent(c.hit_ratio)),
            recent.or(c.hit_ratio),
        );
        let mem = c.stored_bytes.get("memory").copied().unwrap_or(0).max(0) as f64;
        let cap = c.memory_capacity_bytes as f64;
        card(
            h,
            "Cache memory",
            &bytes(mem),
            &format!(
                "of {} · {} objects",
                bytes(cap),
                c.stored_objects.get("memory").copied().unwrap_or(0)
            ),
            (cap > 0.0).then(|| mem / cap),
        );
        if let Some(disk_cap) = c.disk_capacity_bytes {
            let disk = c.stored_bytes.get("disk").copied().unwrap_or(0).max(0) as f64;
            card(
                h,
                "Cache disk",
                &bytes(disk),
                &format!(
                    "of {} · {} objects",
                    bytes(disk_cap as f64),
                    c.stored_objects.get("disk").copied().unwrap_or(0)
                ),
                (disk_cap > 0).then(|| disk / disk_cap as f64),
            );
        }
    } else {
        card(h, "Cache", "off", "no route caches", None);
    }
    h.push_str("</div>");
}

fn pools(h: &mut String, o: &Overview) {
    h.push_str(
        "<section id=\"pools\"><h2>Upstream pools</h2><table><tr><th>backend</th><th>region</th>\
         <th class=\"num\">weight</th><th>health</th><th class=\"num\">in flight</th><th class=\"num\">requests</th>\
         <th class=\"num\">errors</th><th class=\"num\">latency</th></tr>",
    );
    for p in &o.pools {
        let badge = match p.healthy {
            0 => "b-bad",
            n if n < p.backends.len() => "b-warn",
            _ => "b-ok",
        };
        let _ = write!(
            h,
            "<tr class=\"pool\"><td colspan=\"8\">{} <span class=\"badge {badge}\">{}/{} healthy</span></td></tr>",
            esc(&p.name),
            p.healthy,
            p.backends.len()
        );
        for b in &p.backends {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td><span class=\"badge {}\">{}</span></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&b.backend),
                esc(if b.region.is_empty() { "–" } else { &b.region }),
                b.weight,
                match (b.healthy, b.ejected) {
                    (true, false) => "b-ok",
                    (true, true) => "b-warn",
                    (false, _) => "b-bad",
                },
                match (b.healthy, b.ejected) {
                    (true, false) => "up".to_string(),
                    (true, true) => format!("ejected: failing live requests (ejection {})", b.ejections),
                    (false, _) => "down: failing health checks".to_string(),
                },
                b.in_flight,
                b.requests,
                b.errors,
                b.latency_ms
                    .map_or("–".into(), |ms| format!("{ms:.1} ms")),
            );
        }
    }
    h.push_str("</table></section>");
}

fn routes(h: &mut String, snap: &Snapshot) {
    h.push_str(
        "<section id=\"routes\"><h2>Routes</h2><table><tr><th class=\"num\">#</th><th>route</th>\
         <th>upstream</th><th>cache</th><th>compression</th></tr>",
    );
    for (i, r) in snap.edge.router.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td class=\"num\">{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.name),
            esc(&snap.edge.pools.get(r.upstream).name),
            if r.cache.is_some() {
                "on"
            } else if r.streaming {
                "streaming"
            } else {
                "off"
            },
            if r.compression { "on" } else { "off" },
        );
    }
    h.push_str("</table></section>");
}

fn certificates(h: &mut String, o: &Overview) {
    h.push_str(
        "<section id=\"certificates\"><h2>Certificates</h2><table><tr><th>listener</th>\
         <th>names</th><th>issuer</th><th>source</th><th>expires</th><th>OCSP</th></tr>",
    );
    for c in &o.certificates {
        let left = c.expires_in_seconds;
        let badge = if left < 14 * 86_400 { "b-warn" } else { "b-ok" };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td><span class=\"badge {badge}\">{}</span> in {}</td><td>{}</td></tr>",
            esc(&c.listener),
            esc(&c.names.join(", ")),
            esc(&c.issuer),
            c.source,
            esc(&c.expires),
            duration(left.max(0) as u64),
            if c.ocsp_stapled { "stapled" } else { "-" },
        );
    }
    h.push_str("</table></section>");
}

fn fleet(h: &mut String, fleet: &crate::fleet::Fleet) {
    let view = fleet.view();
    let _ = write!(
        h,
        "<section id=\"fleet\"><h2>Fleet</h2><p>this node: {} · {} of {} node(s) on the ring</p>\
         <table><tr><th>node</th><th>address</th><th>state</th><th>since</th><th>last problem</th></tr>",
        esc(&fleet.node),
        view.ring_size,
        view.members.len()
    );
    for m in &view.members {
        let (badge, state) = match (m.up, m.is_self) {
            (true, true) => ("b-ok", "up (this node)"),
            (true, false) => ("b-ok", "up"),
            (false, _) => ("b-bad", "down"),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><span class=\"badge {badge}\">{state}</span></td><td>{}</td><td>{}</td></tr>",
            esc(m.name.as_deref().unwrap_or("?")),
            m.addr,
            esc(&crate::access_log::rfc3339(m.since)),
            esc(m.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</table></section>");
}

fn reloads(h: &mut String, o: &Overview) {
    h.push_str("<section id=\"reloads\"><h2>Recent starts and reloads</h2><ul class=\"events\">");
    for line in o.reloads.iter().rev() {
        let _ = write!(h, "<li>{}</li>", esc(line));
    }
    let _ = write!(
        h,
        "<li>{} this generation (pid {}) started</li></ul></section>",
        esc(&o.started),
        o.pid
    );
}
