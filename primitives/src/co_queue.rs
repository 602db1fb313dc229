//! QEMU's CoQueue (`qemu_co_queue_*`, docs/SEMANTICS.md §4): a FIFO of suspended
//! coroutines, the coroutine analogue of a condition variable.

use std::collections::VecDeque;
use std::fmt;

use coscheduler::Coroutine;
use coscheduler::raw as hooks;

use crate::co_mutex::CoMutexGuard;
use crate::lockable::{Lockable, NoLock, SpinMutex};
use crate::stats::{self, Counter, LockKind, StatsHandle};

/// A queue of coroutines waiting for a condition (QEMU's `CoQueue`).
///
/// A coroutine calls [`wait`](CoQueue::wait) with the lock that protects the
/// condition; the lock is released while it waits and re-taken before `wait`
/// returns. Another coroutine changes the condition and calls
/// [`next`](CoQueue::next) or [`restart_all`](CoQueue::restart_all).
///
/// ```
/// use coprimitives::{CoMutex, CoQueue};
/// use coscheduler::Coroutine;
/// use std::sync::Arc;
///
/// let state = Arc::new((CoMutex::new(false), CoQueue::new()));
/// let s = state.clone();
/// let waiter = Coroutine::new(move || {
///     let (ready, queue) = &*s;
///     let mut g = ready.lock();
///     while !*g {
///         g = queue.wait(g);   // unlocks, suspends, re-locks
///     }
/// });
/// waiter.enter();              // waits
/// let s = state.clone();
/// Coroutine::new(move || {
///     let (ready, queue) = &*s;
///     *ready.lock() = true;
///     queue.next();            // the waiter runs after this coroutine ends
/// }).enter();
/// assert!(waiter.is_finished());
/// ```
///
/// # Semantics (as QEMU)
///
/// - Waiters are woken in FIFO order; [`wait_front`](CoQueue::wait_front)
///   queues at the head instead (for re-waiting after a spurious wake-up
///   without losing one's place).
/// - Wakers use `aio_co_wake` semantics: from a coroutine of the waiter's
///   context, the woken coroutine runs right after the waker suspends or
///   finishes; from plain code on that thread, it runs before `next`
///   returns; from another context, it is handed to its home thread.
/// - No wait morphing: a woken coroutine competes for the lock again like
///   any other, so conditions must be re-checked in a loop.
///
/// # Thread safety
///
/// QEMU's queue relies on the caller's lock. Here the queue protects its
/// own list with a spin lock held only for the list operation, so every
/// method is safe from any thread; the caller's lock is still what makes
/// "check the condition, then wait" atomic with respect to wakers.
///
/// A coroutine waiting in a `CoQueue` must only be resumed by the queue:
/// waking it by other means would leave its entry queued, and a later
/// `next` would resume it at an unrelated suspension point (QEMU has the
/// same rule).
pub struct CoQueue {
    entries: SpinMutex<VecDeque<Coroutine>>,
    stats: Option<&'static StatsHandle>,
}

impl CoQueue {
    /// An empty queue (`qemu_co_queue_init`). Usable in a `static`.
    pub const fn new() -> CoQueue {
        CoQueue {
            entries: SpinMutex::new(VecDeque::new()),
            stats: None,
        }
    }

    /// An empty queue that records, under `name`, how long coroutines wait
    /// in it and how many are woken (see [`stats`](crate::stats)).
    pub fn with_stats(name: &str) -> CoQueue {
        CoQueue {
            stats: Some(stats::register(name, LockKind::Queue)),
            ..CoQueue::new()
        }
    }

