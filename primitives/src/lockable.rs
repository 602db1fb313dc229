//! QEMU's `QemuLockable` (`include/qemu/lockable.h`): any lock that can be
//! taken and released without a guard, so that [`CoQueue::wait_with`] can
//! drop it across a wait and take it back.
//!
//! | QEMU | here |
//! |---|---|
//! | `QemuLockable`, `QEMU_MAKE_LOCKABLE(x)` | [`Lockable`], `&x as &dyn Lockable` |
//! | `QEMU_MAKE_LOCKABLE(NULL)` | `None::<&dyn Lockable>` |
//! | `qemu_lockable_lock` / `qemu_lockable_unlock` | [`Lockable::lock`] / [`Lockable::unlock`] |
//! | `QEMU_LOCK_GUARD(x)`, `WITH_QEMU_LOCK_GUARD(x) { }` | [`lock_guard`] (RAII) |
//! | `qemu_lockable_auto_unlock` on a NULL lockable | [`lock_guard_opt`] |
//! | `CoMutex` | [`CoMutex`](crate::CoMutex) |
//! | `QemuSpin` | [`SpinLock`] |
//! | (no lock, single context) | [`NoLock`] |
//! | `QemuMutex`, `QemuRecMutex` | not provided: see below |
//!
//! # Why not `std::sync::Mutex<()>`
//!
//! std's mutex can only be released by dropping the `MutexGuard` that locking
//! returned; the guard borrows the mutex and is `!Send`. A `Lockable` impl
//! would have to park that guard in a side table keyed by the mutex's
//! address between `lock` and `unlock`, with its lifetime erased — unsafe
//! code whose soundness would rest on every caller pairing the calls on one
//! thread. Worse, a coroutine that re-locks a *blocking* mutex after its
//! wait blocks its whole thread: if the holder is another coroutine of the
//! same thread (suspended while holding it), the thread deadlocks. So there
//! is no impl; use [`CoMutex`](crate::CoMutex) (suspends instead of
//! blocking) or [`SpinLock`] (never held across a suspension), or implement
//! [`Lockable`] for a raw lock with a separate unlock (such as
//! `parking_lot::RawMutex`), accepting the blocking caveat.

// Under `--cfg loom` only the model tests use this module.
#![cfg_attr(loom, allow(dead_code))]

use std::marker::PhantomData;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::{AtomicBool, spin_loop};

/// A lock that can be taken and released without a guard (QEMU's
/// `QemuLockable`).
///
/// # Safety
///
/// Implementers guarantee:
///
/// 1. `lock` returns only when the caller holds the lock exclusively, with
///    Acquire ordering against the previous holder's `unlock` — or, for a
///    lock that protects nothing (like [`NoLock`]), it does nothing and
///    `unlock` does nothing either.
/// 2. `unlock` releases with Release ordering.
/// 3. Safe code calls `unlock` on the caller's behalf after checking
///    [`assert_held`](Lockable::assert_held) (that is what
///    [`CoQueue::wait_with`](crate::CoQueue::wait_with) does). So if an
///    `unlock` by someone who does not hold the lock could break the lock's
///    guarantees, `assert_held` must panic in that situation.
///
/// Callers of `unlock` guarantee that the calling coroutine (or thread, for
/// thread locks) holds the lock, taken by `lock` and not released since.
pub unsafe trait Lockable {
    /// Takes the lock (`qemu_lockable_lock`).
    fn lock(&self);

    /// Releases the lock (`qemu_lockable_unlock`).
    ///
    /// # Safety
    /// The caller holds the lock (see the trait's `# Safety`).
    unsafe fn unlock(&self);

    /// Panics unless the caller holds the lock, where the lock can tell.
    /// Called by safe APIs before they `unlock` on the caller's behalf. The
    /// default does nothing, for locks whose `unlock` is harmless when not
    /// held.
    #[track_caller]
    fn assert_held(&self) {}
}

// SAFETY: forwards to `L`, which upholds the contract.
unsafe impl<L: Lockable + ?Sized> Lockable for &L {
    fn lock(&self) {
        (**self).lock();
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract.
        unsafe { (**self).unlock() };
    }
    fn assert_held(&self) {
        (**self).assert_held();
    }
}

/// No lock at all (`QEMU_MAKE_LOCKABLE(NULL)`), for data touched by one
/// context only: [`CoQueue::wait_with`](crate::CoQueue::wait_with) then just
/// waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoLock;

