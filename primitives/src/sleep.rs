//! Sleeping coroutines (QEMU's `util/qemu-coroutine-sleep.c`).
//!
//! A sleep arms a timer on the current coroutine's own context and suspends;
//! the thread runs other coroutines meanwhile, and the context's event loop
//! sleeps in `epoll_pwait2` until the earliest deadline (nanosecond
//! precision). A [`CoSleep`] can also be ended early by [`CoSleep::wake`]
//! from any thread; the race between that wake and the timer is decided by
//! the claim protocol in [`claim`].
//!
//! Timing: a sleep never ends before its deadline; it ends after it by the
//! time the context needs to notice (its timer slack, typically tens of
//! microseconds when idle, or the rest of the current turn when busy).

mod claim;

use std::fmt;
use std::time::{Duration, Instant};

use coscheduler::{AioContext, Coroutine, TimerId};

use self::claim::{Outcome, Sleeper, Slot, Wake};

impl Wake for Coroutine {
    fn wake(&self) {
        Coroutine::wake(self);
    }
}

/// QEMU's `qemu_co_sleep_ns`: suspends the current coroutine for `d`.
///
/// The thread runs other coroutines meanwhile. A zero duration still
/// suspends until the context's next turn.
///
/// ```
/// use std::time::{Duration, Instant};
/// let ctx = coscheduler::AioContext::current();
/// let h = ctx.spawn(|| {
///     let t = Instant::now();
///     coprimitives::co_sleep(Duration::from_millis(2));
///     t.elapsed()
/// });
/// assert!(h.join().unwrap() >= Duration::from_millis(2));
/// ```
///
/// Outside a coroutine the calling thread sleeps instead, running its own
/// context meanwhile: coroutines homed on the thread keep running (the
/// crate's rule, [Outside a coroutine](crate#outside-a-coroutine)).
#[track_caller]
pub fn co_sleep(d: Duration) {
    let Some(me) = coscheduler::current() else {
        sleep_outside(d);
        return;
    };
    let ctx = AioContext::current();
    // The context's clock: real time, or a simulation's virtual time.
    match ctx.now().checked_add(d) {
        Some(deadline) => sleep_until(me, ctx, deadline),
        // Beyond the clock's range: nothing can ever wake it.
        None => {
            let _ = sleep_on(None, None);
        }
    }
}

/// `co_sleep` from a plain thread: the sleep runs as a coroutine of the
/// thread's context, which the thread drives until it is over.
#[cold]
fn sleep_outside(d: Duration) {
    let sleeper = AioContext::current().spawn(move || co_sleep(d));
    if let Err(e) = sleeper.join() {
        panic!("co_sleep outside a coroutine: {e}");
    }
}

/// The non-wakeable sleep: only the timer resumes the coroutine, so there is
/// nothing to claim and the timer can simply wake it (no shared state, no
/// allocation: the callback's one handle is stored inline in the timer).
#[track_caller]
fn sleep_until(me: Coroutine, ctx: AioContext, deadline: Instant) {
    let id = ctx.add_timer(deadline, move || me.wake());
    // Disarms the timer however the sleep ends: normally it has fired and
    // cancelling is a no-op; if the coroutine was unwound (shutdown) or
    // resumed by a stray wake, the timer must not wake it later, in the
    // middle of some other wait.
    struct Disarm(AioContext, TimerId);
    impl Drop for Disarm {
        fn drop(&mut self) {
            if self.0.is_current() {
                self.0.cancel_timer(self.1);
            } else {
                // Resumed elsewhere (a migratable coroutine moved while
                // asleep): the timer belongs to its old context's thread.
                let (ctx, id) = (self.0.clone(), self.1);
                self.0.bh_oneshot(move || {
                    ctx.cancel_timer(id);
                });
            }
        }
    }
    let _disarm = Disarm(ctx, id);
    coscheduler::raw::set_wait_reason("sleep", None);
    coscheduler::suspend();
    coscheduler::raw::clear_wait_reason();
}

/// QEMU's `QemuCoSleep`: a sleep that another party can end early.
///
/// One coroutine at a time sleeps on a `CoSleep`, through
/// [`sleep`](CoSleep::sleep) or [`sleep_until_woken`](CoSleep::sleep_until_woken);
/// anyone, from any thread, may end that sleep with [`wake`](CoSleep::wake).
/// A wake while nobody sleeps does nothing (it is not remembered).
///
/// Unlike QEMU's, which must be woken from the sleeper's AioContext, this
/// one is `Send + Sync` and its `wake` is safe from any thread: exactly one
/// of the timer and the wakers resumes the coroutine.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use coprimitives::CoSleep;
///
/// let rt = coscheduler::Runtime::builder().threads(1).build().unwrap();
/// let s = Arc::new(CoSleep::new());
/// let s2 = s.clone();
/// let h = rt.spawn(move || s2.sleep(Duration::from_secs(60)));
/// while !h.is_finished() {
///     s.wake(); // from this plain thread; a no-op until it sleeps
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// assert!(h.join().unwrap(), "woken early");
/// ```
pub struct CoSleep {
    slot: Slot<Coroutine>,
}