    /// QEMU's `qemu_co_queue_wait`: queues the calling coroutine at the
    /// tail, unlocks `guard`'s mutex, suspends until woken, and locks the
    /// mutex again.
    ///
    /// # Panics
    /// Outside a coroutine: only a coroutine can wait (see
    /// [Outside a coroutine](crate#outside-a-coroutine) for the
    /// alternatives; the waking side, [`next`](CoQueue::next) and
    /// the rest, works anywhere).
    #[track_caller]
    pub fn wait<'a, T: ?Sized>(&self, guard: CoMutexGuard<'a, T>) -> CoMutexGuard<'a, T> {
        self.wait_guard(guard, false)
    }

    /// `qemu_co_queue_wait_flags(q, lock, CO_QUEUE_WAIT_FRONT)`: as
    /// [`wait`](CoQueue::wait), queuing at the head.
    #[track_caller]
    pub fn wait_front<'a, T: ?Sized>(&self, guard: CoMutexGuard<'a, T>) -> CoMutexGuard<'a, T> {
        self.wait_guard(guard, true)
    }

    /// `qemu_co_queue_wait` with any `QemuLockable`: the caller holds
    /// `lock`; it is released during the wait and held again on return
    /// (also if the wait is unwound). Pass [`NoLock`] for "no lock"
    /// (`QEMU_MAKE_LOCKABLE(NULL)`).
    ///
    /// # Panics
    /// Outside a coroutine, or if `lock` can tell the caller does not hold it
    /// ([`Lockable::assert_held`]).
    #[track_caller]
    pub fn wait_with<L: Lockable + ?Sized>(&self, lock: &L) {
        self.wait_lockable(lock, false);
    }

    /// [`wait_with`](CoQueue::wait_with), queuing at the head.
    #[track_caller]
    pub fn wait_front_with<L: Lockable + ?Sized>(&self, lock: &L) {
        self.wait_lockable(lock, true);
    }

    /// QEMU's `qemu_co_queue_next`: wakes the first waiter; false if the
    /// queue was empty.
    pub fn next(&self) -> bool {
        self.enter_next_with(&NoLock)
    }

    /// QEMU's `qemu_co_queue_restart_all`: wakes every waiter, in FIFO
    /// order.
    ///
    /// The waiters present when it is called are taken off the queue
    /// together and then woken. Inside a coroutine this is exactly QEMU's
    /// behaviour (woken coroutines of this context cannot run, hence cannot
    /// re-queue, before the caller suspends); it also keeps waiters of other
    /// contexts that re-queue at once from making the loop endless. Use
    /// [`enter_all`](CoQueue::enter_all) for QEMU's loop.
    pub fn restart_all(&self) {
        let all = self.entries.with(std::mem::take);
        let woken = all.len() as u64;
        for co in all {
            co.wake();
        }
        if let (Some(s), true) = (self.stats, woken > 0) {
            stats::count(s, [(Counter::Handovers, woken)]);
        }
    }

    /// QEMU's `qemu_co_enter_next(q, NULL)`: wakes the first waiter. Outside
    /// coroutine context (same thread as the waiter's context) the waiter is
    /// entered and runs until it suspends before this returns; inside a
    /// coroutine it runs after the caller suspends.
    pub fn enter_next(&self) -> bool {
        self.enter_next_with(&NoLock)
    }

    /// QEMU's `qemu_co_enter_all(q, NULL)`: repeats
    /// [`enter_next`](CoQueue::enter_next) until the queue is empty, so
    /// coroutines that re-queue during the loop are woken again.
    pub fn enter_all(&self) {
        while self.enter_next() {}
    }

    /// QEMU's `qemu_co_enter_next(q, lock)`: wakes the first waiter with
    /// `lock` released around the wake (outside coroutine context the woken
    /// coroutine runs at once and will want that lock).
    ///
    /// # Panics
    /// If `lock` can tell the caller does not hold it.
    #[track_caller]
    pub fn enter_next_with<L: Lockable + ?Sized>(&self, lock: &L) -> bool {
        lock.assert_held();
        let Some(co) = self.entries.with(VecDeque::pop_front) else {
            return false;
        };
        if let Some(s) = self.stats {
            stats::count(s, [(Counter::Handovers, 1)]);
        }
        // SAFETY: the caller holds `lock` (checked by `assert_held` where
        // the lock can tell; the trait contract otherwise).
        unsafe { lock.unlock() };
        let relock = Relock(lock);
        co.wake();
        drop(relock);
        true
    }

    /// QEMU's `qemu_co_enter_all(q, lock)`.
    #[track_caller]
    pub fn enter_all_with<L: Lockable + ?Sized>(&self, lock: &L) {
        while self.enter_next_with(lock) {}
    }

    /// QEMU's `qemu_co_queue_empty`.
    pub fn is_empty(&self) -> bool {
        self.entries.with(|q| q.is_empty())
    }

    /// Waiters queued now.
    pub fn len(&self) -> usize {
        self.entries.with(|q| q.len())
    }

    /// The statistics name given to [`with_stats`](CoQueue::with_stats).
    pub fn name(&self) -> Option<&str> {
        self.stats.map(|s| &*s.name)
    }

    #[track_caller]
    fn wait_guard<'a, T: ?Sized>(
        &self,
        guard: CoMutexGuard<'a, T>,
        front: bool,
    ) -> CoMutexGuard<'a, T> {
        if !coscheduler::in_coroutine() {
            // Before the guard is consumed: unwinding drops it, so a plain
            // thread's `try_lock` guard unlocks instead of leaving the mutex
            // locked for ever.
            outside_coroutine();
        }
        let mutex = CoMutexGuard::into_locked(guard);
        let release = || {
            // SAFETY: the guard we consumed proved the current coroutine
            // holds `mutex`, and no guard stands for it any more. If the wait
            // unwinds, the mutex stays released (the guard is gone), so
            // nothing re-locks it.
            unsafe { CoMutexGuard::release_locked(mutex) }
        };
        self.suspend_queued(front, release, None::<&NoLock>);
        mutex.lock()
    }

    #[track_caller]
    fn wait_lockable<L: Lockable + ?Sized>(&self, lock: &L, front: bool) {
        lock.assert_held();
        let release = || {
            // SAFETY: the caller holds `lock` (checked by `assert_held` where
            // the lock can tell, by the trait contract otherwise).
            unsafe { lock.unlock() }
        };
        self.suspend_queued(front, release, Some(lock));
        lock.lock();
    }

    /// `qemu_co_queue_wait_impl`: queue self, release the lock, suspend.
    /// If the suspension is unwound (the coroutine is cancelled), the entry
    /// is removed and `relock` is taken again.
    #[track_caller]
    fn suspend_queued<L: Lockable + ?Sized>(
        &self,
        front: bool,
        release: impl FnOnce(),
        relock: Option<&L>,
    ) {
        let Some(me) = coscheduler::current() else {
            outside_coroutine();
        };
        let id = me.id();
        self.entries.with(|q| {
            if front {
                q.push_front(me)
            } else {
                q.push_back(me)
            }
        });
        release();
        let weight = self.stats.map_or(0, |_| stats::sample());
        let start = if weight != 0 { stats::now() } else { 0 };
        hooks::set_wait_reason(self.stats.map_or("CoQueue", |s| s.wait_label), None);
        let cleanup = Unqueue {
            queue: self,
            id,
            relock,
        };
        coscheduler::suspend();
        std::mem::forget(cleanup);
        hooks::clear_wait_reason();
        if let Some(s) = self.stats {
            stats::count(s, [(Counter::Waited, 1)]);
            if weight != 0 {
                let now = stats::now();
                stats::record_times(s, now.saturating_sub(start), None, weight, now);
            }
        }
    }
}

