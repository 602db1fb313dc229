//! The public [`CoMutex`] and [`CoMutexGuard`].

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use coscheduler::raw as hooks;

use super::fairness::{DEFAULT_FAIRNESS_BOUND, Fairness};
use super::park::CoroutineParker;
use super::raw::{Acquired, Choice, RawCoMutex, Released};
use crate::lockable::Lockable;
use crate::stats::{self, Counter, LockKind, StatsHandle};

/// A mutual-exclusion lock for coroutines (QEMU's `CoMutex`): a coroutine
/// that finds it held suspends, and its thread runs other coroutines.
///
/// ```
/// use coprimitives::CoMutex;
/// use coscheduler::Runtime;
/// use std::sync::Arc;
///
/// let rt = Runtime::builder().threads(2).build().unwrap();
/// let counter = Arc::new(CoMutex::new(0u64));
/// let handles: Vec<_> = rt.contexts().iter().map(|ctx| {
///     let counter = counter.clone();
///     ctx.spawn(move || for _ in 0..1000 { *counter.lock() += 1; })
/// }).collect();
/// for h in handles { h.join().unwrap(); }
/// assert_eq!(Arc::try_unwrap(counter).unwrap().into_inner(), 2000);
/// rt.shutdown();
/// ```
///
/// # Algorithm
///
/// QEMU's lockless design (docs/SEMANTICS.md §3, `raw.rs` for the protocol and its
/// proof sketch): an uncontended `lock` + unlock is one CAS and one
/// `fetch_sub`. A contended locker spins briefly — at most 999 turns, only
/// while exactly one holder exists and that holder runs on *another* context
/// (spinning on our own context's holder could never succeed) — then counts
/// itself in, pushes a wait record kept on its own stack onto a lock-free
/// stack, and suspends. An unlocker that sees other arrivals pops the oldest
/// record and hands the lock over directly; if the counted locker has not
/// pushed its record yet, a numbered hand-off token makes exactly one of the
/// two responsible for the wake-up.
///
/// # Fairness
///
/// The lock passes directly from the unlocker to a waiter: once anyone
/// waits, newcomers cannot take it in between; a newcomer wins only while the
/// lock is actually free (count 0). *Which* waiter is the [`Fairness`]
/// policy:
///
/// - [`CoMutex::new`] (and `Default`, `From`, [`with_stats`](CoMutex::with_stats)):
///   [`Fairness::Eventual`] with [`DEFAULT_FAIRNESS_BOUND`]. An unlocker
///   hands the lock to the oldest waiting coroutine of *its own* context,
///   which resumes on the same thread without a cross-thread wake, even if
///   waiters of other contexts queued earlier — unless the oldest waiter
///   has waited longer than the bound, which forces the next hand-over to
///   it. No waiter starves: each is served within about the bound (plus the
///   hold times of the waiters ahead of it). Within one context the order
///   is FIFO.
/// - [`CoMutex::new_fifo`]: strict FIFO across contexts, QEMU's order: every
///   hand-over goes to the oldest waiter. With several busy coroutines on
///   each of two contexts the queue alternates between them, so nearly
///   every hand-over crosses threads.
///
/// # Spinning
///
/// A contended locker spins only on a holder that is observably running on
/// another context: not on a holder of its own context (it cannot progress
/// while we spin), and only a few turns on a waiter that was granted the
/// lock but has not resumed yet (its thread may be parked, or descheduled
/// by the OS when a neighbour keeps the cores busy); then it queues and
/// suspends.
///
/// # Where the woken waiter runs
///
/// Unlocking wakes the next waiter with `aio_co_wake` semantics: from a
/// coroutine of the waiter's context it runs right after the unlocker
/// suspends or finishes; from another context it is handed to its home
/// thread.
///
/// # When not to use it
///
/// A lock that is never held across a suspension and is heavily contended
/// by several threads is often faster as a plain thread mutex (QEMU moved
/// its block layer's `reqs_lock` to `QemuMutex` for this reason). Use
/// `CoMutex` when the holder may suspend, or when waiting coroutines should
/// let their thread run others.
///
/// Direct hand-over has the usual cost of fair locks: if the waiter handed
/// the lock is on a thread the OS has descheduled (more runnable threads
/// than cores), the lock stays idle until it runs again. Eventual fairness
/// keeps most hand-overs on the unlocker's own thread, which is running, so
/// this happens about once per bound rather than once per hand-over; a
/// strict FIFO mutex pays it at every cross-thread hand-over.
///
/// # Statistics
///
/// [`CoMutex::with_stats`] records wait and hold histograms and counters
/// under a name (see [`stats`](crate::stats)). A mutex made with
/// [`CoMutex::new`] records nothing and pays nothing for it.
///
/// # Auto traits
///
/// `CoMutex<T>` is `Send + Sync` when `T: Send`, like `std::sync::Mutex`;
/// its guard is `!Send` (it must be released by the coroutine that locked):
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let m = coprimitives::CoMutex::new(0);
/// coscheduler::Coroutine::new(move || send(m.lock())).enter();
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<coprimitives::CoMutex<std::rc::Rc<u8>>>();
/// ```
pub struct CoMutex<T: ?Sized> {
    raw: RawCoMutex<CoroutineParker>,
    /// The holding coroutine's identity (`raw::current_ids().0`), 0 when
    /// free (QEMU's `m->holder`). Relaxed: written and compared only by the
    /// holder itself; other readers only learn "not me".
    holder: AtomicUsize,
    /// `None` for an unnamed mutex: its fast path tests this pointer once
    /// (to count fast acquisitions of a named one) and nothing else.
    stats: Option<Box<MutexStats>>,
    data: UnsafeCell<T>,
}

