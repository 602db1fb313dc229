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
//! # No `futures-io` traits (yet)
//!
//! These sockets do not implement `futures_io::AsyncRead`/`AsyncWrite`.
//! Async code that needs a socket should use its own runtime's (tokio's,
//! through `coscheduler::tokio_bridge`); a coroutine awaiting async I/O
//! uses `coscheduler::wait`. The reasons are the readiness machinery, not
//! the stay-home rule itself (reading and writing an fd is a system call
//! that any thread may make):
//!
//! - Readiness lives in the epoll driver of one context, and that driver is
//!   owner-thread state whose waiters are *coroutines*. `poll_read` is
//!   called on whatever thread the async executor runs (a tokio worker), so
//!   it can neither enqueue there nor wait: waiting is a coroutine
//!   suspension.
//! - Registering the polling coroutine itself as the fd's waiter (when the
//!   future is polled inside `coscheduler::wait`) would be unsound in the
//!   scheduler's own terms: `poll` returns, the waiter stays queued, and the
//!   driver would later wake a coroutine that has moved on to wait on
//!   something else (a CoMutex), the double wake the await-state protocol
//!   exists to prevent.
//! - The readiness cache is edge-triggered and can only be cleared on the
//!   owner thread; clearing it after a `WouldBlock` seen on another thread
//!   can drop an edge that arrived in between, and the socket then never
//!   wakes.
//! - A socket that was never waited on by a coroutine has no context at
//!   all, and the thread polling it (a tokio worker) has none that runs.
//!
//! A sound design exists and is the planned one: a `Waker` kind of waiter
//! in the driver, woken through `Waker::wake` (so through the await state
//! for coroutine wakers); a `Registration::poll_ready(dir, cx)` that
//! registers it directly on the owner thread and, from other threads, hands
//! a bottom half to the owner that re-checks the fd's level (`poll(2)`,
//! zero timeout) before clearing the cache and registering; and an explicit
//! binding of a socket to a runtime context before async code may poll it.
//! It needs a change to the driver in `coscheduler`'s `context/io.rs`.

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
