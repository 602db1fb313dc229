//! Pieces every workload shares: pinning, a completion latch the benchmark thread blocks
//! on, the two-worker runtime of a row, and error helpers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// The runtime of the row being measured: built by its first sample (the untimed warm-up),
/// shared by its timed samples, shut down by [`finish_row`].
///
/// One runtime per row, not per sample, so that the samples see what a long-running
/// program sees: started workers and a warm stack pool. A runtime shut down after each
/// sample would give its stacks back (`Runtime::shutdown` trims the pool to its maximum),
/// and W7's 10,000 sleepers would then time thousands of `mmap`s per sample instead of
/// timers.
static ROW_RUNTIME: Mutex<Option<RowRuntime>> = Mutex::new(None);

struct RowRuntime {
    row: &'static str,
    pinned: bool,
    runtime: Arc<Runtime>,
}

/// The [`WORKERS`]-worker runtime of `row`, pinned or not, building it on first use.
pub(super) fn row_runtime(row: &'static str, pinned: bool) -> Result<Arc<Runtime>, Error> {
    let mut slot = ROW_RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(current) = slot.as_ref().filter(|c| c.row == row && c.pinned == pinned) {
        return Ok(current.runtime.clone());
    }
    // A row that did not finish cleanly (an error ended it) left its runtime behind.
    if let Some(stale) = slot.take() {
        shut_down(stale.runtime);
    }
    let runtime = Runtime::builder()
        .threads(WORKERS)
        .pin_threads(pinned)
        .build()
        .map_err(|e| workload_error(row, &format!("building a {WORKERS}-worker runtime: {e}")))?;
    let runtime = Arc::new(runtime);
    *slot = Some(RowRuntime {
        row,
        pinned,
        runtime: runtime.clone(),
    });
    Ok(runtime)
}

/// Shuts down the runtime of the row just measured, if it had one; [`crate::run`] calls it
/// after every time-tier row.
pub fn finish_row() {
    let stale = ROW_RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(stale) = stale {
        shut_down(stale.runtime);
    }
}

fn shut_down(runtime: Arc<Runtime>) {
    // Samples drop their clones before returning; if one is still around (a sample
    // unwound), the last clone's drop shuts the runtime down instead.
    if let Ok(runtime) = Arc::try_unwrap(runtime) {
        runtime.shutdown();
    }
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
