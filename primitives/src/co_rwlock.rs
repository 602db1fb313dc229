//! QEMU's CoRwlock, ticket implementation (docs/SEMANTICS.md §5): an internal
//! CoMutex protects an owner count and a FIFO of tickets kept on the
//! waiters' stacks.
//!
//! # State (under the internal mutex)
//!
//! | `owners` | meaning |
//! |---|---|
//! | `n > 0` | `n` readers hold the lock |
//! | `0` | free |
//! | `-1` | one writer holds the lock |
//!
//! `holders` lists the owning coroutines (their `raw::current_ids().0`
//! keys: one per reader share, or the writer), kept in step with `owners`
//! for the deadlock finder.
//!
//! `tickets` is the FIFO of waiters; a ticket is granted by
//! `maybe_wake_one`, which assigns the ownership *before* the wake (under the
//! mutex), marks the ticket `granted`, releases the mutex and then wakes the
//! waiter: nobody can sneak in between. A granted ticket's waiter owns the
//! lock whether or not it has run yet.
//!
//! No lost wake-up: every change that can make the head ticket compatible
//! (unlock, downgrade, an upgrade giving up its read share, a granted reader
//! chain-waking the next) ends in `maybe_wake_one`.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};

use coscheduler::Coroutine;
use coscheduler::raw as hooks;

use crate::co_mutex::{CoMutex, CoMutexGuard};
use crate::stats::{self, Counter, LockKind, StatsHandle};

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
    state: CoMutex<RwState>,
    stats: Option<&'static StatsHandle>,
    data: UnsafeCell<T>,
}

struct RwState {
    owners: isize,
    holders: Vec<usize>,
    tickets: VecDeque<TicketRef>,
}

/// A waiter, on its own stack (QEMU's `CoRwTicket`).
struct Ticket {
    read: bool,
    /// The waiter's key (`raw::current_ids().0`), for the deadlock finder.
    key: usize,
    /// Taken by the granter, under the internal mutex.
    co: UnsafeCell<Option<Coroutine>>,
    /// Set by the granter under the internal mutex, before it wakes `co`.
    /// Release/Acquire: `maybe_wake_one`'s store with the waiter's load in
    /// `wait_granted` (or its read under the mutex when unwinding).
    granted: AtomicBool,
}

/// A queued ticket. The ticket outlives its queue entry: its waiter does not
/// leave its frame before the ticket is granted (and dequeued) or, when
/// unwinding, before it has dequeued it itself (`TicketCancel`).
struct TicketRef(NonNull<Ticket>);

// SAFETY: a ticket is only touched under the internal mutex (or by its own
// waiter after `granted`), and what crosses threads through it is a
// `Coroutine`, which is `Send`.
unsafe impl Send for TicketRef {}

// SAFETY: `CoRwLock` owns a `T`; moving it moves the `T`.
unsafe impl<T: ?Sized + Send> Send for CoRwLock<T> {}
// SAFETY: readers on several threads share `&T` at once (`T: Sync`), and a
// writer on any thread gets `&mut T` (`T: Send`).
unsafe impl<T: ?Sized + Send + Sync> Sync for CoRwLock<T> {}

