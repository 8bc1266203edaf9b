//! Integration-test support for Parapet.
//!
//! Every integration test binary pulls this in with `mod support;` and uses
//! the subset it needs. Everything here talks real TCP on `127.0.0.1` with
//! ports chosen by the kernel, and nothing synchronises by sleeping: waiting
//! is always a poll with a deadline ([`wait_until`]).
//!
//! * [`Origin`]: a real HTTP/1.1 origin (keep-alive, chunked and
//!   `Content-Length` request bodies) that echoes what it received in a line
//!   format parsed by [`parse_echo`]. It can be stopped (port closed, live
//!   connections cut) and restarted on the same address.
//! * [`get`], [`request`], [`Client`], [`raw`]: a small blocking HTTP/1.1
//!   client over `std::net::TcpStream`.
//! * [`Parapet`]: the proxy under test as a real child process, with its
//!   config written to a private temp dir.
//! * [`Ports`], [`base_config`]: fresh ports and the common config preamble.
//!
//! Parapet's config schema, for reference when writing test configs:
//!
//! ```yaml
//! upstreams:
//!   NAME:
//!     backends: [{address: "127.0.0.1:1234", weight: 1}]
//!     selection: round_robin            # or consistent_hash
//!     hash_key: uri                     # uri|path|client_ip|header:NAME|cookie:NAME
//!     health_check: {kind: http, path: /healthz, interval: 200ms, timeout: 500ms,
//!                    healthy_threshold: 1, unhealthy_threshold: 1}   # kind: http|tcp
//!     retries: 2
//!     discovery: {interval: 200ms, resolver: "127.0.0.1:PORT"}   # DNS re-resolution
//! routes:
//!   - match: {host: example.com, path_prefix: /api}
//!     upstream: NAME
//! ```
#![allow(dead_code)]

pub mod pki;

pub mod dns;
pub mod mmdb;
pub mod raw_origin;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Read/write timeout of the blocking client.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Signal numbers (Linux) for [`Parapet::signal`].
pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGUSR2: i32 = 12;
pub const SIGTERM: i32 = 15;

/// Largest request or response head either side accepts.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------

/// A currently free TCP port on 127.0.0.1 (bind to port 0, read it, drop).
///
/// Another process may in principle grab it before the caller binds it; on
/// loopback in a test run that race is negligible.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Poll `f` every 20 ms until it returns true; panic mentioning `what` if it
/// has not done so within `deadline`. `f` is always called at least once,
/// and once more after the deadline passes.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= end {
            if f() {
                return;
            }
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// True if a TCP connect to `addr` is refused or fails within 1 s.
pub fn is_closed(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err()
}

// ---------------------------------------------------------------------------
// Origin
// ---------------------------------------------------------------------------

/// Counters and switches shared between an [`Origin`] handle and its server.
struct OriginState {
    id: String,
    hits: AtomicUsize,
    health_hits: AtomicUsize,
    healthy: AtomicBool,
}

/// A running server: its thread and the means to stop it.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// A real HTTP/1.1 origin server on 127.0.0.1, on its own thread with its own
/// (current-thread) tokio runtime; it handles any number of concurrent
/// keep-alive connections.
///
/// Every response carries `Content-Type: text/plain`,
/// `Server: secret-origin/1.0`, `X-Powered-By: PHP/8.0`, `X-Origin-Id: <id>`
/// and `Content-Length`. The body of an ordinary response is the echo format
/// read by [`parse_echo`]:
///
/// ```text
/// origin=<id>
/// method=<METHOD>
/// path=<request-target as received>
/// h:<lowercase-name>=<value>      (one line per request header, in order)
/// body_len=<bytes of request body received>
/// ```
///
/// Paths (matched without the query string):
/// * `/healthz`: `200 ok` or `503 unhealthy` per [`Origin::set_healthy`];
///   counted by [`Origin::health_hits`], not [`Origin::hits`].
/// * `/status/<code>`: that status with the echo body (no body for 1xx, 204,
///   304).
/// * `/slow/<ms>`: waits `ms` milliseconds, then answers 200 with the echo.
/// * `/close`: answers with `Connection: close` and closes the connection.
/// * `/truncate`: announces 100 bytes more than it sends, then closes.
/// * `/size/<n>[/...]`: 200 with a body of exactly `n` bytes.
/// * anything else: 200 with the echo.
///
/// Response control for cache tests: every `X-Respond: Name: Value` request
/// header becomes a response header; when one of them is an `ETag` equal to
/// the request's `If-None-Match`, the answer is `304` without a body.
///
/// Requests with `Connection: close` (or HTTP/1.0 without keep-alive) get a
/// `Connection: close` response and the connection is closed. `Expect:
/// 100-continue` is answered with `100 Continue`. HEAD gets headers only.
///
/// [`Origin::stop`] (also run on drop) closes the listener *and* every open
/// connection, so a connect afterwards is refused. The counters survive
/// [`Origin::restart`].
pub struct Origin {
    addr: SocketAddr,
    state: Arc<OriginState>,
    running: Option<Running>,
}

