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
