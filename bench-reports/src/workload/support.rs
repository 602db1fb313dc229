//! Pieces every workload shares: pinning, a completion latch the benchmark thread blocks
//! on, the two-worker runtimes of a group's rows, and error helpers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use coscheduler::Runtime;

use crate::error::Error;

/// How long a workload may go without finishing before it is reported as stuck, rather
/// than left to hang the suite (and CI) forever.
pub(super) const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Worker threads of every coscheduler workload: docs/BENCHMARKS.md measures on two.
pub(super) const WORKERS: usize = 2;

/// Pins the calling thread to the `index`-th usable core, if there is one. Pinning keeps the
/// two sides on distinct cores, as W3 and W4 prescribe; without it (one core, or affinity
/// unavailable) the workload still runs, only noisier.
pub(super) fn pin(index: usize) {
    if let Some(core) = core_affinity::get_core_ids().and_then(|ids| ids.get(index).copied()) {
        core_affinity::set_for_current(core);
    }
}

/// The runtimes of the rows being measured: each built by its row's first sample (the
/// untimed warm-up), shared by its timed samples, and shut down by [`finish_group`] once
/// the row's group is done. The rows of a group interleave their samples, so every runtime
/// of the group is up at once; those not being sampled sit idle with parked workers.
///
/// One runtime per row, not per sample, so that the samples see what a long-running
/// program sees: started workers and a warm stack pool. A runtime shut down after each
/// sample would give its stacks back (`Runtime::shutdown` trims the pool to its maximum),
/// and W7's 10,000 sleepers would then time thousands of `mmap`s per sample instead of
/// timers.
static ROW_RUNTIMES: Mutex<Vec<RowRuntime>> = Mutex::new(Vec::new());

struct RowRuntime {
    row: &'static str,
    runtime: AnyRuntime,
}

enum AnyRuntime {
    Coscheduler(Arc<Runtime>),
    Tokio(Arc<tokio::runtime::Runtime>),
}

/// How a row's coscheduler runtime is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Placement {
    /// `Runtime::builder().threads(2)` and nothing else: what a user gets.
    Defaults,
    /// Workers pinned to cores 0 and 1 whatever the default, for a workload whose
    /// definition prescribes it (W3).
    Pinned,
}

/// `cobench run --pin-threads`: the pinning of the [`Placement::Defaults`] rows, or `None`
/// for the runtime's default.
static PIN_OVERRIDE: Mutex<Option<bool>> = Mutex::new(None);

/// Sets (or with `None` clears) the pinning of the [`Placement::Defaults`] rows built from
/// now on.
pub fn override_pinning(pin: Option<bool>) {
    *PIN_OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()) = pin;
}

/// The [`WORKERS`]-worker coscheduler runtime of `row`, building it on first use.
pub(super) fn row_runtime(row: &'static str, placement: Placement) -> Result<Arc<Runtime>, Error> {
    let mut slots = ROW_RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
    for slot in slots.iter().filter(|s| s.row == row) {
        if let AnyRuntime::Coscheduler(rt) = &slot.runtime {
            return Ok(rt.clone());
        }
    }
    let mut builder = Runtime::builder().threads(WORKERS);
    let pin = match placement {
        Placement::Pinned => Some(true),
        Placement::Defaults => *PIN_OVERRIDE.lock().unwrap_or_else(|e| e.into_inner()),
    };
    if let Some(pin) = pin {
        builder = builder.pin_threads(pin);
    }
    let runtime = builder
        .build()
        .map_err(|e| workload_error(row, &format!("building a {WORKERS}-worker runtime: {e}")))?;
    let runtime = Arc::new(runtime);
    slots.push(RowRuntime {
        row,
        runtime: AnyRuntime::Coscheduler(runtime.clone()),
    });
    Ok(runtime)
}

/// The tokio runtime of `row`, building it on first use: `new_multi_thread()` with
/// [`WORKERS`] workers and every driver enabled, tokio's own defaults otherwise (unpinned).
pub(super) fn row_tokio(row: &'static str) -> Result<Arc<tokio::runtime::Runtime>, Error> {
    let mut slots = ROW_RUNTIMES.lock().unwrap_or_else(|e| e.into_inner());
    for slot in slots.iter().filter(|s| s.row == row) {
        if let AnyRuntime::Tokio(rt) = &slot.runtime {
            return Ok(rt.clone());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .map_err(|e| workload_error(row, &format!("building a tokio runtime: {e}")))?;
    let runtime = Arc::new(runtime);
    slots.push(RowRuntime {
        row,
        runtime: AnyRuntime::Tokio(runtime.clone()),
    });
    Ok(runtime)
}

/// Shuts down the runtimes of the group just measured; [`crate::run`] calls it after every
/// group of the time tier, and before reporting a group's error.
pub fn finish_group() {
    let stale = std::mem::take(&mut *ROW_RUNTIMES.lock().unwrap_or_else(|e| e.into_inner()));
    for slot in stale {
        shut_down(slot.runtime);
    }
}

/// How long a tokio runtime's blocked tasks may hold up its shutdown. Every workload's
/// tasks end with their sample; only a broken sample leaves one behind.
const TOKIO_SHUTDOWN: Duration = Duration::from_secs(5);

fn shut_down(runtime: AnyRuntime) {
    // Samples drop their clones before returning; if one is still around (a sample
    // unwound), the last clone's drop shuts the runtime down instead.
    match runtime {
        AnyRuntime::Coscheduler(rt) => {
            if let Ok(rt) = Arc::try_unwrap(rt) {
                rt.shutdown();
            }
        }
        AnyRuntime::Tokio(rt) => {
            if let Ok(rt) = Arc::try_unwrap(rt) {
                rt.shutdown_timeout(TOKIO_SHUTDOWN);
            }
        }
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