// SAFETY: protects nothing: both methods do nothing (clause 1's exception).
unsafe impl Lockable for NoLock {
    #[inline]
    fn lock(&self) {}
    #[inline]
    unsafe fn unlock(&self) {}
}

/// Locks `lock` until the returned guard is dropped (`QEMU_LOCK_GUARD`,
/// `WITH_QEMU_LOCK_GUARD`).
pub fn lock_guard<L: Lockable + ?Sized>(lock: &L) -> LockableGuard<'_, L> {
    lock.lock();
    LockableGuard {
        lock,
        _not_send: PhantomData,
    }
}

/// Locks `lock` if there is one (`qemu_lockable_auto_lock` /
/// `auto_unlock` with a possibly-NULL lockable).
pub fn lock_guard_opt<L: Lockable + ?Sized>(lock: Option<&L>) -> Option<LockableGuard<'_, L>> {
    lock.map(lock_guard)
}

/// Holds a [`Lockable`] until dropped. `!Send`: released by whoever locked.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockableGuard<'a, L: Lockable + ?Sized> {
    lock: &'a L,
    _not_send: PhantomData<*const ()>,
}

impl<L: Lockable + ?Sized> Drop for LockableGuard<'_, L> {
    fn drop(&mut self) {
        // SAFETY: this guard was made by locking, by the current holder
        // (guards are `!Send`).
        unsafe { self.lock.unlock() };
    }
}

impl<L: Lockable + ?Sized> std::fmt::Debug for LockableGuard<'_, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockableGuard")
    }
}

/// The spinning core shared by [`SpinLock`] and the crate's internal
/// [`SpinMutex`]: test-and-test-and-set.
#[derive(Debug)]
pub(crate) struct RawSpin {
    locked: AtomicBool,
}

/// Spins before each `yield_now` once the holder seems descheduled.
#[cfg(not(loom))]
const SPINS_BEFORE_YIELD: u32 = 100;

impl RawSpin {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> RawSpin {
        RawSpin {
            locked: AtomicBool::new(false),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> RawSpin {
        RawSpin {
            locked: AtomicBool::new(false),
        }
    }

    #[inline]
    pub(crate) fn try_lock(&self) -> bool {
        // Acquire: pairs with the Release store in `unlock`.
        self.locked
            .compare_exchange(false, true, Acquire, Relaxed)
            .is_ok()
    }

    #[inline]
    pub(crate) fn lock(&self) {
        if !self.try_lock() {
            self.lock_slow();
        }
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            // Relaxed: only a hint to retry the Acquire CAS.
            while self.locked.load(Relaxed) {
                spins = spins.wrapping_add(1);
                #[cfg(not(loom))]
                if spins % SPINS_BEFORE_YIELD == 0 {
                    // The holder's thread may have been preempted (our
                    // machines have few cores): let it run.
                    std::thread::yield_now();
                    continue;
                }
                spin_loop();
            }
            if self.try_lock() {
                return;
            }
        }
    }

    /// # Safety
    /// The caller holds the lock.
    #[inline]
    pub(crate) unsafe fn unlock(&self) {
        // Release: pairs with the Acquire CAS in `try_lock`.
        self.locked.store(false, Release);
    }

    #[inline]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_locked(&self) -> bool {
        self.locked.load(Relaxed)
    }
}

/// A spin lock guarding a value, for short critical sections that never
/// suspend (the internal list of a [`CoQueue`](crate::CoQueue)).
pub(crate) struct SpinMutex<T> {
    raw: RawSpin,
    value: crate::sync::UnsafeCell<T>,
}

// SAFETY: gives `&mut T` to one thread at a time (mutual exclusion by
// `RawSpin`), moving access to `T` between threads: needs `T: Send`.
unsafe impl<T: Send> Sync for SpinMutex<T> {}
// SAFETY: owns a `T`.
unsafe impl<T: Send> Send for SpinMutex<T> {}

impl<T> SpinMutex<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> SpinMutex<T> {
        SpinMutex {
            raw: RawSpin::new(),
            value: crate::sync::UnsafeCell::new(value),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(value: T) -> SpinMutex<T> {
        SpinMutex {
            raw: RawSpin::new(),
            value: crate::sync::UnsafeCell::new(value),
        }
    }

    /// Runs `f` with the value locked. `f` must not suspend.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        struct Unlock<'a>(&'a RawSpin);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                // SAFETY: locked just below, released once here.
                unsafe { self.0.unlock() };
            }
        }
        self.raw.lock();
        let _unlock = Unlock(&self.raw);
        // SAFETY: we hold the spin lock, so this is the only access.
        self.value.with_mut(|v| f(unsafe { &mut *v }))
    }
}

