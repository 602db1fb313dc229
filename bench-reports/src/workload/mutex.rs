//! W4: a contended `CoMutex`, QEMU's `test_multi_co_mutex` with a fixed total.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::time::Instant;

use coprimitives::CoMutex;

use super::support::{Countdown, WORKERS, row_runtime, workload_error};
use crate::error::Error;
use crate::timed::Latencies;

/// The counter the mutex protects: a plain integer, as in QEMU's test, so that a broken
/// lock loses increments instead of hiding behind an atomic.
///
/// On cache lines of its own, with the mutex: where an allocation falls decides which lines
/// bounce between the workers, which otherwise moves the figure by several percent from
/// run to run (see `primitives/benches/mutex.rs`).
#[repr(align(128))]
struct Shared {
    lock: CoMutex<()>,
    counter: UnsafeCell<u64>,
}

// SAFETY: `counter` is only touched by a coroutine that holds `lock`, or by the benchmark
// thread after every coroutine has reported completion through the `Countdown` (whose
// Release/Acquire pair orders the last increment before the read); `CoMutex<()>` is Sync.
unsafe impl Sync for Shared {}

/// W4 with C = 1.
pub(super) fn comutex_c1(ops: u64, _latencies: &mut Latencies) -> Result<f64, Error> {
    comutex("w4_comutex_c1", 1, ops)
}

/// W4 with C = 4.
pub(super) fn comutex_c4(ops: u64, _latencies: &mut Latencies) -> Result<f64, Error> {
    comutex("w4_comutex_c4", 4, ops)
}

/// W4 with C = 32.
pub(super) fn comutex_c32(ops: u64, _latencies: &mut Latencies) -> Result<f64, Error> {
    comutex("w4_comutex_c32", 32, ops)
}

/// W4: on each of the two workers of the row's pinned runtime, `c` coroutines (placed with
/// `AioContext::spawn`, so never stolen) loop { lock; counter += 1; unlock } for their
/// share of `ops` increments. Returns increments per second, from the first spawn until
/// the last coroutine finished; fails unless the counter is exactly `ops`.
fn comutex(name: &'static str, c: u64, ops: u64) -> Result<f64, Error> {
    let coroutines = WORKERS as u64 * c;
    if ops % coroutines != 0 {
        let detail = format!("{ops} increments do not split evenly over {coroutines} coroutines");
        return Err(workload_error(name, &detail));
    }
    let per_coroutine = ops / coroutines;
    let rt = row_runtime(name, true)?;
    let shared = Arc::new(Shared {
        lock: CoMutex::new(()),
        counter: UnsafeCell::new(0),
    });
    let done = Arc::new(Countdown::new(coroutines));
    let begin = Instant::now();
    for ctx in rt.contexts() {
        for _ in 0..c {
            let (shared, done) = (shared.clone(), done.clone());
            drop(ctx.spawn(move || {
                for _ in 0..per_coroutine {
                    let guard = shared.lock.lock();
                    // SAFETY: we hold `lock` (see `Shared`'s Sync argument).
                    unsafe { *shared.counter.get() += 1 };
                    drop(guard);
                }
                done.count_one();
            }));
        }
    }
    done.wait(name)?;
    let elapsed = begin.elapsed();
    drop(rt);
    // SAFETY: every coroutine has finished (the countdown reached zero, with the ordering
    // that implies); nothing else has `shared`.
    let total = unsafe { *shared.counter.get() };
    if total != ops {
        let detail = format!("lost increments: counter = {total}, expected {ops}");
        return Err(workload_error(name, &detail));
    }
    Ok(ops as f64 / elapsed.as_secs_f64())
}
