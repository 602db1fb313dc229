//! A home's shutdown: unwind every coroutine homed here, then close.
//!
//! Runs on the owning thread, as a Runtime worker's last act or when a plain
//! thread that used coroutines exits. The procedure, step by step:
//!
//! 1. **Mark.** Every started coroutine registered here is marked cancelled
//!    (`cancel`, Release: pairs with the Acquire load of a waker that finds
//!    it already scheduled, see `core::wake_mark`). From then on each of them
//!    is unwound at its first *unshielded* suspension (see
//!    `coroutine::suspend_running`): its destructors run here, on its home
//!    thread.
//! 2. **Turn.** The loop keeps running as usual: bottom halves, hand-offs
//!    from other threads, the event loop's own sources (timers, through
//!    [`EventLoop::shutdown_turn`]), the ready list. Two things differ: a
//!    coroutine that never started is dropped unstarted when it comes up
//!    (its handle reports `JoinError::Cancelled`), and every resumed one
//!    unwinds.
//! 3. **Resume.** Each turn, every registered coroutine that is suspended
//!    at a cancellation point and not already scheduled is resumed, so that
//!    it unwinds now. The resume goes through the wake protocol (a claim of
//!    `scheduled`), so a coroutine whose wake is already in flight is left
//!    to that wake and never resumed twice. Coroutines suspended *shielded*
//!    — inside their own unwinding, waiting for a lock, a join, a sleep —
//!    are left to the wakes they wait for. Those typically come from other
//!    contexts going through the same procedure (a lock holder on another
//!    worker unwinds and hands the lock to a cancelled waiter here), which
//!    is why a context keeps serving its hand-off queue until its own
//!    coroutines are gone, instead of closing after one pass.
//! 4. **Done or out of time.** The drain ends when no started coroutine is
//!    left here, not counting orphans (suspended inside their own unwinding
//!    with nothing left that can resume them: leaked and counted when their
//!    last handle went), or at the deadline. Coroutines still suspended then
//!    are leaked — their stacks hold live frames that must not be skipped —
//!    counted in `pool::stats().leaked`, and returned to the caller to be
//!    reported.
//! 5. **Close.** `closed` is set, then a `SeqCst` fence, then everything
//!    still queued (hand-offs, bottom halves, the ready queue, timers) is
//!    dropped. A pusher does the mirror image (push, fence, check `closed`,
//!    drain itself), so a late hand-off is never stranded (see
//!    `Home::push_remote` and the close protocol in `mailbox`).

use std::panic::{AssertUnwindSafe, Location, catch_unwind};
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::{Duration, Instant};

use super::metrics::bump;
use super::{Owner, SuspendedInfo, drop_queued, drop_taken, report_contained_panic};
use crate::core::control::{self, CoRef};
use crate::core::{enter, transitions};

/// How long a shutdown waits for its coroutines to finish unwinding, unless
/// the Runtime was built with another
/// [`shutdown_timeout`](crate::Builder::shutdown_timeout); also what a
/// plain thread's exit waits.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// While draining, how often the home looks again without being woken (a
/// resumed coroutine may have suspended at a cancellation point again).
const DRAIN_RECHECK: Duration = Duration::from_millis(10);

/// What one turn of a shutdown found.
pub(crate) struct DrainTurn {
    /// Coroutines homed here still to unwind (orphans excluded).
    pub(crate) remaining: usize,
    /// Anything ran or was resumed.
    pub(crate) progress: bool,
}

