//! Pieces every workload shares: pinning, a completion latch the benchmark thread blocks
//! on, the two-worker runtime, and error helpers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use coscheduler::Runtime;

use crate::error::Error;

/// How long a workload may go without finishing before it is reported as stuck, rather
/// than left to hang the suite (and CI) forever.
pub(super) const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Worker threads of every coscheduler workload: WORKLOADS.md measures on two.
pub(super) const WORKERS: usize = 2;

/// Pins the calling thread to the `index`-th usable core, if there is one. Pinning keeps the
/// two sides on distinct cores, as W3 and W4 prescribe; without it (one core, or affinity
/// unavailable) the workload still runs, only noisier.
pub(super) fn pin(index: usize) {
    if let Some(core) = core_affinity::get_core_ids().and_then(|ids| ids.get(index).copied()) {
        core_affinity::set_for_current(core);
    }
}

/// A fresh runtime of [`WORKERS`] workers, pinned or not. Each sample builds its own, so
/// no sample inherits another's queues, timers or sleeping workers.
pub(super) fn runtime(name: &str, pinned: bool) -> Result<Runtime, Error> {
    Runtime::builder()
        .threads(WORKERS)
        .pin_threads(pinned)
        .build()
        .map_err(|e| workload_error(name, &format!("building a {WORKERS}-worker runtime: {e}")))
}

/// `d` in whole nanoseconds, saturating.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The error of a workload that broke its own invariant.
pub(super) fn workload_error(name: &str, detail: &str) -> Error {
    Error::Workload {
        name: name.to_owned(),
        detail: detail.to_owned(),
    }
}

/// Counts completions down to zero and unparks the thread that created it on the last one:
/// the benchmark thread blocks instead of spinning, so it does not compete with the two
/// workers for two cores, and a coroutine pays one atomic decrement to report.
pub(super) struct Countdown {
    remaining: AtomicU64,
    waiter: Thread,
}

impl Countdown {
    /// A latch for `n` completions, waited on by the calling thread.
    pub(super) fn new(n: u64) -> Countdown {
        Countdown {
            remaining: AtomicU64::new(n),
            waiter: thread::current(),
        }
    }

    /// Reports one completion.
    #[inline]
    pub(super) fn count_one(&self) {
        // Release: with the decrements before it (a release sequence), pairs with the
        // Acquire load in `wait`, so whatever a finished party wrote is visible there.
        if self.remaining.fetch_sub(1, Ordering::Release) == 1 {
            self.waiter.unpark();
        }
    }

    /// Blocks the creating thread until every completion is in; fails after
    /// [`STUCK_AFTER`], naming `name` and how many are missing.
    pub(super) fn wait(&self, name: &str) -> Result<(), Error> {
        let deadline = Instant::now() + STUCK_AFTER;
        loop {
            // Acquire: pairs with the Release decrements in `count_one`.
            let left = self.remaining.load(Ordering::Acquire);
            if left == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                let detail = format!("{left} completions still missing after {STUCK_AFTER:?}");
                return Err(workload_error(name, &detail));
            }
            // Wakes early on the last completion's unpark (or spuriously: loop).
            thread::park_timeout(deadline - now);
        }
    }
}
