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

    /// The statistics clock (asked for only by timed waiters). Real time
    /// even under a simulation: it feeds statistics, never a decision.
    #[inline]
    fn stamp() -> u64 {
        crate::stats::now()
    }

    #[inline]
    fn context() -> usize {
        coscheduler::raw::current_context_id()
    }

    /// The statistics clock (the time-stamp counter where there is one);
    /// under a simulation its virtual clock, so that the eventual-fairness
    /// bound is decided by simulated time and a seed replays the same way.
    /// Read only on the contended unlock path (`queue.rs`), where the
    /// thread-local test of [`coscheduler::sim::is_active`] is negligible.
    /// (0 is not special to the queue: `arrived` is only subtracted from.)
    #[inline]
    fn now() -> u64 {
        if coscheduler::sim::is_active() {
            return virtual_now();
        }
        crate::stats::now()
    }

    /// Under a simulation, the choice the hand-over policy leaves open is
    /// the simulation's ([`coscheduler::sim::choose`]); outside one it is
    /// 0, the policy's default.
    #[inline]
    fn choose(n: usize) -> usize {
        coscheduler::sim::choose(n)
    }

    /// No busy-waiting under a simulation: it runs one coroutine at a time
    /// on one thread, so a holder on another context cannot run, let alone
    /// unlock, while we spin. Asked only after the uncontended CAS failed.
    #[inline]
    fn may_spin() -> bool {
        !coscheduler::sim::is_active()
    }

    /// A test's switch, read only here on the contended unlock path.
    #[inline]
    fn skip_unlock_handoff() -> bool {
        crate::mutation::unlock_handoff_skipped()
    }
}

/// The simulation's virtual time in nanoseconds.
#[cold]
fn virtual_now() -> u64 {
    u64::try_from(coscheduler::sim::now().as_nanos()).unwrap_or(u64::MAX)
}