impl CoSleep {
    /// A `CoSleep` nobody sleeps on.
    pub const fn new() -> CoSleep {
        CoSleep { slot: Slot::new() }
    }

    /// QEMU's `qemu_co_sleep_ns_wakeable`: sleeps for `d` unless woken
    /// earlier by [`wake`](CoSleep::wake). Returns true if it was woken
    /// early (or resumed by something other than its timer), false if the
    /// time ran out.
    ///
    /// # Panics
    /// Outside a coroutine (see
    /// [Outside a coroutine](crate#outside-a-coroutine); [`co_sleep`] works
    /// there), or if another coroutine already sleeps on this `CoSleep`.
    #[track_caller]
    pub fn sleep(&self, d: Duration) -> bool {
        let deadline = AioContext::current().now().checked_add(d);
        sleep_on(Some(&self.slot), deadline) != Outcome::Timer
    }

    /// QEMU's `qemu_co_sleep`: sleeps until [`wake`](CoSleep::wake).
    ///
    /// # Panics
    /// As [`sleep`](CoSleep::sleep).
    #[track_caller]
    pub fn sleep_until_woken(&self) {
        let _ = sleep_on(Some(&self.slot), None);
    }

    /// QEMU's `qemu_co_sleep_wake`: ends the current sleep, if any, from any
    /// thread. Does nothing when nobody sleeps or the sleep already ended.
    pub fn wake(&self) {
        self.slot.wake();
    }
}

/// The sleep itself: steps 1 and 3 of the claim protocol around a
/// suspension. `slot` is where `CoSleep::wake` finds the sleeper (`None` for
/// `co_sleep`, which nobody can wake); `deadline` arms the timer (`None`:
/// until woken).
#[track_caller]
fn sleep_on(slot: Option<&Slot<Coroutine>>, deadline: Option<Instant>) -> Outcome {
    let Some(me) = coscheduler::current() else {
        panic!("CoSleep::sleep / co_sleep called outside a coroutine");
    };
    let sleeper = Sleeper::new(me);
    if slot.is_some_and(|s| s.publish(&sleeper).is_err()) {
        panic!("CoSleep: another coroutine is already sleeping on it (QEMU: to_wake already set)");
    }
    let ctx = AioContext::current();
    let timer = deadline.map(|d| {
        let s = sleeper.clone();
        ctx.add_timer(d, move || {
            s.fire_timer();
        })
    });
    let pending = Pending {
        slot,
        sleeper,
        ctx,
        timer,
        done: false,
    };
    coscheduler::raw::set_wait_reason("sleep", None);
    coscheduler::suspend();
    coscheduler::raw::clear_wait_reason();
    pending.finish()
}

/// A sleep between its suspension and its return. Dropping it (the
/// coroutine is unwound while asleep) does the same clean-up as `finish`.
struct Pending<'a> {
    slot: Option<&'a Slot<Coroutine>>,
    sleeper: std::sync::Arc<Sleeper<Coroutine>>,
    ctx: AioContext,
    timer: Option<TimerId>,
    done: bool,
}

impl Pending<'_> {
    /// Step 3 of the claim protocol: retract, disarm, read the verdict.
    fn finish(mut self) -> Outcome {
        self.clean_up()
    }

    fn clean_up(&mut self) -> Outcome {
        self.done = true;
        if let Some(slot) = self.slot {
            slot.retract(&self.sleeper);
        }
        if let Some(t) = self.timer.take() {
            if self.ctx.is_current() {
                self.ctx.cancel_timer(t);
            } else {
                // Resumed elsewhere (a migratable coroutine moved while
                // asleep): the timer belongs to its old context's thread. A
                // late fire finds the claim decided and does nothing.
                let ctx = self.ctx.clone();
                self.ctx.bh_oneshot(move || {
                    ctx.cancel_timer(t);
                });
            }
        }
        self.sleeper.outcome()
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.clean_up();
        }
    }
}

impl Default for CoSleep {
    fn default() -> CoSleep {
        CoSleep::new()
    }
}

impl fmt::Debug for CoSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoSleep").finish_non_exhaustive()
    }
}
