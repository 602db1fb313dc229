//! `AioContext`: one event loop per thread (layer 4, QEMU's `util/async.c`).
//!
//! A context owns:
//! - a **ready queue** of coroutines to enter on its next turn (owner-only);
//! - a **hand-off queue** that any thread pushes to (`aio_co_wake` of a
//!   coroutine homed here, `aio_co_schedule`), with the sleep gate that
//!   decides whether the pusher must write the waker
//!   ([`handoff`] documents and model-checks the protocol);
//! - **bottom halves**: one-shot callbacks from any thread;
//! - **timers** (the base of `co_sleep` and timeouts);
//! - a lazily created `mio::Poll` for fd readiness and for sleeping.
//!
//! [`AioContext::poll`] is `aio_poll`: one turn runs due bottom halves,
//! hand-offs, timers, ready coroutines and I/O events; a blocking poll that
//! finds nothing busy-polls for up to the adaptive polling window (QEMU's
//! `poll-max-ns`) and then sleeps in epoll until the next timer.

pub(crate) mod handoff;
pub(crate) mod io;
pub(crate) mod metrics;
mod registry;
mod shutdown;
pub(crate) mod timers;

use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::panic::{AssertUnwindSafe, Location, catch_unwind, resume_unwind};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::{Duration, Instant};

use self::handoff::{Linked, Mailbox};
use self::io::IoDriver;
pub use self::metrics::ContextMetrics;
use self::metrics::{Counters, bump};
use self::registry::Registry;
pub use self::shutdown::DEFAULT_SHUTDOWN_TIMEOUT;
pub use self::timers::TimerId;
use self::timers::{TimerFn, Timers};
use crate::coroutine::control::{
    self, CoInner, CoRef, FINISHED, LocalList, NEW, RUNNING, SUSPENDED, WaitReason,
};
use crate::coroutine::wake_mark::{self, WakeDecision};
use crate::coroutine::{Coroutine, enter};
use crate::join::JoinHandle;
use crate::sync::{Arc, AtomicPtr, AtomicU64};
use crate::tls;

/// QEMU's default `poll-max-ns` (32 µs).
pub const DEFAULT_POLL_MAX: Duration = Duration::from_nanos(32_768);

/// The first non-zero adaptive polling window (QEMU grows from 4 µs).
const POLL_GROW_START_NS: u64 = 4_000;

/// Turns between two non-blocking epoll checks while coroutines keep the
/// context busy (tokio's `event_interval` idea): fd events are not starved,
/// and the hot ready-queue path stays free of system calls.
const IO_CHECK_INTERVAL: u64 = 61;

/// ... or once this much time has passed since the last check, whichever
/// comes first: a turn that runs a long ready queue can take milliseconds,
/// and sockets should not wait 61 of those.
const IO_CHECK_PERIOD: Duration = Duration::from_micros(200);

type Bh = Box<dyn FnOnce() + Send + 'static>;

/// A handle to an event loop. Cheap to clone; `Send + Sync`; equal when it
/// designates the same context.
///
/// QEMU: `AioContext`. Each thread that uses coroutines gets one on first use
/// ([`AioContext::current`]); each [`Runtime`](crate::Runtime) worker runs
/// one.
#[derive(Clone)]
pub struct AioContext {
    pub(crate) inner: Arc<ContextInner>,
}

/// The shared state of a context. Fields after `poll_max_ns` are touched only
/// by the owning thread (the thread whose `tls::context()` points here).
pub(crate) struct ContextInner {
    pub(crate) id: u64,
    name: Box<str>,
    /// Hand-offs, bottom halves, notifications and the closed flag
    /// ([`handoff`] documents and model-checks the protocols).
    mailbox: Mailbox<CoInner, Bh>,
    waker: OnceLock<mio::Waker>,
    pub(crate) counters: Counters,
    poll_max_ns: AtomicU64,
    pub(crate) stack_size: usize,

    // --- owner thread only ---
    ready: UnsafeCell<LocalList>,
    timers: UnsafeCell<Timers>,
    registry: UnsafeCell<Registry>,
    io: UnsafeCell<Option<IoDriver>>,
    poll_ns: Cell<u64>,
    turns: Cell<u64>,
    last_io_check: Cell<Instant>,
    due: UnsafeCell<Vec<TimerFn>>,
    /// Shutting down (see [`shutdown`]): coroutines that never started are
    /// dropped instead of started.
    pub(crate) draining: Cell<bool>,
}

// SAFETY: the owner-only fields (`UnsafeCell`/`Cell`) are accessed solely by
// the owning thread, which every such accessor checks or documents (module
// docs and `assert_owner`); everything else is atomic or behind a Mutex.
unsafe impl Sync for ContextInner {}
// SAFETY: a context is created on one thread and may be dropped on another
// once no thread owns it; its owner-only contents (coroutine references,
// callbacks, the poll) are themselves Send.
unsafe impl Send for ContextInner {}