impl Origin {
    /// Start an origin named `id` on a fresh port of 127.0.0.1.
    pub fn start(id: &str) -> Origin {
        Origin::start_on(id, "127.0.0.1:0".parse().unwrap())
    }

    /// Start an origin named `id` on `addr` (port 0: a fresh port). Binding is
    /// retried for up to 5 s while the address is still in use, e.g. right
    /// after another origin on it stopped.
    pub fn start_on(id: &str, addr: SocketAddr) -> Origin {
        let state = Arc::new(OriginState {
            id: id.to_string(),
            hits: AtomicUsize::new(0),
            health_hits: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
        });
        let mut origin = Origin {
            addr,
            state,
            running: None,
        };
        origin.listen(addr);
        origin
    }

    /// The address the origin listens on (also while stopped).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `addr()` as `"127.0.0.1:PORT"`, handy for configs.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The origin's id, as echoed in `X-Origin-Id` and `origin=`.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Requests served, excluding `/healthz`.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Requests to `/healthz` served.
    pub fn health_hits(&self) -> usize {
        self.state.health_hits.load(Ordering::SeqCst)
    }

    /// Zero both counters.
    pub fn reset_counters(&self) {
        self.state.hits.store(0, Ordering::SeqCst);
        self.state.health_hits.store(0, Ordering::SeqCst);
    }

    /// Make `/healthz` answer 200 (`true`, the default) or 503 (`false`).
    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Whether the server is currently running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Stop listening and close every open connection; returns once the
    /// port is closed. Idempotent.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            running
                .thread
                .join()
                .expect("origin server thread panicked");
        }
    }

    /// Stop (if running) and listen again on the same address, keeping the
    /// id, the counters and the health switch.
    pub fn restart(&mut self) {
        self.stop();
        self.listen(self.addr);
    }

    fn listen(&mut self, addr: SocketAddr) {
        // std's bind sets SO_REUSEADDR on Unix, so our own TIME_WAIT
        // connections on the port don't block a rebind; retry briefly for
        // anything else still holding it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("origin {}: bind {addr}: {e}", self.state.id),
            }
        };
        self.addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let state = self.state.clone();
        let thread = thread::Builder::new()
            .name(format!("origin-{}", self.state.id))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("origin runtime");
                rt.block_on(accept_loop(listener, state, stop_rx));
                // Dropping the runtime drops every connection task and with it
                // every socket: that is what closes live connections.
                drop(rt);
            })
            .expect("spawn origin thread");
        self.running = Some(Running { stop, thread });
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(());
            // Don't turn an ongoing panic into an abort.
            let _ = running.thread.join();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<OriginState>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, state.clone()));
                }
            }
        }
    }
}