/// The statistics state of a named mutex.
///
/// Counters are added when they happen. A timed contended acquisition (see
/// the sampling in `stats`) is timed from its request to the moment it got
/// the lock — for a hand-over, the grant: its wait record asks the granter
/// for a timestamp, so its wake-up latency counts as hold time (the lock is
/// unavailable meanwhile) — and recorded in one call at its release together
/// with its hold time. A timed contended lock + unlock reads the clock three
/// times; an untimed one never.
struct MutexStats {
    handle: &'static StatsHandle,
    /// When the current holder's timed acquisition completed (0: not
    /// timed). The three fields are written and read by the holder only,
    /// hence Relaxed.
    hold_start: AtomicU64,
    /// That acquisition's wait, in nanoseconds.
    wait: AtomicU64,
    /// Its sampling weight.
    weight: AtomicU64,
}

// SAFETY: the mutex owns a `T` and gives `&mut T` to one coroutine at a time;
// moving the mutex moves the `T`, which needs `T: Send`.
unsafe impl<T: ?Sized + Send> Send for CoMutex<T> {}
// SAFETY: sharing the mutex lets coroutines on any thread get `&mut T` one at
// a time (mutual exclusion by the raw protocol), which moves access to the
// `T` between threads: `T: Send` is needed, `T: Sync` is not (as for
// `std::sync::Mutex`).
unsafe impl<T: ?Sized + Send> Sync for CoMutex<T> {}

impl<T> CoMutex<T> {
    /// QEMU's `qemu_co_mutex_init`: an unlocked mutex holding `value`, with
    /// the default [`Fairness::Eventual`] policy (bound
    /// [`DEFAULT_FAIRNESS_BOUND`]). Usable in a `static`.
    pub const fn new(value: T) -> CoMutex<T> {
        CoMutex::with_fairness(
            value,
            Fairness::Eventual {
                bound: DEFAULT_FAIRNESS_BOUND,
            },
        )
    }

    /// An unlocked mutex handing over in strict FIFO order across contexts,
    /// QEMU's behaviour (what the QEMU ports and choreography tests rely on).
    /// Usable in a `static`.
    pub const fn new_fifo(value: T) -> CoMutex<T> {
        CoMutex::with_fairness(value, Fairness::Fifo)
    }

    /// An unlocked mutex with the given hand-over policy. Usable in a
    /// `static`.
    pub const fn with_fairness(value: T, fairness: Fairness) -> CoMutex<T> {
        CoMutex {
            raw: RawCoMutex::new(fairness.policy()),
            holder: AtomicUsize::new(0),
            stats: None,
            data: UnsafeCell::new(value),
        }
    }

