//! W4: a contended mutex, QEMU's `test_multi_co_mutex`, on coscheduler's `CoMutex` and on
//! `tokio::sync::Mutex`, each in two forms: a fixed total of increments, and a set time
//! that ends with a stop flag. The loop and its counter are `workloads::mutex`'s; this
//! module is the harness: placement, the split of the total, the clock and the check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use workloads::mutex::{Counter, TokioCounter, Until};

use super::support::{Countdown, Placement, WORKERS, row_runtime, row_tokio, workload_error};
use crate::error::Error;

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
    let counter = Arc::new(Counter::new());
    let (counted, elapsed) = contend(name, c, form, |tally| {
        for ctx in rt.contexts() {
            for _ in 0..c {
                let (counter, tally) = (counter.clone(), tally.clone());
                drop(ctx.spawn(move || tally.finish(counter.increment(&tally.until))));
            }
        }
    })?;
    drop(rt);
    // Every coroutine has finished (the countdown reached zero): the lock is free.
    check(name, counter.try_count(), counted)?;
    Ok(counted as f64 / elapsed.as_secs_f64())
}

/// W4 with `tokio::sync::Mutex<u64>` on the row's 2-worker multi-thread runtime: `2 × c`
/// tasks spawned from the benchmark thread (tokio places them; it has no per-worker spawn)
/// each loop { lock().await; counter += 1; unlock } until `form` says stop. Returns
/// increments per second; fails unless the counter equals the increments made.
pub(super) fn tokio_mutex(name: &'static str, c: u64, form: Form) -> Result<f64, Error> {
    let rt = row_tokio(name)?;
    let counter = Arc::new(TokioCounter::new());
    let (counted, elapsed) = contend(name, c, form, |tally| {
        for _ in 0..WORKERS as u64 * c {
            let (counter, tally) = (counter.clone(), tally.clone());
            drop(rt.spawn(async move {
                tally.finish(counter.increment(&tally.until).await);
            }));
        }
    })?;
    drop(rt);
    check(name, counter.try_count(), counted)?;
    Ok(counted as f64 / elapsed.as_secs_f64())
}

/// Fails unless the protected counter (`None` while its lock is held) saw exactly the
/// increments the tasks made.
fn check(name: &str, total: Option<u64>, counted: u64) -> Result<(), Error> {
    match total {
        None => Err(workload_error(
            name,
            "the mutex is still held after every task finished",
        )),
        Some(total) if total != counted => {
            let detail = format!("lost increments: counter = {total}, the tasks made {counted}");
            Err(workload_error(name, &detail))
        }
        Some(_) => Ok(()),
    }
}
