//! The production [`Parker`]: a waiter is the running coroutine; parking is
//! `suspend()`, unparking is `Coroutine::wake` (QEMU's `aio_co_wake`).

use coscheduler::Coroutine;

use super::raw::Parker;

/// Suspends and wakes coroutines for the CoMutex protocol.
pub(crate) struct CoroutineParker;

impl Parker for CoroutineParker {
    type Handle = Coroutine;

    #[inline]
    fn handle() -> Coroutine {
        match coscheduler::current() {
            Some(co) => co,
            None => unreachable!("CoMutex callers check for a coroutine first"),
        }
    }

    #[inline]
    fn park() {
        coscheduler::suspend();
    }

    /// Same context inside a coroutine: the waiter runs right after the
    /// caller suspends (QEMU's wakeup list). Same context outside: entered
    /// now. Another context: handed to its home thread, which is legal even
    /// if the waiter has not suspended yet.
    #[inline]
    fn unpark(handle: Coroutine) {
        handle.wake();
    }

    /// The statistics clock (asked for only by timed waiters).
    #[inline]
    fn stamp() -> u64 {
        crate::stats::now()
    }

    #[inline]
    fn context() -> usize {
        coscheduler::raw::current_context_id()
    }

    /// The statistics clock (the time-stamp counter where there is one).
    #[inline]
    fn now() -> u64 {
        crate::stats::now()
    }
}
