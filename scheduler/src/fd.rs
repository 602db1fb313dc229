//! File-descriptor readiness for coroutines (QEMU's
//! `yield_until_fd_readable`, generalised).
//!
//! A [`Registration`] puts an fd in the calling thread's context's epoll set,
//! edge-triggered for both directions, with a readiness cache (see
//! `context/io.rs`). [`Registration::wait`] suspends the current coroutine
//! until the fd is ready in the asked direction; after an operation fails
//! with `WouldBlock`, [`Registration::clear`] forgets the cached readiness.
//! Coroutine-aware sockets (`coprimitives::io`) are built on this.
//!
//! # What a wait can end with
//!
//! | result | when |
//! |---|---|
//! | `Ok(())` | the fd is ready in that direction (or was, per the cache) |
//! | `ErrorKind::Other` | outside a coroutine, or from a coroutine of another context than the registration's |
//! | `ErrorKind::ResourceBusy` | another coroutine already waits on the same fd, same direction, same context |
//! | `ErrorKind::Interrupted` | the coroutine was woken by something else (a stray [`Coroutine::wake`](crate::Coroutine::wake)); the wait is withdrawn, so no late wake follows |
//! | `ErrorKind::TimedOut` | [`Registration::wait_until`]'s deadline passed first |
//! | raw `EBADF` | the fd was closed (or its number reused for another file) while registered; found by a validity sweep within 200 ms, or at once when the number is registered again |
//! | `ErrorKind::NotConnected` | the registration is gone (its context closed) |
//!
//! Every wait is withdrawn before `wait` returns, whatever the result: a
//! registration never leaks a waiter, and a coroutine is woken at most once
//! per wait.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::Location;
use std::ptr;
use std::sync::Arc;
use std::time::Instant;

use crate::context::io::{IoDriver, READ, SWEEP_INTERVAL, WRITE, Waiter, ready_mask};
use crate::context::timers::TimerFn;
use crate::context::{AioContext, ContextInner, current_inner};
use crate::coroutine::control::{self, CoRef};
use crate::tls;

/// `enqueue`'s answer when no wait is needed (tickets start at 1).
const NO_WAIT: u64 = 0;

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

    fn reason(self) -> &'static str {
        match self {
            Direction::Read => "fd readable",
            Direction::Write => "fd writable",
        }
    }
}

/// An fd registered with one context's epoll set (QEMU's
/// `aio_set_fd_handler` for a coroutine that waits on it).
///
/// `Send + Sync`: it may be dropped anywhere (deregistration is then handed
/// to the owning context). Waiting is only possible from a coroutine of the
/// context it is registered with; [`Registration::is_current`] tells. To use
/// an fd from another context, register it there (registrations of one fd
/// on different contexts are independent; on one context they share state).
pub struct Registration {
    ctx: AioContext,
    slot: usize,
    generation: u64,
    reg: u64,
    fd: RawFd,
    /// The fd number as `Runtime::dump` shows it, made once rather than at
    /// every wait (waits are on the hot path of every socket).
    label: Arc<str>,
}

