//! QEMU's CoRwlock, ticket implementation (docs/SEMANTICS.md §5): an internal
//! CoMutex protects an owner count and a FIFO of tickets kept on the
//! waiters' stacks.
//!
//! The protocol (the state, the grants, the `granted` flag and the
//! withdrawal of a cancelled waiter) is in `tickets.rs`, generic over its
//! host and model-checked there; this file is the public lock: the
//! internal `CoMutex`, coroutine suspension, statistics and the deadlock
//! finder's description of a wait.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use coscheduler::Coroutine;
use coscheduler::raw as hooks;

use crate::co_mutex::{CoMutex, CoMutexGuard};
use crate::stats::{self, Counter, LockKind, StatsHandle};

mod tickets;

use tickets::{Host, RwState, Ticket};

/// A fair reader-writer lock for coroutines (QEMU's `CoRwlock`).
///
/// ```
/// use coprimitives::CoRwLock;
/// use coscheduler::Coroutine;
/// use std::sync::Arc;
///
/// let lock = Arc::new(CoRwLock::new(vec![1, 2]));
/// let l = lock.clone();
/// Coroutine::new(move || {
///     let r = l.read();
///     assert_eq!(r.len(), 2);
///     let mut w = r.upgrade();    // may let a queued writer in first
///     w.push(3);
///     let r = w.downgrade();      // never blocks
///     assert_eq!(*r, [1, 2, 3]);
/// }).enter();
/// ```
///
/// # Fairness
///
/// Readers and writers are served strictly in arrival order: a reader that
/// finds any waiter queued queues behind it, so writers never starve, and
/// consecutive queued readers are admitted together (each admitted reader
/// admits the next). [`upgrade`](CoRwLockReadGuard::upgrade) by the only
/// reader with nobody queued is immediate; otherwise the reader gives up its
/// share and queues as a writer at the tail, so another writer may run
/// first and change the protected value: re-check it after upgrading.
///
/// # Statistics
///
/// [`CoRwLock::with_stats`] records, under a name, the wait of every
/// acquisition that queued (from queuing to being granted; the brief wait
/// for the internal mutex is not included) and its hold time.
///
/// `CoRwLock<T>` is `Send` when `T: Send` and `Sync` when `T: Send + Sync`
/// (readers share `&T` across threads). Its guards are `!Send`.
pub struct CoRwLock<T: ?Sized> {
    state: CoMutex<RwState<Coroutine>>,
    stats: Option<&'static StatsHandle>,
    data: UnsafeCell<T>,
}

// SAFETY: `CoRwLock` owns a `T`; moving it moves the `T`.
unsafe impl<T: ?Sized + Send> Send for CoRwLock<T> {}
// SAFETY: readers on several threads share `&T` at once (`T: Sync`), and a
// writer on any thread gets `&mut T` (`T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for CoRwLock<T> {}

impl<T> CoRwLock<T> {
    /// QEMU's `qemu_co_rwlock_init`: an unlocked lock holding `value`.
    pub const fn new(value: T) -> CoRwLock<T> {
        CoRwLock {
            state: CoMutex::new(RwState::new()),
            stats: None,
            data: UnsafeCell::new(value),
        }
    }

    /// An unlocked lock recording contention statistics under `name`.
    pub fn with_stats(value: T, name: &str) -> CoRwLock<T> {
        CoRwLock {
            stats: Some(stats::register(name, LockKind::RwLock)),
            ..CoRwLock::new(value)
        }
    }

