//! Response writes coalesced into one system call.
//!
//! Pingora writes an HTTP/1 response head and its body with two writes. Its
//! stream buffers writes smaller than 1460 bytes until a flush, but a large
//! write first flushes that buffer on its own (tokio's `BufWriter`), so a
//! head followed by a large body leaves as two `send`s and, with
//! `TCP_NODELAY`, as a tiny segment of its own followed by the body.
//!
//! That tiny segment is not free. On a client that measures its receive
//! window against round trips (Linux's receive-buffer autotuning), the
//! head-only segment keeps the window small, so most of a 1 MiB body is sent
//! later from the client's acknowledgements and costs the client's CPU: in
//! `bench/` 1 MiB cache hits ran at 0.55× Varnish with two writes and at
//! parity with one (Varnish writes head and body with one `writev`).
//!
//! [`WriteCoalescer`] keeps the same buffering rule as the stream under it
//! (writes that fit in [`HOLD_MAX`] wait for a flush or for the next write)
//! and, when a larger write comes, sends what it holds and the new bytes
//! with one vectored write. Anything held is written before a flush or a
//! shutdown goes down, so nothing waits longer than it did in Pingora's own
//! buffer. Streams that cannot write vectored pass writes through.
//!
//! TLS streams ([`WriteCoalescer::records`]) gather instead: each write to
//! them is a TLS record of its own (a record header, an AEAD pass, a write
//! into the buffer below), and a vectored write becomes one record per slice
//! (tokio-openssl writes the first slice only). HTTP/2 hands each response
//! over as one vectored write of its frames and the DATA payload, so a 1 KiB
//! response was two records. Writes that fit in one record ([`RECORD_MAX`],
//! with what is held) are copied together and written as one; the write is
//! tried at once, and what the socket does not take yet waits, as in a
//! buffered writer, for the next write or the flush. Larger writes go
//! straight through after what is held.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Pingora's L4 write buffer (`DEFAULT_L4_WRITE_BUFFER_SIZE`): writes that
/// would have waited there wait here instead.
pub(super) const HOLD_MAX: usize = 1460;

/// The largest TLS record payload (RFC 8446 §5.1): what one record can carry.
pub(super) const RECORD_MAX: usize = 16 * 1024;

#[derive(Debug, Default)]
pub(super) struct WriteCoalescer {
    held: Vec<u8>,
    /// Gather writes into TLS records (see the module documentation).
    gather: bool,
}

impl WriteCoalescer {
    /// A coalescer for a TLS stream: writes that fit in a record are gathered.
    pub(super) fn records() -> WriteCoalescer {
        WriteCoalescer {
            held: Vec::new(),
            gather: true,
        }
    }

    /// `AsyncWrite::poll_write` on top of `inner`.
    pub(super) fn poll_write<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.gather {
            return self.poll_gather(inner, cx, &[io::IoSlice::new(data)]);
        }
        if !inner.is_write_vectored() {
            std::task::ready!(self.poll_drain(inner, cx))?;
            return Pin::new(inner).poll_write(cx, data);
        }
        if self.held.len() + data.len() < HOLD_MAX {
            self.held.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        while !self.held.is_empty() {
            let bufs = [io::IoSlice::new(&self.held), io::IoSlice::new(data)];
            match std::task::ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &bufs)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) if n > self.held.len() => {
                    let of_data = n - self.held.len();
                    self.held.clear();
                    return Poll::Ready(Ok(of_data));
                }
                Ok(n) => {
                    self.held.drain(..n);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Pin::new(inner).poll_write(cx, data)
    }

