//! File-descriptor readiness for coroutines (QEMU's
//! `yield_until_fd_readable`, generalised).
//!
//! A [`Registration`] puts an fd in the calling thread's context's epoll set,
//! edge-triggered for both directions, with a readiness cache (see
//! `context/io.rs`). [`Registration::wait`] suspends the current coroutine
//! until the fd is ready in the asked direction; after an operation fails
//! with `WouldBlock`, [`Registration::clear`] forgets the cached readiness.
//! Coroutine-aware sockets (`coprimitives::io`) are built on this.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::Location;

use crate::context::io::{READ, WRITE};
use crate::context::{AioContext, ContextInner, current_inner};
use crate::coroutine::control::{self, CoRef};
use crate::tls;

/// A direction of readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Readable (data, EOF, or an error to collect).
    Read,
    /// Writable (buffer space, or an error to collect).
    Write,
}

impl Direction {
    fn bit(self) -> u8 {
        match self {
            Direction::Read => READ,
            Direction::Write => WRITE,
        }
    }
}

/// An fd registered with one context's epoll set.
///
/// `Send`: it may be dropped anywhere (deregistration is then handed to the
/// owning context). Waiting is only possible from a coroutine of the
/// context it is registered with; [`Registration::is_current`] tells.
pub struct Registration {
    ctx: AioContext,
    slot: usize,
    generation: u64,
    fd: RawFd,
}

impl Registration {
    /// Registers `fd` with the calling thread's context. The fd must stay
    /// open until the registration is dropped.
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Registration> {
        let ctx = AioContext::current();
        let raw = fd.as_raw_fd();
        let driver = ctx.inner.driver().ok_or_else(|| io::Error::other("epoll unavailable"))?;
        let (slot, generation) = driver.register(raw)?;
        Ok(Registration { ctx, slot, generation, fd: raw })
    }

    /// The context this registration belongs to.
    pub fn context(&self) -> &AioContext {
        &self.ctx
    }

    /// True if the calling thread owns the registration's context.
    pub fn is_current(&self) -> bool {
        self.ctx.inner.is_owner()
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// True if the cached readiness says `dir` is ready.
    pub fn is_ready(&self, dir: Direction) -> bool {
        self.with_slot(|s| s.ready & dir.bit() != 0).unwrap_or(false)
    }

    /// Forgets cached readiness for `dir` (call after `WouldBlock`).
    pub fn clear(&self, dir: Direction) {
        self.with_slot(|s| s.ready &= !dir.bit());
    }

    fn with_slot<R>(&self, f: impl FnOnce(&mut crate::context::io::FdSlot) -> R) -> Option<R> {
        if !self.is_current() {
            return None;
        }
        let driver = self.ctx.inner.driver()?;
        driver.slot(self.slot, self.generation).map(f)
    }

    /// Suspends the current coroutine until `dir` is ready (returns at once
    /// if the cache says it is).
    ///
    /// Errors: `ErrorKind::Other` outside a coroutine or from another
    /// context; `ErrorKind::ResourceBusy` if another coroutine already waits
    /// for the same direction; `ErrorKind::Interrupted` if the coroutine was
    /// woken for another reason before the fd became ready;
    /// `ErrorKind::NotConnected` if the registration was closed meanwhile.
    #[track_caller]
    pub fn wait(&self, dir: Direction) -> io::Result<()> {
        let me = tls::current();
        if me.is_null() {
            return Err(io::Error::other("Registration::wait outside a coroutine"));
        }
        if !self.is_current() {
            return Err(io::Error::other(format!(
                "fd {} is registered with context {} ({}), not the calling coroutine's",
                self.fd,
                self.ctx.id(),
                self.ctx.name()
            )));
        }
        let inner: &ContextInner = current_inner().expect("a coroutine runs on a context");
        {
            let driver = inner.driver().ok_or_else(|| io::Error::other("epoll unavailable"))?;
            let slot = driver
                .slot(self.slot, self.generation)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "fd registration closed"))?;
            if slot.ready & dir.bit() != 0 {
                return Ok(());
            }
            let waiter = match dir {
                Direction::Read => &mut slot.reader,
                Direction::Write => &mut slot.writer,
            };
            if waiter.is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("another coroutine already waits for fd {} to be {dir:?}-ready", self.fd),
                ));
            }
            // SAFETY: `me` is the running coroutine, alive while it runs.
            *waiter = Some(unsafe { CoRef::clone_from_ptr(me) });
        }
        crate::raw::set_wait_reason(
            match dir {
                Direction::Read => "fd readable",
                Direction::Write => "fd writable",
            },
            Some(self.fd.to_string().into()),
        );
        crate::suspend();
        crate::raw::clear_wait_reason();
        let driver = inner.driver().ok_or_else(|| io::Error::other("epoll unavailable"))?;
        let Some(slot) = driver.slot(self.slot, self.generation) else {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "fd registration closed while waiting"));
        };
        let waiter = match dir {
            Direction::Read => &mut slot.reader,
            Direction::Write => &mut slot.writer,
        };
        if waiter.take().is_some() {
            // Still registered as the waiter: the fd did not wake us.
            return Err(io::Error::new(io::ErrorKind::Interrupted, "woken before the fd was ready"));
        }
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (slot, generation) = (self.slot, self.generation);
        let release = move |inner: &ContextInner| {
            if let Some(driver) = inner.driver() {
                for co in driver.deregister(slot, generation) {
                    // Their wait fails with NotConnected when they run.
                    if control::try_schedule(&co, Location::caller()).is_ok() {
                        // SAFETY: owner thread; the driver borrow has ended.
                        unsafe { inner.push_ready(co) };
                    }
                }
            }
        };
        if self.is_current() {
            release(&self.ctx.inner);
        } else {
            let ctx = self.ctx.clone();
            self.ctx.bh_oneshot(move || release(&ctx.inner));
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("fd", &self.fd).field("context", &self.ctx.id()).finish()
    }
}

/// QEMU's `yield_until_fd_readable`, one-shot: registers `fd`, waits until it
/// is readable, deregisters.
pub fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    Registration::new(fd)?.wait(Direction::Read)
}

/// Like [`wait_readable`], for writability.
pub fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    Registration::new(fd)?.wait(Direction::Write)
}