impl Linked for CoInner {
    fn link(&self) -> &AtomicPtr<CoInner> {
        &self.handoff_next
    }
}

/// Settings of a new context.
#[derive(Clone, Debug)]
pub(crate) struct ContextSettings {
    pub(crate) name: String,
    pub(crate) poll_max: Duration,
    /// Usable stack bytes of coroutines placed here without a size.
    pub(crate) stack_size: usize,
}

impl ContextInner {
    fn new(settings: ContextSettings) -> ContextInner {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        ContextInner {
            // Relaxed: only uniqueness is needed.
            id: NEXT_ID.fetch_add(1, Relaxed),
            name: settings.name.into_boxed_str(),
            mailbox: Mailbox::new(),
            waker: OnceLock::new(),
            counters: Counters::default(),
            poll_max_ns: AtomicU64::new(duration_ns(settings.poll_max)),
            stack_size: settings.stack_size,
            ready: UnsafeCell::new(LocalList::new()),
            timers: UnsafeCell::new(Timers::default()),
            registry: UnsafeCell::new(Registry::default()),
            io: UnsafeCell::new(None),
            poll_ns: Cell::new(0),
            turns: Cell::new(0),
            last_io_check: Cell::new(Instant::now()),
            due: UnsafeCell::new(Vec::new()),
            draining: Cell::new(false),
        }
    }

    /// True on the owning thread.
    #[inline]
    pub(crate) fn is_owner(&self) -> bool {
        ptr::eq(tls::context(), self)
    }

    #[track_caller]
    fn assert_owner(&self, what: &str) {
        if !self.is_owner() {
            panic!(
                "AioContext::{what} on context {} ({}) from a thread that does not own it",
                self.id, self.name
            );
        }
    }

    /// Owner-only: appends to the ready queue.
    ///
    /// # Safety
    /// Owner thread only, and not while another borrow of `ready` is live.
    #[inline]
    pub(crate) unsafe fn push_ready(&self, co: CoRef) {
        // SAFETY: owner only, no other live borrow (caller's contract).
        unsafe { (*self.ready.get()).push_back(co) };
    }

    /// Owner: appends a whole list to the ready queue.
    ///
    /// # Safety
    /// Owner thread only, and not while another borrow of `ready` is live.
    pub(crate) unsafe fn append_ready(&self, list: LocalList) {
        // SAFETY: owner only, no other live borrow (caller's contract).
        unsafe { (*self.ready.get()).append(list) };
    }

    /// Any thread: gives `co` (already marked scheduled) to this context.
    /// After the context closed, the coroutine is dropped here instead (see
    /// the mailbox's close protocol).
    pub(crate) fn push_remote(&self, co: CoRef) {
        let raw = co.into_raw() as *mut CoInner;
        // SAFETY: `raw` carries one reference, is not on any queue (one
        // accepted wake), and is reclaimed by whoever takes it (the owner's
        // `take_handoffs`, or the drain of a closed mailbox).
        if let Some(late) = unsafe { self.mailbox.post_handoff(raw, || self.wake_thread()) } {
            drop_taken(late);
        }
    }

    fn wake_thread(&self) {
        if let Some(w) = self.waker.get() {
            // An eventfd write can only fail with EAGAIN when the counter is
            // saturated, in which case the owner is being woken anyway.
            let _ = w.wake();
        }
    }

    /// QEMU's `aio_notify`.
    pub(crate) fn notify(&self) {
        self.mailbox.notify(|| self.wake_thread());
    }

    fn schedule_bh(&self, bh: Bh) {
        if let Some(unrun) = self.mailbox.post_bh(bh, || self.wake_thread()) {
            drop(unrun);
        }
    }

    /// Consumes a pending `aio_notify`. Whoever drives the loop calls this
    /// once per turn, before `dispatch` (never inside it: a notification
    /// consumed there could not end the blocking poll it was meant for).
    pub(crate) fn take_notified(&self) -> bool {
        self.mailbox.take_notified()
    }

    /// True if a source other than the ready queue has work.
    fn has_incoming(&self) -> bool {
        self.mailbox.has_incoming()
    }

    /// Owner: takes the hand-off queue into the ready queue.
    fn take_handoffs(&self) -> bool {
        let mut any = 0;
        for raw in self.mailbox.take_handoffs() {
            // SAFETY: each node carries the reference given up in
            // `push_remote`; we are the owner, with no live borrow of `ready`.
            unsafe { self.push_ready(CoRef::from_raw(raw)) };
            any += 1;
        }
        bump(&self.counters.handoffs_received, any);
        any > 0
    }