impl<T> CoRwLock<T> {
    /// QEMU's `qemu_co_rwlock_init`: an unlocked lock holding `value`.
    pub const fn new(value: T) -> CoRwLock<T> {
        CoRwLock {
            state: CoMutex::new(RwState {
                owners: 0,
                holders: Vec::new(),
                tickets: VecDeque::new(),
            }),
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
    /// Outside a coroutine.
    #[track_caller]
    pub fn read(&self) -> CoRwLockReadGuard<'_, T> {
        check_coroutine("read");
        let mut st = self.state.lock();
        let timing = if st.owners == 0 || (st.owners > 0 && st.tickets.is_empty()) {
            st.owners += 1;
            st.holders.push(hooks::current_ids().0);
            drop(st);
            self.count_fast();
            Timing::NONE
        } else {
            let waited = self.wait_ticket(st, true, false);
            // Possibly admit the next reader, which admits the one after.
            let st = self.lock_state_shielded();
            self.maybe_wake_one(st);
            self.record_wait(waited)
        };
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
    /// Outside a coroutine.
    #[track_caller]
    pub fn write(&self) -> CoRwLockWriteGuard<'_, T> {
        check_coroutine("write");
        let mut st = self.state.lock();
        let timing = if st.owners == 0 {
            st.owners = -1;
            st.holders.push(hooks::current_ids().0);
            drop(st);
            self.count_fast();
            Timing::NONE
        } else {
            let waited = self.wait_ticket(st, false, false);
            self.record_wait(waited)
        };
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

    /// Queues a ticket (the internal mutex is held through `st`), releases
    /// the mutex — through `maybe_wake_one` if `wake_one` — and suspends until
    /// the ticket is granted. Returns the timing started for statistics.
    fn wait_ticket(&self, mut st: CoMutexGuard<'_, RwState>, read: bool, wake_one: bool) -> Timing {
        let ticket = Ticket {
            read,
            key: hooks::current_ids().0,
            co: UnsafeCell::new(coscheduler::current()),
            granted: AtomicBool::new(false),
        };
        st.tickets.push_back(TicketRef(NonNull::from(&ticket)));
        let weight = self.stats.map_or(0, |_| stats::sample());
        let start = Timing {
            start: if weight != 0 { stats::now() } else { 0 },
            weight,
        };
        if wake_one {
            self.maybe_wake_one(st);
        } else {
            drop(st);
        }
        let cancel = TicketCancel {
            lock: self,
            ticket: &ticket,
        };
        let blocker = TicketBlocker {
            state: &self.state,
            name: self.name(),
            address: self as *const Self as *const () as usize,
            ticket: &ticket,
        };
        let label = self.stats.map_or("CoRwLock", |s| s.wait_label);
        coscheduler::deadlock::wait_on(label, None, &blocker, || {
            loop {
                coscheduler::suspend();
                // Acquire: pairs with the Release store in `maybe_wake_one`.
                if ticket.granted.load(Acquire) {
                    break;
                }
            }
        });
        std::mem::forget(cancel);
        start
    }

    /// QEMU's `qemu_co_rwlock_maybe_wake_one`: grants the head ticket if it
    /// is compatible with the current owners, then releases the internal
    /// mutex, then wakes the grantee (in that order, as QEMU).
    fn maybe_wake_one(&self, mut st: CoMutexGuard<'_, RwState>) {
        // SAFETY: queued tickets are alive (see `TicketRef`); read under the
        // mutex.
        let head_reads = st.tickets.front().map(|t| unsafe { t.0.as_ref() }.read);
        let grant = match head_reads {
            Some(true) if st.owners >= 0 => {
                st.owners += 1;
                true
            }
            Some(false) if st.owners == 0 => {
                st.owners = -1;
                true
            }
            _ => false,
        };
        if !grant {
            return;
        }
        let Some(t) = st.tickets.pop_front() else {
            unreachable!("the head ticket vanished")
        };
        // SAFETY: dequeued under the mutex, not yet granted: alive, and we
        // are its only user.
        let ticket = unsafe { t.0.as_ref() };
        st.holders.push(ticket.key);
        // SAFETY: as above; `co` is touched only by the granter.
        let co = unsafe { (*ticket.co.get()).take() };
        // Release: pairs with the Acquire load in `wait_ticket` (and the read
        // in `TicketCancel`). Last access to the ticket.
        ticket.granted.store(true, Release);
        drop(st);
        if let Some(s) = self.stats {
            stats::count(s, [(Counter::Handovers, 1)]);
        }
        if let Some(co) = co {
            co.wake();
        }
    }

    /// QEMU's `qemu_co_rwlock_unlock` (either kind).
    fn unlock(&self, timing: Timing) {
        hooks::lock_released();
        if let (Some(s), true) = (self.stats, timing.start != 0) {
            stats::record_hold(s, stats::now().saturating_sub(timing.start), timing.weight);
        }
        let mut st = self.lock_state_shielded();
        release_share(&mut st, hooks::current_ids().0);
        self.maybe_wake_one(st);
    }

    /// Takes the internal mutex for a step that must complete once begun:
    /// the caller owns a share (or a granted ticket) that no guard stands
    /// for yet, so the coroutine must not be unwound by a cancellation
    /// while it waits for the mutex (see `coscheduler::raw::shield`).
    fn lock_state_shielded(&self) -> CoMutexGuard<'_, RwState> {
        hooks::shield(|| self.state.lock())
    }

    #[inline]
    fn count_fast(&self) {
        if let Some(s) = self.stats {
            stats::count(s, [(Counter::Fast, 1)]);
        }
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

/// Gives up one share, `holder`'s: a reader's, or the writer's.
fn release_share(st: &mut RwState, holder: usize) {
    if let Some(i) = st.holders.iter().position(|&h| h == holder) {
        st.holders.swap_remove(i);
    }
    if st.owners > 0 {
        st.owners -= 1;
    } else {
        assert_eq!(
            st.owners, -1,
            "CoRwLock released while not held; owners = {}",
            st.owners
        );
        st.owners = 0;
    }
}

/// Keeps a queued ticket valid if its waiter is unwound (cancelled) while
/// suspended: dequeues it, or — if it was granted meanwhile — releases the
/// ownership it was given, then lets the next ticket in.
struct TicketCancel<'a, T: ?Sized> {
    lock: &'a CoRwLock<T>,
    ticket: &'a Ticket,
}

impl<T: ?Sized> Drop for TicketCancel<'_, T> {
    #[cold]
    fn drop(&mut self) {
        hooks::clear_wait_reason();
        let mut st = self.lock.lock_state_shielded();
        // Acquire: pairs with the Release store in `maybe_wake_one`; decisive
        // under the mutex, where grants happen.
        if self.ticket.granted.load(Acquire) {
            release_share(&mut st, self.ticket.key);
        } else {
            let me = NonNull::from(self.ticket);
            st.tickets.retain(|t| t.0 != me);
        }
        self.lock.maybe_wake_one(st);
    }
}

/// A queued ticket waits for the owners when it is at the head of the
/// queue, otherwise for the waiter just ahead of it (strict FIFO: it cannot
/// be granted before that one).
struct TicketBlocker<'a> {
    state: &'a CoMutex<RwState>,
    name: Option<&'a str>,
    address: usize,
    ticket: &'a Ticket,
}

