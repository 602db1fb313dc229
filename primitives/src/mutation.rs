//! Deliberate breakages of the primitives, for the tests that show a
//! checker (the deterministic simulation, `coscheduler::sim`) catches the
//! bug they plant. **Test-only**: a program never calls these; each switch
//! is per thread and off unless a test turns it on.

use std::cell::Cell;

thread_local! {
    /// [`skip_unlock_handoff`]'s switch.
    static SKIP_UNLOCK_HANDOFF: Cell<bool> = const { Cell::new(false) };
}

/// **Test-only**: while `skip` is true on the calling thread, a contended
/// `CoMutex` unlock (one that finds other lockers arrived) leaves without
/// its hand-off: it neither passes the lock to the oldest waiter and wakes
/// it nor offers it to a locker on its way, so the queued waiters are never
/// woken and the lock is never free again (a lost wake-up). The
/// uncontended unlock never reads the switch.
///
/// It exists so that a test can show the simulation catches a CoMutex whose
/// unlock skips the hand-off, on the real CoMutex code; see
/// `primitives/tests/sim_finds_bugs.rs`.
pub fn skip_unlock_handoff(skip: bool) {
    SKIP_UNLOCK_HANDOFF.with(|s| s.set(skip));
}

/// Whether the calling thread's contended unlocks skip their hand-off.
pub(crate) fn unlock_handoff_skipped() -> bool {
    SKIP_UNLOCK_HANDOFF.with(Cell::get)
}