    fn run_bhs(&self) -> bool {
        let Some(bhs) = self.mailbox.take_bhs() else {
            return false;
        };
        let n = bhs.len();
        let mut bhs = bhs.into_iter();
        while let Some(bh) = bhs.next() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(bh)) {
                // Keep the rest for the next turn, then let the panic out.
                self.mailbox.requeue_bhs(bhs.collect());
                resume_unwind(p);
            }
            bump(&self.counters.bottom_halves, 1);
        }
        n > 0
    }

    fn run_timers(&self) -> bool {
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
            timers.take_due(Instant::now(), &mut due);
            due
        };
        let fired = !due.is_empty();
        bump(&self.counters.timer_fires, due.len() as u64);
        let mut callbacks = due.drain(..);
        while let Some(cb) = callbacks.next() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| cb.run())) {
                // Re-arm the callbacks that did not run yet (they are due
                // now), then let the panic out: no timer is lost.
                let now = Instant::now();
                for rest in callbacks.by_ref() {
                    self.add_timer(now, rest);
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

    /// Owner: enters everything that was ready at the start of the call.
    fn run_ready(&self) -> bool {
        // SAFETY: owner only; the borrow ends immediately.
        let mut batch = unsafe { std::mem::replace(&mut *self.ready.get(), LocalList::new()) };
        if batch.is_empty() {
            return false;
        }
        while let Some(co) = batch.pop_front() {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| self.run_scheduled(co))) {
                // A raw coroutine's panic goes to whoever polls, but the
                // coroutines queued behind it are not lost.
                // SAFETY: owner only; no live borrow of `ready`.
                unsafe {
                    let ready = &mut *self.ready.get();
                    let later = std::mem::replace(ready, LocalList::new());
                    ready.append(batch);
                    ready.append(later);
                }
                resume_unwind(p);
            }
        }
        true
    }

    /// Owner: enters a coroutine taken from a queue (its wake is consumed).
    pub(crate) fn run_scheduled(&self, co: CoRef) {
        control::clear_scheduled(&co);
        match co.state() {
            FINISHED => {}
            NEW if co.cancel.load(Relaxed) => {}
            RUNNING if co.migratable => {
                // Still running on its previous context: its wake takes
                // effect once it has suspended there. Re-queue it, unless
                // another waker already owns its next wake.
                if control::try_schedule(&co, Location::caller()).is_ok() {
                    // SAFETY: owner; no live borrow of `ready`.
                    unsafe { self.push_ready(co) };
                }
            }
            _ => enter::enter_chain(&co, true),
        }
    }

    fn io_sources(&self) -> usize {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.io.get()).as_ref().map_or(0, |d| d.sources) }
    }

    /// Owner: one turn of the loop; true if anything ran.
    pub(crate) fn dispatch(&self) -> bool {
        let turn = self.turns.get().wrapping_add(1);
        self.turns.set(turn);
        let mut progress = false;
        progress |= self.run_bhs();
        progress |= self.take_handoffs();
        progress |= self.run_timers();
        progress |= self.run_ready();
        if self.io_sources() > 0
            && (!progress || turn % IO_CHECK_INTERVAL == 0 || self.io_check_due())
        {
            self.last_io_check.set(Instant::now());
            progress |= self.poll_io(Some(Duration::ZERO));
        }
        progress
    }

    /// Owner: the last non-blocking fd check is older than
    /// [`IO_CHECK_PERIOD`].
    fn io_check_due(&self) -> bool {
        self.last_io_check.get().elapsed() >= IO_CHECK_PERIOD
    }

    /// Owner: waits for events; true if an fd event woke a coroutine.
    fn poll_io(&self, timeout: Option<Duration>) -> bool {
        let Some(driver) = self.driver() else {
            if let Some(t) = timeout {
                std::thread::sleep(t);
            }
            return false;
        };
        bump(&self.counters.epoll_waits, 1);
        let mut woken = Vec::new();
        if let Err(e) = driver.wait(timeout, &mut woken) {
            panic!(
                "epoll_wait on context {} ({}) failed: {e}",
                self.id, self.name
            );
        }
        let any = !woken.is_empty();
        for co in woken {
            // A coroutine already woken for another reason will find the
            // readiness bit when it runs; a second wake would be a bug.
            if control::try_schedule(&co, Location::caller()).is_ok() {
                // SAFETY: owner thread; the driver borrow has ended.
                unsafe { self.push_ready(co) };
            }
        }
        any
    }

    /// Owner: the epoll driver, created on first use.
    // The driver is owner-thread state behind an UnsafeCell, like the ready
    // queue; handing out `&mut` from `&self` is the point, and every caller
    // keeps the borrow short and never re-enters the context while holding it.
    #[allow(clippy::mut_from_ref)]
    pub(crate) fn driver(&self) -> Option<&mut IoDriver> {
        // SAFETY: owner only; callers do not hold two of these at once and
        // do not call back into the context while holding it.
        let slot = unsafe { &mut *self.io.get() };
        if slot.is_none() {
            match IoDriver::new() {
                Ok((driver, waker)) => {
                    let _ = self.waker.set(waker);
                    *slot = Some(driver);
                }
                Err(e) => {
                    eprintln!("coscheduler: context {} cannot create epoll: {e}", self.id);
                    return None;
                }
            }
        }
        slot.as_mut()
    }

    /// Owner: the next timer deadline.
    fn next_deadline(&self) -> Option<Instant> {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.timers.get()).next_deadline() }
    }

    fn ready_is_empty(&self) -> bool {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.ready.get()).is_empty() }
    }

    /// Owner: nothing to do right now; busy-poll, then sleep until work
    /// arrives, the next timer is due, or `limit` passes.
    pub(crate) fn wait(&self, limit: Option<Instant>, hooks: &dyn IdleHooks) {
        if !self.ready_is_empty() || self.has_incoming() || hooks.has_work() {
            return;
        }
        let deadline = match (self.next_deadline(), limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.busy_poll(deadline, hooks) {
            bump(&self.counters.poll_hits, 1);
            return;
        }
        if self.driver().is_none() {
            // Without epoll there is nothing to sleep in: yield the CPU.
            std::thread::yield_now();
            return;
        }
        // The "hand-off + notify" protocol, owner side (see `handoff`).
        self.mailbox.prepare_sleep();
        hooks.before_sleep();
        if self.has_incoming() || hooks.has_work() {
            self.mailbox.finish_sleep();
            hooks.after_sleep();
            return;
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        bump(&self.counters.parks, 1);
        let started = Instant::now();
        self.poll_io(timeout);
        self.mailbox.finish_sleep();
        hooks.after_sleep();
        self.adapt_polling(started.elapsed());
    }

    /// Spins for the adaptive window; true if work showed up.
    fn busy_poll(&self, deadline: Option<Instant>, hooks: &dyn IdleHooks) -> bool {
        let window = self.poll_ns.get();
        if window == 0 {
            return false;
        }
        let start = Instant::now();
        let mut end = start + Duration::from_nanos(window);
        if let Some(d) = deadline {
            end = end.min(d);
        }
        let mut spins = 0u32;
        loop {
            if self.has_incoming() || hooks.has_work() {
                return true;
            }
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 64 == 0 {
                // QEMU polls its fd handlers during the polling window; ours
                // are in epoll, so peek at it without blocking. Otherwise a
                // socket's data waits out the whole window and the spin is
                // pure cost (io/sleep engineer's change: W8 echo spent ~25%
                // more CPU per request spinning blind).
                if self.io_sources() > 0 && self.poll_io(Some(Duration::ZERO)) {
                    return true;
                }
                if Instant::now() >= end {
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

    /// Owner: registers a started coroutine.
    pub(crate) fn register(&self, co: &CoInner) {
        // SAFETY: owner only, short borrow.
        let slot = unsafe { (*self.registry.get()).insert(co) };
        co.registry_slot.set(slot);
        co.registry_ctx
            .store(self as *const ContextInner as *mut ContextInner, Relaxed);
    }

    /// Owner: removes a finished coroutine.
    pub(crate) fn unregister(&self, co: &CoInner) {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.registry.get()).remove(co.registry_slot.get(), co) };
        co.registry_ctx.store(ptr::null_mut(), Relaxed);
    }

    /// Owner: removes a stale entry left by a coroutine that migrated away.
    pub(crate) fn unregister_slot(&self, slot: usize, co: *const CoInner) {
        // SAFETY: owner only (bottom halves run on the owner), short borrow.
        unsafe { (*self.registry.get()).remove(slot, co) };
    }

    /// Owner: suspended coroutines homed here, for `dump`.
    pub(crate) fn describe_suspended(&self) -> Vec<SuspendedInfo> {
        // SAFETY: owner only, short borrow.
        let snapshot = unsafe { (*self.registry.get()).snapshot() };
        snapshot
            .into_iter()
            .filter_map(|p| {
                // SAFETY: registered blocks are alive: a coroutine
                // unregisters before it is freed, on this thread.
                let co = unsafe { &*p };
                if co.state() != SUSPENDED || !ptr::eq(co.home.load(Acquire), self) {
                    return None;
                }
                Some(self.describe(co))
            })
            .collect()
    }

    /// Owner: one suspended coroutine homed here.
    fn describe(&self, co: &CoInner) -> SuspendedInfo {
        // SAFETY: executing-thread field, and we are its home thread while
        // it is suspended.
        let wait = unsafe { (*co.wait.get()).clone() };
        // SAFETY: a blocker is stored only for the length of the wait it
        // describes, and `co` is suspended in it (callers pass suspended
        // coroutines homed here), on this thread.
        let blocked = wait
            .as_ref()
            .and_then(|w| w.blocker)
            .map(|b| unsafe { b.read() });
        let (blocked_by, blocker) = match blocked {
            Some((keys, described)) => (keys, Some(described)),
            None => (Vec::new(), None),
        };
        SuspendedInfo {
            id: co.id,
            name: co.name.as_deref().map(str::to_owned),
            context: self.id,
            waiting_on: wait.map(describe_wait),
            scheduled: co.scheduled.pending().is_some(),
            key: co as *const CoInner as usize,
            blocker,
            blocked_by,
        }
    }

    /// Owner: started coroutines registered here.
    pub(crate) fn registered(&self) -> usize {
        // SAFETY: owner only, short borrow.
        unsafe { (*self.registry.get()).len() }
    }

    /// Owner: arms a timer.
    pub(crate) fn add_timer(&self, deadline: Instant, cb: TimerFn) -> TimerId {
        // SAFETY: owner only, short borrow.
        let key = unsafe { (*self.timers.get()).add(deadline, cb) };
        TimerId {
            context: self.id,
            key,
        }
    }

    /// Owner: disarms a timer.
    /// A `TimerId` from another context is refused (false).
    pub(crate) fn cancel_timer(&self, id: TimerId) -> bool {
        if id.context != self.id {
            return false;
        }
        // SAFETY: owner only, short borrow, ended before the callback drops.
        let cb = unsafe { (*self.timers.get()).cancel(id.key) };
        cb.is_some()
    }

    /// Sets the adaptive polling maximum.
    pub(crate) fn set_poll_max(&self, max: Duration) {
        self.poll_max_ns.store(duration_ns(max), Relaxed);
        if self.is_owner() {
            self.poll_ns.set(self.poll_ns.get().min(duration_ns(max)));
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // Coroutines still queued hold references that would otherwise leak.
        drop_taken(self.mailbox.take_handoffs());
    }
}

/// Drops hand-offs taken from a closed (or dropped) mailbox.
fn drop_taken(taken: self::handoff::Taken<CoInner>) {
    for raw in taken {
        // SAFETY: reclaiming the reference `push_remote` gave up.
        drop_queued(unsafe { CoRef::from_raw(raw) });
    }
}

/// Drops a queue's reference to a coroutine that will never run there. An
/// unstarted one is cancelled first, so that its `JoinHandle` (which may
/// keep the block alive) does not wait forever.
fn drop_queued(co: CoRef) {
    if co.state() == NEW {
        crate::join::cancel_unstarted(&co, crate::join::JoinError::Cancelled);
    }
    drop(co);
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn describe_wait(w: WaitReason) -> String {
    match w.detail {
        Some(d) => format!("{} {d}", w.what),
        None => w.what.to_owned(),
    }
}

/// One suspended coroutine, as listed by `Runtime::dump`.
#[derive(Clone, Debug)]
pub(crate) struct SuspendedInfo {
    pub(crate) id: u64,
    pub(crate) name: Option<String>,
    pub(crate) context: u64,
    pub(crate) waiting_on: Option<String>,
    pub(crate) scheduled: bool,
    /// The control block's address: the coroutine's key in wait-for graphs.
    pub(crate) key: usize,
    /// What its wait's blocker calls the awaited resource, if it has one.
    pub(crate) blocker: Option<String>,
    /// The keys of the coroutines its wait needs (`deadlock`).
    pub(crate) blocked_by: Vec<usize>,
}

impl fmt::Display for SuspendedInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "coroutine {} ({}) on context {}: {}",
            self.id,
            self.name.as_deref().unwrap_or("unnamed"),
            self.context,
            match (&self.waiting_on, self.scheduled) {
                (_, true) => "woken, waiting to run".to_owned(),
                (Some(w), false) => format!("waiting on {w}"),
                (None, false) => "suspended (reason unknown)".to_owned(),
            }
        )
    }
}

/// A panic reached an event loop and was contained there (a bottom half's,
/// a timer callback's, a raw coroutine's): says so, since a payload raised
/// again with `resume_unwind` never went through the panic hook.
#[cold]
pub(crate) fn report_contained_panic(ctx: &ContextInner, payload: &(dyn std::any::Any + Send)) {
    bump(&ctx.counters.panics_contained, 1);
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string payload>".to_owned());
    eprintln!(
        "coscheduler: context {} ({}): a panic reached the event loop and was contained: {msg}",
        ctx.id, ctx.name
    );
}

/// Extra work sources and sleep bookkeeping of whoever drives the context
/// (the Runtime's workers look at the injector and other workers' queues).
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

// ----------------------------------------------------------------------
// Thread ownership.

/// Owns this thread's context and closes it when the thread exits.
struct ThreadContext(Option<AioContext>);

impl Drop for ThreadContext {
    fn drop(&mut self) {
        if let Some(ctx) = self.0.take() {
            // A plain thread is exiting: there is nobody to return an error
            // to, so what could not be unwound is reported here (and
            // counted in `pool::stats().leaked`).
            let stuck = ctx
                .inner
                .shut_down(Instant::now() + DEFAULT_SHUTDOWN_TIMEOUT);
            for s in stuck {
                eprintln!(
                    "coscheduler: thread context {} ({}) exited with {s} still suspended; leaked",
                    ctx.inner.id, ctx.inner.name
                );
            }
            // SAFETY: the thread state has no destructor, so it is still
            // accessible; only this thread writes it.
            unsafe { (*tls::thread_state()).context.set(ptr::null()) };
        }
    }
}

thread_local! {
    static THREAD_CONTEXT: RefCell<ThreadContext> = const { RefCell::new(ThreadContext(None)) };
}

impl AioContext {
    pub(crate) fn with_settings(settings: ContextSettings) -> AioContext {
        AioContext {
            inner: Arc::new(ContextInner::new(settings)),
        }
    }

    /// Makes `self` this thread's context; panics if the thread has one.
    pub(crate) fn install_on_this_thread(&self) {
        let installed = THREAD_CONTEXT.with(|t| {
            let mut t = t.borrow_mut();
            if t.0.is_some() {
                return false;
            }
            t.0 = Some(self.clone());
            true
        });
        assert!(installed, "this thread already has an AioContext");
        // Every thread that runs coroutines has a context: this is where the
        // overflow reporter learns about it.
        if let Err(e) = crate::stack::overflow::install(overflow_lookup) {
            eprintln!("coscheduler: stack overflow reports unavailable: {e}");
        }
        crate::stack::overflow::ensure_thread_altstack();
        // SAFETY: this thread's state, written by this thread only.
        unsafe { (*tls::thread_state()).context.set(Arc::as_ptr(&self.inner)) };
    }

    /// Uninstalls and closes this thread's context (Runtime workers, on
    /// shutdown).
    /// Returns the coroutines that were still suspended at `deadline`
    /// (leaked; see [`shutdown`]).
    pub(crate) fn close_this_thread(deadline: Instant) -> Vec<SuspendedInfo> {
        let ctx = THREAD_CONTEXT.with(|t| t.borrow().0.clone());
        let Some(ctx) = ctx else {
            return Vec::new();
        };
        // Still installed while it drains: the coroutines it unwinds run
        // here and see it as their current context.
        let stuck = ctx.inner.shut_down(deadline);
        let installed = THREAD_CONTEXT.with(|t| t.borrow_mut().0.take());
        drop(installed);
        // SAFETY: this thread's state, written by this thread only.
        unsafe { (*tls::thread_state()).context.set(ptr::null()) };
        stuck
    }

    /// A new handle from a raw pointer to a live context.
    ///
    /// # Safety
    /// `p` must point into a live `Arc<ContextInner>`.
    pub(crate) unsafe fn from_ptr(p: *const ContextInner) -> AioContext {
        // SAFETY: live Arc allocation per the contract.
        unsafe { Arc::increment_strong_count(p) };
        // SAFETY: we just took the count this Arc will own.
        let inner = unsafe { Arc::from_raw(p) };
        AioContext { inner }
    }

    /// This thread's context, created on first use (QEMU's
    /// `qemu_get_current_aio_context`, except that a thread without one gets
    /// one instead of NULL).
    ///
    /// ```
    /// let ctx = coscheduler::AioContext::current();
    /// assert_eq!(ctx, coscheduler::AioContext::current());
    /// ```
    pub fn current() -> AioContext {
        let p = tls::context();
        if !p.is_null() {
            // SAFETY: the thread's context stays alive while installed.
            return unsafe { AioContext::from_ptr(p) };
        }
        let name = std::thread::current().name().unwrap_or("thread").to_owned();
        let ctx = AioContext::with_settings(ContextSettings {
            name,
            poll_max: DEFAULT_POLL_MAX,
            stack_size: crate::pool::thread_default_size(),
        });
        ctx.install_on_this_thread();
        ctx
    }

    /// A process-unique number identifying this context.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The context's name (its thread's name, or the Runtime worker's).
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// QEMU's `aio_poll`: runs one turn of this context's loop — bottom
    /// halves, coroutines handed over from other threads, due timers, ready
    /// coroutines and fd events. With `blocking`, if nothing was ready, waits
    /// (busy-polling briefly, then sleeping) until something happens or
    /// [`notify`](AioContext::notify) is called, and runs it. Returns true if
    /// it made progress.
    ///
    /// # Panics
    /// On a thread that does not own the context, or inside a coroutine. A
    /// panic of a raw coroutine entered by the poll propagates from here
    /// (coroutines queued behind it stay queued).
    #[track_caller]
    pub fn poll(&self, blocking: bool) -> bool {
        self.inner.assert_owner("poll");
        assert!(
            !crate::in_coroutine(),
            "AioContext::poll must not be called inside a coroutine"
        );
        // An `aio_notify` since the last poll ends a blocking poll even when
        // nothing else happened (a joiner waiting for a flag relies on it).
        let notified = self.inner.take_notified();
        let progress = self.inner.dispatch();
        if progress || !blocking || notified {
            return progress;
        }
        self.inner.wait(None, &NoHooks);
        self.inner.dispatch()
    }

    /// Creates a coroutine running `f` and schedules it here; its stack is
    /// taken when it first runs. Explicit placement: it is never stolen.
    ///
    /// ```
    /// use coscheduler::AioContext;
    /// let ctx = AioContext::current();
    /// let h = ctx.spawn(|| 6 * 7);
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (co, handle) = crate::join::joinable(f, None, 0, false, None, false);
        self.place(co, Location::caller());
        handle
    }

    /// Schedules a (new or suspended) coroutine onto this context.
    pub(crate) fn place(&self, co: CoRef, site: &'static Location<'static>) {
        if let Err(first) = control::try_schedule(&co, site) {
            control::double_wake(&co, first);
        }
        self.deliver_queued(co);
    }

    /// Queues a scheduled coroutine here: locally if we are the owner.
    pub(crate) fn deliver_queued(&self, co: CoRef) {
        if self.inner.is_owner() {
            // SAFETY: owner thread; no live borrow of `ready` here.
            unsafe { self.inner.push_ready(co) };
        } else {
            self.inner.push_remote(co);
        }
    }

    /// QEMU's `aio_co_schedule`: from any thread, runs `co` on this context
    /// at its next turn.
    ///
    /// A coroutine that has started belongs to its home context (see the
    /// crate's soundness rule); scheduling it onto another context moves it,
    /// which is allowed only for coroutines created migratable.
    ///
    /// # Panics
    /// If `co` is already scheduled and has not run since (one wake per
    /// suspension), or if it is a started, non-migratable coroutine homed on
    /// another context (the message names the coroutine and both contexts).
    #[track_caller]
    pub fn schedule(&self, co: &Coroutine) {
        let co = &co.inner;
        if co.state() != NEW {
            let home = co.home.load(Acquire);
            if !ptr::eq(home, Arc::as_ptr(&self.inner)) {
                if !co.migratable {
                    panic_migration(co, home, &self.inner);
                }
                if let Err(first) = control::try_schedule(co, Location::caller()) {
                    control::double_wake(co, first);
                }
                enter::rehome(co, &self.inner);
                self.deliver_queued(co.clone());
                return;
            }
        }
        self.place(co.clone(), Location::caller());
    }

    /// QEMU's `aio_co_enter`: on this context's thread, enters `co` now
    /// (outside a coroutine) or right after the current coroutine suspends
    /// (inside one); from elsewhere, schedules it here.
    #[track_caller]
    pub fn enter(&self, co: &Coroutine) {
        if !self.inner.is_owner() {
            self.schedule(co);
            return;
        }
        let site = Location::caller();
        if let Err(first) = control::try_schedule(&co.inner, site) {
            control::double_wake(&co.inner, first);
        }
        deliver_local(co.inner.clone());
    }

    /// QEMU's `aio_bh_schedule_oneshot`: runs `f` once on this context's
    /// thread, outside coroutine context, at its next turn.
    pub fn bh_oneshot<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.inner.schedule_bh(Box::new(f));
    }

    /// QEMU's `aio_notify`: makes a blocked or the next blocking
    /// [`poll`](AioContext::poll) return.
    pub fn notify(&self) {
        self.inner.notify();
    }

    /// A snapshot of this context's counters.
    pub fn metrics(&self) -> ContextMetrics {
        self.inner.counters.snapshot()
    }

    /// Arms a timer on this context: `f` runs on its thread, outside
    /// coroutine context, during the first turn after `deadline`.
    ///
    /// # Panics
    /// When called from a thread that does not own the context.
    #[track_caller]
    pub fn add_timer<F: FnOnce() + Send + 'static>(&self, deadline: Instant, f: F) -> TimerId {
        self.inner.assert_owner("add_timer");
        self.inner.add_timer(deadline, TimerFn::new(f))
    }

    /// Disarms a timer armed by [`add_timer`](AioContext::add_timer) on this
    /// context; false if it already fired or was cancelled, or if `id` was
    /// armed on another context (each context's timers are its own).
    ///
    /// # Panics
    /// When called from a thread that does not own the context.
    #[track_caller]
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        self.inner.assert_owner("cancel_timer");
        self.inner.cancel_timer(id)
    }

    /// Changes the adaptive polling maximum (QEMU's `poll-max-ns`); zero
    /// disables busy-polling.
    pub fn set_poll_max(&self, max: Duration) {
        self.inner.set_poll_max(max);
    }

    /// True if this is the calling thread's context.
    pub fn is_current(&self) -> bool {
        self.inner.is_owner()
    }
}

