//! The event loop of an `AioContext` (QEMU's `aio_poll`), attached to a
//! home through the core's [`EventLoop`] seam.
//!
//! One turn ([`Loop::dispatch`]) runs due bottom halves, hand-offs, timers,
//! ready coroutines and fd events. With nothing to do, [`Loop::wait`]
//! busy-polls for up to the adaptive polling window (QEMU's
//! `poll-max-ns`), then sleeps in epoll until the next timer, closing the
//! home's sleep gate first (the hand-off + notify protocol, see
//! `core::home::mailbox`).
//!
//! Owner-only state lives in cells; every method that touches it takes the
//! home's [`Owner`] token, which only the owning thread can have.

use std::any::Any;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::io::{IoDriver, Wakee};
use super::timers::{TimerFn, TimerId, Timers};
use crate::core::home::metrics::bump;
use crate::core::home::{EventLoop, Home, Owner};

/// QEMU's default `poll-max-ns` (32 µs).
pub const DEFAULT_POLL_MAX: Duration = Duration::from_nanos(32_768);

/// The first non-zero adaptive polling window (QEMU grows from 4 µs).
const POLL_GROW_START_NS: u64 = 4_000;

/// Turns between two non-blocking epoll checks while coroutines keep the
/// context busy (tokio's `event_interval` idea): fd events are not starved,
/// and the hot ready-queue path stays free of system calls.
const IO_CHECK_INTERVAL: u64 = 61;

/// ... or once this much time has passed since the last `epoll_wait` of any
/// kind, whichever comes first: a turn that runs a long ready queue can take
/// milliseconds, and sockets should not wait 61 of those.
const IO_CHECK_PERIOD: Duration = Duration::from_micros(200);

/// While busy-polling, the time between two non-blocking epoll peeks. The
/// mailbox is checked on every spin; the peek is a system call, and one
/// every few spins made an idle context's window mostly syscalls.
const IO_PEEK_INTERVAL: Duration = Duration::from_micros(8);

/// Extra work sources and sleep bookkeeping of whoever drives the loop (the
/// Runtime's workers look at the injector and other workers' queues).
pub(crate) trait IdleHooks {
    /// True if there is work outside the context's own queues.
    fn has_work(&self) -> bool {
        false
    }
    /// Called after the gate is set to sleeping, before the final re-check.
    fn before_sleep(&self) {}
    /// Called after waking.
    fn after_sleep(&self) {}
}

/// Hooks of a plain thread: none.
pub(crate) struct NoHooks;
impl IdleHooks for NoHooks {}

/// What a context's timers measure time with.
pub(crate) enum Clock {
    /// The monotonic clock (`Instant::now`).
    Real,
    /// A simulation's virtual clock, shared by its contexts: it moves only
    /// when the simulation advances it.
    Virtual(Arc<VirtualClock>),
}

/// Virtual time: a fixed real instant plus an offset the simulation moves.
pub(crate) struct VirtualClock {
    base: Instant,
    offset_ns: AtomicU64,
}

impl VirtualClock {
    /// A clock at virtual time zero.
    pub(crate) fn new() -> VirtualClock {
        VirtualClock {
            base: Instant::now(),
            offset_ns: AtomicU64::new(0),
        }
    }

    /// The virtual instant now.
    pub(crate) fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Relaxed))
    }

    /// Virtual time elapsed since the clock started.
    pub(crate) fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Relaxed))
    }

    /// Moves the clock forward to `t` (never backward).
    pub(crate) fn advance_to(&self, t: Instant) {
        let ns = duration_ns(t.saturating_duration_since(self.base));
        // Relaxed: the simulation runs on one thread.
        self.offset_ns.fetch_max(ns, Relaxed);
    }
}

/// The loop state of one context.
pub(crate) struct Loop {
    /// The eventfd that ends an `epoll_wait` (created with the driver).
    waker: OnceLock<mio::Waker>,
    clock: Clock,
    poll_max_ns: AtomicU64,

    // --- owner thread only (every accessor takes the `Owner` token) ---
    timers: UnsafeCell<Timers>,
    /// Callbacks taken out of `timers` for one turn, kept to reuse the
    /// allocation.
    due: UnsafeCell<Vec<TimerFn>>,
    /// The epoll driver, created on first use. A `RefCell`: fd code reaches
    /// it through closures, and a nested borrow is a bug to report, not a
    /// second `&mut`.
    io: RefCell<Option<IoDriver>>,
    /// Waiters woken by one `epoll_wait`, kept to reuse the allocation
    /// (taken out while they are woken).
    woken: Cell<Vec<Wakee>>,
    poll_ns: Cell<u64>,
    turns: Cell<u64>,
    /// When the last `epoll_wait` (peek or blocking) returned.
    last_io_check: Cell<Instant>,
}

