//! `AioContext`: one event loop per thread (layer 4, QEMU's `util/async.c`),
//! built on the thread's home from the core.
//!
//! The home (`core::home`) holds what a wake touches: the ready list, the
//! mailbox other threads post to, the registry. The event loop adds what a
//! thread waits on: timers (the base of `co_sleep` and timeouts), file
//! descriptors (a lazily created epoll instance), and the adaptive
//! busy-polling before it sleeps ([`event_loop`]).
//!
//! [`AioContext::poll`] is `aio_poll`: one turn runs due bottom halves,
//! hand-offs, timers, ready coroutines and I/O events; a blocking poll that
//! finds nothing busy-polls for up to the adaptive polling window (QEMU's
//! `poll-max-ns`) and then sleeps in epoll until the next timer.

pub(crate) mod event_loop;
pub mod fd;
pub(crate) mod io;
pub(crate) mod timers;

use std::fmt;
use std::panic::Location;
use std::ptr;
use std::sync::atomic::Ordering::Acquire;
use std::time::{Duration, Instant};

pub use self::event_loop::DEFAULT_POLL_MAX;
use self::event_loop::Loop;
use self::timers::TimerFn;
pub use self::timers::TimerId;
use crate::core::control::{self, CoInner, CoRef, State};
use crate::core::coroutine::{Coroutine, CoroutineBuilder};
use crate::core::home::{self, ContextMetrics, Home};
use crate::core::join::JoinHandle;
use crate::core::{enter, wake};
use crate::sync::Arc;

/// A handle to an event loop. Cheap to clone; `Send + Sync`; equal when it
/// designates the same context.
///
/// QEMU: `AioContext`. Each thread that uses coroutines gets one on first use
/// ([`AioContext::current`]); each [`Runtime`](crate::Runtime) worker runs
/// one.
#[derive(Clone)]
pub struct AioContext {
    pub(crate) home: Arc<Home>,
}

/// Settings of a new context.
#[derive(Clone, Debug)]
pub(crate) struct ContextSettings {
    pub(crate) name: String,
    pub(crate) poll_max: Duration,
    /// Usable stack bytes of coroutines placed here without a size.
    pub(crate) stack_size: usize,
}

impl AioContext {
    /// A new context, owned by nobody until installed on a thread.
    pub(crate) fn with_settings(settings: ContextSettings) -> AioContext {
        AioContext::with_clock(settings, event_loop::Clock::Real)
    }

    /// A new context whose timers go by `clock` (a simulation's virtual
    /// clock, or real time).
    pub(crate) fn with_clock(settings: ContextSettings, clock: event_loop::Clock) -> AioContext {
        let home = Arc::new(Home::new(settings.name, settings.stack_size));
        let poll_max = settings.poll_max;
        home.attach_loop(|| Loop::with_clock(poll_max, clock));
        AioContext { home }
    }

    /// Makes `self` this thread's context; panics if the thread has one.
    pub(crate) fn install_on_this_thread(&self) {
        home::install(&self.home);
    }

    /// The context whose home is `home`.
    pub(crate) fn of_home(home: Arc<Home>) -> AioContext {
        AioContext { home }
    }

    /// A new handle from a raw pointer to a live home.
    ///
    /// # Safety
    /// `p` must point into a live `Arc<Home>`.
    pub(crate) unsafe fn from_ptr(p: *const Home) -> AioContext {
        // SAFETY: the caller's contract.
        AioContext::of_home(unsafe { home::clone_from_ptr(p) })
    }

    /// The event loop.
    pub(crate) fn event_loop(&self) -> &Loop {
        Loop::of(&self.home)
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
        AioContext::of_home(home::current())
    }

    /// A process-unique number identifying this context.
    pub fn id(&self) -> u64 {
        self.home.id
    }

    /// The context's name (its thread's name, or the Runtime worker's).
    pub fn name(&self) -> &str {
        self.home.name()
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
        let owner = self.home.expect_owner("poll");
        assert!(
            !crate::in_coroutine(),
            "AioContext::poll must not be called inside a coroutine"
        );
        crate::core::home::EventLoop::poll(self.event_loop(), owner, blocking)
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
        let (co, handle) = crate::core::join::joinable(f, None, 0, false, None, false);
        self.place(co, Location::caller());
        handle
    }