    /// An unlocked mutex that records contention statistics under `name`
    /// (see [`stats`](crate::stats)); mutexes sharing a name share the
    /// entry. Default fairness; choose another with
    /// [`fairness`](CoMutex::fairness).
    pub fn with_stats(value: T, name: &str) -> CoMutex<T> {
        let handle = stats::register(name, LockKind::Mutex);
        let stats = MutexStats {
            handle,
            hold_start: AtomicU64::new(0),
            wait: AtomicU64::new(0),
            weight: AtomicU64::new(0),
        };
        CoMutex {
            stats: Some(Box::new(stats)),
            ..CoMutex::new(value)
        }
    }

    /// The same mutex (unlocked, not yet shared) with another hand-over
    /// policy, e.g. `CoMutex::with_stats(v, "name").fairness(Fairness::Fifo)`.
    pub fn fairness(self, fairness: Fairness) -> CoMutex<T> {
        CoMutex {
            raw: RawCoMutex::new(fairness.policy()),
            ..self
        }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> CoMutex<T> {
    /// QEMU's `qemu_co_mutex_lock`: locks, suspending the calling coroutine
    /// while another holds the lock. Dropping the guard unlocks
    /// (`qemu_co_mutex_unlock`).
    ///
    /// # Panics
    /// Outside a coroutine (QEMU's `coroutine_fn` rule): only a coroutine can
    /// wait. Use [`try_lock`](Self::try_lock) from plain thread code, or see
    /// [Outside a coroutine](crate#outside-a-coroutine) for the alternatives.
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> CoMutexGuard<'_, T> {
        self.acquire();
        CoMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        }
    }