impl PartialEq for AioContext {
    fn eq(&self, other: &AioContext) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for AioContext {}

impl std::hash::Hash for AioContext {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id.hash(state);
    }
}

impl fmt::Debug for AioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AioContext")
            .field("id", &self.inner.id)
            .field("name", &self.name())
            .finish()
    }
}

#[cold]
#[track_caller]
fn panic_migration(co: &CoInner, home: *const ContextInner, target: &ContextInner) -> ! {
    // SAFETY: a started coroutine's home is a live context (it holds a
    // strong reference to it).
    let home = unsafe { &*home };
    panic!(
        "coroutine {} ({}) is homed on context {} ({}) and cannot be moved to context {} ({}): \
         only coroutines created migratable may change context after they start",
        co.id,
        co.display_name(),
        home.id,
        home.name(),
        target.id,
        target.name()
    );
}

// ----------------------------------------------------------------------
// Wake paths (QEMU's aio_co_wake / aio_co_enter).

/// QEMU's `aio_co_wake`: wakes `co` in its home context, or in the waker's
/// context if it never ran.
///
/// A coroutine being cancelled tolerates extra wakes (absorbed, or dropped
/// once it finished): see [`wake_mark`](crate::coroutine::wake_mark) for the
/// protocol and why no wake-up is lost.
#[track_caller]
pub(crate) fn wake(co: &CoRef) {
    let finished = || co.state() == FINISHED;
    match wake_mark::decide_wake(&co.scheduled, &co.cancel, finished, Location::caller()) {
        WakeDecision::Deliver => deliver_woken(co.clone()),
        WakeDecision::Absorbed => {}
        WakeDecision::DoubleWake(first) => control::double_wake(co, first),
        WakeDecision::AfterFinish => woken_after_finish(co),
    }
}

