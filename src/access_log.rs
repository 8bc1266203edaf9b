//! The access log: one line per request, JSON (default) or the combined
//! format, to stdout, stderr or a file; with an off switch and sampling.
//!
//! A file is opened in append mode by each process generation, so a
//! zero-downtime reload (after logrotate moved the file away) starts writing
//! a new file while the old generation finishes its last lines in the old
//! one. Each line is one `write` to an `O_APPEND` descriptor, so lines from
//! the two generations never interleave mid-line. Lines are not buffered: an
//! edge node that crashes loses none.
//!
//! The log names the upstream pool, never a backend address, unless
//! `include_backend` is set.

use crate::config::{AccessLogConfig, ConfigErrors};
use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Combined,
}

enum Sink {
    Stdout,
    Stderr,
    File(std::fs::File),
}

/// The built access log.
pub(crate) struct AccessLog {
    format: Format,
    sink: Sink,
    /// Fraction of requests logged (5xx aside).
    sample: f64,
    counter: AtomicU64,
    pub include_backend: bool,
}

/// One request, as the log sees it.
pub(crate) struct Entry<'a> {
    pub time: SystemTime,
    pub client: String,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub protocol: &'static str,
    pub status: u16,
    pub bytes: usize,
    pub duration: Duration,
    pub route: &'a str,
    pub upstream: &'a str,
    pub backend: Option<SocketAddr>,
    /// The client's country and region (with `geo:`).
    pub country: Option<&'a str>,
    pub client_region: Option<&'a str>,
    /// The region of the backend that answered.
    pub region: Option<&'a str>,
    pub tries: usize,
    pub cache: &'a str,
    pub request_id: &'a str,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub tls: bool,
    pub error: Option<&'a str>,
    /// The response head went out but the body broke off (logged only when true).
    pub truncated: bool,
}

impl AccessLog {
    /// `None` when the log is off.
    pub(crate) fn build(
        cfg: Option<&AccessLogConfig>,
        errs: &mut ConfigErrors,
    ) -> Option<AccessLog> {
        let default = AccessLogConfig::default();
        let cfg = cfg.unwrap_or(&default);
        let format = match cfg.format.as_str() {
            "json" => Format::Json,
            "combined" => Format::Combined,
            other => {
                errs.push(
                    "access_log.format",
                    format!("{other:?} is not json or combined"),
                );
                Format::Json
            }
        };
        if !(0.0..=1.0).contains(&cfg.sample) || cfg.sample.is_nan() {
            errs.push("access_log.sample", "a fraction from 0 to 1");
        }
        let sink = match cfg.path.as_str() {
            "stdout" => Sink::Stdout,
            "stderr" => Sink::Stderr,
            file => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
            {
                Ok(f) => Sink::File(f),
                Err(e) => {
                    errs.push("access_log.path", format!("cannot open {file}: {e}"));
                    Sink::Stderr
                }
            },
        };
        if !cfg.enabled {
            return None;
        }
        Some(AccessLog {
            format,
            sink,
            sample: cfg.sample.clamp(0.0, 1.0),
            counter: AtomicU64::new(0),
            include_backend: cfg.include_backend,
        })
    }

    /// Whether this request's line is written (sampling; 5xx always). The
    /// n-th request is kept when `floor(n * sample)` steps up, so exactly that
    /// fraction of requests is logged, evenly spread.
    pub(crate) fn wants(&self, status: u16) -> bool {
        if status >= 500 || self.sample >= 1.0 {
            return true;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample).floor() > (n * self.sample).floor()
    }

    pub(crate) fn write(&self, e: &Entry) {
        let mut line = String::with_capacity(320);
        match self.format {
            Format::Json => json(&mut line, e, self.include_backend),
            Format::Combined => combined(&mut line, e),
        }
        line.push('\n');
        // A failed write (full disk, closed stdout) must not fail requests.
        let _ = match &self.sink {
            Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Sink::File(f) => (&*f).write_all(line.as_bytes()),
        };
    }
}

fn json(out: &mut String, e: &Entry, include_backend: bool) {
    out.push('{');
    let mut first = true;
    let mut field = |out: &mut String, name: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
    };
    field(out, "time");
    quoted(out, &rfc3339(e.time));
    for (name, value) in [
        ("client_ip", Some(e.client.as_str())),
        ("method", Some(e.method)),
        ("host", Some(e.host)),
        ("path", Some(e.path)),
        ("query", e.query),
        ("protocol", Some(e.protocol)),
    ] {
        if let Some(v) = value {
            field(out, name);
            quoted(out, v);
        }
    }
    field(out, "status");
    let _ = write!(out, "{}", e.status);
    field(out, "bytes");
    let _ = write!(out, "{}", e.bytes);
    field(out, "duration_ms");
    let _ = write!(out, "{:.3}", e.duration.as_secs_f64() * 1000.0);
    for (name, value) in [
        ("route", Some(e.route)),
        ("upstream", Some(e.upstream)),
        ("cache", Some(e.cache)),
        ("request_id", Some(e.request_id)),
        ("country", e.country),
        ("client_region", e.client_region),
        ("region", e.region),
        ("referer", e.referer),
        ("user_agent", e.user_agent),
        ("error", e.error),
    ] {
        if let Some(v) = value {
            field(out, name);
            quoted(out, v);
        }
    }
    field(out, "tries");
    let _ = write!(out, "{}", e.tries);
    field(out, "tls");
    out.push_str(if e.tls { "true" } else { "false" });
    if e.truncated {
        field(out, "truncated");
        out.push_str("true");
    }
    if include_backend {
        if let Some(b) = e.backend {
            field(out, "backend");
            quoted(out, &b.to_string());
        }
    }
    out.push('}');
}