    /// Locks if the mutex is free, without waiting (QEMU has no trylock).
    /// Works inside and outside coroutines; it never overtakes queued
    /// waiters (the lock is not free while anyone waits).
    #[inline]
    pub fn try_lock(&self) -> Option<CoMutexGuard<'_, T>> {
        let (me, ctx) = hooks::current_ids();
        self.raw.try_lock_fast(ctx).ok()?;
        if let Some(s) = &self.stats {
            stats::count(s.handle, [(Counter::Fast, 1)]);
        }
        self.holder
            .store(if me == 0 { thread_token() } else { me }, Relaxed);
        hooks::lock_acquired();
        Some(CoMutexGuard {
            mutex: self,
            _not_send: PhantomData,
        })
    }

    /// True if the calling coroutine (or, outside coroutines, the calling
    /// thread through [`try_lock`](Self::try_lock)) holds the lock: the test
    /// of QEMU's `qemu_co_mutex_assert_locked`.
    #[inline]
    pub fn is_locked_by_current(&self) -> bool {
        let (me, _) = hooks::current_ids();
        let me = if me == 0 { thread_token() } else { me };
        // Relaxed: only this coroutine ever stores its own identity, so
        // reading it back cannot be stale; any other value means "not us".
        self.raw.is_locked() && self.holder.load(Relaxed) == me
    }

    /// QEMU's `qemu_co_mutex_assert_locked`.
    ///
    /// # Panics
    /// Unless the calling coroutine holds the lock.
    #[track_caller]
    pub fn assert_locked(&self) {
        assert!(
            self.is_locked_by_current(),
            "CoMutex is not locked by the current coroutine"
        );
    }

    /// True while some coroutine holds the lock or it is being handed over.
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// The statistics name given to [`with_stats`](CoMutex::with_stats).
    pub fn name(&self) -> Option<&str> {
        self.stats.as_ref().map(|s| &*s.handle.name)
    }

    /// The value, through an exclusive borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// `qemu_co_mutex_lock` without a guard, shared by `lock` and
    /// [`Lockable::lock`].
    #[inline]
    #[track_caller]
    fn acquire(&self) {
        let (me, ctx) = hooks::current_ids();
        if me == 0 {
            outside_coroutine();
        }
        match self.raw.try_lock_fast(ctx) {
            Ok(()) => {
                if let Some(s) = &self.stats {
                    stats::count(s.handle, [(Counter::Fast, 1)]);
                }
            }
            Err(waiters) => self.acquire_contended(ctx, waiters),
        }
        self.holder.store(me, Relaxed);
        hooks::lock_acquired();
    }

    /// The contended lock: the protocol's slow path, plus the wait
    /// description and statistics.
    #[cold]
    #[inline(never)]
    fn acquire_contended(&self, ctx: usize, waiters: usize) {
        // Tells the deadlock finder whom we wait for (the holder).
        let blocker = crate::deadlock::MutexBlocker {
            holder: &self.holder,
            name: self.name(),
            address: self as *const Self as *const () as usize,
        };
        let Some(s) = self.stats.as_deref() else {
            coscheduler::deadlock::wait_on("CoMutex", None, &blocker, || {
                let _ = self.raw.lock_slow(ctx, waiters, false);
            });
            return;
        };
        let weight = stats::sample();
        let start = if weight != 0 { stats::now() } else { 0 };
        let how = coscheduler::deadlock::wait_on(s.handle.wait_label, None, &blocker, || {
            self.raw.lock_slow(ctx, waiters, weight != 0)
        });
        let (kind, spins, retries, handoff, suspended) = match how {
            Acquired::Spun { spins, retries } => (Counter::Spun, spins, retries, false, false),
            Acquired::Raced { spins, retries } => (Counter::Raced, spins, retries, false, false),
            Acquired::Queued {
                spins,
                retries,
                took_handoff,
                suspended,
                ..
            } => (Counter::Waited, spins, retries, took_handoff, suspended),
        };
        let self_granted = matches!(how, Acquired::Queued { .. }) && !suspended;
        stats::count(
            s.handle,
            [
                (kind, 1),
                (Counter::SpinIterations, u64::from(spins)),
                (Counter::ClaimRetries, u64::from(retries)),
                (Counter::Handoffs, u64::from(handoff)),
                (Counter::SelfGranted, u64::from(self_granted)),
                (Counter::SpinThenPark, u64::from(suspended && spins != 0)),
            ],
        );
        if weight != 0 {
            let acquired = match how {
                Acquired::Queued { stamp, .. } if stamp != 0 => stamp,
                _ => stats::now(),
            };
            s.wait.store(acquired.saturating_sub(start), Relaxed);
            s.weight.store(weight, Relaxed);
            s.hold_start.store(acquired, Relaxed);
        }
    }

    /// `qemu_co_mutex_unlock`, shared by the guard and
    /// [`Lockable::unlock`].
    ///
    /// # Safety
    /// The calling coroutine holds the lock.
    #[inline]
    unsafe fn release(&self) {
        self.holder.store(0, Relaxed);
        hooks::lock_released();
        if let Some(s) = &self.stats {
            self.release_with_stats(s);
            return;
        }
        let _ = self.raw.unlock();
    }

    /// Unlock of a named mutex: an untimed acquisition (the common case)
    /// just unlocks; a timed one reads the clock for its hold time and is
    /// recorded. (Hand-overs are counted, and stamped, for the waiters.)
    #[inline]
    fn release_with_stats(&self, s: &MutexStats) {
        // Read before unlocking: the next holder writes these fields.
        let hold_start = s.hold_start.load(Relaxed);
        if hold_start == 0 {
            // `s.handle` is 'static; `s` itself may be freed once we unlock.
            let handle = s.handle;
            count_release(handle, self.raw.unlock());
            return;
        }
        self.release_timed(s, hold_start);
    }

    #[cold]
    #[inline(never)]
    fn release_timed(&self, s: &MutexStats, hold_start: u64) {
        s.hold_start.store(0, Relaxed);
        let (wait, weight) = (s.wait.load(Relaxed), s.weight.load(Relaxed));
        let now = stats::now();
        let handle = s.handle;
        count_release(handle, self.raw.unlock());
        // Only copies and the 'static `handle` are used from here: `s` may
        // be freed by the waiter we may just have woken.
        stats::record_times(
            handle,
            wait,
            Some(now.saturating_sub(hold_start)),
            weight,
            now,
        );
    }
}

/// Counts how an unlock of a named mutex handed the lock over, if it did.
#[inline]
fn count_release(handle: &'static StatsHandle, released: Released) {
    let Released::HandedOver(choice) = released else {
        return;
    };
    let local = matches!(choice, Choice::OldestLocal | Choice::Overtook);
    let side = if local {
        Counter::LocalHandovers
    } else {
        Counter::RemoteHandovers
    };
    stats::count(
        handle,
        [
            (side, 1),
            (Counter::Barged, u64::from(choice == Choice::Overtook)),
            (Counter::FifoForced, u64::from(choice == Choice::Forced)),
        ],
    );
}