impl Owner<'_> {
    /// The shutdown procedure of the module docs. Returns the coroutines
    /// that were still suspended at `deadline` (leaked). Calling it again
    /// once closed returns nothing.
    pub(crate) fn shut_down(self, deadline: Instant) -> Vec<SuspendedInfo> {
        let home = self.home;
        if home.is_closed() {
            return Vec::new();
        }
        self.begin_shutdown();
        loop {
            let turn = self.drain_turn();
            if turn.remaining == 0 && self.ready_is_empty() && !home.has_incoming() {
                break;
            }
            if turn.progress {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let until = deadline.min(now + DRAIN_RECHECK);
            match home.event_loop() {
                Some(l) => l.shutdown_wait(self, until),
                // No event loop to sleep in: a home created by the core
                // alone (raw coroutines on a plain thread).
                None => std::thread::park_timeout(until.saturating_duration_since(now)),
            }
        }
        self.end_shutdown()
    }

    /// Step 1's switch: from now on nothing new starts here.
    pub(crate) fn begin_shutdown(self) {
        self.home.draining.set(true);
    }

    /// Steps 2 and 3, once: a turn of the loop, then the cancellation pass.
    pub(crate) fn drain_turn(self) -> DrainTurn {
        // A notification only asks for a turn, which this is.
        self.take_notified();
        let event_loop = self.home.event_loop();
        let turn = catch_unwind(AssertUnwindSafe(|| {
            let mut progress = self.run_bhs();
            progress |= self.take_handoffs();
            if let Some(l) = event_loop {
                progress |= l.shutdown_turn(self);
            }
            progress |= self.run_ready();
            progress
        }));
        let ran = match turn {
            Ok(p) => p,
            Err(p) => {
                report_contained_panic(self.home, &*p);
                true
            }
        };
        let (remaining, resumed) = self.resume_cancelled();
        DrainTurn {
            remaining: if self.ready_is_empty() && !self.home.has_incoming() {
                remaining
            } else {
                remaining.max(1)
            },
            progress: ran || resumed,
        }
    }

    /// Steps 4 and 5: leaks what is left and closes the home.
    pub(crate) fn end_shutdown(self) -> Vec<SuspendedInfo> {
        let stuck = self.leak_stuck();
        self.close();
        stuck
    }

    /// Steps 1 and 3: marks every registered coroutine cancelled and
    /// resumes those suspended at a cancellation point. Returns how many
    /// coroutines homed here are left (orphans excluded) and whether any
    /// was resumed.
    fn resume_cancelled(self) -> (usize, bool) {
        // References are taken *before* anything runs: unwinding one
        // coroutine can finish and free another, so the raw snapshot may
        // not be dereferenced once coroutines have run.
        let snapshot = self.registry_snapshot();
        let mut remaining = 0;
        let mut live = Vec::with_capacity(snapshot.len());
        for p in snapshot {
            // SAFETY: a registered block is never freed while registered,
            // and nothing has run since the snapshot was taken.
            match unsafe { CoRef::try_upgrade(p) } {
                Some(co) => live.push(co),
                None => {
                    // Its last handle is being dropped: unless it is an
                    // orphan, its cancellation is on its way here.
                    // SAFETY: registered, hence not freed (above).
                    if !unsafe { (*p).orphaned.load(Relaxed) } {
                        remaining += 1;
                    }
                }
            }
        }
        let mut resumed = false;
        for co in live {
            if !ptr::eq(co.home.load(Acquire), self.home) || co.orphaned.load(Relaxed) {
                // A stale entry of a coroutine that migrated away, or one
                // that nothing can resume.
                continue;
            }
            remaining += 1;
            // `parked_shielded` is an executing-thread field, read only once
            // the coroutine is seen suspended: we are its home thread.
            let shielded = || co.parked_shielded.get();
            if transitions::shutdown_claim(co.atomics(), shielded, Location::caller()) {
                control::clear_scheduled(&co);
                resumed = true;
                if let Err(p) = catch_unwind(AssertUnwindSafe(|| enter::enter_chain(&co))) {
                    report_contained_panic(self.home, &*p);
                }
            }
        }
        (remaining, resumed)
    }

    /// Step 4, out of time: leaks what is still suspended here.
    fn leak_stuck(self) -> Vec<SuspendedInfo> {
        let mut stuck = Vec::new();
        for p in self.registry_snapshot() {
            // SAFETY: registered, hence not freed.
            let co = unsafe { &*p };
            if ptr::eq(co.home.load(Acquire), self.home) && !co.orphaned.swap(true, Relaxed) {
                crate::core::stacks::note_leaked();
                bump(&self.home.counters.coroutines_leaked, 1);
                stuck.push(self.describe(co));
            }
        }
        stuck
    }

    /// Step 5: closes the home and drops whatever is still queued.
    fn close(self) {
        let (handoffs, bhs) = self.home.mailbox.close();
        drop(bhs);
        drop_taken(handoffs);
        let mut queued = self.take_ready();
        while let Some(co) = queued.pop_front() {
            control::clear_scheduled(&co);
            drop_queued(co);
        }
        if let Some(l) = self.home.event_loop() {
            l.close(self);
        }
    }
}