    /// Schedules a (new or suspended) coroutine onto this context.
    pub(crate) fn place(&self, co: CoRef, site: &'static Location<'static>) {
        if let Err(first) = control::try_schedule(&co, site) {
            control::double_wake(&co, first);
        }
        wake::deliver_queued(&self.home, co);
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
        if co.state() != State::New {
            let home = co.home.load(Acquire);
            if !ptr::eq(home, Arc::as_ptr(&self.home)) {
                if !co.migratable {
                    panic_migration(co, home, &self.home);
                }
                if let Err(first) = control::try_schedule(co, Location::caller()) {
                    control::double_wake(co, first);
                }
                enter::rehome(co, &self.home);
                wake::deliver_queued(&self.home, co.clone());
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
        if !self.home.is_owner() {
            self.schedule(co);
            return;
        }
        let site = Location::caller();
        if let Err(first) = control::try_schedule(&co.inner, site) {
            control::double_wake(&co.inner, first);
        }
        wake::deliver_local(co.inner.clone());
    }

    /// QEMU's `aio_bh_schedule_oneshot`: runs `f` once on this context's
    /// thread, outside coroutine context, at its next turn.
    pub fn bh_oneshot<F: FnOnce() + Send + 'static>(&self, f: F) {
        self.home.post_bh(Box::new(f));
    }

    /// Asks this context's owner thread for `f(owner)`, run there as a
    /// bottom half. The answer arrives on the returned channel; none arrives
    /// if the context closed first, so callers wait with a timeout.
    pub(crate) fn ask_owner<T, F>(&self, f: F) -> std::sync::mpsc::Receiver<T>
    where
        T: Send + 'static,
        F: FnOnce(home::Owner<'_>) -> T + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let me = self.clone();
        self.bh_oneshot(move || {
            // Bottom halves run on their context's owner thread.
            if let Some(owner) = me.home.owner() {
                let _ = tx.send(f(owner));
            }
        });
        rx
    }

    /// QEMU's `aio_notify`: makes a blocked or the next blocking
    /// [`poll`](AioContext::poll) return.
    pub fn notify(&self) {
        self.home.notify();
    }

    /// A snapshot of this context's counters.
    pub fn metrics(&self) -> ContextMetrics {
        self.home.counters.snapshot()
    }

    /// Arms a timer on this context: `f` runs on its thread, outside
    /// coroutine context, during the first turn after `deadline`.
    ///
    /// # Panics
    /// When called from a thread that does not own the context.
    #[track_caller]
    pub fn add_timer<F: FnOnce() + Send + 'static>(&self, deadline: Instant, f: F) -> TimerId {
        let owner = self.home.expect_owner("add_timer");
        self.event_loop()
            .add_timer(owner, deadline, TimerFn::new(f))
    }

    /// Disarms a timer armed by [`add_timer`](AioContext::add_timer) on this
    /// context; false if it already fired or was cancelled, or if `id` was
    /// armed on another context (each context's timers are its own).
    ///
    /// # Panics
    /// When called from a thread that does not own the context.
    #[track_caller]
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        let owner = self.home.expect_owner("cancel_timer");
        self.event_loop().cancel_timer(owner, id)
    }

    /// Changes the adaptive polling maximum (QEMU's `poll-max-ns`); zero
    /// disables busy-polling.
    pub fn set_poll_max(&self, max: Duration) {
        self.event_loop().set_poll_max(&self.home, max);
    }

    /// The time this context's timers go by: the monotonic clock, or, for a
    /// context of a [`Simulation`](crate::sim::Simulation), its virtual
    /// clock. Deadlines given to [`add_timer`](AioContext::add_timer) (and
    /// to `coprimitives`' sleeps) are measured against it.
    pub fn now(&self) -> Instant {
        self.event_loop().now()
    }

    /// True if this is the calling thread's context.
    pub fn is_current(&self) -> bool {
        self.home.is_owner()
    }
}

impl PartialEq for AioContext {
    fn eq(&self, other: &AioContext) -> bool {
        Arc::ptr_eq(&self.home, &other.home)
    }
}
impl Eq for AioContext {}

impl std::hash::Hash for AioContext {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.home.id.hash(state);
    }
}

impl fmt::Debug for AioContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AioContext")
            .field("id", &self.home.id)
            .field("name", &self.name())
            .finish()
    }
}

impl Coroutine {
    /// QEMU's `qemu_coroutine_get_aio_context`: the home context, `None`
    /// before the first entry.
    pub fn context(&self) -> Option<AioContext> {
        let home = self.inner.home.load(Acquire);
        // SAFETY: a non-null home is live: the coroutine holds a strong
        // count on it.
        (!home.is_null()).then(|| unsafe { AioContext::from_ptr(home) })
    }
}

impl CoroutineBuilder {
    /// Creates a coroutine running `f`, with its stack taken now, and
    /// schedules it on `ctx` (explicit placement: never stolen).
    #[track_caller]
    pub fn spawn_on<F, T>(self, ctx: &AioContext, f: F) -> std::io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Without an explicit size, the target context's default (a Runtime
        // worker's `stack_size`), not the calling thread's.
        let (co, handle) = self.build_with_stack(ctx.home.stack_size, f)?;
        ctx.place(co, Location::caller());
        Ok(handle)
    }
}

#[cold]
#[track_caller]
fn panic_migration(co: &CoInner, home: *const Home, target: &Home) -> ! {
    // SAFETY: a started coroutine's home is live (it holds a strong
    // reference to it).
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