/// A holder identity for plain threads using `try_lock`: the address of a
/// thread-local, made odd so it never equals a coroutine's (aligned)
/// control-block address.
#[cold]
fn thread_token() -> usize {
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| t as *const u8 as usize | 1)
}

#[cold]
#[inline(never)]
#[track_caller]
fn outside_coroutine() -> ! {
    panic!(
        "CoMutex::lock() called outside a coroutine: only a coroutine can wait for a CoMutex \
         (QEMU's qemu_co_mutex_lock is coroutine_fn); use try_lock() from thread code"
    )
}

// SAFETY: `lock` returns holding the mutex exclusively (the raw protocol's
// mutual exclusion, Acquire on every acquisition path); `unlock` releases it
// with Release; `assert_held` panics unless the caller holds it, and `unlock`
// itself refuses (panics) when called by a non-holder, so a misuse cannot
// break mutual exclusion.
unsafe impl<T: ?Sized> Lockable for CoMutex<T> {
    /// `qemu_co_mutex_lock` without a guard (`QEMU_MAKE_LOCKABLE(&m)`).
    ///
    /// # Panics
    /// Outside a coroutine.
    #[track_caller]
    fn lock(&self) {
        self.acquire();
    }

    /// `qemu_co_mutex_unlock`.
    ///
    /// # Panics
    /// If the calling coroutine does not hold the lock (QEMU asserts
    /// `holder == self`).
    #[track_caller]
    unsafe fn unlock(&self) {
        self.assert_locked();
        // SAFETY: checked just above: we hold the lock.
        unsafe { self.release() };
    }

    #[track_caller]
    fn assert_held(&self) {
        self.assert_locked();
    }
}

impl<T: Default> Default for CoMutex<T> {
    fn default() -> CoMutex<T> {
        CoMutex::new(T::default())
    }
}

impl<T> From<T> for CoMutex<T> {
    fn from(value: T) -> CoMutex<T> {
        CoMutex::new(value)
    }
}

impl<T: ?Sized> fmt::Debug for CoMutex<T> {
    /// The lock state and name; the value is not shown (reading it would
    /// need the lock, which a formatter cannot wait for).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoMutex")
            .field("name", &self.name())
            .field("locked", &self.is_locked())
            .finish_non_exhaustive()
    }
}

/// Proof of holding a [`CoMutex`]; dereferences to the value. Dropping it is
/// QEMU's `qemu_co_mutex_unlock`: the next waiter, if any, gets the lock.
///
/// `!Send`: the coroutine that locked must unlock (QEMU asserts `holder ==
/// self`). A guard dropped by unwinding (a panic in the holder) unlocks too.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CoMutexGuard<'a, T: ?Sized> {
    mutex: &'a CoMutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives `&T`, so sharing it across threads is
// sharing `&T`: needs `T: Sync` (as for `std::sync::MutexGuard`).
unsafe impl<T: ?Sized + Sync> Sync for CoMutexGuard<'_, T> {}

impl<'a, T: ?Sized> CoMutexGuard<'a, T> {
    /// The mutex this guard holds (an associated function, so it does not
    /// shadow a method of `T`).
    pub fn mutex(this: &Self) -> &'a CoMutex<T> {
        this.mutex
    }

    /// Gives up the guard without unlocking; the caller takes over the
    /// obligation to release (used by `CoQueue::wait`).
    pub(crate) fn into_locked(this: Self) -> &'a CoMutex<T> {
        let m = this.mutex;
        std::mem::forget(this);
        m
    }

    /// Unlocks `mutex` held without a guard (by `into_locked`).
    ///
    /// # Safety
    /// The calling coroutine holds `mutex` and no guard stands for it.
    pub(crate) unsafe fn release_locked(mutex: &CoMutex<T>) {
        // SAFETY: forwarded contract.
        unsafe { mutex.release() };
    }
}

impl<T: ?Sized> Deref for CoMutexGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard proves we hold the lock: no `&mut T` exists
        // elsewhere.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for CoMutexGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves we hold the lock exclusively, and `&mut
        // self` makes this the only borrow through it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for CoMutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: the guard proves the current coroutine holds the lock
        // (guards are `!Send`, so it is the coroutine that locked).
        unsafe { self.mutex.release() };
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for CoMutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