/// A parsed request head.
struct RequestHead {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }
    fn has_token(&self, name: &str, token: &str) -> bool {
        has_token(&self.headers, name, token)
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, state: Arc<OriginState>) {
    use tokio::io::AsyncWriteExt;
    let (rd, mut wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::new(rd);
    loop {
        let head = match read_request_head(&mut rd).await {
            Ok(Some(head)) => head,
            Ok(None) => return, // clean EOF between requests
            Err(_) => {
                let _ = wr
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                return;
            }
        };
        if head.has_token("expect", "100-continue")
            && head.version == "HTTP/1.1"
            && wr
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let body_len = match read_request_body(&mut rd, &head).await {
            Ok(n) => n,
            Err(_) => return,
        };

        let path = head.target.split('?').next().unwrap_or("");
        let mut close = head.has_token("connection", "close")
            || (head.version == "HTTP/1.0" && !head.has_token("connection", "keep-alive"));
        let (status, body): (u16, Vec<u8>) = if path == "/healthz" {
            state.health_hits.fetch_add(1, Ordering::SeqCst);
            if state.healthy.load(Ordering::SeqCst) {
                (200, b"ok".to_vec())
            } else {
                (503, b"unhealthy".to_vec())
            }
        } else {
            state.hits.fetch_add(1, Ordering::SeqCst);
            let echo = echo_body(&state.id, &head, body_len);
            if let Some(code) = path.strip_prefix("/status/") {
                match code.parse::<u16>() {
                    Ok(c) if (100..=999).contains(&c) && c != 101 => (c, echo),
                    _ => (400, echo),
                }
            } else if let Some(n) = path.strip_prefix("/size/") {
                // A body of exactly n bytes (capped at 64 MiB).
                let n = n
                    .split('/')
                    .next()
                    .unwrap_or("0")
                    .parse::<usize>()
                    .unwrap_or(0)
                    .min(64 << 20);
                (200, vec![b's'; n])
            } else if let Some(ms) = path.strip_prefix("/slow/") {
                let ms = ms.parse::<u64>().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                (200, echo)
            } else {
                if path == "/close" {
                    close = true;
                }
                (200, echo)
            }
        };

        let extra: Vec<(String, String)> = head
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-respond"))
            .filter_map(|(_, v)| v.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let etag = extra
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("etag"))
            .map(|(_, v)| v.as_str());
        let inm = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("if-none-match"))
            .map(|(_, v)| v.as_str());
        let status = if status == 200 && etag.is_some() && etag == inm {
            304
        } else {
            status
        };
        let truncate = path == "/truncate";
        let bodyless_status = (100..200).contains(&status) || status == 204 || status == 304;
        let mut out = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain\r\nServer: secret-origin/1.0\r\nX-Powered-By: PHP/8.0\r\nX-Origin-Id: {}\r\n",
            reason(status),
            state.id
        );
        for (n, v) in &extra {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if !bodyless_status {
            let announced = body.len() + if truncate { 100 } else { 0 };
            out.push_str(&format!("Content-Length: {announced}\r\n"));
            if truncate {
                close = true;
            }
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !bodyless_status && head.method != "HEAD" {
            out.extend_from_slice(&body);
        }
        if wr.write_all(&out).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        if close {
            let _ = wr.shutdown().await;
            return;
        }
    }
}

fn echo_body(id: &str, head: &RequestHead, body_len: usize) -> Vec<u8> {
    let mut s = format!(
        "origin={id}\nmethod={}\npath={}\n",
        head.method, head.target
    );
    for (name, value) in &head.headers {
        s.push_str(&format!("h:{}={}\n", name.to_ascii_lowercase(), value));
    }
    s.push_str(&format!("body_len={body_len}\n"));
    s.into_bytes()
}

/// Read one line (up to and including `\n`), bounded by `MAX_HEAD`; returns
/// the line without the CRLF, or `None` on EOF before any byte.
async fn read_line_async<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<String>> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(MAX_HEAD as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    Ok(Some(trim_crlf(&buf)))
}

async fn read_request_head<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<RequestHead>> {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let line = loop {
        match read_line_async(r).await? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None)
            if !m.is_empty() && !t.is_empty() && v.starts_with("HTTP/") =>
        {
            (m.to_string(), t.to_string(), v.to_string())
        }
        _ => return Err(invalid(format!("bad request line {line:?}"))),
    };
    let mut headers = Vec::new();
    let mut size = line.len();
    loop {
        let l = read_line_async(r)
            .await?
            .ok_or_else(|| invalid("EOF in request head"))?;
        if l.is_empty() {
            break;
        }
        size += l.len();
        if size > MAX_HEAD {
            return Err(invalid("request head too large"));
        }
        headers.push(parse_header_line(&l)?);
    }
    Ok(Some(RequestHead {
        method,
        target,
        version,
        headers,
    }))
}

