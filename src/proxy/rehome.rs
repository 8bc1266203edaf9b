//! Keeps an accepted connection's socket events on the thread that serves it.
//!
//! With `work_stealing: false` (the default) Pingora runs one single-threaded
//! tokio runtime per worker thread. A listener's accept loop lives on one of
//! them, and the accepted socket is registered with *that* runtime's epoll;
//! the connection's task is then spawned on a runtime picked at random
//! (`pingora_runtime::current_handle`). For every connection that lands
//! elsewhere — half of them with two threads — each readiness event is seen
//! by the acceptor's thread and handed over with a cross-runtime wake-up (an
//! `eventfd` write and a second thread woken): measured with `strace` at
//! `threads: 2`, 0.44 eventfd writes per cache hit, none at `threads: 1`.
//!
//! Re-registering the socket with the serving runtime removes the hand-over:
//! the descriptor is duplicated, the duplicate registered here, and Pingora's
//! stream (registered with the acceptor) dropped, which deregisters and
//! closes the original. Nothing has been read yet when a plain TCP
//! connection reaches `process_new`, and socket options (`TCP_NODELAY`,
//! keepalive, buffers) belong to the socket, not the descriptor, so they
//! carry over. TLS streams keep their registration: their state sits above
//! the socket and Pingora offers no way to move it.

use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use std::os::fd::FromRawFd;

/// `stream` registered with the current runtime, or unchanged when it is
/// TLS, not a TCP socket, or anything fails (it then works as before).
pub(super) fn rehome(stream: Stream) -> Stream {
    if stream.get_ssl().is_some() {
        return stream;
    }
    let Some(peer) = stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().cloned())
    else {
        return stream;
    };
    if peer.as_inet().is_none() {
        return stream;
    }
    // SAFETY: fcntl on a descriptor this stream owns; the result is a new
    // descriptor (or -1), owned from here by the std stream below.
    let dup = unsafe { libc::fcntl(stream.id(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return stream;
    }
    // SAFETY: `dup` is a fresh descriptor of a connected TCP socket.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(dup) };
    let registered = std_stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(std_stream));
    let tcp = match registered {
        Ok(t) => t,
        Err(e) => {
            log::debug!("connection from {peer}: kept on the accepting thread: {e}");
            return stream;
        }
    };
    drop(stream);
    let mut moved = pingora::protocols::l4::stream::Stream::from(tcp);
    let digest = SocketDigest::from_raw_fd(dup);
    let _ = digest.peer_addr.set(Some(SocketAddr::clone(&peer)));
    moved.set_socket_digest(digest);
    Box::new(moved)
}