#[cold]
#[track_caller]
fn woken_after_finish(co: &CoInner) -> ! {
    panic!(
        "coroutine {} ({}) was woken after it finished",
        co.id,
        co.display_name()
    )
}

/// Routes an accepted wake: same context inside a coroutine → the current
/// coroutine's wakeup list; same context outside → entered now; another
/// context → its hand-off queue.
pub(crate) fn deliver_woken(co: CoRef) {
    let home = co.home.load(Acquire);
    let here = tls::context();
    if home.is_null() || ptr::eq(home, here) {
        if here.is_null() {
            // A never-run coroutine woken from a thread without a context:
            // it runs on this thread's (new) context.
            AioContext::current().deliver_queued(co);
            return;
        }
        deliver_local(co);
    } else {
        // SAFETY: `here`, when non-null, is this thread's live context.
        if let Some(ctx) = unsafe { here.as_ref() } {
            bump(&ctx.counters.remote_wakes, 1);
        }
        // SAFETY: a started coroutine's home is live (it holds a reference).
        unsafe { (*home).push_remote(co) };
    }
}

/// Same-context delivery of a scheduled coroutine.
fn deliver_local(co: CoRef) {
    let ts = tls::thread_state();
    // SAFETY: this thread's state, read on this thread before any switch.
    let (current, here) = unsafe { ((*ts).current.get(), (*ts).context.get()) };
    // SAFETY: `here` is this thread's live context.
    if let Some(ctx) = unsafe { here.as_ref() } {
        bump(&ctx.counters.local_wakes, 1);
    }
    if current.is_null() {
        control::clear_scheduled(&co);
        enter::enter_chain(&co, true);
    } else {
        // SAFETY: `current` is the running coroutine of this thread.
        unsafe { (*current).push_wakeup(co) };
    }
}

