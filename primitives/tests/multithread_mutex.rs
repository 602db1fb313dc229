//! The mutex cases of QEMU's tests/unit/test-aio-multithread.c (docs/SEMANTICS.md
//! §10.2): coroutines on several contexts increment a plain counter under a
//! CoMutex until told to stop; the counter must equal the number of
//! increments counted outside the lock.
//!
//! | QEMU path | here | quick | `COSTRESS_LONG=1` |
//! |---|---|---|---|
//! | `/aio/multi/mutex/contended` | `mutex_contended_five_contexts` | 1 s | 10 s |
//! | `/aio/multi/mutex/handoff` | `mutex_handoff_two_contexts` | 1 s | 30 s |
//! | `/aio/multi/mutex/pthread` | `std_mutex_five_threads` | 1 s | 10 s |
//! | (W4 shape) | `mutex_two_contexts_many_coroutines` | 1 s | 10 s |
//! | (eventual fairness, the default) | `eventual_mutex_*` | 1 s | 10 s |
//!
//! Each prints its iterations per second (`--nocapture`).

use std::cell::UnsafeCell;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coprimitives::CoMutex;
use coscheduler::Runtime;

/// The run length: QEMU's quick value (capped at 1 s), or its slow value
/// with `COSTRESS_LONG=1`.
fn seconds(slow: u64) -> Duration {
    if std::env::var_os("COSTRESS_LONG").is_some_and(|v| v != "0") {
        Duration::from_secs(slow)
    } else {
        Duration::from_secs(1)
    }
}

/// QEMU's globals: a plain counter protected by the mutex, and the count
/// of increments done, kept outside it.
struct Shared {
    mutex: CoMutex<()>,
    /// Deliberately not atomic: only the mutex keeps increments apart.
    counter: UnsafeCell<u64>,
    atomic_counter: AtomicU64,
    now_stopping: AtomicBool,
}

// SAFETY: `counter` is only touched while holding `mutex` (or after every
// coroutine has finished).
unsafe impl Sync for Shared {}

/// `test_multi_co_mutex(threads, seconds)` with `per_context` coroutines
/// on each of the runtime's `contexts` contexts.
fn multi_co_mutex(contexts: usize, per_context: usize, run: Duration, label: &str) {
    multi_co_mutex_with(CoMutex::new_fifo(()), contexts, per_context, run, label);
}

fn multi_co_mutex_with(
    mutex: CoMutex<()>,
    contexts: usize,
    per_context: usize,
    run: Duration,
    label: &str,
) {
    let rt = Runtime::builder()
        .threads(contexts)
        .pin_threads(false)
        .build()
        .unwrap();
    let s = Arc::new(Shared {
        mutex,
        counter: UnsafeCell::new(0),
        atomic_counter: AtomicU64::new(0),
        now_stopping: AtomicBool::new(false),
    });
    let start = Instant::now();
    let handles: Vec<_> = rt
        .contexts()
        .iter()
        .flat_map(|ctx| {
            let s = s.clone();
            (0..per_context).map(move |_| {
                let s = s.clone();
                ctx.spawn(move || {
                    while !s.now_stopping.load(Relaxed) {
                        let g = s.mutex.lock();
                        // SAFETY: we hold the mutex.
                        unsafe { *s.counter.get() += 1 };
                        drop(g);
                        // After the unlock, on purpose (as QEMU).
                        s.atomic_counter.fetch_add(1, Relaxed);
                    }
                })
            })
        })
        .collect();
    std::thread::sleep(run);
    s.now_stopping.store(true, SeqCst);
    for h in handles {
        h.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    rt.shutdown();
    // SAFETY: every coroutine has finished.
    let counter = unsafe { *s.counter.get() };
    println!(
        "{label}: {counter} increments, {:.0} iterations/second",
        counter as f64 / elapsed
    );
    assert!(counter > 0);
    assert_eq!(
        counter,
        s.atomic_counter.load(SeqCst),
        "an increment was lost: mutual exclusion failed"
    );
    assert!(!s.mutex.is_locked());
}

/// `/aio/multi/mutex/contended`: all 5 contexts contend, one coroutine
/// each; mostly exercises the waiter queue.
#[test]
fn mutex_contended_five_contexts() {
    multi_co_mutex(5, 1, seconds(10), "contended, 5 contexts");
}

/// `/aio/multi/mutex/handoff`: 2 contexts, where the hand-off race
/// (unlocker finds the counted locker not queued yet) happens.
#[test]
fn mutex_handoff_two_contexts() {
    multi_co_mutex(2, 1, seconds(30), "handoff, 2 contexts");
}

/// W4's shape: 2 contexts × 32 coroutines.
#[test]
fn mutex_two_contexts_many_coroutines() {
    multi_co_mutex(2, 32, seconds(10), "2 contexts x 32 coroutines");
}

/// W4's shape with eventual fairness (the default; not QEMU's order).
#[test]
fn eventual_mutex_two_contexts_many_coroutines() {
    multi_co_mutex_with(
        CoMutex::new(()),
        2,
        32,
        seconds(10),
        "eventual, 2 contexts x 32 coroutines",
    );
}

/// `/aio/multi/mutex/contended` with eventual fairness.
#[test]
fn eventual_mutex_contended_five_contexts() {
    multi_co_mutex_with(
        CoMutex::new(()),
        5,
        2,
        seconds(10),
        "eventual, 5 contexts x 2 coroutines",
    );
}

/// `/aio/multi/mutex/pthread`: the same with a thread mutex (blocking the
/// whole thread), for comparison.
#[test]
fn std_mutex_five_threads() {
    let run = seconds(10);
    let m = Arc::new(Mutex::new(0u64));
    let atomic_counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..5)
        .map(|_| {
            let (m, a, stop) = (m.clone(), atomic_counter.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    *m.lock().unwrap() += 1;
                    a.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let counter = *m.lock().unwrap();
    println!(
        "std Mutex, 5 threads: {:.0} iterations/second",
        counter as f64 / start.elapsed().as_secs_f64()
    );
    assert_eq!(counter, atomic_counter.load(SeqCst));
}