/// Read and discard the request body; returns its length in bytes.
async fn read_request_body<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    head: &RequestHead,
) -> io::Result<usize> {
    use tokio::io::AsyncReadExt;
    if head.has_token("transfer-encoding", "chunked") {
        let mut total = 0usize;
        loop {
            let line = read_line_async(r)
                .await?
                .ok_or_else(|| invalid("EOF in chunk size"))?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !read_line_async(r)
                    .await?
                    .ok_or_else(|| invalid("EOF in trailers"))?
                    .is_empty()
                {}
                return Ok(total);
            }
            let copied =
                tokio::io::copy(&mut (&mut *r).take(size as u64), &mut tokio::io::sink()).await?;
            if copied != size as u64 {
                return Err(invalid("EOF in chunk"));
            }
            total += size;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).await?;
            if &crlf != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(cl) = head.header("content-length") {
        let len: u64 = cl
            .trim()
            .parse()
            .map_err(|_| invalid("bad content-length"))?;
        let copied = tokio::io::copy(&mut (&mut *r).take(len), &mut tokio::io::sink()).await?;
        if copied != len {
            return Err(invalid("EOF in body"));
        }
        Ok(len as usize)
    } else {
        Ok(0)
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// What an [`Origin`] echoed back, as parsed by [`parse_echo`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    pub origin: String,
    pub method: String,
    /// The request-target exactly as the origin received it (with query).
    pub path: String,
    /// Request headers as received, in order; names lowercased.
    pub headers: Vec<(String, String)>,
    /// Length in bytes of the request body the origin received.
    pub body_len: usize,
}

impl Echo {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in received order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        headers_in(&self.headers, name)
    }
}

/// Parse an [`Origin`] echo body. Unknown lines are ignored; panics if the
/// body has no `origin=` line (i.e. it did not come from an `Origin`).
pub fn parse_echo(body: &str) -> Echo {
    let mut echo = Echo::default();
    let mut seen_origin = false;
    for line in body.lines() {
        if let Some(h) = line.strip_prefix("h:") {
            let (name, value) = h.split_once('=').unwrap_or((h, ""));
            echo.headers.push((name.to_string(), value.to_string()));
        } else if let Some(v) = line.strip_prefix("origin=") {
            echo.origin = v.to_string();
            seen_origin = true;
        } else if let Some(v) = line.strip_prefix("method=") {
            echo.method = v.to_string();
        } else if let Some(v) = line.strip_prefix("path=") {
            echo.path = v.to_string();
        } else if let Some(v) = line.strip_prefix("body_len=") {
            echo.body_len = v.parse().unwrap_or(0);
        }
    }
    assert!(seen_origin, "not an origin echo body: {body:?}");
    echo
}

// ---------------------------------------------------------------------------
// Blocking HTTP/1.1 client
// ---------------------------------------------------------------------------

/// An HTTP response as read by the blocking client. Interim 1xx responses
/// (other than 101) are skipped; chunked bodies are decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Headers in received order, names as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in received order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        headers_in(&self.headers, name)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as an [`Origin`] echo (panics if it is not one).
    pub fn echo(&self) -> Echo {
        parse_echo(&self.text())
    }
}

/// `GET path` on a fresh connection with `Connection: close`; panics on any
/// I/O error. `Host: localhost` is sent unless `headers` has a host.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, b"")
        .unwrap_or_else(|e| panic!("GET http://{addr}{path} failed: {e}"))
}