// SAFETY: the owner-only fields are reached only with the home's `Owner`
// token, which only its owning thread can obtain; `waker` and `poll_max_ns`
// are thread-safe.
unsafe impl Sync for Loop {}
// SAFETY: a loop may be dropped on another thread once nobody owns its home;
// its contents (callbacks, the driver, coroutine references) are `Send`.
unsafe impl Send for Loop {}

impl Loop {
    /// A fresh loop with the given polling maximum, on real time.
    pub(crate) fn new(poll_max: Duration) -> Loop {
        Loop::with_clock(poll_max, Clock::Real)
    }

    /// A fresh loop measuring time with `clock`.
    pub(crate) fn with_clock(poll_max: Duration, clock: Clock) -> Loop {
        // Every later reading of `clock` is at least this one.
        let epoch = match &clock {
            Clock::Real => Instant::now(),
            Clock::Virtual(v) => v.now(),
        };
        Loop {
            waker: OnceLock::new(),
            clock,
            poll_max_ns: AtomicU64::new(duration_ns(poll_max)),
            timers: UnsafeCell::new(Timers::new(epoch)),
            due: UnsafeCell::new(Vec::new()),
            io: RefCell::new(None),
            woken: Cell::new(Vec::new()),
            poll_ns: Cell::new(0),
            turns: Cell::new(0),
            last_io_check: Cell::new(Instant::now()),
        }
    }

    /// The loop attached to `home`, attaching a default one first if the
    /// home has none (a home the core created for a plain thread).
    #[inline]
    pub(crate) fn of(home: &Home) -> &Loop {
        match home.loop_as::<Loop>() {
            Some(l) => l,
            None => Loop::attach_default(home),
        }
    }

    #[cold]
    fn attach_default(home: &Home) -> &Loop {
        home.attach_loop(|| Loop::new(DEFAULT_POLL_MAX));
        match home.loop_as::<Loop>() {
            Some(l) => l,
            None => unreachable!("every home's event loop is an AioContext loop"),
        }
    }