    /// `AsyncWrite::poll_write_vectored` on top of `inner`: gathered into
    /// one write on a TLS stream, passed through otherwise (after what is
    /// held).
    pub(super) fn poll_write_vectored<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.gather {
            return self.poll_gather(inner, cx, bufs);
        }
        std::task::ready!(self.poll_drain(inner, cx))?;
        Pin::new(inner).poll_write_vectored(cx, bufs)
    }

    /// Gathers `bufs` behind what is held when they fit in one record, and
    /// writes the lot; larger writes go through after the held bytes.
    fn poll_gather<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.held.len() + total > RECORD_MAX {
            std::task::ready!(self.poll_drain(inner, cx))?;
            if total > RECORD_MAX {
                return Pin::new(inner).poll_write_vectored(cx, bufs);
            }
        }
        for b in bufs {
            self.held.extend_from_slice(b);
        }
        // Small writes wait for the flush or the next write, as in the
        // buffer under the TLS layer; a write that fills more than a segment
        // is tried now. Either way the bytes are taken: what the socket
        // refuses stays held, and the next write or flush waits for it.
        if self.held.len() >= HOLD_MAX {
            if let Poll::Ready(Err(e)) = self.poll_drain(inner, cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(total))
    }

    /// Holds `data` whatever its size, to go out with the next write or
    /// flush (a response head rewritten on its way out).
    pub(super) fn hold(&mut self, data: Vec<u8>) {
        if self.held.is_empty() {
            self.held = data;
        } else {
            self.held.extend_from_slice(&data);
        }
    }

    /// Writes everything held; call before flushing or shutting `inner` down.
    pub(super) fn poll_drain<W: AsyncWrite + Unpin + ?Sized>(
        &mut self,
        inner: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            match std::task::ready!(Pin::new(&mut *inner).poll_write(cx, &self.held)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.held.drain(..n);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// Records each call; accepts at most `limit` bytes per call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<(&'static str, usize)>,
        out: Vec<u8>,
        limit: Option<usize>,
        vectored: bool,
        /// Calls to answer `Pending` before writing again.
        stalls: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if self.stalls > 0 {
                self.stalls -= 1;
                self.calls.push(("stall", 0));
                return Poll::Pending;
            }
            let n = self.limit.unwrap_or(usize::MAX).min(buf.len());
            self.out.extend_from_slice(&buf[..n]);
            self.calls.push(("write", n));
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut room = self.limit.unwrap_or(usize::MAX);
            let mut n = 0;
            for b in bufs {
                let take = room.min(b.len());
                self.out.extend_from_slice(&b[..take]);
                n += take;
                room -= take;
            }
            self.calls.push(("writev", n));
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            self.vectored
        }

        fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.calls.push(("flush", 0));
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn write_all(c: &mut WriteCoalescer, w: &mut Recorder, mut data: &[u8]) {
        while !data.is_empty() {
            let n = poll_fn(|cx| c.poll_write(w, cx, data)).await.unwrap();
            data = &data[n..];
        }
    }

    async fn flush(c: &mut WriteCoalescer, w: &mut Recorder) {
        poll_fn(|cx| c.poll_drain(w, cx)).await.unwrap();
        poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn head_and_large_body_leave_in_one_vectored_write() {
        let (mut c, mut w) = (WriteCoalescer::default(), Recorder::default());
        w.vectored = true;
        let body = vec![7u8; 100_000];
        write_all(&mut c, &mut w, b"HTTP/1.1 200 OK\r\n\r\n").await;
        assert!(w.calls.is_empty(), "a small write waits");
        write_all(&mut c, &mut w, &body).await;
        flush(&mut c, &mut w).await;
        assert_eq!(w.calls, vec![("writev", 19 + 100_000), ("flush", 0)]);
        assert_eq!(&w.out[..19], b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(&w.out[19..], &body[..]);
    }

    #[tokio::test]
    async fn small_writes_wait_for_the_flush() {
        let (mut c, mut w) = (WriteCoalescer::default(), Recorder::default());
        w.vectored = true;
        write_all(&mut c, &mut w, b"head\r\n\r\n").await;
        write_all(&mut c, &mut w, b"small body").await;
        flush(&mut c, &mut w).await;
        assert_eq!(w.calls, vec![("write", 18), ("flush", 0)]);
        assert_eq!(w.out, b"head\r\n\r\nsmall body");
    }

    #[tokio::test]
    async fn partial_vectored_writes_lose_and_repeat_nothing() {
        let (mut c, mut w) = (WriteCoalescer::default(), Recorder::default());
        w.vectored = true;
        w.limit = Some(7);
        let head = b"0123456789abc".to_vec();
        let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        write_all(&mut c, &mut w, &head).await;
        write_all(&mut c, &mut w, &body).await;
        flush(&mut c, &mut w).await;
        let mut want = head.clone();
        want.extend_from_slice(&body);
        assert_eq!(w.out, want);
    }

    #[tokio::test]
    async fn streams_without_vectored_writes_pass_through() {
        let (mut c, mut w) = (WriteCoalescer::default(), Recorder::default());
        write_all(&mut c, &mut w, b"head").await;
        write_all(&mut c, &mut w, &[1u8; 5000]).await;
        assert_eq!(w.calls, vec![("write", 4), ("write", 5000)]);
    }

    async fn write_vectored_all(c: &mut WriteCoalescer, w: &mut Recorder, parts: &[&[u8]]) {
        let mut owned: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        while owned.iter().any(|p| !p.is_empty()) {
            let slices: Vec<io::IoSlice<'_>> = owned.iter().map(|p| io::IoSlice::new(p)).collect();
            let mut n = poll_fn(|cx| c.poll_write_vectored(w, cx, &slices))
                .await
                .unwrap();
            for p in owned.iter_mut() {
                let take = n.min(p.len());
                p.drain(..take);
                n -= take;
            }
        }
    }

    #[tokio::test]
    async fn tls_frames_and_payload_leave_as_one_record() {
        let (mut c, mut w) = (WriteCoalescer::records(), Recorder::default());
        w.vectored = true;
        let (frames, payload) = (vec![1u8; 120], vec![2u8; 1024]);
        write_vectored_all(&mut c, &mut w, &[&frames, &payload]).await;
        flush(&mut c, &mut w).await;
        assert_eq!(w.calls, vec![("write", 1144), ("flush", 0)]);
        let mut want = frames.clone();
        want.extend_from_slice(&payload);
        assert_eq!(w.out, want);
    }

    #[tokio::test]
    async fn tls_writes_fill_records_and_large_ones_pass_after_the_held_bytes() {
        let (mut c, mut w) = (WriteCoalescer::records(), Recorder::default());
        w.vectored = true;
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let mid = vec![3u8; 4000];
        let big = vec![4u8; RECORD_MAX + 1];
        write_all(&mut c, &mut w, &head).await;
        assert!(w.calls.is_empty(), "a small write waits");
        write_all(&mut c, &mut w, &mid).await;
        assert_eq!(
            w.calls,
            vec![("write", head.len() + 4000)],
            "head and body in one record"
        );
        write_all(&mut c, &mut w, &big).await;
        flush(&mut c, &mut w).await;
        assert_eq!(
            w.calls,
            vec![
                ("write", head.len() + 4000),
                ("writev", RECORD_MAX + 1),
                ("flush", 0)
            ]
        );
        assert_eq!(w.out.len(), head.len() + 4000 + RECORD_MAX + 1);
        assert_eq!(&w.out[head.len() + 4000..], &big[..]);
    }

    #[tokio::test]
    async fn tls_writes_the_socket_refuses_wait_in_order() {
        let (mut c, mut w) = (WriteCoalescer::records(), Recorder::default());
        w.vectored = true;
        w.stalls = 1;
        w.limit = Some(1000);
        let a: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let b: Vec<u8> = (0..15_000u32).map(|i| (i % 13) as u8).collect();
        write_all(&mut c, &mut w, &a).await;
        assert!(w.out.is_empty(), "the socket took nothing yet");
        write_all(&mut c, &mut w, &b).await;
        flush(&mut c, &mut w).await;
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(w.out, want);
    }
}