impl Default for CoQueue {
    fn default() -> CoQueue {
        CoQueue::new()
    }
}

impl fmt::Debug for CoQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoQueue")
            .field("name", &self.name())
            .field("waiters", &self.len())
            .finish()
    }
}

/// Removes a waiter's entry (and re-takes its lock) if its wait is unwound.
struct Unqueue<'a, L: Lockable + ?Sized> {
    queue: &'a CoQueue,
    id: u64,
    relock: Option<&'a L>,
}

impl<L: Lockable + ?Sized> Drop for Unqueue<'_, L> {
    #[cold]
    fn drop(&mut self) {
        hooks::clear_wait_reason();
        self.queue
            .entries
            .with(|q| q.retain(|co: &Coroutine| co.id() != self.id));
        if let Some(lock) = self.relock {
            lock.lock();
        }
    }
}

/// Re-takes a lock dropped around a wake, also if the wake panics.
struct Relock<'a, L: Lockable + ?Sized>(&'a L);

impl<L: Lockable + ?Sized> Drop for Relock<'_, L> {
    fn drop(&mut self) {
        self.0.lock();
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn outside_coroutine() -> ! {
    panic!(
        "CoQueue::wait called outside a coroutine: only a coroutine can wait (QEMU: coroutine_fn)"
    )
}
