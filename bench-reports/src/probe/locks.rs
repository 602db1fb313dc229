//! coprimitives' locks on their single-context paths: an uncontended `CoMutex` and a
//! `CoQueue` wait/next pair, everything on the probe thread.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use coprimitives::{CoMutex, CoQueue};
use coscheduler::{Coroutine, suspend};
use workloads::mutex::uncontended;

use crate::error::Error;

/// `iters` lock + unlock pairs of a free `CoMutex`, in one coroutine (the fast path: one
/// compare-and-swap each way, plus the holder bookkeeping): `workloads::mutex::uncontended`.
pub(super) fn comutex_uncontended(iters: u64) -> Result<(), Error> {
    let mutex = Arc::new(CoMutex::new(0u64));
    let m = mutex.clone();
    // One more than `iters`: the first lock reads the coroutine and context identities cold,
    // a cost that does not grow with `iters` and that the harness's differencing cancels.
    let co = Coroutine::new(move || uncontended(&m, iters + 1));
    co.enter();
    check(
        "comutex_uncontended",
        co.is_finished() && *mutex.try_lock().as_deref().unwrap_or(&0) == iters + 1,
        || format!("the coroutine did not count {} increments", iters + 1),
    )
}

/// The condition and the queue of [`coqueue_wait_next`].
struct Condition {
    lock: CoMutex<()>,
    queue: CoQueue,
    /// Successful `next` calls (a relaxed store each: one writer).
    woken: AtomicU64,
}

/// One `CoQueue` wait/next pair per iteration, under a `CoMutex` as the queue requires, with
/// a waiter and a waker coroutine on the probe thread's context.
///
/// The waiter holds the lock and waits in a loop. Each iteration the probe enters the
/// waker, which locks, calls `next` (the waiter is put on the waker's wake-up list: same
/// context, inside a coroutine), unlocks and suspends; the enter then runs the waiter,
/// which re-takes the lock in `wait`, waits again (queue, unlock, suspend) and returns
/// control to the probe. So one iteration = two coroutine switches in and out, two
/// uncontended lock/unlock pairs, one queue push and pop.
pub(super) fn coqueue_wait_next(iters: u64) -> Result<(), Error> {
    let cond = Arc::new(Condition {
        lock: CoMutex::new(()),
        queue: CoQueue::new(),
        woken: AtomicU64::new(0),
    });
    let c = cond.clone();
    let waiter = Coroutine::new(move || {
        let mut guard = c.lock.lock();
        loop {
            guard = c.queue.wait(guard);
        }
    });
    // Runs until its first wait: queued, lock released.
    waiter.enter();
    let c = cond.clone();
    let waker = Coroutine::new(move || {
        loop {
            let guard = c.lock.lock();
            if c.queue.next() {
                c.woken
                    .store(c.woken.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            drop(guard);
            suspend();
        }
    });
    // Warm: one pair before the measured ones.
    waker.enter();
    for _ in 0..iters {
        black_box(&waker).enter();
    }
    let woken = cond.woken.load(Ordering::Relaxed);
    // The waiter stays queued forever (the queue holds a handle to it); the process ends
    // right after the probe, so nothing needs to unwind it.
    check(
        "coqueue_wait_next",
        woken == iters + 1 && cond.queue.len() == 1 && !waiter.is_finished(),
        || {
            format!(
                "expected {} wakes and the waiter queued again, got {woken} wakes and {} \
                 queued",
                iters + 1,
                cond.queue.len()
            )
        },
    )
}

fn check(name: &str, ok: bool, detail: impl FnOnce() -> String) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::Workload {
            name: name.to_owned(),
            detail: detail(),
        })
    }
}
