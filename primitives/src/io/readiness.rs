//! The readiness binding of a coroutine socket: retry on `WouldBlock`,
//! suspending in between, with the fd registered on whichever context the
//! calling coroutine runs on.
//!
//! # Rebinding
//!
//! A socket is `Send`: it may be accepted on one worker and used by a
//! coroutine on another. Its [`Registration`] is therefore made lazily, on
//! the first `WouldBlock`, with the context of the coroutine that got it,
//! and **rebound** when a coroutine of another context gets one: a new
//! registration replaces the old, whose deregistration is handed to its
//! context. A coroutine still waiting through the old registration keeps
//! it alive (it holds an `Arc`) and finishes its wait there. Used from one
//! context at a time, a socket costs one `EPOLL_CTL_ADD` per move;
//! alternately from two contexts (a reader here, a writer there) it rebinds
//! back and forth, which works but costs two `epoll_ctl` per switch.
//!
//! Outside a coroutine (a plain thread), a wait is a blocking `poll(2)` on
//! the fd, so the sockets also work as ordinary blocking sockets.
//!
//! # Stray wakes
//!
//! A coroutine suspended for readiness can be resumed by something else (a
//! [`Coroutine::wake`](coscheduler::Coroutine::wake) from code that thinks
//! it waits for something of its own, or a move to another context). The
//! registration then reports `ErrorKind::Interrupted`. A socket call absorbs
//! it: it retries the system call (the fd may be ready by now) and, if that
//! would still block, waits again. A socket call therefore ends only with
//! the call's own result, a timeout, or a registration error, never with a
//! spurious `Interrupted`; and since each wait is withdrawn before it
//! returns, the retry cannot leave a second waiter behind.
//!
//! # Syscall first
//!
//! Every call tries its system call before looking at readiness: a
//! `recv` that finds data costs no epoll round trip (the edge-triggered
//! pattern of tokio and mio). Readiness is consulted only after
//! `WouldBlock`, or after a short transfer (below).
//!
//! # Short transfers
//!
//! A read that returns less than asked has drained the socket, and a write
//! that sends less than asked has filled it (tokio makes the same
//! inference). [`Readiness::transfer`] then clears the direction's cached
//! readiness at once and remembers it in `drained`; the next transfer in
//! that direction first waits on the registration, which returns at once if
//! an epoll event has set the cache again since. An echo server thus makes
//! one `recv` per request instead of two (the second only to learn
//! `EAGAIN`). No edge can be lost: events are applied on the owner thread
//! between coroutine runs, so any data that arrived after the short read is
//! reported by an event applied after the clear.
//!
//! # Async polls
//!
//! With the `futures-io` feature, `Readiness::poll_io` is `io` for a
//! `Future`: one try, then, on `WouldBlock`, a clear and a
//! `Registration::poll_ready` with the task's waker on the same (made or
//! rebound) registration, instead of a suspension. It ignores and keeps the
//! `drained` hint: the hint only lets a blocking call skip a system call,
//! and an edge that came since the clear is in the cache either way.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coscheduler::fd::{Direction, Registration};

/// The lazily made, rebindable registration of one fd.
#[derive(Default)]
pub(crate) struct Readiness {
    reg: Mutex<Option<Arc<Registration>>>,
    /// Per direction ([`dir_bit`]): the last transfer was short and cleared
    /// the registration's cache (see "Short transfers"). A hint only: a
    /// stale bit costs a wait that returns at once, a missing one a
    /// syscall, so Relaxed is enough.
    drained: AtomicU8,
}

fn dir_bit(dir: Direction) -> u8 {
    match dir {
        Direction::Read => 1,
        Direction::Write => 2,
    }
}

impl Readiness {
    /// No registration yet.
    pub(crate) const fn new() -> Readiness {
        Readiness {
            reg: Mutex::new(None),
            drained: AtomicU8::new(0),
        }
    }

    /// [`io`](Readiness::io) for a transfer of `want` bytes that returns
    /// the bytes moved, with the short-transfer rule of the module docs.
    #[inline]
    pub(crate) fn transfer(
        &self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        deadline: Option<Instant>,
        want: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let bit = dir_bit(dir);
        if self.drained.load(Relaxed) & bit != 0 {
            self.drained.fetch_and(!bit, Relaxed);
            match self.wait_cached(dir, deadline) {
                // A stray wake: the transfer below finds out.
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
        }
        let n = self.io(fd, dir, deadline, op)?;
        if n > 0 && n < want {
            self.note_short(dir);
        }
        Ok(n)
    }

    /// After a short transfer: clear the cached readiness now.
    fn note_short(&self, dir: Direction) {
        if !coscheduler::in_coroutine() {
            return;
        }
        let slot = self.reg.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reg) = slot.as_ref().filter(|r| r.is_current()) {
            reg.clear(dir);
            self.drained.fetch_or(dir_bit(dir), Relaxed);
        }
    }

