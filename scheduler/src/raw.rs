//! Building blocks for synchronization primitives (the `coprimitives` crate
//! and anyone writing their own).
//!
//! These expose scheduler state that QEMU's primitives read directly:
//! `co->ctx` for CoMutex's spinning heuristic, `locks_held` for the
//! termination assertion, and a description of what a coroutine waits on for
//! `Runtime::dump`. They are cheap: no allocation, no atomic read-modify-write.

use std::sync::atomic::Ordering::{Acquire, Relaxed};

use crate::core::coroutine::Coroutine;
use crate::core::tls;

/// An identifier of the calling thread's context, 0 if it has none. Equal
/// values mean the same context (QEMU compares `AioContext *`).
#[inline]
pub fn current_context_id() -> usize {
    tls::home() as usize
}

/// The running coroutine's identity and [`current_context_id`], from one
/// thread-local read: `(coroutine, context)`, where `coroutine` is 0 outside a
/// coroutine and otherwise a value unique among live coroutines (the address
/// of its control block). A lock records it as its holder (QEMU's
/// `m->holder`) without taking a reference, which `current()` would (an
/// atomic increment and decrement on every uncontended lock).
///
/// Added for `coprimitives`' CoMutex fast path.
#[inline]
pub fn current_ids() -> (usize, usize) {
    let ts = tls::thread_state();
    // SAFETY: this thread's state, read on this thread before any switch.
    unsafe { ((*ts).current.get() as usize, (*ts).home.get() as usize) }
}

/// The identifier (as [`current_context_id`] returns it) of a coroutine's
/// home context, 0 before its first entry.
#[inline]
pub fn context_id_of(co: &Coroutine) -> usize {
    co.inner.home.load(Acquire) as usize
}

/// This thread's context's switch count
/// ([`ContextMetrics::switches`](crate::ContextMetrics::switches)), 0 on a
/// thread without a context. It moves whenever a coroutine of this thread
/// suspends or ends, so a coroutine that reads the same value twice has run
/// without suspending in between (what `coprimitives::maybe_yield` uses to
/// know when its time slice began).
#[inline]
pub fn switch_count() -> u64 {
    let home = tls::home();
    // SAFETY: the thread's home stays alive while installed, and is read on
    // this thread before any switch.
    unsafe { home.as_ref() }.map_or(0, |h| h.counters.switches.load(Relaxed))
}

/// QEMU's `locks_held++`: the current coroutine took a lock. A coroutine that
/// finishes with a non-zero count makes its enterer panic.
#[inline]
pub fn lock_acquired() {
    let co = tls::current();
    // SAFETY: the running coroutine is alive; `locks_held` is an
    // executing-thread field and we are on it.
    if let Some(co) = unsafe { co.as_ref() } {
        co.locks_held.set(co.locks_held.get() + 1);
    }
}

/// QEMU's `locks_held--`.
#[inline]
pub fn lock_released() {
    let co = tls::current();
    // SAFETY: as in `lock_acquired`.
    if let Some(co) = unsafe { co.as_ref() } {
        co.locks_held.set(co.locks_held.get().saturating_sub(1));
    }
}

/// Locks the current coroutine holds (by the primitives' count).
pub fn locks_held() -> u32 {
    let co = tls::current();
    // SAFETY: as in `lock_acquired`.
    unsafe { co.as_ref() }.map_or(0, |co| co.locks_held.get())
}

pub use crate::core::coroutine::{clear_wait_reason, set_wait_reason};
pub use crate::core::unwinding::rethrow;

/// Runs `f` with every suspension of the current coroutine inside it
/// *shielded*: not a cancellation point. A cancelled coroutine (its last
/// handle dropped, its runtime shutting down) is normally unwound at its
/// next suspension; inside a shield it is only resumed by a real wake, and
/// the unwind waits for the first unshielded suspension after the shield.
///
/// For waits that must complete even when the coroutine is being cancelled,
/// typically inside destructors: a lock's clean-up that must take an
/// internal lock, a hand-off that must be acknowledged. Outside a coroutine
/// it just runs `f`.
///
/// ```
/// let co = coscheduler::Coroutine::new(|| {
///     coscheduler::raw::shield(coscheduler::suspend);
/// });
/// co.enter();
/// co.enter();
/// assert!(co.is_finished());
/// ```
pub fn shield<R>(f: impl FnOnce() -> R) -> R {
    struct Unshield(*const crate::core::control::CoInner);
    impl Drop for Unshield {
        fn drop(&mut self) {
            // SAFETY: the coroutine that entered the shield is the one
            // running this drop (a shield does not outlive its frame), and
            // `shield` is its executing-thread field.
            if let Some(co) = unsafe { self.0.as_ref() } {
                co.shields.set(co.shields.get() - 1);
            }
        }
    }
    let co = tls::current();
    // SAFETY: the running coroutine is alive; executing-thread field.
    if let Some(co) = unsafe { co.as_ref() } {
        co.shields.set(co.shields.get() + 1);
    }
    let _unshield = Unshield(co);
    f()
}
