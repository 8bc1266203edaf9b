//! The wrapper around every accepted client stream: a total deadline for
//! receiving each HTTP/1 request head (slowloris), and response writes
//! coalesced by [`WriteCoalescer`].
//!
//! Pingora's downstream timeouts are per read, so a client trickling one byte
//! a minute keeps a connection, and a worker's attention, forever. This
//! wraps the accepted stream: the clock starts at the first byte of a request
//! and stops at the blank line ending its head; if it runs out first, the
//! next read fails with `TimedOut` and the connection ends. Bodies are not
//! covered (Pingora's per-read timeout applies there). HTTP/2 connections
//! (the preface is recognised) pass through untouched: their frames are not
//! text.

use super::response_date::{self, DateSlot};
use super::write_coalesce::WriteCoalescer;
use crate::metrics;
use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Sleep};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests (waiting for the first byte of the next head).
    Idle,
    /// Inside a request head: the deadline runs.
    Head,
    /// Head complete: body and response.
    Active,
    /// HTTP/2 or otherwise exempt.
    Off,
}

#[derive(Debug)]
pub(super) struct ClientStream {
    inner: Stream,
    limit: Duration,
    state: State,
    /// When the current head started (its first byte).
    head_started: Option<tokio::time::Instant>,
    /// Created only when a head spans reads and a read has to wait: most
    /// heads arrive in one read and never cost a timer.
    deadline: Option<Pin<Box<Sleep>>>,
    /// The last bytes seen, to find a head's end split across reads.
    tail: [u8; 3],
    first: bool,
    /// Who to tell about a slow-client kill, and the client's address.
    on_slow: Option<(Arc<crate::behaviour::Reputation>, std::net::IpAddr)>,
    /// Small writes held back so a response head and body leave together.
    writes: WriteCoalescer,
    /// The `Date` the next HTTP/1 response head keeps ([`super::response_date`]).
    pub date: DateSlot,
}

impl ClientStream {
    pub(super) fn wrap(
        inner: Stream,
        limit: Duration,
        on_slow: Option<(Arc<crate::behaviour::Reputation>, std::net::IpAddr)>,
    ) -> Stream {
        let writes = if inner.get_ssl().is_some() {
            WriteCoalescer::records()
        } else {
            WriteCoalescer::default()
        };
        Box::new(ClientStream {
            inner,
            limit,
            state: State::Idle,
            head_started: None,
            deadline: None,
            tail: [0; 3],
            first: true,
            on_slow,
            writes,
            date: DateSlot::default(),
        })
    }

    fn saw(&mut self, data: &[u8]) {
        if self.first {
            self.first = false;
            if data.starts_with(H2_PREFACE) {
                self.state = State::Off;
                return;
            }
        }
        if self.state == State::Idle {
            self.state = State::Head;
            self.head_started = Some(tokio::time::Instant::now());
            // Whatever the last response left unused is not for this one.
            self.date.set(None);
        }
        if self.state == State::Head {
            if ends_head(self.tail, data) {
                self.state = State::Active;
                self.head_started = None;
                self.deadline = None;
            }
            self.tail = last3(self.tail, data);
        }
    }
}

fn is_end(w: &[u8]) -> bool {
    w.windows(4).any(|x| x == b"\r\n\r\n") || w.windows(2).any(|x| x == b"\n\n")
}

/// Whether `data`, following the bytes `tail`, completes a head (a blank line).
fn ends_head(tail: [u8; 3], data: &[u8]) -> bool {
    let k = data.len().min(3);
    let mut seam = [0u8; 6];
    seam[..3].copy_from_slice(&tail);
    seam[3..3 + k].copy_from_slice(&data[..k]);
    is_end(&seam[..3 + k]) || is_end(data)
}

/// The last three bytes of `tail` followed by `data`.
fn last3(tail: [u8; 3], data: &[u8]) -> [u8; 3] {
    let mut out = tail;
    for b in data.iter().rev().take(3).rev() {
        out = [out[1], out[2], *b];
    }
    out
}

impl AsyncRead for ClientStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let this = self.as_mut().get_mut();
                let new = &buf.filled()[before..];
                if !new.is_empty()
                    && (this.first || matches!(this.state, State::Idle | State::Head))
                {
                    this.saw(new);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.state == State::Head {
                    if self.deadline.is_none() {
                        let started = self.head_started.unwrap_or_else(tokio::time::Instant::now);
                        self.deadline = Some(Box::pin(sleep_until(started + self.limit)));
                    }
                    if let Some(d) = self.deadline.as_mut() {
                        if d.as_mut().poll(cx).is_ready() {
                            metrics::SLOW_CLIENTS.inc();
                            if let Some((rep, ip)) = &self.on_slow {
                                rep.record(
                                    *ip,
                                    crate::behaviour::Event::Slow,
                                    std::time::Instant::now(),
                                );
                            }
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "request head not complete within limits.header_timeout",
                            )));
                        }
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.as_mut().get_mut();
        // The slot is filled only between `response_filter` and the head it
        // was filled for, and any head takes it: an interim one (a 101 before
        // tunnelled bytes) leaves nothing for later writes to match.
        if data.starts_with(b"HTTP/1.") {
            let head = this
                .date
                .take()
                .filter(|_| response_date::is_final_head(data))
                .and_then(|d| response_date::with_date(data, d.as_bytes()));
            if let Some(head) = head {
                this.writes.hold(head);
                if this.state == State::Active {
                    this.state = State::Idle;
                }
                return Poll::Ready(Ok(data.len()));
            }
        }
        let r = this.writes.poll_write(&mut this.inner, cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && self.state == State::Active {
            // A response is going out: the next byte read starts a new head.
            self.state = State::Idle;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.as_mut().get_mut();
        std::task::ready!(this.writes.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.as_mut().get_mut();
        std::task::ready!(this.writes.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.as_mut().get_mut();
        let r = this.writes.poll_write_vectored(&mut this.inner, cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) && self.state == State::Active {
            self.state = State::Idle;
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Held bytes go out when the stream is dropped, as Pingora's own stream
/// flushes its buffer on drop: a response that failed after its head (an
/// origin body cut short) still reaches the client as far as it got.
/// Best effort, without waiting: whatever the socket takes now.
impl Drop for ClientStream {
    fn drop(&mut self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        if let Poll::Ready(Ok(())) = self.writes.poll_drain(&mut self.inner, &mut cx) {
            let _ = Pin::new(&mut self.inner).poll_flush(&mut cx);
        }
    }
}

#[async_trait]
impl Shutdown for ClientStream {
    async fn shutdown(&mut self) {
        let (writes, inner) = (&mut self.writes, &mut self.inner);
        let _ = std::future::poll_fn(|cx| writes.poll_drain(inner, cx)).await;
        self.inner.shutdown().await
    }
}

impl UniqueID for ClientStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ClientStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for ClientStream {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ClientStream {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClientStream {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for ClientStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_are_found_across_reads() {
        assert!(ends_head([0; 3], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ends_head([0; 3], b"GET / HTTP/1.1\r\nHost: a\r\n"));
        let t = last3([0; 3], b"Host: a\r\n");
        assert_eq!(&t, b"a\r\n");
        assert!(ends_head(t, b"\r\n"), "split between reads");
        assert!(
            ends_head(last3(last3([0; 3], b"x\r"), b"\n\r"), b"\n"),
            "split one byte at a time"
        );
        assert!(
            ends_head([0; 3], b"GET / HTTP/1.0\n\n"),
            "bare LF heads end too"
        );
        assert_eq!(last3(*b"abc", b"d"), *b"bcd");
    }
}