    /// The loop's time: real, or its simulation's virtual time.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        match &self.clock {
            Clock::Real => Instant::now(),
            Clock::Virtual(v) => v.now(),
        }
    }

    /// The simulation's clock, when this is a simulated context.
    pub(crate) fn virtual_clock(&self) -> Option<&Arc<VirtualClock>> {
        match &self.clock {
            Clock::Real => None,
            Clock::Virtual(v) => Some(v),
        }
    }

    /// Owner: one turn; true if anything ran. A turn that ran nothing peeks
    /// at epoll, so that a caller that does not wait next still sees fd
    /// events.
    pub(crate) fn dispatch(&self, o: Owner<'_>) -> bool {
        self.turn(o, true)
    }

    /// Owner: one turn for a caller that calls [`wait`](Loop::wait) when it
    /// returns false: an idle turn does not peek at epoll, since the wait
    /// that follows looks there anyway (busy-polling or blocking).
    pub(crate) fn dispatch_then_wait(&self, o: Owner<'_>) -> bool {
        self.turn(o, false)
    }

    #[inline]
    fn turn(&self, o: Owner<'_>, peek_when_idle: bool) -> bool {
        let turn = self.turns.get().wrapping_add(1);
        self.turns.set(turn);
        let mut progress = o.run_bhs();
        progress |= o.take_handoffs();
        progress |= self.run_timers(o);
        progress |= o.run_ready();
        // The periodic check applies to idle turns too: a worker whose turns
        // run nothing here but start stolen coroutines does not wait. A
        // context without fds skips it before the clock is read.
        if self.io_sources(o) > 0
            && ((!progress && peek_when_idle)
                || turn % IO_CHECK_INTERVAL == 0
                || self.io_check_due())
        {
            progress |= self.poll_io(o, Some(Duration::ZERO));
        }
        progress
    }

    /// Owner: the last non-blocking fd check is older than
    /// [`IO_CHECK_PERIOD`].
    fn io_check_due(&self) -> bool {
        self.last_io_check.get().elapsed() >= IO_CHECK_PERIOD
    }

    /// Owner: file descriptors registered with the driver.
    fn io_sources(&self, _o: Owner<'_>) -> usize {
        self.io.borrow().as_ref().map_or(0, |d| d.sources)
    }

    /// Owner: runs `f` on the epoll driver, created on first use; `None` if
    /// epoll cannot be had (the error is reported once per attempt).
    ///
    /// # Panics
    /// If `f` reaches the driver again (a nested borrow).
    pub(crate) fn with_driver<R>(
        &self,
        o: Owner<'_>,
        f: impl FnOnce(&mut IoDriver) -> R,
    ) -> Option<R> {
        let mut slot = self.io.borrow_mut();
        if slot.is_none() {
            match IoDriver::new() {
                Ok((driver, waker)) => {
                    let _ = self.waker.set(waker);
                    *slot = Some(driver);
                }
                Err(e) => {
                    eprintln!(
                        "coscheduler: context {} cannot create epoll: {e}",
                        o.home.id
                    );
                    return None;
                }
            }
        }
        slot.as_mut().map(f)
    }

    /// Owner: waits for fd events up to `timeout`; true if one woke a
    /// coroutine. Restarts the [`IO_CHECK_PERIOD`] clock.
    fn poll_io(&self, o: Owner<'_>, timeout: Option<Duration>) -> bool {
        bump(&o.home.counters.epoll_waits, 1);
        let mut woken = self.woken.take();
        let waited = self.with_driver(o, |d| d.wait(timeout, &mut woken));
        self.last_io_check.set(Instant::now());
        match waited {
            None => {
                self.woken.set(woken);
                if let Some(t) = timeout {
                    std::thread::sleep(t);
                }
                return false;
            }
            Some(Err(e)) => panic!(
                "epoll_wait on context {} ({}) failed: {e}",
                o.home.id,
                o.home.name()
            ),
            Some(Ok(())) => {}
        }
        let any = !woken.is_empty();
        // The driver is no longer borrowed: a waker may run arbitrary code,
        // including a coroutine entered at once (then a nested `poll_io`
        // finds `self.woken` empty and uses a fresh vector).
        for w in woken.drain(..) {
            w.wake(o);
        }
        self.woken.set(woken);
        any
    }

    /// Owner: arms a timer.
    pub(crate) fn add_timer(&self, o: Owner<'_>, deadline: Instant, cb: TimerFn) -> TimerId {
        // SAFETY: owner only (the token), short borrow.
        let key = unsafe { (*self.timers.get()).add(deadline, cb) };
        TimerId {
            context: o.home.id,
            key,
        }
    }

    /// Owner: disarms a timer; a `TimerId` from another context is refused
    /// (false).
    pub(crate) fn cancel_timer(&self, o: Owner<'_>, id: TimerId) -> bool {
        if id.context != o.home.id {
            return false;
        }
        // SAFETY: owner only, short borrow, ended before the callback drops.
        let cb = unsafe { (*self.timers.get()).cancel(id.key) };
        cb.is_some()
    }

    /// Owner: the next timer deadline.
    pub(crate) fn next_deadline(&self, _o: Owner<'_>) -> Option<Instant> {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.timers.get()).next_deadline() }
    }

    /// Owner: runs the due timer callbacks; true if any fired. A panicking
    /// callback is re-raised after the rest are re-armed (due now).
    #[inline]
    pub(crate) fn run_timers(&self, o: Owner<'_>) -> bool {
        // SAFETY: owner only (the token), short borrow.
        if unsafe { (*self.timers.get()).len() } == 0 {
            return false;
        }
        self.run_timers_slow(o)
    }

    #[inline(never)]
    fn run_timers_slow(&self, o: Owner<'_>) -> bool {
        // The scratch vector is taken out while callbacks run (they may arm
        // timers, or even poll) and put back afterwards, so that firing
        // timers allocates nothing in steady state.
        // SAFETY: owner only; the borrows end before callbacks run.
        let mut due = unsafe {
            let timers = &mut *self.timers.get();
            if timers.len() == 0 {
                return false;
            }
            let mut due = std::mem::take(&mut *self.due.get());
            timers.take_due(self.now(), &mut due);
            due
        };
        let fired = !due.is_empty();
        bump(&o.home.counters.timer_fires, due.len() as u64);
        let mut callbacks = due.drain(..);
        while let Some(cb) = callbacks.next() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb.run())) {
                let now = self.now();
                for rest in callbacks.by_ref() {
                    self.add_timer(o, now, rest);
                }
                drop(callbacks);
                // SAFETY: owner only, no other borrow of the scratch.
                unsafe { *self.due.get() = due };
                resume_unwind(p);
            }
        }
        drop(callbacks);
        // SAFETY: owner only, no other borrow of the scratch.
        unsafe { *self.due.get() = due };
        fired
    }

    /// Owner: nothing to do right now; busy-poll, then sleep until work
    /// arrives, the next timer is due, or `limit` passes.
    pub(crate) fn wait(&self, o: Owner<'_>, limit: Option<Instant>, hooks: &dyn IdleHooks) {
        let home = o.home;
        if !o.ready_is_empty() || home.has_incoming() || hooks.has_work() {
            return;
        }
        let deadline = match (self.next_deadline(o), limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.busy_poll(o, deadline, hooks) {
            bump(&home.counters.poll_hits, 1);
            return;
        }
        if self.with_driver(o, |_| ()).is_none() {
            // Without epoll there is nothing to sleep in: yield the CPU.
            std::thread::yield_now();
            return;
        }
        // The "hand-off + notify" protocol, owner side (see the mailbox).
        o.prepare_sleep();
        hooks.before_sleep();
        if home.has_incoming() || hooks.has_work() {
            o.finish_sleep();
            hooks.after_sleep();
            return;
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        bump(&home.counters.parks, 1);
        let started = Instant::now();
        self.poll_io(o, timeout);
        o.finish_sleep();
        hooks.after_sleep();
        self.adapt_polling(started.elapsed());
    }

    /// Spins for the adaptive window; true if work showed up.
    fn busy_poll(&self, o: Owner<'_>, deadline: Option<Instant>, hooks: &dyn IdleHooks) -> bool {
        let window = self.poll_ns.get();
        if window == 0 {
            return false;
        }
        let start = Instant::now();
        let mut end = start + Duration::from_nanos(window);
        if let Some(d) = deadline {
            end = end.min(d);
        }
        let watch_io = self.io_sources(o) > 0;
        let mut next_peek = start;
        let mut spins = 0u32;
        loop {
            if o.home.has_incoming() || hooks.has_work() {
                return true;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 16 == 0 {
                let now = Instant::now();
                // QEMU polls its fd handlers during the polling window; ours
                // are in epoll, so peek at it without blocking, every
                // `IO_PEEK_INTERVAL`: otherwise a socket's data waits out
                // the whole window and the spin is pure cost.
                if watch_io && now >= next_peek {
                    if self.poll_io(o, Some(Duration::ZERO)) {
                        return true;
                    }
                    next_peek = now + IO_PEEK_INTERVAL;
                }
                if now >= end {
                    return false;
                }
            }
        }
    }

    /// QEMU's adaptive polling: grow the window when sleeps are short (work
    /// arrives soon after we give up), shrink it when they are long.
    fn adapt_polling(&self, slept: Duration) {
        let max = self.poll_max_ns.load(Relaxed);
        let slept = duration_ns(slept);
        let cur = self.poll_ns.get();
        let next = if max == 0 {
            0
        } else if slept <= cur {
            cur
        } else if slept > max {
            cur / 2
        } else {
            cur.saturating_mul(2)
                .clamp(POLL_GROW_START_NS.min(max), max)
        };
        self.poll_ns.set(next);
    }

    /// Sets the adaptive polling maximum (any thread; the window itself is
    /// clamped by its owner).
    pub(crate) fn set_poll_max(&self, home: &Home, max: Duration) {
        self.poll_max_ns.store(duration_ns(max), Relaxed);
        if home.owner().is_some() {
            self.poll_ns.set(self.poll_ns.get().min(duration_ns(max)));
        }
    }
}

impl EventLoop for Loop {
    fn unpark(&self) {
        if let Some(w) = self.waker.get() {
            // An eventfd write can only fail with EAGAIN when the counter is
            // saturated, in which case the owner is being woken anyway.
            let _ = w.wake();
        }
    }

    fn poll(&self, o: Owner<'_>, blocking: bool) -> bool {
        // An `aio_notify` since the last poll ends a blocking poll even when
        // nothing else happened (a joiner waiting for a flag relies on it).
        let notified = o.take_notified();
        let progress = self.turn(o, !blocking || notified);
        if progress || !blocking || notified {
            return progress;
        }
        self.wait(o, None, &NoHooks);
        self.dispatch(o)
    }

    fn shutdown_turn(&self, o: Owner<'_>) -> bool {
        self.run_timers(o)
    }

    fn shutdown_wait(&self, o: Owner<'_>, until: Instant) {
        self.wait(o, Some(until), &NoHooks);
    }

    fn close(&self, _o: Owner<'_>) {
        // SAFETY: owner only (the token), short borrow; the callbacks are
        // dropped after it ends, unrun.
        let timers = unsafe { (*self.timers.get()).clear() };
        drop(timers);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub(crate) fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
