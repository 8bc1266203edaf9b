//! A raw TCP "origin" that answers every request in one scripted way: a
//! fault (reset, silence, garbage) or a fixed answer after a delay. For
//! tests of what the edge does with sick or slow backends, which a real
//! HTTP server will not imitate. Counts the requests it read in full.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the origin does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads the whole request, then resets the connection (SO_LINGER 0).
    Reset,
    /// Reads the whole request and never answers (holds the connection
    /// until the proxy gives up and closes it).
    Blackhole,
    /// Reads the whole request, answers bytes that are not HTTP, closes.
    Garbage,
    /// Answers `503` with a short body, keeping the connection.
    ServiceUnavailable,
    /// Answers `200 ok` after this long, keeping the connection.
    OkAfter(Duration),
}

pub struct RawOrigin {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl RawOrigin {
    pub fn start(behaviour: Behaviour) -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counter = counter.clone();
                std::thread::spawn(move || serve(conn, behaviour, &counter));
            }
        });
        RawOrigin { addr, hits }
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Requests read in full so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Reads one request (head, then a `Content-Length` body); false on EOF or
/// a malformed head.
fn read_request<R: BufRead>(reader: &mut R) -> bool {
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).is_ok()
}

fn serve(conn: TcpStream, behaviour: Behaviour, hits: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        if !read_request(&mut reader) {
            return;
        }
        hits.fetch_add(1, Ordering::SeqCst);
        match behaviour {
            Behaviour::Reset => {
                use std::os::fd::AsRawFd;
                let linger = libc::linger {
                    l_onoff: 1,
                    l_linger: 0,
                };
                // SAFETY: a valid socket fd and a correctly sized option value.
                let rc = unsafe {
                    libc::setsockopt(
                        conn.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        &linger as *const libc::linger as *const libc::c_void,
                        std::mem::size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(rc, 0, "SO_LINGER");
                return; // both handles drop: closed with linger 0, RST instead of FIN
            }
            Behaviour::Blackhole => {
                let mut sink = [0u8; 4096];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Behaviour::Garbage => {
                let _ = conn.write_all(b"NOT-HTTP \x00\x01\x02 garbage\r\n\r\nsecret");
                let _ = conn.flush();
                return;
            }
            Behaviour::ServiceUnavailable => {
                let reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nsick";
                if conn.write_all(reply).is_err() {
                    return;
                }
            }
            Behaviour::OkAfter(delay) => {
                std::thread::sleep(delay);
                if conn
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}
