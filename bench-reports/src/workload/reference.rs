//! Reference workloads on plain threads: the floors the coscheduler rows are divided by.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::timed::Latencies;

/// Spins before falling back to `yield_now`, so that an oversubscribed machine (or one with a
/// single core) still makes progress instead of burning a whole time slice per hand-off.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;

/// W3 floor: `ops` round trips of a counter between two pinned threads. Returns ns per round
/// trip and records each round trip's latency in ns.
///
/// Each round trip includes one clock read (about 20 ns through the vDSO): the value and the
/// percentiles come from the same timestamps, and a coscheduler row timed the same way
/// carries the same overhead, which the ratio cancels.
pub(super) fn atomic_pingpong(ops: u64, latencies: &mut Latencies) -> Result<f64, Error> {
    let turn = AtomicU64::new(0);
    let start = Barrier::new(2);
    let elapsed = thread::scope(|s| {
        s.spawn(|| {
            pin(1);
            start.wait();
            for i in 0..ops {
                wait_for(&turn, 2 * i + 1);
                // Release pairs with the Acquire load in the measuring thread's `wait_for`:
                // a real hand-off publishes data with the wake, so the floor pays for that
                // ordering too (free on x86, not on weaker memory models).
                turn.store(2 * i + 2, Ordering::Release);
            }
        });
        let measuring = s.spawn(|| {
            pin(0);
            start.wait();
            let begin = Instant::now();
            let mut last = begin;
            for i in 0..ops {
                // Release pairs with the Acquire load in the echoing thread's `wait_for`.
                turn.store(2 * i + 1, Ordering::Release);
                wait_for(&turn, 2 * i + 2);
                let now = Instant::now();
                latencies.record(nanos(now - last));
                last = now;
            }
            last - begin
        });
        measuring.join()
    })
    .map_err(|_| workload_error("raw_atomic_pingpong", "the measuring thread panicked"))?;
    Ok(elapsed.as_nanos() as f64 / ops as f64)
}

/// W4 floor: two pinned threads share `ops` increments of a counter behind a `std` mutex.
/// Returns operations per second; fails if the counter is not exactly `ops`.
pub(super) fn std_mutex_2threads(ops: u64, _latencies: &mut Latencies) -> Result<f64, Error> {
    let counter = Mutex::new(0u64);
    // Three parties: both workers and this thread, which starts the clock once they are
    // ready, so thread creation stays out of the figure.
    let start = Barrier::new(3);
    let per_thread = ops / 2;
    let elapsed = thread::scope(|s| {
        for core in 0..2 {
            let (counter, start) = (&counter, &start);
            s.spawn(move || {
                pin(core);
                start.wait();
                for _ in 0..per_thread {
                    // A poisoned lock still counts: the count check below reports the loss.
                    *counter.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            });
        }
        start.wait();
        Instant::now()
    })
    .elapsed();
    let total = counter.into_inner().unwrap_or_else(|e| e.into_inner());
    if total != 2 * per_thread {
        let detail = format!("counter = {total}, expected {}", 2 * per_thread);
        return Err(workload_error("std_mutex_2threads", &detail));
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Spins until `turn` holds `value`.
#[inline]
fn wait_for(turn: &AtomicU64, value: u64) {
    let mut spins = 0u32;
    // Acquire pairs with the Release store of the other thread in `atomic_pingpong`.
    while turn.load(Ordering::Acquire) != value {
        spins += 1;
        if spins < SPINS_BEFORE_YIELD {
            spin_loop();
        } else {
            spins = 0;
            thread::yield_now();
        }
    }
}

/// Pins the calling thread to the `index`-th usable core, if there is one. Pinning keeps the
/// two sides on distinct cores, as W3 and W4 prescribe; without it (one core, or affinity
/// unavailable) the workload still runs, only noisier.
fn pin(index: usize) {
    if let Some(core) = core_affinity::get_core_ids().and_then(|ids| ids.get(index).copied()) {
        core_affinity::set_for_current(core);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn workload_error(name: &str, detail: &str) -> Error {
    Error::Workload {
        name: name.to_owned(),
        detail: detail.to_owned(),
    }
}