/// One request on a fresh connection with `Connection: close` (unless
/// `headers` has a connection header).
///
/// `Host: localhost` is added unless `headers` has a host. `Content-Length`
/// is added when the body is non-empty or the method is POST/PUT/PATCH,
/// unless `headers` already has a content-length or transfer-encoding (then
/// `body` is sent as given, e.g. pre-chunked).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    request_with_timeout(addr, method, path, headers, body, IO_TIMEOUT)
}

fn request_with_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(&encode_request(method, path, headers, body, true))?;
    read_response(&mut reader, method == "HEAD")
}

/// The path of the first of `names` installed on this machine. A test that
/// needs an outside program (Prometheus, Chromium) calls this first: when
/// none is installed, the test is skipped with a line saying so (`None`),
/// unless `PARAPET_REQUIRE_TOOLS` is set, as `.ci/run` does after installing
/// them, where a missing program fails the test.
pub fn external_tool(names: &[&str], package: &str) -> Option<String> {
    for name in names {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !path.is_empty() {
            return Some(path);
        }
    }
    let why = format!(
        "{} not installed (Debian package {package}; .ci/run installs it)",
        names[0]
    );
    if std::env::var_os("PARAPET_REQUIRE_TOOLS").is_some() {
        panic!("{why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Reads an HTTP/2 body to its end, releasing flow-control capacity as it
/// goes (the body's trailers, if any, can be read afterwards).
pub async fn h2_body(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("h2 body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

/// One request over an already connected stream (a TLS stream, say), with
/// `Connection: close`; see [`request`] for the headers added.
pub fn request_over<S: Read + Write>(
    stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(&encode_request(method, path, headers, body, true))?;
    read_response(&mut reader, method == "HEAD")
}

/// A keep-alive connection: successive [`Client::send`] calls reuse it.
///
/// Nothing is retried or reconnected: if the peer has closed the connection,
/// `send` returns the error and the caller decides whether to connect anew.
pub struct Client {
    addr: SocketAddr,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connect to `addr`; panics if that fails (see [`Client::try_connect`]).
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
    }

    /// Connect to `addr` with the 5 s client timeouts.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        Ok(Client {
            addr,
            reader: BufReader::new(stream),
        })
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The local address of the connection (tells connections apart).
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().expect("local_addr")
    }

    /// Send one request on this connection and read its response. Headers
    /// and body are treated as in [`request`], except that no `Connection`
    /// header is added (HTTP/1.1 keep-alive).
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        self.reader
            .get_mut()
            .write_all(&encode_request(method, path, headers, body, false))?;
        read_response(&mut self.reader, method == "HEAD")
    }

    /// `send("GET", path, headers, b"")`, panicking on error.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", path, headers, b"")
            .unwrap_or_else(|e| panic!("keep-alive GET http://{}{path} failed: {e}", self.addr))
    }

    /// True if the peer has closed the connection (EOF or error pending).
    /// Does not consume response bytes.
    pub fn is_closed_by_peer(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return false;
        }
        let stream = self.reader.get_ref();
        if stream.set_nonblocking(true).is_err() {
            return true;
        }
        let mut b = [0u8; 1];
        let closed = match stream.peek(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != io::ErrorKind::WouldBlock,
        };
        let _ = stream.set_nonblocking(false);
        closed
    }
}

/// Write `bytes` to a fresh connection (write half left open), then read
/// until the peer closes or 2 s pass; returns everything read (possibly
/// nothing). Panics only if the connect or the write fails.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
        .write_all(bytes)
        .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break, // timeout or reset: return what we have
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    out
}

fn encode_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has("content-length")
        && !has("transfer-encoding")
        && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if close && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Read one line bounded by `MAX_HEAD`, without CRLF; EOF is an error.
fn read_line_sync<R: BufRead>(r: &mut R) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_HEAD as u64)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "line too long or truncated",
        ));
    }
    Ok(trim_crlf(&buf))
}

