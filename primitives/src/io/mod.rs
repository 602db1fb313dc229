//! Coroutine I/O: waiting for fds, QEMU's `qemu_co_send`/`qemu_co_recv`
//! family, and sockets whose blocking calls suspend the coroutine.
//!
//! Everything here waits through the *current* coroutine's context: the fd
//! goes into that context's epoll set (edge-triggered, with a readiness
//! cache; see `coscheduler::fd`), and the thread runs other coroutines until
//! it is ready.
//!
//! | QEMU | here |
//! |---|---|
//! | `yield_until_fd_readable` | [`wait_readable`] |
//! | — | [`wait_writable`] |
//! | `qemu_co_send` / `qemu_co_recv` | [`co_send`] / [`co_recv`] |
//! | `qemu_co_sendv` / `qemu_co_recvv` (`qemu_co_sendv_recvv`) | [`co_sendv`] / [`co_recvv`] |
//! | `QIOChannelSocket` + `qio_channel_yield` | [`TcpStream`], [`TcpListener`], [`UnixStream`], [`UnixListener`] |
//!
//! For deadlines, set a socket's read/write timeout, or wrap any call in
//! [`co_timeout`](crate::co_timeout).
//!
//! # Async I/O (the `futures-io` feature)
//!
//! With the `futures-io` feature, [`TcpStream`] and [`UnixStream`] (and
//! references to them) implement `futures_io::AsyncRead` and `AsyncWrite`,
//! so async code (`futures::io` helpers, codecs, protocol libraries written
//! against those traits) can use a coroutine-owned socket:
//!
//! ```
//! # #[cfg(feature = "futures-io")] {
//! use futures::io::{AsyncReadExt, AsyncWriteExt};
//! use coprimitives::io::UnixStream;
//!
//! let h = coscheduler::AioContext::current().spawn(|| {
//!     let (a, b) = UnixStream::pair().unwrap();
//!     let peer = coscheduler::AioContext::current().spawn(move || {
//!         // The peer end, with the blocking calls.
//!         let mut buf = [0; 5];
//!         std::io::Read::read_exact(&mut &b, &mut buf).unwrap();
//!         std::io::Write::write_all(&mut &b, &buf).unwrap();
//!     });
//!     let echoed = coscheduler::wait(async {
//!         let mut s = &a;
//!         s.write_all(b"hello").await?;
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf).await?;
//!         Ok::<_, std::io::Error>(buf)
//!     });
//!     peer.join().unwrap();
//!     echoed
//! });
//! assert_eq!(&h.join().unwrap().unwrap(), b"hello");
//! # }
//! ```
//!
//! **The rule: poll inside a coroutine.** A socket's readiness lives in the
//! epoll driver of one context, which is owner-thread state (the stay-home
//! rule for data: nothing a context owns is touched from another thread,
//! `docs/ARCHITECTURE.md`, "Owner-only state"), and only a context that
//! runs applies its events and wakes its waiters. So a poll that would block
//! registers the task's `Waker` with the driver of the context it runs on
//! (`coscheduler::fd::Registration::poll_ready`), and it must run on a
//! thread whose context is running: inside a coroutine, typically async
//! code awaited with `coscheduler::wait`. The registration follows the
//! polling coroutine's context as for blocking calls (it rebinds), so any
//! coroutine on any context may poll. Anywhere else (a tokio worker, a
//! plain thread's `futures::executor::block_on`, `coscheduler::wait` called
//! outside a coroutine) every read and write poll fails with
//! `ErrorKind::Unsupported` before it tries the system call. Registering
//! with another thread's driver would break the rule, and a poll cannot
//! tell whether its own thread's context runs (on a tokio worker it would
//! be one that nothing drives, and the waker would never be woken); a running
//! coroutine is the proof that its context runs. Async code on another
//! runtime uses that runtime's sockets (tokio's, through
//! `coscheduler::tokio_bridge`) instead.
//!
//! Why this is sound:
//!
//! - **No double wake.** The waiter is the task's `Waker`, not the
//!   coroutine: a coroutine's waker goes through its await state
//!   (`coscheduler::wait`), so a wake that comes after the coroutine moved
//!   on to wait on something else (a `CoMutex`) resumes nothing.
//! - **No lost edge.** The poll runs in a coroutine, on the owner thread, and
//!   events are applied between coroutine runs; clearing the edge-triggered
//!   cache after `WouldBlock` and storing the waker happen with no event in
//!   between, as for a blocking wait.
//! - **One waiter per direction.** A poll replaces a waker stored by an
//!   earlier poll (only the last poll's waker is woken, as the `Future`
//!   contract asks), and fails with `ErrorKind::ResourceBusy` while a
//!   coroutine is suspended in a blocking call in the same direction on the
//!   same context. A blocking call takes the direction over from a stored
//!   waker (waking it), since async code cannot withdraw a waker when it
//!   drops a future, and a stale waker must not lock blocking calls out.
//!
//! The results are the blocking calls': `Ok(0)` at EOF, `ConnectionReset`
//! after a reset, `EBADF` for an fd closed under the socket (found by the
//! driver's validity sweep, which also wakes a stored waker). A poll does
//! not apply the socket's read and write timeouts: bound an async wait with
//! the executor's timer. `poll_flush` is always ready (nothing is
//! buffered); `poll_close` shuts the write side down. Driving the future
//! with an executor that blocks the thread (`futures::executor::block_on`)
//! *inside* a coroutine stops the context, so its events are never applied:
//! use `coscheduler::wait`.

#[cfg(feature = "futures-io")]
mod async_io;
mod readiness;
mod sendrecv;
mod stream;
mod tcp;
mod unix;

use std::io;
use std::os::fd::BorrowedFd;

pub use self::sendrecv::{co_recv, co_recvv, co_send, co_sendv};
pub use self::tcp::{TcpListener, TcpStream};
pub use self::unix::{UnixListener, UnixStream};

/// QEMU's `yield_until_fd_readable`: suspends the current coroutine until
/// `fd` is readable (data, EOF, or an error to collect).
///
/// The fd is registered with the current context for the call only. The
/// possible results (busy, interrupted by a stray wake, `EBADF` when the fd
/// is closed meanwhile) are listed in `coscheduler::fd`'s docs; whatever
/// the result, nothing stays registered. Unlike QEMU's, it does not replace
/// another waiter on the same fd: a second reader on one context fails with
/// `ErrorKind::ResourceBusy`.
///
/// # Errors
/// Outside a coroutine: `ErrorKind::Other`. A regular file: `EPERM`.
pub fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    coscheduler::fd::wait_readable(fd)
}

/// Like [`wait_readable`], until `fd` is writable.
pub fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    coscheduler::fd::wait_writable(fd)
}
