//! W4: a contended mutex, QEMU's `test_multi_co_mutex`, on coscheduler's `CoMutex` and on
//! `tokio::sync::Mutex`, each in two forms: a fixed total of increments, and a set time
//! that ends with a stop flag.

use std::cell::UnsafeCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coprimitives::CoMutex;

use super::support::{Countdown, Placement, WORKERS, row_runtime, row_tokio, workload_error};
use crate::error::Error;

/// The counter a `CoMutex` protects: a plain integer, as in QEMU's test, so that a broken
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

/// tokio's mutex and its counter, aligned as [`Shared`] is so that the two rows pay for the
/// same cache-line traffic.
#[repr(align(128))]
struct TokioShared {
    lock: tokio::sync::Mutex<u64>,
}

/// How many increments a row's tasks make in one sample.
#[derive(Clone, Copy, Debug)]
pub(super) enum Form {
    /// This many in all, split evenly (QEMU's fixed-total form).
    Total(u64),
    /// As many as fit in this time, after which a stop flag ends every task.
    For(Duration),
}

impl Form {
    /// A set-time row's `ops`: milliseconds.
    pub(super) fn millis(ops: u64) -> Form {
        Form::For(Duration::from_millis(ops))
    }
}

/// When one task (or coroutine) stops incrementing.
#[derive(Clone, Debug)]
enum Until {
    /// After its own share.
    Count(u64),
    /// When the benchmark thread raises the flag.
    Stop(Arc<AtomicBool>),
}

impl Until {
    /// Whether a task that has made `done` increments goes on.
    #[inline]
    fn more(&self, done: u64) -> bool {
        match self {
            Until::Count(n) => done < *n,
            // Relaxed: the flag orders nothing, it only has to be seen eventually; each
            // task's count reaches the benchmark thread through `Countdown`'s Release.
            Until::Stop(flag) => !flag.load(Ordering::Relaxed),
        }
    }
}

/// What every task of a sample shares besides the lock.
struct Tally {
    until: Until,
    /// Increments made, summed as the tasks finish.
    counted: AtomicU64,
    done: Countdown,
}

impl Tally {
    /// A task's report at its end: its increments, then its completion.
    fn finish(&self, mine: u64) {
        // Relaxed: published by the Release decrement in `count_one`.
        self.counted.fetch_add(mine, Ordering::Relaxed);
        self.done.count_one();
    }
}

/// Runs one sample: `spawn` starts `WORKERS × c` tasks sharing the returned [`Tally`], the
/// benchmark thread waits (raising the stop flag after the set time), and the result is
/// the increments made and the time from the first spawn until the last task finished.
fn contend(
    name: &str,
    c: u64,
    form: Form,
    spawn: impl FnOnce(&Arc<Tally>),
) -> Result<(u64, Duration), Error> {
    let tasks = WORKERS as u64 * c;
    let until = match form {
        Form::Total(ops) if ops % tasks != 0 => {
            let detail = format!("{ops} increments do not split evenly over {tasks} tasks");
            return Err(workload_error(name, &detail));
        }
        Form::Total(ops) => Until::Count(ops / tasks),
        Form::For(_) => Until::Stop(Arc::new(AtomicBool::new(false))),
    };
    let tally = Arc::new(Tally {
        until,
        counted: AtomicU64::new(0),
        done: Countdown::new(tasks),
    });
    let begin = Instant::now();
    spawn(&tally);
    if let (Form::For(d), Until::Stop(flag)) = (form, &tally.until) {
        thread::sleep(d);
        flag.store(true, Ordering::Relaxed);
    }
    tally.done.wait(name)?;
    let elapsed = begin.elapsed();
    // Relaxed: every task's addition happened before its `count_one`, which `wait`'s
    // Acquire has seen.
    let counted = tally.counted.load(Ordering::Relaxed);
    match form {
        Form::Total(ops) if counted != ops => {
            let detail = format!("the tasks report {counted} increments, expected {ops}");
            Err(workload_error(name, &detail))
        }
        _ => Ok((counted, elapsed)),
    }
}

/// W4 with `CoMutex`: on each of the two workers of the row's runtime (built with the
/// defaults), `c` coroutines placed with `AioContext::spawn` (so never stolen) loop { lock;
/// counter += 1; unlock } until `form` says stop. Returns increments per second; fails
/// unless the counter equals the increments the coroutines made.
pub(super) fn comutex(name: &'static str, c: u64, form: Form) -> Result<f64, Error> {
    let rt = row_runtime(name, Placement::Defaults)?;
    let shared = Arc::new(Shared {
        lock: CoMutex::new(()),
        counter: UnsafeCell::new(0),
    });
    let (counted, elapsed) = contend(name, c, form, |tally| {
        for ctx in rt.contexts() {
            for _ in 0..c {
                let (shared, tally) = (shared.clone(), tally.clone());
                drop(ctx.spawn(move || {
                    let mut mine = 0;
                    while tally.until.more(mine) {
                        let guard = shared.lock.lock();
                        // SAFETY: we hold `lock` (see `Shared`'s Sync argument).
                        unsafe { *shared.counter.get() += 1 };
                        drop(guard);
                        mine += 1;
                    }
                    tally.finish(mine);
                }));
            }
        }
    })?;
    drop(rt);
    // SAFETY: every coroutine has finished (the countdown reached zero, with the ordering
    // that implies); nothing else touches the counter.
    let total = unsafe { *shared.counter.get() };
    check(name, total, counted)?;
    Ok(counted as f64 / elapsed.as_secs_f64())
}

/// W4 with `tokio::sync::Mutex<u64>` on the row's 2-worker multi-thread runtime: `2 × c`
/// tasks spawned from the benchmark thread (tokio places them; it has no per-worker spawn)
/// each loop { lock().await; counter += 1; unlock } until `form` says stop. Returns
/// increments per second; fails unless the counter equals the increments made.
pub(super) fn tokio_mutex(name: &'static str, c: u64, form: Form) -> Result<f64, Error> {
    let rt = row_tokio(name)?;
    let shared = Arc::new(TokioShared {
        lock: tokio::sync::Mutex::new(0),
    });
    let (counted, elapsed) = contend(name, c, form, |tally| {
        for _ in 0..WORKERS as u64 * c {
            let (shared, tally) = (shared.clone(), tally.clone());
            drop(rt.spawn(async move {
                let mut mine = 0;
                while tally.until.more(mine) {
                    *shared.lock.lock().await += 1;
                    mine += 1;
                }
                tally.finish(mine);
            }));
        }
    })?;
    drop(rt);
    let total = *shared
        .lock
        .try_lock()
        .map_err(|_| workload_error(name, "the mutex is still held after every task finished"))?;
    check(name, total, counted)?;
    Ok(counted as f64 / elapsed.as_secs_f64())
}

/// Fails unless the protected counter saw exactly the increments the tasks made.
fn check(name: &str, total: u64, counted: u64) -> Result<(), Error> {
    if total == counted {
        Ok(())
    } else {
        let detail = format!("lost increments: counter = {total}, the tasks made {counted}");
        Err(workload_error(name, &detail))
    }
}