impl coscheduler::deadlock::Blocker for TicketBlocker<'_> {
    fn blocked_by(&self, out: &mut Vec<usize>) {
        // Called outside any coroutine, so it must not wait: the internal
        // mutex is only held for short steps, and never by a deadlocked
        // coroutine.
        let Some(st) = self.state.try_lock() else {
            return;
        };
        let me = NonNull::from(self.ticket);
        match st.tickets.iter().position(|t| t.0 == me) {
            Some(0) => out.extend_from_slice(&st.holders),
            Some(i) => {
                // SAFETY: queued tickets are alive (see `TicketRef`); read
                // under the mutex.
                out.push(unsafe { st.tickets[i - 1].0.as_ref() }.key);
            }
            // Granted (or withdrawn): not waiting on anyone.
            None => {}
        }
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
        let mut st = lock.lock_state_shielded();
        assert!(
            st.owners > 0,
            "upgrade of a read lock that is not held; owners = {}",
            st.owners
        );
        let timing = if st.owners == 1 && st.tickets.is_empty() {
            st.owners = -1;
            drop(st);
            timing
        } else {
            st.owners -= 1;
            let me = hooks::current_ids().0;
            if let Some(i) = st.holders.iter().position(|&h| h == me) {
                st.holders.swap_remove(i);
            }
            let waited = lock.wait_ticket(st, false, true);
            lock.record_wait(waited)
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
        let mut st = lock.lock_state_shielded();
        assert_eq!(
            st.owners, -1,
            "downgrade of a write lock that is not held; owners = {}",
            st.owners
        );
        st.owners = 1;
        lock.maybe_wake_one(st);
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
