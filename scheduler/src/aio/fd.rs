//! File-descriptor readiness for coroutines (QEMU's
//! `yield_until_fd_readable`, generalised).
//!
//! A [`Registration`] puts an fd in the calling thread's context's epoll set,
//! edge-triggered for both directions, with a readiness cache (see
//! `aio/io.rs`). [`Registration::wait`] suspends the current coroutine
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
//!
//! # Polling from async code
//!
//! [`Registration::poll_ready`] is the same wait for a `Future`: instead of
//! suspending a coroutine it stores the task's `Waker` as the direction's
//! waiter and returns `Poll::Pending`; the event, sweep or deregistration
//! that would have resumed a coroutine wakes the waker instead. It must be
//! called on the registration's own thread (the driver is owner-only state,
//! like everything a context owns), where `Err` of `ErrorKind::Other` is
//! the answer elsewhere; the other results are the table's, except that
//! there is no `Interrupted` or `TimedOut` (a poll does not suspend, and
//! deadlines are the executor's business). Whatever polls must let the
//! context run for the waker to be woken: a coroutine of that context, or
//! [`wait`](crate::wait) on its thread, does.
//!
//! One waiter per direction still holds. A poll replaces the waker of an
//! earlier poll (only the last poll's waker is woken, as the `Future`
//! contract asks), but fails with `ResourceBusy` while a coroutine waits; a
//! coroutine's `wait` takes the direction over from a stored waker, waking
//! it: async code cannot withdraw a waker when it drops a future, so a stale
//! one must not lock coroutines out.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::AioContext;
use super::event_loop::Loop;
use super::io::{FdSlot, IoDriver, READ, SWEEP_INTERVAL, WRITE, Waiter, Wakee, ready_mask};
use super::timers::TimerFn;
use crate::core::control::{CoInner, CoRef};
use crate::core::home::{self, Owner};
use crate::core::tls;

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
/// context it is registered with, and polling
/// ([`poll_ready`](Registration::poll_ready)) only on that context's thread;
/// [`Registration::is_current`] tells. To use
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
        let (o, lp) = owned(&ctx).ok_or_else(|| io::Error::other("no context on this thread"))?;
        let mut woken = Vec::new();
        let registered = with_driver(o, lp, |d| d.register(raw, &mut woken))?;
        wake_all(o, woken);
        let (slot, generation, reg) = registered?;
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
        self.ctx.home.is_owner()
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

    fn with_slot<R>(&self, f: impl FnOnce(&mut FdSlot) -> R) -> Option<R> {
        let (o, lp) = owned(&self.ctx)?;
        let (slot, generation) = (self.slot, self.generation);
        lp.with_driver(o, |d| d.slot(slot, generation).map(f))
            .flatten()
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
        let Some((o, lp)) = owned(&self.ctx) else {
            return Err(self.wrong_context());
        };
        let ticket = self.enqueue(o, lp, dir, me)?;
        if ticket == NO_WAIT {
            return Ok(());
        }
        let timer = deadline.map(|d| {
            let (slot, generation, bit) = (self.slot, self.generation, dir.bit());
            let id = o.home.id;
            lp.add_timer(
                o,
                d,
                TimerFn::new(move || {
                    with_owner(id, |o, lp| {
                        let co = with_driver(o, lp, |d| d.expire(slot, generation, bit, ticket));
                        wake_all(o, co.ok().flatten().into_iter().collect());
                    });
                }),
            )
        });
        crate::raw::set_wait_reason(dir.reason(), Some(self.label.clone()));
        crate::suspend();
        crate::raw::clear_wait_reason();
        if !ptr::eq(tls::home(), Arc::as_ptr(&self.ctx.home)) {
            // A migratable coroutine moved by someone else while it waited:
            // the slot belongs to another thread; withdraw from there.
            self.withdraw_remote(dir, ticket);
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "moved to another context while waiting",
            ));
        }
        if let Some(t) = timer {
            lp.cancel_timer(o, t);
        }
        self.finish(o, lp, dir, ticket)
    }

    /// Installs the current coroutine as the waiter; returns its ticket, or
    /// [`NO_WAIT`] when the cache says `dir` is ready. A waker left by a
    /// poll is displaced and woken (see "Polling from async code").
    fn enqueue(
        &self,
        o: Owner<'_>,
        lp: &Loop,
        dir: Direction,
        me: *const CoInner,
    ) -> io::Result<u64> {
        let (installed, displaced) = self.install(o, lp, dir, |_| {
            // SAFETY: `me` is the running coroutine, alive while it runs.
            Some(Wakee::Co(unsafe { CoRef::clone_from_ptr(me) }))
        });
        if let Some(w) = displaced {
            w.wake(o);
        }
        installed
    }

    /// Polls for `dir` readiness from async code: `Ready(Ok(()))` if the
    /// cache says the fd is ready; otherwise stores a clone of the context's
    /// waker as the direction's waiter (replacing a waker stored by an
    /// earlier poll) and returns `Pending`. The waker is then woken once,
    /// on the registration's thread, when an event makes `dir` ready, when
    /// the fd is found closed (the next poll gives `EBADF`), when a
    /// coroutine's [`wait`](Registration::wait) takes the direction over, or
    /// when the registration is dropped. The module docs ("Polling from
    /// async code") list the errors.
    ///
    /// As with [`wait`](Registration::wait), the cache is only forgotten by
    /// [`clear`](Registration::clear): call it after `WouldBlock`, then poll.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use std::io::Write;
    /// use std::os::fd::AsFd;
    /// use coscheduler::fd::{Direction, Registration};
    ///
    /// let h = coscheduler::AioContext::current().spawn(|| {
    ///     let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    ///     let reg = Registration::new(a.as_fd()).unwrap();
    ///     let writer = coscheduler::AioContext::current().spawn(move || {
    ///         b.write_all(b"x").unwrap();
    ///     });
    ///     // Async code, awaited by this coroutine.
    ///     coscheduler::wait(poll_fn(|cx| reg.poll_ready(Direction::Read, cx))).unwrap();
    ///     writer.join().unwrap();
    /// });
    /// h.join().unwrap();
    /// ```
    pub fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((o, lp)) = owned(&self.ctx) else {
            return Poll::Ready(Err(io::Error::other(format!(
                "fd {} is registered with context {} ({}), whose driver only its own thread \
                 may poll; polled from another thread",
                self.fd,
                self.ctx.id(),
                self.ctx.name()
            ))));
        };
        let (installed, replaced) = self.install(o, lp, dir, |old| match old {
            // Polled again by the same task: nothing to change.
            Some(Wakee::Task(w)) if w.will_wake(cx.waker()) => None,
            _ => Some(Wakee::Task(cx.waker().clone())),
        });
        // Dropped, not woken: only the last poll's waker is owed a wake, and
        // dropping it may drop a coroutine's last reference, which must not
        // happen while the driver is borrowed.
        drop(replaced);
        match installed {
            Ok(NO_WAIT) => Poll::Ready(Ok(())),
            Ok(_) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// The common part of [`enqueue`](Registration::enqueue) and
    /// [`poll_ready`](Registration::poll_ready): checks the slot and, if
    /// `dir` is not ready, makes `make(current waiter)` the waiter (`None`:
    /// keep the current one). A coroutine waiter is never replaced
    /// (`ResourceBusy`); a waker waiter is, and is returned for the caller
    /// to wake or drop once the driver is no longer borrowed. Returns the
    /// wait's ticket, or [`NO_WAIT`] when the cache says `dir` is ready.
    fn install(
        &self,
        o: Owner<'_>,
        lp: &Loop,
        dir: Direction,
        make: impl FnOnce(Option<&Wakee>) -> Option<Wakee>,
    ) -> (io::Result<u64>, Option<Wakee>) {
        let (slot, generation, reg, fd) = (self.slot, self.generation, self.reg, self.fd);
        let mut displaced = None;
        let installed = with_driver(o, lp, |driver| {
            let ticket = driver.next_id();
            let epoch = driver.sweep_epoch;
            let arm_sweep = !driver.sweep_armed;
            let slot = driver
                .slot(slot, generation)
                .ok_or_else(closed_registration)?;
            if slot.closed {
                return Err(io::Error::from_raw_os_error(libc::EBADF));
            }
            if slot.ready & ready_mask(dir.bit()) != 0 {
                return Ok((NO_WAIT, false));
            }
            let waiter = slot.waiter(dir.bit());
            if let Some(Waiter {
                who: Wakee::Co(_), ..
            }) = waiter
            {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("another coroutine already waits for fd {fd} to be {dir:?}-ready"),
                ));
            }
            let Some(who) = make(waiter.as_ref().map(|w| &w.who)) else {
                // Kept as it is: its ticket stands.
                return Ok((waiter.as_ref().map_or(ticket, |w| w.ticket), false));
            };
            // A waker replaced by a later poll of the same wait keeps the
            // epoch its wait began in, so the sweep still checks it.
            let since = waiter.as_ref().map_or(epoch, |w| w.since);
            displaced = waiter
                .replace(Waiter {
                    who,
                    reg,
                    ticket,
                    since,
                })
                .map(|w| w.who);
            if arm_sweep {
                driver.sweep_armed = true;
            }
            Ok((ticket, arm_sweep))
        })
        .and_then(|r| r);
        let ticket = installed.map(|(ticket, arm)| {
            if arm {
                lp.add_timer(
                    o,
                    Instant::now() + SWEEP_INTERVAL,
                    TimerFn::new(sweep_timer),
                );
            }
            ticket
        });
        (ticket, displaced)
    }

    /// After resuming on the owner thread: withdraw and classify.
    fn finish(&self, o: Owner<'_>, lp: &Loop, dir: Direction, ticket: u64) -> io::Result<()> {
        let (slot, generation) = (self.slot, self.generation);
        with_driver(o, lp, |driver| {
            let Some(slot) = driver.slot(slot, generation) else {
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
        })?
    }

    #[cold]
    fn withdraw_remote(&self, dir: Direction, ticket: u64) {
        let (slot, generation, bit, id) = (self.slot, self.generation, dir.bit(), self.ctx.id());
        self.ctx.bh_oneshot(move || {
            with_owner(id, |o, lp| {
                let _ = with_driver(o, lp, |driver| {
                    if let Some(s) = driver.slot(slot, generation) {
                        let w = s.waiter(bit);
                        if w.as_ref().is_some_and(|w| w.ticket == ticket) {
                            *w = None;
                        }
                    }
                });
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
        let release = move |ctx: &AioContext| {
            let Some((o, lp)) = owned(ctx) else { return };
            // A coroutine's wait borrows its registration, so none should be
            // left (if one is, its wait fails with NotConnected); a waker
            // left by a poll is woken, and its poller polls again.
            if let Some(waiters) = lp.with_driver(o, |d| d.deregister(slot, generation, reg)) {
                wake_all(o, waiters);
            }
        };
        if self.is_current() {
            release(&self.ctx);
        } else {
            let ctx = self.ctx.clone();
            self.ctx.bh_oneshot(move || release(&ctx));
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

/// The owner token and loop of `ctx`, on its owning thread only.
fn owned(ctx: &AioContext) -> Option<(Owner<'_>, &Loop)> {
    let o = ctx.home.owner()?;
    Some((o, ctx.event_loop()))
}

/// Runs `f` on the owner's driver, or fails if epoll is unavailable.
fn with_driver<R>(o: Owner<'_>, lp: &Loop, f: impl FnOnce(&mut IoDriver) -> R) -> io::Result<R> {
    lp.with_driver(o, f)
        .ok_or_else(|| io::Error::other("epoll unavailable"))
}

fn closed_registration() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "fd registration closed")
}

/// Runs `f` with the calling thread's home and loop if that home is `id`
/// (timer and bottom-half callbacks run on the owner thread).
fn with_owner(id: u64, f: impl FnOnce(Owner<'_>, &Loop)) {
    let p = tls::home();
    // SAFETY: the thread's home is alive while installed; used on this
    // thread only, before any switch.
    let Some(h) = (unsafe { p.as_ref() }) else {
        return;
    };
    if h.id != id {
        return;
    }
    // SAFETY: it is this thread's home.
    let o = unsafe { h.owner_unchecked() };
    f(o, Loop::of(h));
}

/// Owner thread, with the driver not borrowed: wakes the waiters taken out
/// of it.
fn wake_all(o: Owner<'_>, waiters: Vec<Wakee>) {
    for w in waiters {
        w.wake(o);
    }
}

/// The validity sweep's timer (`aio/io.rs`, rule 2).
fn sweep_timer() {
    let h = home::current();
    // SAFETY: `current` returns this thread's installed home.
    let o = unsafe { h.owner_unchecked() };
    let lp = Loop::of(&h);
    let mut woken = Vec::new();
    let again = lp.with_driver(o, |driver| {
        let again = driver.sweep(&mut woken);
        driver.sweep_armed = again;
        again
    });
    if again == Some(true) {
        lp.add_timer(
            o,
            Instant::now() + SWEEP_INTERVAL,
            TimerFn::new(sweep_timer),
        );
    }
    wake_all(o, woken);
}

/// Live registrations on the calling thread's context (for leak checks).
pub fn registered_count() -> usize {
    let ctx = AioContext::current();
    owned(&ctx)
        .and_then(|(o, lp)| lp.with_driver(o, |d| d.sources))
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