impl Registration {
    /// Registers `fd` with the calling thread's context. The fd should stay
    /// open until the registration is dropped; if it is closed meanwhile,
    /// waits fail with `EBADF` (see the module docs).
    ///
    /// # Errors
    /// `EPERM` for files epoll cannot watch (regular files), `EBADF` for a
    /// closed fd, or the error creating the context's epoll instance.
    pub fn new(fd: BorrowedFd<'_>) -> io::Result<Registration> {
        let ctx = AioContext::current();
        let raw = fd.as_raw_fd();
        let mut woken = Vec::new();
        let (slot, generation, reg) = driver_of(&ctx.inner)?.register(raw, &mut woken)?;
        wake_all(&ctx.inner, woken);
        Ok(Registration {
            ctx,
            slot,
            generation,
            reg,
            fd: raw,
            label: raw.to_string().into(),
        })
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

    /// True if the cached readiness says `dir` is ready (false from another
    /// thread).
    pub fn is_ready(&self, dir: Direction) -> bool {
        self.with_slot(|s| s.ready & ready_mask(dir.bit()) != 0)
            .unwrap_or(false)
    }

    /// Forgets cached readiness for `dir` (call after `WouldBlock` or a short
    /// transfer, on the registration's thread; elsewhere it does nothing).
    /// A hang-up stays cached: it is permanent, and no new event would
    /// report it again.
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
    /// if the cache says it is). The module docs list the errors.
    #[track_caller]
    pub fn wait(&self, dir: Direction) -> io::Result<()> {
        self.wait_inner(dir, None)
    }

    /// Like [`wait`](Registration::wait), failing with
    /// `ErrorKind::TimedOut` if `deadline` passes first (the deadline is a
    /// timer of the registration's context).
    #[track_caller]
    pub fn wait_until(&self, dir: Direction, deadline: Instant) -> io::Result<()> {
        self.wait_inner(dir, Some(deadline))
    }

    fn wait_inner(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        let me = tls::current();
        if me.is_null() {
            return Err(io::Error::other("Registration::wait outside a coroutine"));
        }
        if !self.is_current() {
            return Err(self.wrong_context());
        }
        let inner: &ContextInner = &self.ctx.inner;
        let ticket = self.enqueue(inner, dir, me)?;
        if ticket == NO_WAIT {
            return Ok(());
        }
        let timer = deadline.map(|d| {
            let (slot, generation, bit) = (self.slot, self.generation, dir.bit());
            let id = inner.id;
            inner.add_timer(
                d,
                TimerFn::new(move || {
                    with_owner(id, |inner, driver| {
                        let co = driver.expire(slot, generation, bit, ticket);
                        wake_all(inner, co.into_iter().collect());
                    });
                }),
            )
        });
        crate::raw::set_wait_reason(dir.reason(), Some(self.label.clone()));
        crate::suspend();
        crate::raw::clear_wait_reason();
        if !ptr::eq(tls::context(), inner) {
            // A migratable coroutine moved by someone else while it waited:
            // the slot belongs to another thread; withdraw from there.
            self.withdraw_remote(dir, ticket);
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "moved to another context while waiting",
            ));
        }
        if let Some(t) = timer {
            inner.cancel_timer(t);
        }
        self.finish(inner, dir, ticket)
    }

    /// Installs the current coroutine as the waiter; returns its ticket, or
    /// [`NO_WAIT`] when the cache says `dir` is ready.
    fn enqueue(
        &self,
        inner: &ContextInner,
        dir: Direction,
        me: *const crate::coroutine::control::CoInner,
    ) -> io::Result<u64> {
        let driver = driver_of(inner)?;
        let ticket = driver.next_id();
        let since = driver.sweep_epoch;
        let arm_sweep = !driver.sweep_armed;
        let slot = driver
            .slot(self.slot, self.generation)
            .ok_or_else(closed_registration)?;
        if slot.closed {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if slot.ready & ready_mask(dir.bit()) != 0 {
            return Ok(NO_WAIT);
        }
        let waiter = slot.waiter(dir.bit());
        if waiter.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "another coroutine already waits for fd {} to be {dir:?}-ready",
                    self.fd
                ),
            ));
        }
        // SAFETY: `me` is the running coroutine, alive while it runs.
        let co = unsafe { CoRef::clone_from_ptr(me) };
        *waiter = Some(Waiter {
            co,
            reg: self.reg,
            ticket,
            since,
        });
        if arm_sweep {
            driver.sweep_armed = true;
            inner.add_timer(Instant::now() + SWEEP_INTERVAL, TimerFn::new(sweep_timer));
        }
        Ok(ticket)
    }

    /// After resuming on the owner thread: withdraw and classify.
    fn finish(&self, inner: &ContextInner, dir: Direction, ticket: u64) -> io::Result<()> {
        let driver = driver_of(inner)?;
        let Some(slot) = driver.slot(self.slot, self.generation) else {
            return Err(closed_registration());
        };
        let waiter = slot.waiter(dir.bit());
        if waiter.as_ref().is_some_and(|w| w.ticket == ticket) {
            // Still registered as the waiter: the fd did not wake us.
            *waiter = None;
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "woken before the fd was ready",
            ));
        }
        if slot.closed {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if slot.timed_out[usize::from(dir == Direction::Write)] == ticket {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "fd wait timed out"));
        }
        Ok(())
    }

    #[cold]
    fn withdraw_remote(&self, dir: Direction, ticket: u64) {
        let (slot, generation, bit, id) = (self.slot, self.generation, dir.bit(), self.ctx.id());
        self.ctx.bh_oneshot(move || {
            with_owner(id, |_, driver| {
                if let Some(s) = driver.slot(slot, generation) {
                    let w = s.waiter(bit);
                    if w.as_ref().is_some_and(|w| w.ticket == ticket) {
                        *w = None;
                    }
                }
            });
        });
    }

    #[cold]
    fn wrong_context(&self) -> io::Error {
        io::Error::other(format!(
            "fd {} is registered with context {} ({}), not the calling coroutine's",
            self.fd,
            self.ctx.id(),
            self.ctx.name()
        ))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let (slot, generation, reg) = (self.slot, self.generation, self.reg);
        let release = move |inner: &ContextInner| {
            let waiters = match inner.driver() {
                Some(driver) => driver.deregister(slot, generation, reg),
                None => return,
            };
            // Defensive: a wait borrows its registration, so none should be
            // left; if one is, its wait fails with NotConnected.
            wake_all(inner, waiters);
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
        f.debug_struct("Registration")
            .field("fd", &self.fd)
            .field("context", &self.ctx.id())
            .finish()
    }
}