/// A JSON string with everything that needs escaping escaped.
fn quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Apache/nginx combined format, with the request id and duration added
/// at the end as nginx users commonly do.
fn combined(out: &mut String, e: &Entry) {
    let clean = |s: &str| {
        s.replace(['"', '\\'], "_")
            .replace(|c: char| c.is_control(), "_")
    };
    let target = match e.query {
        Some(q) => format!("{}?{}", e.path, q),
        None => e.path.to_string(),
    };
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {:.3}",
        e.client,
        clf_time(e.time),
        clean(e.method),
        clean(&target),
        e.protocol,
        e.status,
        e.bytes,
        clean(e.referer.unwrap_or("-")),
        clean(e.user_agent.unwrap_or("-")),
        clean(e.request_id),
        e.duration.as_secs_f64(),
    );
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, day, s / 3600, s / 60 % 60, s % 60, d.subsec_millis())
}

/// `2026-11-22T09:51:19.123Z`
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, ms) = split(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// `22/Nov/2026:09:51:19 +0000`
fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = split(t);
    format!(
        "{d:02}/{}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_795_167_079_123),
            client: "192.0.2.7".into(),
            method: "GET",
            host: "example.com",
            path: "/a\"b\\c\n",
            query: Some("x=1"),
            protocol: "HTTP/1.1",
            status: 200,
            bytes: 1234,
            duration: Duration::from_micros(2500),
            route: "api",
            upstream: "app",
            backend: Some("10.0.0.1:80".parse().unwrap()),
            country: None,
            client_region: None,
            region: None,
            tries: 1,
            cache: "hit",
            request_id: "abc",
            referer: None,
            user_agent: Some("curl/8\u{1}"),
            tls: true,
            error: None,
            truncated: false,
        }
    }

    #[test]
    fn times_format_as_rfc3339_and_clf() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_167_079_123);
        assert_eq!(rfc3339(t), "2026-11-20T09:31:19.123Z");
        assert_eq!(clf_time(t), "20/Nov/2026:09:31:19 +0000");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
    }

    #[test]
    fn json_lines_escape_and_hide_the_backend() {
        let mut s = String::new();
        json(&mut s, &entry(), false);
        assert!(
            s.starts_with("{\"time\":\"2026-11-20T09:31:19.123Z\""),
            "{s}"
        );
        assert!(s.contains("\"path\":\"/a\\\"b\\\\c\\n\""), "{s}");
        assert!(s.contains("\"user_agent\":\"curl/8\\u0001\""), "{s}");
        assert!(s.contains("\"duration_ms\":2.500"), "{s}");
        assert!(!s.contains("10.0.0.1"), "{s}");
        assert!(!s.contains("referer"), "absent fields are left out: {s}");
        let mut s = String::new();
        json(&mut s, &entry(), true);
        assert!(s.contains("\"backend\":\"10.0.0.1:80\""), "{s}");
    }

    #[test]
    fn combined_lines() {
        let mut s = String::new();
        combined(&mut s, &entry());
        assert_eq!(
            s,
            "192.0.2.7 - - [20/Nov/2026:09:31:19 +0000] \"GET /a_b_c_?x=1 HTTP/1.1\" 200 1234 \"-\" \"curl/8_\" abc 0.003"
        );
    }

    #[test]
    fn sampling_keeps_errors() {
        let cfg = AccessLogConfig {
            sample: 0.25,
            ..AccessLogConfig::default()
        };
        let log = AccessLog::build(Some(&cfg), &mut ConfigErrors::default()).unwrap();
        let kept = (0..1000).filter(|_| log.wants(200)).count();
        assert_eq!(kept, 250);
        let cfg = AccessLogConfig {
            sample: 0.75,
            ..AccessLogConfig::default()
        };
        let log = AccessLog::build(Some(&cfg), &mut ConfigErrors::default()).unwrap();
        assert_eq!((0..1000).filter(|_| log.wants(200)).count(), 750);
        assert!((0..10).all(|_| log.wants(502)));
        let off = AccessLogConfig {
            sample: 0.0,
            ..AccessLogConfig::default()
        };
        let log = AccessLog::build(Some(&off), &mut ConfigErrors::default()).unwrap();
        assert!(!log.wants(200));
        assert!(log.wants(500));
    }
}