    /// Consumes the lock, returning the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> CoRwLock<T> {
    /// QEMU's `qemu_co_rwlock_rdlock`: shared access; waits while a writer
    /// holds the lock or anyone is queued.
    ///
    /// # Panics
    /// Outside a coroutine: only a coroutine can wait (see
    /// [Outside a coroutine](crate#outside-a-coroutine) for the
    /// alternatives).
    #[track_caller]
    pub fn read(&self) -> CoRwLockReadGuard<'_, T> {
        check_coroutine("read");
        let waited = tickets::read(self, self.state.lock(), |t, run| self.wait(t, run));
        let timing = self.acquired(waited);
        hooks::lock_acquired();
        CoRwLockReadGuard {
            lock: self,
            timing,
            _not_send: PhantomData,
        }
    }

    /// QEMU's `qemu_co_rwlock_wrlock`: exclusive access.
    ///
    /// # Panics
    /// As [`read`](Self::read), outside a coroutine.
    #[track_caller]
    pub fn write(&self) -> CoRwLockWriteGuard<'_, T> {
        check_coroutine("write");
        let waited = tickets::write(self, self.state.lock(), |t, run| self.wait(t, run));
        let timing = self.acquired(waited);
        hooks::lock_acquired();
        CoRwLockWriteGuard {
            lock: self,
            timing,
            _not_send: PhantomData,
        }
    }

    /// The value, through an exclusive borrow (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// The statistics name given to [`with_stats`](CoRwLock::with_stats).
    pub fn name(&self) -> Option<&str> {
        self.stats.map(|s| &*s.name)
    }

    /// A queued waiter's wait for its grant (`run`), described for the
    /// deadlock finder. Returns the timing started for statistics.
    fn wait(&self, ticket: &Ticket<Coroutine>, run: &mut dyn FnMut()) -> Timing {
        let weight = self.stats.map_or(0, |_| stats::sample());
        let start = Timing {
            start: if weight != 0 { stats::now() } else { 0 },
            weight,
        };
        let blocker = TicketBlocker {
            state: &self.state,
            name: self.name(),
            address: self as *const Self as *const () as usize,
            ticket,
        };
        let label = self.stats.map_or("CoRwLock", |s| s.wait_label);
        coscheduler::deadlock::wait_on(label, None, &blocker, run);
        start
    }

    /// Counts an acquisition, fast (`waited` is `None`) or queued, and
    /// returns the timing of its hold.
    fn acquired(&self, waited: Option<Timing>) -> Timing {
        match waited {
            None => {
                if let Some(s) = self.stats {
                    stats::count(s, [(Counter::Fast, 1)]);
                }
                Timing::NONE
            }
            Some(waited) => self.record_wait(waited),
        }
    }

    /// QEMU's `qemu_co_rwlock_unlock` (either kind).
    fn unlock(&self, timing: Timing) {
        hooks::lock_released();
        if let (Some(s), true) = (self.stats, timing.start != 0) {
            stats::record_hold(s, stats::now().saturating_sub(timing.start), timing.weight);
        }
        tickets::unlock(self);
    }

    /// Counts a queued acquisition and records its wait if it is timed;
    /// returns the timing of its hold.
    fn record_wait(&self, waited: Timing) -> Timing {
        let Some(s) = self.stats else {
            return Timing::NONE;
        };
        stats::count(s, [(Counter::Waited, 1)]);
        if waited.weight == 0 {
            return Timing::NONE;
        }
        let now = stats::now();
        stats::record_times(
            s,
            now.saturating_sub(waited.start),
            None,
            waited.weight,
            now,
        );
        Timing {
            start: now,
            weight: waited.weight,
        }
    }
}

/// A timed interval of a named lock: its start (0: not timed) and sampling
/// weight.
#[derive(Clone, Copy, Debug)]
struct Timing {
    start: u64,
    weight: u64,
}

impl Timing {
    const NONE: Timing = Timing {
        start: 0,
        weight: 0,
    };
}

/// The runtime's side of the ticket protocol: the internal `CoMutex`,
/// coroutine suspension and wakes, statistics and the wait description.
impl<T: ?Sized> Host for CoRwLock<T> {
    type Waiter = Coroutine;
    type Guard<'a>
        = CoMutexGuard<'a, RwState<Coroutine>>
    where
        Self: 'a;

    /// Shielded (see `coscheduler::raw::shield`): the caller owns a share
    /// or a granted ticket that no guard stands for yet.
    fn lock_shielded(&self) -> Self::Guard<'_> {
        hooks::shield(|| self.state.lock())
    }

    fn key() -> usize {
        hooks::current_ids().0
    }

    fn me() -> Option<Coroutine> {
        coscheduler::current()
    }

    fn suspend() {
        coscheduler::suspend();
    }

    fn wake(waiter: Coroutine) {
        waiter.wake();
    }

    fn handed_over(&self) {
        if let Some(s) = self.stats {
            stats::count(s, [(Counter::Handovers, 1)]);
        }
    }

    fn withdrawing(&self) {
        hooks::clear_wait_reason();
    }
}

