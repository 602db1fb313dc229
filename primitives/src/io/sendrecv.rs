//! QEMU's `qemu_co_sendv_recvv` family (`util/qemu-coroutine-io.c`): move
//! all the asked bytes through a socket, suspending the coroutine whenever
//! the socket would block.
//!
//! Each system call is a `sendmsg`/`recvmsg` with `MSG_DONTWAIT` (and
//! `MSG_NOSIGNAL` for sends, so a closed peer gives `EPIPE`, not
//! `SIGPIPE`). The calls therefore never block the thread, **whether or not
//! the fd has `O_NONBLOCK`**, and leave its flags alone. They work on stream
//! sockets only (`ENOTSOCK` otherwise), as QEMU's.
//!
//! Where QEMU yields on `EAGAIN` and leaves re-entry to the caller, these
//! register the fd with the current context for the length of the call
//! (only once it has blocked) and wait for readiness.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

use coscheduler::fd::Direction;

use super::readiness::Readiness;

/// At most this many iovec entries per system call (the rest follows in the
/// next call, like any partial transfer).
const IOV_BATCH: usize = 64;

/// QEMU's `qemu_co_send`: sends all of `buf` unless an error stops it.
///
/// Returns the bytes sent: `buf.len()`, or fewer if an error came after
/// some progress (QEMU's partial-progress rule); the error itself if it
/// came before any.
pub fn co_send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    co_sendv(fd, &[IoSlice::new(buf)], 0, buf.len())
}

/// QEMU's `qemu_co_recv`: receives until `buf` is full or EOF.
///
/// Returns the bytes received (fewer than `buf.len()` at EOF, or if an
/// error came after some progress); the error if it came before any.
pub fn co_recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let n = buf.len();
    co_recvv(fd, &mut [IoSliceMut::new(buf)], 0, n)
}

/// QEMU's `qemu_co_sendv`: sends `bytes` bytes of the buffers `iov`,
/// starting `offset` bytes into them. Results as [`co_send`].
///
/// # Panics
/// If `offset + bytes` exceeds the buffers' total length (QEMU asserts).
pub fn co_sendv(
    fd: BorrowedFd<'_>,
    iov: &[IoSlice<'_>],
    offset: usize,
    bytes: usize,
) -> io::Result<usize> {
    check_bounds(iov.iter().map(|b| b.len()), offset, bytes);
    let mut stack = Buffers::new();
    let ptrs = stack.fill(iov.iter().map(|b| (b.as_ptr() as *mut u8, b.len())));
    // SAFETY: the pointers describe the caller's live, readable buffers,
    // borrowed for the call; a send only reads them.
    unsafe { sendv_recvv(fd, ptrs, offset, bytes, true) }
}

/// QEMU's `qemu_co_recvv`: receives `bytes` bytes into the buffers `iov`,
/// starting `offset` bytes into them, or until EOF. Results as [`co_recv`].
///
/// # Panics
/// If `offset + bytes` exceeds the buffers' total length (QEMU asserts).
pub fn co_recvv(
    fd: BorrowedFd<'_>,
    iov: &mut [IoSliceMut<'_>],
    offset: usize,
    bytes: usize,
) -> io::Result<usize> {
    check_bounds(iov.iter().map(|b| b.len()), offset, bytes);
    let mut stack = Buffers::new();
    let ptrs = stack.fill(iov.iter_mut().map(|b| (b.as_mut_ptr(), b.len())));
    // SAFETY: the pointers describe the caller's live buffers, mutably
    // borrowed for the call, so nothing else reads or writes them.
    unsafe { sendv_recvv(fd, ptrs, offset, bytes, false) }
}

/// Buffers described inline, without an allocation (a call with more takes
/// a vector).
const INLINE_BUFFERS: usize = 8;

/// The `(pointer, length)` list of a call's buffers: on the stack for up to
/// [`INLINE_BUFFERS`] of them, so that a plain `co_send`/`co_recv`
/// allocates nothing.
struct Buffers {
    inline: [(*mut u8, usize); INLINE_BUFFERS],
    heap: Vec<(*mut u8, usize)>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            inline: [(std::ptr::null_mut(), 0); INLINE_BUFFERS],
            heap: Vec::new(),
        }
    }

    fn fill(
        &mut self,
        bufs: impl ExactSizeIterator<Item = (*mut u8, usize)>,
    ) -> &[(*mut u8, usize)] {
        let n = bufs.len();
        if n <= INLINE_BUFFERS {
            for (slot, b) in self.inline.iter_mut().zip(bufs) {
                *slot = b;
            }
            &self.inline[..n]
        } else {
            self.heap.extend(bufs);
            &self.heap
        }
    }
}

#[track_caller]
fn check_bounds(lens: impl Iterator<Item = usize>, offset: usize, bytes: usize) {
    let total: usize = lens.sum();
    assert!(
        offset.checked_add(bytes).is_some_and(|end| end <= total),
        "co_sendv/co_recvv: offset {offset} + bytes {bytes} exceeds the buffers' {total} bytes"
    );
}

/// QEMU's `qemu_co_sendv_recvv` loop.
///
/// # Safety
/// Each `(ptr, len)` is a live buffer for the whole call, readable when
/// `send`, writable and not otherwise accessed when receiving.
unsafe fn sendv_recvv(
    fd: BorrowedFd<'_>,
    bufs: &[(*mut u8, usize)],
    offset: usize,
    bytes: usize,
    send: bool,
) -> io::Result<usize> {
    let dir = if send {
        Direction::Write
    } else {
        Direction::Read
    };
    let readiness = Readiness::new();
    let mut done = 0;
    while done < bytes {
        // SAFETY: the caller's contract, passed on.
        match unsafe { send_recv_once(fd, bufs, offset + done, bytes - done, send) } {
            Ok(0) if !send => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match readiness.wait(fd, dir, None) {
                    // A stray wake: try again, as QEMU's loop does after a yield.
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return partial(done, e),
                }
            }
            Err(e) => return partial(done, e),
        }
    }
    Ok(done)
}

/// QEMU: an error after some progress returns the progress.
fn partial(done: usize, e: io::Error) -> io::Result<usize> {
    if done == 0 { Err(e) } else { Ok(done) }
}

/// One `sendmsg`/`recvmsg` over up to [`IOV_BATCH`] entries of `bufs`,
/// from `offset`, at most `bytes` (QEMU's `iov_send_recv`).
///
/// # Safety
/// As [`sendv_recvv`].
unsafe fn send_recv_once(
    fd: BorrowedFd<'_>,
    bufs: &[(*mut u8, usize)],
    mut offset: usize,
    bytes: usize,
    send: bool,
) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; IOV_BATCH];
    let (mut n, mut left) = (0, bytes);
    for &(ptr, len) in bufs {
        if offset >= len {
            offset -= len;
            continue;
        }
        if n == IOV_BATCH || left == 0 {
            break;
        }
        let take = (len - offset).min(left);
        // SAFETY: `offset < len`, so the pointer stays inside the buffer.
        let base = unsafe { ptr.add(offset) };
        iov[n] = libc::iovec {
            iov_base: base.cast(),
            iov_len: take,
        };
        offset = 0;
        left -= take;
        n += 1;
    }
    // SAFETY: all-zero is a valid msghdr (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n as _;
    // SAFETY: `msg` points to `n` iovecs describing live buffers (the
    // caller's contract), readable for a send and exclusively writable for a
    // receive; the fd is borrowed for the call.
    let r = unsafe {
        if send {
            libc::sendmsg(
                fd.as_raw_fd(),
                &msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        } else {
            libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
