//! W7: many coroutines sleeping 1 ms at a time with `co_sleep`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use coprimitives::co_sleep;

use super::reference::{SLEEP, SLEEPS};
use super::support::{Countdown, nanos, row_runtime, workload_error};
use crate::error::Error;
use crate::timed::Latencies;

/// W7 at WORKLOADS.md's size: `ops` (10,000) coroutines.
pub(super) fn timers(ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    sleepers("w7_timers", ops, latencies)
}

/// W7's timer-precision companion: `ops` (100) coroutines, the same count as the reference's
/// threads, so that the ratio compares the same workload on coroutines and on threads.
pub(super) fn timer_precision(ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    sleepers("w7_timer_precision", ops, latencies)
}

/// `ops` coroutines spawned with `Runtime::spawn` on the row's pinned two-worker runtime,
/// each sleeping [`SLEEPS`] × [`SLEEP`] with `co_sleep`. Returns the wall time from the
/// first spawn until the last coroutine finished, in ms, and records every sleep's
/// oversleep (time asleep beyond 1 ms) in ns. A sleep that ends before its 1 ms fails the
/// sample: `co_sleep` promises never to.
///
/// Oversleeps go into a preallocated slot per sleep rather than a shared histogram, so
/// recording them adds no lock and no contention to the workload; the benchmark thread
/// records them after the run.
fn sleepers(name: &'static str, ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    let slots = usize::try_from(ops * u64::from(SLEEPS))
        .map_err(|_| workload_error(name, &format!("{ops} coroutines are too many")))?;
    let oversleeps: Arc<[AtomicU64]> = (0..slots).map(|_| AtomicU64::new(0)).collect();
    let rt = row_runtime(name, true)?;
    let done = Arc::new(Countdown::new(ops));
    let early = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    for i in 0..slots / SLEEPS as usize {
        let (oversleeps, done, early) = (oversleeps.clone(), done.clone(), early.clone());
        drop(rt.spawn(move || {
            let mine = &oversleeps[i * SLEEPS as usize..(i + 1) * SLEEPS as usize];
            for slot in mine {
                let t = Instant::now();
                co_sleep(SLEEP);
                let slept = t.elapsed();
                if slept < SLEEP {
                    early.fetch_add(1, Ordering::Relaxed);
                }
                // Relaxed, here and above: published by the Release decrement in
                // `count_one` below.
                slot.store(nanos(slept.saturating_sub(SLEEP)), Ordering::Relaxed);
            }
            done.count_one();
        }));
    }
    done.wait(name)?;
    let elapsed = begin.elapsed();
    drop(rt);
    let early = early.load(Ordering::Relaxed);
    if early > 0 {
        let detail = format!("{early} sleeps of {SLEEP:?} returned before their deadline");
        return Err(workload_error(name, &detail));
    }
    for slot in oversleeps.iter() {
        latencies.record(slot.load(Ordering::Relaxed));
    }
    Ok(elapsed.as_secs_f64() * 1e3)
}