/// The owner's driver, or the error that epoll is unavailable.
fn driver_of(inner: &ContextInner) -> io::Result<&mut IoDriver> {
    inner
        .driver()
        .ok_or_else(|| io::Error::other("epoll unavailable"))
}

fn closed_registration() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "fd registration closed")
}

/// Runs `f` with the calling thread's context and driver if that context is
/// `id` (timer and bottom-half callbacks run on the owner thread).
fn with_owner(id: u64, f: impl FnOnce(&ContextInner, &mut IoDriver)) {
    let Some(inner) = current_inner() else { return };
    if inner.id != id {
        return;
    }
    if let Some(driver) = inner.driver() {
        f(inner, driver);
    }
}

/// Owner thread: schedules coroutines taken out of the driver.
fn wake_all(inner: &ContextInner, cos: Vec<CoRef>) {
    for co in cos {
        // A coroutine already woken for another reason finds out when it
        // runs; a second wake would be a bug.
        if control::try_schedule(&co, Location::caller()).is_ok() {
            // SAFETY: owner thread; callers hold no borrow of the ready
            // queue (timer callbacks, bottom halves and coroutines run while
            // it is detached).
            unsafe { inner.push_ready(co) };
        }
    }
}

/// The validity sweep's timer (context/io.rs, rule 2).
fn sweep_timer() {
    let Some(inner) = current_inner() else { return };
    let mut woken = Vec::new();
    let again = match inner.driver() {
        Some(driver) => {
            let again = driver.sweep(&mut woken);
            driver.sweep_armed = again;
            again
        }
        None => return,
    };
    if again {
        inner.add_timer(Instant::now() + SWEEP_INTERVAL, TimerFn::new(sweep_timer));
    }
    wake_all(inner, woken);
}

/// Live registrations on the calling thread's context (for leak checks).
pub fn registered_count() -> usize {
    current_inner()
        .and_then(|inner| inner.driver().map(|d| d.sources))
        .unwrap_or(0)
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