/// The last handle of a suspended coroutine is gone: unwind it at home.
///
/// On its home thread outside a coroutine it is unwound now; inside a
/// coroutine of that thread, right after that coroutine suspends; from
/// another thread, through the home context's hand-off queue. The
/// scheduler never drops a coroutine reference while it holds a borrow of
/// its own state (timer slots, the fd table), so unwinding inline is safe.
pub(crate) fn wake_cancelled(co: CoRef) {
    // Nobody else can wake it; mark it so that the queue paths accept it.
    let _ = control::try_schedule(&co, Location::caller());
    deliver_woken(co);
}

/// Owner-thread access for the fd module.
pub(crate) fn current_inner<'a>() -> Option<&'a ContextInner> {
    // SAFETY: the thread's context is alive while installed; callers use
    // the reference only on this thread and before any switch.
    unsafe { tls::context().as_ref() }
}

/// The overflow handler's view of the running coroutine. Runs in a signal
/// handler: reads only plain cells of the current control block.
fn overflow_lookup() -> Option<crate::stack::overflow::FaultTarget> {
    let co = tls::current();
    // SAFETY: the running coroutine is alive; the fields read are written
    // only by this thread, which is interrupted in that coroutine's code.
    let co = unsafe { co.as_ref() }?;
    let (start, end) = co.stack_guard.get();
    if start == end {
        return None;
    }
    Some(crate::stack::overflow::FaultTarget {
        guard: start..end,
        usable_size: co.stack_usable.get(),
        id: co.id,
        name: co.name.as_deref().map(|n| (n.as_ptr(), n.len())),
    })
}