/// A spin lock (QEMU's `QemuSpin`), for critical sections that are short and
/// never suspend. Waiting spins the thread (yielding it to the OS after a
/// while); prefer [`CoMutex`](crate::CoMutex) for anything longer.
///
/// It records its holder so that [`Lockable::assert_held`] (and hence
/// [`CoQueue::wait_with`](crate::CoQueue::wait_with)) can refuse to release a
/// lock the caller does not hold.
///
/// ```
/// use coprimitives::SpinLock;
/// let l = SpinLock::new();
/// {
///     let _g = l.guard();
///     assert!(l.is_locked());
/// }
/// assert!(!l.is_locked());
/// ```
#[cfg(not(loom))]
#[derive(Debug)]
pub struct SpinLock {
    raw: RawSpin,
    /// Holder identity (coroutine or thread token); Relaxed, compared by the
    /// holder itself only.
    owner: std::sync::atomic::AtomicUsize,
}

#[cfg(not(loom))]
impl SpinLock {
    /// An unlocked spin lock (`qemu_spin_init`).
    pub const fn new() -> SpinLock {
        SpinLock {
            raw: RawSpin::new(),
            owner: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Takes the lock, spinning (`qemu_spin_lock`).
    pub fn lock(&self) {
        self.raw.lock();
        self.owner.store(owner_token(), Relaxed);
    }

    /// Takes the lock if free (`qemu_spin_trylock`, with the opposite
    /// return convention).
    pub fn try_lock(&self) -> bool {
        let ok = self.raw.try_lock();
        if ok {
            self.owner.store(owner_token(), Relaxed);
        }
        ok
    }

    /// Releases the lock (`qemu_spin_unlock`).
    ///
    /// # Safety
    /// The caller holds the lock.
    pub unsafe fn unlock(&self) {
        self.owner.store(0, Relaxed);
        // SAFETY: forwarded contract.
        unsafe { self.raw.unlock() };
    }

    /// True while held (`qemu_spin_locked`).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// True if the calling coroutine (or thread, outside coroutines) holds
    /// the lock.
    pub fn is_locked_by_current(&self) -> bool {
        self.is_locked() && self.owner.load(Relaxed) == owner_token()
    }

    /// Locks until the guard is dropped.
    pub fn guard(&self) -> LockableGuard<'_, SpinLock> {
        lock_guard(self)
    }
}

#[cfg(not(loom))]
impl Default for SpinLock {
    fn default() -> SpinLock {
        SpinLock::new()
    }
}

/// The calling coroutine's identity, or (outside coroutines) an odd
/// thread-local address that no coroutine identity can equal.
#[cfg(not(loom))]
fn owner_token() -> usize {
    let (co, _) = coscheduler::raw::current_ids();
    if co != 0 {
        return co;
    }
    thread_local!(static TOKEN: u8 = const { 0 });
    TOKEN.with(|t| t as *const u8 as usize | 1)
}

// SAFETY: `lock` returns holding the spin lock exclusively (Acquire CAS),
// `unlock` releases it (Release store), and `assert_held` panics unless the
// caller is the recorded holder.
#[cfg(not(loom))]
unsafe impl Lockable for SpinLock {
    fn lock(&self) {
        SpinLock::lock(self);
    }
    unsafe fn unlock(&self) {
        // SAFETY: forwarded contract.
        unsafe { SpinLock::unlock(self) };
    }
    #[track_caller]
    fn assert_held(&self) {
        assert!(
            self.is_locked_by_current(),
            "SpinLock is not held by the current coroutine or thread"
        );
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Two threads increment under the spin lock: loom's cell checking
    /// proves exclusion; the total proves no increment is lost.
    #[test]
    fn loom_spin_mutex_excludes() {
        loom::model(|| {
            let m = Arc::new(SpinMutex::new(0usize));
            let t = {
                let m = m.clone();
                thread::spawn(move || m.with(|v| *v += 1))
            };
            m.with(|v| *v += 1);
            t.join().unwrap();
            assert_eq!(m.with(|v| *v), 2, "each increment exactly once");
        });
    }
}