fn read_response<R: BufRead>(r: &mut R, head_request: bool) -> io::Result<Response> {
    loop {
        let line = read_line_sync(r)?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|_| version.starts_with("HTTP/"))
            .ok_or_else(|| invalid(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let l = read_line_sync(r)?;
            if l.is_empty() {
                break;
            }
            headers.push(parse_header_line(&l)?);
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // interim response
        }
        let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304
        {
            Vec::new()
        } else if has_token(&headers, "transfer-encoding", "chunked") {
            read_chunked(r)?
        } else if let Some(cl) = header_in(&headers, "content-length") {
            let len: usize = cl
                .trim()
                .parse()
                .map_err(|_| invalid(format!("bad content-length {cl:?}")))?;
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            body
        } else {
            let mut body = Vec::new();
            r.read_to_end(&mut body)?;
            body
        };
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size = parse_chunk_size(&read_line_sync(r)?)?;
        if size == 0 {
            while !read_line_sync(r)?.is_empty() {} // trailers
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if !read_line_sync(r)?.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

// ---------------------------------------------------------------------------
// Shared HTTP helpers
// ---------------------------------------------------------------------------

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn trim_crlf(line: &[u8]) -> String {
    let mut end = line.len();
    while end > 0 && (line[end - 1] == b'\n' || line[end - 1] == b'\r') {
        end -= 1;
    }
    String::from_utf8_lossy(&line[..end]).into_owned()
}

fn parse_header_line(line: &str) -> io::Result<(String, String)> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
    if name.is_empty() || name.contains(' ') {
        return Err(invalid(format!("bad header name {name:?}")));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

fn parse_chunk_size(line: &str) -> io::Result<usize> {
    let hex = line.split(';').next().unwrap_or("").trim();
    usize::from_str_radix(hex, 16).map_err(|_| invalid(format!("bad chunk size {line:?}")))
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn headers_in<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers_in(headers, name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

// ---------------------------------------------------------------------------
// Parapet process
// ---------------------------------------------------------------------------

/// The proxy listener and admin ports for one Parapet instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub proxy: u16,
    pub admin: u16,
}

impl Ports {
    /// Two distinct free ports.
    pub fn new() -> Ports {
        // Hold the first open while picking the second so they differ.
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = TcpListener::bind("127.0.0.1:0").expect("bind");
        Ports {
            proxy: a.local_addr().unwrap().port(),
            admin: b.local_addr().unwrap().port(),
        }
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.proxy))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.admin))
    }
}

/// The common config preamble (server, one listener, admin) for `ports`,
/// followed by `upstreams_and_routes` verbatim. Contains `{dir}`
/// placeholders, which [`Parapet`] substitutes.
pub fn base_config(ports: &Ports, upstreams_and_routes: &str) -> String {
    let mut s = format!(
        "server:\n  threads: 2\n  pid_file: \"{{dir}}/parapet.pid\"\n  upgrade_sock: \"{{dir}}/upgrade.sock\"\n  grace_period_seconds: 1\n  graceful_shutdown_timeout_seconds: 1\nlisteners:\n  - address: \"127.0.0.1:{}\"\nadmin:\n  address: \"127.0.0.1:{}\"\n",
        ports.proxy, ports.admin
    );
    s.push_str(upstreams_and_routes);
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// A currently free address on 127.0.0.1 (see [`free_port`]).
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `yaml` (from [`base_config`]) with more listeners before its own:
/// `entries` are list items (`  - address: ...`), each line indented as in
/// the file.
pub fn with_listeners(yaml: &str, entries: &str) -> String {
    yaml.replacen("listeners:\n", &format!("listeners:\n{entries}"), 1)
}

/// `yaml` with an extra cleartext HTTP/2 (h2c) listener at `addr`.
pub fn with_h2c_listener(yaml: &str, addr: SocketAddr) -> String {
    with_listeners(yaml, &format!("  - address: \"{addr}\"\n    h2c: true\n"))
}

/// A config with one upstream pool `o` over `origin` (`host:port`), followed
/// by `rest` (routes and any other sections) verbatim.
pub fn one_pool_config(ports: &Ports, origin: &str, rest: &str) -> String {
    base_config(
        ports,
        &format!("upstreams:\n  o:\n    backends: [{{address: \"{origin}\"}}]\n{rest}"),
    )
}

impl Parapet {
    /// Parapet in front of one origin: pool `o`, then `rest` (routes, ...).
    pub fn in_front_of(origin: &str, rest: &str) -> Parapet {
        let ports = Ports::new();
        Parapet::start_with(&ports, &one_pool_config(&ports, origin, rest))
    }
}

/// The `parapet` binary built for this test crate.
fn parapet_bin() -> &'static str {
    env!("CARGO_BIN_EXE_parapet")
}

/// Run `parapet` once with `args` (e.g. `["-t", "-c", file]`) and collect
/// its output. `RUST_LOG=info` is set.
pub fn run_parapet(args: &[&str]) -> Output {
    Command::new(parapet_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run parapet")
}

/// `parapet -t -c FILE` on `yaml` (written as is to a temp file): whether it
/// exited 0, its stdout and its stderr.
pub fn check_config(yaml: &str) -> (bool, String, String) {
    let dir = temp_dir("parapet-check");
    let file = dir.join("c.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = run_parapet(&["-t", "-c", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A counter or gauge with exactly these labels (`a="1",b="2"`, in the
/// order Prometheus prints them; empty for a metric without labels) from
/// `/metrics` text.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// A fresh, empty, uniquely named directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Parapet running as a child process, with its config, pid file, upgrade
/// socket and logs in a private temp dir.
///
/// The YAML given to it may say `{dir}` wherever it wants that dir's path.
/// On drop the process gets SIGTERM, then SIGKILL after 5 s; the temp dir
/// is removed, or kept and its path printed if the thread is panicking.
pub struct Parapet {
    child: Child,
    exit: Option<ExitStatus>,
    dir: PathBuf,
    config: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Parapet {
    /// `parapet -c <dir>/parapet.yaml`, with the proxy and admin addresses
    /// read from the YAML (first `listeners` address, `admin.address`).
    /// Returns once `GET /readyz` on the admin address answers 200.
    pub fn start(yaml: &str) -> Parapet {
        Parapet::spawn(&[], yaml, None, None)
    }

    /// Like [`Parapet::start`] with the addresses given by `ports`.
    pub fn start_with(ports: &Ports, yaml: &str) -> Parapet {
        Parapet::spawn(&[], yaml, Some(ports), None)
    }

    /// `parapet run -c <file>`: the supervisor, which keeps its PID and turns
    /// SIGHUP into a zero-downtime reload. Otherwise like [`Parapet::start`].
    pub fn supervise(yaml: &str) -> Parapet {
        Parapet::spawn(&["run"], yaml, None, None)
    }

    /// Like [`Parapet::supervise`] with the addresses given by `ports`.
    pub fn supervise_with(ports: &Ports, yaml: &str) -> Parapet {
        Parapet::spawn(&["run"], yaml, Some(ports), None)
    }

    /// Like [`Parapet::start_with`], the process limited to `open_files`
    /// file descriptors (`ulimit -n`).
    pub fn start_with_file_limit(ports: &Ports, yaml: &str, open_files: u64) -> Parapet {
        Parapet::spawn(&[], yaml, Some(ports), Some(open_files))
    }

    fn spawn(
        pre_args: &[&str],
        yaml: &str,
        ports: Option<&Ports>,
        open_files: Option<u64>,
    ) -> Parapet {
        let dir = temp_dir("parapet-test");
        let config = dir.join("parapet.yaml");
        let text = substitute_dir(yaml, &dir);
        std::fs::write(&config, &text).expect("write config");
        let (addr, admin) = match ports {
            Some(p) => (p.proxy_addr(), p.admin_addr()),
            None => (
                yaml_address(&text, "listeners").expect("config has no listeners address"),
                yaml_address(&text, "admin").expect("config has no admin.address"),
            ),
        };
        let stdout = std::fs::File::create(dir.join("stdout.log")).expect("create stdout.log");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut command = Command::new(parapet_bin());
        command
            .args(pre_args)
            .arg("-c")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if let Some(n) = open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; the closure touches
            // nothing else between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().expect("spawn parapet");
        let mut p = Parapet {
            child,
            exit: None,
            dir,
            config,
            addr,
            admin,
        };
        p.wait_ready(Duration::from_secs(20));
        p
    }

    /// Poll `GET /readyz` on the admin address until it answers 200. Panics,
    /// with the logs, if the process exits first or `timeout` passes (then
    /// the process is killed).
    pub fn wait_ready(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                panic!(
                    "parapet exited with {status} before becoming ready (dir {})\n{}",
                    self.dir.display(),
                    self.logs()
                );
            }
            match request_with_timeout(
                self.admin,
                "GET",
                "/readyz",
                &[],
                b"",
                Duration::from_secs(1),
            ) {
                Ok(r) if r.status == 200 => return,
                _ => {}
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                self.exit = self.child.wait().ok();
                panic!(
                    "parapet not ready on {} within {timeout:?} (dir {})\n{}",
                    self.admin,
                    self.dir.display(),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The proxy listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The private temp dir (config, logs, pid file, upgrade socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The config file path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// PID of the spawned process (the supervisor, for `supervise`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// stdout and stderr so far, each under a marker line.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    /// Replace the config file (atomically, via rename), substituting `{dir}`.
    /// Parapet is not told; send [`SIGHUP`] for that.
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.join("parapet.yaml.tmp");
        std::fs::write(&tmp, substitute_dir(yaml, &self.dir)).expect("write config");
        std::fs::rename(&tmp, &self.config).expect("rename config");
    }

    /// Send signal `sig` (e.g. [`SIGHUP`]) with `kill -<sig> <pid>`; panics
    /// if the process has already been reaped or `kill` fails.
    pub fn signal(&mut self, sig: i32) {
        if let Some(status) = self.try_wait() {
            panic!(
                "signal {sig}: parapet already exited with {status}\n{}",
                self.logs()
            );
        }
        assert!(
            send_signal(self.child.id(), sig),
            "kill -{sig} {} failed",
            self.child.id()
        );
    }

    /// `GET /metrics` on the admin address; panics unless it answers 200.
    pub fn metrics(&self) -> String {
        let r = get(self.admin, "/metrics", &[]);
        assert_eq!(r.status, 200, "GET /metrics: {}", r.text());
        r.text()
    }

    /// `parapet_backend_healthy` of `backend` (as written in the config)
    /// in pool `upstream`, whose region is `region` (`""` for none).
    pub fn backend_healthy(&self, upstream: &str, backend: &str, region: &str) -> Option<f64> {
        metric(
            &self.metrics(),
            "parapet_backend_healthy",
            &format!("backend=\"{backend}\",region=\"{region}\",upstream=\"{upstream}\""),
        )
    }

    /// `GET path` through the proxy (see [`get`]).
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        get(self.addr, path, headers)
    }

    /// The exit status if the process has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Parapet {
    fn drop(&mut self) {
        if self.exit.is_none() {
            if let Ok(None) = self.child.try_wait() {
                send_signal(self.child.id(), SIGTERM);
                if self.wait_exit(Duration::from_secs(5)).is_none() {
                    let _ = self.child.kill();
                }
            }
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("parapet test dir kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn send_signal(pid: u32, sig: i32) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn substitute_dir(yaml: &str, dir: &Path) -> String {
    yaml.replace("{dir}", &dir.display().to_string())
}

/// The first `address:` value inside the top-level YAML section `section`
/// (`admin:` or `listeners:`), quotes stripped. Line-based, enough for the
/// block-style configs tests write.
fn yaml_address(yaml: &str, section: &str) -> Option<SocketAddr> {
    let header = format!("{section}:");
    let mut inside = false;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let top_level = trimmed.len() == line.len();
        if top_level {
            inside = line.trim_end() == header;
            continue;
        }
        if inside {
            let item = trimmed.trim_start_matches("- ").trim_start();
            if let Some(v) = item.strip_prefix("address:") {
                let v = v
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(|c| c == '"' || c == '\'');
                return v.parse().ok();
            }
        }
    }
    None
}