/// A queued ticket waits for the owners when it is at the head of the
/// queue, otherwise for the waiter just ahead of it (strict FIFO: it cannot
/// be granted before that one).
struct TicketBlocker<'a> {
    state: &'a CoMutex<RwState<Coroutine>>,
    name: Option<&'a str>,
    address: usize,
    ticket: &'a Ticket<Coroutine>,
}

impl coscheduler::deadlock::Blocker for TicketBlocker<'_> {
    fn blocked_by(&self, out: &mut Vec<usize>) {
        // Called outside any coroutine, so it must not wait: the internal
        // mutex is only held for short steps, and never by a deadlocked
        // coroutine.
        let Some(st) = self.state.try_lock() else {
            return;
        };
        st.blockers_of(self.ticket, out);
    }

    fn describe(&self) -> String {
        crate::deadlock::describe_lock("CoRwLock", self.name, self.address)
    }
}

impl<T: Default> Default for CoRwLock<T> {
    fn default() -> CoRwLock<T> {
        CoRwLock::new(T::default())
    }
}

impl<T: ?Sized> fmt::Debug for CoRwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoRwLock")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

#[track_caller]
fn check_coroutine(what: &str) {
    if !coscheduler::in_coroutine() {
        outside_coroutine(what);
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn outside_coroutine(what: &str) -> ! {
    panic!(
        "CoRwLock::{what}() called outside a coroutine: only a coroutine can wait (QEMU: coroutine_fn)"
    )
}

/// Shared access to a [`CoRwLock`]; dropping it is `qemu_co_rwlock_unlock`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CoRwLockReadGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
    timing: Timing,
    _not_send: PhantomData<*const ()>,
}

/// Exclusive access to a [`CoRwLock`]; dropping it is
/// `qemu_co_rwlock_unlock`.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct CoRwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
    timing: Timing,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared read guard gives `&T` only: sharing it needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for CoRwLockReadGuard<'_, T> {}
// SAFETY: a shared write guard gives `&T` only: sharing it needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for CoRwLockWriteGuard<'_, T> {}

impl<'a, T: ?Sized> CoRwLockReadGuard<'a, T> {
    /// QEMU's `qemu_co_rwlock_upgrade`: turns shared access into exclusive
    /// access. Immediate if this is the only reader and nobody is queued;
    /// otherwise gives up the read share and queues as a writer at the tail,
    /// so queued writers (and the readers before them) run first.
    pub fn upgrade(self) -> CoRwLockWriteGuard<'a, T> {
        let lock = self.lock;
        let timing = self.timing;
        std::mem::forget(self);
        let timing = match tickets::upgrade(lock, |t, run| lock.wait(t, run)) {
            None => timing,
            Some(waited) => lock.record_wait(waited),
        };
        CoRwLockWriteGuard {
            lock,
            timing,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn rwlock(this: &Self) -> &'a CoRwLock<T> {
        this.lock
    }
}

impl<'a, T: ?Sized> CoRwLockWriteGuard<'a, T> {
    /// QEMU's `qemu_co_rwlock_downgrade`: turns exclusive access into
    /// shared access without ever waiting for the lock, and admits the
    /// readers queued at the head (each admitted reader admits the next).
    pub fn downgrade(self) -> CoRwLockReadGuard<'a, T> {
        let lock = self.lock;
        let timing = self.timing;
        std::mem::forget(self);
        tickets::downgrade(lock);
        CoRwLockReadGuard {
            lock,
            timing,
            _not_send: PhantomData,
        }
    }

    /// The lock this guard holds.
    pub fn rwlock(this: &Self) -> &'a CoRwLock<T> {
        this.lock
    }
}

impl<T: ?Sized> Deref for CoRwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold a read share: writers are excluded.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Deref for CoRwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we hold the write lock: nobody else accesses the value.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for CoRwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: we hold the write lock, and `&mut self` makes this the only
        // borrow through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for CoRwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock(self.timing);
    }
}

impl<T: ?Sized> Drop for CoRwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock(self.timing);
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for CoRwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