    /// Waits on the current registration without clearing its cache (it
    /// returns at once if an event came since the short transfer).
    fn wait_cached(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        let reg = {
            let slot = self.reg.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(reg) if coscheduler::in_coroutine() && reg.is_current() => reg.clone(),
                _ => return Ok(()),
            }
        };
        match deadline {
            Some(d) => reg.wait_until(dir, d),
            None => reg.wait(dir),
        }
    }

    /// Runs `op` until it returns something other than `WouldBlock`,
    /// waiting for `dir` readiness of `fd` in between (at most until
    /// `deadline`: then `ErrorKind::TimedOut`). A stray wake only sends it
    /// round the loop again (see "Stray wakes").
    #[inline]
    pub(crate) fn io<R>(
        &self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            match self.wait(fd, dir, deadline) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// `io` for async code (`io/async_io.rs`): runs `op` once and, on
    /// `WouldBlock`, clears `dir`'s cached readiness and polls the
    /// registration with `cx`'s waker instead of suspending. Outside a
    /// coroutine it fails before trying `op`, so that whether a poll works
    /// never depends on whether the socket happened to be ready.
    #[cfg(feature = "futures-io")]
    pub(crate) fn poll_io<R>(
        &self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        cx: &mut std::task::Context<'_>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> std::task::Poll<io::Result<R>> {
        use std::task::Poll;
        if !coscheduler::in_coroutine() {
            return Poll::Ready(Err(polled_outside_a_coroutine()));
        }
        // Twice at most: a poll that finds the cache ready right after the
        // clear (only a sticky hang-up bit can do that) retries `op` once,
        // then lets the coroutine's other work run (a self-wake) rather
        // than spin on a socket that keeps saying `WouldBlock`.
        for _ in 0..2 {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            // The calling coroutine's context, made or rebound as for a
            // blocking call.
            let reg = match self.bound(fd) {
                Ok(reg) => reg,
                Err(e) => return Poll::Ready(Err(e)),
            };
            // On the owner thread, inside a coroutine: no event is applied
            // between the `WouldBlock` and this clear, so no edge is lost.
            reg.clear(dir);
            match reg.poll_ready(dir, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Waits for `dir` after a `WouldBlock`.
    #[cold]
    pub(crate) fn wait(
        &self,
        fd: BorrowedFd<'_>,
        dir: Direction,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        if !coscheduler::in_coroutine() {
            return block_thread(fd, dir, deadline);
        }
        let reg = self.bound(fd)?;
        reg.clear(dir);
        match deadline {
            Some(d) => reg.wait_until(dir, d),
            None => reg.wait(dir),
        }
    }

    /// The registration for the calling thread's context, made or rebound.
    fn bound(&self, fd: BorrowedFd<'_>) -> io::Result<Arc<Registration>> {
        let mut slot = self.reg.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(reg) if reg.is_current() => Ok(reg.clone()),
            _ => {
                let reg = Arc::new(Registration::new(fd)?);
                // The old registration, if any, is dropped here or by the
                // last coroutine still waiting through it.
                *slot = Some(reg.clone());
                Ok(reg)
            }
        }
    }
}

/// The error of a socket polled by async code outside a coroutine.
#[cfg(feature = "futures-io")]
#[cold]
fn polled_outside_a_coroutine() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a coroutine socket's async I/O must be polled inside a coroutine (drive the \
         future with coscheduler::wait): its readiness lives in the epoll driver of the \
         polling coroutine's context, which only that context's thread may touch and only \
         a running context wakes (coprimitives::io, \"Async I/O\")",
    )
}

/// A deadline `timeout` from now (`None`: no deadline; a zero timeout is
/// refused by the socket setters, like std's).
pub(crate) fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// Plain-thread wait: `poll(2)` until ready or the deadline.
fn block_thread(fd: BorrowedFd<'_>, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "socket wait timed out",
                    ));
                }
                libc::c_int::try_from(left.as_nanos().div_ceil(1_000_000))
                    .unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd, whose fd is borrowed for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match n {
            n if n > 0 => return Ok(()),
            0 => continue,
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
